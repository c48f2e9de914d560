"""`scripts/benchmark_model.py`'s interpreter benchmark compares like with like: each hand-written formula gives
the interpreter's output exactly, padding included, so the ratio it reports measures the interpreter alone."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from modeling_autobert_zero import canonical_program, fused_attention_plan, parse_program

BENCHMARK = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "benchmark_model.py"), run_name="benchmark")


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("name", sorted(BENCHMARK["INTERPRETER_PROGRAMS"]))
def test_handwritten_formulas_equal_the_interpreter(name, padded):
    program = parse_program(BENCHMARK["INTERPRETER_PROGRAMS"][name][0])
    assert fused_attention_plan(canonical_program(program)) is None  # the interpreter, not a fused kernel, runs it
    inputs, token_mask = BENCHMARK["interpreter_inputs"](torch.device("cpu"), padded, batch=3, heads=2, head_dim=8)
    if padded:
        assert not token_mask.all()
    expected = BENCHMARK["interpreted_program"](name, inputs, token_mask, 8)
    found = BENCHMARK["handwritten_program"](name, inputs, token_mask, 8)
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)


def test_the_benchmark_reports_the_worst_ratio():
    results = BENCHMARK["benchmark_interpreter"](1, torch.device("cpu"))
    ratios = [value for key, value in results.items() if key.endswith("_padded_ratio") or key.endswith("_unpadded_ratio")]
    assert len(ratios) == 12 and all(ratio > 0 for ratio in ratios)
    assert results["interpreter_vs_handwritten_ratio"] == max(ratios)
