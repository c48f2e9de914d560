"""Comparing search strategies fairly (paper Figure 6, and OP-NAS > EA > random shown with statistics).

A comparison runs every strategy once per seed. Seed ``s`` drives every strategy (the controller's random
generator starts from ``s``, so their initial populations are identical), budgets are equal, and no
strategy evaluates an architecture twice. Results are paired by seed:

- **Quality of a run**: the mean of the five best architectures it evaluated (``top5``), each counted at its
  table mean score (``table_mean_score``, which differs from the score the search saw only when the table
  evaluator draws one seed's score per query), or at its recorded score for other evaluators.
- **Tests**: Wilcoxon signed-rank on the per-seed ``top5`` values (``scipy.stats.wilcoxon``, zero
  differences dropped as in Wilcoxon's original method), **one-sided** in the direction the paper claims
  (OP-NAS > EA, EA > random, OP-NAS > random); the two-sided p-value is reported beside it. Where every
  paired difference is zero the test is undefined and p = 1.
- **Effect sizes**: the mean paired difference with a 95 % t-interval, the matched-pairs rank-biserial
  correlation (wins minus losses in signed-rank mass, in [-1, 1]) and wins/ties/losses over seeds.

**The paper's settings scaled to a table of N architectures** (:func:`paper_settings_for`). The paper spends a
budget of ~760 candidates as an initial population of M = 100 and generations of K·C = 25 (K = C = 5), about
26 generations, in a space far larger than its budget. On a table we keep the shape of that run and give it
a quarter of the table: budget B = min(760, round(N / 4)), M = round(B · 100 / 760), K = C =
max(1, round(sqrt(B · 25 / 760))); α and T are unchanged (they are in units of the population's spread,
``search/ucb.py``). The rule was fixed before any comparison was run and is not tuned per strategy.

**Synthetic landscapes** (:class:`~search.evaluator.SyntheticLandscape`: ``positional``, where the op per
position and the kernel per layer carry signal, and the ``op_blind`` control, where neither does) develop and
check the comparison before a real table exists: either searched directly (any space, far larger than the
budget: the paper's regime, settings unscaled) or materialised over a small space as an exhaustive table
(:func:`synthetic_table`, labelled SYNTHETIC in its name, protocol and provenance). They say nothing about
real architectures.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from modeling_autobert_zero.architecture import ModelDimensions

from .controller import SearchController, candidate_seed
from .evaluator import EvaluationContext, Evaluator, SyntheticLandscape
from .objective import Objective
from .space import SearchSpace, enumerate_layers
from .state import CandidateRecord, SearchState
from .strategies import STRATEGIES, StrategySettings
from .table_evaluator import TableEvaluator
from .tabular import BenchmarkTable, TableEntry


PAPER_BUDGET = 760
PAPER_POPULATION = 100
PAPER_GENERATION = 25  # K · C
TABLE_FRACTION = 0.25
TOP_K = 5
COMPARISONS = (("opnas", "ea"), ("ea", "random"), ("opnas", "random"))


@dataclasses.dataclass(frozen=True)
class ScaledSettings:
    budget: int
    population_size: int
    num_parents: int
    children_per_parent: int

    @property
    def generations(self) -> float:
        return (self.budget - self.population_size) / (self.num_parents * self.children_per_parent)


def paper_settings_for(table_size: int) -> ScaledSettings:
    """The paper's budget, M, K and C shrunk to a table of ``table_size`` architectures (module doc)."""
    if table_size < 2:
        raise ValueError(f"a comparison needs a table of at least 2 architectures, got {table_size}")
    budget = max(2, min(PAPER_BUDGET, round(table_size * TABLE_FRACTION)))
    population = min(budget - 1, max(1, round(budget * PAPER_POPULATION / PAPER_BUDGET)))
    parents = max(1, round(math.sqrt(budget * PAPER_GENERATION / PAPER_BUDGET)))
    return ScaledSettings(budget, population, parents, parents)


# ---------------------------------------------------------------------------------------------------------
# Running searches in memory (no files: a table answers instantly, so writing state would dominate).
# ---------------------------------------------------------------------------------------------------------


def run_in_memory(
    strategy: str,
    space: SearchSpace,
    settings: StrategySettings,
    evaluator: Evaluator,
    budget: int,
    seed: int,
    objective: Objective = Objective(),
    dims: ModelDimensions = ModelDimensions(),
) -> SearchState:
    """One search to ``budget`` candidates, through the same controller and strategies as ``run_search`` but
    without its files, logs and process group. An evaluator error stops it (a table lookup of an unknown
    architecture must not pass for a failed candidate)."""
    controller = SearchController.start(
        STRATEGIES[strategy](space, settings, objective, dims), space, dims, budget, seed, digest="in-memory"
    )
    while (proposal := controller.next_proposal()) is not None:
        index = len(controller.state.history)
        context = EvaluationContext(index, candidate_seed(seed, index), Path("."))
        controller.record(proposal, evaluator.evaluate(proposal.architecture, context))
    return controller.state


