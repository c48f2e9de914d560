"""How far BIWS scores rank architectures as a benchmark table does, and how much they track the super-net's age.

A benchmark table (:mod:`search.tabular`) scores every architecture of a sub-space by training it from scratch
with its mini pretraining protocol (:mod:`search.benchmark_protocol`). Fidelity evaluates a seeded sample of the
table's architectures through BIWS — weight sharing, the ``mlm_loss`` proxy — at the protocol's own sizes, data
and held-out tokens (:func:`biws_setup_for`), in several seeded random orders, and compares:

- **Kendall τ** (τ-b, ties handled) between the BIWS scores (the mean over orders, and each order alone) and the
  table's scores (the mean over its seeds), with a percentile bootstrap interval that resamples architectures.
- **The seed-to-seed ceiling**: τ between the table's first two seeds on the same architectures. No single noisy
  measurement of an architecture can be expected to agree with the table better than another training of
  the same architecture does, so a τ near this ceiling is as good as the table can show.
- **The super-net-age confound**: Spearman's ρ between score and evaluation index within each order. Orders
  are random, so an architecture's quality is independent of its index, and any correlation is the
  super-net's age: with sequential BIWS a later candidate starts from weights more candidates have trained.

Three ways of running BIWS are measured on the same architectures, orders and candidate seeds (paired):

- ``sequential``: each candidate starts from the super-net after all earlier ones
  (:meth:`~search.biws_evaluator.BiwsEvaluator.evaluate`, BIWS as the paper describes it);
- ``generation``: generation-synchronous BIWS as the search runs it (``search/run_opnas.py``): the children of
  a generation all start from one snapshot, evaluated by the project's executor
  (:class:`~search.executors.LocalExecutor`), and their write-backs are applied in proposal order;
- ``generation_control``: the same run, each score minus that of a fixed *control* architecture (one the sample
  does not hold) trained from the same snapshot with the same seed; its write-back is discarded, so it
  measures the snapshot without changing it. Within a generation this changes no ranking; across generations
  it removes what the super-net's age adds to every child alike.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from .benchmark_protocol import MiniPretraining, MiniPretrainingProtocol, ProtocolError
from .biws_evaluator import BiwsEvaluator
from .config import BiwsSettings, ExecutorSettings, FinetuningSettings, ModelSettings, PretrainingSettings
from .controller import candidate_seed
from .evaluator import EvaluationContext
from .executors import CandidateJob, LocalExecutor, torch_threads
from .space import Architecture
from .tabular import BenchmarkTable, TableEntry


VARIANTS = ("sequential", "generation", "generation_control")
BEFORE = "sequential"
AGE_CORRELATION_METHOD = (
    "Spearman rho of score against evaluation index within each random order; the headline pools the orders "
    "(a drift common to them), *_per_order_mean_abs averages each order's |rho| (any drift within a search)"
)


class FidelityError(ValueError):
    """A table or setting fidelity cannot work with (no runnable protocol, too few architectures, ...)."""


# ---------------------------------------------------------------------------------------------------------
# Rank statistics.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RankStatistic:
    """A rank correlation and its p-value; ``value`` None (with the reason) where it is undefined, e.g. when
    one side holds a single distinct value (scipy returns NaN there, which strict JSON cannot hold)."""

    value: float | None
    p_value: float | None
    count: int
    undefined_reason: str | None = None

    def to_json(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = {name: self.value, f"{name}_p": self.p_value}
        if self.undefined_reason is not None:
            data[f"{name}_undefined_reason"] = self.undefined_reason
        return data


def _undefined_reason(x: np.ndarray, y: np.ndarray) -> str | None:
    if len(x) != len(y):
        raise ValueError(f"rank correlation of {len(x)} against {len(y)} values")
    if len(x) < 2:
        return f"needs at least 2 pairs, got {len(x)}"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return "a value is not finite"
    for side, values in (("first", x), ("second", y)):
        if np.unique(values).size < 2:
            return f"every {side} value is the same ({values[0]!r}): ties everywhere leave no ranking to compare"
    return None


def _rank_statistic(function: Callable, x: Sequence[float], y: Sequence[float]) -> RankStatistic:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    reason = _undefined_reason(x, y)
    if reason is None:
        value, p_value = function(x, y)
        if math.isfinite(value):
            return RankStatistic(float(value), float(p_value) if math.isfinite(p_value) else None, len(x))
        reason = f"scipy returned {value}"
    return RankStatistic(None, None, len(x), reason)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> RankStatistic:
    """Kendall's τ-b (ties counted as ties) with scipy's two-sided p-value."""
    return _rank_statistic(stats.kendalltau, x, y)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> RankStatistic:
    return _rank_statistic(stats.spearmanr, x, y)


@dataclasses.dataclass(frozen=True)
class BootstrapInterval:
    low: float | None
    high: float | None
    replicates: int
    undefined_replicates: int  # resamples whose τ was undefined (e.g. one architecture drawn every time)
    confidence: float


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | None], count: int, replicates: int = 2000, seed: int = 0, confidence: float = 0.95
) -> BootstrapInterval:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``count`` items (architectures) resampled
    with replacement, from a seeded generator. Resamples where the statistic is undefined (None) are left out
    and counted."""
    if replicates < 1:
        raise ValueError(f"bootstrap replicates: expected a positive integer, got {replicates}")
    if count < 2:
        raise ValueError(f"a bootstrap over {count} item(s): expected at least 2")
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, count, size=count)) for _ in range(replicates)]
    values = [value for value in values if value is not None]
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(v) for v in np.percentile(values, [tail, 100.0 - tail])) if values else (None, None)
    return BootstrapInterval(low, high, replicates, replicates - len(values), confidence)


