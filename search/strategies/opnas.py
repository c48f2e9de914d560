"""OP-NAS (paper Algorithm 1, Eq. 3): evolution whose mutations draw ops and kernel sizes by operation priority."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modeling_autobert_zero.architecture import ModelDimensions

from ..mutation import PriorityGuide
from ..objective import Objective, ScoredCandidate
from ..space import SearchSpace
from ..ucb import Observation, OperationPriority
from .base import EvolutionStrategy, StrategySettings


class OpNasStrategy(EvolutionStrategy):
    """New ops are drawn from ``softmax(u / T)`` of their position's UCB scores, kernel sizes from their
    layer's (``search/ucb.py``). The strategy owns the statistics: the observations of every successful
    candidate (raw score, op per canonical position, kernel per conv layer), from which the UCB tables are
    rebuilt, scores normalised over all of them, after every generation."""

    name = "opnas"

    def __init__(self, space: SearchSpace, settings: StrategySettings, objective: Objective, dims: ModelDimensions):
        super().__init__(space, settings, objective, dims)
        self.observations: list[Observation] = []
        self._observations_json: list[list[Any]] = []  # kept alongside: the state is stored every generation
        self.priority = self._priority()

    def _priority(self) -> OperationPriority:
        return OperationPriority.from_observations(self.observations, self.space.ops, self.space.kernel_sizes, self.space.num_layers)

    def guide(self) -> PriorityGuide:
        return PriorityGuide(self.priority, self.settings.ucb_alpha, self.settings.ucb_temperature)

    def observe(self, results: Sequence[ScoredCandidate]) -> None:
        observations = [Observation.of(result.architecture, result.score) for result in results]
        self.observations.extend(observations)
        self._observations_json.extend(observation.to_json() for observation in observations)
        self.priority = self._priority()

    def state_dict(self) -> dict[str, Any]:
        return {"observations": list(self._observations_json)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"observations"}:
            raise ValueError(f"strategy 'opnas': expected a state with 'observations', got {sorted(state)}")
        observations = [Observation.from_json(item) for item in state["observations"]]
        unknown = {op for observation in observations for _, op in observation.ops} - set(self.space.ops)
        unknown |= {
            f"kernel {kernel} at layer {layer}"
            for observation in observations
            for layer, kernel in observation.kernels
            if kernel not in self.space.kernel_sizes or not 0 <= layer < self.space.num_layers
        }
        if unknown:
            raise ValueError(f"strategy 'opnas': the state has ops or kernels {sorted(unknown)} outside the search space")
        self.observations = observations
        self._observations_json = [observation.to_json() for observation in observations]
        self.priority = self._priority()

    def summary(self) -> dict[str, Any]:
        """The mutation counts of the generation just proposed, and how far each distribution it was drawn
        from has moved from even (normalised entropy per position and per conv layer)."""
        entropies = self.priority.normalised_entropies(self.settings.ucb_alpha, self.settings.ucb_temperature)
        return {**super().summary(), "entropy": entropies}