def quality(record: CandidateRecord) -> float | None:
    """What a candidate is worth for the comparison: its table mean score when known, else its score."""
    if record.status != "ok":
        return None
    return record.metrics.get("table_mean_score", record.score)


def best_so_far(history: Sequence[CandidateRecord]) -> np.ndarray:
    """The best quality among the first i+1 candidates (NaN until the first success)."""
    best, curve = -np.inf, []
    for record in history:
        value = quality(record)
        if value is not None:
            best = max(best, value)
        curve.append(best if np.isfinite(best) else np.nan)
    return np.array(curve)


def top_k_mean(history: Sequence[CandidateRecord], k: int = TOP_K) -> float:
    values = sorted((value for record in history if (value := quality(record)) is not None), reverse=True)
    if not values:
        raise ValueError("no successful candidate: no top-k mean")
    return statistics.fmean(values[:k])


def entropy_curves(state: SearchState) -> dict[str, np.ndarray]:
    """Per generation (rows) the normalised entropy of each position's and conv layer's distribution
    (columns; NaN where not recorded), from the strategy's generation summaries. Empty for strategies
    that record none."""
    summaries = [generation.get("strategy", {}).get("entropy") for generation in state.generations]
    if not any(summaries):
        return {}
    curves = {}
    for part in ("positions", "kernels"):
        width = max((len(summary[part]) for summary in summaries if summary), default=0)
        matrix = np.full((len(summaries), width), np.nan)
        for row, summary in enumerate(summaries):
            for column, value in enumerate(summary[part] if summary else []):
                if value is not None:
                    matrix[row, column] = value
        curves[part] = matrix
    return curves


def mean_entropy_curves(runs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """:func:`entropy_curves` of several runs averaged (NaN-aware; runs padded to the longest and widest)."""
    mean = {}
    for part in ("positions", "kernels"):
        matrices = [run[part] for run in runs if part in run and run[part].size]
        if not matrices:
            continue
        rows = max(matrix.shape[0] for matrix in matrices)
        columns = max(matrix.shape[1] for matrix in matrices)
        stacked = np.full((len(matrices), rows, columns), np.nan)
        for index, matrix in enumerate(matrices):
            stacked[index, : matrix.shape[0], : matrix.shape[1]] = matrix
        with warnings.catch_warnings():  # a cell no run recorded stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean[part] = np.nanmean(stacked, axis=0)
    return mean


def mutation_totals(state: SearchState) -> dict[str, Any]:
    """The strategy's mutation counts summed over every generation of a search."""
    totals: dict[str, Any] = {}
    for generation in state.generations:
        for name, value in generation.get("strategy", {}).get("mutation", {}).items():
            if isinstance(value, dict):
                bucket = totals.setdefault(name, {})
                for key, count in value.items():
                    bucket[key] = bucket.get(key, 0) + count
            else:
                totals[name] = totals.get(name, 0) + value
    return totals


# ---------------------------------------------------------------------------------------------------------
# Paired statistics.
# ---------------------------------------------------------------------------------------------------------


def paired_comparison(better: Sequence[float], worse: Sequence[float]) -> dict[str, Any]:
    """Is ``better`` > ``worse``, paired by seed? Wilcoxon signed-rank p-values and effect sizes (module doc)."""
    a, b = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    differences = a - b
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        p_greater = p_two_sided = 1.0
        rank_biserial = 0.0
    else:
        p_greater = float(stats.wilcoxon(a, b, alternative="greater").pvalue)
        p_two_sided = float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)
        ranks = stats.rankdata(np.abs(nonzero))
        rank_biserial = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())
    mean = float(differences.mean())
    if len(differences) > 1 and differences.std(ddof=1) > 0:
        half_width = float(stats.t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences)))
    else:
        half_width = 0.0
    return {
        "p_greater": p_greater,
        "p_two_sided": p_two_sided,
        "mean_difference": mean,
        "ci95": [mean - half_width, mean + half_width],
        "rank_biserial": rank_biserial,
        "wins": int((differences > 0).sum()),
        "ties": int((differences == 0).sum()),
        "losses": int((differences < 0).sum()),
    }


# ---------------------------------------------------------------------------------------------------------
# A comparison over seeds.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StrategyRuns:
    """One strategy's runs, one per seed, in seed order."""

    states: list[SearchState] = dataclasses.field(default_factory=list)

    @property
    def top5(self) -> list[float]:
        return [top_k_mean(state.history) for state in self.states]

    @property
    def curves(self) -> list[np.ndarray]:
        return [best_so_far(state.history) for state in self.states]


def compare(
    space: SearchSpace,
    evaluator: Evaluator,
    seeds: Sequence[int],
    settings: StrategySettings,
    budget: int,
    strategies: Sequence[str] = ("opnas", "ea", "random"),
    progress: Callable[[int], None] | None = None,
) -> dict[str, StrategyRuns]:
    """Every strategy once per seed, searching ``space`` with ``evaluator``, all in memory. ``progress`` is
    called with each seed once its runs are done."""
    runs = {strategy: StrategyRuns() for strategy in strategies}
    for seed in seeds:
        for strategy in strategies:
            runs[strategy].states.append(run_in_memory(strategy, space, settings, evaluator, budget, seed))
        if progress is not None:
            progress(seed)
    return runs