def bootstrap_kendall_interval(
    x: Sequence[float], y: Sequence[float], replicates: int = 2000, seed: int = 0, confidence: float = 0.95
) -> BootstrapInterval:
    """Percentile bootstrap interval of Kendall's τ between ``x`` and ``y``, pairs resampled."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"bootstrap of Kendall's τ of {len(x)} against {len(y)} values")
    return bootstrap_interval(lambda chosen: kendall_tau(x[chosen], y[chosen]).value, len(x), replicates, seed, confidence)


def bootstrap_kendall_gain(
    better: Sequence[float], worse: Sequence[float], reference: Sequence[float], replicates: int = 2000, seed: int = 0
) -> BootstrapInterval:
    """Paired bootstrap interval of τ(better, reference) − τ(worse, reference): both τ on the same resampled
    architectures, so the interval is that of the difference, not of two independent estimates."""
    better, worse, reference = (np.asarray(values, dtype=float) for values in (better, worse, reference))

    def gain(chosen: np.ndarray) -> float | None:
        first, second = kendall_tau(better[chosen], reference[chosen]).value, kendall_tau(worse[chosen], reference[chosen]).value
        return None if first is None or second is None else first - second

    return bootstrap_interval(gain, len(reference), replicates, seed)


def seed_tau_ceiling(entries: Sequence[TableEntry]) -> RankStatistic:
    """τ between the first and the second seed's scores of the same entries: how well one training of an
    architecture ranks as another training of it does."""
    if any(len(entry.scores) < 2 for entry in entries):
        raise FidelityError("the seed-to-seed ceiling needs a table with at least two seeds per entry")
    return kendall_tau([entry.scores[0] for entry in entries], [entry.scores[1] for entry in entries])


def age_correlation(scores_in_order: Sequence[Sequence[float]]) -> tuple[RankStatistic, list[RankStatistic]]:
    """Spearman's ρ of score against evaluation index: over all orders pooled (each order's indices 0, 1, ...),
    and per order."""
    per_order = [spearman_rho(range(len(scores)), scores) for scores in scores_in_order]
    pooled = spearman_rho([i for scores in scores_in_order for i in range(len(scores))], [s for scores in scores_in_order for s in scores])
    return pooled, per_order


# ---------------------------------------------------------------------------------------------------------
# Sample, orders and the BIWS configuration of a table.
# ---------------------------------------------------------------------------------------------------------


SAMPLES = ("random", "spread")


def spread_over_ranking(ranked: Sequence[Any], count: int) -> list[Any]:
    """``count`` items evenly spaced over an already ranked list (first and last included)."""
    if count >= len(ranked):
        return list(ranked)
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)] if count > 1 else list(ranked[:1])


def sample_entries(table: BenchmarkTable, count: int, seed: int, how: str = "random") -> tuple[list[TableEntry], TableEntry]:
    """``count`` entries and a control entry outside them. ``random``: all drawn with ``random.Random(seed)``, the
    control last. ``spread``: evenly spaced over the table's ranking by mean score (so the sample spans the
    differences the table can show; the seed-to-seed ceiling is then optimistic, as entries were picked by a
    mean that holds both seeds' noise), the control drawn at random from the rest."""
    if how not in SAMPLES:
        raise FidelityError(f"sample: expected one of {list(SAMPLES)}, got {how!r}")
    if count < 3:
        raise FidelityError(f"num_architectures: Kendall τ and its bootstrap need at least 3 architectures, got {count}")
    if count + 1 > len(table):
        raise FidelityError(
            f"num_architectures={count}: table {table.name!r} holds {len(table)} architectures, and one more than the sample "
            "is needed for the control architecture"
        )
    rng = random.Random(seed)
    if how == "random":
        drawn = rng.sample(range(len(table)), count + 1)
        return [table.entries[position] for position in drawn[:count]], table.entries[drawn[count]]
    ranked = sorted(range(len(table)), key=lambda position: (-table.entries[position].score, position))
    chosen = spread_over_ranking(ranked, count)
    rest = sorted(set(range(len(table))) - set(chosen))
    return [table.entries[position] for position in chosen], table.entries[rng.choice(rest)]


