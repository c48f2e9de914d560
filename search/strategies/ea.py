"""A classic evolutionary algorithm: the same loop as OP-NAS with uniformly random mutations (paper Figure 6)."""

from __future__ import annotations

from ..mutation import UniformGuide
from .base import EvolutionStrategy, SearchView


class RegularEvolutionStrategy(EvolutionStrategy):
    """Top-K parents, C children each; every new op and kernel size is drawn uniformly."""

    name = "ea"

    def guide(self, view: SearchView) -> UniformGuide:
        return UniformGuide(self.space)
