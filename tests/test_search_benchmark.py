"""The benchmark table builder: the mini pretraining protocol, the reliability statistic, the journal and resume."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from search.benchmark_builder import (
    BenchmarkBuildArguments,
    JournalError,
    RunJournal,
    RunRequest,
    build_benchmark,
    open_journal,
)
from search.benchmark_protocol import MiniPretraining, MiniPretrainingProtocol, ProtocolError, RunResult, split_articles
from search.benchmark_report import format_preset_report, preset_report
from search.reliability import one_way_icc
from modeling_autobert_zero.architecture import architecture_key
from search.space import enumerate_architectures
from search.tabular import BenchmarkTable
from training.corpus import is_article_heading, iter_documents


REPO = Path(__file__).resolve().parents[1]
DEMO_TEXT = REPO / "demo_data" / "wikitext-2-raw" / "wiki.demo.raw"
DEMO_VOCAB = REPO / "demo_data" / "vocab.txt"
TINY_PROTOCOL = MiniPretrainingProtocol(
    text_file=str(DEMO_TEXT),
    vocab_file=str(DEMO_VOCAB),
    hidden_size=16,
    num_attention_heads=2,
    intermediate_size=32,
    max_seq_length=32,
    batch_size=4,
    steps=3,
    warmup_steps=1,
    held_out_maskings=2,
)
CONV_AND_ATTENTION = [{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(cosine(Q, K), Q)"}]
TWO_ATTENTIONS = [{"type": "attention", "program": "matmul(cosine(K, Q), K)"}] * 2


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory) -> MiniPretraining:
    return MiniPretraining(TINY_PROTOCOL, tmp_path_factory.mktemp("protocol"))


# ---------------------------------------------------------------------------------------------------------
# The protocol.
# ---------------------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_loss_and_other_seeds_differ(tiny_pretraining):
    first = tiny_pretraining.run(CONV_AND_ATTENTION, seed=0)
    again = tiny_pretraining.run(CONV_AND_ATTENTION, seed=0)
    other = tiny_pretraining.run(CONV_AND_ATTENTION, seed=1)
    assert first.held_out_mlm_loss == again.held_out_mlm_loss and first.final_train_loss == again.final_train_loss
    assert other.held_out_mlm_loss != first.held_out_mlm_loss
    assert first.score == -first.held_out_mlm_loss and not first.diverged
    assert first.cpu_seconds > 0 and first.wall_seconds > 0


def test_the_held_out_masked_tokens_are_the_same_for_every_architecture_and_seed(tiny_pretraining, tmp_path):
    before = [{name: tensor.clone() for name, tensor in batch.items()} for batch in tiny_pretraining.held_out]
    for layers in (CONV_AND_ATTENTION, TWO_ATTENTIONS):
        for seed in (0, 1):
            tiny_pretraining.run(layers, seed)
    rebuilt = MiniPretraining(TINY_PROTOCOL, tmp_path)  # another process would prepare exactly these
    for batches in (tiny_pretraining.held_out, rebuilt.held_out):
        assert len(batches) == len(before)
        for batch, expected in zip(batches, before):
            assert batch.keys() == expected.keys()
            assert all(torch.equal(batch[name], expected[name]) for name in expected)
    scored = torch.cat([batch["labels"][batch["labels"] != -100] for batch in before])
    trained = {token for row in tiny_pretraining.train_rows for token in row["input_ids"]}
    assert len(scored) > 100 and set(scored.tolist()) <= trained  # only word pieces the training text has


def test_the_training_and_held_out_articles_are_disjoint():
    lines = DEMO_TEXT.read_text(encoding="utf-8").splitlines(keepends=True)
    train, held_out = split_articles(lines, [1, 5])
    assert len(train) + len(held_out) == len(lines)
    headings = [line.strip() for line in lines if is_article_heading(line)]
    assert [line.strip() for line in held_out if is_article_heading(line)] == [headings[1], headings[5]]
    assert [line.strip() for line in train if is_article_heading(line)] == [h for i, h in enumerate(headings) if i not in (1, 5)]
    with pytest.raises(ProtocolError, match=r"held_out_articles \[10\] outside the file's 10 articles"):
        split_articles(lines, [1, 10], "wiki.demo.raw")


def test_the_compact_vocabulary_splits_text_into_the_same_word_pieces(tiny_pretraining):
    from training.tokenization import load_tokenizer

    full = load_tokenizer(DEMO_VOCAB)
    sentences = [sentence for document in iter_documents(DEMO_TEXT.read_text(encoding="utf-8").splitlines(), "wikitext") for sentence in document]
    assert len(sentences) > 1000
    assert [tiny_pretraining.tokenizer.tokenize(sentence) for sentence in sentences] == [full.tokenize(sentence) for sentence in sentences]
    assert len(tiny_pretraining.tokenizer) < len(full) / 4


def test_a_protocol_read_back_from_json_is_checked_field_by_field():
    assert MiniPretrainingProtocol.from_json(TINY_PROTOCOL.to_json()) == TINY_PROTOCOL
    with pytest.raises(ProtocolError, match=r"protocol.steps: expected int, got '3'"):
        MiniPretrainingProtocol.from_json({"steps": "3"})
    with pytest.raises(ProtocolError, match=r"unknown field\(s\) \['step'\]"):
        MiniPretrainingProtocol.from_json({"step": 3})
    with pytest.raises(ProtocolError, match="hidden_size=30 is not a multiple"):
        MiniPretrainingProtocol(hidden_size=30, num_attention_heads=4)


# ---------------------------------------------------------------------------------------------------------
# Reliability: ICC(1).
# ---------------------------------------------------------------------------------------------------------


def test_icc_matches_hand_computed_values():
    # target means 1.5, 4, 6 (grand mean 23/6): MSB = 2·Σ(mean − 23/6)²/2 = 61/6, MSW = (0.5 + 2 + 0)/3 = 5/6
    result = one_way_icc([[1.0, 2.0], [3.0, 5.0], [6.0, 6.0]])
    assert result.icc == pytest.approx((61 / 6 - 5 / 6) / (61 / 6 + 5 / 6))
    assert result.between_sd == pytest.approx(math.sqrt((61 / 6 - 5 / 6) / 2))
    assert result.within_sd == pytest.approx(math.sqrt(5 / 6))
    assert result.ci_low < result.icc < result.ci_high <= 1.0
    # Shrout & Fleiss (1979), Table 2 data (6 targets × 4 judges): ICC(1,1) = .17 in their Table 4
    shrout_fleiss = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert round(one_way_icc(shrout_fleiss).icc, 2) == 0.17


def test_icc_of_at_least_0_8_means_the_between_spread_is_at_least_twice_the_seed_spread():
    rng = np.random.default_rng(0)
    for _ in range(200):
        between, within = rng.uniform(0.01, 1.0, size=2)
        table = rng.normal(0, between, size=(20, 1)) + rng.normal(0, within, size=(20, 2))
        result = one_way_icc(table)
        if result.between_sd > 0:
            assert result.icc == pytest.approx(result.between_sd**2 / (result.between_sd**2 + result.within_sd**2))
        assert (result.icc >= 0.8) == (result.between_sd >= 2 * result.within_sd - 1e-12)


def test_icc_refuses_a_table_it_cannot_judge():
    with pytest.raises(ValueError, match="at least 2 targets × 2 repeats"):
        one_way_icc([[1.0, 2.0]])
    with pytest.raises(ValueError, match="finite"):
        one_way_icc([[1.0, 2.0], [1.0, math.nan]])


# ---------------------------------------------------------------------------------------------------------
# The builder: a tiny sub-space, the journal, resume after a kill.
# ---------------------------------------------------------------------------------------------------------

TINY_FLAGS = [
    "--text_file", str(DEMO_TEXT), "--vocab_file", str(DEMO_VOCAB),
    "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32", "--max_seq_length", "32",
    "--batch_size", "4", "--steps", "6", "--warmup_steps", "1", "--held_out_maskings", "1",
    "--num_layers", "1", "--kernel_sizes", "3", "9", "--ops", "matmul", "cosine", "--max_program_length", "2",
    "--presets", "bert", "--preset_seeds", "0", "1", "--calibration_architectures", "4",
]  # 2 kernels + 6 programs = 8 architectures × 2 seeds, and 2 preset runs


def _arguments(tmp_path: Path, name: str, workers: int = 1):
    from transformers import HfArgumentParser

    flags = [*TINY_FLAGS, "--output", str(tmp_path / f"{name}.json"), "--work_dir", str(tmp_path / name), "--workers", str(workers)]
    protocol, arguments = HfArgumentParser((MiniPretrainingProtocol, BenchmarkBuildArguments)).parse_args_into_dataclasses(args=flags)
    return protocol, arguments, flags


@pytest.fixture(scope="module")
def straight_build(tmp_path_factory) -> tuple[BenchmarkTable, Path]:
    """The tiny sub-space built in one go, in this process: the table and its file."""
    protocol, arguments, flags = _arguments(tmp_path_factory.mktemp("straight"), "table")
    return build_benchmark(arguments, protocol, flags), Path(arguments.output)


def test_the_builder_writes_an_exhaustive_valid_table(straight_build):
    table, path = straight_build
    assert BenchmarkTable.load(path) == table and path.with_suffix(".csv").read_text().count("\n") == 9
    assert table.exhaustive and table.seeds == (0, 1) and len(table) == 8
    assert {architecture_key(entry.architecture) for entry in table.entries} == {
        architecture_key(layers) for layers in enumerate_architectures(table.space)
    }
    assert all(len(set(entry.scores)) == 2 and entry.score < 0 for entry in table.entries)
    assert table.reliability["kind"].startswith("ICC(1)") and len(table.reliability["calibration"]["architectures"]) == 4
    (bert,) = table.presets
    assert bert["name"] == "bert" and len(bert["layers"]) == 12 and len(bert["held_out_mlm_loss"]) == 2
    assert table.protocol["steps"] == 6 and table.protocol["data"]["held_out_masked_tokens"] > 0
    provenance = table.provenance
    assert provenance["runs"] == 18 and set(provenance["versions"]) == {"python", "torch", "transformers", "git_commit"}
    assert set(provenance["data_sha256"]) == {str(DEMO_TEXT), str(DEMO_VOCAB)}
    assert provenance["quiet_machine_estimate_seconds"] == pytest.approx(provenance["runs_cpu_seconds"])  # 1 worker
    assert provenance["command"][:2] == ["python", "scripts/build_benchmark.py"] or "--output" in provenance["command"]


def test_a_killed_build_resumes_to_the_scores_of_an_uninterrupted_one(tmp_path, straight_build):
    """SIGKILL the build (and its worker processes) once a few runs are journaled; a rerun trains only the rest
    and gives exactly the table of a build that was never interrupted."""
    protocol, arguments, flags = _arguments(tmp_path, "killed", workers=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "build_benchmark.py"), *flags],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    journal = Path(arguments.work_dir) / "journal.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:  # the header and 2 runs
            break
        time.sleep(0.01)
    assert process.poll() is None, f"the build ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    os.killpg(process.pid, signal.SIGKILL)  # the build and its workers: the whole session it started
    process.wait()
    journaled = journal.read_bytes().count(b"\n") - 1
    assert 2 <= journaled < 18

    resumed_arguments = dataclasses.replace(arguments, workers=1)
    resumed = build_benchmark(resumed_arguments, protocol, flags)
    assert journal.read_bytes().count(b"\n") - 1 == 18  # nothing trained twice
    straight, _ = straight_build
    assert [entry.scores for entry in resumed.entries] == [entry.scores for entry in straight.entries]
    assert [preset["held_out_mlm_loss"] for preset in resumed.presets] == [preset["held_out_mlm_loss"] for preset in straight.presets]


def _journal_with_two_runs(tmp_path: Path) -> tuple[RunJournal, Path]:
    protocol, arguments, _ = _arguments(tmp_path, "journal")
    journal, _, _ = open_journal(arguments, protocol)
    result = RunResult(held_out_mlm_loss=6.5, final_train_loss=7.0, diverged=False, wall_seconds=1.0, cpu_seconds=0.9)
    journal.add(RunRequest(CONV_AND_ATTENTION, 0), result)
    journal.add(RunRequest(CONV_AND_ATTENTION, 1), result)
    return journal, journal.path


def test_a_corrupt_journal_line_is_an_error_naming_the_file_and_line(tmp_path):
    journal, path = _journal_with_two_runs(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + lines[2])
    with pytest.raises(JournalError, match=rf"{path}:2: corrupt line, not JSON"):
        RunJournal(path, journal.header)
    path.write_text(lines[0] + lines[1] + '{"seed": 1}\n')
    with pytest.raises(JournalError, match=rf"{path}:3: not a run record"):
        RunJournal(path, journal.header)


def test_an_unfinished_last_line_is_dropped_and_that_run_is_done_again(tmp_path):
    journal, path = _journal_with_two_runs(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) - 20])  # killed while writing the last record
    reopened = RunJournal(path, journal.header)
    assert RunRequest(CONV_AND_ATTENTION, 0) in reopened and RunRequest(CONV_AND_ATTENTION, 1) not in reopened
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 2


def test_a_journal_of_another_protocol_is_refused(tmp_path):
    journal, path = _journal_with_two_runs(tmp_path)
    header = {**journal.header, "protocol": {**journal.header["protocol"], "steps": 99}}
    with pytest.raises(JournalError, match=rf"{path}:1: the journal was written for another protocol \(steps: journal 6, now 99\)"):
        RunJournal(path, header)


# ---------------------------------------------------------------------------------------------------------
# The presets side by side (paper Table 5 at mini scale).
# ---------------------------------------------------------------------------------------------------------


def _table_with_presets(straight: BenchmarkTable, losses: dict[str, list[float]]) -> BenchmarkTable:
    presets = tuple(
        {"name": name, "seeds": list(range(len(values))), "held_out_mlm_loss": values,
         "mean_held_out_mlm_loss": float(np.mean(values)), "sd_held_out_mlm_loss": float(np.std(values, ddof=1))}
        for name, values in losses.items()
    )
    return dataclasses.replace(straight, presets=presets)


def test_the_preset_report_pairs_seeds_and_places_presets_in_the_table(straight_build):
    straight, _ = straight_build
    losses = {
        "autobert-zero-conv-only": [6.10, 6.12, 6.11, 6.13, 6.09],
        "bert": [6.20, 6.21, 6.23, 6.20, 6.22],
        "autobert-zero": [6.15, 6.16, 6.18, 6.14, 6.17],
    }
    report = preset_report(_table_with_presets(straight, losses))
    assert report["measured_order"] == ["autobert-zero-conv-only", "autobert-zero", "bert"]
    assert report["paper_order"] == ["autobert-zero", "bert", "autobert-zero-conv-only"] and not report["paper_order_holds"]
    first = next(test for test in report["paired_tests"] if test["second"] == "bert" and test["first"] == "autobert-zero-conv-only")
    differences = np.subtract(losses["autobert-zero-conv-only"], losses["bert"])
    assert first["mean_difference"] == pytest.approx(differences.mean()) and first["first_better_seeds"] == 5
    t_statistic = differences.mean() / (differences.std(ddof=1) / math.sqrt(5))
    assert first["paired_t_p"] == pytest.approx(2 * scipy_stats.t.sf(abs(t_statistic), df=4))
    assert first["wilcoxon_p"] == pytest.approx(2 / 32)  # all five differences one way: the exact minimum
    table_losses = np.array([-entry.score for entry in straight.entries])
    conv_only = report["presets"][0]
    assert conv_only["table_percentile"] == pytest.approx(100 * (table_losses > conv_only["mean"]).mean())
    text = format_preset_report(report)
    assert "| `autobert-zero-conv-only` | 6.1000 | 6.1200 |" in text and "does not hold" in text
