"""Export a search's best architectures as ``from_pretrained``-ready checkpoints (also while it still runs).

    python search/export.py --search_dir runs/opnas-tiny [--top_k 5] [--destination runs/opnas-tiny/export]

For each of the top-k successful candidates (by score, or by Pareto front when the search's objective asks
for one) it writes ``config.json``, ``model.safetensors`` with the candidate's weights as the super-net holds
them *now* (what a BIWS child of it would inherit), the tokenizer, and ``search_result.json`` (index, score,
metrics, cost, the programs as expressions). A search without weight sharing has no super-net: then only
the config, tokenizer and result are written, to pretrain with ``scripts/pretrain.py --config_file``.
``leaderboard.json`` lists what was exported. Load one with
``AutoModelForPreTraining.from_pretrained(path)`` (or any task head) after ``import modeling_autobert_zero``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any


if __package__ in (None, ""):  # run as a file (python search/export.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import describe_architecture
from search.config import SearchConfig, dataclass_from_mapping
from search.objective import ScoredCandidate, rank_candidates
from search.state import CONFIG_COPY, SearchState, atomic_write_json, load_state
from search.supernet import SUPERNET_FILE_ROLE, BiwsSupernet


logger = logging.getLogger(__name__)

_READ_ATTEMPTS = 3  # a running search may replace its super-net file between our two reads


@dataclasses.dataclass
class ExportArguments:
    search_dir: str = dataclasses.field(metadata={"help": "The search's output_dir (holds search_state.json)."})
    top_k: int | None = dataclasses.field(default=None, metadata={"help": "How many to export (default: the config's export.top_k)."})
    destination: str | None = dataclasses.field(default=None, metadata={"help": "Where to write (default: SEARCH_DIR/export)."})


def _state_and_supernet(search_dir: Path) -> tuple[SearchState, BiwsSupernet | None]:
    """A consistent pair: the state and the super-net file it names (re-read if a running search replaced it)."""
    for _ in range(_READ_ATTEMPTS):
        state = load_state(search_dir)
        name = state.evaluator_files.get(SUPERNET_FILE_ROLE)
        if name is None:
            return state, None
        try:
            return state, BiwsSupernet.from_file(search_dir / name)
        except FileNotFoundError:
            continue
    raise RuntimeError(f"{search_dir}: the super-net file changed under every one of {_READ_ATTEMPTS} reads")


def _tokenizer(config: SearchConfig):
    from training.tokenization import load_tokenizer

    try:
        return load_tokenizer(config.evaluator.biws.tokenizer)
    except (OSError, ValueError) as error:
        logger.warning("no tokenizer exported: %s", error)
        return None


def export_top_k(search_dir: str | Path, destination: str | Path | None = None, top_k: int | None = None) -> list[Path]:
    """Write the top-k architectures of the search in ``search_dir``; returns the checkpoint directories."""
    search_dir = Path(search_dir)
    config = dataclass_from_mapping(SearchConfig, json.loads((search_dir / CONFIG_COPY).read_text()))
    destination = Path(destination) if destination is not None else search_dir / "export"
    top_k = top_k if top_k is not None else config.export.top_k
    state, supernet = _state_and_supernet(search_dir)
    records = {record.index: record for record in state.history if record.status == "ok"}
    candidates = [ScoredCandidate(r.index, r.architecture, r.score, r.cost) for r in records.values()]
    ranked = rank_candidates(candidates, config.objective)[:top_k]
    tokenizer = _tokenizer(config)
    if supernet is not None:
        model_settings = supernet.model_settings
    else:
        logger.warning("%s: no super-net (searched without weight sharing): exporting configs without weights", search_dir)
        model_settings = dataclasses.asdict(config.model)
        if tokenizer is not None:
            model_settings.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)

    exported, leaderboard = [], []
    for rank, candidate in enumerate(ranked, start=1):
        record = records[candidate.index]
        directory = destination / f"rank{rank:02d}-candidate{record.index:06d}"
        model_config = AutoBertZeroConfig(layers=record.architecture, **model_settings)
        if supernet is not None:
            model = AutoBertZeroForPreTraining(model_config)
            model.load_state_dict(supernet.extract(record.architecture), strict=True)
            model.save_pretrained(directory)
        else:
            model_config.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        result: dict[str, Any] = {
            "rank": rank,
            "index": record.index,
            "score": record.score,
            "metrics": record.metrics,
            "cost": record.cost,
            "layers": describe_architecture(record.architecture),
            "has_weights": supernet is not None,
        }
        atomic_write_json(directory / "search_result.json", result)
        exported.append(directory)
        leaderboard.append({**result, "path": directory.name})
    atomic_write_json(destination / "leaderboard.json", leaderboard)
    return exported


def main(argv: list[str] | None = None) -> list[Path]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (arguments,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    exported = export_top_k(arguments.search_dir, arguments.destination, arguments.top_k)
    for path in exported:
        logger.info("exported %s", path)
    return exported


if __name__ == "__main__":
    main()
