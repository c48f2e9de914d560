"""BIWS fidelity against a benchmark table (search/fidelity.py, scripts/fidelity.py): the rank statistics on
hand-made numbers, and the whole command on a tiny table whose protocol trains for a few steps."""

from __future__ import annotations

import json
import math
import runpy
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from search.benchmark_protocol import MiniPretrainingProtocol
from search.fidelity import (
    FidelityError,
    age_correlation,
    bootstrap_kendall_gain,
    bootstrap_kendall_interval,
    evaluation_orders,
    kendall_tau,
    sample_entries,
    seed_tau_ceiling,
    table_protocol,
)
from search.space import SearchSpace, enumerate_architectures
from search.state import atomic_write_json
from search.tabular import BenchmarkTable, TableEntry


REPOSITORY = Path(__file__).resolve().parents[1]
SPACE = SearchSpace(
    num_layers=2, layer_types=("conv", "attention"), kernel_sizes=(3, 65), ops=("matmul", "cosine"), inputs=("Q", "K"),
    min_program_length=2, max_program_length=2,
)  # 8 options a layer, 64 architectures
TINY_PROTOCOL = MiniPretrainingProtocol(
    hidden_size=8, num_attention_heads=2, intermediate_size=16, max_seq_length=32, batch_size=8, steps=2, warmup_steps=1,
    held_out_maskings=1,
)


def _entries(seed0: list[float], seed1: list[float]) -> list[TableEntry]:
    architectures = enumerate_architectures(SPACE)
    return [TableEntry(architectures[i], (a, b), (1.0, 1.0)) for i, (a, b) in enumerate(zip(seed0, seed1))]


def _table(protocol: dict | None = None) -> BenchmarkTable:
    count = len(enumerate_architectures(SPACE))
    rng = np.random.default_rng(0)
    quality = rng.normal(-6.0, 0.05, count)
    entries = _entries(list(quality + rng.normal(0, 0.02, count)), list(quality + rng.normal(0, 0.02, count)))
    protocol = {**TINY_PROTOCOL.to_json(), "data": {}} if protocol is None else protocol
    return BenchmarkTable("tiny", SPACE, (0, 1), tuple(entries), True, "neg_held_out_mlm_loss", protocol=protocol)


def test_the_seed_ceiling_is_kendall_tau_between_the_first_two_seeds_by_hand():
    # pairs (i < j) of seed 0 = 1 2 3 4 against seed 1 = 1 3 2 4: only (2, 3) is discordant -> (5 - 1) / 6
    ceiling = seed_tau_ceiling(_entries([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]))
    assert ceiling.value == pytest.approx(2 / 3) and ceiling.count == 4 and ceiling.undefined_reason is None


