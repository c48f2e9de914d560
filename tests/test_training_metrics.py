"""GLUE and SQuAD metrics against values computed by hand, and the official SQuAD normalisation rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.metrics import (
    apply_no_answer_threshold,
    best_no_answer_threshold,
    exact_match,
    glue_average,
    glue_metrics,
    glue_score,
    normalize_answer,
    squad_metrics,
    token_f1,
)


def test_binary_metrics_match_hand_computation():
    # TP = 2, FP = 1, TN = 2, FN = 0
    predictions, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1])
    # MCC = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 4 / sqrt(3·2·3·2) = 2/3
    assert glue_metrics("cola", predictions, labels) == pytest.approx({"matthews_correlation": 2 / 3})
    # precision 2/3, recall 1 → F1 0.8; accuracy 4/5
    assert glue_metrics("mrpc", predictions, labels) == pytest.approx({"f1": 0.8, "accuracy": 0.8})
    assert glue_metrics("qqp", predictions, labels) == pytest.approx({"f1": 0.8, "accuracy": 0.8})


def test_logits_are_reduced_to_their_argmax():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    assert glue_metrics("mnli", logits, np.array([1, 0, 1])) == pytest.approx({"accuracy": 2 / 3})


def test_correlations_match_hand_computation():
    # deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): covariance 3, variances 2 and 14/3 → r = 3 / sqrt(28/3)
    metrics = glue_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 4.0]))
    assert metrics["pearson"] == pytest.approx(3 / math.sqrt(28 / 3))
    assert metrics["spearman"] == pytest.approx(1.0)  # same ranks


def test_constant_predictions_give_zero_correlation_not_nan():
    metrics = glue_metrics("stsb", np.zeros(4), np.array([0.0, 1.0, 2.0, 3.0]))
    assert metrics == {"pearson": 0.0, "spearman": 0.0}


def test_glue_metrics_reject_mismatched_lengths_and_unknown_tasks():
    with pytest.raises(ValueError, match="as many predictions as labels"):
        glue_metrics("rte", np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="unknown GLUE task 'boolq'"):
        glue_metrics("boolq", np.array([0]), np.array([0]))


BERT_BASE_TEST_SCORES = {  # BERT paper, Table 1 (GLUE test), as fractions
    "mnli": {"accuracy": 0.846, "accuracy_mm": 0.834},
    "qqp": {"f1": 0.712, "accuracy": 0.891},
    "qnli": {"accuracy": 0.905},
    "sst2": {"accuracy": 0.935},
    "cola": {"matthews_correlation": 0.521},
    "stsb": {"pearson": 0.871, "spearman": 0.858},
    "mrpc": {"f1": 0.889, "accuracy": 0.848},
    "rte": {"accuracy": 0.664},
    "wnli": {"accuracy": 0.651},
}


def test_glue_average_reproduces_bert_base_published_average():
    assert glue_average(BERT_BASE_TEST_SCORES) == pytest.approx(79.6, abs=1e-9)


def test_glue_average_needs_every_task_unless_partial():
    partial = {name: BERT_BASE_TEST_SCORES[name] for name in ("rte", "mrpc")}
    with pytest.raises(ValueError, match="missing"):
        glue_average(partial)
    assert glue_average(partial, allow_partial=True) == pytest.approx(100 * (0.664 + 0.889) / 2)


def test_glue_score_averages_mnli_matched_and_mismatched():
    assert glue_score("mnli", {"accuracy": 0.8, "accuracy_mm": 0.6}) == pytest.approx(0.7)
    assert glue_score("mrpc", {"f1": 0.9, "accuracy": 0.5}) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The  Quick, brown-fox!", "quick brownfox"),
        ("a an the", ""),
        ("Theatre and the Arts.", "theatre and arts"),
        ("  U.S.  Army ", "us army"),
        ("Thé", "thé"),
    ],
)
def test_answer_normalisation_follows_the_official_script(text, normalised):
    assert normalize_answer(text) == normalised


@given(st.text(max_size=40))
def test_normalisation_is_idempotent_and_has_no_edge_spaces(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    assert once == once.strip() and "  " not in once


def test_exact_match_and_f1_by_hand():
    assert exact_match("The cat", "cat!") == 1.0
    assert exact_match("cat", "cats") == 0.0
    # prediction tokens (cat, sat, on, mat), gold (cat, sat): precision 1/2, recall 1 → F1 2/3
    assert token_f1("the cat sat on the mat", "a cat sat") == pytest.approx(2 / 3)
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts, not sets
    assert token_f1("dog", "cat") == 0.0


def test_empty_answers_score_as_in_v2_and_v1():
    assert token_f1("", "") == 1.0
    assert token_f1("", "", empty_matches_empty=False) == 0.0
    assert token_f1("", "cat") == 0.0 and token_f1("cat", "") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to nothing


def _example(question_id, *answers):
    return {"id": question_id, "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}


def test_squad_v1_takes_the_best_gold_answer_and_scores_missing_predictions_zero():
    examples = [_example("q1", "Denver Broncos", "the Broncos"), _example("q2", "1990"), _example("q3", "red")]
    metrics = squad_metrics(examples, {"q1": "Broncos", "q2": "in 1990"}, version_2=False)
    # q1: EM 1 (vs "the Broncos"); q2: EM 0, F1 2·(1/2·1)/(1/2+1) = 2/3; q3: unanswered, 0
    assert metrics["exact_match"] == pytest.approx(100 / 3)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_squad_v2_scores_unanswerable_questions_against_the_empty_answer():
    examples = [_example("q1", "cat"), _example("q2"), _example("q3"), _example("q4", "the")]
    metrics = squad_metrics(examples, {"q1": "cat", "q2": "", "q3": "dog", "q4": ""}, version_2=True)
    # q4's only gold answer normalises to nothing, so q4 counts as unanswerable and "" is right
    assert metrics["exact"] == pytest.approx(75.0)
    assert metrics["HasAns_exact"] == 100.0 and metrics["HasAns_total"] == 1
    assert metrics["NoAns_exact"] == pytest.approx(200 / 3) and metrics["NoAns_total"] == 3


def test_no_answer_threshold_sweep_by_hand():
    predictions = {"q1": "cat", "q2": "dog", "q3": "blue", "q4": "x"}
    scores = {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.0}
    differences = {"q1": -2.0, "q2": 1.0, "q3": 0.5, "q4": 3.0}
    has_answer = {"q1": True, "q2": False, "q3": True, "q4": False}
    # all null: 2 right (q2, q4); answering q1 (+1) gives 3; then q3 (+0), q2 (-1), q4 (-1)
    assert best_no_answer_threshold(predictions, scores, differences, has_answer) == (75.0, -2.0)


def test_no_answer_everywhere_is_a_threshold_below_every_difference():
    predictions, differences = {"q1": "dog", "q2": "x"}, {"q1": 0.3, "q2": 0.7}
    best, threshold = best_no_answer_threshold(
        predictions, {"q1": 0.0, "q2": 0.0}, differences, {"q1": False, "q2": False}
    )
    assert best == 100.0 and threshold < min(differences.values())


def test_applied_threshold_reproduces_the_best_f1():
    examples = [_example("q1", "cat"), _example("q2"), _example("q3", "red"), _example("q4")]
    best_answers = {"q1": "cat", "q2": "dog", "q3": "blue", "q4": "x"}
    differences = {"q1": -2.0, "q2": 1.0, "q3": 0.5, "q4": 3.0}
    final, metrics = apply_no_answer_threshold(examples, best_answers, differences)
    assert final == {"q1": "cat", "q2": "", "q3": "", "q4": ""}
    assert metrics["f1"] == pytest.approx(metrics["best_f1"]) == pytest.approx(75.0)
    assert metrics["best_f1_thresh"] == -2.0
