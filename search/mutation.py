"""Mutations (SPEC §4): inter-layer (a layer's type, a conv kernel size) and intra-layer (ops of a program).

Every function takes an architecture and returns a new one; the parent is never changed. Where new ops and
kernel sizes come from is a *guide*: :class:`PriorityGuide` draws them from the softmax of the UCB scores
(OP-NAS), :class:`UniformGuide` uniformly (a classic EA). A child that fails validation is redrawn, so a
mutation either returns a valid, canonical architecture that differs from its parent or raises.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, Protocol

from modeling_autobert_zero.attention_programs import (
    OPS,
    Instruction,
    Program,
    ProgramError,
    architecture_key as program_key,
    infer_shapes,
    parse_program,
)

from .space import ROW_SHAPE, Architecture, SearchSpace, SearchSpaceError, canonical_program_in_space, sample_program
from .ucb import OperationPriority, draw_option


class MutationGuide(Protocol):
    """Where a mutation's new ops and kernel sizes come from."""

    def op_probabilities(self, position: int) -> Sequence[float]:
        """Probabilities over ``space.ops`` for the op at program position ``position``."""

    def kernel_probabilities(self, layer: int) -> Sequence[float]:
        """Probabilities over ``space.kernel_sizes`` for conv layer ``layer``."""


@dataclasses.dataclass(frozen=True)
class UniformGuide:
    space: SearchSpace

    def op_probabilities(self, position: int) -> list[float]:
        return [1.0 / len(self.space.ops)] * len(self.space.ops)

    def kernel_probabilities(self, layer: int) -> list[float]:
        return [1.0 / len(self.space.kernel_sizes)] * len(self.space.kernel_sizes)


@dataclasses.dataclass(frozen=True)
class PriorityGuide:
    """OP-NAS: ``softmax(u / temperature)`` of each position's (or layer's) UCB scores."""

    priority: OperationPriority
    alpha: float
    temperature: float = 1.0

    def op_probabilities(self, position: int) -> list[float]:
        return self.priority.op_probabilities(position, self.alpha, self.temperature)

    def kernel_probabilities(self, layer: int) -> list[float]:
        return self.priority.kernel_probabilities(layer, self.alpha, self.temperature)


@dataclasses.dataclass(frozen=True)
class Mutation:
    architecture: Architecture
    description: str


def _replace_layer(parent: Architecture, index: int, layer: dict[str, Any]) -> Architecture:
    return [dict(layer) if i == index else dict(old) for i, old in enumerate(parent)]


def inter_layer_mutation(
    parent: Architecture, space: SearchSpace, guide: MutationGuide, rng: random.Random
) -> Mutation | None:
    """Flip one layer's type, or give a conv layer another kernel size. None if the drawn layer has no move."""
    index = rng.randrange(len(parent))
    layer = parent[index]
    moves = []
    if layer["type"] == "conv":
        if len(space.kernel_sizes) > 1:
            moves.append("kernel")
        if "attention" in space.layer_types:
            moves.append("to_attention")
    elif "conv" in space.layer_types:
        moves.append("to_conv")
    if not moves:
        return None
    move = rng.choice(moves)
    probabilities = guide.kernel_probabilities(index)
    if move == "kernel":
        kernel_size = draw_option(space.kernel_sizes, probabilities, rng, exclude=layer["kernel_size"])
        return Mutation(
            _replace_layer(parent, index, {"type": "conv", "kernel_size": kernel_size}),
            f"layer {index}: conv k={layer['kernel_size']} -> k={kernel_size}",
        )
    if move == "to_conv":
        kernel_size = draw_option(space.kernel_sizes, probabilities, rng)
        return Mutation(
            _replace_layer(parent, index, {"type": "conv", "kernel_size": kernel_size}),
            f"layer {index}: attention -> conv k={kernel_size}",
        )
    program = sample_program(space, rng)
    return Mutation(
        _replace_layer(parent, index, {"type": "attention", "program": program.to_json()}),
        f"layer {index}: conv k={layer['kernel_size']} -> attention {program.to_expression()}",
    )