def test_tied_scores_give_an_undefined_tau_with_a_reason_that_strict_json_can_hold(tmp_path):
    tau = kendall_tau([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    assert tau.value is None and tau.p_value is None and "same" in tau.undefined_reason
    atomic_write_json(tmp_path / "tau.json", tau.to_json("kendall_tau"))  # strict JSON: NaN would raise
    assert json.loads((tmp_path / "tau.json").read_text())["kendall_tau"] is None


def test_the_bootstrap_interval_is_seeded_and_holds_the_point_estimate():
    rng = np.random.default_rng(3)
    x = np.arange(20.0)
    y = x + rng.normal(0, 6, 20)
    tau = kendall_tau(x, y).value
    interval = bootstrap_kendall_interval(x, y, replicates=2000, seed=1)
    assert interval.low < tau < interval.high and -1 <= interval.low and interval.high <= 1
    assert interval == bootstrap_kendall_interval(x, y, replicates=2000, seed=1)
    assert interval != bootstrap_kendall_interval(x, y, replicates=2000, seed=2)
    gain = bootstrap_kendall_gain(x, y, x, replicates=500, seed=1)  # tau(x, x) = 1 against tau(y, x)
    assert gain.low <= 1 - tau <= gain.high and gain.high <= 2


def test_orders_are_seeded_distinct_permutations():
    orders = evaluation_orders(20, 2, seed=0)
    assert orders == evaluation_orders(20, 2, seed=0) and orders != evaluation_orders(20, 2, seed=1)
    assert orders[0] != orders[1] and all(sorted(order) == list(range(20)) for order in orders)
    assert sorted(evaluation_orders(2, 2, seed=0)) == [[0, 1], [1, 0]]  # redrawn until distinct
    with pytest.raises(FidelityError, match="only 2 orders"):
        evaluation_orders(2, 3, seed=0)


def test_age_correlation_is_spearman_of_score_against_index():
    pooled, per_order = age_correlation([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    assert [statistic.value for statistic in per_order] == pytest.approx([1.0, -1.0])
    assert pooled.value == pytest.approx(0.0, abs=1e-12) and pooled.count == 8  # opposite drifts cancel when pooled


def test_the_sample_is_seeded_and_the_control_lies_outside_it():
    table = _table()
    sample, control = sample_entries(table, 20, seed=0)
    assert [e.architecture for e in sample] == [e.architecture for e in sample_entries(table, 20, seed=0)[0]]
    assert control.architecture not in [entry.architecture for entry in sample] and len(sample) == 20
    with pytest.raises(FidelityError, match="one more than the sample"):
        sample_entries(table, len(table), seed=0)


def test_a_table_without_a_mini_pretraining_protocol_is_refused_by_name():
    with pytest.raises(FidelityError, match="tiny.json: protocol: unknown field"):
        table_protocol(_table({"synthetic": True}), "tiny.json")


def _run_fidelity(arguments: list[str], capsys) -> tuple[dict, dict]:
    saved = sys.argv
    sys.argv = ["scripts/fidelity.py", *arguments]
    try:
        runpy.run_path(str(REPOSITORY / "scripts" / "fidelity.py"), run_name="__main__")
    finally:
        sys.argv = saved
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return printed, json.loads(Path(arguments[arguments.index("--output") + 1]).read_text())


def test_the_command_reports_every_number_and_a_second_run_reuses_the_orders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPOSITORY)  # the protocol's data paths are relative to the repository
    table_path = _table().save(tmp_path / "tiny.json")
    arguments = [
        "--benchmark", str(table_path), "--num_architectures", "3", "--orders", "2", "--generation_size", "2",
        "--bootstrap_replicates", "200", "--work_dir", str(tmp_path / "work"), "--output", str(tmp_path / "fidelity.json"), "--json",
    ]
    printed, written = _run_fidelity(arguments, capsys)
    assert printed == written
    required = (
        "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high", "seed_tau_ceiling", "age_correlation_before",
        "age_correlation_after", "kendall_tau_p", "kendall_tau_per_order", "age_correlation_before_p", "age_correlation_after_p",
    )
    for name in required:
        value = written[name]
        defined = value if isinstance(value, list) else [value]
        reason = written.get(f"{name}_undefined_reason")
        assert all(v is not None and math.isfinite(v) for v in defined) or reason, (name, value)
    assert written["kendall_tau_ci_low"] <= written["kendall_tau"] <= written["kendall_tau_ci_high"]
    assert written["kendall_tau_gain"] == pytest.approx(written["kendall_tau"] - written["kendall_tau_before"])
    assert len(written["kendall_tau_per_order"]) == 2 and written["orders"] == 2 and written["num_architectures"] == 3
    assert written["biws_steps"] == TINY_PROTOCOL.steps and written["candidates_trained"] == 2 * (3 + 3 + 2)
    assert set(written["variants"]) == {"sequential", "generation", "generation_control"}
    before = written["variants"]["sequential"]
    assert before["age_correlation_per_order_mean_abs"] == pytest.approx(statistics.fmean(map(abs, before["age_correlation_per_order"])))
    assert written["age_correlation_before_per_order_mean_abs"] == before["age_correlation_per_order_mean_abs"]
    assert written["order_positions"][0] != written["order_positions"][1]
    for order in (0, 1):  # the orders are kept; the same command reads them back instead of training again
        assert (tmp_path / "work" / f"order-{order}.json").is_file()
    monkeypatch.setattr("search.fidelity.run_order", lambda *args, **kwargs: pytest.fail("an order was evaluated again"))
    again, _ = _run_fidelity(arguments, capsys)
    assert again["variants"] == written["variants"]


def test_a_spread_sample_spans_the_table_ranking_from_best_to_worst():
    table = _table()
    sample, control = sample_entries(table, 5, seed=0, how="spread")
    ranked = sorted(table.entries, key=lambda entry: -entry.score)
    assert sample[0] == ranked[0] and sample[-1] == ranked[-1] and control not in sample
    assert [entry.score for entry in sample] == sorted((entry.score for entry in sample), reverse=True)
