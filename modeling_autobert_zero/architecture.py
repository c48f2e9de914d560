"""Architectures as data: validation, canonical form, keys, readable descriptions, sizes and costs.

An *architecture* is the ``layers`` list of an `AutoBertZeroConfig` (SPEC §1): one dict per layer,
``{"type": "conv", "kernel_size": k}`` or ``{"type": "attention", "program": ...}`` with the program as an
expression string, an instruction list or a `Program`. The config validates its layers here, and so do the
tools around the model (the search, publishing, training), so each rule exists once: what a valid
architecture is (and the error that names the layer, instruction, op and shapes when it is not), its
canonical form, its key and id, its description, the `large` size rule, and its parameter count.

Everything here is linear (or O(n log n), for canonical forms) in the size of the architecture and never
recurses, so a `config.json` from anywhere is judged quickly. This module is imported by the config and so is
copied with every checkpoint (flat relative imports only).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .attention_programs import (
    DEFAULT_MAX_PROGRAM_LENGTH,
    INPUT_NAMES,
    OPS,
    Program,
    ProgramError,
    canonical_program,
    compact_program,
    check_program,
    live_instructions,
    parse_program,
    program_key,
    shown,
    without_cycle_collection,
)


CONV_KERNEL_SIZES = (3, 5, 7, 9, 15, 31, 65)
LAYER_TYPES = ("attention", "conv")

# Paper Table 6 widths. `large` also doubles the depth (`layers_at_size`), so no size lists a layer count.
SIZE_PRESETS: dict[str, dict[str, int]] = {
    "small": {"hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "base": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
}

# A description prints a program as one expression up to this many characters, else as its instruction list
# (an expression repeats shared values, so it can be exponentially longer than the program).
DESCRIPTION_EXPRESSION_LIMIT = 400


class ArchitectureError(ValueError):
    """An invalid architecture; the message starts with the layer at fault (``layers[i]``) or ``layers:``."""


@without_cycle_collection()
def compile_layers(
    layers: Any,
    max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH,
    *,
    num_layers: int | None = None,
    layer_types: Collection[str] = LAYER_TYPES,
    kernel_sizes: Collection[int] = CONV_KERNEL_SIZES,
    ops: Collection[str] | None = None,
    inputs: Collection[str] | None = None,
) -> list[Program | int]:
    """Check every layer; return per layer the parsed, valid program (`check_program`) or the kernel size.

    The keyword arguments narrow what is accepted (a search space): the number of layers, the layer types,
    kernel sizes, and the ops and inputs a program may use where its value reaches the output. Any malformed
    entry, whatever its type, raises an :class:`ArchitectureError` that starts with ``layers[i]`` and, for
    programs, names the instruction, op and shapes (SPEC §2).
    """
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ArchitectureError(f"layers: expected a non-empty list of layer objects, got {shown(layers)}")
    if num_layers is not None and len(layers) != num_layers:
        raise ArchitectureError(f"layers: expected {num_layers} layers, got {len(layers)}")
    compiled: list[Program | int] = []
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, Mapping):
            raise ArchitectureError(f"{where}: expected an object with a 'type', got {shown(layer)}")
        layer_type = layer.get("type")
        if not isinstance(layer_type, str) or layer_type not in LAYER_TYPES:
            raise ArchitectureError(f"{where}: 'type' must be one of {LAYER_TYPES}, got {shown(layer_type)}")
        if layer_type not in layer_types:
            raise ArchitectureError(f"{where}: layer type {layer_type!r} is not allowed here; allowed: {sorted(layer_types)}")
        if layer_type == "attention":
            if set(layer) != {"type", "program"}:
                raise ArchitectureError(
                    f"{where}: an attention layer has exactly the keys 'type' and 'program', got {shown(sorted(map(str, layer)))}"
                )
            try:
                compiled.append(compile_attention_program(layer["program"], max_program_length, ops=ops, inputs=inputs))
            except ProgramError as error:
                raise ArchitectureError(f"{where} (attention): {error}") from None
        else:
            if set(layer) != {"type", "kernel_size"}:
                raise ArchitectureError(
                    f"{where}: a conv layer has exactly the keys 'type' and 'kernel_size', got {shown(sorted(map(str, layer)))}"
                )
            kernel_size = layer["kernel_size"]
            allowed = tuple(size for size in CONV_KERNEL_SIZES if size in kernel_sizes)
            if type(kernel_size) is not int or kernel_size not in allowed:
                raise ArchitectureError(f"{where} (conv): kernel_size must be one of {allowed}, got {shown(kernel_size)}")
            compiled.append(kernel_size)
    return compiled


def compile_attention_program(
    source: Any,
    max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH,
    *,
    ops: Collection[str] | None = None,
    inputs: Collection[str] | None = None,
) -> Program:
    """Parse and check one attention layer's program (SPEC §2's rules, then the allowed ``ops`` and ``inputs``
    where its values reach the output); return it as parsed. Raises :class:`ProgramError` naming the instruction."""
    program = parse_program(source)
    check_program(program, max_program_length)
    if ops is not None:
        live = live_instructions(program)
        for index, instruction in enumerate(program.instructions):
            if live[index] and instruction.op not in ops:
                raise ProgramError(f"instruction {index} ({instruction.op}): op not allowed here; allowed: {sorted(ops)}", index)
    if inputs is not None:
        outside = sorted(set(compact_program(program).inputs_read()) - set(inputs))
        if outside:
            raise ProgramError(f"the program reads {outside}, not allowed here; allowed inputs: {sorted(inputs)}")
    return program


@without_cycle_collection()
def canonical_architecture(
    layers: Any, max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH, **restrictions: Any
) -> list[dict[str, Any]]:
    """Validate ``layers`` (see :func:`compile_layers` for ``restrictions``) and return a new list in canonical
    form: every program as its canonical instruction list, so it round-trips through JSON and two architectures
    are the same exactly when their canonical forms are equal."""
    compiled = compile_layers(layers, max_program_length, **restrictions)
    return [
        {"type": "conv", "kernel_size": each}
        if isinstance(each, int)
        else {"type": "attention", "program": canonical_program(each).to_json()}
        for each in compiled
    ]


def _program_of(layer: Mapping[str, Any]) -> Program:
    return parse_program(layer["program"])


def layer_key(layer: Mapping[str, Any]) -> str:
    """``conv9``, or ``attention:`` and the program's :func:`~.attention_programs.program_key`."""
    if layer["type"] == "conv":
        return f"conv{layer['kernel_size']}"
    return f"attention:{program_key(_program_of(layer))}"


