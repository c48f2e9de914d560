"""Mutations (SPEC §4, paper Algorithm 1 lines 6–7): every child is an inter-layer mutation of its parent
followed by an intra-layer mutation of the result.

- **Inter-layer** (plain random, as in a classic EA): one layer, chosen uniformly, changes its type, or a
  conv layer its kernel size. Kernel sizes come from the guide; a layer that becomes attention gets a
  random valid program.
- **Intra-layer**: one edit of one attention program, chosen uniformly among the layers, then among the
  edits the program allows, then among positions: *replace* the op at canonical position ``p`` (of ``k``),
  *insert* a new instruction at ``p`` (``0 ≤ p ≤ k``, while ``k < max_program_length``) or *delete* the
  instruction at ``p`` (``k ≥ 2``). Replaced and inserted ops are drawn from the guide's distribution for
  position ``p``.

Rules that keep every child valid, canonical and new without ever evaluating an invalid one:

- A replaced instruction keeps its result shape, so every later instruction stays well-typed; its
  arguments are the old ones where the new op's shape rule allows, otherwise other inputs or earlier values.
  Of the distinct programs an edit with the drawn op can give, one is chosen uniformly (for a replacement,
  the one that keeps the old arguments first).
- An inserted instruction sits on one argument edge of the instruction at ``p`` (``v → y`` becomes
  ``v → x → y``): it consumes ``v``, has ``v``'s shape, and any further operand is an input or an earlier
  value; at ``p = k`` it consumes the old output and becomes the new output. A path grows by one op.
- A deleted instruction is bypassed: its consumers read one of its operands of the same shape instead
  (the program's own output is replaced by such an operand). Instructions only it used die and are
  dropped by canonicalisation. A path shrinks.
- **Which ops a position offers: conditional validity at draw time.** For an edit at position ``p`` of a
  given parent program, the op is drawn from the position's distribution restricted to the ops that can
  be valid there: those for which some choice of operands yields a valid, canonical program different from
  the parent (:func:`edit_results`) — for a replacement, the current op included, with other operands. No
  probability goes to an op that cannot be used (such as ``matmul``
  of two ``(n, d)`` inputs at position 0). If every program the drawn op yields is already known (or over
  the objective's budgets), that op is removed and the draw repeated over the rest; an edit with no usable
  op is replaced by another (layer, edit, position); and when no edit of the inter-layer mutation's result
  gives a new child, the child is redrawn from the inter-layer mutation on. Nothing invalid is evaluated.

Canonicalisation can move an op away from the position it was drawn for (when the edit drops dead
instructions before it, or reorders ``add``'s arguments); the statistics always count the canonical
positions of evaluated programs, and :class:`MutationDiagnostics` counts how often that happens.

Where new ops and kernel sizes come from is a *guide*: :class:`PriorityGuide` (OP-NAS, the UCB softmax) or
:class:`UniformGuide` (a classic EA). Every function returns new values; the parent is never changed.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from modeling_autobert_zero.architecture import describe_program, key_from_layer_keys, layer_key
from modeling_autobert_zero.attention_programs import OPS, Instruction, Program, ProgramError, infer_shapes, parse_program

from .space import ROW_SHAPE, Architecture, SearchSpace, SearchSpaceError, sample_program
from .ucb import OperationPriority, draw_option


Shape = tuple[str, str]
# Whether a child may be proposed: its architecture key and the architecture (new, and within budgets).
Acceptance = Callable[[str, Architecture], bool]
EDITS = ("replace", "insert", "delete")


class MutationGuide(Protocol):
    """Where a mutation's new ops and kernel sizes come from."""

    def op_probabilities(self, position: int, options: Sequence[str]) -> Sequence[float]:
        """Probabilities over ``options`` (ops) for an op written at canonical program position ``position``."""

    def kernel_probabilities(self, layer: int, options: Sequence[int]) -> Sequence[float]:
        """Probabilities over ``options`` (kernel sizes) for conv layer ``layer``."""


@dataclasses.dataclass(frozen=True)
class UniformGuide:
    """A classic EA: every option equally likely."""

    def op_probabilities(self, position: int, options: Sequence[str]) -> list[float]:
        return [1.0 / len(options)] * len(options)

    def kernel_probabilities(self, layer: int, options: Sequence[int]) -> list[float]:
        return [1.0 / len(options)] * len(options)


