"""The interface every search strategy implements, and the evolution loop OP-NAS and the EA share.

A strategy is pure and owns its state (NNI style). The controller asks it for one *generation* of
:class:`Proposal` s at a time (:meth:`SearchStrategy.propose`, given a :class:`SearchView` of plain data and a
``random.Random``), and once every proposal of that generation has been evaluated it hands the results over
(:meth:`SearchStrategy.observe`). Whatever the strategy learns lives in the strategy, and it serialises it
itself (:meth:`SearchStrategy.state_dict` / :meth:`SearchStrategy.load_state_dict`, JSON-able data) for the
controller to store opaquely in the search state. A strategy never sees a tensor, a module or the
evaluator, so a new strategy needs no change anywhere else: subclass, give it a ``name``, register it in
``search.strategies.STRATEGIES``.

The children of one generation depend on no result of the same generation (Algorithm 1 updates the
population and the statistics per generation), so an executor may evaluate them in any order or at once.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from modeling_autobert_zero.architecture import ModelDimensions, architecture_key

from ..mutation import MutationDiagnostics, MutationGuide, mutate
from ..objective import Objective, ScoredCandidate, rank_candidates
from ..space import Architecture, SearchSpace, SearchSpaceError, sample_architecture


@dataclasses.dataclass(frozen=True)
class StrategySettings:
    """Algorithm 1's knobs and how children are made.

    Paper: M = 100, K = 5, C = 5, α = 0.01 and Eq. 3 without temperature, on GLUE points. Here scores enter
    UCB as rank-based normal scores (``search/ucb.py``), so ``ucb_alpha`` and ``ucb_temperature`` are in units
    of the population's standard deviation; the defaults are the paper's values read on that scale
    (α = 0.01 points → 0.0025, T = 1 point → 0.25, for candidates whose GLUE averages spread by ~4 points).
    ``positions_per_mutation``: edits of the program in one intra-layer mutation.
    """

    population_size: int = 100
    num_parents: int = 5
    children_per_parent: int = 5
    ucb_alpha: float = 0.0025
    ucb_temperature: float = 0.25
    positions_per_mutation: int = 1
    max_attempts: int = 100

    def __post_init__(self) -> None:
        for name in ("population_size", "num_parents", "children_per_parent", "positions_per_mutation", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"search.{name}: expected a positive integer, got {getattr(self, name)}")
        if self.ucb_alpha < 0 or self.ucb_temperature <= 0:
            raise ValueError(
                f"search: expected ucb_alpha >= 0 and ucb_temperature > 0, got {self.ucb_alpha} and {self.ucb_temperature}"
            )


@dataclasses.dataclass(frozen=True)
class SearchView:
    """Everything a strategy may read about the search so far."""

    evaluated: tuple[ScoredCandidate, ...]  # successful candidates, in evaluation order
    num_candidates: int  # all recorded candidates, failed and infeasible ones included
    known_keys: frozenset[str]  # architecture keys already recorded or queued


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
    """First the initial population of ``population_size`` random architectures, then one generation at a
    time from :meth:`propose_generation`. Every proposal is valid, canonical, feasible and new."""

    name: ClassVar[str]

    def __init__(self, space: SearchSpace, settings: StrategySettings, objective: Objective, dims: ModelDimensions):
        self.space = space
        self.settings = settings
        self.objective = objective
        self.dims = dims

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        """The next generation; empty only when the search space has no new feasible architecture left."""
        missing = self.settings.population_size - view.num_candidates
        if missing > 0:
            return self.random_proposals(missing, view, rng)
        if not view.evaluated:  # every candidate so far failed: nothing to select parents from
            return self.random_proposals(self.generation_size, view, rng)
        return self.propose_generation(view, rng)

    def observe(self, results: Sequence[ScoredCandidate]) -> None:
        """The successful candidates of the generation just completed, in proposal order (called once per
        generation, after its last candidate). The base strategy learns nothing."""

    def state_dict(self) -> dict[str, Any]:
        """What the strategy has learnt, as JSON-able data (the controller stores it in the search state)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, but the search state holds {sorted(state)}")

    def summary(self) -> dict[str, Any]:
        """JSON-able figures about the generation just proposed (recorded with it, plotted); none by default."""
        return {}

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
    """Algorithm 1: the top-``num_parents`` candidates each make ``children_per_parent`` children, each an
    inter-layer mutation followed by an intra-layer one (:func:`search.mutation.mutate`).

    Subclasses choose where a mutation's new ops and kernel sizes come from (:meth:`guide`). A child is
    never a known architecture; if a parent has no new child left within ``max_attempts`` draws, a random
    new architecture takes its place and that of the parent's remaining children in this generation
    (recorded as such), so a generation keeps its size.
    """

    def __init__(self, space: SearchSpace, settings: StrategySettings, objective: Objective, dims: ModelDimensions):
        super().__init__(space, settings, objective, dims)
        self.diagnostics: MutationDiagnostics | None = None  # of the generation proposed last

    @abc.abstractmethod
    def guide(self) -> MutationGuide:
        """Where this strategy's mutations draw new ops and kernel sizes from."""

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        self.diagnostics = None
        return super().propose(view, rng)

    def propose_generation(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        parents = rank_candidates(view.evaluated, self.objective)[: self.settings.num_parents]
        guide = self.guide()
        seen = set(view.known_keys)
        self.diagnostics = MutationDiagnostics()

        def accept(key: str, architecture: Architecture) -> bool:
            return key not in seen and self.objective.feasible(architecture, self.dims)

        proposals = []
        dead_ends: set[str] = set()
        for parent in parents:
            exhausted = False
            for _ in range(self.settings.children_per_parent):
                mutation = None
                if not exhausted:
                    try:
                        mutation = mutate(
                            parent.architecture,
                            self.space,
                            guide,
                            rng,
                            accept,
                            self.settings.positions_per_mutation,
                            self.settings.max_attempts,
                            self.diagnostics,
                            dead_ends,
                        )
                    except SearchSpaceError:
                        exhausted = True
                if mutation is not None:
                    seen.add(mutation.key)
                    proposals.append(Proposal(mutation.architecture, parent.index, mutation.description))
                    continue
                replacement = self._new_architecture(lambda: sample_architecture(self.space, rng), seen)
                if replacement is not None:
                    proposals.append(Proposal(replacement, None, "random (no new mutation of the parent)"))
        return proposals

    def summary(self) -> dict[str, Any]:
        return {} if self.diagnostics is None else {"mutation": self.diagnostics.to_json()}
