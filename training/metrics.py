"""GLUE and SQuAD metrics, computed offline with scikit-learn / scipy and the official SQuAD definitions.

SQuAD: answers are normalised as the official evaluation scripts do (lower case, no punctuation, no
articles ``a``/``an``/``the``, single spaces); EM and F1 take the best match over the gold answers. v2.0
scores an unanswerable question against the empty answer, and, as ``evaluate-v2.0.py`` does, picks the
no-answer threshold on the null-score differences that maximises EM or F1 on the evaluated set.
"""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Iterable, Mapping

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .glue_tasks import GLUE_TASKS, get_glue_task


logger = logging.getLogger(__name__)


def _correlation(function, predictions: np.ndarray, labels: np.ndarray) -> float:
    # A constant side leaves a correlation undefined; 0.0 (no association) keeps averages and JSON finite,
    # the same convention scikit-learn uses for the Matthews correlation.
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(function(predictions, labels)[0])


METRIC_FUNCTIONS = {
    "accuracy": lambda predictions, labels: float(accuracy_score(labels, predictions)),
    "f1": lambda predictions, labels: float(f1_score(labels, predictions, zero_division=0.0)),
    "matthews_correlation": lambda predictions, labels: float(matthews_corrcoef(labels, predictions)),
    "pearson": lambda predictions, labels: _correlation(pearsonr, predictions, labels),
    "spearman": lambda predictions, labels: _correlation(spearmanr, predictions, labels),
}


def glue_predictions(task_name: str, outputs: np.ndarray) -> np.ndarray:
    """Class ids (argmax of logits) for classification tasks, the flattened score for STS-B.

    Accepts logits ``(n, num_labels)`` or, for classification, class ids ``(n,)`` as they are.
    """
    outputs = np.asarray(outputs)
    if get_glue_task(task_name).is_regression:
        return outputs.reshape(-1).astype(np.float64)
    return outputs.argmax(axis=-1) if outputs.ndim == 2 else outputs.astype(np.int64)