@dataclasses.dataclass(frozen=True)
class PriorityGuide:
    """OP-NAS: ``softmax(u / temperature)`` of each position's (or conv layer's) UCB scores (Eq. 3)."""

    priority: OperationPriority
    alpha: float
    temperature: float

    def op_probabilities(self, position: int, options: Sequence[str]) -> list[float]:
        return self.priority.op_probabilities(position, options, self.alpha, self.temperature)

    def kernel_probabilities(self, layer: int, options: Sequence[int]) -> list[float]:
        return self.priority.kernel_probabilities(layer, options, self.alpha, self.temperature)


@dataclasses.dataclass
class MutationDiagnostics:
    """Counts over the children of one generation, to check that mutation works as designed."""

    children: int = 0  # children made by mutation (not random replacements)
    intra_attempts: int = 0  # (layer, edit, position) tried by intra-layer mutations
    intra_edits: int = 0  # of which gave a valid, new program
    options_offered: int = 0  # ops in the restricted distributions drawn from (summed over attempts)
    options_excluded: int = 0  # ops left out of them because they cannot be valid there
    op_draws: int = 0  # ops drawn from a position's restricted distribution
    ops_without_new_child: int = 0  # drawn ops whose every valid child was already known: removed, redrawn
    landed_elsewhere: int = 0  # used ops that canonicalisation moved to another position
    redrawn_children: int = 0  # children redrawn from the inter-layer mutation on
    edits: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # edit kind -> count
    positions: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # position -> ops used

    def to_json(self) -> dict[str, Any]:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["edits"] = dict(sorted(self.edits.items()))
        data["positions"] = {str(position): count for position, count in sorted(self.positions.items())}
        return data


@dataclasses.dataclass(frozen=True)
class Mutation:
    architecture: Architecture
    description: str
    key: str = ""  # the child's architecture key, where the mutation computed it anyway


def _replace_layer(parent: Architecture, index: int, layer: dict[str, Any]) -> Architecture:
    return [dict(layer) if i == index else dict(old) for i, old in enumerate(parent)]


# ---------------------------------------------------------------------------------------------------------
# Inter-layer mutation.
# ---------------------------------------------------------------------------------------------------------


def inter_layer_mutation(
    parent: Architecture, space: SearchSpace, guide: MutationGuide, rng: random.Random
) -> Mutation | None:
    """Flip one layer's type, or give a conv layer another kernel size. None if no layer has a move."""
    movable = [index for index, layer in enumerate(parent) if _inter_layer_moves(layer, space)]
    if not movable:
        return None
    index = rng.choice(movable)
    layer = parent[index]
    move = rng.choice(_inter_layer_moves(layer, space))
    if move == "kernel":
        options = [kernel for kernel in space.kernel_sizes if kernel != layer["kernel_size"]]
        kernel_size = draw_option(options, guide.kernel_probabilities(index, options), rng)
        return Mutation(
            _replace_layer(parent, index, {"type": "conv", "kernel_size": kernel_size}),
            f"layer {index}: conv k={layer['kernel_size']} -> k={kernel_size}",
        )
    if move == "to_conv":
        kernel_size = draw_option(space.kernel_sizes, guide.kernel_probabilities(index, space.kernel_sizes), rng)
        return Mutation(
            _replace_layer(parent, index, {"type": "conv", "kernel_size": kernel_size}),
            f"layer {index}: attention -> conv k={kernel_size}",
        )
    program = sample_program(space, rng)
    return Mutation(
        _replace_layer(parent, index, {"type": "attention", "program": program.to_json()}),
        f"layer {index}: conv k={layer['kernel_size']} -> attention {describe_program(program)}",
    )


def _inter_layer_moves(layer: dict[str, Any], space: SearchSpace) -> list[str]:
    if layer["type"] == "attention":
        return ["to_conv"] if "conv" in space.layer_types else []
    moves = ["kernel"] if len(space.kernel_sizes) > 1 else []
    return moves + (["to_attention"] if "attention" in space.layer_types else [])


# ---------------------------------------------------------------------------------------------------------
# Intra-layer mutation: the three edits of one program.
# ---------------------------------------------------------------------------------------------------------


