"""`torch.export` and ONNX: graphs with dynamic batch size and sequence length that match the eager model at any
padding, for every kind of layer of the presets and for interpreter programs."""

from __future__ import annotations

import re
import runpy
import sys

import pytest
import torch
from conftest import SPEC_PROGRAMS, tiny_config, valid_programs
from hypothesis import given, settings

from modeling_autobert_zero import (
    AutoBertZeroForSequenceClassification,
    AutoBertZeroModel,
    canonical_program,
    fused_attention_plan,
)
from modeling_autobert_zero.export import example_inputs, export_program, onnx_max_abs_difference


# Every kind of layer the presets are made of (bert, autobert-zero and its att-only / conv-only ablations are
# sequences of these), and interpreter programs with the ops no preset uses.
PRESET_LAYERS = [{"type": "conv", "kernel_size": size} for size in (65, 9, 3, 7)] + [
    {"type": "attention", "program": program} for program in SPEC_PROGRAMS.values()
]
INTERPRETED_LAYERS = [
    {"type": "attention", "program": "matmul(softmax(euclidean(Q, K)), add(V, softsign(P)))"},
    {"type": "attention", "program": "matmul(cosine(Q, K), matmul(V, softmax(matmul(transpose(K), logsigmoid(V)))))"},
]


def build(model_class, layers, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(tiny_config(layers)).eval()


def assert_same_outputs(graph_outputs, eager_outputs, atol: float = 2e-5) -> None:
    for name in eager_outputs.keys():
        torch.testing.assert_close(graph_outputs[name], eager_outputs[name], rtol=0, atol=atol, msg=name)


def no_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**inputs, "attention_mask": torch.ones_like(inputs["attention_mask"])}


def test_exported_graph_with_dynamic_shapes_matches_eager_at_any_padding():
    model = build(AutoBertZeroModel, PRESET_LAYERS + INTERPRETED_LAYERS)
    module = export_program(model).module()
    for seed, (batch_size, seq_length) in enumerate([(1, 5), (3, 13), (4, 32), (2, 8)]):
        inputs = example_inputs(model.config, batch_size, seq_length, seed=seed)
        with torch.no_grad():
            for batch in (inputs, no_padding(inputs)):  # eager skips all masking work without padding
                assert_same_outputs(module(**batch), model(**batch))


def test_static_export_matches_eager_at_any_padding():
    model = build(AutoBertZeroForSequenceClassification, [PRESET_LAYERS[0], PRESET_LAYERS[5], INTERPRETED_LAYERS[0]])
    module = export_program(model, dynamic=False).module()
    inputs = example_inputs(model.config)  # the traced shape, other padding
    inputs["attention_mask"] = inputs["attention_mask"].flip(0)
    with torch.no_grad():
        for batch in (inputs, no_padding(inputs)):
            assert_same_outputs(module(**batch), model(**batch))


@settings(max_examples=3)
@given(valid_programs().filter(lambda program: fused_attention_plan(canonical_program(program)) is None))
def test_interpreter_programs_export_with_dynamic_shapes(program):
    model = build(AutoBertZeroModel, [{"type": "attention", "program": program.to_json()}])
    module = export_program(model).module()
    inputs = example_inputs(model.config, batch_size=3, seq_length=11, seed=1)
    with torch.no_grad():
        assert_same_outputs(module(**inputs), model(**inputs))


def test_onnx_script_exports_a_checkpoint_and_checks_it_in_onnx_runtime(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    model = build(AutoBertZeroForSequenceClassification, [PRESET_LAYERS[0], PRESET_LAYERS[5], INTERPRETED_LAYERS[0]])
    model.save_pretrained(tmp_path / "checkpoint")
    output = tmp_path / "model.onnx"
    monkeypatch.setattr(sys, "argv", ["export_onnx.py", "--checkpoint", str(tmp_path / "checkpoint"), "--output", str(output)])
    runpy.run_path("scripts/export_onnx.py", run_name="__main__")
    printed = capsys.readouterr().out
    difference = float(re.search(r"max abs output difference vs PyTorch on a padded batch .*: (\S+)", printed).group(1))
    assert difference <= 1e-4, printed
    for batch_size, seq_length, seed in [(1, 4, 2), (5, 32, 3)]:  # other shapes, and a batch without padding
        inputs = example_inputs(model.config, batch_size, seq_length, seed=seed)
        assert onnx_max_abs_difference(output, model, inputs) <= 1e-4
        assert onnx_max_abs_difference(output, model, no_padding(inputs)) <= 1e-4
