"""The paper's Figure 6 at the budget you give: best score so far for each strategy, with and without BIWS.

    python scripts/compare_strategies.py --config search/configs/tiny.yaml --max_evaluations 12 \
        --strategies opnas ea random --biws with without --seeds 0 1 2 [--output_dir runs/compare-strategies]

Runs one search per (strategy, weight sharing, seed) under ``--output_dir`` (a rerun continues unfinished
ones with ``--resume`` semantics), draws ``figure6.png`` (mean over seeds, min-max band) and prints, per
curve, the best score at the end and at half the budget (mean ± std over seeds), best first. With the
synthetic evaluator ``--biws`` does not apply and each strategy gets one curve.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from transformers import HfArgumentParser

from search.config import load_config
from search.plots import best_so_far, plot_best_so_far
from search.run_opnas import run_search
from search.state import STATE_FILE, atomic_write_json


BIWS_MODES = {"with": True, "without": False}


@dataclasses.dataclass
class CompareArguments:
    config: str = dataclasses.field(metadata={"help": "The search config every run starts from."})
    output_dir: str = dataclasses.field(default="runs/compare-strategies")
    strategies: list[str] = dataclasses.field(default_factory=lambda: ["opnas", "ea", "random"])
    biws: list[str] = dataclasses.field(default_factory=lambda: ["with", "without"], metadata={"help": "with and/or without"})
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    max_evaluations: int | None = dataclasses.field(default=None, metadata={"help": "Default: the config's."})


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses(args=argv)
    unknown = [mode for mode in arguments.biws if mode not in BIWS_MODES]
    if unknown:
        raise ValueError(f"--biws: expected 'with' and/or 'without', got {unknown}")
    base = load_config(arguments.config)
    modes = arguments.biws if base.evaluator.name == "biws" else [None]
    output_dir = Path(arguments.output_dir)

    curves: dict[str, list[np.ndarray]] = {}
    for strategy in arguments.strategies:
        for mode in modes:
            label = strategy if mode is None else f"{strategy} {mode} BIWS"
            for seed in arguments.seeds:
                run_dir = output_dir / f"{label.replace(' ', '-')}-seed{seed}"
                overrides = {"output_dir": str(run_dir), "strategy": strategy, "seed": seed, "export.top_k": 0}
                if mode is not None:
                    overrides["evaluator.biws.weight_sharing"] = BIWS_MODES[mode]
                if arguments.max_evaluations is not None:
                    overrides["max_evaluations"] = arguments.max_evaluations
                config = load_config(arguments.config, overrides)
                state = run_search(config, resume=(run_dir / STATE_FILE).exists())
                curves.setdefault(label, []).append(best_so_far(state.history))

    figure = plot_best_so_far(curves, output_dir / "figure6.png", "Best proxy score so far (paper Figure 6)")
    summary = {}
    for label, runs in curves.items():
        final = [float(np.nanmax(run)) for run in runs]
        half = [float(np.nanmax(run[: max(1, len(run) // 2)])) for run in runs]
        summary[label] = {"final_best": final, "half_budget_best": half}
    print(f"{'curve':<26} {'best at the end':>20} {'best at half budget':>22}")
    for label in sorted(summary, key=lambda name: -statistics.fmean(summary[name]["final_best"])):
        print(f"{label:<26} {_mean_std(summary[label]['final_best']):>20} {_mean_std(summary[label]['half_budget_best']):>22}")
    command = "python scripts/compare_strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_json(output_dir / "summary.json", {"command": command, "curves": summary})
    print(f"figure: {figure}\nrerun: {command}")
    return summary


if __name__ == "__main__":
    main()