def _operand_tuples(
    op: str, values: Sequence[tuple[Any, Shape]], result_shape: Shape, containing: Any = None
) -> list[tuple[Any, ...]]:
    """Every argument tuple over ``values`` that satisfies ``op``'s shape rule with result ``result_shape``
    (and includes ``containing`` when given), in a fixed order."""
    spec = OPS[op]
    tuples = []
    for chosen in itertools.product(values, repeat=spec.arity):
        if containing is not None and all(operand != containing for operand, _ in chosen):
            continue
        try:
            shape = spec.shape_rule([shape for _, shape in chosen])
        except ProgramError:
            continue
        if shape == result_shape:
            tuples.append(tuple(operand for operand, _ in chosen))
    return tuples


def _renumber(instruction: Instruction, mapping: Callable[[int], Any]) -> Instruction:
    return Instruction(instruction.op, tuple(arg if isinstance(arg, str) else mapping(arg) for arg in instruction.args))


@functools.lru_cache(maxsize=50_000)
def edit_results(program: Program, space: SearchSpace, edit: str, position: int, op: str | None) -> tuple[Program, ...]:
    """Every distinct valid canonical program (in ``space``, different from ``program``) that one edit of the
    canonical ``program`` gives: ``replace``/``insert`` with ``op`` at ``position``, or ``delete`` of ``position``
    (``op`` None). Fixed order; cached, because a search edits the same programs again and again (all are
    immutable values). Two canonical programs are the same program exactly when they are equal values, so they
    are compared as values, never printed."""
    shapes = infer_shapes(program)
    instructions = program.instructions

    def values_before(index: int) -> list[tuple[Any, Shape]]:
        return [(name, ROW_SHAPE) for name in space.inputs] + [(i, shapes[i]) for i in range(index)]

    def shape_of(value: Any) -> Shape:
        return ROW_SHAPE if isinstance(value, str) else shapes[value]

    candidates: list[list[Instruction]] = []
    if edit == "replace":
        for args in _operand_tuples(op, values_before(position), shapes[position]):
            changed = list(instructions)
            changed[position] = Instruction(op, args)
            candidates.append(changed)
    elif edit == "insert" and position == len(instructions):  # a new output on top of the old one
        for args in _operand_tuples(op, values_before(position), ROW_SHAPE, containing=position - 1):
            candidates.append([*instructions, Instruction(op, args)])
    elif edit == "insert":  # on an argument edge of the instruction at ``position``
        consumer = instructions[position]
        shifted = [_renumber(instruction, lambda arg: arg + 1 if arg >= position else arg) for instruction in instructions[position:]]
        for slot, edge_value in enumerate(consumer.args):
            rewired_args = list(shifted[0].args)
            rewired_args[slot] = position
            rewired = Instruction(consumer.op, tuple(rewired_args))
            for args in _operand_tuples(op, values_before(position), shape_of(edge_value), containing=edge_value):
                candidates.append([*instructions[:position], Instruction(op, args), rewired, *shifted[1:]])
    else:  # delete: bypass the instruction through one of its operands of the same shape
        last = len(instructions) - 1
        for bypass in dict.fromkeys(instructions[position].args):
            if shape_of(bypass) != shapes[position]:
                continue
            if position == last:  # the output itself: the bypassed operand becomes the output
                if not isinstance(bypass, str):
                    candidates.append(list(instructions[: bypass + 1]))
                continue

            def mapping(arg: int, bypass: Any = bypass) -> Any:
                return bypass if arg == position else arg - 1 if arg > position else arg

            candidates.append([*instructions[:position], *(_renumber(i, mapping) for i in instructions[position + 1 :])])

    results: dict[Program, None] = {}  # ordered, each once
    for candidate in candidates:
        try:
            child = space.canonical_program(Program(tuple(candidate)))
        except ProgramError:
            continue
        if child != program:
            results[child] = None
    return tuple(results)


