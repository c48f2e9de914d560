"""The interface every search strategy implements, and the evolution loop OP-NAS and the EA share.

A strategy is pure: it reads a :class:`SearchView` (plain data: evaluated architectures and scores, the keys
already used, the operation-priority statistics) and a ``random.Random``, and returns the next batch of
:class:`Proposal` s. It never sees a tensor, a module, or the evaluator; the controller asks for a batch
whenever the previous one has been evaluated.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ..mutation import MutationGuide, mutate
from ..objective import Objective, ScoredCandidate, rank_candidates
from ..space import Architecture, ModelDimensions, SearchSpace, SearchSpaceError, architecture_key, sample_architecture
from ..ucb import OperationPriority


@dataclasses.dataclass(frozen=True)
class StrategySettings:
    """Algorithm 1's knobs (paper: M=100, K=5, C=5, α=0.01) and how children are made."""

    population_size: int = 100
    num_parents: int = 5
    children_per_parent: int = 5
    ucb_alpha: float = 0.01
    ucb_temperature: float = 1.0
    inter_layer_probability: float = 0.5
    positions_per_mutation: int = 1
    max_attempts: int = 100

    def __post_init__(self) -> None:
        for name in ("population_size", "num_parents", "children_per_parent", "positions_per_mutation", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"search.{name}: expected a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.inter_layer_probability <= 1.0:
            raise ValueError(f"search.inter_layer_probability: expected a value in [0, 1], got {self.inter_layer_probability}")
        if self.ucb_alpha < 0 or self.ucb_temperature <= 0:
            raise ValueError(
                f"search: expected ucb_alpha >= 0 and ucb_temperature > 0, got {self.ucb_alpha} and {self.ucb_temperature}"
            )


@dataclasses.dataclass(frozen=True)
class SearchView:
    """Everything a strategy may read."""

    evaluated: tuple[ScoredCandidate, ...]  # successful candidates, in evaluation order
    num_candidates: int  # all recorded candidates, failed and infeasible ones included
    known_keys: frozenset[str]  # architecture keys already recorded or queued
    priority: OperationPriority


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A candidate to evaluate, with where it came from (for the log and the plots)."""

    architecture: Architecture
    parent: int | None
    mutation: str

    def to_json(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "parent": self.parent, "mutation": self.mutation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Proposal":
        return cls(architecture=data["architecture"], parent=data["parent"], mutation=data["mutation"])


class SearchStrategy(abc.ABC):
    """First the initial population of ``population_size`` random architectures, then one batch per
    generation from :meth:`propose_generation`. Every proposal is valid, canonical, feasible and new."""

    name: ClassVar[str]

    def __init__(self, space: SearchSpace, settings: StrategySettings, objective: Objective, dims: ModelDimensions):
        self.space = space
        self.settings = settings
        self.objective = objective
        self.dims = dims

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        """The next batch; empty only when the search space has no new feasible architecture left to find."""
        missing = self.settings.population_size - view.num_candidates
        if missing > 0:
            return self.random_proposals(missing, view, rng)
        if not view.evaluated:  # every candidate so far failed: nothing to select parents from
            return self.random_proposals(self.generation_size, view, rng)
        return self.propose_generation(view, rng)

    @property
    def generation_size(self) -> int:
        return self.settings.num_parents * self.settings.children_per_parent

    @abc.abstractmethod
    def propose_generation(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        """One generation's proposals, once the initial population has been evaluated."""

    def random_proposals(self, count: int, view: SearchView, rng: random.Random) -> list[Proposal]:
        seen = set(view.known_keys)
        proposals = []
        for _ in range(count):
            architecture = self._new_architecture(lambda: sample_architecture(self.space, rng), seen)
            if architecture is None:
                break
            proposals.append(Proposal(architecture, None, "random"))
        return proposals

    def _new_architecture(self, draw: Callable[[], Architecture], seen: set[str]) -> Architecture | None:
        """The first drawn architecture that is feasible and whose key is not in ``seen`` (which it joins)."""
        for _ in range(self.settings.max_attempts):
            architecture = draw()
            key = architecture_key(architecture)
            if key not in seen and self.objective.feasible(architecture, self.dims):
                seen.add(key)
                return architecture
        return None


class EvolutionStrategy(SearchStrategy):
    """Algorithm 1: the top-``num_parents`` candidates each make ``children_per_parent`` mutated children.

    Subclasses choose where a mutation's new ops and kernel sizes come from (:meth:`guide`). A child that
    repeats a known architecture is redrawn; if ``max_attempts`` draws all repeat, a random new
    architecture takes its place (recorded as such), so a generation keeps its size.
    """

    @abc.abstractmethod
    def guide(self, view: SearchView) -> MutationGuide:
        """Where this strategy's mutations draw new ops and kernel sizes from."""

    def propose_generation(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        parents = rank_candidates(view.evaluated, self.objective)[: self.settings.num_parents]
        guide = self.guide(view)
        seen = set(view.known_keys)
        proposals = []
        for parent in parents:
            for _ in range(self.settings.children_per_parent):
                descriptions: list[str] = []

                def draw_child() -> Architecture:
                    mutation = mutate(
                        parent.architecture,
                        self.space,
                        guide,
                        rng,
                        self.settings.inter_layer_probability,
                        self.settings.positions_per_mutation,
                        self.settings.max_attempts,
                    )
                    descriptions.append(mutation.description)
                    return mutation.architecture

                try:
                    child = self._new_architecture(draw_child, seen)
                except SearchSpaceError:
                    child = None
                if child is not None:
                    proposals.append(Proposal(child, parent.index, descriptions[-1]))
                    continue
                replacement = self._new_architecture(lambda: sample_architecture(self.space, rng), seen)
                if replacement is not None:
                    proposals.append(Proposal(replacement, None, "random (no new mutation of the parent)"))
        return proposals
