"""SQuAD v1.1 / v2.0: read the official JSON, tokenize with a sliding window, finetune, post-process, score.

Questions come first (``[CLS] question [SEP] context [SEP]``), as in BERT; a long context is cut into
windows that overlap by ``doc_stride`` tokens, and a window that does not contain the answer (or a v2.0
question without one) is trained to point at ``[CLS]``. Prediction takes, per question, the best valid span
among the ``n_best_size`` start and end candidates of every window (end ≥ start, at most
``max_answer_length`` tokens, inside the context); for v2.0 the null score is the smallest ``[CLS]`` score
over the windows, and a question is left unanswered when null score − best span score exceeds a threshold
chosen on the evaluated set (see `training.metrics.apply_no_answer_threshold`).
"""

from __future__ import annotations

import collections
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from torch import nn
from transformers import (
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .arguments import SquadArguments, SquadTrainingArguments, resolve_training_arguments
from .atomic_files import write_json_atomic
from .metrics import apply_no_answer_threshold, squad_metrics
from .models import task_model
from .run_info import is_demo_data
from .tokenization import load_tokenizer
from .trainers import MeanLossTrainer


logger = logging.getLogger(__name__)

NO_SPAN_DIFFERENCE = 1e9  # null-score difference of a question with no valid span: always "no answer"


class SquadFormatError(ValueError):
    """A file that is not in the official SQuAD JSON format."""


def _expect(condition: bool, path: Path, where: str, expected: str, found: Any) -> None:
    if not condition:
        raise SquadFormatError(f"{path}: {where}: expected {expected}, found {json.dumps(found)[:80]}")


def read_squad_file(path: str | os.PathLike) -> tuple[list[dict[str, Any]], bool]:
    """The questions of an official-format SQuAD file, flattened, and whether it is v2.0.

    Each question: ``id``, ``title``, ``context``, ``question``, ``answers`` (``{"text": [...],
    "answer_start": [...]}``) and ``is_impossible``. The file is v2.0 when its ``version`` says so or any
    question has ``is_impossible``. Anything out of shape is an error naming the JSON path, e.g.
    ``data[3].paragraphs[0].qas[7].answers[0].answer_start``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file {path} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise SquadFormatError(f"{path}: not valid JSON ({error})") from None
    _expect(
        isinstance(document, dict) and isinstance(document.get("data"), list),
        path,
        "top level",
        "an object with a 'data' list of articles (the official SQuAD format)",
        document if not isinstance(document, dict) else sorted(document),
    )
    version_2 = str(document.get("version", "")).lstrip("v").startswith("2")
    examples: list[dict[str, Any]] = []
    seen: set[str] = set()
    for article_index, article in enumerate(document["data"]):
        where = f"data[{article_index}]"
        _expect(
            isinstance(article, dict) and isinstance(article.get("paragraphs"), list),
            path,
            where,
            "an object with a 'paragraphs' list",
            article,
        )
        for paragraph_index, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{article_index}].paragraphs[{paragraph_index}]"
            _expect(isinstance(paragraph, dict), path, where, "an object", paragraph)
            context = paragraph.get("context")
            _expect(isinstance(context, str), path, f"{where}.context", "a string", context)
            _expect(
                isinstance(paragraph.get("qas"), list),
                path,
                f"{where}.qas",
                "a list of questions",
                paragraph.get("qas"),
            )
            for question_index, qa in enumerate(paragraph["qas"]):
                where = f"data[{article_index}].paragraphs[{paragraph_index}].qas[{question_index}]"
                _expect(isinstance(qa, dict), path, where, "an object", qa)
                for key in ("id", "question"):
                    _expect(isinstance(qa.get(key), str), path, f"{where}.{key}", "a string", qa.get(key))
                _expect(qa["id"] not in seen, path, f"{where}.id", "an id used once in the file", qa["id"])
                seen.add(qa["id"])
                impossible = qa.get("is_impossible", False)
                _expect(isinstance(impossible, bool), path, f"{where}.is_impossible", "true or false", impossible)
                version_2 = version_2 or "is_impossible" in qa
                answers = qa.get("answers", [])
                _expect(isinstance(answers, list), path, f"{where}.answers", "a list", answers)
                texts, starts = [], []
                for answer_index, answer in enumerate(answers):
                    answer_where = f"{where}.answers[{answer_index}]"
                    _expect(
                        isinstance(answer, dict) and isinstance(answer.get("text"), str),
                        path,
                        f"{answer_where}.text",
                        "a string",
                        answer,
                    )
                    start = answer.get("answer_start")
                    _expect(
                        isinstance(start, int) and not isinstance(start, bool) and 0 <= start <= len(context),
                        path,
                        f"{answer_where}.answer_start",
                        f"a character offset in [0, {len(context)}]",
                        start,
                    )
                    texts.append(answer["text"])
                    starts.append(start)
                _expect(
                    impossible or bool(texts),
                    path,
                    f"{where}.answers",
                    "at least one answer for an answerable question",
                    answers,
                )
                examples.append(
                    {
                        "id": qa["id"],
                        "title": str(article.get("title", "")),
                        "context": context,
                        "question": qa["question"],
                        "answers": {"text": [] if impossible else texts, "answer_start": [] if impossible else starts},
                        "is_impossible": impossible,
                    }
                )
    if not examples:
        raise SquadFormatError(f"{path}: no questions found")
    return examples, version_2


def _trimmed_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Questions without leading space, cut after ``max_query_length`` tokens (BERT's ``max_query_length``)."""
    questions = [question.lstrip() for question in questions]
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [
        question if len(offsets) <= max_query_length else question[: offsets[max_query_length - 1][1]]
        for question, offsets in zip(questions, encoded["offset_mapping"])
    ]


def _windows(examples: dict[str, list], tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int):
    return tokenizer(
        _trimmed_questions(examples["question"], tokenizer, max_query_length),
        examples["context"],
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def prepare_train_features(
    examples: dict[str, list], tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int
):
    """Windows with ``start_positions`` / ``end_positions`` (token indices; ``[CLS]`` when the answer is outside)."""
    features = _windows(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    sample_map = features.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for feature_index, offsets in enumerate(features.pop("offset_mapping")):
        cls_index = features["input_ids"][feature_index].index(tokenizer.cls_token_id)
        answers = examples["answers"][sample_map[feature_index]]
        if not answers["text"]:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        sequence_ids = features.sequence_ids(feature_index)
        context_start = sequence_ids.index(1)
        context_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if offsets[context_start][0] > start_char or offsets[context_end][1] < end_char:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        token_start = context_start
        while token_start <= context_end and offsets[token_start][0] <= start_char:
            token_start += 1
        token_end = context_end
        while token_end >= context_start and offsets[token_end][1] >= end_char:
            token_end -= 1
        starts.append(token_start - 1)
        ends.append(token_end + 1)
    features["start_positions"] = starts
    features["end_positions"] = ends
    return features


def prepare_eval_features(
    examples: dict[str, list], tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int
):
    """Windows with ``example_id`` and an ``offset_mapping`` that is ``None`` outside the context."""
    features = _windows(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    sample_map = features.pop("overflow_to_sample_mapping")
    features["example_id"] = [examples["id"][sample] for sample in sample_map]
    features["offset_mapping"] = [
        [offset if sequence_id == 1 else None for offset, sequence_id in zip(offsets, features.sequence_ids(index))]
        for index, offsets in enumerate(features["offset_mapping"])
    ]
    return features


def postprocess_predictions(
    examples: list[dict[str, Any]],
    features: datasets.Dataset,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, float]]:
    """Per question: the best non-null answer text and its null-score difference (null − best span score).

    A question whose windows offer no valid span gets ``""`` and `NO_SPAN_DIFFERENCE`.
    """
    windows_of = collections.defaultdict(list)
    for feature_index, example_id in enumerate(features["example_id"]):
        windows_of[example_id].append(feature_index)
    offset_mappings = features["offset_mapping"]
    answers, differences = {}, {}
    for example in examples:
        null_score = np.inf
        best_score, best_text = -np.inf, ""
        for feature_index in windows_of[example["id"]]:
            starts, ends, offsets = (
                start_logits[feature_index],
                end_logits[feature_index],
                offset_mappings[feature_index],
            )
            null_score = min(null_score, float(starts[0] + ends[0]))
            top_starts = np.argsort(starts[: len(offsets)])[::-1][:n_best_size]
            top_ends = np.argsort(ends[: len(offsets)])[::-1][:n_best_size]
            for start in top_starts:
                if offsets[start] is None:
                    continue
                for end in top_ends:
                    if offsets[end] is None or end < start or end - start + 1 > max_answer_length:
                        continue
                    score = float(starts[start] + ends[end])
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[start][0] : offsets[end][1]]
        answers[example["id"]] = best_text
        differences[example["id"]] = null_score - best_score if np.isfinite(best_score) else NO_SPAN_DIFFERENCE
    return answers, differences


def _answer_matches_context(example: dict[str, Any]) -> bool:
    answers = example["answers"]
    if not answers["text"]:
        return True
    start = answers["answer_start"][0]
    return example["context"][start : start + len(answers["text"][0])] == answers["text"][0]


def finetune_squad(
    model: str | os.PathLike | nn.Module,
    train_file: str | os.PathLike,
    validation_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    tokenizer=None,
    version_2_with_negative: bool | None = None,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    training_arguments: TrainingArguments | None = None,
    save_model: bool = True,
    callbacks: list[TrainerCallback] | None = None,
    **training_overrides: Any,
) -> dict[str, float]:
    """Finetune ``model`` for extractive QA on ``train_file`` and return the official metrics on ``validation_file``.

    ``model`` is a checkpoint directory or a model instance (left unchanged); ``tokenizer`` defaults to the
    checkpoint's. SQuAD 2.0 handling follows the files unless ``version_2_with_negative`` says otherwise.
    Training arguments are ``training_arguments`` (default: `SquadTrainingArguments`) with
    ``training_overrides`` applied (``None`` values ignored); ``callbacks`` go to the `Trainer`. Writes
    ``predictions.json`` (question id → answer, the official format), for v2.0 ``null_odds.json`` (null-score
    differences), ``eval_results.json`` (the metrics, and under ``data`` the files and question counts) and,
    with ``save_model``, the model and tokenizer. Training questions
    whose first answer is not found at its ``answer_start`` are skipped and counted.
    """
    if tokenizer is None:
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("finetune_squad: pass tokenizer= when model is a model instance")
        tokenizer = load_tokenizer(model)
    if doc_stride >= max_seq_length - max_query_length - 3:
        raise ValueError(
            f"doc_stride ({doc_stride}) must be smaller than max_seq_length - max_query_length - 3 "
            f"({max_seq_length - max_query_length - 3}), the context room of a window"
        )
    train_examples, train_is_v2 = read_squad_file(train_file)
    eval_examples, eval_is_v2 = read_squad_file(validation_file)
    version_2 = version_2_with_negative if version_2_with_negative is not None else (train_is_v2 or eval_is_v2)
    train_examples = train_examples[:max_train_samples] if max_train_samples is not None else train_examples
    eval_examples = eval_examples[:max_eval_samples] if max_eval_samples is not None else eval_examples
    usable = [example for example in train_examples if _answer_matches_context(example)]
    if len(usable) < len(train_examples):
        mismatched = [example["id"] for example in train_examples if not _answer_matches_context(example)]
        logger.warning(
            "%s: skipped %d training questions whose answer text is not at its answer_start (e.g. %s)",
            train_file,
            len(mismatched),
            mismatched[:5],
        )
    window_settings = {
        "tokenizer": tokenizer,
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_query_length": max_query_length,
    }
    train_table = datasets.Dataset.from_list(usable)
    train_features = train_table.map(
        prepare_train_features, batched=True, remove_columns=train_table.column_names, fn_kwargs=window_settings
    )
    eval_table = datasets.Dataset.from_list(eval_examples)
    eval_features = eval_table.map(
        prepare_eval_features, batched=True, remove_columns=eval_table.column_names, fn_kwargs=window_settings
    )

    arguments = resolve_training_arguments(SquadTrainingArguments, output_dir, training_arguments, **training_overrides)
    set_seed(arguments.seed)
    trainer = MeanLossTrainer(
        model=task_model(model, AutoModelForQuestionAnswering),
        args=arguments,
        train_dataset=train_features,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    start_logits, end_logits = trainer.predict(
        eval_features.remove_columns(["example_id", "offset_mapping"])
    ).predictions
    best_answers, differences = postprocess_predictions(
        eval_examples, eval_features, start_logits, end_logits, n_best_size, max_answer_length
    )
    if version_2:
        predictions, metrics = apply_no_answer_threshold(eval_examples, best_answers, differences)
    else:
        predictions, metrics = best_answers, squad_metrics(eval_examples, best_answers, version_2=False)
    if trainer.is_world_process_zero():
        output = Path(arguments.output_dir)
        write_json_atomic(output / "predictions.json", predictions)
        if version_2:
            write_json_atomic(output / "null_odds.json", differences)
        data = {
            "train_file": str(Path(train_file).resolve()),
            "validation_file": str(Path(validation_file).resolve()),
            "demo_data": is_demo_data(train_file) and is_demo_data(validation_file),
            "version": "v2.0" if version_2 else "v1.1",
            "train_questions": len(usable),
            "validation_questions": len(eval_examples),
        }
        write_json_atomic(output / "eval_results.json", {**metrics, "data": data})
    if save_model:
        trainer.save_model()
    return metrics


def run_squad(squad_arguments: SquadArguments, arguments: TrainingArguments) -> dict[str, float]:
    """`scripts/finetune_squad.py`: `finetune_squad` with the script's arguments."""
    tokenizer = load_tokenizer(squad_arguments.tokenizer or squad_arguments.model_name_or_path)
    return finetune_squad(
        squad_arguments.model_name_or_path,
        squad_arguments.train_file,
        squad_arguments.validation_file,
        arguments.output_dir,
        tokenizer=tokenizer,
        version_2_with_negative=squad_arguments.version_2_with_negative,
        max_seq_length=squad_arguments.max_seq_length,
        doc_stride=squad_arguments.doc_stride,
        max_query_length=squad_arguments.max_query_length,
        n_best_size=squad_arguments.n_best_size,
        max_answer_length=squad_arguments.max_answer_length,
        max_train_samples=squad_arguments.max_train_samples,
        max_eval_samples=squad_arguments.max_eval_samples,
        training_arguments=arguments,
    )