def _kept_arguments_child(program: Program, space: SearchSpace, position: int, op: str) -> Program | None:
    """The replacement of ``position`` by ``op`` that keeps the old arguments (the smallest change), if valid."""
    old = program.instructions[position]
    kept = tuple(old.args[: OPS[op].arity])
    if len(kept) != OPS[op].arity:
        return None
    instructions = list(program.instructions)
    instructions[position] = Instruction(op, kept)
    try:
        child = space.canonical_program(Program(tuple(instructions)))
    except ProgramError:
        return None
    return child if child != program else None


def _first_accepted(
    children: Sequence[Program], rng: random.Random, accept: Callable[[Program], bool], preferred: Program | None = None
) -> Program | None:
    """``preferred`` if accepted, else the first accepted child in random order."""
    if preferred is not None and accept(preferred):
        return preferred
    order = list(children)
    rng.shuffle(order)
    return next((child for child in order if child != preferred and accept(child)), None)


def _edit_program(
    program: Program,
    edit: str,
    position: int,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    accept: Callable[[Program], bool],
    diagnostics: MutationDiagnostics,
) -> tuple[Program, str] | None:
    """One edit at one position, or None if it cannot give an accepted program."""
    if edit == "delete":
        child = _first_accepted(edit_results(program, space, "delete", position, None), rng, accept)
        return None if child is None else (child, f"delete {position} ({program.instructions[position].op})")
    old_op = program.instructions[position].op if edit == "replace" else None
    # A replacement may keep the op and change its operands: the op is drawn from the position's distribution
    # over every op that yields a new program there (the paper samples the new op from the whole distribution).
    # Without this, a space whose positions each admit one op (e.g. cosine then matmul) has no intra-layer
    # child at all, and evolution there silently degrades to random sampling.
    children = {op: edit_results(program, space, edit, position, op) for op in space.ops}
    options = [op for op, results in children.items() if results]  # the ops that can be valid here
    diagnostics.options_offered += len(options)
    diagnostics.options_excluded += len(children) - len(options)
    while options:
        op = draw_option(options, guide.op_probabilities(position, options), rng)
        diagnostics.op_draws += 1
        preferred = _kept_arguments_child(program, space, position, op) if edit == "replace" and op != old_op else None
        child = _first_accepted(children[op], rng, accept, preferred)
        if child is not None:
            diagnostics.positions[position] += 1
            if len(child) <= position or child.instructions[position].op != op:
                diagnostics.landed_elsewhere += 1
            if edit == "insert":
                text = f"insert {position}: {op}"
            else:
                text = f"replace {position}: {old_op} -> {op}" + (" (new operands)" if op == old_op else "")
            return child, text
        diagnostics.ops_without_new_child += 1
        options.remove(op)
    return None


def _available_edits(program: Program, space: SearchSpace) -> dict[str, list[int]]:
    length = len(program)
    edits = {"replace": list(range(length))}
    if length < space.max_program_length:
        edits["insert"] = list(range(length + 1))
    if length >= 2:
        edits["delete"] = list(range(length))
    return edits


def intra_layer_mutation(
    parent: Architecture,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    accept: Acceptance,
    edits: int = 1,
    diagnostics: MutationDiagnostics | None = None,
    keys: Sequence[str] | None = None,
) -> Mutation | None:
    """``edits`` successive edits of one attention layer's program (module doc). The final child must be
    accepted (``accept(key, architecture)``: new and within budgets); intermediate ones only differ from the
    program before them. An edit that fails is replaced by another (layer, edit, position) until none is
    left. None if ``parent`` has no attention layer or no edit gives an acceptable child. ``keys``: the
    parent's layer keys, when the caller has them."""
    diagnostics = diagnostics if diagnostics is not None else MutationDiagnostics()
    keys = list(keys) if keys is not None else [layer_key(layer) for layer in parent]
    candidates = {
        index: _available_edits(parse_program(layer["program"]), space)
        for index, layer in enumerate(parent)
        if layer["type"] == "attention"
    }
    while candidates:
        index = rng.choice(sorted(candidates))
        edit = rng.choice(sorted(candidates[index]))
        position = rng.choice(candidates[index][edit])
        candidates[index][edit].remove(position)
        if not candidates[index][edit]:
            del candidates[index][edit]
            if not candidates[index]:
                del candidates[index]
        diagnostics.intra_attempts += 1
        child = _edit_layer(parent, index, keys, edit, position, space, guide, rng, accept, edits, diagnostics)
        if child is not None:
            diagnostics.intra_edits += 1
            diagnostics.edits[edit] += 1
            return child
    return None


