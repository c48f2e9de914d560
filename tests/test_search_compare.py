"""Benchmark tables as evaluators, and the strategy comparison on a tiny synthetic fixture table (seconds).

The fixture ``tests/fixtures/synthetic_table_tiny.json`` is SYNTHETIC (a positional landscape, 196 architectures,
two seeds), written by

    python scripts/compare_strategies.py --write_synthetic_table tests/fixtures/synthetic_table_tiny.json \\
        --synthetic positional --synthetic_space '{"num_layers": 2, "kernel_sizes": [3, 9], "inputs": ["Q", "K"], "min_program_length": 1, "max_program_length": 2}'
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

from search.comparison import paired_comparison, paper_settings_for, run_in_memory, synthetic_table, table_settings, top_k_mean
from search.config import ConfigError, SearchConfig, dataclass_from_mapping
from search.evaluator import EvaluationContext, SyntheticLandscape
from search.run_opnas import run_search
from search.space import SearchSpace, enumerate_architectures
from search.table_evaluator import TableEvaluator
from search.tabular import BenchmarkTable, TableError


FIXTURE = Path(__file__).parent / "fixtures" / "synthetic_table_tiny.json"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table() -> BenchmarkTable:
    return BenchmarkTable.load(FIXTURE)


def context(index=0, seed=0):
    return EvaluationContext(index, seed, Path("."))


def test_the_fixture_is_an_exhaustive_synthetic_table(table):
    assert table.exhaustive and len(table) == len(enumerate_architectures(table.space)) == 196
    assert table.name.startswith("SYNTHETIC") and table.protocol["synthetic"] is True
    assert 0.0 < table.reliability["icc"] < 1.0


def test_the_table_evaluator_scores_by_the_mean_over_seeds_or_one_seed_per_query(table):
    entry = table.entries[17]
    result = TableEvaluator(table).evaluate(entry.architecture, context())
    assert result.score == pytest.approx(statistics.fmean(entry.scores))
    assert result.cost == {"table_seconds": statistics.fmean(entry.seconds)}
    assert result.metrics[table.score_name] == result.score == result.metrics["table_mean_score"]
    noisy = TableEvaluator(table, per_query_seed=True)
    drawn = {noisy.evaluate(entry.architecture, context(seed=seed)).score for seed in range(40)}
    assert drawn == set(entry.scores)  # every seed's score is drawn, nothing else
    again = [noisy.evaluate(entry.architecture, context(seed=seed)).score for seed in range(10)]
    assert again == [noisy.evaluate(entry.architecture, context(seed=seed)).score for seed in range(10)]  # by the candidate's seed
    assert noisy.evaluate(entry.architecture, context(seed=3)).metrics["table_mean_score"] == pytest.approx(entry.score)


def test_an_architecture_the_table_lacks_is_an_error_naming_it_and_the_table(table):
    outside = [{"type": "conv", "kernel_size": 65}, {"type": "conv", "kernel_size": 3}]
    with pytest.raises(TableError, match=r"'SYNTHETIC-positional-0' has no entry for the architecture conv65 \| conv3"):
        TableEvaluator(table).evaluate(outside, context())


def table_config(output_dir, space, **overrides):
    settings = {
        "output_dir": str(output_dir),
        "max_evaluations": 12,
        "search": {"population_size": 4, "num_parents": 2, "children_per_parent": 2},
        "space": space,
        "evaluator": {"name": "table", "table": {"path": str(FIXTURE)}},
        "export": {"top_k": 0},
        "tensorboard": False,
        **overrides,
    }
    return dataclass_from_mapping(SearchConfig, settings)


def test_a_search_config_names_the_table_and_must_search_its_space(tmp_path, table):
    state = run_search(table_config(tmp_path / "ok", dataclasses.asdict(table.space)), progress=False)
    assert len(state.history) == 12 and all(record.status == "ok" for record in state.history)
    for record in state.history:
        assert record.score == pytest.approx(table.lookup(record.architecture).score)
        assert record.cost["table_seconds"] == 0.0
    with pytest.raises(TableError, match=r"another search space than the config's `space` \(num_layers: config 3, table 2"):
        run_search(table_config(tmp_path / "bad", {**dataclasses.asdict(table.space), "num_layers": 3}), progress=False)
    with pytest.raises(ConfigError, match="give evaluator.table.path"):
        dataclass_from_mapping(SearchConfig, {"evaluator": {"name": "table"}})


def test_the_paper_settings_scale_to_a_table_by_the_stated_rule():
    # B = min(760, round(N/4)); M = round(B·100/760); K = C = max(1, round(sqrt(B·25/760)))
    assert dataclasses.astuple(paper_settings_for(196)) == (49, 6, 1, 1)
    assert dataclasses.astuple(paper_settings_for(400)) == (100, 13, 2, 2)
    assert dataclasses.astuple(paper_settings_for(1000)) == (250, 33, 3, 3)
    assert dataclasses.astuple(paper_settings_for(100_000)) == (760, 100, 5, 5)  # the paper's own settings
    assert paper_settings_for(100_000).generations == pytest.approx(26.4)


def test_paired_comparison_is_scipys_one_sided_wilcoxon_with_effect_sizes():
    better = [0.5, 0.7, 0.4, 0.9, 0.8, 0.6, 0.75]
    worse = [0.4, 0.71, 0.2, 0.5, 0.6, 0.3, 0.7]
    result = paired_comparison(better, worse)
    assert result["p_greater"] == pytest.approx(stats.wilcoxon(better, worse, alternative="greater").pvalue)
    assert result["p_two_sided"] == pytest.approx(stats.wilcoxon(better, worse).pvalue)
    assert (result["wins"], result["ties"], result["losses"]) == (6, 0, 1)
    # differences 0.1, -0.01, 0.2, 0.4, 0.2, 0.3, 0.05: signed-rank mass (27 - 1) / 28
    assert result["rank_biserial"] == pytest.approx(26 / 28)
    assert paired_comparison([1.0, 2.0], [1.0, 2.0])["p_greater"] == 1.0  # no difference at all: no evidence


def test_runs_are_paired_by_seed_and_never_evaluate_an_architecture_twice(table):
    settings, budget = table_settings(table)
    evaluator = TableEvaluator(table)
    first = {name: run_in_memory(name, table.space, settings, evaluator, budget, seed=5) for name in ("opnas", "ea", "random")}
    for state in first.values():
        keys = [record.key for record in state.history]
        assert len(keys) == budget == len(set(keys))
    population = settings.population_size
    assert first["opnas"].history[:population] == first["ea"].history[:population]  # seed 5 drives both
    again = run_in_memory("opnas", table.space, settings, evaluator, budget, seed=5)
    assert [r.key for r in again.history] == [r.key for r in first["opnas"].history]
    assert top_k_mean(first["random"].history) <= statistics.fmean(sorted((e.score for e in table.entries), reverse=True)[:5])


def test_compare_strategies_on_the_fixture_prints_one_json_line_with_scipys_p_values(tmp_path, capsys):
    from scripts.compare_strategies import main

    main(["--benchmark", str(FIXTURE), "--seeds", "8", "--json", "--output_dir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("opnas_top5_mean", "ea_top5_mean", "random_top5_mean", "opnas_vs_ea_p", "ea_vs_random_p", "opnas_vs_random_p",
                "table_size", "table_icc", "budget", "population_size", "num_parents", "children_per_parent", "goal_met"):
        assert key in result
    assert result["table_size"] == 196 and result["table_icc"] == pytest.approx(BenchmarkTable.load(FIXTURE).reliability["icc"])
    assert (result["budget"], result["population_size"], result["num_parents"]) == (49, 6, 1)
    for key in ("opnas_vs_ea_p", "ea_vs_random_p", "opnas_vs_random_p"):
        assert 0.0 <= result[key] <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    ea, random_search = summary["strategies"]["ea"]["top5_per_seed"], summary["strategies"]["random"]["top5_per_seed"]
    assert len(ea) == 8 and result["ea_top5_mean"] == pytest.approx(statistics.fmean(ea))
    if any(a != b for a, b in zip(ea, random_search)):
        assert result["ea_vs_random_p"] == pytest.approx(stats.wilcoxon(ea, random_search, alternative="greater").pvalue)
    assert (tmp_path / "best_so_far.png").stat().st_size > 5000 and (tmp_path / "priority_entropy.png").stat().st_size > 5000


def test_synthetic_landscapes_are_labelled_and_the_control_carries_no_kernel_signal():
    space = SearchSpace(num_layers=2, kernel_sizes=(3, 9), inputs=("Q", "K"), min_program_length=1, max_program_length=2)
    positional = SyntheticLandscape(space, "positional", seed=1)
    blind = SyntheticLandscape(space, "op_blind", seed=1)
    conv3, conv9 = {"type": "conv", "kernel_size": 3}, {"type": "conv", "kernel_size": 9}
    assert blind.layer_term(0, conv3) == blind.layer_term(0, conv9)
    assert positional.layer_term(0, conv3) != positional.layer_term(0, conv9)
    made = synthetic_table(blind, seeds=(0, 1, 2))
    assert made.name == "SYNTHETIC-op_blind-1" and made.provenance["note"].startswith("SYNTHETIC")
    assert len(made.seeds) == 3 and made.exhaustive and len(made) == 196
    with pytest.raises(ValueError, match="synthetic landscape"):
        SyntheticLandscape(space, "smooth")


def test_compare_strategies_runs_real_searches_from_a_config_and_continues_them(tmp_path, capsys):
    """The --config mode (paper Figure 6): one resumable search per (strategy, seed) through the runner."""
    import yaml

    from scripts.compare_strategies import main

    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "search": {"population_size": 4, "num_parents": 2, "children_per_parent": 2},
        "space": {"num_layers": 2, "max_program_length": 6},
        "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
        "evaluator": {"name": "synthetic"},
        "tensorboard": False,
    }))
    arguments = ["--config", str(path), "--seeds", "3", "--budget", "10", "--json", "--output_dir", str(tmp_path / "runs")]
    first = main(arguments)
    assert first["mode"] == "config" and first["budget"] == 10
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == [
        f"{strategy}-seed{seed}" for strategy in ("ea", "opnas", "random") for seed in range(3)
    ]
    assert 0.0 <= first["opnas_vs_ea_p"] <= 1.0
    capsys.readouterr()
    assert main(arguments) == {**first, "seconds": pytest.approx(first["seconds"], abs=60)}  # finished runs are reused
