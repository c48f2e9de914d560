"""Export any AutoBERT-Zero model as a graph: `torch.export` and ONNX (dynamo exporter), batch and sequence
length dynamic, padding masks included; and the check of an ONNX file against PyTorch in ONNX Runtime.

A traced graph cannot branch on data, so the model always applies its padding masks there (eager skips
them for batches without padding) and runs lightweight convolutions as plain depthwise convolutions; the
functions are the same, so a graph matches the eager model at every padding. ONNX needs the `export` extra
(`pip install "autobert-zero[export]"`: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from .configuration_autobert_zero import AutoBertZeroConfig
from .modeling_autobert_zero import (
    AutoBertZeroForMaskedLM,
    AutoBertZeroForPreTraining,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForTokenClassification,
    AutoBertZeroModel,
)


INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MODEL_CLASSES = {
    model_class.__name__: model_class
    for model_class in (
        AutoBertZeroModel,
        AutoBertZeroForPreTraining,
        AutoBertZeroForMaskedLM,
        AutoBertZeroForSequenceClassification,
        AutoBertZeroForQuestionAnswering,
        AutoBertZeroForTokenClassification,
    )
}


def load_for_export(checkpoint: str | os.PathLike) -> PreTrainedModel:
    """The model saved in ``checkpoint``, with the head its `config.json` names (`architectures`), in eval mode.

    Multiple choice is left out: its inputs have a third axis (the choices), which `example_inputs` does not make.
    """
    config = AutoBertZeroConfig.from_pretrained(checkpoint)
    names = config.architectures or ["AutoBertZeroModel"]
    if len(names) != 1 or names[0] not in MODEL_CLASSES:
        raise ValueError(
            f"{Path(checkpoint) / 'config.json'}: field 'architectures' must name one of {sorted(MODEL_CLASSES)}, "
            f"got {names}"
        )
    return MODEL_CLASSES[names[0]].from_pretrained(checkpoint).eval()


def example_inputs(
    config: AutoBertZeroConfig, batch_size: int = 2, seq_length: int = 8, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random token ids and token types with padding: every row but the first ends in padded positions (the
    last row keeps a single real token), so a graph traced or checked on them sees the masks at work."""
    if seq_length > config.max_position_embeddings:
        raise ValueError(f"seq_length={seq_length} is longer than max_position_embeddings={config.max_position_embeddings}")
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, config.vocab_size, (batch_size, seq_length), generator=generator)
    attention_mask = torch.ones(batch_size, seq_length, dtype=torch.long)
    for row in range(1, batch_size):
        real = 1 if row == batch_size - 1 else max(1, seq_length - row * seq_length // batch_size)
        attention_mask[row, real:] = 0
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    input_ids = input_ids.masked_fill(attention_mask == 0, pad)
    token_type_ids = torch.randint(0, config.type_vocab_size, (batch_size, seq_length), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids * attention_mask}


def dynamic_shapes(config: AutoBertZeroConfig) -> dict[str, dict[int, Any]]:
    """Batch and sequence length free (the sequence up to `max_position_embeddings`), shared by every input."""
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=config.max_position_embeddings)
    return {name: {0: batch, 1: sequence} for name in INPUT_NAMES}


def export_program(model: PreTrainedModel, dynamic: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (eval mode) on a padded example batch; with ``dynamic``, batch size
    and sequence length are symbolic."""
    model.eval()
    inputs = example_inputs(model.config)
    shapes = dynamic_shapes(model.config) if dynamic else None
    with torch.no_grad():
        return torch.export.export(model, (), inputs, dynamic_shapes=shapes)


def output_names(model: PreTrainedModel) -> list[str]:
    """The names of the tensors the model returns without labels (`last_hidden_state`, `logits`, ...)."""
    with torch.no_grad():
        outputs = model(**example_inputs(model.config))
    return [name for name, value in outputs.items() if isinstance(value, torch.Tensor)]


def export_onnx(model: PreTrainedModel, path: str | os.PathLike, dynamic: bool = True) -> Path:
    """Write ``model`` (eval mode) as ONNX to ``path`` with `torch.onnx.export(..., dynamo=True)`; inputs
    `input_ids`, `attention_mask`, `token_type_ids`, outputs named as the model's output fields."""
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model.config)
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (),
            kwargs=inputs,
            dynamic_shapes=dynamic_shapes(model.config) if dynamic else None,
            input_names=list(INPUT_NAMES),
            output_names=output_names(model),
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))
    return path


def onnx_max_abs_difference(path: str | os.PathLike, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between every output of the ONNX file run by ONNX Runtime (CPU) and
    of ``model`` in PyTorch, on ``inputs``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: inputs[name].numpy() for name in (graph_input.name for graph_input in session.get_inputs())}
    graph_outputs = session.run(None, feed)
    with torch.no_grad():
        outputs = model.eval()(**inputs)
    expected = [value for value in outputs.values() if isinstance(value, torch.Tensor)]
    if len(expected) != len(graph_outputs):
        raise ValueError(f"{path}: the graph has {len(graph_outputs)} outputs, the model {len(expected)}")
    return max(
        float((torch.from_numpy(graph_output).float() - value.float()).abs().max())
        for graph_output, value in zip(graph_outputs, expected)
    )


def export_checkpoint_to_onnx(
    checkpoint: str | os.PathLike, output: str | os.PathLike, dynamic: bool = True
) -> tuple[Path, float]:
    """Export the checkpoint's model to ONNX at ``output`` and return the file and its largest output difference
    from PyTorch in ONNX Runtime on a padded batch of another size than the one traced (when ``dynamic``)."""
    model = load_for_export(checkpoint)
    path = export_onnx(model, output, dynamic)
    traced = example_inputs(model.config)
    batch_size, seq_length = (3, min(13, model.config.max_position_embeddings)) if dynamic else traced["input_ids"].shape
    check = example_inputs(model.config, batch_size=batch_size, seq_length=seq_length, seed=1)
    return path, onnx_max_abs_difference(path, model, check)
