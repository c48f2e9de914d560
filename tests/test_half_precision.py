"""Every op and every preset runs in bfloat16 and float16: outputs finite and close to float32.

Stated tolerances (absolute and relative, against the float32 result of the same weights and inputs):
- one op on unit-scale inputs: bfloat16 2e-2, float16 2e-3 (their rounding is 2^-8 and 2^-11);
- a 12-layer tiny model, whose outputs are LayerNorm-ed (unit scale): bfloat16 0.1, float16 0.02, whether
  the model is cast to half precision or runs under `torch.autocast`.
The code paths are device-independent (`euclidean` and the FFT convolution compute in float32 on any device);
these run on CPU, and on CUDA too where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SIZES, tiny_config

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel
from modeling_autobert_zero.attention_programs import OPS
from modeling_autobert_zero.export import example_inputs
from modeling_autobert_zero.lightweight_conv import CONV_STRATEGIES, lightweight_conv


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
OP_TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 2e-3}
MODEL_TOLERANCE = {torch.bfloat16: 0.1, torch.float16: 0.02}
HALF_TYPES = sorted(OP_TOLERANCE, key=str)
# programs that use every op of the table between them, run by the interpreter
INTERPRETED_LAYERS = [
    {"type": "attention", "program": "matmul(softmax(euclidean(Q, K)), add(V, softsign(P)))"},
    {"type": "attention", "program": "matmul(softmax(cosine(neg(Q), K)), logsigmoid(V))"},
    {"type": "attention", "program": "matmul(cosine(Q, K), matmul(V, softmax(scale(matmul(transpose(K), V)))))"},
]


def _arguments(op: str, device: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 3, 7, 8), (2, 3, 8, 7)] if op == "matmul" else [(2, 3, 7, 8)] * OPS[op].arity
    return [torch.randn(shape, generator=generator).to(device) for shape in shapes]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_runs_in_half_precision(op, dtype, device):
    arguments = _arguments(op, device)
    expected = OPS[op].function(*arguments, 8)
    found = OPS[op].function(*(argument.to(dtype) for argument in arguments), 8)
    assert found.dtype == dtype and torch.isfinite(found).all()
    tolerance = OP_TOLERANCE[dtype]
    torch.testing.assert_close(found.float(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("strategy", sorted(CONV_STRATEGIES))
def test_every_convolution_strategy_runs_in_half_precision(strategy, dtype, device):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 20, 16, generator=generator).to(device)
    kernel = torch.softmax(torch.randn(4, 9, generator=generator), dim=-1).to(device)
    expected = lightweight_conv(inputs, kernel, strategy)
    found = lightweight_conv(inputs.to(dtype), kernel.to(dtype), strategy)
    assert found.dtype == dtype and torch.isfinite(found).all()
    tolerance = OP_TOLERANCE[dtype]
    torch.testing.assert_close(found.float(), expected, rtol=tolerance, atol=tolerance)


MODELS = {
    **{name: lambda name=name: AutoBertZeroConfig.from_preset(name, "base", **TINY_SIZES) for name in
       ("bert", "autobert-zero", "autobert-zero-att-only", "autobert-zero-conv-only")},
    "interpreted": lambda: tiny_config(INTERPRETED_LAYERS),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_preset_runs_in_half_precision_and_under_autocast(name, dtype, device):
    torch.manual_seed(0)
    config = MODELS[name]()
    model = AutoBertZeroModel(config).to(device).eval()
    inputs = {key: value.to(device) for key, value in example_inputs(config, batch_size=3, seq_length=20).items()}
    tolerance = MODEL_TOLERANCE[dtype]
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        with torch.autocast(device, dtype=dtype):
            autocast = model(**inputs).last_hidden_state
        half = model.to(dtype)(**inputs).last_hidden_state
    assert half.dtype == dtype
    for found in (autocast, half):
        assert torch.isfinite(found).all()
        torch.testing.assert_close(found.float(), expected, rtol=tolerance, atol=tolerance)
