"""Model cards rendered from the files in a repo folder: every number in a card is read from ``results/``.

The pipeline stages write JSON files (`pretraining_results.json` from pretraining, `glue_results.json` from
`scripts/finetune_glue.py`, SQuAD's `eval_results.json`, the search's `search_result.json`, the run record
with the exact commands), and `publishing.hub` adds `model_stats.json` (parameters, FLOPs, counted on the
weights) and `weights.json` (where the weights come from). :func:`render_model_card` reads only those files
and the folder's `config.json`, and fills the Jinja template in `model_cards/` through
`huggingface_hub.ModelCard.from_template`, with `ModelCardData` metadata: license, datasets, tags, and a
`model-index` holding the measured evaluation results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from modeling_autobert_zero.attention_programs import canonical_program, parse_program
from modeling_autobert_zero.architecture import architecture_key, describe_architecture, repeat_blocks_in_place
from modeling_autobert_zero.configuration_autobert_zero import AUTOBERT_ZERO_LAYERS
from training.glue_tasks import GLUE_TASKS, get_glue_task


REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO / "model_cards" / "autobert_zero.md"
RESULTS_DIR = "results"
MODEL_STATS = "model_stats.json"
WEIGHTS = "weights.json"
PRETRAINING_RESULTS = "pretraining_results.json"
PRETRAINING_STATE = "pretraining_state.json"
GLUE_RESULTS = "glue_results.json"
SQUAD_RESULTS = "squad_results.json"
SEARCH_RESULT = "search_result.json"
SEARCH_SETTINGS = "search_settings.json"
PAPER_SEARCH_STEPS = 40_000  # the paper's pretraining steps per candidate
RUN_RECORD = "run_record.json"
ARCHITECTURE_FIGURE = "architecture.png"
SEARCH_FIGURES = {"search_best_so_far.png": "Best proxy score so far", "search_op_priority.png": "Operation priority"}

HUB_GLUE = "nyu-mll/glue"
SQUAD_DEV_QUESTIONS = {"v1.1": 10_570, "v2.0": 11_873}  # the official dev sets
BERT_PRETRAINING_STEPS = 1_000_000
DEMO_SIZE_STEPS = 10_000  # BERT's warm-up alone: a run shorter than that is a demonstration, not a pretraining
DEMO_TAG = "demo"
EXAMPLE_INPUTS = {  # what the card's pipeline example feeds each task
    "fill-mask": "Paris is the [MASK] of France.",
    "text-classification": "A searched backbone.",
    "token-classification": "A searched backbone from Paris.",
}
HUB_METRIC_TYPES = {"pearson": "pearsonr", "spearman": "spearmanr"}  # GLUE metric name → the Hub's metric id
PIPELINE_TAGS = {
    "AutoBertZeroForPreTraining": "fill-mask",
    "AutoBertZeroForMaskedLM": "fill-mask",
    "AutoBertZeroForSequenceClassification": "text-classification",
    "AutoBertZeroForQuestionAnswering": "question-answering",
    "AutoBertZeroForTokenClassification": "token-classification",
}
TAGS = ("autobert-zero", "neural-architecture-search", "bert", "custom_code")


class CardError(ValueError):
    """A results file a card cannot be rendered from."""


@dataclass(frozen=True)
class CardSettings:
    """What a card says that no results file holds: the name, the Hub id, the license, the datasets.

    ``datasets`` are Hub dataset ids for the metadata; left empty, they are derived from the results (GLUE,
    SQuAD) and from the pretraining files the results name (WikiText). ``local_path`` is where the folder was
    written (relative to the working directory), the path "How to use" loads from until the repo is pushed.
    """

    model_name: str
    repo_id: str | None = None
    license: str = "apache-2.0"
    datasets: tuple[str, ...] = field(default_factory=tuple)
    local_path: str | None = None  # the folder as the publishing command named it, for "How to use" before a push


def read_results(folder: str | os.PathLike) -> dict[str, Any]:
    """Every JSON file in ``folder/results/``, by file name. A file that is not valid JSON is an error."""
    results = {}
    directory = Path(folder) / RESULTS_DIR
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            results[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CardError(f"{path}: not valid JSON ({error})") from None
    return results


def _number(value: Any) -> str:
    """How the card prints a number from a results file: whole numbers with separators (counts, FLOPs, also
    when stored as floats), other numbers to 4 decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(f"expected a number, got {value!r:.60}")
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4f}"


