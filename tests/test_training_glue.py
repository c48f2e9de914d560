"""GLUE readers for every task's original TSV layout, the Hub layout, submission files, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np
import pytest

from training import glue
from training.glue import GLUE_TASKS, GlueFormatError, load_glue_task, read_glue_tsv, write_submission_file
from training.glue_tasks import TRAINABLE_TASKS, get_glue_task, parse_task_names
from training.tokenization import load_tokenizer

from conftest import DEMO_DATA, FULL_DATA, data_sources


VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"  # words of these tests + characters

SENTENCES = ['He said " hello', "The cat sat on the mat .", "It's a test sentence", "Dogs bark loudly ."]
MNLI_PARSES = "( a )\t( b )\t(ROOT a)\t(ROOT b)"

# Per task: labelled files' header (None: CoLA's headerless layout) and row, the test files' header and row.
LAYOUTS = {
    "cola": (
        None,
        lambda i, s, t, y: f"gj04\t{y}\t{'*' if y == '0' else ''}\t{s}",
        "index\tsentence",
        lambda i, s, t: f"{i}\t{s}",
    ),
    "sst2": ("sentence\tlabel", lambda i, s, t, y: f"{s}\t{y}", "index\tsentence", lambda i, s, t: f"{i}\t{s}"),
    "mrpc": (
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        lambda i, s, t, y: f"{y}\t{100 + i}\t{200 + i}\t{s}\t{t}",
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        lambda i, s, t: f"{i}\t{100 + i}\t{200 + i}\t{s}\t{t}",
    ),
    "stsb": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        lambda i, s, t, y: f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{s}\t{t}\t{y}",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
        lambda i, s, t: f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{s}\t{t}",
    ),
    "qqp": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        lambda i, s, t, y: f"{i}\t{2 * i}\t{2 * i + 1}\t{s}\t{t}\t{y}",
        "id\tquestion1\tquestion2",
        lambda i, s, t: f"{i}\t{s}\t{t}",
    ),
    "mnli": (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
        lambda i, s, t, y: f"{i}\t{i}\t{i}e\tfiction\t{MNLI_PARSES}\t{s}\t{t}\t{y}\t{y}",
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2",
        lambda i, s, t: f"{i}\t{i}\t{i}e\tfiction\t{MNLI_PARSES}\t{s}\t{t}",
    ),
    "qnli": (
        "index\tquestion\tsentence\tlabel",
        lambda i, s, t, y: f"{i}\t{s}\t{t}\t{y}",
        "index\tquestion\tsentence",
        lambda i, s, t: f"{i}\t{s}\t{t}",
    ),
    "rte": (
        "index\tsentence1\tsentence2\tlabel",
        lambda i, s, t, y: f"{i}\t{s}\t{t}\t{y}",
        "index\tsentence1\tsentence2",
        lambda i, s, t: f"{i}\t{s}\t{t}",
    ),
    "wnli": (
        "index\tsentence1\tsentence2\tlabel",
        lambda i, s, t, y: f"{i}\t{s}\t{t}\t{y}",
        "index\tsentence1\tsentence2",
        lambda i, s, t: f"{i}\t{s}\t{t}",
    ),
}


def _labels(task_name: str, count: int) -> list[str]:
    task = get_glue_task(task_name)
    if task.is_regression:
        return [f"{(index * 1.3) % 5:.3f}" for index in range(count)]
    return [task.labels[index % len(task.labels)] for index in range(count)]


def write_glue_task(root: Path, task_name: str, count: int = 4) -> Path:
    """``root/<TASK>/`` in the original GLUE layout, every split of ``count`` rows (test indices from 10)."""
    task = get_glue_task(task_name)
    header, make_row, test_header, make_test_row = LAYOUTS[task.name]
    directory = root / task.directory
    directory.mkdir(parents=True, exist_ok=True)
    pairs = [(SENTENCES[i % 4], SENTENCES[(i + 1) % 4]) for i in range(count)]
    for split, file_name in task.split_files.items():
        if split.startswith("test"):
            lines = [test_header, *(make_test_row(10 + i, first, second) for i, (first, second) in enumerate(pairs))]
        else:
            labels = _labels(task.name, count)
            lines = ([header] if header else []) + [
                make_row(i, s, t, y) for i, ((s, t), y) in enumerate(zip(pairs, labels))
            ]
        (directory / file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(VOCAB)


@pytest.mark.parametrize("task_name", TRAINABLE_TASKS)
def test_every_task_layout_reads_texts_labels_and_test_indices(tmp_path, task_name):
    task = get_glue_task(task_name)
    directory = write_glue_task(tmp_path, task_name)
    labels = _labels(task_name, 4)
    for split, file_name in task.split_files.items():
        columns, skipped = read_glue_tsv(directory / file_name, task_name, split)
        assert skipped == []
        assert columns["text_a"] == [SENTENCES[i % 4] for i in range(4)]  # quotes kept verbatim
        if len(task.text_columns) == 2:
            assert columns["text_b"] == [SENTENCES[(i + 1) % 4] for i in range(4)]
        if split.startswith("test"):
            assert columns["idx"] == [10, 11, 12, 13] and "labels" not in columns
        elif task.is_regression:
            assert columns["labels"] == pytest.approx([float(label) for label in labels])
        else:
            assert [task.labels[label] for label in columns["labels"]] == labels


def test_load_glue_task_tokenizes_pairs_and_names_splits_like_the_hub(tmp_path, tokenizer):
    write_glue_task(tmp_path, "mnli")
    data = load_glue_task("MNLI", tmp_path, tokenizer, max_seq_length=8)
    assert list(data) == ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]
    example = data["train"][0]
    assert len(example["input_ids"]) <= 8 and example["input_ids"].count(tokenizer.sep_token_id) == 2
    assert set(example["token_type_ids"]) == {0, 1} and example["labels"] == 0
    assert data["test_matched"].column_names == ["idx", "input_ids", "token_type_ids", "attention_mask"]
    # a task folder works as data_dir too, and a renamed dev file can stand in for a split
    renamed = write_glue_task(tmp_path / "kshot", "rte")
    (renamed / "dev.tsv").rename(renamed / "dev_sampled.tsv")
    data = load_glue_task("rte", renamed, tokenizer, split_files={"validation": "dev_sampled.tsv"})
    assert sorted(data) == ["test", "train", "validation"]


def test_missing_splits_are_left_out_and_missing_folders_explained(tmp_path, tokenizer):
    directory = write_glue_task(tmp_path, "qnli")
    (directory / "train.tsv").unlink()
    assert sorted(load_glue_task("qnli", tmp_path, tokenizer)) == ["test", "validation"]
    with pytest.raises(
        FileNotFoundError, match=r"expects \{'train': 'train.tsv'\}; the folder holds \['dev.tsv', 'test.tsv'\]"
    ):
        load_glue_task("qnli", tmp_path, tokenizer, splits=["train"])
    with pytest.raises(FileNotFoundError, match="the folder holds"):
        load_glue_task("mnli", tmp_path / "QNLI", tokenizer)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_glue_task("cola", tmp_path / "nowhere", tokenizer)
    with pytest.raises(FileNotFoundError, match="no training split"):
        glue.finetune_glue(str(tmp_path), "qnli", tmp_path, tmp_path / "out", tokenizer=tokenizer)


def test_wrong_field_count_names_file_and_line_or_is_skipped_and_counted(tmp_path, caplog):
    directory = write_glue_task(tmp_path, "rte")
    path = directory / "train.tsv"
    lines = path.read_text().splitlines()
    lines.insert(3, "7\tonly two fields")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GlueFormatError, match=r"train.tsv, line 4: expected 4 tab-separated fields .* found 2"):
        read_glue_tsv(path, "rte", "train")
    with caplog.at_level(logging.WARNING, logger="training.glue"):
        columns, skipped = read_glue_tsv(path, "rte", "train", skip_malformed_rows=True)
    assert skipped == [4] and len(columns["text_a"]) == 4
    assert "skipped 1 malformed rows (lines [4])" in caplog.text


@pytest.mark.parametrize(
    ("task_name", "bad_row", "message"),
    [
        (
            "rte",
            "9\ta\tb\tentails",
            r"line 6, field 'label': label 'entails' is not one of rte's labels \['entailment', 'not_entailment'\]",
        ),
        ("cola", "gj04\t2\t\tsentence", r"line 5, field 'label': label '2' is not one of cola's labels"),
        (
            "stsb",
            "9\tg\tf\ty\t0\tn\tn\ta\tb\t5.5",
            r"line 6, field 'score': score 5.5 lies outside stsb's range \[0.0, 5.0\]",
        ),
        ("stsb", "9\tg\tf\ty\t0\tn\tn\ta\tb\thigh", r"line 6, field 'score': expected a number, found 'high'"),
    ],
)
def test_labels_outside_the_task_label_set_are_errors(tmp_path, task_name, bad_row, message):
    directory = write_glue_task(tmp_path, task_name)
    path = directory / "train.tsv"
    path.write_text(path.read_text() + bad_row + "\n")
    with pytest.raises(GlueFormatError, match=message):
        read_glue_tsv(path, task_name, "train")


def test_headers_and_test_indices_are_checked(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(GlueFormatError, match=r"line 1: header .* lacks the column\(s\) \['sentence1', 'sentence2'\]"):
        read_glue_tsv(path, "rte", "validation")
    path.write_text("index\tsentence1\tsentence2\nfirst\ta\tb\n")
    with pytest.raises(GlueFormatError, match=r"line 2, field 'index': expected an integer index, found 'first'"):
        read_glue_tsv(path, "rte", "test")
    path.write_text("")
    with pytest.raises(GlueFormatError, match="empty file"):
        read_glue_tsv(path, "rte", "test")


def test_task_names_are_checked_and_expanded():
    with pytest.raises(ValueError, match=r"unknown GLUE task 'boolq'; expected one of \['ax', 'cola'"):
        get_glue_task("boolq")
    assert get_glue_task("SST-2").name == "sst2" and get_glue_task("STS-B").name == "stsb"
    assert parse_task_names("all") == list(TRAINABLE_TASKS) and TRAINABLE_TASKS[0] == "mnli"
    assert parse_task_names("rte, mnli,RTE") == ["mnli", "rte"]
    with pytest.raises(ValueError, match="no training data"):
        parse_task_names("ax")


def test_submission_files_use_label_names_and_scores(tmp_path):
    rte = write_submission_file(tmp_path / "RTE.tsv", "rte", [0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert rte.read_text() == "index\tprediction\n0\tentailment\n1\tnot_entailment\n"
    stsb = write_submission_file(tmp_path / "STS-B.tsv", "stsb", [3, 4], np.array([[4.25], [0.5]]))
    assert stsb.read_text() == "index\tprediction\n3\t4.250\n4\t0.500\n"
    mnli = write_submission_file(tmp_path / "MNLI-m.tsv", "mnli", [7], np.array([[0.0, 0.1, 2.0]]))
    assert mnli.read_text() == "index\tprediction\n7\tcontradiction\n"
    assert GLUE_TASKS["ax"].submission_files == {"test": "AX.tsv"}


def test_hub_layout_is_renamed_to_the_same_columns(monkeypatch, tokenizer):
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"premise": ["a b"], "hypothesis": ["c"], "label": [2], "idx": [0]}),
            "test_matched": datasets.Dataset.from_dict(
                {"premise": ["d"], "hypothesis": ["e"], "label": [-1], "idx": [5]}
            ),
        }
    )
    requested = []
    monkeypatch.setattr(
        glue.datasets, "load_dataset", lambda name, config, cache_dir=None: requested.append((name, config)) or hub
    )
    data = load_glue_task("mnli", None, tokenizer)
    assert requested == [("nyu-mll/glue", "mnli")]
    assert data["train"][0]["labels"] == 2 and "labels" not in data["test_matched"].column_names
    assert data["test_matched"][0]["idx"] == 5


GLUE_FILES = data_sources(
    demo=(DEMO_DATA / "glue", {  # demo_data/PROVENANCE.md: each file's first lines, header included
        ("sst2", "train"): 800, ("sst2", "validation"): 200, ("mrpc", "train"): 400, ("mrpc", "validation"): 100,
        ("rte", "train"): 400, ("rte", "validation"): 100,
    }),
    full=(FULL_DATA / "glue", {  # the shared data's PROVENANCE.md record counts
        ("cola", "train"): 8551, ("cola", "validation"): 1043, ("cola", "test"): 1063,
        ("sst2", "validation"): 872, ("sst2", "test"): 1821,
        ("mrpc", "train"): 3668, ("mrpc", "validation"): 408, ("mrpc", "test"): 1725,
        ("stsb", "train"): 5749, ("stsb", "validation"): 1500, ("stsb", "test"): 1379,
        ("qnli", "validation"): 5463, ("rte", "train"): 2490, ("rte", "validation"): 277, ("rte", "test"): 3000,
        ("wnli", "train"): 635, ("wnli", "validation"): 71, ("wnli", "test"): 146, ("ax", "test"): 1104,
    }),
)  # fmt: skip


@pytest.mark.parametrize("source", list(GLUE_FILES))
def test_the_real_glue_files_parse_completely(source):
    root, expected_rows = GLUE_FILES[source]
    for (task_name, split), rows in expected_rows.items():
        task = get_glue_task(task_name)
        columns, skipped = read_glue_tsv(root / task.directory / task.split_files[split], task_name, split)
        assert (len(columns["text_a"]), skipped) == (rows, []), (task_name, split)
    if source == "full":
        columns, _ = read_glue_tsv(root / "MNLI" / "kshot-16-42" / "train.tsv", "mnli", "train")
        assert np.bincount(columns["labels"]).tolist() == [16, 16, 16]