def _edit_layer(
    parent: Architecture,
    index: int,
    keys: list[str],
    edit: str,
    position: int,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    accept: Acceptance,
    edits: int,
    diagnostics: MutationDiagnostics,
) -> Mutation | None:
    """The first edit at (``edit``, ``position``) of layer ``index``, then ``edits - 1`` further random edits."""
    program = parse_program(parent[index]["program"])

    def architecture_with(child: Program) -> tuple[str, Architecture]:
        layer = {"type": "attention", "program": child.to_json()}
        return key_from_layer_keys([*keys[:index], layer_key(layer), *keys[index + 1 :]]), _replace_layer(parent, index, layer)

    def accept_final(child: Program) -> bool:
        return accept(*architecture_with(child))

    def differs(before: Program) -> Callable[[Program], bool]:
        return lambda child: child != before  # canonical programs: equal values are the same program

    descriptions = []
    plan = [(edit, position)]
    for step in range(edits):
        is_last = step == edits - 1
        if step > 0:
            available = _available_edits(program, space)
            kind = rng.choice(sorted(available))
            plan.append((kind, rng.choice(available[kind])))
        kind, where = plan[-1]
        done = _edit_program(program, kind, where, space, guide, rng, accept_final if is_last else differs(program), diagnostics)
        if done is None:
            return None
        program, description = done
        descriptions.append(description)
    key, architecture = architecture_with(program)
    return Mutation(architecture, f"layer {index}: {'; '.join(descriptions)}", key)


# ---------------------------------------------------------------------------------------------------------
# A child: inter-layer, then intra-layer (Algorithm 1, lines 6-7).
# ---------------------------------------------------------------------------------------------------------


def mutate(
    parent: Architecture,
    space: SearchSpace,
    guide: MutationGuide,
    rng: random.Random,
    accept: Acceptance,
    edits: int = 1,
    max_attempts: int = 100,
    diagnostics: MutationDiagnostics | None = None,
    dead_ends: set[str] | None = None,
) -> Mutation:
    """One child of ``parent``: an inter-layer mutation, then an intra-layer mutation of its result. When
    the result has no attention layer the child is the inter-layer mutation alone (if accepted); when the
    space has no inter-layer move, the intra-layer mutation alone. Always valid, canonical and accepted;
    raises :class:`SearchSpaceError` after ``max_attempts`` inter-layer draws without an accepted child.

    ``dead_ends``: keys of inter-layer results whose every single-edit intra-layer child was refused; they
    are skipped, and results found to be such are added. Valid for as long as ``accept`` refuses at least
    what it refused (a generation's known architectures only grow), so a caller may share it between the
    children of one generation: in a small space, where parents' neighbourhoods run out, this saves
    searching the same exhausted neighbourhood again and again."""
    diagnostics = diagnostics if diagnostics is not None else MutationDiagnostics()
    dead_ends = dead_ends if dead_ends is not None and edits == 1 else set()
    parent_keys = [layer_key(layer) for layer in parent]
    for _ in range(max_attempts):
        inter = inter_layer_mutation(parent, space, guide, rng)
        base, keys = parent, parent_keys
        if inter is not None:
            base = inter.architecture
            keys = [key if old == new else layer_key(new) for key, old, new in zip(parent_keys, parent, base)]
        base_key = key_from_layer_keys(keys)
        inter_text = inter.description if inter is not None else "none (no inter-layer move in this space)"
        if base_key in dead_ends:
            pass
        elif any(layer["type"] == "attention" for layer in base):
            intra = intra_layer_mutation(base, space, guide, rng, accept, edits, diagnostics, keys)
            if intra is not None:
                diagnostics.children += 1
                return Mutation(intra.architecture, f"inter: {inter_text}; intra: {intra.description}", intra.key)
            dead_ends.add(base_key)
        elif inter is not None and accept(base_key, base):
            diagnostics.children += 1
            return Mutation(base, f"inter: {inter_text}; intra: none (no attention layer)", base_key)
        diagnostics.redrawn_children += 1
    raise SearchSpaceError(f"no new valid child of this architecture in {max_attempts} attempts: {parent!r:.200}")
