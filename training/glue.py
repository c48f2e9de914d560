"""GLUE: read a task (original TSV layout or the Hub), finetune on it, score dev, write submission files.

`finetune_glue` is one run (the search's proxy uses it with a small step budget); `run_glue` is the
script's driver: several tasks, the paper's learning-rate × weight-decay grid (best dev score kept), RTE /
MRPC / STS-B started from an MNLI-finetuned checkpoint, and the GLUE submission folder.

TSV files are read with quoting off (GLUE's files contain unbalanced quotes) and a BOM-tolerant UTF-8
decoder (MRPC starts with one). Every row must have as many fields as the header; a row that does not is
an error naming the file and line, or, with ``skip_malformed_rows``, is skipped and counted in the log.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .arguments import (
    PAPER_LEARNING_RATES,
    PAPER_WEIGHT_DECAYS,
    FinetuningArguments,
    GlueArguments,
    resolve_training_arguments,
)
from .atomic_files import write_json_atomic, write_text_atomic
from .glue_tasks import GLUE_TASKS, MNLI_INITIALISED_TASKS, GlueTask, get_glue_task, parse_task_names
from .metrics import glue_average, glue_metrics, glue_predictions, glue_score, percent
from .models import task_model
from .run_info import is_demo_data
from .tokenization import load_tokenizer
from .trainers import MeanLossTrainer


logger = logging.getLogger(__name__)

__all__ = [
    "GLUE_TASKS", "GlueFormatError", "GlueRun", "read_glue_tsv", "load_glue_task",
    "finetune_glue", "finetune_glue_run", "run_glue",
]
HUB_DATASET = "nyu-mll/glue"


class GlueFormatError(ValueError):
    """A GLUE file that does not have the layout its task expects."""


def task_directory(data_dir: str | os.PathLike, task: GlueTask) -> Path:
    """``data_dir/<TASK>`` when ``data_dir`` is a GLUE root, else ``data_dir`` itself (one task's folder)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"GLUE data_dir {data_dir} is not a directory")
    nested = data_dir / task.directory
    return nested if nested.is_dir() else data_dir


def read_glue_tsv(
    path: str | os.PathLike, task_name: str, split: str, skip_malformed_rows: bool = False
) -> tuple[dict[str, list], list[int]]:
    """Columns ``text_a`` (and ``text_b``), ``labels`` (label ids or scores; absent for test splits) and
    ``idx`` (the test file's index column, else the row number) of one GLUE TSV file, and the line numbers
    of the rows skipped for a wrong field count (only with ``skip_malformed_rows``; else that is an error).
    """
    task = get_glue_task(task_name)
    path = Path(path)
    labelled = not split.startswith("test")
    skipped: list[int] = []
    columns: dict[str, list] = {"text_a": [], **({"text_b": []} if len(task.text_columns) == 2 else {}), "idx": []}
    if labelled:
        columns["labels"] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if task.headerless_columns is not None and labelled:
            names = list(task.headerless_columns)
        else:
            names = next(reader, None)
            if names is None:
                raise GlueFormatError(f"{path}: empty file, expected a header line")
        wanted = list(task.text_columns) + ([task.label_column] if labelled else [task.test_index_column])
        missing = [name for name in wanted if name not in names]
        if missing:
            raise GlueFormatError(
                f"{path}, line 1: header {names} lacks the column(s) {missing} that {task.name} {split} needs"
            )
        positions = [names.index(name) for name in wanted]
        for row in reader:
            line = reader.line_num
            if len(row) != len(names):
                if skip_malformed_rows:
                    skipped.append(line)
                    continue
                raise GlueFormatError(
                    f"{path}, line {line}: expected {len(names)} tab-separated fields ({', '.join(names)}), "
                    f"found {len(row)}"
                    " (pass skip_malformed_rows=True to skip and count such rows)"
                )
            texts, key = [row[position] for position in positions[:-1]], row[positions[-1]]
            columns["text_a"].append(texts[0])
            if len(texts) == 2:
                columns["text_b"].append(texts[1])
            if labelled:
                columns["labels"].append(_parse_label(task, key, f"{path}, line {line}, field {task.label_column!r}"))
                columns["idx"].append(len(columns["idx"]))
            else:
                try:
                    columns["idx"].append(int(key))
                except ValueError:
                    raise GlueFormatError(
                        f"{path}, line {line}, field {task.test_index_column!r}: "
                        f"expected an integer index, found {key!r}"
                    ) from None
    if skipped:
        logger.warning("%s: skipped %d malformed rows (lines %s)", path, len(skipped), skipped[:20])
    return columns, skipped


def _parse_label(task: GlueTask, text: str, where: str) -> int | float:
    if task.labels is not None:
        if text not in task.labels:
            raise GlueFormatError(f"{where}: label {text!r} is not one of {task.name}'s labels {list(task.labels)}")
        return task.labels.index(text)
    try:
        score = float(text)
    except ValueError:
        raise GlueFormatError(f"{where}: expected a number, found {text!r}") from None
    low, high = task.label_range
    if not low <= score <= high:
        raise GlueFormatError(f"{where}: score {score} lies outside {task.name}'s range [{low}, {high}]")
    return score


def _read_hub_task(task: GlueTask, splits: Sequence[str] | None, cache_dir: str | None) -> dict[str, datasets.Dataset]:
    try:
        hub = datasets.load_dataset(HUB_DATASET, task.hub_config, cache_dir=cache_dir)
    except Exception as error:  # offline or unknown: the user needs the same hint either way
        raise ValueError(
            f"could not load GLUE task {task.name} from the Hub ({HUB_DATASET}, config {task.hub_config}): {error}. "
            "Offline, pass data_dir with the GLUE TSV files."
        ) from error
    tables = {}
    for split in splits or task.split_files:
        if split not in hub:
            continue
        table = hub[split].rename_columns(dict(zip(task.hub_text_columns, ("text_a", "text_b"))))
        table = table.remove_columns(
            [name for name in ("label",) if name in table.column_names and split.startswith("test")]
        )
        tables[split] = table.rename_columns({"label": "labels"} if "label" in table.column_names else {})
    return tables


def load_glue_task(
    task_name: str,
    data_dir: str | os.PathLike | None,
    tokenizer,
    max_seq_length: int = 128,
    *,
    splits: Sequence[str] | None = None,
    split_files: Mapping[str, str] | None = None,
    skip_malformed_rows: bool = False,
    cache_dir: str | None = None,
    max_examples: Mapping[str, int | None] | None = None,
) -> datasets.DatasetDict:
    """A GLUE task as a tokenized `DatasetDict`: ``input_ids``, ``token_type_ids``, ``attention_mask``,
    ``labels`` (not in test splits) and ``idx``.

    ``data_dir`` is a GLUE root (``<TASK>/`` folders) or one task's folder in the original TSV layout, or
    ``None`` to load ``nyu-mll/glue`` from the Hub. Split names follow the Hub (``train``, ``validation``;
    MNLI: ``validation_matched`` / ``validation_mismatched``, ``test_matched`` / ``test_mismatched``). Splits
    whose files are absent are left out (and logged); ``split_files`` maps a split to another file name in
    the task folder (e.g. ``{"validation_matched": "dev.tsv"}``). An explicitly requested split that is
    missing, or a folder with none of the task's files, is an error listing what the folder holds.
    ``max_examples`` keeps the first N rows of the named splits, before tokenization (a search evaluates
    many candidates on a few hundred rows of a large train split).
    """
    task = get_glue_task(task_name)
    wanted = list(splits) if splits is not None else list(task.split_files)
    unknown = [split for split in list(wanted) + list(split_files or {}) if split not in task.split_files]
    if unknown:
        raise ValueError(f"{task.name} has no split(s) {unknown}; its splits are {list(task.split_files)}")
    if data_dir is None:
        tables = _read_hub_task(task, wanted, cache_dir)
    else:
        directory = task_directory(data_dir, task)
        tables = {}
        for split in wanted:
            path = directory / (split_files or {}).get(split, task.split_files[split])
            if not path.is_file():
                logger.debug("%s: no %s, so no %s split", directory, path.name, split)
                continue
            columns, _ = read_glue_tsv(path, task.name, split, skip_malformed_rows)
            tables[split] = datasets.Dataset.from_dict(columns)
        if not tables or (splits is not None and len(tables) < len(wanted)):
            expected = {split: (split_files or {}).get(split, task.split_files[split]) for split in wanted}
            present = sorted(entry.name for entry in directory.iterdir())
            raise FileNotFoundError(f"{directory}: GLUE {task.name} expects {expected}; the folder holds {present}")
    if splits is not None and len(tables) < len(wanted):
        raise ValueError(f"GLUE {task.name}: split(s) {sorted(set(wanted) - set(tables))} not found in {HUB_DATASET}")

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = (batch["text_a"], batch["text_b"]) if "text_b" in batch else (batch["text_a"],)
        return tokenizer(*texts, truncation=True, max_length=max_seq_length)

    for split, limit in (max_examples or {}).items():
        if limit is not None and split in tables:
            tables[split] = tables[split].select(range(min(limit, len(tables[split]))))

    return datasets.DatasetDict(
        {
            split: table.map(
                tokenize,
                batched=True,
                remove_columns=[name for name in ("text_a", "text_b") if name in table.column_names],
            )
            for split, table in tables.items()
        }
    )


def _classification_config(task: GlueTask) -> dict[str, Any]:
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(task.labels)),
        "label2id": {label: index for index, label in enumerate(task.labels)},
        "problem_type": "single_label_classification",
    }


