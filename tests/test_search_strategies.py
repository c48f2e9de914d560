"""The strategy interface: a strategy owns its state, the controller stores it opaquely and works per generation."""

from __future__ import annotations

import json
import random

import pytest

from modeling_autobert_zero.architecture import ModelDimensions
from search.controller import SearchController, candidate_seed
from search.evaluator import EvaluationResult, SyntheticEvaluator
from search.objective import Objective
from search.run_opnas import run_search
from search.space import SearchSpace
from search.state import STATE_FILE, load_state
from search.strategies import STRATEGIES, SearchStrategy, StrategySettings
from test_search_loop import synthetic_config


class ThresholdStrategy(SearchStrategy):
    """A toy strategy defined here, not in the package: random proposals, and a state of its own (the best
    score seen and how many generations it observed) that it serialises itself."""

    name = "threshold"

    def __init__(self, *args):
        super().__init__(*args)
        self.best = None
        self.generations_observed = 0
        self.observed_indices: list[list[int]] = []

    def propose_generation(self, view, rng):
        return self.random_proposals(self.generation_size, view, rng)

    def observe(self, results):
        self.generations_observed += 1
        self.observed_indices.append([result.index for result in results])
        self.best = max([self.best or float("-inf"), *(result.score for result in results)])

    def state_dict(self):
        return {"best": self.best, "generations_observed": self.generations_observed, "observed_indices": self.observed_indices}

    def load_state_dict(self, state):
        self.best = state["best"]
        self.generations_observed = state["generations_observed"]
        self.observed_indices = [list(indices) for indices in state["observed_indices"]]


def config(output_dir, **overrides):
    settings = {"strategy": "threshold", "max_evaluations": 22, "search.population_size": 6, "search.num_parents": 2,
                "search.children_per_parent": 2, "space.num_layers": 2, "space.max_program_length": 6}
    return synthetic_config(output_dir, **{**settings, **overrides})


def test_a_new_strategy_needs_no_controller_change_and_its_state_survives_a_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(STRATEGIES, "threshold", ThresholdStrategy)
    straight = run_search(config(tmp_path / "straight"), progress=False)
    assert straight.strategy_state["generations_observed"] == 5  # 6 + 4 × 4 = 22: the population and 4 generations
    assert straight.strategy_state["best"] == max(record.score for record in straight.history)
    assert straight.strategy_state["observed_indices"][0] == list(range(6))
    assert json.loads((tmp_path / "straight" / STATE_FILE).read_text())["strategy_state"] == straight.strategy_state

    run_search(config(tmp_path / "resumed", max_evaluations=9), progress=False)  # stops inside generation 1
    halfway = load_state(tmp_path / "resumed")
    assert halfway.strategy_state["generations_observed"] == 1 and len(halfway.pending) == 1
    resumed = run_search(config(tmp_path / "resumed"), resume=True, progress=False)
    assert resumed.strategy_state == straight.strategy_state
    assert [(r.key, r.score) for r in resumed.history] == [(r.key, r.score) for r in straight.history]


def test_a_generation_is_proposed_whole_and_observed_once_its_last_candidate_is_recorded():
    space = SearchSpace(num_layers=2, max_program_length=6)
    settings = StrategySettings(population_size=4, num_parents=2, children_per_parent=2)
    strategy = ThresholdStrategy(space, settings, Objective(), ModelDimensions())
    controller = SearchController.start(strategy, space, ModelDimensions(), max_evaluations=10, seed=0, digest="test")
    synthetic = SyntheticEvaluator(space)

    generation = controller.open_generation()
    assert len(generation) == 4 and controller.open_generation() == generation  # asking again proposes nothing new
    with pytest.raises(RuntimeError, match="in their order"):  # results are committed in proposal order
        controller.record(generation[1], EvaluationResult(score=0.0))
    for proposal in generation[:-1]:
        controller.record(proposal, EvaluationResult(score=synthetic.score(proposal.architecture)))
        assert strategy.generations_observed == 0  # nothing is learnt before the generation is complete
    controller.record(generation[-1], EvaluationResult(score=synthetic.score(generation[-1].architecture)))
    assert strategy.observed_indices == [[0, 1, 2, 3]]
    assert controller.state.strategy_state == strategy.state_dict()

    second = controller.open_generation()
    assert len(second) == 4 and controller.state.generation == 1
    for proposal in second:
        controller.record(proposal, EvaluationResult(score=synthetic.score(proposal.architecture)))
    assert controller.open_generation()[:2] == controller.state.pending[:2]  # the budget cuts the last generation
    assert len(controller.open_generation()) == 2


