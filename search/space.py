"""The search space (SPEC §1–§2, §4) as plain data: what an architecture is, how to sample one, its identity.

An *architecture* is the ``layers`` list of an :class:`~modeling_autobert_zero.AutoBertZeroConfig`: one dict
per layer, ``{"type": "conv", "kernel_size": k}`` or ``{"type": "attention", "program": [...]}``. Inside the
search every program is kept in its canonical instruction-list form, so architectures round-trip through
JSON unchanged and two architectures are the same exactly when their :func:`architecture_key` is equal.

All program logic (parsing, shapes, validity, canonical form) comes from
``modeling_autobert_zero.attention_programs``; this module only decides *which* programs to build.
Nothing here touches tensors or modules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from collections.abc import Mapping, Sequence
from typing import Any

from modeling_autobert_zero.attention_programs import (
    DEFAULT_MAX_PROGRAM_LENGTH,
    INPUT_NAMES,
    OPS,
    Instruction,
    Program,
    ProgramError,
    architecture_key as program_key,
    parse_program,
    validate_program,
)
from modeling_autobert_zero.configuration_autobert_zero import CONV_KERNEL_SIZES, LAYER_TYPES


Architecture = list[dict[str, Any]]
ROW_SHAPE = ("n", "d")  # the shape of every input node and of every program's output


class SearchSpaceError(ValueError):
    """An architecture outside the search space, or a search space that cannot be sampled."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Which architectures the search may propose.

    ``num_layers`` is fixed (the paper searches a 12-layer stack). Sampled programs have between
    ``min_program_length`` and ``max_program_length`` instructions before canonicalisation, which may drop
    dead instructions; ``max_program_length`` is also the model's validity limit (rule 6).
    """

    num_layers: int = 12
    layer_types: tuple[str, ...] = LAYER_TYPES
    kernel_sizes: tuple[int, ...] = CONV_KERNEL_SIZES
    ops: tuple[str, ...] = tuple(OPS)
    inputs: tuple[str, ...] = INPUT_NAMES
    min_program_length: int = 3
    max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH
    max_sampling_attempts: int = 2000

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise SearchSpaceError(f"space.num_layers: expected a positive integer, got {self.num_layers}")
        for field, values, allowed in (
            ("layer_types", self.layer_types, LAYER_TYPES),
            ("kernel_sizes", self.kernel_sizes, CONV_KERNEL_SIZES),
            ("ops", self.ops, tuple(OPS)),
            ("inputs", self.inputs, INPUT_NAMES),
        ):
            if not values or len(set(values)) != len(values) or not set(values) <= set(allowed):
                raise SearchSpaceError(
                    f"space.{field}: expected distinct values from {list(allowed)}, got {list(values)}"
                )
        if len(self.inputs) < 2:
            raise SearchSpaceError(f"space.inputs: a program reads 2 to 4 inputs, so at least 2 are needed, got {list(self.inputs)}")
        if not 1 <= self.min_program_length <= self.max_program_length:
            raise SearchSpaceError(
                f"space: expected 1 <= min_program_length <= max_program_length, got "
                f"{self.min_program_length} and {self.max_program_length}"
            )


# ---------------------------------------------------------------------------------------------------------
# Identity: canonical form and keys.
# ---------------------------------------------------------------------------------------------------------


def canonical_architecture(layers: Sequence[Mapping[str, Any]], space: SearchSpace) -> Architecture:
    """Validate ``layers`` against ``space`` and return a new list with every program in canonical form.

    Programs may be given as expressions or instruction lists; the result always holds instruction lists.
    Raises :class:`SearchSpaceError` naming the layer (and, for programs, the instruction and shapes).
    """
    if not isinstance(layers, Sequence) or isinstance(layers, str) or len(layers) != space.num_layers:
        raise SearchSpaceError(f"layers: expected a list of {space.num_layers} layers, got {layers!r:.80}")
    canonical: Architecture = []
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        layer_type = layer.get("type") if isinstance(layer, Mapping) else None
        if layer_type not in space.layer_types:
            raise SearchSpaceError(f"{where}: 'type' must be one of {list(space.layer_types)}, got {layer!r:.80}")
        if layer_type == "conv":
            if set(layer) != {"type", "kernel_size"} or layer["kernel_size"] not in space.kernel_sizes:
                raise SearchSpaceError(
                    f"{where}: a conv layer is {{'type': 'conv', 'kernel_size': k}} with k in "
                    f"{list(space.kernel_sizes)}, got {dict(layer)!r:.80}"
                )
            canonical.append({"type": "conv", "kernel_size": int(layer["kernel_size"])})
            continue
        if set(layer) != {"type", "program"}:
            raise SearchSpaceError(f"{where}: an attention layer has exactly the keys 'type' and 'program', got {sorted(layer)}")
        try:
            program = canonical_program_in_space(parse_program(layer["program"]), space)
        except ProgramError as error:
            raise SearchSpaceError(f"{where} (attention): {error}") from None
        canonical.append({"type": "attention", "program": program.to_json()})
    return canonical


def canonical_program_in_space(program: Program, space: SearchSpace) -> Program:
    """The canonical form of a valid program that uses only the space's ops and inputs; else ProgramError."""
    canonical = validate_program(program, space.max_program_length)
    for index, instruction in enumerate(canonical.instructions):
        if instruction.op not in space.ops:
            raise ProgramError(f"instruction {index} ({instruction.op}): op not in the search space {list(space.ops)}", index)
    outside_inputs = set(canonical.inputs_read()) - set(space.inputs)
    if outside_inputs:
        raise ProgramError(f"the program reads {sorted(outside_inputs)}, not in the search space's inputs {list(space.inputs)}")
    return canonical