def evaluation_orders(count: int, orders: int, seed: int) -> list[list[int]]:
    """``orders`` permutations of ``range(count)``, each from its own seeded stream, all distinct (a permutation
    equal to an earlier one is drawn again from the same stream)."""
    if orders < 1:
        raise FidelityError(f"orders: expected a positive integer, got {orders}")
    if orders > math.factorial(count):
        raise FidelityError(f"orders={orders}: {count} architectures have only {math.factorial(count)} orders")
    permutations: list[list[int]] = []
    for order in range(orders):
        rng = np.random.default_rng([seed, order])
        permutation = rng.permutation(count).tolist()
        while permutation in permutations:
            permutation = rng.permutation(count).tolist()
        permutations.append(permutation)
    return permutations


def table_protocol(table: BenchmarkTable, source: str) -> MiniPretrainingProtocol:
    """The mini pretraining protocol a table was scored with (its stored data summary set aside)."""
    protocol = {name: value for name, value in table.protocol.items() if name != "data"}
    try:
        return MiniPretrainingProtocol.from_json(protocol, f"{source}: protocol")
    except ProtocolError as error:
        raise FidelityError(
            f"{error}; BIWS fidelity needs a table scored by the mini pretraining protocol (search/benchmark_protocol.py), "
            "whose sizes and data it reuses"
        ) from None


def biws_setup_for(
    protocol: MiniPretrainingProtocol, work_dir: str | Path, steps: int | None = None
) -> tuple[MiniPretraining, BiwsSettings, ModelSettings]:
    """The protocol's data prepared by its own code in ``work_dir`` (split text, compact vocabulary, fixed
    held-out batches) and the BIWS settings that train on exactly that: the protocol's width, sequence length,
    batch, learning rate, warm-up share, weight decay, clipping and masking rate, dropout off, ``steps`` (None:
    the protocol's) steps per candidate, the ``mlm_loss`` proxy."""
    work_dir = Path(work_dir)
    pretraining = MiniPretraining(protocol, work_dir)
    steps = protocol.steps if steps is None else steps
    if steps < 1:
        raise FidelityError(f"steps: expected a positive integer, got {steps}")
    settings = BiwsSettings(
        tokenizer=str(work_dir / "vocab.txt") if protocol.compact_vocabulary else protocol.vocab_file,
        weight_sharing=True,
        proxy="mlm_loss",
        pretraining=PretrainingSettings(
            train_files=(str(work_dir / "train.raw"),),
            validation_files=(str(work_dir / "held_out.raw"),),
            max_seq_length=protocol.max_seq_length,
            max_steps=steps,
            batch_size=protocol.batch_size,
            learning_rate=protocol.learning_rate,
            warmup_ratio=protocol.warmup_steps / protocol.steps,
            weight_decay=protocol.weight_decay,
            max_grad_norm=protocol.max_grad_norm,
            mlm_probability=protocol.mlm_probability,
            nsp_probability=protocol.nsp_probability,
        ),
        finetuning=FinetuningSettings(max_seq_length=protocol.max_seq_length),  # unused by the mlm_loss proxy
    )
    model = ModelSettings(
        hidden_size=protocol.hidden_size,
        num_attention_heads=protocol.num_attention_heads,
        intermediate_size=protocol.intermediate_size,
        max_position_embeddings=protocol.max_seq_length,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        conv_kernel_dropout=0.0,
    )
    return pretraining, settings, model


