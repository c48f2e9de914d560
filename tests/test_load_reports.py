"""Loading a checkpoint into another head is a normal step (pretraining → task head) and prints no transformers
LOAD REPORT; a backbone weight that is really missing still does."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from modeling_autobert_zero import (
    AutoBertZeroForMaskedLM,
    AutoBertZeroForMultipleChoice,
    AutoBertZeroForPreTraining,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForTokenClassification,
    AutoBertZeroModel,
)


LAYERS = [{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(softmax(cosine(Q, K)), V)"}]


def load_and_capture(model_class, path) -> tuple[torch.nn.Module, str]:
    with CaptureLogger(logging.get_logger("transformers.modeling_utils")) as captured:
        model = model_class.from_pretrained(path)
    return model, captured.out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for head in (AutoBertZeroModel, AutoBertZeroForPreTraining, AutoBertZeroForMaskedLM, AutoBertZeroForSequenceClassification):
        torch.manual_seed(0)
        head(tiny_config(LAYERS)).save_pretrained(root / head.__name__)
        paths[head] = root / head.__name__
    return paths


TASK_HEADS = [
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForMultipleChoice,
    AutoBertZeroForTokenClassification,
    AutoBertZeroForQuestionAnswering,
]
# (checkpoint, head it is loaded into): a task head on a pretrained or bare backbone, a backbone out of any
# checkpoint, the MLM head out of a pretraining checkpoint, and every head out of its own checkpoints
EXPECTED_SWAPS = [
    *((source, target) for source in (AutoBertZeroModel, AutoBertZeroForPreTraining, AutoBertZeroForMaskedLM) for target in TASK_HEADS),
    *((source, AutoBertZeroModel) for source in (AutoBertZeroForPreTraining, AutoBertZeroForMaskedLM, AutoBertZeroForSequenceClassification)),
    (AutoBertZeroForPreTraining, AutoBertZeroForMaskedLM),
    *((head, head) for head in (AutoBertZeroModel, AutoBertZeroForPreTraining, AutoBertZeroForMaskedLM, AutoBertZeroForSequenceClassification)),
]


@pytest.mark.parametrize("source, target", EXPECTED_SWAPS, ids=lambda head: head.__name__.removeprefix("AutoBertZero"))
def test_swapping_heads_prints_no_load_report(checkpoints, source, target):
    model, printed = load_and_capture(target, checkpoints[source])
    assert "LOAD REPORT" not in printed, printed
    reference = AutoBertZeroModel.from_pretrained(checkpoints[source])
    for name, tensor in reference.state_dict().items():  # the backbone is loaded, whatever the heads
        if not name.startswith("pooler."):
            torch.testing.assert_close(model.base_model.state_dict()[name], tensor, msg=name)


def test_a_missing_backbone_weight_is_still_reported(checkpoints, tmp_path):
    weights = load_file(checkpoints[AutoBertZeroForPreTraining] / "model.safetensors")
    del weights["autobert_zero.encoder.layer.1.mixer.input_projections.Q.weight"]
    for name in ("config.json",):
        (tmp_path / name).write_bytes((checkpoints[AutoBertZeroForPreTraining] / name).read_bytes())
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    _, printed = load_and_capture(AutoBertZeroForSequenceClassification, tmp_path)
    assert "LOAD REPORT" in printed and "encoder.layer.1.mixer.input_projections.Q.weight" in printed
    assert "cls.predictions" not in printed  # the expected part of the swap stays quiet
