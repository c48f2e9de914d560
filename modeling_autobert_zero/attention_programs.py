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

import bisect
import contextlib
import dataclasses
import gc
import math
import re
import reprlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Union

import torch
import torch.nn.functional as F
from transformers.utils.import_utils import is_tracing


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


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a program is parsed, checked or canonicalised.

    Those passes allocate several containers per instruction, none of them in a reference cycle; a large
    program (a hostile `config.json`) would otherwise trigger full collections that rescan them all again and
    again, which made validating a 1 MB program 2-3x slower. The collector's state is restored afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _no_contraction(shapes: Sequence[Shape]) -> None:
    return None


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
    contracted_axis: Callable[[Sequence[Shape]], str | None] = _no_contraction
    commutative: bool = False

    @property
    def reduces(self) -> bool:
        return self.contracted_axis is not _no_contraction


NORM_EPS = 1e-6


def _cosine(left: torch.Tensor, right: torch.Tensor, head_dim: int) -> torch.Tensor:
    left = F.normalize(left, dim=-1, eps=NORM_EPS)
    right = F.normalize(right, dim=-1, eps=NORM_EPS)
    return torch.matmul(left, right.transpose(-1, -2))


def _euclidean(left: torch.Tensor, right: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Direct differences, not ‖a‖² + ‖b‖² − 2a·b: that expansion's float32 rounding is as large as the eps,
    which makes distances between nearby rows noise (and padding-dependent, through the matmul's shape).

    Computed in at least float32 (``cdist`` has no half-precision kernels on CPU, and half-precision squares
    of differences lose the eps), then returned in the inputs' dtype. Exporters have no ``cdist``: a traced
    graph writes the same differences out, which materialises a (rows, rows, width) tensor per head.
    """
    dtype = torch.promote_types(left.dtype, torch.float32)
    left_wide, right_wide = left.to(dtype), right.to(dtype)
    if is_tracing(left):
        squared = (left_wide[..., :, None, :] - right_wide[..., None, :, :]).square().sum(-1)
    else:
        squared = torch.cdist(left_wide, right_wide, compute_mode="donot_use_mm_for_euclid_dist").square()
    return torch.sqrt(squared + NORM_EPS).to(left.dtype)


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


class Instruction(NamedTuple):
    """One op applied to input names or earlier instruction indices (a tuple: cheap to build by the million)."""

    op: str
    args: tuple[Operand, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "args": list(self.args)}


@dataclasses.dataclass(frozen=True)
class Program:
    """An immutable attention program. Build it with :func:`parse_program`; it is not validated itself."""

    instructions: tuple[Instruction, ...]

    def __deepcopy__(self, memo: dict) -> "Program":
        return self  # immutable: a config holding programs copies in constant time

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
# Parsing: instruction lists and expressions, both without eval and without recursion.
# ---------------------------------------------------------------------------------------------------------


class _BoundedRepr(reprlib.Repr):
    """``repr`` for error messages about untrusted values: bounded in depth, width and integer size.

    Plain ``repr`` of a config value can recurse without limit (nested lists) or refuse to print (an integer
    of more than 4300 digits), so an error message about bad input could itself fail.
    """

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxstring, self.maxother = 3, 4, 4, 4, 40, 40

    def repr_int(self, value: int, level: int) -> str:
        if value.bit_length() > 64:
            return f"<an integer of {value.bit_length()} bits>"
        return repr(value)


_BOUNDED_REPR = _BoundedRepr()


def shown(value: Any) -> str:
    """A short, always printable rendering of an untrusted value for an error message."""
    return _BOUNDED_REPR.repr(value)


@without_cycle_collection()
def parse_program(source: Any) -> Program:
    """Parse a program from an expression string, an instruction list, or return a :class:`Program` as is.

    Raises :class:`ProgramError` (a ``ValueError``) naming the instruction for anything malformed, whatever
    the input's type: configs come from users and JSON files. Time and memory are linear in the size of the
    source, however deeply an expression nests.
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


_INSTRUCTION_KEYS = {"op", "args"}


def _parse_instruction_list(source: Sequence[Any]) -> Program:
    if len(source) == 0:
        raise ProgramError("a program needs at least one instruction, got an empty list")
    instructions = []
    for index, raw in enumerate(source):
        if not isinstance(raw, dict) or raw.keys() != _INSTRUCTION_KEYS:
            raise ProgramError(
                f"instruction {index}: expected an object with exactly the keys 'op' and 'args', got {shown(raw)}",
                index,
            )
        op, args = raw["op"], raw["args"]
        if not isinstance(op, str) or op not in OPS:
            raise ProgramError(f"instruction {index}: unknown op {shown(op)}; known ops: {', '.join(OPS)}", index)
        if not isinstance(args, (list, tuple)):
            raise ProgramError(f"instruction {index} ({op}): 'args' must be a list, got {shown(args)}", index)
        arity = OPS[op].arity
        if len(args) != arity:
            raise ProgramError(
                f"instruction {index} ({op}): takes {arity} argument(s), got {len(args)}: {shown(list(args))}", index
            )
        for arg in args:
            if not ((type(arg) is int and 0 <= arg < index) or (type(arg) is str and arg in INPUT_NAMES)):
                _check_operand(arg, index, op)
        instructions.append(Instruction(op, tuple(args)))
    return Program(tuple(instructions))


def _check_operand(arg: Any, index: int, op: str) -> None:
    if isinstance(arg, str):
        if arg not in INPUT_NAMES:
            raise ProgramError(
                f"instruction {index} ({op}): unknown input {shown(arg)}; inputs are {', '.join(INPUT_NAMES)}", index
            )
        return
    if isinstance(arg, bool) or not isinstance(arg, int):
        raise ProgramError(
            f"instruction {index} ({op}): an argument must be an input name or an earlier instruction index, "
            f"got {shown(arg)}",
            index,
        )
    if not 0 <= arg < index:
        earlier = f"an index in 0..{index - 1} or an input name" if index else "an input name (nothing precedes it)"
        raise ProgramError(
            f"instruction {index} ({op}): argument {shown(arg)} does not refer to an earlier instruction; "
            f"expected {earlier}",
            index,
        )


# an op call's opening ``name(``, a name, a punctuation mark, or any other non-space character (an error)
_TOKEN_PATTERN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\s*\(|[A-Za-z_][A-Za-z_0-9]*|[(),]|\S")
_EXPECTED = {0: "an op or an input name", 2: "',' or ')'"}


def _expression_error(text: str, token: str | None, number: int, expecting: int) -> ProgramError:
    """The error for token ``number`` (``None``: the end) of an expression, with its character offset."""
    if token is None:
        return ProgramError(f"expression: unexpected end at {len(text)}, expected {_EXPECTED[expecting]}")
    where = next(match.start() for count, match in enumerate(_TOKEN_PATTERN.finditer(text)) if count == number)
    if expecting == 3:
        return ProgramError(f"expression: unexpected {shown(token)} at {where} after the program")
    if len(token) == 1 and token in "(),":
        return ProgramError(f"expression: expected {_EXPECTED[expecting]} at {where}, found {token!r}")
    name = token[:-1].rstrip() if token.endswith("(") else token
    if not (name[0].isalpha() or name[0] == "_"):
        return ProgramError(f"expression: unexpected character {token!r} at {where}")
    if expecting == 0 and name in OPS:
        return ProgramError(f"expression: expected '(' after {name!r} at {where}")
    if expecting == 0:
        return ProgramError(
            f"expression: unknown name {shown(name)} at {where}; ops: {', '.join(OPS)}; inputs: {', '.join(INPUT_NAMES)}"
        )
    return ProgramError(f"expression: expected {_EXPECTED[expecting]} at {where}, found {shown(token)}")


def _parse_expression(text: str) -> Program:
    """``name(arg, ...)`` | input name, with an explicit stack. Instructions come out in post-order.

    An explicit stack instead of recursive descent: an expression nested a million levels deep parses in
    linear time (and is then judged by the program rules, its length first, like any other).
    """
    tokens = _TOKEN_PATTERN.findall(text)
    if not tokens:
        raise ProgramError("expression: empty program")
    arity = {op: spec.arity for op, spec in OPS.items()}
    instructions: list[Instruction] = []
    # The ops whose ')' has not come yet, innermost last, and where each one's arguments start in the flat
    # list of pending arguments (flat lists of strings and integers: no container per nesting level).
    open_ops: list[str] = []
    open_starts: list[int] = []
    pending: list[Operand] = []
    after_operand = False  # False: an operand must come next; True: ',' or ')'
    for number, token in enumerate(tokens):
        if after_operand:
            if token == ")":
                op = open_ops.pop()
                count = len(pending) - open_starts.pop()
                if count != arity[op]:
                    raise ProgramError(
                        f"instruction {len(instructions)} ({op}): takes {arity[op]} argument(s), got {count}",
                        len(instructions),
                    )
                if count == 1:
                    instructions.append(Instruction(op, (pending.pop(),)))
                else:
                    second = pending.pop()
                    instructions.append(Instruction(op, (pending.pop(), second)))
                if not open_ops:
                    break
                pending.append(len(instructions) - 1)
            elif token == ",":
                after_operand = False
            else:
                raise _expression_error(text, token, number, 2)
        elif token[-1] == "(":
            op = token[:-1].rstrip()
            if op not in arity:
                raise _expression_error(text, token, number, 0)
            open_ops.append(op)
            open_starts.append(len(pending))
        elif token in INPUT_NAMES:
            if not open_ops:
                if len(tokens) > 1:
                    raise _expression_error(text, tokens[1], 1, 3)
                raise ProgramError(f"expression: a program must apply at least one op, got the bare input {token!r}")
            pending.append(token)
            after_operand = True
        else:
            raise _expression_error(text, token, number, 0)
    else:
        raise _expression_error(text, None, len(tokens), 2 if after_operand else 0)
    if number + 1 < len(tokens):
        raise _expression_error(text, tokens[number + 1], number + 1, 3)
    return Program(tuple(instructions))


# ---------------------------------------------------------------------------------------------------------
# Shapes, validity, canonical form. Every pass is one loop over the instructions: no recursion, no strings
# that grow with the number of paths through the program (shared values stay shared).
# ---------------------------------------------------------------------------------------------------------


def infer_shapes(program: Program) -> list[Shape]:
    """The symbolic shape of every instruction's value. Raises naming the instruction, op and shapes."""
    shapes: list[Shape] = []
    row = (TOKEN_AXIS, FEATURE_AXIS)
    for index, (op, args) in enumerate(program.instructions):
        arg_shapes = [row if type(arg) is str else shapes[arg] for arg in args]
        try:
            shapes.append(OPS[op].shape_rule(arg_shapes))
        except ProgramError as error:
            raise ProgramError(f"instruction {index} ({op}): {error}", index) from None
    return shapes


def mixing_instructions(program: Program) -> list[int]:
    """Indices of the instructions that reduce over the token axis (contraction or softmax over ``n``)."""
    return list(_mixing(program, infer_shapes(program)))


def _mixing(program: Program, shapes: list[Shape]) -> Iterator[int]:
    row = (TOKEN_AXIS, FEATURE_AXIS)
    for index, (op, args) in enumerate(program.instructions):
        spec = OPS[op]
        if spec.reduces and spec.contracted_axis([row if type(arg) is str else shapes[arg] for arg in args]) == TOKEN_AXIS:
            yield index


def live_instructions(program: Program) -> list[bool]:
    """Per instruction, whether its value reaches the output (one backward pass)."""
    live = [False] * len(program.instructions)
    live[-1] = True
    for index in range(len(live) - 1, -1, -1):
        if live[index]:
            for arg in program.instructions[index].args:
                if not isinstance(arg, str):
                    live[arg] = True
    return live


_COMMUTATIVE = frozenset(name for name, spec in OPS.items() if spec.commutative)


def _sorted_operands(args: tuple[Operand, Operand]) -> tuple[Operand, Operand]:
    """The two operands in a fixed order (input names first), so ``add(a, b)`` and ``add(b, a)`` are one value."""
    first, second = args
    if type(first) is type(second):
        return args if first <= second else (second, first)
    return args if type(first) is str else (second, first)


@without_cycle_collection()
def compact_program(program: Program, live: list[bool] | None = None) -> Program:
    """The instructions that reach the output, repeated subexpressions merged, in their written order.

    Computes the same function as ``program`` with no dead or repeated work, in linear time; unlike
    :func:`canonical_program` its order follows the source, so two spellings of one architecture may list
    their instructions differently.
    """
    if live is None:
        live = live_instructions(program)
    new_index = [0] * len(program.instructions)
    index_of: dict[tuple, int] = {}  # (op, *operands), commutative operands in a fixed order → compacted index
    compacted: list[Instruction] = []
    for index, (op, args) in enumerate(program.instructions):
        if not live[index]:
            continue
        operands = tuple([arg if type(arg) is str else new_index[arg] for arg in args])
        identity = (op, *(_sorted_operands(operands) if op in _COMMUTATIVE else operands))
        known = index_of.get(identity)
        if known is None:
            known = index_of[identity] = len(compacted)
            compacted.append(Instruction(op, operands))
        new_index[index] = known
    return Program(tuple(compacted))


@without_cycle_collection()
def check_program(program: Program, max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH) -> None:
    """Check SPEC §2's six validity rules; raise a :class:`ProgramError` naming the instruction if one fails.

    Rules 1 (references, arity) hold by construction of :func:`parse_program`; shapes are checked on every
    instruction, the remaining rules on the live part, since dead instructions never reach the output. This
    is what a config runs on every layer, so a `config.json` from anywhere is judged in time linear in its size
    (a model built from it runs :func:`compact_program` of each program).
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
    live = live_instructions(program)
    inputs = {arg for index, (_, args) in enumerate(program.instructions) if live[index] for arg in args if type(arg) is str}
    if not 2 <= len(inputs) <= 4:
        raise ProgramError(
            f"instruction {last} ({output_op}, the output): a program must read 2, 3 or 4 distinct inputs, "
            f"it reads {len(inputs)} ({', '.join(name for name in INPUT_NAMES if name in inputs) or 'none'})",
            last,
        )
    if not any(live[index] for index in _mixing(program, shapes)):
        raise ProgramError(
            f"instruction {last} ({output_op}, the output): the program never mixes tokens (no matmul, cosine, "
            f"euclidean or softmax reduces over the token axis n), so each position would only see itself",
            last,
        )


def validate_program(program: Program, max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH) -> Program:
    """Check SPEC §2's six validity rules (see :func:`check_program`) and return the canonical form."""
    check_program(program, max_program_length)
    return canonical_program(program)


# The canonical order of values is the order of their printed expressions as strings (SPEC §2 canonical form,
# as first implemented). No name is a prefix of another and inputs (upper case) sort before ops (lower
# case), so comparing two expressions' strings is comparing names, then first arguments, then second ones.
_NAME_RANK = {name: rank for rank, name in enumerate(sorted((*INPUT_NAMES, *OPS)))}


class _ExpressionOrder:
    """Labels for the values of a program that sort as their printed expressions do, in O(n log n) time.

    Op values are inserted arguments first, each once (equal expressions must be one value); inputs need no
    insertion, since every input name sorts before every op expression. A value's place is found by binary
    search over those inserted so far, ordered by (name, argument 1, argument 2), so no expression is ever
    printed: those strings grow exponentially where values are shared. The order is kept in about √n blocks
    of about √n values (an insertion moves at most a block). A value's label is (its block's label, its slot in
    the block), both with wide gaps: a block without a free slot is relabelled evenly (O(√n), at most once per
    ~100 insertions into it) and, when two blocks have no label between them, all block labels are (O(√n), at
    most once per ~64 splits).
    """

    _SLOTS = 1 << 128
    _BLOCK_GAP = 1 << 64

    def __init__(self, expected_size: int):
        self.block_size = max(32, math.isqrt(expected_size))
        self.rank: list[int] = []
        self.first: list[Operand | None] = []
        self.second: list[Operand | None] = []
        self.slot: list[int] = []
        self.block_of: list[list] = []
        self.blocks: list[list] = []  # [block label, [values in order]]
        # inputs: block label 0, slot = rank; "no argument" below everything. Op values have block labels >= 1.
        self._fixed = {name: (0, _NAME_RANK[name]) for name in INPUT_NAMES}
        self._fixed[None] = (-1, 0)

    def label(self, value: Operand | None) -> tuple[int, int]:
        if type(value) is int:
            return self.block_of[value][0], self.slot[value]
        return self._fixed[value]

    def _key(self, value: int) -> tuple:
        first, second = self.first[value], self.second[value]
        block_of, slot = self.block_of, self.slot
        return (
            self.rank[value],
            *((block_of[first][0], slot[first]) if type(first) is int else self._fixed[first]),
            *((block_of[second][0], slot[second]) if type(second) is int else self._fixed[second]),
        )

    def less(self, left: Operand, right: Operand) -> bool:
        return self.label(left) < self.label(right)

    def add(self, name: str, first: Operand | None = None, second: Operand | None = None) -> int:
        """Insert the op value ``name(first, second)`` (arguments: input names or values inserted before,
        ``None`` for none); return it."""
        value = len(self.rank)
        self.rank.append(_NAME_RANK[name])
        self.first.append(first)
        self.second.append(second)
        self.slot.append(0)
        if not self.blocks:
            self.blocks.append([self._BLOCK_GAP, [value]])
            self.block_of.append(self.blocks[0])
            self.slot[value] = self._SLOTS // 2
            return value
        key = self._key(value)
        last_block = self.blocks[-1]
        if key > self._key(last_block[1][-1]):  # a value often sorts after all before it (chains, towers)
            index, block, position = len(self.blocks) - 1, last_block, len(last_block[1])
        else:
            index = max(bisect.bisect_right(self.blocks, key, key=lambda block: self._key(block[1][0])) - 1, 0)
            block = self.blocks[index]
            position = bisect.bisect_right(block[1], key, key=self._key)
        members = block[1]
        members.insert(position, value)
        self.block_of.append(block)
        low = self.slot[members[position - 1]] if position > 0 else 0
        high = self.slot[members[position + 1]] if position + 1 < len(members) else self._SLOTS
        if high - low >= 2:
            self.slot[value] = (low + high) // 2
        else:
            self._spread_slots(members)
        if len(members) > 2 * self.block_size:
            self._split(index)
        return value

    def _spread_slots(self, members: list[int]) -> None:
        step = self._SLOTS // (len(members) + 1)
        for position, member in enumerate(members, start=1):
            self.slot[member] = position * step

    def _split(self, index: int) -> None:
        block = self.blocks[index]
        upper_half = block[1][self.block_size :]
        del block[1][self.block_size :]
        upper = self.blocks[index + 1][0] if index + 1 < len(self.blocks) else block[0] + 2 * self._BLOCK_GAP
        new_block = [(block[0] + upper) // 2, upper_half]
        self.blocks.insert(index + 1, new_block)
        for member in upper_half:
            self.block_of[member] = new_block
        self._spread_slots(block[1])
        self._spread_slots(upper_half)
        if upper - block[0] < 2:
            for position, each in enumerate(self.blocks, start=1):
                each[0] = position * self._BLOCK_GAP


@without_cycle_collection()
def canonical_program(program: Program) -> Program:
    """Drop dead instructions, merge common subexpressions, order deterministically.

    The order is a post-order walk from the output, visiting arguments left to right, with the arguments of
    commutative ops (``add``) sorted by their printed expressions: two programs that compute the same
    expression DAG get the same canonical form and the same :func:`program_key`. Time O(n log n) and memory
    O(n) in the number of instructions, with no recursion: the expressions are ordered without printing them
    (:class:`_ExpressionOrder`).
    """
    compacted = compact_program(program)
    order = _ExpressionOrder(len(compacted))
    arguments: list[tuple[Operand, ...]] = []  # per compacted instruction, in canonical argument order
    for op, args in compacted.instructions:
        if OPS[op].commutative and order.less(args[1], args[0]):
            args = args[::-1]
        arguments.append(args)
        order.add(op, *args)  # compacted instruction i is value i

    # post-order from the output, arguments left to right; compacted instructions are distinct values
    canonical: list[Instruction] = []
    new_index: dict[int, int] = {}
    stack = [len(compacted) - 1]
    while stack:
        index = stack[-1]
        if index in new_index:
            stack.pop()
            continue
        pending = [arg for arg in arguments[index] if not isinstance(arg, str) and arg not in new_index]
        if pending:
            stack.append(pending[0])
            continue
        stack.pop()
        operands = tuple(arg if isinstance(arg, str) else new_index[arg] for arg in arguments[index])
        new_index[index] = len(canonical)
        canonical.append(Instruction(compacted.instructions[index].op, operands))
    return Program(tuple(canonical))


def program_key(program: Program) -> str:
    """A compact string that is equal for two programs exactly when their canonical forms are equal.

    It is the canonical instruction list, one ``op(arg,arg)`` per instruction separated by ``;`` (arguments
    are input names or earlier instruction indices), so its length is linear in the program's.
    """
    return ";".join(
        f"{instruction.op}({','.join(map(str, instruction.args))})"
        for instruction in canonical_program(program).instructions
    )


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