def test_a_generation_evaluated_in_any_order_and_committed_in_proposal_order_gives_the_same_search():
    """What a parallel executor may do: evaluate the open generation's candidates in any order (each with its own
    index and seed), then commit them in proposal order. The search is the one evaluated one by one."""
    space = SearchSpace(num_layers=3, max_program_length=8)
    settings = StrategySettings(population_size=5, num_parents=2, children_per_parent=3)
    synthetic = SyntheticEvaluator(space)

    def score(architecture, seed):  # a noisy evaluator: the result depends on the candidate's own seed only
        return synthetic.score(architecture) + random.Random(seed).gauss(0.0, 0.01)

    def search(order):
        strategy = STRATEGIES["opnas"](space, settings, Objective(), ModelDimensions())
        controller = SearchController.start(strategy, space, ModelDimensions(), max_evaluations=26, seed=1, digest="test")
        while batch := controller.open_generation():
            first = len(controller.state.history)
            results = {}
            for offset in order(len(batch)):
                results[offset] = score(batch[offset].architecture, candidate_seed(1, first + offset))
            for offset, proposal in enumerate(batch):
                controller.record(proposal, EvaluationResult(score=results[offset]))
        return controller.state

    in_order = search(lambda n: range(n))
    reversed_order = search(lambda n: reversed(range(n)))
    assert [(r.key, r.score) for r in reversed_order.history] == [(r.key, r.score) for r in in_order.history]
    assert reversed_order.strategy_state == in_order.strategy_state


def test_a_state_of_the_previous_format_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(STRATEGIES, "threshold", ThresholdStrategy)
    run_search(config(tmp_path, max_evaluations=6), progress=False)
    data = json.loads((tmp_path / STATE_FILE).read_text())
    data["format_version"] = 1
    data["priority"] = data.pop("strategy_state")
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"format_version 1 was written by an earlier version.*new output_dir"):
        load_state(tmp_path)


def test_a_strategy_without_state_refuses_a_state_it_did_not_write():
    strategy = STRATEGIES["ea"](SearchSpace(num_layers=2), StrategySettings(), Objective(), ModelDimensions())
    assert strategy.state_dict() == {}
    with pytest.raises(ValueError, match="'ea' keeps no state"):
        strategy.load_state_dict({"observations": []})


def test_every_strategy_records_what_it_proposed_per_generation(tmp_path):
    """OP-NAS records its mutation counts and the entropy of its distributions per generation; the EA the counts."""
    for strategy in ("opnas", "ea"):
        state = run_search(config(tmp_path / strategy, strategy=strategy, max_evaluations=30), progress=False)
        summaries = [generation.get("strategy", {}) for generation in state.generations]
        assert "mutation" not in summaries[0]  # the initial population is random
        assert all(summary["mutation"]["children"] > 0 for summary in summaries[1:])
        if strategy == "opnas":
            entropies = summaries[-1]["entropy"]
            assert len(entropies["kernels"]) == 2
            assert all(value is None or 0.0 <= value <= 1.0 + 1e-9 for value in entropies["positions"] + entropies["kernels"])
        else:
            assert all("entropy" not in summary for summary in summaries)