def architecture_key(layers: Sequence[Mapping[str, Any]]) -> str:
    """Equal for two architectures exactly when every layer has the same type and canonical program / kernel.

    The layers' keys joined by `` | ``; each program's key is its canonical instruction list written compactly,
    so the key's length is linear in the architecture's size.
    """
    return key_from_layer_keys([layer_key(layer) for layer in layers])


def key_from_layer_keys(layer_keys: Sequence[str]) -> str:
    """The :func:`architecture_key` of layers whose :func:`layer_key` s are known already (a mutation that changes
    one layer of twelve recomputes one key, not twelve)."""
    return " | ".join(layer_keys)


def architecture_id(layers: Sequence[Mapping[str, Any]]) -> str:
    """A short stable name for file names and logs (a digest of :func:`architecture_key`)."""
    return hashlib.sha256(architecture_key(layers).encode()).hexdigest()[:12]


def _expression_length(program: Program) -> int:
    """Length of ``program.to_expression()`` without building it (arbitrary-precision integers)."""
    lengths: list[int] = []
    for instruction in program.instructions:
        operands = [1 if isinstance(arg, str) else lengths[arg] for arg in instruction.args]
        lengths.append(len(instruction.op) + 2 + sum(operands) + 2 * (len(operands) - 1))
    return lengths[-1]


def describe_program(program: Program) -> str:
    """The program as one expression, or, when that would be longer than `DESCRIPTION_EXPRESSION_LIMIT`
    characters, as its numbered instruction list (``0: transpose(K); 1: matmul(Q, 0); ...``)."""
    if _expression_length(program) <= DESCRIPTION_EXPRESSION_LIMIT:
        return program.to_expression()
    return "; ".join(
        f"{index}: {instruction.op}({', '.join(map(str, instruction.args))})"
        for index, instruction in enumerate(program.instructions)
    )


def describe_layer(layer: Mapping[str, Any]) -> str:
    """``conv k=9``, or the program as written (see :func:`describe_program`)."""
    if layer["type"] == "conv":
        return f"conv k={layer['kernel_size']}"
    return describe_program(_program_of(layer))


def describe_architecture(layers: Sequence[Mapping[str, Any]]) -> list[str]:
    """One readable line per layer (:func:`describe_layer`)."""
    return [describe_layer(layer) for layer in layers]