def layer_key(layer: Mapping[str, Any]) -> str:
    if layer["type"] == "conv":
        return f"conv{layer['kernel_size']}"
    return f"attention:{program_key(parse_program(layer['program']))}"


def architecture_key(layers: Sequence[Mapping[str, Any]]) -> str:
    """Equal for two architectures exactly when every layer has the same type and canonical program/kernel."""
    return " | ".join(layer_key(layer) for layer in layers)


def architecture_id(layers: Sequence[Mapping[str, Any]]) -> str:
    """A short stable name for file names and logs (a digest of :func:`architecture_key`)."""
    return hashlib.sha256(architecture_key(layers).encode()).hexdigest()[:12]


def describe_architecture(layers: Sequence[Mapping[str, Any]]) -> list[str]:
    """One readable line per layer: ``conv k=9`` or the program as an expression."""
    return [
        f"conv k={layer['kernel_size']}" if layer["type"] == "conv" else parse_program(layer["program"]).to_expression()
        for layer in layers
    ]


# ---------------------------------------------------------------------------------------------------------
# Random sampling.
# ---------------------------------------------------------------------------------------------------------

_OPERAND_DRAWS = 12  # tries to find shape-compatible operands for one op before drawing another op


def _draw_operands(
    op: str, available: list[tuple[Any, tuple[str, str]]], fresh: list[int], rng: random.Random
) -> tuple[tuple[Any, ...], tuple[str, str]] | None:
    """Operands for ``op`` whose shapes satisfy its rule, or None. Prefers values not consumed yet (``fresh``)
    for the first operand, so a random program is mostly live rather than mostly dead code."""
    arity = OPS[op].arity
    num_inputs = sum(isinstance(item[0], str) for item in available)
    for _ in range(_OPERAND_DRAWS):
        if fresh and rng.random() < 0.7:
            first = available[num_inputs + rng.choice(fresh)]
        else:
            first = rng.choice(available)
        chosen = [first] + [rng.choice(available) for _ in range(arity - 1)]
        try:
            shape = OPS[op].shape_rule([item[1] for item in chosen])
        except ProgramError:
            continue
        return tuple(item[0] for item in chosen), shape
    return None


def _random_instruction_list(space: SearchSpace, rng: random.Random, length: int) -> Program | None:
    """``length`` random instructions that each satisfy their op's shape rule, ending in an (n, d) value."""
    available: list[tuple[Any, tuple[str, str]]] = [(name, ROW_SHAPE) for name in space.inputs]
    fresh: list[int] = []
    instructions: list[Instruction] = []
    for index in range(length):
        is_output = index == length - 1
        for _ in range(_OPERAND_DRAWS * 4):
            op = rng.choice(space.ops)
            drawn = _draw_operands(op, available, fresh, rng)
            if drawn is None or (is_output and drawn[1] != ROW_SHAPE):
                continue
            args, shape = drawn
            break
        else:
            return None
        fresh = [value for value in fresh if value not in args] + [index]
        instructions.append(Instruction(op, args))
        available.append((index, shape))
    return Program(tuple(instructions))


def sample_program(space: SearchSpace, rng: random.Random) -> Program:
    """A random valid program (SPEC §2), canonical; its length before canonicalisation is uniform in the range."""
    for _ in range(space.max_sampling_attempts):
        length = rng.randint(space.min_program_length, space.max_program_length)
        program = _random_instruction_list(space, rng, length)
        if program is None:
            continue
        try:
            return canonical_program_in_space(program, space)
        except ProgramError:
            continue
    raise SearchSpaceError(
        f"no valid program found in {space.max_sampling_attempts} attempts; the space's ops {list(space.ops)} "
        f"and inputs {list(space.inputs)} may not allow a token-mixing (n, d) program"
    )