def _operand_choices(
    op: str, old_args: tuple[Any, ...], prefix_shapes: list[tuple[str, str]], space: SearchSpace, rng: random.Random
) -> tuple[Any, ...] | None:
    """Arguments for ``op`` after the instructions of shapes ``prefix_shapes`` that satisfy its shape rule: the
    old arguments (cut or extended to the new arity) when they fit, otherwise a random compatible tuple of
    earlier values; None if none fits."""
    arity = OPS[op].arity

    def shape_ok(args: tuple[Any, ...]) -> bool:
        shapes = [ROW_SHAPE if isinstance(arg, str) else prefix_shapes[arg] for arg in args]
        try:
            OPS[op].shape_rule(shapes)
        except ProgramError:
            return False
        return True

    values = [*space.inputs, *range(len(prefix_shapes))]
    kept = tuple(old_args[:arity]) + tuple(rng.choice(values) for _ in range(arity - len(old_args)))
    if shape_ok(kept):
        return kept
    if arity == 1:
        compatible = [(value,) for value in values if shape_ok((value,))]
    else:
        compatible = [(left, right) for left in values for right in values if shape_ok((left, right))]
    return rng.choice(compatible) if compatible else None


def intra_layer_mutation(
    parent: Architecture,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    positions_per_mutation: int = 1,
    max_attempts: int = 100,
) -> Mutation | None:
    """Operation-priority mutation of one attention layer's program (SPEC §4).

    For a parent program of length ``k``, ``positions_per_mutation`` distinct positions among the first
    ``k`` get a new op drawn from that position's distribution (never the op already there), so only the
    first ``k`` distributions are consulted. Arguments are kept where the new op's shape rule allows and
    redrawn where not; a child that is invalid, or canonically equal to its parent, is redrawn.
    None if ``parent`` has no attention layer or ``max_attempts`` draws all failed.
    """
    attention_layers = [index for index, layer in enumerate(parent) if layer["type"] == "attention"]
    if not attention_layers:
        return None
    index = rng.choice(attention_layers)
    program = parse_program(parent[index]["program"])
    parent_key = program_key(program)
    length = len(program)
    for _ in range(max_attempts):
        positions = sorted(rng.sample(range(length), min(positions_per_mutation, length)))
        working = list(program.instructions)
        changes = []
        for position in positions:
            try:  # an earlier replacement may have broken the shapes this position builds on
                prefix_shapes = infer_shapes(Program(tuple(working[:position]))) if position else []
            except ProgramError:
                break
            old = working[position]
            op = draw_option(space.ops, guide.op_probabilities(position), rng, exclude=old.op)
            args = _operand_choices(op, old.args, prefix_shapes, space, rng)
            if args is None:
                break
            working[position] = Instruction(op, args)
            changes.append(f"{position}: {old.op} -> {op}")
        else:
            try:
                child = canonical_program_in_space(Program(tuple(working)), space)
            except ProgramError:
                continue
            if program_key(child) == parent_key:
                continue
            return Mutation(
                _replace_layer(parent, index, {"type": "attention", "program": child.to_json()}),
                f"layer {index}: ops {'; '.join(changes)}",
            )
    return None


def mutate(
    parent: Architecture,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    inter_layer_probability: float = 0.5,
    positions_per_mutation: int = 1,
    max_attempts: int = 100,
) -> Mutation:
    """One child of ``parent``: an inter-layer mutation with probability ``inter_layer_probability`` (always,
    when no layer is attention), otherwise an intra-layer one. Always valid, canonical, and new."""
    has_attention = any(layer["type"] == "attention" for layer in parent)
    for _ in range(max_attempts):
        if not has_attention or rng.random() < inter_layer_probability:
            mutation = inter_layer_mutation(parent, space, guide, rng)
        else:
            mutation = intra_layer_mutation(parent, space, guide, rng, positions_per_mutation)
        if mutation is not None:
            return mutation
    raise SearchSpaceError(f"no valid mutation of this architecture in {max_attempts} attempts: {parent!r:.200}")
