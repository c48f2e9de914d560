"""What "better" means: the proxy score, optionally with a size or speed budget or a Pareto front.

The paper ranks candidates by proxy score alone. Beyond the paper, a user can bound the backbone's size
(``max_parameters``: infeasible architectures are never proposed, since parameters follow from the
architecture alone), bound its measured latency (``max_latency_ms``: the evaluator measures it before
training and records the candidate as infeasible), and/or pick parents from the Pareto front of
(score ↑, cost ↓) instead of by score (``pareto``: ``"parameters"`` or ``"latency_ms"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modeling_autobert_zero.architecture import ModelDimensions, count_backbone_parameters


PARETO_COSTS = ("parameters", "latency_ms")


@dataclasses.dataclass(frozen=True)
class Objective:
    max_parameters: int | None = None
    max_latency_ms: float | None = None
    pareto: str | None = None

    def __post_init__(self) -> None:
        if self.pareto is not None and self.pareto not in PARETO_COSTS:
            raise ValueError(f"objective.pareto: expected one of {list(PARETO_COSTS)} or null, got {self.pareto!r}")

    def feasible(self, layers: Sequence[Mapping[str, Any]], dims: ModelDimensions) -> bool:
        """Whether an architecture fits the budgets known before evaluation (parameters)."""
        return self.max_parameters is None or count_backbone_parameters(layers, dims) <= self.max_parameters


@dataclasses.dataclass(frozen=True)
class ScoredCandidate:
    """An evaluated candidate as selection sees it."""

    index: int
    architecture: list[dict[str, Any]]
    score: float
    cost: Mapping[str, float]


def rank_candidates(candidates: Sequence[ScoredCandidate], objective: Objective) -> list[ScoredCandidate]:
    """Best first: by score (ties to the earlier candidate), or by Pareto front, then score, with ``pareto``.

    Fronts over (score ↑, cost ↓) are peeled with a sweep in score order: a candidate is on the current
    front when its cost is strictly below every higher-or-equally scored candidate's still in play.
    """
    by_score = sorted(candidates, key=lambda candidate: (-candidate.score, candidate.index))
    if objective.pareto is None:
        return by_score
    missing = [candidate.index for candidate in by_score if objective.pareto not in candidate.cost]
    if missing:
        raise ValueError(f"objective.pareto={objective.pareto!r}: candidates {missing[:5]} have no such cost recorded")
    remaining = sorted(by_score, key=lambda c: (-c.score, c.cost[objective.pareto], c.index))
    ranked: list[ScoredCandidate] = []
    while remaining:
        front, rest, lowest_cost = [], [], float("inf")
        for candidate in remaining:
            if candidate.cost[objective.pareto] < lowest_cost:
                front.append(candidate)
                lowest_cost = candidate.cost[objective.pareto]
            else:
                rest.append(candidate)
        ranked.extend(front)
        remaining = rest
    return ranked
