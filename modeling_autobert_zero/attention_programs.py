"""Searched-attention programs: the op table, parsing, shape inference, validity and canonical form.

A program is plain data (SPEC §2): an ordered list of instructions, each applying one op from a fixed
table to earlier values (the input nodes ``Q``, ``K``, ``V``, ``P`` or earlier instruction indices). It is
written either as an instruction list (``[{"op": "transpose", "args": ["K"]}, ...]``) or as an
expression (``matmul(softmax(scale(matmul(Q, transpose(K)))), V)``). Both are parsed here without
``eval``: the expression by a small recursive-descent parser over the op table's names only.

The op table holds each op's tensor function too (one row per op), but nothing here builds tensors:
the search manipulates programs as values and only the model runs them (``modeling_autobert_zero.py``).
Every function returns new values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
import torch.nn.functional as F


INPUT_NAMES = ("Q", "K", "V", "P")
TOKEN_AXIS = "n"
FEATURE_AXIS = "d"
DEFAULT_MAX_PROGRAM_LENGTH = 16

Shape = tuple[str, str]
Operand = Union[str, int]  # an input name or the index of an earlier instruction


class ProgramError(ValueError):
    """An invalid program. ``instruction`` is the index the error is about (``None``: the whole program)."""

    def __init__(self, message: str, instruction: int | None = None):
        super().__init__(message)
        self.instruction = instruction


def _same_shape(shapes: Sequence[Shape]) -> Shape:
    return shapes[0]


def _transposed(shapes: Sequence[Shape]) -> Shape:
    rows, cols = shapes[0]
    return (cols, rows)


def _equal_shapes(shapes: Sequence[Shape]) -> Shape:
    if shapes[0] != shapes[1]:
        raise ProgramError(f"needs two equal shapes, got {_fmt(shapes[0])} and {_fmt(shapes[1])}")
    return shapes[0]


def _matmul_shape(shapes: Sequence[Shape]) -> Shape:
    (rows, inner_left), (inner_right, cols) = shapes
    if inner_left != inner_right:
        raise ProgramError(
            f"needs (a, k) · (k, b) with matching inner axes, got {_fmt(shapes[0])} · {_fmt(shapes[1])}"
        )
    return (rows, cols)


def _row_pair_shape(shapes: Sequence[Shape]) -> Shape:
    (rows_left, width_left), (rows_right, width_right) = shapes
    if width_left != width_right:
        raise ProgramError(
            f"needs x1 (a, k) and x2 (b, k) with rows of equal width, got {_fmt(shapes[0])} and {_fmt(shapes[1])}"
        )
    return (rows_left, rows_right)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One row of the op table: arity, result shape, the axis it reduces over, and its tensor function.

    ``contracted_axis`` returns the axis an op sums or normalises over (``None`` for element-wise ops):
    an op whose contracted axis is the token axis mixes tokens (validity rule 5). ``function`` takes the
    argument tensors, shaped ``(batch, heads, rows, cols)``, and the head size ``d_h``.
    """

    arity: int
    shape_rule: Callable[[Sequence[Shape]], Shape]
    function: Callable[..., torch.Tensor]
    contracted_axis: Callable[[Sequence[Shape]], str | None] = lambda shapes: None
    commutative: bool = False


NORM_EPS = 1e-6


def _cosine(left: torch.Tensor, right: torch.Tensor, head_dim: int) -> torch.Tensor:
    left = F.normalize(left, dim=-1, eps=NORM_EPS)
    right = F.normalize(right, dim=-1, eps=NORM_EPS)
    return torch.matmul(left, right.transpose(-1, -2))


def _euclidean(left: torch.Tensor, right: torch.Tensor, head_dim: int) -> torch.Tensor:
    # direct differences, not ‖a‖² + ‖b‖² − 2a·b: that expansion's float32 rounding is as large as the eps,
    # which makes distances between nearby rows noise (and padding-dependent, through the matmul's shape)
    distances = torch.cdist(left, right, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.sqrt(distances.square() + NORM_EPS)


class _LogSigmoid(torch.autograd.Function):
    """``log σ(x)`` that keeps only its output for backward: ``d/dx log σ(x) = 1 − σ(x) = −expm1(y)``.

    ``F.logsigmoid`` keeps its input and a same-sized buffer, two tensors per use where one suffices;
    searched programs chain these element-wise ops, so in training this halves what they store.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = F.logsigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * -torch.expm1(y)


class _Softsign(torch.autograd.Function):
    """``x / (1 + |x|)`` that keeps only its output: ``d/dx = 1 / (1 + |x|)² = (1 − |y|)²``.

    ``F.softsign`` is composite and keeps its input and two intermediates for backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x / (1 + x.abs())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y.abs()).square()


def _last_axis(shapes: Sequence[Shape]) -> str:
    return shapes[0][1]