def write_submission_file(path: str | os.PathLike, task_name: str, indices: Sequence[int], outputs: np.ndarray) -> Path:
    """A GLUE submission file: ``index<TAB>prediction`` rows, labels as the task names them (scores for STS-B)."""
    task = get_glue_task(task_name)
    predictions = glue_predictions(task.name, outputs)
    lines = ["index\tprediction"]
    for index, prediction in zip(indices, predictions):
        lines.append(f"{index}\t{prediction:.3f}" if task.is_regression else f"{index}\t{task.labels[int(prediction)]}")
    return write_text_atomic(path, "\n".join(lines) + "\n")


def _diagnostic_directory(data_dir: str | os.PathLike) -> Path | None:
    """The folder of GLUE's diagnostic set beside the MNLI folder (``<root>/diagnostic/``), if present."""
    ax = GLUE_TASKS["ax"]
    for root in (Path(data_dir), Path(data_dir).parent):
        if (root / ax.directory / ax.split_files["test"]).is_file():
            return root / ax.directory
    return None


@dataclasses.dataclass(frozen=True)
class GlueRun:
    """One finetuning run: its dev metrics, how many examples of each split it used, and the dev metrics of
    always predicting the most frequent training label (what a model that learned nothing scores)."""

    metrics: dict[str, float]
    examples: dict[str, int]
    majority_class: dict[str, float]


