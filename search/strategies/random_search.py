"""Random search: every generation is a batch of fresh random architectures (paper Figure 6's baseline)."""

from __future__ import annotations

import random

from .base import Proposal, SearchStrategy, SearchView


class RandomStrategy(SearchStrategy):
    """As many new random architectures per generation as the evolution makes children (K × C)."""

    name = "random"

    def propose_generation(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        return self.random_proposals(self.generation_size, view, rng)
