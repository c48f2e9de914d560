"""The search space (SPEC §1–§2, §4) as plain data: which architectures the search may propose, how to sample
and enumerate them.

An *architecture* is the ``layers`` list of an :class:`~modeling_autobert_zero.AutoBertZeroConfig`: one dict
per layer, ``{"type": "conv", "kernel_size": k}`` or ``{"type": "attention", "program": [...]}``. Inside the
search every program is kept in its canonical instruction-list form, so architectures round-trip through
JSON unchanged and two architectures are the same exactly when their
:func:`~modeling_autobert_zero.architecture.architecture_key` is equal.

What a valid architecture is, its canonical form, key, description and parameter count are the model's rules
(``modeling_autobert_zero.architecture``, which the config validates with): a :class:`SearchSpace` only narrows
them (:meth:`SearchSpace.canonical_architecture`), so the search accepts exactly what the model accepts within
the space and rejects the rest with the model's :class:`~modeling_autobert_zero.architecture.ArchitectureError`
naming the layer. This module only decides *which* programs to build. Nothing here touches tensors or modules.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

from modeling_autobert_zero.architecture import CONV_KERNEL_SIZES, LAYER_TYPES, canonical_architecture, compile_attention_program
from modeling_autobert_zero.attention_programs import (
    DEFAULT_MAX_PROGRAM_LENGTH,
    INPUT_NAMES,
    OPS,
    Instruction,
    Program,
    ProgramError,
    canonical_program,
    program_key,
)


Architecture = list[dict[str, Any]]
ROW_SHAPE = ("n", "d")  # the shape of every input node and of every program's output


class SearchSpaceError(ValueError):
    """A search space that is misconfigured or has no (new) architecture left to sample.

    An architecture outside the space is an :class:`~modeling_autobert_zero.architecture.ArchitectureError`, the
    model's own error for an invalid architecture: the search and the config reject it with the same message,
    naming the layer (and the instruction, op and shapes).
    """


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

    @property
    def restrictions(self) -> dict[str, Any]:
        """The space as the keyword arguments with which the model's validator
        (:func:`~modeling_autobert_zero.architecture.compile_layers`) narrows what it accepts."""
        return {
            "num_layers": self.num_layers,
            "layer_types": self.layer_types,
            "kernel_sizes": self.kernel_sizes,
            "ops": self.ops,
            "inputs": self.inputs,
        }

    def canonical_architecture(self, layers: Any) -> Architecture:
        """Validate ``layers`` with the model's validator narrowed to this space and return its canonical form
        (programs as canonical instruction lists). Raises the model's
        :class:`~modeling_autobert_zero.architecture.ArchitectureError`, naming the layer (and, for programs,
        the instruction, op and shapes)."""
        return canonical_architecture(layers, self.max_program_length, **self.restrictions)

    def canonical_program(self, program: Program) -> Program:
        """The canonical form of ``program`` if it is valid and uses only the space's ops and inputs; else
        :class:`~modeling_autobert_zero.attention_programs.ProgramError` naming the instruction."""
        return canonical_program(compile_attention_program(program, self.max_program_length, ops=self.ops, inputs=self.inputs))


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
            return space.canonical_program(program)
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
    ordered by length and then by :func:`~modeling_autobert_zero.attention_programs.program_key`.

    A canonical program of ``k`` instructions is itself a valid instruction list of length ``k``, so walking
    every shape-consistent instruction list up to ``max_program_length`` and canonicalising the ones that
    end in an ``(n, d)`` value finds them all. The walk grows exponentially with the length: this is for
    the small sub-spaces a benchmark table can cover. Raises :class:`SearchSpaceError` beyond ``limit``.
    """
    found: set[Program] = set()  # canonical, so equal programs are equal values
    inputs = [(name, ROW_SHAPE) for name in space.inputs]

    def extend(instructions: list[Instruction], shapes: list[tuple[str, str]]) -> None:
        if shapes and shapes[-1] == ROW_SHAPE:
            try:
                program = space.canonical_program(Program(tuple(instructions)))
            except ProgramError:
                program = None
            if program is not None and program not in found:
                found.add(program)
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
    return sorted(found, key=lambda program: (len(program), program_key(program)))


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