def majority_class_metrics(task: GlueTask, train: datasets.Dataset, validation: datasets.Dataset) -> dict[str, float]:
    """``validation``'s metrics when every example gets the most frequent label of ``train`` (classification)."""
    labels = np.asarray(validation["labels"])
    majority = np.bincount(np.asarray(train["labels"]), minlength=task.num_labels).argmax()
    return glue_metrics(task.name, np.full(len(labels), majority), labels)


def finetune_glue(*args: Any, **kwargs: Any) -> dict[str, float]:
    """Finetune a model on one GLUE task and return its dev metrics: `finetune_glue_run` (same arguments)
    without the example counts."""
    return finetune_glue_run(*args, **kwargs).metrics


def finetune_glue_run(
    model: str | os.PathLike | nn.Module,
    task_name: str,
    data_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    tokenizer=None,
    max_seq_length: int = 128,
    training_arguments: TrainingArguments | None = None,
    max_steps: int | None = None,
    split_files: Mapping[str, str] | None = None,
    skip_malformed_rows: bool = False,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    write_test_predictions: bool = True,
    save_model: bool = True,
    callbacks: list[TrainerCallback] | None = None,
    **training_overrides: Any,
) -> GlueRun:
    """Finetune ``model`` on one GLUE task; its dev metrics (MNLI mismatched with an ``_mm`` suffix), the
    number of examples of every split used, and the dev metrics of the majority class.

    ``model`` is a checkpoint directory or a model instance with any head (e.g. the pretraining model the
    search just trained); a sequence-classification head is put on its backbone, and an instance is left
    unchanged. ``tokenizer`` defaults to the checkpoint's. Training arguments are ``training_arguments``
    (default: `FinetuningArguments`) with ``max_steps`` and ``training_overrides`` (any `TrainingArguments`
    field; ``None`` values ignored); ``callbacks`` go to the `Trainer`. Writes ``eval_results.json``, the
    test sets' submission files (with MNLI also ``AX.tsv`` when the diagnostic set sits beside it) and,
    with ``save_model``, the model and tokenizer to ``output_dir``.
    """
    task = get_glue_task(task_name)
    if task.name == "ax":
        raise ValueError(
            "task 'ax' (the diagnostic set) has no training data: finetune 'mnli', which also writes AX.tsv"
        )
    if tokenizer is None:
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("finetune_glue: pass tokenizer= when model is a model instance")
        tokenizer = load_tokenizer(model)
    limits = {"train": max_train_samples, **{name: max_eval_samples for name in task.validation_splits}}
    if not write_test_predictions:  # nothing reads the test splits then: keep them empty, untokenized
        limits.update({split: 0 for split in task.submission_files})
    data = load_glue_task(
        task.name, data_dir, tokenizer, max_seq_length, split_files=split_files,
        skip_malformed_rows=skip_malformed_rows, max_examples=limits,
    )
    if "train" not in data:
        raise FileNotFoundError(
            f"GLUE {task.name}: no training split in {data_dir or HUB_DATASET} (splits found: {list(data)})"
        )

    arguments = resolve_training_arguments(
        FinetuningArguments, output_dir, training_arguments, max_steps=max_steps, **training_overrides
    )
    set_seed(arguments.seed)
    classifier = task_model(model, AutoModelForSequenceClassification, **_classification_config(task))
    trainer = MeanLossTrainer(
        model=classifier,
        args=arguments,
        train_dataset=data["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()

    metrics: dict[str, float] = {}
    majority: dict[str, float] = {}
    for split, suffix in task.validation_splits.items():
        if split in data:
            prediction = trainer.predict(data[split])
            scores = glue_metrics(task.name, prediction.predictions, prediction.label_ids)
            metrics.update({f"{name}{suffix}": value for name, value in scores.items()})
            if not task.is_regression:
                baseline = majority_class_metrics(task, data["train"], data[split])
                majority.update({f"{name}{suffix}": value for name, value in baseline.items()})
    if not metrics:
        logger.warning("GLUE %s: no dev split in %s, so no dev metrics", task.name, data_dir or HUB_DATASET)

    if trainer.is_world_process_zero():
        write_json_atomic(Path(arguments.output_dir) / "eval_results.json", metrics)
    if write_test_predictions:
        test_sets = {split: (data[split], name) for split, name in task.submission_files.items() if split in data}
        if task.name == "mnli":  # the diagnostic set is predicted by the MNLI model
            diagnostic = None if data_dir is None else _diagnostic_directory(data_dir)
            if data_dir is None or diagnostic is not None:
                ax = load_glue_task("ax", diagnostic, tokenizer, max_seq_length)["test"]
                test_sets["ax"] = (ax, GLUE_TASKS["ax"].submission_files["test"])
        for dataset, file_name in test_sets.values():
            outputs = trainer.predict(dataset).predictions
            if trainer.is_world_process_zero():
                write_submission_file(Path(arguments.output_dir) / file_name, task.name, dataset["idx"], outputs)
    if save_model:
        trainer.save_model()
    return GlueRun(metrics, {split: len(table) for split, table in data.items() if len(table)}, majority)


def _grid(glue_arguments: GlueArguments, arguments: TrainingArguments) -> list[tuple[float, float]]:
    if glue_arguments.paper_grid:
        return [(rate, decay) for rate in PAPER_LEARNING_RATES for decay in PAPER_WEIGHT_DECAYS]
    rates = glue_arguments.learning_rates or [arguments.learning_rate]
    decays = glue_arguments.weight_decays or [arguments.weight_decay]
    return [(rate, decay) for rate in rates for decay in decays]


def _keep_results_only(run_dir: Path, task: GlueTask) -> None:
    """Delete the model a run saved (weights, config, tokenizer, training arguments), keeping its results:
    ``eval_results.json`` and the submission files."""
    kept = {"eval_results.json", *task.submission_files.values(), GLUE_TASKS["ax"].submission_files["test"]}
    for path in run_dir.iterdir():
        if path.is_file() and path.name not in kept:
            path.unlink()


def _describe_run(task: GlueTask, name: str, run: GlueRun) -> str:
    def scores(metrics: Mapping[str, float]) -> str:
        return ", ".join(f"{metric} {percent(value)}" for metric, value in metrics.items())

    dev = sum(count for split, count in run.examples.items() if split.startswith("validation"))
    baseline = f"; majority class: {scores(run.majority_class)}" if run.majority_class else ""
    return (
        f"GLUE {task.directory} {name}: {scores(run.metrics) or 'no dev metrics'} (0-100{baseline}; "
        f"{dev} dev examples, trained on {run.examples.get('train', 0)})"
    )


def run_glue(glue_arguments: GlueArguments, arguments: TrainingArguments) -> dict[str, Any]:
    """`scripts/finetune_glue.py`: every task × grid point, the best run per task, submissions, the GLUE average.

    Runs go to ``<output_dir>/<task>/lr<rate>_wd<decay>/``. The best run of every task keeps its fine-tuned
    model there (as `run_glue` of `transformers` saves its model), unless ``save_best_model`` is off; the
    other runs keep only their results. The best run's submission files are copied to
    ``<output_dir>/submission/`` and a summary (every run's dev metrics, the best per task with its model
    folder and example counts, the data source and, when all tasks ran, the GLUE average) to
    ``<output_dir>/glue_results.json``. Metrics there are fractions as the metric functions return them; the
    GLUE average is in percent, as papers report it.
    """
    tasks = parse_task_names(glue_arguments.task_name)
    if glue_arguments.init_from_mnli and "mnli" not in tasks:
        raise ValueError("init_from_mnli needs 'mnli' among the tasks (or pass mnli_checkpoint)")
    tokenizer = load_tokenizer(glue_arguments.tokenizer or glue_arguments.model_name_or_path)
    output_dir = Path(arguments.output_dir)
    mnli_checkpoint = glue_arguments.mnli_checkpoint
    data_dir = glue_arguments.data_dir
    data = {
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "hub_dataset": HUB_DATASET if data_dir is None else None,
        "demo_data": data_dir is not None and is_demo_data(data_dir),
    }
    summary: dict[str, Any] = {"data": data, "runs": {}, "best": {}}
    for task_name in tasks:
        task = GLUE_TASKS[task_name]
        start = glue_arguments.model_name_or_path
        if task_name in MNLI_INITIALISED_TASKS and mnli_checkpoint is not None:
            start = mnli_checkpoint
        keep_model = glue_arguments.save_best_model or (task_name == "mnli" and glue_arguments.init_from_mnli)
        runs, examples, majority, best, best_score = {}, {}, {}, None, None
        for rate, decay in _grid(glue_arguments, arguments):
            run_dir = output_dir / task_name / f"lr{rate:g}_wd{decay:g}"
            run = finetune_glue_run(
                start,
                task_name,
                data_dir,
                run_dir,
                tokenizer=tokenizer,
                max_seq_length=glue_arguments.max_seq_length,
                training_arguments=arguments,
                skip_malformed_rows=glue_arguments.skip_malformed_rows,
                max_train_samples=glue_arguments.max_train_samples,
                max_eval_samples=glue_arguments.max_eval_samples,
                write_test_predictions=glue_arguments.write_test_predictions,
                save_model=keep_model,
                learning_rate=rate,
                weight_decay=decay,
            )
            runs[run_dir.name], examples, majority = run.metrics, run.examples, run.majority_class
            logger.info("%s", _describe_run(task, run_dir.name, run))
            score = glue_score(task_name, run.metrics) if run.metrics else None
            is_best = score is not None and (best_score is None or score > best_score)
            if keep_model and arguments.process_index == 0 and (best is not None or not is_best):
                _keep_results_only(output_dir / task_name / (best if is_best else run_dir.name), task)
            if is_best:
                best, best_score = run_dir.name, score
        summary["runs"][task_name] = runs
        if best is None:
            continue
        best_dir = output_dir / task_name / best
        summary["best"][task_name] = {
            "run": best,
            "score": best_score,
            "metrics": runs[best],
            "initialised_from": str(start),
            "examples": examples,
            "majority_class_metrics": majority,
            "model_dir": str(best_dir) if keep_model else None,
        }
        if task_name == "mnli" and glue_arguments.init_from_mnli:
            mnli_checkpoint = str(best_dir)
        if arguments.process_index == 0:
            for file_name in [
                *task.submission_files.values(),
                *(("AX.tsv",) if task_name == "mnli" else ()),
            ]:
                if (best_dir / file_name).is_file():
                    write_text_atomic(
                        output_dir / "submission" / file_name, (best_dir / file_name).read_text(encoding="utf-8")
                    )
    best_metrics = {name: entry["metrics"] for name, entry in summary["best"].items()}
    if any(GLUE_TASKS[name].in_glue_average for name in best_metrics):
        complete = all(name in best_metrics for name, task in GLUE_TASKS.items() if task.in_glue_average)
        summary["glue_average"] = glue_average(best_metrics, allow_partial=True)
        summary["glue_average_is_partial"] = not complete
    if arguments.process_index == 0:
        write_json_atomic(output_dir / "glue_results.json", summary)
    return summary