def sample_layer(space: SearchSpace, rng: random.Random) -> dict[str, Any]:
    layer_type = rng.choice(space.layer_types)
    if layer_type == "conv":
        return {"type": "conv", "kernel_size": rng.choice(space.kernel_sizes)}
    return {"type": "attention", "program": sample_program(space, rng).to_json()}


def sample_architecture(space: SearchSpace, rng: random.Random) -> Architecture:
    """Every layer's type uniformly at random, then a random kernel size or a random valid program."""
    return [sample_layer(space, rng) for _ in range(space.num_layers)]


# ---------------------------------------------------------------------------------------------------------
# Exhaustive enumeration, for closed sub-spaces small enough to tabulate (benchmarks).
# ---------------------------------------------------------------------------------------------------------


def enumerate_programs(space: SearchSpace, limit: int = 100_000) -> list[Program]:
    """Every valid canonical program of the space (1 to ``max_program_length`` instructions), each once,
    ordered by length and then by key.

    A canonical program of ``k`` instructions is itself a valid instruction list of length ``k``, so walking
    every shape-consistent instruction list up to ``max_program_length`` and canonicalising the ones that
    end in an ``(n, d)`` value finds them all. The walk grows exponentially with the length: this is for
    the small sub-spaces a benchmark table can cover. Raises :class:`SearchSpaceError` beyond ``limit``.
    """
    found: dict[str, Program] = {}
    inputs = [(name, ROW_SHAPE) for name in space.inputs]

    def extend(instructions: list[Instruction], shapes: list[tuple[str, str]]) -> None:
        if shapes and shapes[-1] == ROW_SHAPE:
            try:
                program = canonical_program_in_space(Program(tuple(instructions)), space)
            except ProgramError:
                program = None
            if program is not None and program_key(program) not in found:
                found[program_key(program)] = program
                if len(found) > limit:
                    raise SearchSpaceError(f"the space has more than {limit} programs: too large to enumerate")
        if len(instructions) == space.max_program_length:
            return
        values = inputs + [(index, shape) for index, shape in enumerate(shapes)]
        for op in space.ops:
            for operands in itertools.product(values, repeat=OPS[op].arity):
                try:
                    shape = OPS[op].shape_rule([operand[1] for operand in operands])
                except ProgramError:
                    continue
                instruction = Instruction(op, tuple(operand[0] for operand in operands))
                extend([*instructions, instruction], [*shapes, shape])

    extend([], [])
    return [found[key] for key in sorted(found, key=lambda key: (len(found[key]), key))]


def enumerate_layers(space: SearchSpace, limit: int = 100_000) -> list[dict[str, Any]]:
    """Every layer one position of the space can hold: conv layers by kernel size, then attention programs."""
    layers: list[dict[str, Any]] = []
    if "conv" in space.layer_types:
        layers += [{"type": "conv", "kernel_size": kernel} for kernel in space.kernel_sizes]
    if "attention" in space.layer_types:
        layers += [{"type": "attention", "program": program.to_json()} for program in enumerate_programs(space, limit)]
    return layers


def enumerate_architectures(space: SearchSpace, limit: int = 100_000) -> list[Architecture]:
    """Every architecture of the space (the product of :func:`enumerate_layers` over its layers), in a fixed
    order. Raises :class:`SearchSpaceError` when there are more than ``limit``."""
    layers = enumerate_layers(space, limit)
    total = len(layers) ** space.num_layers
    if total > limit:
        raise SearchSpaceError(
            f"the space has {len(layers)} options per layer and {space.num_layers} layers = {total} architectures, "
            f"more than the limit of {limit}"
        )
    return [[dict(layer) for layer in choice] for choice in itertools.product(layers, repeat=space.num_layers)]


# ---------------------------------------------------------------------------------------------------------
# Cost without training: parameters follow from the architecture and the model sizes alone.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelDimensions:
    """The fixed sizes of every candidate; the architecture decides the rest."""

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


def count_backbone_parameters(layers: Sequence[Mapping[str, Any]], dims: ModelDimensions) -> int:
    """Parameters of ``AutoBertZeroModel`` (embeddings, layers, pooler) for this architecture.

    Pure arithmetic, so a parameter budget can reject candidates before any tensor is built; a test checks
    it against ``sum(p.numel() for p in model.parameters())``.
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
            mixer = (len(parse_program(layer["program"]).inputs_read()) + 1) * linear
        total += shared_per_layer + mixer
    return total