def protocol_evaluator(
    pretraining: MiniPretraining, settings: BiwsSettings, model: ModelSettings, num_layers: int
) -> BiwsEvaluator:
    """A BIWS evaluator (fresh super-net) that trains on the protocol's pairs and is scored on the table's own
    fixed held-out tokens (every masking, trained word pieces only), which the protocol prepared.

    The evaluator's seed is the protocol's ``data_seed``: it seeds the next-sentence pairs, and with it they are
    the protocol's, which is checked here; it also seeds the super-net's initialisation."""
    evaluator = BiwsEvaluator(settings, model, num_layers, pretraining.protocol.data_seed)
    if len(evaluator.tokenizer) != len(pretraining.tokenizer):
        raise FidelityError(f"the BIWS tokenizer has {len(evaluator.tokenizer)} tokens, the protocol's {len(pretraining.tokenizer)}")
    if list(evaluator.pretraining_data["input_ids"]) != [row["input_ids"] for row in pretraining.train_rows]:
        raise FidelityError("BIWS built other training pairs than the protocol from the same files and seed")
    evaluator.held_out = pretraining.held_out
    return evaluator


# ---------------------------------------------------------------------------------------------------------
# Running BIWS over an order.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OrderRun:
    """One order's scores, position by position: ``positions[i]`` is the sample index evaluated i-th."""

    positions: list[int]
    scores: dict[str, list[float]]  # variant -> score at each position
    control_scores: list[float]  # per position: the control's score from that position's generation snapshot
    seconds: float


def _checked_score(result, what: str) -> float:
    if result is None or result.status != "ok" or result.score is None:
        raise FidelityError(f"{what} gave no score: {getattr(result, 'error', None) or getattr(result, 'status', 'no result')}")
    return float(result.score)