def _numeric_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"name": name, "value": _number(value)} for name, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _require(results: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> Mapping[str, Any] | None:
    content = results.get(name)
    if content is None:
        return None
    if not isinstance(content, Mapping) or any(key not in content for key in keys):
        raise CardError(f"{RESULTS_DIR}/{name}: expected an object with the keys {list(keys)}, got {str(content)[:120]}")
    return content


def architecture_rows(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per layer: number, type, kernel or program expression, the inputs the program reads."""
    rows = []
    for number, (layer, description) in enumerate(zip(layers, describe_architecture(layers)), start=1):
        if layer["type"] == "conv":
            rows.append({"number": number, "type": "conv", "detail": f"lightweight conv, kernel {layer['kernel_size']}", "inputs": "–"})
        else:
            inputs = canonical_program(parse_program(layer["program"])).inputs_read()
            rows.append({"number": number, "type": "attention", "detail": f"`{description}`", "inputs": ", ".join(inputs)})
    return rows


def paper_backbone_size(layers: list[dict[str, Any]]) -> str | None:
    """``"base"`` when ``layers`` is the paper's Figure 7 backbone (SPEC §7), ``"large"`` for its block-repeated
    version, else None: these get the card's notes on how the figure was read."""
    key = architecture_key(layers)
    if key == architecture_key(list(AUTOBERT_ZERO_LAYERS)):
        return "base"
    if key == architecture_key(repeat_blocks_in_place(list(AUTOBERT_ZERO_LAYERS))):
        return "large"
    return None


def _percent(value: float) -> float:
    """A fraction (or correlation) on the card's one scale for scores, 0–100 as GLUE and SQuAD papers print them."""
    return round(100.0 * value, 2)


def _glue_subset(summary: Mapping[str, Any], task_name: str, split: str, demo: bool) -> tuple[str, str, str]:
    """(what the dataset really was, the split name, "n of N") of one task's dev scores."""
    task = get_glue_task(task_name)
    entry = summary["best"][task_name]
    used = (entry.get("examples") or {}).get(split)
    official = task.split_sizes.get(split)
    name = f"GLUE {task.directory}"
    if used is None or official is None:
        return (f"{name} (bundled demo subset)" if demo else name), split, ""
    count = f"{used:,} of {official:,}"
    if used >= official:
        return name, split, count
    kind = "bundled demo subset" if demo else "subset"
    return f"{name} ({kind}: the first {used:,} of {official:,} dev examples)", f"{split}[:{used}]", count


def _glue_rows(summary: Mapping[str, Any], demo: bool) -> tuple[list[dict[str, str]], list[EvalResult]]:
    rows, eval_results = [], []
    best = summary["best"]
    if not isinstance(best, Mapping):
        raise CardError(f"{RESULTS_DIR}/{GLUE_RESULTS}: 'best' must map task names to their best run")
    for task_name, entry in best.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("metrics"), Mapping):
            raise CardError(f"{RESULTS_DIR}/{GLUE_RESULTS}: best[{task_name!r}] needs a 'metrics' object")
        task = get_glue_task(task_name)
        majority = entry.get("majority_class_metrics") or {}
        for metric, value in entry["metrics"].items():
            split = "validation_mismatched" if metric.endswith("_mm") else "validation_matched" if task.name == "mnli" else "validation"
            base_metric = metric.removesuffix("_mm")
            dataset_name, dataset_split, count = _glue_subset(summary, task_name, split, demo)
            rows.append({
                "task": task.directory, "metric": metric, "value": f"{_percent(value):.2f}",
                "majority": f"{_percent(majority[metric]):.2f}" if metric in majority else "–",
                "examples": count or "?", "run": entry.get("run", ""),
            })
            eval_results.append(EvalResult(
                task_type="text-classification",
                task_name="Text Classification",
                dataset_type=HUB_GLUE,
                dataset_name=dataset_name,
                dataset_config=task.hub_config,
                dataset_split=dataset_split,
                metric_type=HUB_METRIC_TYPES.get(base_metric, base_metric),
                metric_name=metric,
                metric_value=_percent(value),
            ))
    return rows, eval_results


def _is_score(name: str) -> bool:
    """SQuAD's score metrics (EM, F1 and their subsets, in percent), not counts or thresholds."""
    return ("exact" in name or "f1" in name) and "thresh" not in name


def _squad_rows(metrics: Mapping[str, Any]) -> tuple[str, str, list[dict[str, str]], list[EvalResult]]:
    version_2 = "exact" in metrics
    version, dataset = ("v2.0", "rajpurkar/squad_v2") if version_2 else ("v1.1", "rajpurkar/squad")
    headline = ("exact", "f1") if version_2 else ("exact_match", "f1")
    data = metrics.get("data") or {}
    questions, official = data.get("validation_questions"), SQUAD_DEV_QUESTIONS[version]
    dataset_name, description = f"SQuAD {version}", "dev set"
    if data.get("demo_data"):
        dataset_name = f"SQuAD {version} (bundled demo subset: {questions:,} questions from dev files)"
        description = f"the bundled demo subset, {questions:,} questions (see `demo_data/PROVENANCE.md`)"
    elif questions is not None and questions < official:
        dataset_name = f"SQuAD {version} (subset: {questions:,} of {official:,} dev questions)"
        description = f"{questions:,} of the {official:,} dev questions"
    eval_results = [
        EvalResult(
            task_type="question-answering",
            task_name="Question Answering",
            dataset_type=dataset,
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type="exact_match" if name.startswith("exact") else name,
            metric_name=name,
            metric_value=round(metrics[name], 2),
        )
        for name in headline
        if name in metrics
    ]
    rows = [
        {"name": name, "value": f"{value:.2f}" if _is_score(name) else _number(value)}
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return version, description, rows, eval_results


def uniform_guess_loss(name: str, vocab_size: int) -> float | None:
    """The loss of a model that guesses uniformly, for a pretraining loss called ``name``: ln 2 for NSP (two
    classes), ln V for MLM (V tokens), their sum for the total loss; None for anything else."""
    if name.endswith("nsp_loss"):
        return math.log(2)
    if name.endswith("mlm_loss"):
        return math.log(vocab_size)
    if name in ("loss", "train_loss", "eval_loss", "pretraining_loss"):
        return math.log(vocab_size) + math.log(2)
    return None


def _loss_rows(metrics: Mapping[str, Any], vocab_size: int) -> list[dict[str, str]]:
    """Numeric rows, each loss with the loss of a uniform guess beside it, GLUE scores (``task/metric``, as a
    search records them) on the card's 0–100 scale."""
    rows = []
    for row in _numeric_rows(metrics):
        name = row["name"]
        if name.split("/")[0] in GLUE_TASKS:
            row["value"] = f"{_percent(metrics[name]):.2f}"
        chance = uniform_guess_loss(name, vocab_size)
        rows.append({**row, "chance": f"{chance:.4f}" if chance is not None else ""})
    return rows


def _command_stages(record: Mapping[str, Any]) -> list[dict[str, str]]:
    stages = []
    for index, stage in enumerate(record.get("stages", [])):
        if not isinstance(stage, Mapping) or not isinstance(stage.get("commands"), list):
            raise CardError(f"{RESULTS_DIR}/{RUN_RECORD}: stages[{index}] needs a 'commands' list")
        arguments = stage.get("arguments")
        stages.append({
            "name": stage.get("name", f"stage {index + 1}"),
            "seconds": f"{stage['seconds']:.0f}" if isinstance(stage.get("seconds"), (int, float)) else "?",
            "command": "\n".join(stage["commands"]),
            "description": stage.get("description", ""),
            "arguments_file": stage.get("arguments_file", ""),
            "arguments": yaml.safe_dump(arguments, sort_keys=False).strip() if arguments else "",
        })
    return stages


def _pretraining_files(results: Mapping[str, Any]) -> list[str]:
    """The pretraining text files, as the pretraining results or the run record's stages name them."""
    data = (results.get(PRETRAINING_RESULTS) or {}).get("data") or {}
    record = results.get(RUN_RECORD) or {}
    staged = [
        path
        for stage in record.get("stages", [])
        for path in ((stage.get("arguments") or {}).get("train_files") or [])
    ]
    return [path for path in [*(data.get("train_files") or []), *staged] if isinstance(path, str)]


def _derived_datasets(results: Mapping[str, Any]) -> list[str]:
    """Hub dataset ids: those the run record names, else what the results and pretraining file names show."""
    record = results.get(RUN_RECORD) or {}
    if record.get("datasets"):
        return list(record["datasets"])
    datasets = []
    if any("wikitext" in path.lower() for path in _pretraining_files(results)):
        datasets.append("Salesforce/wikitext")
    if GLUE_RESULTS in results:
        datasets.append(HUB_GLUE)
    if SQUAD_RESULTS in results:
        datasets.append("rajpurkar/squad_v2" if "exact" in results[SQUAD_RESULTS] else "rajpurkar/squad")
    return datasets


def _glue_proxy_tasks(search_result: Mapping[str, Any]) -> list[str]:
    """The GLUE tasks a search candidate was scored on (its metrics are named ``task/metric``), if any."""
    tasks = {name.split("/")[0] for name in search_result.get("metrics", {}) if "/" in name}
    return sorted(task for task in tasks if task in GLUE_TASKS)


def _proxy_description(search_result: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """What the search's score measured, as far as its settings and recorded metrics show."""
    if settings.get("evaluator") == "synthetic":
        return "a synthetic score: the stand-in evaluator for tests, which says nothing about the architecture"
    tasks = _glue_proxy_tasks(search_result)
    if tasks:
        return f"mean GLUE dev score, 0–100, on {', '.join(get_glue_task(task).directory for task in tasks)}"
    held_out = search_result.get("metrics", {}).get("held_out_mlm_loss")
    if held_out is not None and search_result["score"] == -held_out:
        return "minus the MLM loss on held-out text"
    return "the search evaluator's score"


@dataclass(frozen=True)
class RunScale:
    """What the results say about the scale of what produced them: demo data, a demo-size pretraining."""

    pretraining_steps: int | None
    demo_text: bool
    demo_glue: bool
    demo_squad: bool
    demo_search_steps: int | None = None  # pretraining steps per candidate of a search on the demo data

    @classmethod
    def of(cls, results: Mapping[str, Any]) -> RunScale:
        record = results.get(RUN_RECORD) or {}
        pretraining_data = (results.get(PRETRAINING_RESULTS) or {}).get("data") or {}
        steps = (results.get(PRETRAINING_STATE) or {}).get("global_step")
        glue_data = (results.get(GLUE_RESULTS) or {}).get("data") or {}
        squad_data = (results.get(SQUAD_RESULTS) or {}).get("data") or {}
        recorded_demo = bool(record.get("demo_data"))
        search = results.get(SEARCH_SETTINGS) or {}
        return cls(
            demo_search_steps=search.get("pretraining_steps") if search.get("demo_data") else None,
            pretraining_steps=steps if isinstance(steps, int) else None,
            demo_text=bool(pretraining_data.get("demo_data")) or (recorded_demo and PRETRAINING_RESULTS in results),
            demo_glue=bool(glue_data.get("demo_data")) or (recorded_demo and GLUE_RESULTS in results),
            demo_squad=bool(squad_data.get("demo_data")) or (recorded_demo and SQUAD_RESULTS in results),
        )

    @property
    def demo_size_pretraining(self) -> bool:
        return self.pretraining_steps is not None and self.pretraining_steps < DEMO_SIZE_STEPS

    @property
    def is_demo(self) -> bool:
        return (
            self.demo_text or self.demo_glue or self.demo_squad or self.demo_size_pretraining
            or self.demo_search_steps is not None
        )

    def statements(self) -> list[str]:
        """One sentence per way in which the results are a demonstration, not a measurement."""
        items = []
        if self.demo_search_steps is not None:
            items.append(f"The search scored its candidates on the bundled demo data after {self.demo_search_steps:,} "
                         f"pretraining steps each (the paper: {PAPER_SEARCH_STEPS:,}).")
        if self.demo_size_pretraining:
            items.append(f"Pretrained for {self.pretraining_steps:,} optimizer steps, a demo-size run: fewer than BERT's "
                         f"{DEMO_SIZE_STEPS:,} warm-up steps alone (BERT trained for {BERT_PRETRAINING_STEPS:,}).")
        if self.demo_text:
            items.append("Pretrained on the project's bundled demo text (a prefix of WikiText-2's validation set, see "
                         "`demo_data/PROVENANCE.md`).")
        if self.demo_glue:
            items.append("GLUE scores are on the bundled demo subset: the first dev examples of each task (counts in the "
                         "table above), finetuned on a few hundred training examples.")
        if self.demo_squad:
            items.append("SQuAD scores are on the bundled demo subset: a few dozen questions from the dev files.")
        if items:
            items.append("These numbers show that the pipeline runs; they say nothing about the architecture's quality "
                         "and cannot be compared with the paper's.")
        return items


def _limitations(
    weights: Mapping[str, Any], results: Mapping[str, Any], paper_backbone: str | None, scale: RunScale
) -> list[str]:
    items = []
    if weights["kind"] == "random":
        items.append("The weights are random: the model's outputs mean nothing until it is pretrained "
                     "(`scripts/pretrain.py --config_file <this folder>/config.json`).")
    elif weights["kind"] == "search":
        items.append("The weights are the BIWS super-net's after a short search: shared with every other candidate "
                     "and trained only briefly. Pretrain this architecture before using it.")
    elif weights["kind"] == "unrecorded":
        items.append("No record of how these weights were trained came with the checkpoint.")
    items += scale.statements()
    if GLUE_RESULTS in results and _glue_proxy_tasks(results.get(SEARCH_RESULT) or {}):
        items.append("The architecture was selected by its proxy score on GLUE dev data, so dev scores of the "
                     "selected model are optimistic estimates.")
    if paper_backbone:
        items.append("The architecture is this project's reading of the paper's Figure 7 (see above); the paper's "
                     "own weights are not public, so no output of this model has been compared with the authors'.")
    items.append("Pretraining text (WikiText: Wikipedia articles) carries that source's biases; no bias or safety "
                 "evaluation was done. English only.")
    return items


def _environment(record: Mapping[str, Any]) -> str | None:
    """The run record's environment in one sentence: when, which code, which libraries, which machine."""
    if not record.get("timestamp"):
        return None
    parts = [f"started {record['timestamp']}"]
    git = record.get("git")
    if git:
        changes = " with uncommitted changes" if git.get("uncommitted_changes") else ""
        parts.append(f"code at git commit `{git['commit'][:12]}`{changes}")
    versions = record.get("versions") or {}
    shown = [f"{name} {versions[name]}" for name in ("torch", "transformers", "accelerate") if versions.get(name)]
    if shown:
        parts.append(", ".join(shown))
    machine = record.get("machine") or {}
    if machine:
        device = ", ".join(machine.get("gpus") or []) or f"CPU only ({machine.get('cpu_count')} cores, {machine.get('cpu')})"
        parts.append(f"on {device}")
    return "; ".join(parts)


def _model_path_note(settings: CardSettings) -> str:
    """The comment beside the path "How to use" loads from, when it is not a Hub id."""
    if settings.repo_id:
        return ""
    if settings.local_path and Path(settings.local_path).is_absolute():
        return "  # this folder; its Hub id once pushed"
    return "  # this folder, relative to the directory it was published from; its Hub id once pushed"


def render_model_card(folder: str | os.PathLike, settings: CardSettings, template: str | os.PathLike | None = None) -> ModelCard:
    """The model card of the repo folder ``folder`` (its ``config.json`` and ``results/``), from ``template``."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    results = read_results(folder)
    stats = _require(results, MODEL_STATS, ("model_class", "parameters", "backbone_parameters", "non_embedding_parameters", "forward_flops", "flops_seq_length"))
    weights = _require(results, WEIGHTS, ("kind", "note"))
    if stats is None or weights is None:
        raise CardError(f"{folder / RESULTS_DIR}: {MODEL_STATS} and {WEIGHTS} are required (publishing.hub writes them)")
    layers = config["layers"]
    vocab_size = config["vocab_size"]
    paper_backbone = paper_backbone_size(layers)
    record = results.get(RUN_RECORD) or {}
    scale = RunScale.of(results)

    eval_results: list[EvalResult] = []
    evaluation: dict[str, Any] = {}
    glue = _require(results, GLUE_RESULTS, ("best",))
    if glue is not None:
        evaluation["glue"], glue_eval = _glue_rows(glue, scale.demo_glue)
        eval_results += glue_eval
        if isinstance(glue.get("glue_average"), (int, float)):
            evaluation["glue_average"] = f"{glue['glue_average']:.2f}"
            evaluation["glue_average_scope"] = "only these tasks" if glue.get("glue_average_is_partial", True) else "all GLUE tasks"
        data_dir = (glue.get("data") or {}).get("data_dir") or next((
            arguments.get("data_dir") for arguments in (stage.get("arguments") or {} for stage in record.get("stages", []))
            if "task_name" in arguments and arguments.get("data_dir")
        ), None)  # older results: the finetune_glue.py stage of the run record
        if data_dir:
            evaluation["glue_data"] = f"`{data_dir}`" + (", the bundled demo subset" if scale.demo_glue else "")
        elif (glue.get("data") or {}).get("hub_dataset"):
            evaluation["glue_data"] = f"`{glue['data']['hub_dataset']}` from the Hub"
    squad = results.get(SQUAD_RESULTS)
    if squad is not None:
        evaluation["squad_version"], evaluation["squad_data"], evaluation["squad"], squad_eval = _squad_rows(squad)
        eval_results += squad_eval

    pretraining = None
    pretraining_results = results.get(PRETRAINING_RESULTS)
    if pretraining_results is not None:
        state = results.get(PRETRAINING_STATE) or {}
        data = pretraining_results.get("data") or {}
        pretraining = {
            "metrics": _loss_rows(pretraining_results, vocab_size),
            "steps": _number(state["global_step"]) if "global_step" in state else None,
            "batch_size": state.get("train_batch_size"),
            "seq_length": data.get("max_seq_length"),
            "files": ", ".join(f"`{path}`" for path in data.get("train_files") or []),
            "demo": scale.demo_size_pretraining or scale.demo_text,
        }

    search = None
    search_result = _require(results, SEARCH_RESULT, ("rank", "index", "score"))
    if search_result is not None:
        proxy_is_glue = bool(_glue_proxy_tasks(search_result))
        search = {
            "rank": search_result["rank"],
            "index": search_result["index"],
            "score": f"{_percent(search_result['score']):.2f}" if proxy_is_glue else _number(search_result["score"]),
            "proxy": _proxy_description(search_result, results.get(SEARCH_SETTINGS) or {}),
            "metrics": _loss_rows({**search_result.get("metrics", {}), **search_result.get("cost", {})}, vocab_size),
            "figures": [{"path": name, "title": title} for name, title in SEARCH_FIGURES.items() if (folder / name).is_file()],
        }

    pipeline_tag = PIPELINE_TAGS.get(stats["model_class"], "feature-extraction")
    card_data = ModelCardData(
        model_name=settings.model_name,
        language="en",
        license=settings.license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=[*TAGS, *(("random-weights",) if weights["kind"] == "random" else ()), *((DEMO_TAG,) if scale.is_demo else ())],
        datasets=list(settings.datasets) or _derived_datasets(results) or None,
        eval_results=eval_results or None,
    )
    hidden_size, heads = config["hidden_size"], config["num_attention_heads"]
    return ModelCard.from_template(
        card_data,
        template_path=str(template or DEFAULT_TEMPLATE),
        model_name=settings.model_name,
        model_path=settings.repo_id or settings.local_path or settings.model_name,
        model_path_note=_model_path_note(settings),
        pipeline_tag=pipeline_tag,
        pipeline_input=EXAMPLE_INPUTS.get(pipeline_tag),
        demo=scale.is_demo,
        weights={"kind": weights["kind"], "note": weights["note"], "related": weights.get("related") or []},
        shape={
            "num_layers": len(layers),
            "hidden_size": hidden_size,
            "num_attention_heads": heads,
            "head_size": hidden_size // heads,
            "intermediate_size": config["intermediate_size"],
            "max_position_embeddings": config["max_position_embeddings"],
            "vocab_size": vocab_size,
        },
        layers=architecture_rows(layers),
        architecture_figure=ARCHITECTURE_FIGURE,
        paper_backbone=paper_backbone,
        size={
            "model_class": stats["model_class"],
            "parameters": _number(stats["parameters"]),
            "backbone_parameters": _number(stats["backbone_parameters"]),
            "non_embedding_parameters": _number(stats["non_embedding_parameters"]),
            "forward_flops": _number(stats["forward_flops"]),
            "flops_seq_length": stats["flops_seq_length"],
        },
        search=search,
        pretraining=pretraining,
        evaluation=evaluation,
        commands=_command_stages(record),
        commands_cwd=record.get("cwd"),
        environment=_environment(record),
        limitations=_limitations(weights, results, paper_backbone, scale),
    )