OPS: dict[str, OpSpec] = {
    "neg": OpSpec(1, _same_shape, lambda x, head_dim: -x),
    "transpose": OpSpec(1, _transposed, lambda x, head_dim: x.transpose(-1, -2)),
    "scale": OpSpec(1, _same_shape, lambda x, head_dim: x * head_dim**-0.5),
    "softmax": OpSpec(1, _same_shape, lambda x, head_dim: torch.softmax(x, dim=-1), contracted_axis=_last_axis),
    "logsigmoid": OpSpec(1, _same_shape, lambda x, head_dim: _LogSigmoid.apply(x)),
    "softsign": OpSpec(1, _same_shape, lambda x, head_dim: _Softsign.apply(x)),
    "add": OpSpec(2, _equal_shapes, lambda x, y, head_dim: x + y, commutative=True),
    "matmul": OpSpec(2, _matmul_shape, lambda x, y, head_dim: torch.matmul(x, y), contracted_axis=_last_axis),
    "cosine": OpSpec(2, _row_pair_shape, _cosine, contracted_axis=_last_axis),
    "euclidean": OpSpec(2, _row_pair_shape, _euclidean, contracted_axis=_last_axis),
}


def _fmt(shape: Shape) -> str:
    return f"({shape[0]}, {shape[1]})"


@dataclasses.dataclass(frozen=True)
class Instruction:
    op: str
    args: tuple[Operand, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "args": list(self.args)}


@dataclasses.dataclass(frozen=True)
class Program:
    """An immutable attention program. Build it with :func:`parse_program`; it is not validated itself."""

    instructions: tuple[Instruction, ...]

    def __len__(self) -> int:
        return len(self.instructions)

    def to_json(self) -> list[dict[str, Any]]:
        return [instruction.to_json() for instruction in self.instructions]

    def to_expression(self) -> str:
        """The output as one nested expression (dead instructions do not appear; shared ones are repeated)."""
        rendered: list[str] = []
        for instruction in self.instructions:
            operands = [arg if isinstance(arg, str) else rendered[arg] for arg in instruction.args]
            rendered.append(f"{instruction.op}({', '.join(operands)})")
        return rendered[-1]

    def inputs_read(self) -> tuple[str, ...]:
        """The distinct input nodes the program reads, in ``Q, K, V, P`` order."""
        read = {arg for instruction in self.instructions for arg in instruction.args if isinstance(arg, str)}
        return tuple(name for name in INPUT_NAMES if name in read)

    def __str__(self) -> str:
        return self.to_expression()


# ---------------------------------------------------------------------------------------------------------
# Parsing: instruction lists and expressions, both without eval.
# ---------------------------------------------------------------------------------------------------------


def parse_program(source: Any) -> Program:
    """Parse a program from an expression string, an instruction list, or return a :class:`Program` as is.

    Raises :class:`ProgramError` (a ``ValueError``) naming the instruction for anything malformed, whatever
    the input's type: configs come from users and JSON files.
    """
    if isinstance(source, Program):
        return source
    if isinstance(source, str):
        return _parse_expression(source)
    if isinstance(source, (list, tuple)):
        return _parse_instruction_list(source)
    raise ProgramError(
        f"a program must be an expression string or a list of instructions, got {type(source).__name__}"
    )


def _parse_instruction_list(source: Sequence[Any]) -> Program:
    if len(source) == 0:
        raise ProgramError("a program needs at least one instruction, got an empty list")
    instructions = []
    for index, raw in enumerate(source):
        if not isinstance(raw, dict) or set(raw) != {"op", "args"}:
            raise ProgramError(
                f"instruction {index}: expected an object with exactly the keys 'op' and 'args', got {raw!r:.80}",
                index,
            )
        op, args = raw["op"], raw["args"]
        if not isinstance(op, str) or op not in OPS:
            raise ProgramError(f"instruction {index}: unknown op {op!r:.40}; known ops: {', '.join(OPS)}", index)
        if not isinstance(args, (list, tuple)):
            raise ProgramError(f"instruction {index} ({op}): 'args' must be a list, got {args!r:.80}", index)
        arity = OPS[op].arity
        if len(args) != arity:
            raise ProgramError(
                f"instruction {index} ({op}): takes {arity} argument(s), got {len(args)}: {list(args)!r:.80}", index
            )
        for arg in args:
            _check_operand(arg, index, op)
        instructions.append(Instruction(op, tuple(args)))
    return Program(tuple(instructions))