def glue_metrics(task_name: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics (see `GLUE_TASKS`), as fractions in [0, 1] (correlations in [-1, 1]).

    ``predictions`` are logits or class ids (scores for STS-B); ``labels`` are class ids (scores).
    """
    task = get_glue_task(task_name)
    if not task.metrics:
        raise ValueError(f"GLUE task {task.name!r} has no labels to score (its predictions are submitted)")
    predictions = glue_predictions(task.name, predictions)
    labels = np.asarray(labels).reshape(-1)
    if len(predictions) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"{task.name}: expected as many predictions as labels (> 0), got {len(predictions)} and {len(labels)}"
        )
    return {name: METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}


def glue_score(task_name: str, metrics: Mapping[str, float]) -> float:
    """The single number that ranks runs of a task: the mean of its score metrics (MNLI: matched and mismatched)."""
    task = get_glue_task(task_name)
    missing = [name for name in task.score_metrics if name not in metrics]
    if missing:
        raise ValueError(f"{task.name}: metrics {sorted(metrics)} lack {missing}")
    return float(np.mean([metrics[name] for name in task.score_metrics]))


def percent(fraction: float) -> str:
    """A GLUE metric (a fraction; a correlation for CoLA and STS-B) as papers print it: ×100, two decimals."""
    return f"{100.0 * fraction:.2f}"


def glue_average(results: Mapping[str, Mapping[str, float]], allow_partial: bool = False) -> float:
    """The GLUE score as BERT's Table 1 and the paper report it, in percent.

    One number per task, MNLI counting twice (matched and mismatched): CoLA Matthews, MRPC and QQP F1,
    STS-B Spearman, accuracy for SST-2, QNLI, RTE and both MNLI sets; WNLI is left out. (BERT-base's
    published test scores give its published average, 79.6, this way.) ``results`` maps task names to
    their metric dicts; a missing task is an error unless ``allow_partial``.
    """
    tasks = {get_glue_task(name).name: metrics for name, metrics in results.items()}
    required = [name for name, task in GLUE_TASKS.items() if task.in_glue_average]
    missing = [name for name in required if name not in tasks]
    if missing and not allow_partial:
        raise ValueError(
            f"the GLUE average needs every task; missing {missing} (pass allow_partial=True to average the rest)"
        )
    scores = [tasks[name][metric] for name in required if name in tasks for metric in GLUE_TASKS[name].score_metrics]
    if not scores:
        raise ValueError(f"no GLUE task to average among {sorted(results)}")
    return 100.0 * float(np.mean(scores))


# --------------------------------------------------------------------------------------------------------
# SQuAD
# --------------------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a / an / the, collapse white space (official order)."""
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, empty_matches_empty: bool = True) -> float:
    """Bag-of-tokens F1 of the normalised answers.

    v2.0 (``empty_matches_empty``): when either side is empty, 1.0 if both are, else 0.0. v1.1's script
    has no such case, so two empty answers score 0.0 there.
    """
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if empty_matches_empty and (not prediction_tokens or not gold_tokens):
        return float(prediction_tokens == gold_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _gold_answers(example: Mapping, version_2: bool) -> list[str]:
    texts = list(example["answers"]["text"])
    if not version_2:
        return texts
    # v2.0 ignores gold answers that normalise to nothing; an unanswerable question's gold answer is ""
    return [text for text in texts if normalize_answer(text)] or [""]


def squad_question_scores(
    examples: Iterable[Mapping], predictions: Mapping[str, str], version_2: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Per question id: (exact match, F1), each the best over the gold answers; unanswered questions score 0."""
    exact, f1 = {}, {}
    unanswered = []
    for example in examples:
        question_id = example["id"]
        if question_id not in predictions:
            unanswered.append(question_id)
            exact[question_id] = f1[question_id] = 0.0
            continue
        golds = _gold_answers(example, version_2)
        prediction = predictions[question_id]
        exact[question_id] = max(exact_match(prediction, gold) for gold in golds)
        f1[question_id] = max(token_f1(prediction, gold, empty_matches_empty=version_2) for gold in golds)
    if unanswered:
        logger.warning("%d questions have no prediction and score 0 (e.g. %s)", len(unanswered), unanswered[:3])
    return exact, f1


def best_no_answer_threshold(
    predictions: Mapping[str, str],
    question_scores: Mapping[str, float],
    null_score_differences: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """``(best score in percent, threshold)``: predict no answer where the null-score difference exceeds it.

    ``predictions`` are the best non-null answers, ``question_scores`` their EM or F1 per question. As in
    ``evaluate-v2.0.py``, thresholds are swept over the sorted differences, starting from "no answer
    everywhere" (where the script starts at threshold 0.0, this starts just below the smallest
    difference, which is what "no answer everywhere" means for differences of any sign).
    """
    if not question_scores:
        raise ValueError("no questions to choose a threshold on")
    score = best_score = float(sum(1 for question_id in question_scores if not has_answer[question_id]))
    ordered = sorted(question_scores, key=lambda question_id: null_score_differences[question_id])
    best_threshold = null_score_differences[ordered[0]] - 1.0
    for question_id in ordered:
        if has_answer[question_id]:
            score += question_scores[question_id]
        elif predictions[question_id]:
            score -= 1.0
        if score > best_score:
            best_score, best_threshold = score, null_score_differences[question_id]
    return 100.0 * best_score / len(question_scores), best_threshold


def squad_metrics(examples: list[Mapping], predictions: Mapping[str, str], version_2: bool) -> dict[str, float]:
    """Official SQuAD metrics (percent) of final ``predictions`` (question id → answer text, "" for no answer).

    v1.1: ``exact_match`` and ``f1``. v2.0: ``exact``, ``f1``, ``total`` and the same on the ``HasAns`` and
    ``NoAns`` subsets, as ``evaluate-v2.0.py`` names them.
    """
    exact, f1 = squad_question_scores(examples, predictions, version_2)
    if not exact:
        raise ValueError("no questions to evaluate")
    if not version_2:
        return {
            "exact_match": 100.0 * float(np.mean(list(exact.values()))),
            "f1": 100.0 * float(np.mean(list(f1.values()))),
        }
    has_answer = {example["id"]: bool(_gold_answers(example, True)[0]) for example in examples}
    metrics: dict[str, float] = {
        "exact": 100.0 * float(np.mean(list(exact.values()))),
        "f1": 100.0 * float(np.mean(list(f1.values()))),
        "total": len(exact),
    }
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        subset = [question_id for question_id in exact if has_answer[question_id] == wanted]
        if subset:
            metrics[f"{name}_exact"] = 100.0 * float(np.mean([exact[question_id] for question_id in subset]))
            metrics[f"{name}_f1"] = 100.0 * float(np.mean([f1[question_id] for question_id in subset]))
            metrics[f"{name}_total"] = len(subset)
    return metrics


def apply_no_answer_threshold(
    examples: list[Mapping], best_answers: Mapping[str, str], null_score_differences: Mapping[str, float]
) -> tuple[dict[str, str], dict[str, float]]:
    """SQuAD v2.0: choose the no-answer threshold on ``examples`` and return (final predictions, metrics).

    ``best_answers`` holds every question's best non-null answer and ``null_score_differences`` its null
    score minus that answer's score. The threshold maximising F1 is applied (no answer where the difference
    exceeds it); the metrics are those of the final predictions plus ``best_exact`` / ``best_f1`` and their
    thresholds, as ``evaluate-v2.0.py`` reports them.
    """
    exact, f1 = squad_question_scores(examples, best_answers, version_2=True)
    has_answer = {example["id"]: bool(_gold_answers(example, True)[0]) for example in examples}
    best_exact, exact_threshold = best_no_answer_threshold(best_answers, exact, null_score_differences, has_answer)
    best_f1, f1_threshold = best_no_answer_threshold(best_answers, f1, null_score_differences, has_answer)
    final = {
        question_id: "" if null_score_differences[question_id] > f1_threshold else answer
        for question_id, answer in best_answers.items()
    }
    metrics = squad_metrics(examples, final, version_2=True)
    metrics.update(
        best_exact=best_exact, best_exact_thresh=exact_threshold, best_f1=best_f1, best_f1_thresh=f1_threshold
    )
    return final, metrics
