"""The BIWS evaluator on real data (tiny model, a few steps): end to end, resume with the super-net, export.

Runs on the bundled ``demo_data/`` (WikiText-2 prefixes, the GLUE RTE demo subset, the BERT vocabulary).
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from search.config import load_config
from search.evaluator import EvaluationContext
from search.run_opnas import run_search
from search.state import load_state


REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "demo_data"

SMOKE = {  # tiny.yaml, cut to seconds per candidate, with the paper's GLUE proxy (tiny.yaml's own: mlm_loss)
    "max_evaluations": 3,
    "evaluator.biws.proxy": "glue",
    "search.population_size": 2,
    "search.num_parents": 1,
    "search.children_per_parent": 1,
    "evaluator.biws.tokenizer": str(DATA / "vocab.txt"),
    "evaluator.biws.pretraining.train_files": [str(DATA / "wikitext-2-raw" / "wiki.demo.raw")],
    "evaluator.biws.pretraining.validation_files": [str(DATA / "wikitext-2-raw" / "wiki.demo-test.raw")],
    "evaluator.biws.pretraining.max_validation_examples": 32,
    "evaluator.biws.pretraining.max_steps": 2,
    "evaluator.biws.pretraining.max_seq_length": 32,
    "evaluator.biws.pretraining.batch_size": 4,
    "evaluator.biws.pretraining.max_examples": 64,
    "evaluator.biws.finetuning.data_dir": str(DATA / "glue"),
    "evaluator.biws.finetuning.max_steps": 2,
    "evaluator.biws.finetuning.batch_size": 4,
    "evaluator.biws.finetuning.max_train_examples": 16,
    "evaluator.biws.finetuning.max_eval_examples": 16,
    "export.top_k": 1,
    "tensorboard": False,
}


def smoke_config(output_dir: Path, **overrides):
    return load_config(REPO / "search" / "configs" / "tiny.yaml", {**SMOKE, "output_dir": str(output_dir), **overrides})


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("biws")
    config = smoke_config(output_dir, max_evaluations=2)
    run_search(config, progress=False)
    return output_dir


def test_the_tiny_config_runs_end_to_end_and_resumes_with_the_super_net(finished_search, tmp_path):
    state = load_state(finished_search)
    assert [record.status for record in state.history] == ["ok", "ok"], [record.error for record in state.history]
    for record in state.history:
        assert 0.0 <= record.score <= 1.0 and record.score == record.metrics["rte/accuracy"]
        assert math.isfinite(record.metrics["pretraining_loss"]) and math.isfinite(record.metrics["held_out_mlm_loss"])
        assert record.cost["pretraining_flops"] > 0 and record.cost["wall_seconds"] > 0
    supernet_file = finished_search / state.evaluator_files["supernet"]
    assert supernet_file.is_file() and len(list(finished_search.glob("supernet-*.safetensors"))) == 1

    resumed = run_search(smoke_config(finished_search), resume=True, progress=False)  # one more candidate
    assert len(resumed.history) == 3 and resumed.history[2].status == "ok"
    assert resumed.history[2].parent in (0, 1)
    assert list(finished_search.glob("supernet-*.safetensors")) == [finished_search / resumed.evaluator_files["supernet"]]
    assert not (finished_search / "candidates" / "000002").exists()  # scratch space is cleaned up

    # the same search never interrupted: same scores, same held-out losses, bit-identical super-net
    straight = run_search(smoke_config(tmp_path), progress=False)
    assert [(r.key, r.score, r.metrics) for r in straight.history] == [(r.key, r.score, r.metrics) for r in resumed.history]
    resumed_weights = load_file(finished_search / resumed.evaluator_files["supernet"])
    straight_weights = load_file(tmp_path / straight.evaluator_files["supernet"])
    assert all(torch.equal(tensor, straight_weights[name]) for name, tensor in resumed_weights.items())


def test_export_writes_loadable_checkpoints_with_the_super_net_weights(finished_search, tmp_path):
    from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification, AutoTokenizer

    from search.export import export_top_k
    from search.supernet import BiwsSupernet

    (path,) = export_top_k(finished_search, tmp_path / "export", top_k=1)
    state = load_state(finished_search)
    best = max((r for r in state.history if r.status == "ok"), key=lambda r: (r.score, -r.index))
    result = json.loads((path / "search_result.json").read_text())
    assert result["index"] == best.index and result["has_weights"]
    model = AutoModelForPreTraining.from_pretrained(path)
    assert model.config.layers == best.architecture
    supernet = BiwsSupernet.from_file(finished_search / state.evaluator_files["supernet"])
    expected = supernet.extract(best.architecture)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert AutoTokenizer.from_pretrained(path)("hello world")["input_ids"][1] == 7592
    assert json.loads((tmp_path / "export" / "leaderboard.json").read_text())[0]["path"] == path.name


def test_a_non_finite_pretraining_is_an_error_and_writes_nothing_back(tmp_path, monkeypatch):
    from search import biws_evaluator
    from search.biws_evaluator import BiwsEvaluator, NonFiniteLossError

    config = smoke_config(tmp_path)
    evaluator = BiwsEvaluator.from_config(config)
    before = {name: tensor.clone() for name, tensor in evaluator.supernet.state_dict().items()}

    def diverging_pretrain(model, *args, **kwargs):
        with torch.no_grad():
            next(model.parameters()).fill_(math.nan)
        return types.SimpleNamespace(metrics={"train_loss": math.nan}, log_history=[])

    monkeypatch.setattr(biws_evaluator, "pretrain", diverging_pretrain)
    architecture = [{"type": "conv", "kernel_size": 3}, {"type": "conv", "kernel_size": 5}]
    with pytest.raises(NonFiniteLossError, match="train_loss=nan"):
        evaluator.evaluate(architecture, EvaluationContext(0, 0, tmp_path / "scratch"))
    assert all(torch.equal(before[name], tensor) for name, tensor in evaluator.supernet.state_dict().items())


def test_an_unreadable_super_net_file_stops_the_resume_naming_it_and_deletes_nothing(tmp_path):
    from search.biws_evaluator import BiwsEvaluator
    from search.supernet import SupernetFileError

    evaluator = BiwsEvaluator.from_config(smoke_config(tmp_path))
    named, orphan = tmp_path / "supernet-000002.safetensors", tmp_path / "supernet-000003.safetensors"
    evaluator.supernet.save(named)
    evaluator.supernet.save(orphan)  # as a kill between writing a super-net and the state leaves it
    named.write_bytes(named.read_bytes()[:-10])
    before = {name: tensor.clone() for name, tensor in evaluator.supernet.state_dict().items()}
    with pytest.raises(SupernetFileError, match=rf"^{named}: not a complete safetensors file"):
        evaluator.load(tmp_path, {"supernet": named.name})
    assert named.is_file() and orphan.is_file()
    assert all(torch.equal(before[name], tensor) for name, tensor in evaluator.supernet.state_dict().items())


def test_a_latency_budget_makes_slow_candidates_infeasible_before_training(tmp_path):
    from search.biws_evaluator import BiwsEvaluator

    config = smoke_config(tmp_path, **{
        "evaluator.biws.measure_latency": True, "evaluator.biws.latency_seq_length": 32, "objective.max_latency_ms": 1e-6,
    })
    result = BiwsEvaluator.from_config(config).evaluate(
        [{"type": "conv", "kernel_size": 3}, {"type": "conv", "kernel_size": 5}], EvaluationContext(0, 0, tmp_path / "scratch")
    )
    assert result.status == "infeasible" and result.cost["latency_ms"] > 0 and "max_latency_ms" in result.error
    assert "pretraining_seconds" not in result.cost  # rejected before any training


def test_the_mlm_loss_proxy_scores_by_held_out_loss_without_finetuning(tmp_path):
    from search.biws_evaluator import BiwsEvaluator, score_only_trained_tokens

    evaluator = BiwsEvaluator.from_config(smoke_config(tmp_path, **{"evaluator.biws.proxy": "mlm_loss"}))
    architecture = [{"type": "conv", "kernel_size": 3}, {"type": "conv", "kernel_size": 5}]
    result = evaluator.evaluate(architecture, EvaluationContext(0, 0, tmp_path / "scratch"))
    assert result.score == -result.metrics["held_out_mlm_loss"] and "finetuning_seconds" not in result.cost
    assert not any(name.startswith("rte/") for name in result.metrics)
    trained = {token for ids in evaluator.pretraining_data["input_ids"] for token in ids}
    scored = [label for batch in evaluator.held_out for label in batch["labels"][batch["labels"] != -100].tolist()]
    assert scored and set(scored) <= trained  # held-out tokens no training pair contains are not scored (seed noise)
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "labels": torch.tensor([[-100, 6, 7, 9]])}
    filtered = score_only_trained_tokens(batch, torch.tensor([6, 9]))
    assert filtered["labels"].tolist() == [[-100, 6, -100, 9]] and filtered["input_ids"] is batch["input_ids"]


def test_sequences_longer_than_the_position_embeddings_are_a_config_error(tmp_path):
    from search.biws_evaluator import BiwsEvaluator

    with pytest.raises(ValueError, match=r"finetuning.max_seq_length=128 exceeds model.max_position_embeddings=64"):
        BiwsEvaluator.from_config(smoke_config(tmp_path, **{"evaluator.biws.finetuning.max_seq_length": 128}))
