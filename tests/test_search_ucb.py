"""Operation priority (paper Eq. 3): normalised scores, finite optimism, hand-computed distributions, the strategy's state."""

from __future__ import annotations

import json
import math
import random

import pytest

from modeling_autobert_zero.architecture import ModelDimensions
from search.objective import Objective, ScoredCandidate
from search.space import SearchSpace
from search.strategies import OpNasStrategy, StrategySettings
from search.ucb import (
    Observation,
    OperationPriority,
    PriorityTable,
    draw_option,
    entropy,
    normal_scores,
    softmax_probabilities,
    ucb_scores,
)


OPS = ("neg", "scale", "softsign", "softmax")


def priority_of(scores, ops_at_position_0, kernels=()):
    """Statistics of single-position observations: candidate i had ``ops_at_position_0[i]`` at position 0."""
    observations = [
        Observation(score, ((0, op),), tuple(kernels[i]) if kernels else ()) for i, (score, op) in enumerate(zip(scores, ops_at_position_0))
    ]
    return OperationPriority.from_observations(observations, OPS, (3, 5), num_layers=1)


def test_normal_scores_are_rank_based_normal_quantiles_with_tied_ranks_shared():
    # ranks 1..4 -> Φ⁻¹(1/8), Φ⁻¹(3/8), Φ⁻¹(5/8), Φ⁻¹(7/8)
    assert normal_scores([40.0, 10.0, 30.0, 20.0]) == pytest.approx([1.150349, -1.150349, 0.318639, -0.318639], abs=1e-6)
    # two ties at ranks 2 and 3 share rank 2.5 -> Φ⁻¹(0.5) = 0
    assert normal_scores([1.0, 5.0, 5.0, 9.0]) == pytest.approx([-1.150349, 0.0, 0.0, 1.150349], abs=1e-6)


def test_a_scripted_history_gives_the_distribution_eq_3_says():
    """Four evaluated paths; position 0 held neg, scale, neg, softsign and they scored 10, 20, 30, 40.

    Normalised scores (ranks 1-4): -1.150349, -0.318639, 0.318639, 1.150349. So μ_neg = (-1.150349 + 0.318639)/2
    = -0.415855 with N_neg = 2; μ_scale = -0.318639, μ_softsign = 1.150349 with one count each; N = 4.
    With α = 0.5: bonus(1) = 0.5·sqrt(2·ln 4) = 0.832555, bonus(2) = 0.5·sqrt(ln 4) = 0.588705.
    u = [neg 0.172850, scale 0.513915, softsign 1.982904, softmax (unseen: max μ + bonus(1)) 1.982904].
    """
    priority = priority_of([10.0, 20.0, 30.0, 40.0], ["neg", "scale", "neg", "softsign"])
    table = priority.position_tables[0]
    assert table.counts == (2, 1, 1, 0)
    assert table.means() == pytest.approx((-0.415855, -0.318639, 1.150349, None), abs=1e-6)
    u = ucb_scores(table, alpha=0.5)
    assert u == pytest.approx([0.172850, 0.513915, 1.982904, 1.982904], abs=1e-6)
    # softmax(u / T) at T = 0.5: weights exp(2u) = [1.412979, 2.795000, 52.762885, 52.762885], total 109.733748
    probabilities = priority.op_probabilities(0, OPS, alpha=0.5, temperature=0.5)
    assert probabilities == pytest.approx([0.012876, 0.025471, 0.480826, 0.480826], abs=1e-6)
    # restricted to the ops that can be valid where the op is written: renormalised over them only
    restricted = priority.op_probabilities(0, ("neg", "scale"), alpha=0.5, temperature=0.5)
    assert restricted == pytest.approx([1.412979 / 4.207979, 2.795000 / 4.207979], abs=1e-6)


def test_unseen_options_get_finite_optimism_and_lose_it_once_seen_with_a_low_score():
    priority = priority_of([1.0, 2.0, 3.0, 4.0], ["neg", "neg", "scale", "scale"])
    unseen = priority.op_probabilities(0, OPS, alpha=0.01, temperature=0.25)
    assert all(math.isfinite(p) and 0 < p < 1 for p in unseen)
    assert unseen[2] == pytest.approx(unseen[3])  # softsign and softmax: unseen, each as eager as the best
    assert unseen[2] > unseen[1] > unseen[0]
    seen_badly = priority_of([1.0, 2.0, 3.0, 4.0, 0.5], ["neg", "neg", "scale", "scale", "softsign"])
    after = seen_badly.op_probabilities(0, OPS, alpha=0.01, temperature=0.25)
    assert after[2] < after[1] and after[2] < after[3]  # softsign now ranks by its (lowest) score


