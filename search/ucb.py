"""Operation priority (SPEC §4, paper Eq. 3): UCB scores per program position and per conv layer.

For every canonical program position the OP-NAS strategy keeps, per op, how often evaluated programs had
that op there (``N_i``) and the mean *normalised* score of those programs (``μ_i``); conv layers get the
same table over kernel sizes, one per layer. A mutation draws a new op from ``softmax(u / T)`` with

    u_i = μ_i + α · sqrt(2 · ln N / N_i)          (N = Σ N_i at that position)

restricted to the options that can be valid where the op is written (the mutation decides that set, see
:mod:`search.mutation`), so no probability ever goes to an option that cannot be used.

Three rules make the formula behave for every proxy and every space:

- **Normalisation: rank-based normal scores over the history.** Before scores enter ``μ``, every successful
  candidate's score is replaced by ``Φ⁻¹((r − ½) / H)``, where ``r`` is its rank among the ``H`` candidates
  evaluated so far (ties share their mean rank). The result has mean 0 and a spread of about one standard
  deviation whatever the proxy, so ``α`` and ``T`` are in units of the population's spread: ``T = 0.25``
  means an op whose programs score a quarter of a standard deviation higher is ``e`` times as likely. Ranks
  make the search invariant to any increasing transformation of the proxy (an affine rescaling, a loss
  versus its perplexity) and keep one broken candidate from compressing everyone else, which a z-score
  would not. The normalisation is recomputed over the whole history every generation.
- **Finite optimism for unseen options.** An option never observed at a position gets the best ``μ`` seen
  there plus the exploration bonus of a single observation, ``max_j μ_j + α · sqrt(2 · ln N)``: it is
  tried about as eagerly as the best known option, but it can never take all the probability (the
  previous rule, ``u = +∞``, let ``matmul`` own position 0 forever although it is never valid there).
  With nothing observed at a position, every option is equally likely.
- **Scale of α and T.** The paper uses α = 0.01 and Eq. 3 without a temperature (T = 1) on GLUE scores in
  points. Read in units of the population's spread, those values only mean the same if candidates' GLUE
  averages spread by about 4 points (one standard deviation), which we assume: the defaults are T = 0.25
  and α = 0.0025. Either way the exploration bonus is dwarfed by differences of the means, as in the paper.

Everything here is plain data; the strategy (:mod:`search.strategies.opnas`) owns and serialises it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from modeling_autobert_zero.attention_programs import parse_program


def normal_scores(scores: Sequence[float]) -> list[float]:
    """Rank-based normal scores ``Φ⁻¹((r − ½) / H)`` (ties get the score of their mean rank)."""
    count = len(scores)
    order = sorted(range(count), key=lambda i: scores[i])
    ranks = [0.0] * count
    start = 0
    while start < count:
        end = start
        while end + 1 < count and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1  # 1-based
        for position in range(start, end + 1):
            ranks[order[position]] = mean_rank
        start = end + 1
    normal = statistics.NormalDist()
    return [normal.inv_cdf((rank - 0.5) / count) for rank in ranks]


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one evaluated architecture tells operation priority: its raw score, the op at every canonical
    position of every attention layer, and the kernel size of every conv layer."""

    score: float
    ops: tuple[tuple[int, str], ...]
    kernels: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, layers: Sequence[Mapping[str, Any]], score: float) -> "Observation":
        ops: list[tuple[int, str]] = []
        kernels: list[tuple[int, int]] = []
        for layer_index, layer in enumerate(layers):
            if layer["type"] == "conv":
                kernels.append((layer_index, int(layer["kernel_size"])))
            else:
                ops.extend(enumerate(instruction.op for instruction in parse_program(layer["program"]).instructions))
        return cls(float(score), tuple(ops), tuple(kernels))

    def to_json(self) -> list[Any]:
        return [self.score, [list(pair) for pair in self.ops], [list(pair) for pair in self.kernels]]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> "Observation":
        score, ops, kernels = data
        return cls(float(score), tuple((int(p), str(op)) for p, op in ops), tuple((int(l), int(k)) for l, k in kernels))


@dataclasses.dataclass(frozen=True)
class PriorityTable:
    """Counts ``N_i`` and sums of normalised scores of each option at one position (``options`` fixes the order)."""

    options: tuple[Any, ...]
    counts: tuple[int, ...]
    score_sums: tuple[float, ...]

    @classmethod
    def empty(cls, options: Sequence[Any]) -> "PriorityTable":
        return cls(tuple(options), (0,) * len(options), (0.0,) * len(options))

    def means(self) -> tuple[float | None, ...]:
        return tuple(total / count if count else None for total, count in zip(self.score_sums, self.counts))

    def seen(self) -> tuple[Any, ...]:
        """The options observed at least once here (known to be valid at this position)."""
        return tuple(option for option, count in zip(self.options, self.counts) if count)


