"""`scripts/publish.py`: repo folders from a trained checkpoint or from a search's best candidates, then a push.

Every folder is built completely before anything is pushed, so a failed push (offline, no token, no
network) leaves complete folders that can be pushed later.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from search.export import export_top_k
from search.plots import plot_search
from search.state import CONFIG_COPY
from training.run_info import is_demo_data, shown_path
from training.tokenization import load_tokenizer

from .arguments import PublishArguments
from .hub import PublishError, WeightsProvenance, build_repo_folder, load_checkpoint, push_folder, seeded_model
from .model_card import (
    GLUE_RESULTS,
    PRETRAINING_RESULTS,
    PRETRAINING_STATE,
    RUN_RECORD,
    SEARCH_RESULT,
    SEARCH_SETTINGS,
    SQUAD_RESULTS,
    CardSettings,
)


TRAINER_STATE = "trainer_state.json"
TRAINER_STATE_FIELDS = ("global_step", "max_steps", "train_batch_size", "num_train_epochs")
SEARCH_PLOTS = {"best_so_far.png": "search_best_so_far.png", "op_priority.png": "search_op_priority.png"}


@dataclass(frozen=True)
class PublishedRepo:
    folder: Path
    repo_id: str | None
    url: str | None = None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """A results file a pipeline stage wrote; a missing or malformed one is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise PublishError(f"{what}: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PublishError(f"{what}: {path} is not valid JSON ({error})") from None


def pretraining_record(checkpoint: Path, pretraining_results: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a pretraining run left beside its checkpoint: its final metrics (``pretraining_results.json``, or
    the file given) and, from the Trainer's ``trainer_state.json``, the step count and batch size."""
    record = {}
    results_file = Path(pretraining_results) if pretraining_results is not None else checkpoint / PRETRAINING_RESULTS
    if pretraining_results is not None or results_file.is_file():
        record[PRETRAINING_RESULTS] = read_json(results_file, PRETRAINING_RESULTS)
    if (checkpoint / TRAINER_STATE).is_file():
        state = read_json(checkpoint / TRAINER_STATE, TRAINER_STATE)
        record[PRETRAINING_STATE] = {key: state[key] for key in TRAINER_STATE_FIELDS if key in state}
    return record


def checkpoint_results(checkpoint: Path, arguments: PublishArguments) -> dict[str, Any]:
    """The results files of a checkpoint: those given, else the ones its training and search wrote beside it."""
    search_result = arguments.search_result
    if search_result is None and (checkpoint / SEARCH_RESULT).is_file():
        search_result = checkpoint / SEARCH_RESULT
    sources = {
        SEARCH_RESULT: search_result,
        GLUE_RESULTS: arguments.glue_results,
        SQUAD_RESULTS: arguments.squad_results,
        RUN_RECORD: arguments.run_record,
    }
    results = {name: read_json(path, name) for name, path in sources.items() if path is not None}
    return {**pretraining_record(checkpoint, arguments.pretraining_results), **results}


def checkpoint_weights(checkpoint: Path, results: dict[str, Any]) -> WeightsProvenance:
    """What the results say the checkpoint's weights are: pretrained, a search candidate's, or unrecorded."""
    if PRETRAINING_RESULTS in results:
        return WeightsProvenance(
            "pretrained", "Pretrained by this project (MLM + NSP); the run's final metrics are below.", str(checkpoint)
        )
    if SEARCH_RESULT in results:
        return WeightsProvenance(
            "search", "The BIWS super-net's weights for this architecture after the search (not pretrained on their own).", str(checkpoint)
        )
    return WeightsProvenance("unrecorded", "Published from a checkpoint given without a record of its training.", str(checkpoint))


def _search_figures(plots_dir: str | os.PathLike | None) -> dict[str, Path]:
    if plots_dir is None:
        return {}
    plots_dir = Path(plots_dir)
    if not plots_dir.is_dir():
        raise PublishError(f"search_plots: {plots_dir} is not a directory")
    return {target: plots_dir / source for source, target in SEARCH_PLOTS.items() if (plots_dir / source).is_file()}


def publish_checkpoint(arguments: PublishArguments) -> PublishedRepo:
    """The repo folder of ``arguments.checkpoint`` with its results, at ``output_dir/name``."""
    checkpoint = Path(arguments.checkpoint)
    model = load_checkpoint(checkpoint)
    tokenizer = _tokenizer(arguments.tokenizer or checkpoint)
    results = checkpoint_results(checkpoint, arguments)
    name = arguments.name or checkpoint.resolve().name
    folder = build_repo_folder(
        model,
        tokenizer,
        Path(arguments.output_dir) / name,
        _settings(arguments, name, arguments.repo_id),
        checkpoint_weights(checkpoint, results),
        results,
        _search_figures(arguments.search_plots),
        arguments.flops_seq_length,
        arguments.card_template,
    )
    return PublishedRepo(folder, arguments.repo_id)


def publish_search_candidates(arguments: PublishArguments) -> list[PublishedRepo]:
    """One repo folder per top candidate of ``arguments.search_dir`` (ranked and exported by `search.export`)."""
    search_dir = Path(arguments.search_dir)
    base_name = arguments.name or search_dir.resolve().name
    output_dir = Path(arguments.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    published = []
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as scratch:
        exported = export_top_k(search_dir, Path(scratch) / "export", arguments.candidates)
        if not exported:
            raise PublishError(f"{search_dir}: the search has no successful candidate to publish")
        plots = plot_search(search_dir, Path(scratch) / "plots")
        figures = _search_figures(plots[0].parent) if plots else {}
        extra = {name: read_json(path, name) for name, path in ((RUN_RECORD, arguments.run_record),) if path is not None}
        extra[SEARCH_SETTINGS] = search_settings(read_json(search_dir / CONFIG_COPY, CONFIG_COPY))
        for directory in exported:
            search_result = read_json(directory / SEARCH_RESULT, SEARCH_RESULT)
            rank = search_result["rank"]
            name = f"{base_name}-rank{rank:02d}"
            repo_id = _candidate_repo_id(arguments.repo_id, rank, len(exported))
            if search_result.get("has_weights"):
                model = load_checkpoint(directory)
                weights = WeightsProvenance(
                    "search",
                    "The BIWS super-net's weights for this architecture at the end of the search: shared with the "
                    "other candidates and trained only briefly.",
                    str(search_dir),
                )
            else:
                model = seeded_model(AutoBertZeroForPreTraining, AutoBertZeroConfig.from_pretrained(directory), arguments.seed)
                weights = WeightsProvenance(
                    "random",
                    f"The search ran without weight sharing and kept no weights: this is a seeded initialisation "
                    f"(seed {arguments.seed}) of the architecture it found.",
                    str(search_dir),
                )
            folder = build_repo_folder(
                model,
                _tokenizer(arguments.tokenizer or directory),
                output_dir / name,
                _settings(arguments, name, repo_id),
                weights,
                {SEARCH_RESULT: search_result, **extra},
                figures,
                arguments.flops_seq_length,
                arguments.card_template,
            )
            published.append(PublishedRepo(folder, repo_id))
    return published


def search_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What a search's scores rest on, from its resolved config: the evaluator, its data (and whether that is
    the bundled demo subset, judged from the working directory the publishing runs in), the budget."""
    evaluator = config["evaluator"]["name"]
    if evaluator != "biws":
        return {"evaluator": evaluator, "demo_data": False, "candidates": config["max_evaluations"]}
    biws = config["evaluator"]["biws"]
    files = [*biws["pretraining"]["train_files"], *biws["pretraining"]["validation_files"]]
    glue_dir = biws["finetuning"]["data_dir"] if biws["proxy"] == "glue" else None
    return {
        "evaluator": evaluator,
        "proxy": biws["proxy"],
        "train_files": biws["pretraining"]["train_files"],
        "glue_data_dir": glue_dir,
        "demo_data": any(is_demo_data(path) for path in [*files, *([glue_dir] if glue_dir else [])]),
        "pretraining_steps": biws["pretraining"]["max_steps"],
        "candidates": config["max_evaluations"],
    }


def _candidate_repo_id(repo_id: str | None, rank: int, count: int) -> str | None:
    if repo_id is None or count == 1:
        return repo_id
    return f"{repo_id}-rank{rank:02d}"


def _settings(arguments: PublishArguments, name: str, repo_id: str | None) -> CardSettings:
    return CardSettings(
        model_name=name,
        repo_id=repo_id,
        license=arguments.license,
        datasets=tuple(arguments.datasets or ()),
        local_path=shown_path(Path(arguments.output_dir) / name),
    )


def _tokenizer(source: str | os.PathLike):
    try:
        return load_tokenizer(source)
    except (OSError, ValueError) as error:
        raise PublishError(f"no tokenizer to publish ({error}); pass --tokenizer with a vocab.txt or tokenizer directory") from None


def run_publish(arguments: PublishArguments) -> list[PublishedRepo]:
    """Build every repo folder, then, with ``push``, push each; returns what was built (and pushed)."""
    if arguments.checkpoint is not None:
        published = [publish_checkpoint(arguments)]
    else:
        published = publish_search_candidates(arguments)
    if not arguments.push:
        return published
    return [
        PublishedRepo(repo.folder, repo.repo_id, push_folder(repo.folder, repo.repo_id, arguments.private))
        for repo in published
    ]
