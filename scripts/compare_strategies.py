"""Compare search strategies over paired seeds: OP-NAS, a classic EA and random search (paper Figure 6).

    python scripts/compare_strategies.py --benchmark benchmarks/TABLE.json --seeds 50 --json
    python scripts/compare_strategies.py --synthetic positional --seeds 50 --json          # SYNTHETIC landscape
    python scripts/compare_strategies.py --config search/configs/tiny.yaml --seeds 3 [--biws with without]
    python scripts/compare_strategies.py --write_synthetic_table T.json --synthetic positional --synthetic_space JSON

Seed ``s`` (``--first_seed`` … ``--first_seed + --seeds - 1``) drives every strategy; budgets are equal and
no strategy evaluates an architecture twice. What is compared, the tests and the effect sizes are described
in ``search/comparison.py``:

- ``--benchmark``: an exhaustive benchmark table looked up (``search/table_evaluator.py``), every run in
  memory; the paper's budget, M, K and C scaled to the table's size (``paper_settings_for``) unless given.
- ``--synthetic positional|op_blind``: a synthetic landscape (``search/evaluator.py``) searched directly over
  ``--synthetic_space`` (default: the paper's space), far larger than the budget, with the paper's settings
  unscaled (budget 760, M = 100, K = C = 5). ``positional`` rewards the right op per position and kernel per
  layer; ``op_blind`` is the control where neither carries signal. It says nothing about real architectures.
- ``--write_synthetic_table PATH``: materialise a synthetic landscape over a small ``--synthetic_space`` as an
  exhaustive table (labelled SYNTHETIC), e.g. to rehearse ``--benchmark`` on a table of the real one's size.
- ``--config``: real searches with ``search/run_opnas.py``'s runner, one output folder per (strategy, BIWS
  mode, seed) under ``--output_dir`` (a rerun continues unfinished ones), with and without weight sharing.

Prints the top-5 mean per strategy, the paired Wilcoxon tests with effect sizes, OP-NAS's priority entropy at
the first and last generation, and the mutation counts; writes ``best_so_far.png``, ``priority_entropy.png``
and ``summary.json`` to ``--output_dir``. With ``--json`` the last line is one JSON object (``opnas_top5_mean``,
``ea_top5_mean``, ``random_top5_mean``, ``opnas_vs_ea_p``, ``ea_vs_random_p``, ``opnas_vs_random_p``,
``table_size``, ``table_icc``, the settings, effect sizes and ``goal_met``).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from transformers import HfArgumentParser

from search.comparison import (
    COMPARISONS,
    PAPER_BUDGET,
    StrategyRuns,
    compare,
    compare_on_table,
    entropy_curves,
    mean_entropy_curves,
    summarise,
    synthetic_table,
    table_settings,
)
from search.config import SearchConfig, dataclass_from_mapping, load_config
from search.evaluator import SYNTHETIC_LANDSCAPES, SyntheticEvaluator, SyntheticLandscape
from search.plots import plot_best_so_far, plot_priority_entropy
from search.run_opnas import run_search
from search.space import SearchSpace
from search.state import STATE_FILE, atomic_write_json
from search.strategies import StrategySettings
from search.tabular import BenchmarkTable


BIWS_MODES = {"with": True, "without": False}


@dataclasses.dataclass
class CompareArguments:
    benchmark: str | None = dataclasses.field(default=None, metadata={"help": "An exhaustive benchmark table (JSON)."})
    synthetic: str | None = dataclasses.field(default=None, metadata={"help": f"A synthetic landscape: {list(SYNTHETIC_LANDSCAPES)}."})
    synthetic_space: str | None = dataclasses.field(
        default=None, metadata={"help": "The synthetic landscape's space as JSON (SearchSpace fields); default: the paper's."}
    )
    synthetic_seed: int = dataclasses.field(default=0, metadata={"help": "The synthetic landscape's seed."})
    synthetic_epistasis: float = dataclasses.field(default=0.5, metadata={"help": "× the landscape's nominal spread."})
    write_synthetic_table: str | None = dataclasses.field(
        default=None, metadata={"help": "Write the synthetic landscape over a small space as an exhaustive table and stop."}
    )
    config: str | None = dataclasses.field(default=None, metadata={"help": "Real searches from this config instead."})
    seeds: int = dataclasses.field(default=50, metadata={"help": "How many paired seeds."})
    first_seed: int = 0
    strategies: list[str] = dataclasses.field(default_factory=lambda: ["opnas", "ea", "random"])
    budget: int | None = dataclasses.field(default=None, metadata={"help": "Candidates per run (default: scaled to the table, or the config's)."})
    population_size: int | None = None
    num_parents: int | None = None
    children_per_parent: int | None = None
    ucb_alpha: float | None = None
    ucb_temperature: float | None = None
    per_query_seed: bool = dataclasses.field(default=False, metadata={"help": "Table: one seed's score per query (seed noise)."})
    biws: list[str] = dataclasses.field(default_factory=lambda: ["with", "without"], metadata={"help": "--config: with and/or without"})
    output_dir: str = "runs/compare-strategies"
    json: bool = dataclasses.field(default=False, metadata={"help": "End with one line of JSON."})

    def settings_overrides(self) -> dict:
        names = ("population_size", "num_parents", "children_per_parent", "ucb_alpha", "ucb_temperature")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def _landscape(arguments: CompareArguments) -> SyntheticLandscape:
    space = SearchSpace()
    if arguments.synthetic_space:
        space = dataclass_from_mapping(SearchSpace, json.loads(arguments.synthetic_space), "synthetic_space")
    nominal = SyntheticLandscape(space, arguments.synthetic).nominal_spread
    return SyntheticLandscape(space, arguments.synthetic, arguments.synthetic_seed, arguments.synthetic_epistasis * nominal)


def _progress(seeds: list[int]):
    started = time.perf_counter()

    def report(seed: int) -> None:
        done = seeds.index(seed) + 1
        print(f"seed {seed} done ({done}/{len(seeds)}, {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    return report


def _settings_context(settings: StrategySettings, budget: int) -> dict:
    names = ("population_size", "num_parents", "children_per_parent", "ucb_alpha", "ucb_temperature")
    return {"budget": budget, **{name: getattr(settings, name) for name in names}}


def _compare_on_table(arguments: CompareArguments, seeds: list[int]) -> tuple[dict[str, StrategyRuns], dict]:
    table = BenchmarkTable.load(arguments.benchmark)
    settings, budget = table_settings(table, budget=arguments.budget, **arguments.settings_overrides())
    print(
        f"table {table.name!r}: {len(table)} architectures, score {table.score_name}, ICC {table.reliability.get('icc')}; "
        f"budget {budget}, M={settings.population_size}, K={settings.num_parents}, C={settings.children_per_parent}, "
        f"α={settings.ucb_alpha}, T={settings.ucb_temperature}, {len(seeds)} seeds",
        flush=True,
    )
    runs = compare_on_table(table, seeds, settings, budget, arguments.strategies, arguments.per_query_seed, _progress(seeds))
    scores = sorted((entry.score for entry in table.entries), reverse=True)
    context = {
        "mode": "benchmark",
        "table": table.name,
        "table_size": len(table),
        "table_icc": table.reliability.get("icc"),
        "table_top5_mean": float(np.mean(scores[:5])),
        "table_mean": float(np.mean(scores)),
        **_settings_context(settings, budget),
        "per_query_seed": arguments.per_query_seed,
    }
    return runs, context


def _compare_on_landscape(arguments: CompareArguments, seeds: list[int]) -> tuple[dict[str, StrategyRuns], dict]:
    landscape = _landscape(arguments)
    settings = StrategySettings(**arguments.settings_overrides())
    budget = arguments.budget or PAPER_BUDGET
    print(
        f"SYNTHETIC landscape {landscape.kind!r} (seed {landscape.seed}) over {landscape.space}; budget {budget}, "
        f"M={settings.population_size}, K={settings.num_parents}, C={settings.children_per_parent}, "
        f"α={settings.ucb_alpha}, T={settings.ucb_temperature}, {len(seeds)} seeds",
        flush=True,
    )
    evaluator = SyntheticEvaluator(landscape.space, landscape.seed, landscape.epistasis, landscape=landscape.kind)
    runs = compare(landscape.space, evaluator, seeds, settings, budget, arguments.strategies, _progress(seeds))
    context = {
        "mode": "synthetic",
        "table": f"SYNTHETIC-{landscape.kind}-{landscape.seed}",
        "space": dataclasses.asdict(landscape.space),
        "table_size": None,
        "table_icc": None,
        **_settings_context(settings, budget),
    }
    return runs, context


def _compare_configs(arguments: CompareArguments, seeds: list[int]) -> tuple[dict[str, StrategyRuns], dict]:
    unknown = [mode for mode in arguments.biws if mode not in BIWS_MODES]
    if unknown:
        raise ValueError(f"--biws: expected 'with' and/or 'without', got {unknown}")
    base = load_config(arguments.config)
    modes = arguments.biws if base.evaluator.name == "biws" else [None]
    runs: dict[str, StrategyRuns] = {}
    for strategy in arguments.strategies:
        for mode in modes:
            label = strategy if mode in (None, "with") else f"{strategy} without BIWS"
            for seed in seeds:
                run_dir = Path(arguments.output_dir) / f"{label.replace(' ', '-')}-seed{seed}"
                overrides = {"output_dir": str(run_dir), "strategy": strategy, "seed": seed, "export.top_k": 0}
                overrides.update({f"search.{name}": value for name, value in arguments.settings_overrides().items()})
                if mode is not None:
                    overrides["evaluator.biws.weight_sharing"] = BIWS_MODES[mode]
                if arguments.budget is not None:
                    overrides["max_evaluations"] = arguments.budget
                config: SearchConfig = load_config(arguments.config, overrides)
                state = run_search(config, resume=(run_dir / STATE_FILE).exists(), progress=False)
                runs.setdefault(label, StrategyRuns()).states.append(state)
    settings = dataclasses.replace(base.search, **arguments.settings_overrides())
    context = {
        "mode": "config",
        "config": arguments.config,
        "table_size": None,
        "table_icc": None,
        **_settings_context(settings, arguments.budget or base.max_evaluations),
    }
    return runs, context


def _report(summary: dict, runs: dict[str, StrategyRuns]) -> None:
    print(f"\n{'strategy':<24} {'top-5 mean ± sd over seeds':>28} {'best found (mean)':>18}")
    for label, values in sorted(summary["strategies"].items(), key=lambda item: -item[1]["top5_mean"]):
        print(f"{label:<24} {values['top5_mean']:>19.4f} ± {values['top5_sd']:.4f} {np.mean(values['best_per_seed']):>18.4f}")
    print(f"\n{'claim':<20} {'p (one-sided)':>14} {'p (two-sided)':>14} {'mean diff [95% CI]':>30} {'rank-biserial':>14} {'W/T/L':>10}")
    for name, result in summary["comparisons"].items():
        low, high = result["ci95"]
        claim = name.replace("_vs_", " > ")
        interval = f"{result['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}]"
        print(
            f"{claim:<20} {result['p_greater']:>14.3g} {result['p_two_sided']:>14.3g} {interval:>30} "
            f"{result['rank_biserial']:>14.3f} {result['wins']:>4}/{result['ties']}/{result['losses']}"
        )
    for label, strategy_runs in runs.items():
        mean = mean_entropy_curves([curve for curve in map(entropy_curves, strategy_runs.states) if curve])
        for part, matrix in mean.items():
            if len(matrix) > 1:
                pairs = ", ".join(f"{first:.2f}->{last:.2f}" for first, last in zip(matrix[1], matrix[-1]))
                print(f"{label}: normalised entropy per {part[:-1]}, generation 1 -> last (mean over seeds): {pairs}")
        mutation = summary["strategies"][label]["mutation"]
        if mutation.get("children"):
            children = mutation["children"]
            considered = mutation["options_offered"] + mutation["options_excluded"]
            print(
                f"{label}: per child {mutation['intra_attempts'] / children:.2f} intra-layer attempts, "
                f"{mutation['redrawn_children'] / children:.2f} redraws; of the ops an edit could write, "
                f"{mutation['options_offered'] / max(1, considered):.0%} were valid there and offered, the rest left out; "
                f"drawn ops without a new child {mutation['ops_without_new_child']}; ops moved by canonicalisation "
                f"{mutation['landed_elsewhere']}; edits {mutation['edits']}; ops used per position {mutation['positions']}"
            )


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses(args=argv)
    if arguments.write_synthetic_table is not None:
        if arguments.synthetic is None:
            raise ValueError("--write_synthetic_table: give the landscape with --synthetic")
        path = synthetic_table(_landscape(arguments)).save(arguments.write_synthetic_table)
        print(f"wrote {path} and {path.with_suffix('.csv')} (SYNTHETIC)")
        return {"table": str(path)}
    sources = [name for name in ("benchmark", "synthetic", "config") if getattr(arguments, name) is not None]
    if len(sources) != 1:
        raise ValueError(f"give exactly one of --benchmark, --synthetic, --config (got {sources or 'none'})")
    if arguments.seeds < 1:
        raise ValueError(f"--seeds: expected a positive number of seeds, got {arguments.seeds}")
    seeds = list(range(arguments.first_seed, arguments.first_seed + arguments.seeds))
    started = time.perf_counter()
    if arguments.config is not None:
        runs, context = _compare_configs(arguments, seeds)
    elif arguments.synthetic is not None:
        runs, context = _compare_on_landscape(arguments, seeds)
    else:
        runs, context = _compare_on_table(arguments, seeds)
    seconds = time.perf_counter() - started

    summary = summarise(runs)
    _report(summary, runs)
    output_dir = Path(arguments.output_dir)
    figure = plot_best_so_far({label: r.curves for label, r in runs.items()}, output_dir / "best_so_far.png",
                              f"Best score so far ({context.get('table', context.get('config'))})")
    entropies = [curve for r in runs.values() for curve in map(entropy_curves, r.states) if curve]
    if entropies:
        plot_priority_entropy(entropies, output_dir / "priority_entropy.png", "OP-NAS operation priority, mean over seeds")
    command = "python scripts/compare_strategies.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = {**context, "seeds": len(seeds), "first_seed": arguments.first_seed, "seconds": seconds}
    for label, values in summary["strategies"].items():
        result[f"{label.replace(' ', '_')}_top5_mean"] = values["top5_mean"]
        result[f"{label.replace(' ', '_')}_top5_sd"] = values["top5_sd"]
    goal = True
    for better, worse in COMPARISONS:
        comparison = summary["comparisons"].get(f"{better}_vs_{worse}")
        if comparison is None:
            goal = False
            continue
        result[f"{better}_vs_{worse}_p"] = comparison["p_greater"]
        result[f"{better}_vs_{worse}_p_two_sided"] = comparison["p_two_sided"]
        result[f"{better}_vs_{worse}_mean_difference"] = comparison["mean_difference"]
        result[f"{better}_vs_{worse}_rank_biserial"] = comparison["rank_biserial"]
        goal = goal and comparison["p_greater"] < 0.05 and comparison["mean_difference"] > 0
    result["goal_met"] = goal
    atomic_write_json(output_dir / "summary.json", {"command": command, **result, "summary": summary})
    print(f"\nfigures: {figure.parent}; {len(seeds)} seeds × {len(runs)} strategies in {seconds:.1f} s\nrerun: {command}")
    if arguments.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
