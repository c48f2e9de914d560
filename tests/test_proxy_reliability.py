"""The proxy spread test (``scripts/proxy_reliability.py``) and the defaults it chose for ``tiny.yaml`` (seconds).

The measurement runs here on the SYNTHETIC fixture table (``tests/fixtures/synthetic_table_tiny.json``, one
seed's score per query: seed noise included) and, at smoke size, on the real BIWS evaluator of ``tiny.yaml``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from search.config import SearchConfig, dataclass_from_mapping, load_config
from search.reliability import one_way_icc
from search.proxy_reliability import ProxyReliabilityArguments, from_scratch, run_proxy_reliability, sample_distinct_architectures
from search.space import SearchSpace
from search.tabular import BenchmarkTable


REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "synthetic_table_tiny.json"
TINY = REPO / "search" / "configs" / "tiny.yaml"
KEYS = {"icc", "ci_low", "ci_high", "between_sd", "within_sd", "targets", "seeds", "entries", "proxy", "run_seeds",
        "architectures_failed", "distinct_scores", "mean_seconds_per_evaluation", "command"}


def table_config(tmp_path: Path) -> Path:
    table = BenchmarkTable.load(FIXTURE)
    settings = {
        "space": json.loads(json.dumps(table.to_json()["space"])),
        "evaluator": {"name": "table", "table": {"path": str(FIXTURE), "per_query_seed": True}},
    }
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_the_script_prints_the_spread_test_as_its_last_line(tmp_path, capsys):
    from scripts.proxy_reliability import main

    result = main(["--config", str(table_config(tmp_path)), "--architectures", "12", "--seeds", "3", "--json", "seed=4"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result)) and KEYS <= set(last)
    assert -1.0 <= last["ci_low"] <= last["icc"] <= last["ci_high"] <= 1.0
    assert (last["targets"], last["seeds"], last["proxy"], last["architectures_failed"]) == (12, 3, "table", 0)
    assert len(set(last["run_seeds"])) == 3 and "seed=4" in last["command"]  # the override reached the config
    table = BenchmarkTable.load(FIXTURE)
    scores = [entry["scores"] for entry in last["entries"]]
    for entry in last["entries"]:  # each a seed's own table score: the seed picks it, nothing else does
        assert set(entry["scores"]) <= set(table.lookup(entry["architecture"]).scores)
    assert last["icc"] == pytest.approx(one_way_icc(scores).icc)
    assert last["between_sd"] == pytest.approx(one_way_icc(scores).between_sd)


def test_architectures_are_distinct_canonical_and_seeded():
    space = SearchSpace(num_layers=2, max_program_length=4)
    sample = sample_distinct_architectures(space, 15, seed=3)
    assert len({repr(architecture) for architecture in sample}) == 15
    assert all(space.canonical_architecture(architecture) == architecture for architecture in sample)
    assert sample == sample_distinct_architectures(space, 15, seed=3) != sample_distinct_architectures(space, 15, seed=4)
    with pytest.raises(ValueError, match="fewer than 3 distinct"):
        sample_distinct_architectures(SearchSpace(num_layers=1, layer_types=("conv",), kernel_sizes=(3, 5)), 3, seed=0, max_draws=200)
    with pytest.raises(ValueError, match="at least 2"):
        sample_distinct_architectures(space, 1, seed=0)


def test_on_the_real_evaluator_the_seed_changes_the_score_and_weight_sharing_is_off():
    smoke = {
        "evaluator.biws.weight_sharing": True,  # measured from scratch whatever the config says
        "evaluator.biws.pretraining.max_steps": 2, "evaluator.biws.pretraining.batch_size": 4,
        "evaluator.biws.pretraining.max_seq_length": 32,
        "evaluator.biws.pretraining.max_examples": 16, "evaluator.biws.pretraining.max_validation_examples": 8,
    }
    config = load_config(TINY, smoke)
    assert from_scratch(config).evaluator.biws.weight_sharing is False and config.evaluator.biws.weight_sharing
    result = run_proxy_reliability(config, ProxyReliabilityArguments(config=str(TINY), architectures=2, seeds=2))
    scores = [entry["scores"] for entry in result["entries"]]
    assert result["proxy"] == "mlm_loss" and result["architectures_failed"] == 0
    assert all(math.isfinite(score) and score < 0 for row in scores for score in row)
    assert all(row[0] != row[1] for row in scores)  # another seed: another initialisation and data order
    assert result["within_sd"] > 0 and -1.0 <= result["icc"] <= 1.0


def test_tiny_scores_by_held_out_mlm_loss_on_text_it_never_trains_on_and_keeps_the_paper_proxy():
    config = load_config(TINY)
    biws = config.evaluator.biws
    assert biws.proxy == "mlm_loss" and biws.pretraining.validation_files
    assert not set(biws.pretraining.validation_files) & set(biws.pretraining.train_files)
    assert all((REPO / path).is_file() for path in (*biws.pretraining.validation_files, *biws.pretraining.train_files))
    assert all(str(path).startswith("demo_data/") for path in biws.pretraining.validation_files)
    assert (config.model.hidden_dropout_prob, config.model.attention_probs_dropout_prob, config.model.conv_kernel_dropout) == (0, 0, 0)
    assert load_config(TINY, {"evaluator.biws.proxy": "glue"}).evaluator.biws.proxy == "glue"  # the paper's, one override away
    assert (REPO / biws.finetuning.data_dir / "RTE" / "dev.tsv").is_file()
    assert load_config(REPO / "search" / "configs" / "paper.yaml").evaluator.biws.proxy == "glue"
    assert isinstance(config, SearchConfig) and dataclass_from_mapping(SearchConfig, config.to_json()) == config
