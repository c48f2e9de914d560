"""OP-NAS (paper Algorithm 1): evolution whose intra-layer mutations follow operation priority (UCB)."""

from __future__ import annotations

from ..mutation import PriorityGuide
from .base import EvolutionStrategy, SearchView


class OpNasStrategy(EvolutionStrategy):
    """New ops are drawn from ``softmax(u)`` of their position's UCB scores, kernel sizes from their layer's."""

    name = "opnas"

    def guide(self, view: SearchView) -> PriorityGuide:
        return PriorityGuide(view.priority, self.settings.ucb_alpha, self.settings.ucb_temperature)
