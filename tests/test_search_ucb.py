"""Operation priority: UCB scores on hand-made statistics, softmax sampling, and recording evaluated architectures."""

from __future__ import annotations

import json
import math
import random

import pytest

from search.ucb import OperationPriority, PriorityTable, draw_option, softmax_probabilities, ucb_scores


def test_ucb_scores_match_the_formula_on_hand_made_statistics():
    # op a: seen twice (scores 0.4, 0.6), b: once (0.8), c: once (0.2); N = 4
    table = PriorityTable(("a", "b", "c"), (2, 1, 1), (1.0, 0.8, 0.2))
    alpha = 0.5
    bonus_once = alpha * math.sqrt(2 * math.log(4) / 1)
    bonus_twice = alpha * math.sqrt(2 * math.log(4) / 2)
    assert ucb_scores(table, alpha) == pytest.approx([0.5 + bonus_twice, 0.8 + bonus_once, 0.2 + bonus_once])


def test_alpha_zero_ranks_by_mean_and_large_alpha_favours_rarely_seen_options():
    table = PriorityTable(("often", "rare"), (50, 1), (40.0, 0.5))  # means 0.8 and 0.5
    assert ucb_scores(table, 0.0) == pytest.approx([0.8, 0.5])
    exploit, explore = ucb_scores(table, 2.0)
    assert explore > exploit


def test_unseen_options_take_all_the_probability_evenly():
    table = PriorityTable(("a", "b", "c", "d"), (3, 0, 1, 0), (2.0, 0.0, 0.9, 0.0))
    assert softmax_probabilities(ucb_scores(table, 0.01)) == [0.0, 0.5, 0.0, 0.5]
    assert softmax_probabilities(ucb_scores(PriorityTable.empty("xyz"), 0.01)) == pytest.approx([1 / 3] * 3)


def test_softmax_is_stable_and_sums_to_one():
    probabilities = softmax_probabilities([1000.0, 999.0, -1000.0], temperature=1.0)
    assert sum(probabilities) == pytest.approx(1.0)
    assert probabilities[0] / probabilities[1] == pytest.approx(math.e)
    sharper = softmax_probabilities([1.0, 0.0], temperature=0.1)
    assert sharper[0] == pytest.approx(1 / (1 + math.exp(-10)))


def test_sampling_frequencies_follow_the_softmax_of_ucb_scores():
    table = PriorityTable(("neg", "add", "matmul"), (4, 2, 6), (1.0, 1.6, 5.4))
    probabilities = softmax_probabilities(ucb_scores(table, 0.5), temperature=0.2)
    rng = random.Random(0)
    draws = 20000
    counts = {option: 0 for option in table.options}
    for _ in range(draws):
        counts[draw_option(table.options, probabilities, rng)] += 1
    for option, probability in zip(table.options, probabilities):
        assert counts[option] / draws == pytest.approx(probability, abs=0.012)


def test_excluded_option_is_never_drawn_and_the_rest_is_renormalised():
    rng = random.Random(1)
    draws = [draw_option(("a", "b", "c"), (0.5, 0.25, 0.25), rng, exclude="a") for _ in range(4000)]
    assert "a" not in draws
    assert draws.count("b") / len(draws) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="no option left"):
        draw_option(("a",), (1.0,), rng, exclude="a")


def test_recording_an_architecture_counts_every_position_and_kernel_and_returns_new_statistics():
    empty = OperationPriority.empty(("neg", "transpose", "scale", "softmax", "matmul"), (3, 5), num_layers=2)
    layers = [
        {"type": "conv", "kernel_size": 5},
        {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"},
    ]
    recorded = empty.with_architecture(layers, 0.75)
    assert empty.position_tables == () and sum(empty.kernel_tables[0].counts) == 0  # unchanged
    # canonical order: transpose, matmul, scale, softmax, matmul
    ops_by_position = [table.options[table.counts.index(1)] for table in recorded.position_tables]
    assert ops_by_position == ["transpose", "matmul", "scale", "softmax", "matmul"]
    assert recorded.kernel_tables[0].counts == (0, 1) and recorded.kernel_tables[0].score_sums == (0.0, 0.75)
    assert sum(recorded.kernel_tables[1].counts) == 0
    again = recorded.with_architecture(layers, 0.25)
    assert again.position_tables[0].means()[1] == pytest.approx(0.5)


def test_a_position_beyond_the_longest_program_has_an_even_distribution():
    priority = OperationPriority.empty(("neg", "scale"), (3,), num_layers=1)
    assert priority.op_probabilities(7, alpha=0.01, temperature=1.0) == [0.5, 0.5]


def test_operation_priority_round_trips_through_json():
    priority = OperationPriority.empty(("neg", "transpose", "scale", "softmax", "matmul"), (3, 5, 7), num_layers=2)
    priority = priority.with_architecture(
        [{"type": "conv", "kernel_size": 7}, {"type": "attention", "program": "matmul(softmax(matmul(Q, transpose(K))), V)"}],
        0.5,
    )
    assert OperationPriority.from_json(json.loads(json.dumps(priority.to_json()))) == priority
