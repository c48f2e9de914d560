"""How well BIWS scores rank architectures: Kendall τ against longer from-scratch training (paper Appendix B).

    python scripts/fidelity.py --search_dir runs/opnas-tiny [--num_architectures 5]
                               [--pretraining_steps 200] [--finetuning_steps 100]

Takes ``--num_architectures`` successful candidates of the search, spread evenly over its score ranking,
trains each from a fresh initialisation (no weight sharing) for ``--pretraining_steps`` MLM + NSP steps
(default: 4× the search's), finetunes it on the search's proxy tasks, and prints Kendall's τ between the
search's (BIWS) scores and these scores. Everything else (data, sizes, proxy) is the search's own config.
Writes ``fidelity.json`` into the search directory.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import kendalltau
from transformers import HfArgumentParser

from search.biws_evaluator import BiwsEvaluator
from search.config import SearchConfig, dataclass_from_mapping
from search.controller import candidate_seed
from search.evaluator import EvaluationContext
from search.state import CONFIG_COPY, atomic_write_json, load_state


@dataclasses.dataclass
class FidelityArguments:
    search_dir: str = dataclasses.field(metadata={"help": "A finished (or running) search's output_dir."})
    num_architectures: int = dataclasses.field(default=5, metadata={"help": "Architectures to retrain (spread over the ranking)."})
    pretraining_steps: int | None = dataclasses.field(default=None, metadata={"help": "Default: 4× the search's."})
    finetuning_steps: int | None = dataclasses.field(default=None, metadata={"help": "Default: the search's."})


def spread_over_ranking(records: list, count: int) -> list:
    """``count`` records evenly spaced over the score ranking (best and worst included)."""
    ranked = sorted(records, key=lambda record: (-record.score, record.index))
    if count >= len(ranked):
        return ranked
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)] if count > 1 else ranked[:1]


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(FidelityArguments).parse_args_into_dataclasses(args=argv)
    search_dir = Path(arguments.search_dir)
    config = dataclass_from_mapping(SearchConfig, json.loads((search_dir / CONFIG_COPY).read_text()))
    biws = config.evaluator.biws
    longer = dataclasses.replace(
        biws,
        weight_sharing=False,
        pretraining=dataclasses.replace(biws.pretraining, max_steps=arguments.pretraining_steps or 4 * biws.pretraining.max_steps),
        finetuning=dataclasses.replace(biws.finetuning, max_steps=arguments.finetuning_steps or biws.finetuning.max_steps),
    )
    records = [record for record in load_state(search_dir).history if record.status == "ok"]
    if len(records) < 2:
        raise ValueError(f"{search_dir}: Kendall's τ needs at least two successful candidates, found {len(records)}")
    chosen = spread_over_ranking(records, arguments.num_architectures)
    evaluator = BiwsEvaluator(longer, config.model, config.space.num_layers, config.seed)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for record in chosen:
            context = EvaluationContext(record.index, candidate_seed(config.seed, record.index), Path(scratch) / str(record.index))
            result = evaluator.evaluate(record.architecture, context)
            rows.append({"index": record.index, "biws_score": record.score, "scratch_score": result.score})
            print(f"candidate {record.index}: BIWS {record.score:.4f}  from scratch ({longer.pretraining.max_steps} steps) {result.score:.4f}")
    tau, p_value = kendalltau([row["biws_score"] for row in rows], [row["scratch_score"] for row in rows])
    summary = {
        "kendall_tau": float(tau),
        "p_value": float(p_value),
        "pretraining_steps": longer.pretraining.max_steps,
        "search_pretraining_steps": biws.pretraining.max_steps,
        "architectures": rows,
        "command": "python scripts/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    atomic_write_json(search_dir / "fidelity.json", summary)
    print(f"Kendall tau = {tau:.3f} (p = {p_value:.3f}) over {len(rows)} architectures -> {search_dir / 'fidelity.json'}")
    return summary


if __name__ == "__main__":
    main()