def run_order(
    make_evaluator: Callable[[], BiwsEvaluator],
    architectures: Sequence[Architecture],
    control: Architecture,
    positions: Sequence[int],
    generation_size: int,
    seed: int,
    threads: int,
    scratch_dir: Path,
) -> OrderRun:
    """Every variant over one order, each from a fresh super-net; the candidate at position ``i`` has the seed
    ``candidate_seed(seed, i)`` in every variant (paired), the control the seed ``candidate_seed(seed, -1)``."""
    if generation_size < 1:
        raise FidelityError(f"generation_size: expected a positive integer, got {generation_size}")
    started = time.perf_counter()
    seeds = [candidate_seed(seed, index) for index in range(len(positions))]

    sequential_evaluator = make_evaluator()
    sequential = []
    with torch_threads(threads):
        for index, position in enumerate(positions):
            context = EvaluationContext(index, seeds[index], scratch_dir / "sequential" / f"{index:06d}")
            result = sequential_evaluator.evaluate(list(architectures[position]), context)
            sequential.append(_checked_score(result, f"sequential BIWS of candidate {index}"))

    evaluator = make_evaluator()
    executor = LocalExecutor(ExecutorSettings(cpus_per_candidate=threads), scratch_dir / "generation")
    control_seed = candidate_seed(seed, -1)
    generation, controls = [], []
    for start in range(0, len(positions), generation_size):
        snapshot = evaluator.snapshot()
        indices = range(start, min(start + generation_size, len(positions)))
        jobs = [CandidateJob(index, seeds[index], list(architectures[positions[index]])) for index in indices]
        control_job = CandidateJob(-1, control_seed, list(control))
        outcomes = {job.index: outcome for job, outcome in executor.evaluate(evaluator, snapshot, [control_job, *jobs])}
        control_score = _checked_score(outcomes[-1].result, f"the control ({outcomes[-1].error or 'ok'})")
        for job in jobs:  # proposal order, as the search commits a generation
            outcome = outcomes[job.index]
            what = f"generation-synchronous BIWS of candidate {job.index} ({outcome.error or 'ok'})"
            generation.append(_checked_score(outcome.result, what))
            controls.append(control_score)
            evaluator.apply(outcome.write_back, f"candidate {job.index}'s write-back")
    scores = {
        "sequential": sequential,
        "generation": generation,
        "generation_control": [score - control for score, control in zip(generation, controls)],
    }
    return OrderRun(list(positions), scores, controls, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# The comparison.
# ---------------------------------------------------------------------------------------------------------


def _per_architecture_means(runs: Sequence[OrderRun], variant: str, count: int) -> list[float]:
    collected: list[list[float]] = [[] for _ in range(count)]
    for run in runs:
        for position, score in zip(run.positions, run.scores[variant]):
            collected[position].append(score)
    return [statistics.fmean(values) for values in collected]


def _per_architecture_scores(run: OrderRun, variant: str, count: int) -> list[float]:
    scores = [math.nan] * count
    for position, score in zip(run.positions, run.scores[variant]):
        scores[position] = score
    return scores


def _mean_abs(values: Sequence[float | None]) -> float | None:
    defined = [abs(value) for value in values if value is not None]
    return statistics.fmean(defined) if defined else None


def variant_summary(
    runs: Sequence[OrderRun], variant: str, table_scores: Sequence[float], replicates: int, seed: int
) -> dict[str, Any]:
    """τ against the table (mean over orders, with its bootstrap interval, and per order) and the age
    correlation (pooled and per order) of one variant."""
    count = len(table_scores)
    means = _per_architecture_means(runs, variant, count)
    tau = kendall_tau(means, table_scores)
    interval = bootstrap_kendall_interval(means, table_scores, replicates, seed)
    per_order = [kendall_tau(_per_architecture_scores(run, variant, count), table_scores) for run in runs]
    pooled, age_per_order = age_correlation([run.scores[variant] for run in runs])
    return {
        **tau.to_json("kendall_tau"),
        "kendall_tau_ci_low": interval.low,
        "kendall_tau_ci_high": interval.high,
        "kendall_tau_per_order": [statistic.value for statistic in per_order],
        "kendall_tau_per_order_p": [statistic.p_value for statistic in per_order],
        **pooled.to_json("age_correlation"),
        "age_correlation_per_order": [statistic.value for statistic in age_per_order],
        "age_correlation_per_order_p": [statistic.p_value for statistic in age_per_order],
        # a single search has a single order: drift in either direction is a confound there, and pooling orders
        # whose drifts differ in sign hides it
        "age_correlation_per_order_mean_abs": _mean_abs([statistic.value for statistic in age_per_order]),
        "bootstrap_undefined_replicates": interval.undefined_replicates,
        "scores": means,
    }


def _renamed(summary: dict[str, Any], prefix: str, new_prefix: str) -> dict[str, Any]:
    """The entries of ``summary`` whose names start with ``prefix``, that prefix replaced by ``new_prefix``."""
    return {new_prefix + name[len(prefix) :]: value for name, value in summary.items() if name.startswith(prefix)}


def fidelity_summary(
    runs: Sequence[OrderRun],
    entries: Sequence[TableEntry],
    table: BenchmarkTable,
    mitigation: str,
    replicates: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The numbers a fidelity run reports (see the module docstring); "before" is sequential BIWS, "after" the
    ``mitigation`` variant, whose τ is the headline ``kendall_tau``."""
    if mitigation not in VARIANTS or mitigation == BEFORE:
        raise FidelityError(f"mitigation: expected one of {[v for v in VARIANTS if v != BEFORE]}, got {mitigation!r}")
    table_scores = [entry.score for entry in entries]
    with warnings.catch_warnings():  # a resample with ties everywhere is counted, not warned about 2000 times
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        variants = {variant: variant_summary(runs, variant, table_scores, replicates, seed) for variant in VARIANTS}
        ceiling = seed_tau_ceiling(entries)
        ceiling_interval = bootstrap_kendall_interval([e.scores[0] for e in entries], [e.scores[1] for e in entries], replicates, seed)
        whole_table = seed_tau_ceiling(table.entries)
    after, before = variants[mitigation], variants[BEFORE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        gain = bootstrap_kendall_gain(after["scores"], before["scores"], table_scores, replicates, seed)
    tau, age_before, age_after = after["kendall_tau"], before["age_correlation"], after["age_correlation"]
    return {
        **_renamed(after, "kendall_tau", "kendall_tau"),
        **_renamed(before, "kendall_tau", "kendall_tau_before"),
        "kendall_tau_gain": None if tau is None or before["kendall_tau"] is None else tau - before["kendall_tau"],
        "kendall_tau_gain_ci_low": gain.low,  # paired bootstrap of tau(after) - tau(before)
        "kendall_tau_gain_ci_high": gain.high,
        **ceiling.to_json("seed_tau_ceiling"),
        "seed_tau_ceiling_ci_low": ceiling_interval.low,
        "seed_tau_ceiling_ci_high": ceiling_interval.high,
        **whole_table.to_json("table_seed_tau"),
        "table_icc": table.reliability.get("icc"),
        "age_correlation_method": AGE_CORRELATION_METHOD,
        **_renamed(before, "age_correlation", "age_correlation_before"),
        **_renamed(after, "age_correlation", "age_correlation_after"),
        "mitigation": mitigation,
        "goals": {
            "kendall_tau_at_least_0.6": tau is not None and tau >= 0.6,
            "kendall_tau_interval_above_0": after["kendall_tau_ci_low"] is not None and after["kendall_tau_ci_low"] > 0,
            "age_correlation_at_most_half": age_before is not None and age_after is not None and abs(age_after) <= abs(age_before) / 2,
        },
        "variants": variants,
        "table_scores": table_scores,
        "bootstrap_replicates": replicates,
        "bootstrap_seed": seed,
        "confidence": 0.95,
    }
