"""The search controller: what to evaluate next, and what the search learns from each result.

It owns the :class:`~search.state.SearchState` and works one *generation* at a time (Algorithm 1 updates the
population and the statistics per generation):

- :meth:`SearchController.open_generation` returns the current generation's proposals that are not recorded
  yet, in proposal order, asking the strategy for the next generation when the current one is done. The
  ``i``-th of them is candidate ``len(state.history) + i``, evaluated with seed ``candidate_seed(seed, index)``;
  none depends on another's result, so an executor may evaluate them in any order or all at once.
- :meth:`SearchController.record` commits results in proposal order, one candidate at a time (a history
  entry per candidate, so a search killed between two candidates loses nothing). When the last candidate of
  a generation is recorded, the strategy observes the generation's results and its new state is stored,
  opaquely, in the search state.

The strategy's state is whatever :meth:`~search.strategies.SearchStrategy.state_dict` returns: the
controller knows nothing of operation priority, so a new strategy needs no change here. It never touches a
tensor; in a distributed search only the main process runs it and broadcasts its decisions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

from modeling_autobert_zero.architecture import ModelDimensions, architecture_key, count_backbone_parameters

from .evaluator import EvaluationResult
from .objective import ScoredCandidate
from .space import SearchSpace
from .state import CandidateRecord, SearchState, finite_or_none, rng_from_json, rng_state_to_json
from .strategies import Proposal, SearchStrategy, SearchView


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
        strategy.load_state_dict(state.strategy_state)

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
        state = SearchState(
            config_digest=digest, controller_rng=rng_state_to_json(random.Random(seed)), strategy_state=strategy.state_dict()
        )
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
        return SearchView(evaluated, len(history), keys)

    def open_generation(self) -> list[Proposal]:
        """The current generation's proposals not recorded yet, in proposal order and within the budget
        (proposing the next generation when the current one is done); empty when the search is over
        (budget spent, or the space has no new feasible architecture)."""
        if self.state.finished:
            return []
        budget_left = self.max_evaluations - len(self.state.history)
        if budget_left <= 0:  # not "finished": a resume may raise the budget
            return []
        if not self.state.pending:
            batch = self.strategy.propose(self.view(), self.rng)
            if not batch:
                self.state.finished = True
                self.state.finish_reason = "the search space has no new feasible architecture left"
                return []
            self.state.pending = list(batch)
            self.state.generation += 1
            summary = {"generation": self.state.generation, "first_candidate": len(self.state.history), "size": len(batch)}
            strategy_summary = self.strategy.summary()
            if strategy_summary:
                summary["strategy"] = strategy_summary
            self.state.generations.append(summary)
            self.state.controller_rng = rng_state_to_json(self.rng)
        return list(self.state.pending[:budget_left])

    def next_proposal(self) -> Proposal | None:
        """The next candidate to evaluate, or None when the search is over."""
        batch = self.open_generation()
        return batch[0] if batch else None

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
        the strategy observes only successful candidates, once their whole generation is recorded.
        """
        if not self.state.pending or self.state.pending[0] != proposal:
            raise RuntimeError("record() must be given the proposals of open_generation(), in their order")
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
        if not self.state.pending:
            self._complete_generation()
        return record

    def _complete_generation(self) -> None:
        first = self.state.generations[-1]["first_candidate"]
        results = [
            ScoredCandidate(record.index, record.architecture, record.score, record.cost)
            for record in self.state.history[first:]
            if record.status == "ok"
        ]
        self.strategy.observe(results)
        self.state.strategy_state = self.strategy.state_dict()
