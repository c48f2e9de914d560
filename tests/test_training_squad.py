"""SQuAD reading (and its errors), sliding-window features, and n-best post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from training.metrics import normalize_answer
from training.squad import (
    NO_SPAN_DIFFERENCE,
    SquadFormatError,
    finetune_squad,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    read_squad_file,
)
from training.tokenization import load_tokenizer

from conftest import DEMO_DATA, FULL_DATA, data_sources


VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"  # words of these tests + characters

CONTEXT = (
    "The lighthouse stands on the northern cape. It was built in 1852 by the harbour board. "
    "Its lamp burned whale oil until 1901, when a paraffin lamp replaced it. "
    "Keepers lived in the cottage beside the tower until the light was automated in 1979."
)


def squad_document(questions: list[dict], version: str = "v2.0", context: str = CONTEXT) -> dict:
    return {
        "version": version,
        "data": [{"title": "Lighthouse", "paragraphs": [{"context": context, "qas": questions}]}],
    }


def question(question_id: str, text: str, answer: str | None, **extra) -> dict:
    answers = [] if answer is None else [{"text": answer, "answer_start": CONTEXT.index(answer)}]
    return {"id": question_id, "question": text, "answers": answers, **extra}


QUESTIONS = [
    question("q1", "When was the lighthouse built?", "1852"),
    question("q2", "What did the lamp burn until 1901?", "whale oil"),
    question("q3", "When was the light automated?", "1979"),
    question("q4", "Who painted the tower?", None, is_impossible=True),
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(VOCAB)


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_reading_flattens_questions_and_detects_version_2(tmp_path):
    examples, version_2 = read_squad_file(write_json(tmp_path / "dev.json", squad_document(QUESTIONS)))
    assert version_2 and [example["id"] for example in examples] == ["q1", "q2", "q3", "q4"]
    assert examples[1]["answers"] == {"text": ["whale oil"], "answer_start": [CONTEXT.index("whale oil")]}
    assert examples[3]["is_impossible"] and examples[3]["answers"] == {"text": [], "answer_start": []}
    _, version_2 = read_squad_file(write_json(tmp_path / "v1.json", squad_document(QUESTIONS[:3], version="1.1")))
    assert not version_2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], r"top level: expected an object with a 'data' list of articles"),
        ({"version": "1.1", "articles": []}, r"top level: expected an object with a 'data' list"),
        ({"data": [{"title": "x"}]}, r"data\[0\]: expected an object with a 'paragraphs' list"),
        (
            {"data": [{"paragraphs": [{"context": 3, "qas": []}]}]},
            r"data\[0\].paragraphs\[0\].context: expected a string",
        ),
        (squad_document([{"id": "q", "question": None, "answers": []}]), r"qas\[0\].question: expected a string"),
        (
            squad_document([{"id": "q", "question": "?", "answers": [{"text": "x", "answer_start": "5"}]}]),
            r"qas\[0\].answers\[0\].answer_start: expected a character offset in \[0, \d+\], found \"5\"",
        ),
        (
            squad_document([{"id": "q", "question": "?", "answers": [{"text": "x", "answer_start": 10**6}]}]),
            r"answers\[0\].answer_start: expected a character offset",
        ),
        (
            squad_document([{"id": "q", "question": "?", "answers": []}], version="1.1"),
            r"qas\[0\].answers: expected at least one answer",
        ),
        (squad_document([QUESTIONS[0], QUESTIONS[0]]), r"qas\[1\].id: expected an id used once in the file"),
        (squad_document([{**QUESTIONS[3], "is_impossible": "yes"}]), r"qas\[0\].is_impossible: expected true or false"),
        ({"data": []}, "no questions found"),
    ],
)
def test_files_that_are_not_squad_shaped_are_errors_naming_the_json_path(tmp_path, document, message):
    path = write_json(tmp_path / "bad.json", document)
    with pytest.raises(SquadFormatError, match=message) as error:
        read_squad_file(path)
    assert str(path) in str(error.value)


def test_invalid_json_and_missing_files_are_reported(tmp_path):
    (tmp_path / "broken.json").write_text('{"data": [')
    with pytest.raises(SquadFormatError, match="broken.json: not valid JSON"):
        read_squad_file(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        read_squad_file(tmp_path / "missing.json")


def _columns(examples: list[dict]) -> dict[str, list]:
    return {name: [example[name] for example in examples] for name in examples[0]}


def test_windows_point_at_the_answer_or_at_cls(tmp_path, tokenizer):
    examples, _ = read_squad_file(write_json(tmp_path / "dev.json", squad_document(QUESTIONS)))
    settings = {"tokenizer": tokenizer, "max_seq_length": 32, "doc_stride": 8, "max_query_length": 12}
    features = prepare_train_features(_columns(examples), **settings)
    windows = prepare_eval_features(_columns(examples), **settings)
    assert len(features["input_ids"]) == len(windows["example_id"]) > len(examples)  # long context → several windows
    found = {example["id"]: 0 for example in examples}
    for index, (ids, start, end) in enumerate(
        zip(features["input_ids"], features["start_positions"], features["end_positions"])
    ):
        assert len(ids) <= 32
        example = examples[[e["id"] for e in examples].index(windows["example_id"][index])]
        if start == 0:
            assert end == 0
            continue
        found[example["id"]] += 1
        offsets = windows["offset_mapping"][index]
        assert normalize_answer(example["context"][offsets[start][0] : offsets[end][1]]) == normalize_answer(
            example["answers"]["text"][0]
        )
    assert found["q4"] == 0 and all(found[question_id] >= 1 for question_id in ("q1", "q2", "q3"))


def test_long_questions_are_cut_to_max_query_length(tokenizer):
    long_question = {"id": "q", "question": "   " + " ".join(["lamp"] * 40) + "?", "context": CONTEXT}
    long_question["answers"] = {"text": ["1852"], "answer_start": [CONTEXT.index("1852")]}
    features = prepare_eval_features(
        _columns([long_question]), tokenizer, max_seq_length=48, doc_stride=8, max_query_length=10
    )
    question_tokens = features.sequence_ids(0).count(0)
    assert question_tokens == 10


def test_postprocessing_picks_the_best_valid_span_and_the_null_difference(tmp_path, tokenizer):
    examples, _ = read_squad_file(write_json(tmp_path / "dev.json", squad_document(QUESTIONS[:2])))
    features = datasets.Dataset.from_dict(
        prepare_eval_features(_columns(examples), tokenizer, max_seq_length=64, doc_stride=16, max_query_length=16)
    )
    start_logits = np.full((len(features), 64), -5.0)
    end_logits = np.full((len(features), 64), -5.0)
    for index, (example_id, offsets) in enumerate(zip(features["example_id"], features["offset_mapping"])):
        answer = "1852" if example_id == "q1" else "whale oil"
        begin = CONTEXT.index(answer)
        tokens = [
            position for position, offset in enumerate(offsets) if offset and begin <= offset[0] < begin + len(answer)
        ]
        if tokens:
            start_logits[index, tokens[0]], end_logits[index, tokens[-1]] = 4.0, 3.0
            start_logits[index, tokens[-1] + 1] = 6.0  # the best start lies after the best end
        start_logits[index, 0] = end_logits[index, 0] = 1.0  # null score 2
    answers, differences = postprocess_predictions(
        examples, features, start_logits, end_logits, n_best_size=5, max_answer_length=30
    )
    assert answers == {"q1": "1852", "q2": "whale oil"}
    assert differences == pytest.approx({"q1": 2.0 - 7.0, "q2": 2.0 - 7.0})
    short, _ = postprocess_predictions(examples, features, start_logits, end_logits, n_best_size=5, max_answer_length=1)
    assert short["q1"] == "1852" and short["q2"] and " " not in short["q2"]  # "whale oil" is two tokens: too long
    nothing, no_span = postprocess_predictions(
        examples, features, np.zeros_like(start_logits), np.zeros_like(end_logits), n_best_size=1
    )
    assert nothing == {"q1": "", "q2": ""} and set(no_span.values()) == {NO_SPAN_DIFFERENCE}  # only [CLS] in the n-best


def test_doc_stride_must_leave_room_for_context(tmp_path, tokenizer):
    path = write_json(tmp_path / "dev.json", squad_document(QUESTIONS))
    with pytest.raises(ValueError, match=r"doc_stride \(100\) must be smaller than"):
        finetune_squad(
            str(tmp_path), path, path, tmp_path / "out", tokenizer=tokenizer, max_seq_length=128, doc_stride=100
        )


SQUAD_DEV = data_sources(  # (v1.1 dev file, v2.0 dev file, their questions, v2.0's unanswerable questions)
    demo=(DEMO_DATA / "squad" / "v1.1" / "dev.json", DEMO_DATA / "squad" / "v2.0" / "dev.json", 50, 145, 89),
    full=(FULL_DATA / "squad" / "dev-v1.1.json", FULL_DATA / "squad" / "v2.0-cs224n-split" / "dev-v2.0.json", 10_570, 6_078, 3_168),
)


@pytest.mark.parametrize("source", list(SQUAD_DEV))
def test_the_real_squad_files_read_completely(source):
    version_1, version_2, questions_1, questions_2, unanswerable = SQUAD_DEV[source]
    examples, is_v2 = read_squad_file(version_1)
    assert (len(examples), is_v2) == (questions_1, False)
    examples, is_v2 = read_squad_file(version_2)
    assert (len(examples), is_v2, sum(example["is_impossible"] for example in examples)) == (questions_2, True, unanswerable)