def ucb_scores(table: PriorityTable, alpha: float) -> list[float]:
    """``u_i = μ_i + α·sqrt(2·ln N / N_i)``; an unseen option gets ``max μ + α·sqrt(2·ln N)`` (finite);
    all zeros when nothing was observed (an even distribution)."""
    total = sum(table.counts)
    if total == 0:
        return [0.0] * len(table.options)
    means = table.means()
    log_total = math.log(total)
    best_mean = max(mean for mean in means if mean is not None)
    return [
        best_mean + alpha * math.sqrt(2.0 * log_total) if count == 0 else mean + alpha * math.sqrt(2.0 * log_total / count)
        for mean, count in zip(means, table.counts)
    ]


def softmax_probabilities(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """``softmax(scores / temperature)``, stable for any finite scores."""
    top = max(scores)
    weights = [math.exp((score - top) / temperature) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]


def entropy(probabilities: Sequence[float]) -> float:
    """Shannon entropy in nats."""
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def draw_option(
    options: Sequence[Any], probabilities: Sequence[float], rng: random.Random, exclude: Any = None
) -> Any:
    """One option drawn from ``probabilities``, renormalised without ``exclude``. Falls back to uniform over
    the remaining options when they carry no mass."""
    pairs = [(option, p) for option, p in zip(options, probabilities) if option != exclude]
    if not pairs:
        raise ValueError(f"no option left to draw from {list(options)} once {exclude!r} is excluded")
    total = sum(p for _, p in pairs)
    if total <= 0:
        return rng.choice([option for option, _ in pairs])
    threshold = rng.random() * total
    cumulative = 0.0
    for option, p in pairs:
        cumulative += p
        if threshold < cumulative:
            return option
    return pairs[-1][0]


@dataclasses.dataclass(frozen=True)
class OperationPriority:
    """One :class:`PriorityTable` of ops per canonical program position (as many as the longest program
    observed; all layers share them) and one table of kernel sizes per layer, built from observations."""

    ops: tuple[str, ...]
    kernel_sizes: tuple[int, ...]
    position_tables: tuple[PriorityTable, ...]
    kernel_tables: tuple[PriorityTable, ...]

    @classmethod
    def from_observations(
        cls, observations: Sequence[Observation], ops: Sequence[str], kernel_sizes: Sequence[int], num_layers: int
    ) -> "OperationPriority":
        """The statistics of ``observations``, their scores normalised over all of them (see the module doc)."""
        ops, kernel_sizes = tuple(ops), tuple(kernel_sizes)
        op_index = {op: i for i, op in enumerate(ops)}
        kernel_index = {kernel: i for i, kernel in enumerate(kernel_sizes)}
        length = max((position + 1 for observation in observations for position, _ in observation.ops), default=0)
        position_counts = [[0] * len(ops) for _ in range(length)]
        position_sums = [[0.0] * len(ops) for _ in range(length)]
        kernel_counts = [[0] * len(kernel_sizes) for _ in range(num_layers)]
        kernel_sums = [[0.0] * len(kernel_sizes) for _ in range(num_layers)]
        normalised = normal_scores([observation.score for observation in observations])
        for observation, value in zip(observations, normalised):
            for position, op in observation.ops:
                position_counts[position][op_index[op]] += 1
                position_sums[position][op_index[op]] += value
            for layer, kernel in observation.kernels:
                kernel_counts[layer][kernel_index[kernel]] += 1
                kernel_sums[layer][kernel_index[kernel]] += value
        return cls(
            ops,
            kernel_sizes,
            tuple(PriorityTable(ops, tuple(c), tuple(s)) for c, s in zip(position_counts, position_sums)),
            tuple(PriorityTable(kernel_sizes, tuple(c), tuple(s)) for c, s in zip(kernel_counts, kernel_sums)),
        )

    def position_table(self, position: int) -> PriorityTable:
        """The table of a position; a position beyond the longest program observed has an empty table."""
        if position < len(self.position_tables):
            return self.position_tables[position]
        return PriorityTable.empty(self.ops)

    def op_probabilities(self, position: int, options: Sequence[str], alpha: float, temperature: float) -> list[float]:
        """Eq. 3 at ``position``, over ``options`` only (the softmax renormalised to them)."""
        table = self.position_table(position)
        scores = dict(zip(table.options, ucb_scores(table, alpha)))
        return softmax_probabilities([scores[op] for op in options], temperature)

    def kernel_probabilities(self, layer: int, options: Sequence[int], alpha: float, temperature: float) -> list[float]:
        table = self.kernel_tables[layer]
        scores = dict(zip(table.options, ucb_scores(table, alpha)))
        return softmax_probabilities([scores[kernel] for kernel in options], temperature)

    def normalised_entropies(self, alpha: float, temperature: float) -> dict[str, list[float | None]]:
        """How far each distribution has moved from even, for the plots: entropy / log(support), 1 = even,
        0 = one option only. A position's support is the ops observed there (known to be valid there); a
        conv layer's is every kernel size. None where the support has fewer than two options."""

        def normalised(table: PriorityTable, options: Sequence[Any]) -> float | None:
            if len(options) < 2:
                return None
            scores = dict(zip(table.options, ucb_scores(table, alpha)))
            return entropy(softmax_probabilities([scores[option] for option in options], temperature)) / math.log(len(options))

        return {
            "positions": [normalised(table, table.seen()) for table in self.position_tables],
            "kernels": [normalised(table, table.options) for table in self.kernel_tables],
        }
