"""A classic evolutionary algorithm: the same loop as OP-NAS with uniformly random mutations (paper Figure 6)."""

from __future__ import annotations

from ..mutation import UniformGuide
from .base import EvolutionStrategy


class RegularEvolutionStrategy(EvolutionStrategy):
    """Top-K parents, C children each (inter- then intra-layer mutation); every new op (among those that can
    be valid where it is written) and every kernel size is drawn uniformly."""

    name = "ea"

    def guide(self) -> UniformGuide:
        return UniformGuide()
