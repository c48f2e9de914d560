"""The search controller: what to evaluate next, and what the search learns from each result.

It owns the :class:`~search.state.SearchState` and changes it in exactly two places: :meth:`next_proposal`
(asks the strategy for a batch when the queue is empty) and :meth:`record` (turns an evaluation into a
history entry and updates the operation-priority statistics). It never touches a tensor; in a distributed
search only the main process runs it and broadcasts its decisions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

from .evaluator import EvaluationResult
from .objective import ScoredCandidate
from .space import ModelDimensions, SearchSpace, architecture_key, count_backbone_parameters
from .state import CandidateRecord, SearchState, finite_or_none, rng_from_json, rng_state_to_json
from .strategies import Proposal, SearchStrategy, SearchView
from .ucb import OperationPriority


def config_digest(settings: Any) -> str:
    """A fingerprint of the settings that decide the search's course (JSON-able data)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def candidate_seed(search_seed: int, index: int) -> int:
    """The seed candidate ``index`` is evaluated with: independent of resumes and of evaluation order."""
    return int.from_bytes(hashlib.sha256(f"{search_seed}:{index}".encode()).digest()[:4], "little")


class SearchController:
    def __init__(
        self,
        strategy: SearchStrategy,
        space: SearchSpace,
        dims: ModelDimensions,
        max_evaluations: int,
        state: SearchState,
    ):
        self.strategy = strategy
        self.space = space
        self.dims = dims
        self.max_evaluations = max_evaluations
        self.state = state
        self.rng = rng_from_json(state.controller_rng)

    @classmethod
    def start(
        cls,
        strategy: SearchStrategy,
        space: SearchSpace,
        dims: ModelDimensions,
        max_evaluations: int,
        seed: int,
        digest: str,
    ) -> "SearchController":
        priority = OperationPriority.empty(space.ops, space.kernel_sizes, space.num_layers)
        state = SearchState(config_digest=digest, priority=priority, controller_rng=rng_state_to_json(random.Random(seed)))
        return cls(strategy, space, dims, max_evaluations, state)

    def view(self) -> SearchView:
        history = self.state.history
        evaluated = tuple(
            ScoredCandidate(record.index, record.architecture, record.score, record.cost)
            for record in history
            if record.status == "ok"
        )
        keys = frozenset(record.key for record in history) | {
            architecture_key(proposal.architecture) for proposal in self.state.pending
        }
        return SearchView(evaluated, len(history), keys, self.state.priority)

    def next_proposal(self) -> Proposal | None:
        """The next candidate to evaluate, or None when the search is over (budget spent or space exhausted)."""
        if self.state.finished:
            return None
        if len(self.state.history) >= self.max_evaluations:  # not "finished": a resume may raise the budget
            return None
        if not self.state.pending:
            batch = self.strategy.propose(self.view(), self.rng)
            if not batch:
                self.state.finished = True
                self.state.finish_reason = "the search space has no new feasible architecture left"
                return None
            self.state.pending = list(batch)
            self.state.generation += 1
        self.state.controller_rng = rng_state_to_json(self.rng)
        return self.state.pending[0]

    def record(
        self,
        proposal: Proposal,
        result: EvaluationResult | None,
        error: str | None = None,
        overhead: dict[str, float] | None = None,
    ) -> CandidateRecord:
        """Record the evaluation of the proposal at the head of the queue. ``result`` None: it raised ``error``.
        ``overhead``: the search's own costs for this candidate (seconds spent proposing, checkpointing).

        A candidate whose score is missing or not finite is recorded as failed and never becomes a parent;
        only successful candidates update the operation-priority statistics.
        """
        if not self.state.pending or self.state.pending[0] != proposal:
            raise RuntimeError("record() must be given the proposal next_proposal() returned")
        self.state.pending.pop(0)
        index = len(self.state.history)
        metrics = {name: finite_or_none(value) for name, value in (result.metrics if result else {}).items()}
        cost = {name: finite_or_none(value) for name, value in (result.cost if result else {}).items()}
        cost["parameters"] = float(count_backbone_parameters(proposal.architecture, self.dims))
        cost.update(overhead or {})
        status, score = "failed", None
        if result is not None:
            error = result.error
            if result.status == "infeasible":
                status = "infeasible"
            elif result.score is None or not math.isfinite(result.score):
                error = error or f"the evaluator returned a non-finite score ({result.score})"
            else:
                status, score = "ok", float(result.score)
        record = CandidateRecord(
            index=index,
            key=architecture_key(proposal.architecture),
            architecture=proposal.architecture,
            parent=proposal.parent,
            mutation=proposal.mutation,
            generation=self.state.generation,
            status=status,
            score=score,
            metrics=metrics,
            cost=cost,
            error=error,
        )
        self.state.history.append(record)
        if status == "ok":
            self.state.priority = self.state.priority.with_architecture(proposal.architecture, score)
        self.state.controller_rng = rng_state_to_json(self.rng)
        return record