def table_settings(table: BenchmarkTable, **overrides: Any) -> tuple[StrategySettings, int]:
    """The strategy settings and budget :func:`paper_settings_for` gives ``table`` (``overrides``: any
    :class:`StrategySettings` field, or ``budget``)."""
    scaled = paper_settings_for(len(table))
    budget = overrides.pop("budget", None) or scaled.budget
    fields = {"population_size": scaled.population_size, "num_parents": scaled.num_parents, "children_per_parent": scaled.children_per_parent}
    return StrategySettings(**{**fields, **overrides}), budget


def compare_on_table(
    table: BenchmarkTable,
    seeds: Sequence[int],
    settings: StrategySettings,
    budget: int,
    strategies: Sequence[str] = ("opnas", "ea", "random"),
    per_query_seed: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, StrategyRuns]:
    """:func:`compare` on an exhaustive table: strategies search its space, so every proposal is in it."""
    if not table.exhaustive:
        raise ValueError(
            f"table {table.name!r} is not exhaustive over its space: strategies searching that space would propose "
            "architectures it cannot answer; compare strategies on an exhaustive table"
        )
    return compare(table.space, TableEvaluator(table, per_query_seed), seeds, settings, budget, strategies, progress)


def summarise(runs: Mapping[str, StrategyRuns]) -> dict[str, Any]:
    """Per strategy the top-5 means over seeds; per claimed ordering the paired statistics."""
    summary: dict[str, Any] = {"strategies": {}, "comparisons": {}}
    for strategy, strategy_runs in runs.items():
        values = strategy_runs.top5
        summary["strategies"][strategy] = {
            "top5_mean": statistics.fmean(values),
            "top5_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "top5_per_seed": values,
            "best_per_seed": [float(np.nanmax(curve)) for curve in strategy_runs.curves],
            "mutation": _sum_dicts([mutation_totals(state) for state in strategy_runs.states]),
        }
    for better, worse in COMPARISONS:
        if better in runs and worse in runs:
            summary["comparisons"][f"{better}_vs_{worse}"] = paired_comparison(runs[better].top5, runs[worse].top5)
    return summary


def _sum_dicts(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for item in items:
        for name, value in item.items():
            if isinstance(value, Mapping):
                total[name] = _sum_dicts([total.get(name, {}), value])
            else:
                total[name] = total.get(name, 0) + value
    return total


# ---------------------------------------------------------------------------------------------------------
# Synthetic tables (development and tests only).
# ---------------------------------------------------------------------------------------------------------


def synthetic_table(landscape: SyntheticLandscape, seeds: Sequence[int] = (0, 1), seed_noise: float = 0.5) -> BenchmarkTable:
    """An exhaustive table over ``landscape.space`` (small enough to enumerate) scored by a
    :class:`~search.evaluator.SyntheticLandscape`: per seed, the landscape's score plus seed noise of
    ``seed_noise`` × its nominal spread. Labelled SYNTHETIC in its name, protocol and provenance."""
    space = landscape.space
    layers = enumerate_layers(space)
    noise = seed_noise * landscape.nominal_spread
    entries = []
    for choice in itertools.product(layers, repeat=space.num_layers):
        architecture = [dict(layer) for layer in choice]
        scores = tuple(landscape.seed_score(architecture, seed, noise) for seed in seeds)
        entries.append(TableEntry(architecture, scores, (0.0,) * len(seeds)))
    return BenchmarkTable(
        name=f"SYNTHETIC-{landscape.kind}-{landscape.seed}",
        space=space,
        seeds=tuple(seeds),
        entries=tuple(entries),
        exhaustive=True,
        score_name=f"synthetic_{landscape.kind}_score",
        protocol={
            "synthetic": True,
            "landscape": landscape.kind,
            "landscape_seed": landscape.seed,
            "epistasis": landscape.epistasis,
            "seed_noise": noise,
            "definition": "search.evaluator.SyntheticLandscape",
        },
        reliability={"icc": intraclass_correlation([entry.scores for entry in entries])},
        provenance={"generator": "search.comparison.synthetic_table", "note": "SYNTHETIC: says nothing about real architectures"},
    )


def intraclass_correlation(scores: Sequence[Sequence[float]]) -> float:
    """ICC(1): one-way random effects, one rating per seed, ``(MSB − MSW) / (MSB + (k − 1)·MSW)``."""
    matrix = np.asarray(scores, dtype=float)
    count, seeds = matrix.shape
    row_means = matrix.mean(axis=1)
    between = seeds * ((row_means - matrix.mean()) ** 2).sum() / (count - 1)
    within = ((matrix - row_means[:, None]) ** 2).sum() / (count * (seeds - 1))
    return float((between - within) / (between + (seeds - 1) * within))
