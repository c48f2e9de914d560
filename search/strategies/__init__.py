"""Search strategies behind one interface (:class:`SearchStrategy`), looked up by name."""

from .base import EvolutionStrategy, Proposal, SearchStrategy, SearchView, StrategySettings
from .ea import RegularEvolutionStrategy
from .opnas import OpNasStrategy
from .random_search import RandomStrategy


STRATEGIES: dict[str, type[SearchStrategy]] = {
    strategy.name: strategy for strategy in (OpNasStrategy, RegularEvolutionStrategy, RandomStrategy)
}

__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "OpNasStrategy",
    "Proposal",
    "RandomStrategy",
    "RegularEvolutionStrategy",
    "SearchStrategy",
    "SearchView",
    "StrategySettings",
]