def test_nothing_observed_means_an_even_distribution():
    empty = OperationPriority.from_observations([], OPS, (3, 5), num_layers=2)
    assert empty.op_probabilities(0, OPS, alpha=0.01, temperature=0.25) == pytest.approx([0.25] * 4)
    assert empty.op_probabilities(9, ("neg", "scale"), alpha=0.01, temperature=0.25) == pytest.approx([0.5, 0.5])
    assert empty.kernel_probabilities(1, (3, 5), alpha=0.01, temperature=0.25) == pytest.approx([0.5, 0.5])
    assert ucb_scores(PriorityTable.empty("xyz"), 0.01) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("transform", [lambda s: 3.7 * s - 12.0, lambda s: 0.001 * s + 5.0, math.exp])
def test_normalisation_makes_alpha_and_temperature_mean_the_same_for_any_scale_of_the_proxy(transform):
    """An affine change of the proxy (and any increasing one) leaves every distribution unchanged."""
    rng = random.Random(0)
    scores = [rng.uniform(-2, 2) for _ in range(30)]
    ops = [rng.choice(OPS) for _ in range(30)]
    kernels = [[(0, rng.choice((3, 5)))] for _ in range(30)]
    original = priority_of(scores, ops, kernels)
    rescaled = priority_of([transform(s) for s in scores], ops, kernels)
    for alpha, temperature in ((0.0025, 0.25), (0.5, 1.0)):
        assert rescaled.op_probabilities(0, OPS, alpha, temperature) == pytest.approx(original.op_probabilities(0, OPS, alpha, temperature))
        assert rescaled.kernel_probabilities(0, (3, 5), alpha, temperature) == pytest.approx(
            original.kernel_probabilities(0, (3, 5), alpha, temperature)
        )


def test_observations_count_canonical_positions_and_kernels_per_layer():
    layers = [
        {"type": "conv", "kernel_size": 5},
        {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"},
    ]
    observation = Observation.of(layers, 0.75)
    # canonical order: transpose, matmul, scale, softmax, matmul
    assert observation.ops == ((0, "transpose"), (1, "matmul"), (2, "scale"), (3, "softmax"), (4, "matmul"))
    assert observation.kernels == ((0, 5),)
    assert Observation.from_json(json.loads(json.dumps(observation.to_json()))) == observation
    priority = OperationPriority.from_observations(
        [observation, Observation.of([{"type": "conv", "kernel_size": 3}, layers[1]], 0.25)],
        ("neg", "transpose", "scale", "softmax", "matmul"),
        (3, 5),
        num_layers=2,
    )
    assert len(priority.position_tables) == 5
    assert priority.position_tables[4].counts == (0, 0, 0, 0, 2)
    assert priority.kernel_tables[0].counts == (1, 1) and sum(priority.kernel_tables[1].counts) == 0


def test_normalised_entropy_is_one_when_even_and_falls_as_one_option_dominates():
    even = priority_of([1.0, 2.0, 3.0, 4.0], ["neg", "scale", "scale", "neg"])
    assert even.normalised_entropies(0.0, 0.25)["positions"][0] == pytest.approx(1.0)
    sharp = priority_of([float(i) for i in range(40)], ["neg"] * 20 + ["scale"] * 20)
    assert sharp.normalised_entropies(0.0, 0.25)["positions"][0] < 0.2
    assert entropy([0.5, 0.5]) == pytest.approx(math.log(2))


def test_sampling_frequencies_follow_the_probabilities():
    probabilities = softmax_probabilities([0.2, 0.5, -0.1], temperature=0.2)
    rng = random.Random(0)
    draws = [draw_option(("a", "b", "c"), probabilities, rng) for _ in range(20000)]
    for option, probability in zip("abc", probabilities):
        assert draws.count(option) / len(draws) == pytest.approx(probability, abs=0.012)


def test_excluded_option_is_never_drawn_and_the_rest_is_renormalised():
    rng = random.Random(1)
    draws = [draw_option(("a", "b", "c"), (0.5, 0.25, 0.25), rng, exclude="a") for _ in range(4000)]
    assert "a" not in draws
    assert draws.count("b") / len(draws) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="no option left"):
        draw_option(("a",), (1.0,), rng, exclude="a")


def test_the_opnas_strategy_owns_its_state_and_round_trips_it_through_json():
    space = SearchSpace(num_layers=2, max_program_length=8)
    settings = StrategySettings(population_size=4)
    strategy = OpNasStrategy(space, settings, Objective(), ModelDimensions())
    bert = {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}
    strategy.observe([
        ScoredCandidate(0, [{"type": "conv", "kernel_size": 7}, bert], 0.4, {}),
        ScoredCandidate(1, [bert, bert], 0.9, {}),
    ])
    state = json.loads(json.dumps(strategy.state_dict()))
    restored = OpNasStrategy(space, settings, Objective(), ModelDimensions())
    restored.load_state_dict(state)
    assert restored.priority == strategy.priority and restored.state_dict() == strategy.state_dict()
    assert restored.priority.position_tables[0].counts[space.ops.index("transpose")] == 3
    with pytest.raises(ValueError, match="outside the search space"):
        OpNasStrategy(SearchSpace(num_layers=2, ops=("transpose", "matmul", "cosine")), settings, Objective(), ModelDimensions()).load_state_dict(state)