# ---------------------------------------------------------------------------------------------------------
# Depth scaling: the paper's `large` (Appendix D.2), the one place this rule lives.
# ---------------------------------------------------------------------------------------------------------


def repeat_blocks_in_place(layers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scale depth as the paper's `large` does: every (conv, attention) block appears twice in a row.

    A stack that is not made of (conv, attention) pairs (plain BERT) repeats each layer in place instead,
    which is the same rule with blocks of one layer.
    """
    paired = len(layers) % 2 == 0 and all(
        layers[i]["type"] == "conv" and layers[i + 1]["type"] == "attention" for i in range(0, len(layers), 2)
    )
    block = 2 if paired else 1
    repeated: list[dict[str, Any]] = []
    for start in range(0, len(layers), block):
        chunk = [dict(layer) for layer in layers[start : start + block]]
        repeated.extend(copy.deepcopy(chunk) + copy.deepcopy(chunk))
    return repeated


def layers_at_size(layers: Sequence[Mapping[str, Any]], size: str) -> list[dict[str, Any]]:
    """The architecture ``layers`` (as searched, at the base depth) at a paper size: unchanged for `small`
    and `base`, every block repeated in place for `large` (:func:`repeat_blocks_in_place`)."""
    if size not in SIZE_PRESETS:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZE_PRESETS)}")
    layers = copy.deepcopy([dict(layer) for layer in layers])
    return repeat_blocks_in_place(layers) if size == "large" else layers


# ---------------------------------------------------------------------------------------------------------
# Cost without building a model, and measured on one.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelDimensions:
    """The sizes every layer of a model shares; the architecture decides the rest."""

    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    conv_num_heads: int | None = None

    @property
    def kernel_heads(self) -> int:
        return self.conv_num_heads or self.num_attention_heads

    @classmethod
    def from_config(cls, config: Any) -> "ModelDimensions":
        return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})


def count_backbone_parameters(layers: Sequence[Mapping[str, Any]], dims: ModelDimensions) -> int:
    """Parameters of ``AutoBertZeroModel`` (embeddings, layers, pooler) for this architecture.

    Pure arithmetic, so a parameter budget can reject candidates before any tensor is built; a test checks
    it against ``sum(p.numel() for p in model.parameters())``. An attention layer has one projection per input
    its program reads where the value reaches the output (dead instructions create none), plus ``W_O``.
    """
    d = dims.hidden_size
    linear = d * d + d
    embeddings = (dims.vocab_size + dims.max_position_embeddings + dims.type_vocab_size) * d + 2 * d
    shared_per_layer = 2 * (2 * d) + (d * dims.intermediate_size + dims.intermediate_size) + (dims.intermediate_size * d + d)
    total = embeddings + linear  # + pooler
    for layer in layers:
        if layer["type"] == "conv":
            mixer = (2 * d * d + 2 * d) + dims.kernel_heads * layer["kernel_size"] + linear
        else:
            mixer = (len(compact_program(_program_of(layer)).inputs_read()) + 1) * linear
        total += shared_per_layer + mixer
    return total


def forward_flops(model: Any, seq_length: int) -> int:
    """FLOPs of one forward pass of ``model`` over one sequence of ``seq_length`` tokens, as
    ``torch.utils.flop_counter`` counts them (matrix products, convolutions and fused attention; element-wise
    work is free).

    Measured on the model as it runs, so the count follows the kernels it picks: a wide lightweight
    convolution computed as a banded matrix product (CPU, short sequences) counts as that product. The
    counter has no formula for the CPU flash-attention kernel that SDPA runs on CPU, so it is given the one it
    uses for the GPU kernels (without it, attention would count as free on CPU).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flops}
    input_ids = torch.ones(1, seq_length, dtype=torch.long, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        model(input_ids=input_ids)
    return counter.get_total_flops()


__all__ = [
    "CONV_KERNEL_SIZES",
    "INPUT_NAMES",
    "LAYER_TYPES",
    "OPS",
    "SIZE_PRESETS",
    "ArchitectureError",
    "ModelDimensions",
    "architecture_id",
    "architecture_key",
    "canonical_architecture",
    "compile_attention_program",
    "compile_layers",
    "count_backbone_parameters",
    "describe_architecture",
    "describe_layer",
    "describe_program",
    "forward_flops",
    "key_from_layer_keys",
    "layer_key",
    "layers_at_size",
    "repeat_blocks_in_place",
]
