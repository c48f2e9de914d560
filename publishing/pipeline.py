"""The quickstart: the whole pipeline on the bundled demo data, each stage run as its script would run it.

    search (OP-NAS + BIWS) → export the best → pretrain it from scratch → GLUE finetuning → Hub repo folder

Every stage first writes its arguments to ``<output_dir>/configs/<stage>.yaml`` and then runs them through
the very code its script runs (`search.config.load_config` + `run_search` for `search/run_opnas.py`,
`parse_script_arguments` + `run_pretraining` / `run_glue` / `run_publish` for the scripts), so the
command recorded for it in ``run_record.json`` — e.g. ``python scripts/pretrain.py <that yaml>`` — is
exactly what ran. The published model card shows those commands. Budgets (`FULL`, `SMOKE`) fit the demo
data and two CPU cores: minutes, not the paper's GPU-days, so the results demonstrate the pipeline only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
import yaml

from search.config import load_config
from search.export import export_top_k
from search.plots import plot_search
from search.run_opnas import run_search
from training.arguments import (
    FinetuningArguments,
    GlueArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    PretrainingModelArguments,
    parse_script_arguments,
)
from training.atomic_files import write_json_atomic, write_text_atomic
from training.console import configure_logging
from training.corpus import is_article_heading
from training.glue import run_glue
from training.metrics import percent
from training.overrides import apply_overrides
from training.run_info import environment_record, shown_path
from training.runners import run_pretraining

from .arguments import PublishArguments, QuickstartArguments
from .hub import load_in_fresh_process
from .model_card import GLUE_RESULTS, SEARCH_RESULT, uniform_guess_loss
from .publish import run_publish


RUN_RECORD_FILE = "run_record.json"
LOG_FILE = "quickstart.log"
MODEL_NAME = "autobert-zero-quickstart"
HELD_OUT_FRACTION = 0.2


SEARCH_CONFIG = Path(__file__).resolve().parents[1] / "search" / "configs" / "tiny.yaml"


@dataclasses.dataclass(frozen=True)
class QuickstartBudget:
    """Sizes and step counts of every stage. The search is `search/configs/tiny.yaml` (whose proxy is measured to
    separate architectures at its size: README, "Architecture search") with this budget's number of candidates
    and ``search_overrides``; the best architecture found is then pretrained at this budget's width."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    max_seq_length: int
    search_evaluations: int
    population_size: int
    num_parents: int
    children_per_parent: int
    search_overrides: tuple[tuple[str, Any], ...]
    pretraining_steps: int
    pretraining_batch_size: int
    pretraining_learning_rate: float
    finetuning_epochs: float
    finetuning_batch_size: int
    finetuning_learning_rate: float
    finetuning_train_examples: int | None
    finetuning_eval_examples: int | None


FULL = QuickstartBudget(
    hidden_size=64, num_attention_heads=2, intermediate_size=128, max_seq_length=64,
    search_evaluations=16, population_size=4, num_parents=2, children_per_parent=2, search_overrides=(),
    pretraining_steps=600, pretraining_batch_size=32, pretraining_learning_rate=1e-3,
    finetuning_epochs=10.0, finetuning_batch_size=32, finetuning_learning_rate=2e-3,
    finetuning_train_examples=None, finetuning_eval_examples=None,
)
SMOKE = QuickstartBudget(
    hidden_size=32, num_attention_heads=2, intermediate_size=64, max_seq_length=32,
    search_evaluations=3, population_size=2, num_parents=1, children_per_parent=1,
    search_overrides=tuple({
        "evaluator.biws.pretraining.max_steps": 3, "evaluator.biws.pretraining.batch_size": 8,
        "evaluator.biws.pretraining.max_seq_length": 32, "evaluator.biws.pretraining.max_examples": 200,
        "evaluator.biws.pretraining.max_validation_examples": 32, "evaluator.biws.finetuning.max_steps": 3,
        "evaluator.biws.finetuning.batch_size": 8, "evaluator.biws.finetuning.max_train_examples": 64,
        "evaluator.biws.finetuning.max_eval_examples": 32,
    }.items()),
    pretraining_steps=8, pretraining_batch_size=8, pretraining_learning_rate=1e-3,
    finetuning_epochs=1.0, finetuning_batch_size=16, finetuning_learning_rate=2e-3,
    finetuning_train_examples=64, finetuning_eval_examples=32,
)


