"""What a search leaves behind, without training: plots, and exported configs of a search without a super-net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from search.config import SearchConfig, dataclass_from_mapping
from search.plots import best_so_far, plot_architecture, plot_search
from search.run_opnas import run_search
from search.state import CandidateRecord


VOCAB = Path(__file__).resolve().parents[1] / "demo_data" / "vocab.txt"


def synthetic_search(output_dir: Path):
    config = dataclass_from_mapping(
        SearchConfig,
        {
            "output_dir": str(output_dir),
            "max_evaluations": 12,
            "search": {"population_size": 4, "num_parents": 2, "children_per_parent": 2},
            "space": {"num_layers": 3, "max_program_length": 8},
            "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
            "evaluator": {"name": "synthetic", "biws": {"tokenizer": str(VOCAB)}},
            "tensorboard": False,
        },
    )
    return run_search(config, progress=False)


def test_best_so_far_ignores_failures_and_never_decreases():
    def record(index, status, score):
        return CandidateRecord(index, "", [], None, "random", 0, status, score, {}, {})

    history = [record(0, "failed", None), record(1, "ok", 0.4), record(2, "ok", 0.3), record(3, "failed", None), record(4, "ok", 0.6)]
    curve = best_so_far(history)
    assert np.isnan(curve[0]) and curve[1:].tolist() == [0.4, 0.4, 0.4, 0.6]


def test_plots_of_a_search_are_written(tmp_path):
    synthetic_search(tmp_path)
    written = plot_search(tmp_path)
    assert [path.name for path in written] == ["best_so_far.png", "op_priority.png", "priority_entropy.png", "best_architecture.png"]
    assert all(path.stat().st_size > 5000 for path in written)
    bert = "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"
    path = plot_architecture([{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": bert}], tmp_path / "arch.png")
    assert path.stat().st_size > 5000


def test_a_search_without_super_net_exports_configs_only(tmp_path):
    from transformers import AutoConfig

    from search.export import export_top_k

    state = synthetic_search(tmp_path)
    exported = export_top_k(tmp_path, top_k=2)
    assert len(exported) == 2
    ranked = sorted((r for r in state.history if r.status == "ok"), key=lambda r: (-r.score, r.index))
    for path, record in zip(exported, ranked):
        result = json.loads((path / "search_result.json").read_text())
        assert result["index"] == record.index and not result["has_weights"]
        assert AutoConfig.from_pretrained(path).layers == record.architecture
        assert not (path / "model.safetensors").exists()