def _check_operand(arg: Any, index: int, op: str) -> None:
    if isinstance(arg, str):
        if arg not in INPUT_NAMES:
            raise ProgramError(
                f"instruction {index} ({op}): unknown input {arg!r:.40}; inputs are {', '.join(INPUT_NAMES)}", index
            )
        return
    if isinstance(arg, bool) or not isinstance(arg, int):
        raise ProgramError(
            f"instruction {index} ({op}): an argument must be an input name or an earlier instruction index, "
            f"got {arg!r:.40}",
            index,
        )
    if not 0 <= arg < index:
        earlier = f"an index in 0..{index - 1} or an input name" if index else "an input name (nothing precedes it)"
        raise ProgramError(
            f"instruction {index} ({op}): argument {arg} does not refer to an earlier instruction; "
            f"expected {earlier}",
            index,
        )


_TOKEN_PATTERN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|(\()|(\))|(,))")


def _parse_expression(text: str) -> Program:
    """Recursive descent over ``name(arg, ...)`` | input name. Instructions come out in post-order."""
    tokens: list[tuple[str, int]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN_PATTERN.match(text, position)
        if match is None:
            raise ProgramError(f"expression: unexpected character {text[position:].lstrip()[:1]!r} at {position}")
        tokens.append((match.group(match.lastindex), match.start(match.lastindex)))
        position = match.end()
    if not tokens:
        raise ProgramError("expression: empty program")

    instructions: list[Instruction] = []
    cursor = 0

    def expect(symbol: str) -> None:
        nonlocal cursor
        if cursor >= len(tokens) or tokens[cursor][0] != symbol:
            found = tokens[cursor][0] if cursor < len(tokens) else "end of expression"
            where = tokens[cursor][1] if cursor < len(tokens) else len(text)
            raise ProgramError(f"expression: expected {symbol!r} at {where}, found {found!r}")
        cursor += 1

    def parse_operand() -> Operand:
        nonlocal cursor
        if cursor >= len(tokens):
            raise ProgramError("expression: unexpected end, expected an op or an input name")
        name, where = tokens[cursor]
        cursor += 1
        if name in INPUT_NAMES:
            return name
        if name not in OPS:
            raise ProgramError(
                f"expression: unknown name {name!r:.40} at {where}; ops: {', '.join(OPS)}; "
                f"inputs: {', '.join(INPUT_NAMES)}",
                len(instructions),
            )
        expect("(")
        args = [parse_operand()]
        while cursor < len(tokens) and tokens[cursor][0] == ",":
            cursor += 1
            args.append(parse_operand())
        expect(")")
        if len(args) != OPS[name].arity:
            raise ProgramError(
                f"instruction {len(instructions)} ({name}): takes {OPS[name].arity} argument(s), got {len(args)}",
                len(instructions),
            )
        instructions.append(Instruction(name, tuple(args)))
        return len(instructions) - 1

    try:
        result = parse_operand()
    except RecursionError:
        raise ProgramError("expression: nested too deeply to be a program") from None
    if cursor != len(tokens):
        raise ProgramError(f"expression: unexpected {tokens[cursor][0]!r} at {tokens[cursor][1]} after the program")
    if isinstance(result, str):
        raise ProgramError(f"expression: a program must apply at least one op, got the bare input {result!r}")
    return Program(tuple(instructions))


# ---------------------------------------------------------------------------------------------------------
# Shapes, validity, canonical form.
# ---------------------------------------------------------------------------------------------------------


def infer_shapes(program: Program) -> list[Shape]:
    """The symbolic shape of every instruction's value. Raises naming the instruction, op and shapes."""
    shapes: list[Shape] = []
    for index, instruction in enumerate(program.instructions):
        arg_shapes = [(TOKEN_AXIS, FEATURE_AXIS) if isinstance(arg, str) else shapes[arg] for arg in instruction.args]
        try:
            shapes.append(OPS[instruction.op].shape_rule(arg_shapes))
        except ProgramError as error:
            raise ProgramError(f"instruction {index} ({instruction.op}): {error}", index) from None
    return shapes


def mixing_instructions(program: Program) -> list[int]:
    """Indices of the instructions that reduce over the token axis (contraction or softmax over ``n``)."""
    shapes = infer_shapes(program)
    mixing = []
    for index, instruction in enumerate(program.instructions):
        arg_shapes = [(TOKEN_AXIS, FEATURE_AXIS) if isinstance(arg, str) else shapes[arg] for arg in instruction.args]
        if OPS[instruction.op].contracted_axis(arg_shapes) == TOKEN_AXIS:
            mixing.append(index)
    return mixing


def validate_program(program: Program, max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH) -> Program:
    """Check SPEC §2's six validity rules and return the program's canonical form.

    Rules 1 (references, arity) hold by construction of :func:`parse_program`; the remaining rules are
    checked on the live (canonical) part of the program, since dead instructions never reach the output.
    """
    last = len(program) - 1
    if len(program) > max_program_length:
        raise ProgramError(
            f"instruction {max_program_length} ({program.instructions[max_program_length].op}): the program has "
            f"{len(program)} instructions, more than max_program_length={max_program_length}",
            max_program_length,
        )
    shapes = infer_shapes(program)
    output_op = program.instructions[last].op
    if shapes[last] != (TOKEN_AXIS, FEATURE_AXIS):
        raise ProgramError(
            f"instruction {last} ({output_op}, the output): the output must have shape (n, d) so heads "
            f"concatenate, got {_fmt(shapes[last])}",
            last,
        )
    canonical = canonical_program(program)
    inputs = canonical.inputs_read()
    if not 2 <= len(inputs) <= 4:
        raise ProgramError(
            f"instruction {last} ({output_op}, the output): a program must read 2, 3 or 4 distinct inputs, "
            f"it reads {len(inputs)} ({', '.join(inputs) or 'none'})",
            last,
        )
    if not mixing_instructions(canonical):
        raise ProgramError(
            f"instruction {last} ({output_op}, the output): the program never mixes tokens (no matmul, cosine, "
            f"euclidean or softmax reduces over the token axis n), so each position would only see itself",
            last,
        )
    return canonical


def canonical_program(program: Program) -> Program:
    """Drop dead instructions, merge common subexpressions, order deterministically.

    The order is a post-order walk from the output, visiting arguments left to right, with the arguments of
    commutative ops (``add``) sorted by their own canonical expression: two programs that compute the same
    expression DAG get the same canonical form and the same :func:`architecture_key`.
    """
    keys: list[str] = []
    for instruction in program.instructions:
        operand_keys = [arg if isinstance(arg, str) else keys[arg] for arg in instruction.args]
        if OPS[instruction.op].commutative:
            operand_keys.sort()
        keys.append(f"{instruction.op}({', '.join(operand_keys)})")

    canonical: list[Instruction] = []
    index_of_key: dict[str, int] = {}

    def emit(position: int) -> Operand:
        key = keys[position]
        if key in index_of_key:
            return index_of_key[key]
        instruction = program.instructions[position]
        args = list(instruction.args)
        if OPS[instruction.op].commutative:
            args.sort(key=lambda arg: arg if isinstance(arg, str) else keys[arg])
        operands = tuple(arg if isinstance(arg, str) else emit(arg) for arg in args)
        canonical.append(Instruction(instruction.op, operands))
        index_of_key[key] = len(canonical) - 1
        return index_of_key[key]

    emit(len(program.instructions) - 1)
    return Program(tuple(canonical))


def architecture_key(program: Program) -> str:
    """A string that is equal for two programs exactly when their canonical forms are equal."""
    return canonical_program(program).to_expression()


@dataclasses.dataclass(frozen=True)
class FusedAttentionPlan:
    """How a program maps onto fused attention: ``softmax(scaling · q kᵀ) · v``.

    ``query``, ``key`` and ``value`` are the instruction indices (or input names) whose values feed the
    fused kernel; ``scale_count`` is how many ``scale`` ops wrap the scores (scaling = d_h ** (-count / 2)).
    """

    query: Operand
    key: Operand
    value: Operand
    scale_count: int


def fused_attention_plan(program: Program) -> FusedAttentionPlan | None:
    """Recognise ``matmul(softmax(scale*(matmul(q, transpose(k)))), v)`` in a canonical program.

    Returns ``None`` when the program has another form, or when ``v`` itself reads the scores or weights
    (then they must be materialised and only the interpreter can run the program).
    """
    instructions = program.instructions
    output = instructions[-1]
    if output.op != "matmul" or isinstance(output.args[0], str):
        return None
    weights_index, value = output.args
    if instructions[weights_index].op != "softmax" or isinstance(instructions[weights_index].args[0], str):
        return None
    scores_index = instructions[weights_index].args[0]
    skipped = {weights_index}
    scale_count = 0
    while instructions[scores_index].op == "scale" and not isinstance(instructions[scores_index].args[0], str):
        skipped.add(scores_index)
        scale_count += 1
        scores_index = instructions[scores_index].args[0]
    scores = instructions[scores_index]
    if scores.op != "matmul" or isinstance(scores.args[1], str):
        return None
    skipped.add(scores_index)
    query, key_transposed = scores.args
    if instructions[key_transposed].op != "transpose":
        return None
    key = instructions[key_transposed].args[0]
    if not isinstance(value, str) and _depends_on(program, value, skipped):
        return None
    return FusedAttentionPlan(query=query, key=key, value=value, scale_count=scale_count)


def _depends_on(program: Program, root: int, targets: set[int]) -> bool:
    stack, seen = [root], set()
    while stack:
        index = stack.pop()
        if index in targets:
            return True
        if index in seen:
            continue
        seen.add(index)
        stack.extend(arg for arg in program.instructions[index].args if not isinstance(arg, str))
    return False
