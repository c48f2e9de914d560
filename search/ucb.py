"""Operation priority (SPEC §4): UCB statistics per program position and per conv layer, as plain data.

For one position, option ``i`` (an op, or a kernel size) has been seen ``N_i`` times in evaluated
architectures with mean proxy score ``μ_i``; its priority is ``u_i = μ_i + α·sqrt(2·ln N / N_i)`` with
``N = Σ N_i``, and new options are drawn from ``softmax(u / temperature)`` (the paper uses temperature 1).
An option never seen has ``u_i = +∞``: the softmax then puts all its mass, evenly, on the unseen options,
which is UCB's rule that every arm is tried once before any is preferred.

Counts come from *evaluated* architectures only (a failed candidate has no score to average), one count per
(position, op) of every attention layer's canonical program and per conv layer's kernel size. Everything here
is immutable: recording an observation returns new statistics, so the search can log and replay each step.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from modeling_autobert_zero.attention_programs import parse_program


@dataclasses.dataclass(frozen=True)
class PriorityTable:
    """Counts and score sums of each option at one position (``options`` fixes their order)."""

    options: tuple[Any, ...]
    counts: tuple[int, ...]
    score_sums: tuple[float, ...]

    @classmethod
    def empty(cls, options: Sequence[Any]) -> "PriorityTable":
        return cls(tuple(options), (0,) * len(options), (0.0,) * len(options))

    def with_observation(self, option: Any, score: float) -> "PriorityTable":
        index = self.options.index(option)
        counts = list(self.counts)
        sums = list(self.score_sums)
        counts[index] += 1
        sums[index] += score
        return dataclasses.replace(self, counts=tuple(counts), score_sums=tuple(sums))

    def means(self) -> tuple[float | None, ...]:
        return tuple(total / count if count else None for total, count in zip(self.score_sums, self.counts))

    def to_json(self) -> dict[str, list]:
        return {"options": list(self.options), "counts": list(self.counts), "score_sums": list(self.score_sums)}

    @classmethod
    def from_json(cls, data: Mapping[str, list]) -> "PriorityTable":
        return cls(tuple(data["options"]), tuple(int(c) for c in data["counts"]), tuple(float(s) for s in data["score_sums"]))


def ucb_scores(table: PriorityTable, alpha: float) -> list[float]:
    """``u_i = μ_i + α·sqrt(2·ln N / N_i)``; ``+inf`` for options never seen."""
    total = sum(table.counts)
    scores = []
    for mean, count in zip(table.means(), table.counts):
        if count == 0:
            scores.append(math.inf)
        else:
            scores.append(mean + alpha * math.sqrt(2.0 * math.log(total) / count))
    return scores


def softmax_probabilities(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """A softmax that treats ``+inf`` as "only these, evenly" and is stable for any finite scores."""
    infinite = [math.isinf(score) and score > 0 for score in scores]
    if any(infinite):
        share = 1.0 / sum(infinite)
        return [share if flag else 0.0 for flag in infinite]
    top = max(scores)
    weights = [math.exp((score - top) / temperature) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]


def draw_option(
    options: Sequence[Any], probabilities: Sequence[float], rng: random.Random, exclude: Any = None
) -> Any:
    """One option drawn from ``probabilities``, renormalised without ``exclude`` (so a mutation changes
    something). Falls back to uniform over the remaining options when they carry no mass."""
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
    """One :class:`PriorityTable` of ops per program position (as many as the longest program seen) and
    one table of kernel sizes per layer."""

    ops: tuple[str, ...]
    kernel_sizes: tuple[int, ...]
    position_tables: tuple[PriorityTable, ...] = ()
    kernel_tables: tuple[PriorityTable, ...] = ()

    @classmethod
    def empty(cls, ops: Sequence[str], kernel_sizes: Sequence[int], num_layers: int) -> "OperationPriority":
        kernels = tuple(PriorityTable.empty(kernel_sizes) for _ in range(num_layers))
        return cls(tuple(ops), tuple(kernel_sizes), (), kernels)

    def position_table(self, position: int) -> PriorityTable:
        """The table of a position; a position beyond the longest program seen has an empty table."""
        if position < len(self.position_tables):
            return self.position_tables[position]
        return PriorityTable.empty(self.ops)

    def op_probabilities(self, position: int, alpha: float, temperature: float) -> list[float]:
        return softmax_probabilities(ucb_scores(self.position_table(position), alpha), temperature)

    def kernel_probabilities(self, layer: int, alpha: float, temperature: float) -> list[float]:
        return softmax_probabilities(ucb_scores(self.kernel_tables[layer], alpha), temperature)

    def with_architecture(self, layers: Sequence[Mapping[str, Any]], score: float) -> "OperationPriority":
        """The statistics after an architecture with this proxy score was evaluated."""
        positions = list(self.position_tables)
        kernels = list(self.kernel_tables)
        for layer_index, layer in enumerate(layers):
            if layer["type"] == "conv":
                kernels[layer_index] = kernels[layer_index].with_observation(layer["kernel_size"], score)
                continue
            for position, instruction in enumerate(parse_program(layer["program"]).instructions):
                while position >= len(positions):
                    positions.append(PriorityTable.empty(self.ops))
                positions[position] = positions[position].with_observation(instruction.op, score)
        return dataclasses.replace(self, position_tables=tuple(positions), kernel_tables=tuple(kernels))

    def to_json(self) -> dict[str, Any]:
        return {
            "ops": list(self.ops),
            "kernel_sizes": list(self.kernel_sizes),
            "position_tables": [table.to_json() for table in self.position_tables],
            "kernel_tables": [table.to_json() for table in self.kernel_tables],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "OperationPriority":
        return cls(
            tuple(data["ops"]),
            tuple(int(k) for k in data["kernel_sizes"]),
            tuple(PriorityTable.from_json(table) for table in data["position_tables"]),
            tuple(PriorityTable.from_json(table) for table in data["kernel_tables"]),
        )