@dataclasses.dataclass(frozen=True)
class QuickstartOutputs:
    output_dir: Path
    run_record: Path
    search_dir: Path
    best_architecture: Path
    pretrained: Path
    glue_results: Path
    repo_folder: Path
    seconds: float


class RunRecord:
    """``run_record.json``: the quickstart command, when, where and on what it ran (`environment_record`) and, per
    finished stage, its commands, arguments and time."""

    def __init__(self, path: Path, demo_data: bool, datasets: list[str]):
        self.path = path
        self.data: dict[str, Any] = {
            "command": shlex.join(["python", "scripts/quickstart.py", *sys.argv[1:]]) if Path(sys.argv[0]).name == "quickstart.py" else None,
            **environment_record(),  # timestamp, the working directory the commands ran in, git, versions, machine
            "demo_data": demo_data,
            "datasets": datasets,
            "stages": [],
        }
        self.save()

    def add(self, name: str, commands: list[str], arguments_file: Path, output_dir: Path, seconds: float) -> None:
        """A stage run as ``commands``, with the arguments file they read (recorded with its content)."""
        self._append({
            "name": name,
            "commands": commands,
            "arguments_file": shown_path(arguments_file),
            "arguments": yaml.safe_load(arguments_file.read_text(encoding="utf-8")),
            "output_dir": shown_path(output_dir),
            "seconds": round(seconds, 1),
        })

    def add_step(self, name: str, description: str, output_dir: Path, seconds: float) -> None:
        """A step of the quickstart itself, with no script of its own."""
        self._append({"name": name, "commands": [], "description": description, "output_dir": shown_path(output_dir),
                      "seconds": round(seconds, 1)})

    def _append(self, stage: dict[str, Any]) -> None:
        self.data["stages"].append(stage)
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def split_wikitext(source: Path, directory: Path, held_out_fraction: float = HELD_OUT_FRACTION) -> tuple[Path, Path]:
    """Split a WikiText file at an article boundary into training text and held-out text (the last articles,
    about ``held_out_fraction`` of the lines): the pretraining's evaluation needs text it never trained on (the
    search holds out other text: tiny.yaml's WikiText test articles). Returns the two files, written in the
    same WikiText format."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    boundaries = [index for index, line in enumerate(lines) if index > 0 and is_article_heading(line)]
    wanted = (1.0 - held_out_fraction) * len(lines)
    split = min(boundaries, key=lambda index: abs(index - wanted), default=None)
    if split is None:
        raise ValueError(f"{source}: needs at least two WikiText articles (` = Title = ` lines) to hold one out")
    train_file = write_text_atomic(directory / f"{source.stem}.train.raw", "".join(lines[:split]))
    held_out_file = write_text_atomic(directory / f"{source.stem}.heldout.raw", "".join(lines[split:]))
    return train_file, held_out_file


def search_settings(demo_data: Path, output_dir: Path, budget: QuickstartBudget, task: str, proxy: str, seed: int) -> dict[str, Any]:
    """The search config: `search/configs/tiny.yaml` with its demo data read from ``demo_data``, this budget's
    candidates and, with ``proxy`` glue, the paper's proxy on ``task`` (with BERT's vocabulary, as tiny.yaml says)."""
    settings = yaml.safe_load(SEARCH_CONFIG.read_text(encoding="utf-8"))
    biws = settings["evaluator"]["biws"]

    def on_demo_data(path: str) -> str:  # tiny.yaml's paths are relative to the repository root: demo_data/...
        return shown_path(demo_data / Path(path).relative_to("demo_data"))

    overrides: dict[str, Any] = {
        "output_dir": shown_path(output_dir),
        "seed": seed,
        "max_evaluations": budget.search_evaluations,
        "search.population_size": budget.population_size,
        "search.num_parents": budget.num_parents,
        "search.children_per_parent": budget.children_per_parent,
        "evaluator.biws.tokenizer": on_demo_data(biws["tokenizer"]),
        "evaluator.biws.pretraining.train_files": [on_demo_data(path) for path in biws["pretraining"]["train_files"]],
        "evaluator.biws.pretraining.validation_files": [on_demo_data(path) for path in biws["pretraining"]["validation_files"]],
        "evaluator.biws.finetuning.data_dir": on_demo_data(biws["finetuning"]["data_dir"]),
        "export.top_k": 1,
        "tensorboard": False,
        **dict(budget.search_overrides),
    }
    if proxy == "glue":
        overrides.update({
            "evaluator.biws.proxy": "glue",
            "evaluator.biws.tokenizer": shown_path(demo_data / "vocab.txt"),
            "evaluator.biws.finetuning.tasks": [task],
        })
    return apply_overrides(settings, overrides)


def pretraining_settings(
    best: Path, demo_data: Path, texts: tuple[Path, Path], output_dir: Path, cache_dir: Path, budget: QuickstartBudget, seed: int
) -> dict[str, Any]:
    """`scripts/pretrain.py` arguments: the best architecture's layers at this budget's width, BERT's dropout and
    vocabulary, from scratch, on the demo text (held-out articles for its evaluation losses)."""
    train_file, held_out_file = texts
    width = {
        "hidden_size": budget.hidden_size,
        "num_attention_heads": budget.num_attention_heads,
        "intermediate_size": budget.intermediate_size,
        "max_position_embeddings": 2 * budget.max_seq_length,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "conv_kernel_dropout": 0.1,
    }
    return {
        "tokenizer": shown_path(demo_data / "vocab.txt"),
        "config_file": shown_path(best / "config.json"),
        "config_overrides": ",".join(f"{name}={value}" for name, value in width.items()),
        "train_files": [shown_path(train_file)],
        "validation_files": [shown_path(held_out_file)],
        "max_seq_length": budget.max_seq_length,
        "dataset_cache_dir": shown_path(cache_dir),
        "output_dir": shown_path(output_dir),
        "max_steps": budget.pretraining_steps,
        "per_device_train_batch_size": budget.pretraining_batch_size,
        "learning_rate": budget.pretraining_learning_rate,
        "warmup_steps": 0.1,
        "logging_steps": max(1, budget.pretraining_steps // 10),
        "disable_tqdm": False,  # the stage's progress bar, with the latest losses
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_pin_memory": False,
        "seed": seed,
    }


def glue_settings(pretrained: Path, demo_data: Path, output_dir: Path, budget: QuickstartBudget, task: str, seed: int) -> dict[str, Any]:
    """`scripts/finetune_glue.py` arguments: one task of the demo GLUE subset."""
    settings: dict[str, Any] = {
        "model_name_or_path": shown_path(pretrained),
        "task_name": task,
        "data_dir": shown_path(demo_data / "glue"),
        "max_seq_length": budget.max_seq_length,
        "write_test_predictions": False,
        "output_dir": shown_path(output_dir),
        "num_train_epochs": budget.finetuning_epochs,
        "per_device_train_batch_size": budget.finetuning_batch_size,
        "learning_rate": budget.finetuning_learning_rate,
        "logging_steps": 10,
        "disable_tqdm": False,
        "report_to": "none",
        "dataloader_pin_memory": False,
        "seed": seed,
    }
    if budget.finetuning_train_examples is not None:
        settings["max_train_samples"] = budget.finetuning_train_examples
    if budget.finetuning_eval_examples is not None:
        settings["max_eval_samples"] = budget.finetuning_eval_examples
    return settings


def _prepare_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} exists and is not empty: pass --overwrite_output_dir to replace it, or choose another --output_dir")
        if not (output_dir / RUN_RECORD_FILE).is_file():
            raise FileExistsError(f"{output_dir} holds no {RUN_RECORD_FILE}, so it is not a quickstart output: not deleting it")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def _write_settings(path: Path, settings: dict[str, Any]) -> Path:
    return write_text_atomic(path, yaml.safe_dump(settings, sort_keys=False))


def _stage(number: int, total: int, title: str, where: Path) -> float:
    print(f"\n[{number}/{total}] {title} -> {shown_path(where)}", flush=True)
    return time.perf_counter()


def run_quickstart(arguments: QuickstartArguments, report: Callable[[str], None] = print) -> QuickstartOutputs:
    """Run every stage; returns where each output went (and prints it)."""
    started = time.perf_counter()
    budget = SMOKE if arguments.smoke else FULL
    demo_data = Path(arguments.demo_data)
    for required in ("vocab.txt", "wikitext-2-raw/wiki.demo.raw", "glue"):
        if not (demo_data / required).exists():
            raise FileNotFoundError(f"demo_data: {demo_data / required} is missing (see demo_data/PROVENANCE.md)")
    output_dir = Path(arguments.output_dir)
    _prepare_output_dir(output_dir, arguments.overwrite_output_dir)
    torch.set_num_threads(arguments.torch_threads)
    transformers.logging.set_verbosity_error()
    # the console shows the stages and their progress bars; every library log line goes to the log file
    log_file = output_dir / LOG_FILE
    configure_logging(arguments.verbose, log_file, console_level=logging.INFO if arguments.verbose else logging.WARNING)
    configs = output_dir / "configs"
    record = RunRecord(output_dir / RUN_RECORD_FILE, demo_data=True, datasets=["Salesforce/wikitext", "nyu-mll/glue"])
    total = 4

    clock = time.perf_counter()
    demo_text = demo_data / "wikitext-2-raw" / "wiki.demo.raw"
    texts = split_wikitext(demo_text, output_dir / "data" / "wikitext-2-raw")
    record.add_step(
        "held-out text",
        f"`{shown_path(demo_text)}` split at an article boundary by `publishing.pipeline.split_wikitext`: the last "
        f"articles (about {HELD_OUT_FRACTION:.0%} of the lines) to `{shown_path(texts[1])}`, the rest to `{shown_path(texts[0])}`.",
        texts[0].parent, time.perf_counter() - clock,
    )
    search_dir = output_dir / "search"
    proxy = arguments.glue_task if arguments.search_proxy == "glue" else "held-out MLM loss"
    clock = _stage(1, total, f"OP-NAS search ({shown_path(SEARCH_CONFIG)}), {budget.search_evaluations} candidates (BIWS, {proxy} proxy)", search_dir)
    search_file = _write_settings(
        configs / "search.yaml",
        search_settings(demo_data, search_dir, budget, arguments.glue_task, arguments.search_proxy, arguments.seed),
    )
    state = run_search(load_config(search_file), progress=True)
    best = export_top_k(search_dir)[0]
    plots = plot_search(search_dir)
    ok = sum(candidate.status == "ok" for candidate in state.history)
    record.add(
        "OP-NAS search",
        [f"python search/run_opnas.py --config {shown_path(search_file)}", f"python search/plots.py --search_dir {shown_path(search_dir)}"],
        search_file, search_dir, time.perf_counter() - clock,
    )
    report(f"    {ok}/{len(state.history)} candidates trained; best exported to {shown_path(best)}; their training logs in {shown_path(log_file)}")

    pretrained = output_dir / "pretrain"
    clock = _stage(2, total, f"pretraining the best architecture from scratch, {budget.pretraining_steps} MLM + NSP steps", pretrained)
    pretrain_file = _write_settings(
        configs / "pretrain.yaml", pretraining_settings(best, demo_data, texts, pretrained, output_dir / "datasets_cache", budget, arguments.seed)
    )
    pretraining = run_pretraining(*parse_script_arguments((PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments), [str(pretrain_file)]))
    record.add("pretraining", [f"python scripts/pretrain.py {shown_path(pretrain_file)}"], pretrain_file, pretrained,
               time.perf_counter() - clock)
    vocab_size = json.loads((pretrained / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    report(f"    train_loss {pretraining.metrics['train_loss']:.4f}, held-out eval_mlm_loss {pretraining.metrics['eval_mlm_loss']:.4f}"
           f" (a uniform guess: ln V = {uniform_guess_loss('eval_mlm_loss', vocab_size):.4f}), eval_nsp_loss "
           f"{pretraining.metrics['eval_nsp_loss']:.4f} (a uniform guess: ln 2 = {uniform_guess_loss('eval_nsp_loss', vocab_size):.4f})")

    glue_dir = output_dir / "glue"
    clock = _stage(3, total, f"GLUE finetuning on {arguments.glue_task} (demo subset)", glue_dir)
    glue_file = _write_settings(configs / "glue.yaml", glue_settings(pretrained, demo_data, glue_dir, budget, arguments.glue_task, arguments.seed))
    summary = run_glue(*parse_script_arguments((GlueArguments, FinetuningArguments), [str(glue_file)]))
    record.add("GLUE finetuning", [f"python scripts/finetune_glue.py {shown_path(glue_file)}"], glue_file, glue_dir,
               time.perf_counter() - clock)
    for task, entry in summary["best"].items():
        majority = entry["majority_class_metrics"]
        report(f"    {task} dev (demo subset, {entry['examples'].get('validation', 0)} examples, 0-100): " + ", ".join(
            f"{name} {percent(value)} (majority class {percent(majority[name])})" for name, value in entry["metrics"].items()
        ))

    hub_dir = output_dir / "hub"
    clock = _stage(4, total, "Hub repo folder: weights, code, tokenizer, model card, plots", hub_dir)
    publish_file = _write_settings(configs / "publish.yaml", {
        "checkpoint": shown_path(pretrained),
        "output_dir": shown_path(hub_dir),
        "name": MODEL_NAME,
        "glue_results": shown_path(glue_dir / GLUE_RESULTS),
        "search_result": shown_path(best / SEARCH_RESULT),
        "search_plots": shown_path(plots[0].parent),
        "run_record": shown_path(record.path),
    })
    (published,) = run_publish(*parse_script_arguments((PublishArguments,), [str(publish_file)]))
    record.add("publishing", [f"python scripts/publish.py {shown_path(publish_file)}"], publish_file, hub_dir,
               time.perf_counter() - clock)
    (loaded,) = load_in_fresh_process([published.folder])
    report(f"    reloaded in a fresh process with trust_remote_code: {loaded['model_class']} from {loaded['module'].split('.')[0]}, "
           f"hidden states {tuple(loaded['hidden_shape'])}")

    outputs = QuickstartOutputs(
        output_dir=output_dir,
        run_record=record.path,
        search_dir=search_dir,
        best_architecture=best,
        pretrained=pretrained,
        glue_results=glue_dir / GLUE_RESULTS,
        repo_folder=published.folder,
        seconds=time.perf_counter() - started,
    )
    report(f"\nDone in {outputs.seconds:.0f} s. Where everything went:")
    for label, path in (
        ("search (state, history, super-net)", search_dir),
        ("search plots", plots[0].parent),
        ("best architecture (exported)", best),
        ("pretrained checkpoint", pretrained),
        ("GLUE results", outputs.glue_results),
        ("Hub repo folder (model card: README.md)", published.folder),
        ("stage arguments (rerun any stage with its script)", configs),
        ("commands and timings", record.path),
        ("every log line of every stage", log_file),
    ):
        report(f"  {label:<52} {shown_path(path)}")
    report(f"To push it to the Hub: add `push: true` and `repo_id: ORG/NAME` to {shown_path(publish_file)}, then run"
           f" `python scripts/publish.py {shown_path(publish_file)}` (after `hf auth login`).")
    return outputs
