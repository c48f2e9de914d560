"""Attention programs as data (SPEC §2): parsing, printing, validity, canonical form, the op table, fused plans."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import (
    MALFORMED_PROGRAMS,
    SPEC_PROGRAMS,
    draw_instruction,
    fused_form_programs,
    valid_programs,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_autobert_zero import (
    OPS,
    Program,
    ProgramError,
    canonical_program,
    fused_attention_plan,
    infer_shapes,
    parse_program,
    program_key,
    validate_program,
)
from modeling_autobert_zero.attention_programs import FusedAttentionPlan, Instruction


SEQ_LEN, HEAD_DIM = 5, 3  # distinct sizes, so a value with its axes swapped cannot pass for the right shape
AXIS_SIZES = {"n": SEQ_LEN, "d": HEAD_DIM}


def evaluate(program: Program, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Every instruction's value, computed straight from the op table (no padding, no kernels)."""
    values: list[torch.Tensor] = []
    for instruction in program.instructions:
        operands = [inputs[arg] if isinstance(arg, str) else values[arg] for arg in instruction.args]
        values.append(OPS[instruction.op].function(*operands, HEAD_DIM))
    return values


def random_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, 2, SEQ_LEN, HEAD_DIM, generator=generator, dtype=torch.float64) for name in "QKVP"}


def renumber(program: Program, order: list[int]) -> Program:
    """The same DAG with its instructions listed in ``order`` (a topological order of the old indices)."""
    new_index = {old: new for new, old in enumerate(order)}
    return Program(
        tuple(
            Instruction(
                program.instructions[old].op,
                tuple(arg if isinstance(arg, str) else new_index[arg] for arg in program.instructions[old].args),
            )
            for old in order
        )
    )


# ---------------------------------------------------------------------------------------------------------
# Printing and parsing.
# ---------------------------------------------------------------------------------------------------------


@given(valid_programs())
def test_instruction_list_round_trips_through_json(program):
    assert parse_program(program.to_json()) == program
    assert parse_program(json.loads(json.dumps(program.to_json()))) == program


@given(valid_programs())
def test_printed_expression_parses_back_to_itself(program):
    expression = program.to_expression()
    assert parse_program(expression).to_expression() == expression
    # the expression repeats shared values; the canonical form merges them again
    assert canonical_program(parse_program(expression)) == canonical_program(program)


def test_expression_parser_ignores_whitespace():
    compact = parse_program(SPEC_PROGRAMS["bert"])
    spaced = parse_program(" matmul ( softmax( scale(matmul( Q ,transpose(K)))) ,\n\tV ) ")
    assert spaced == compact


def test_expression_becomes_instructions_in_post_order():
    assert parse_program(SPEC_PROGRAMS["bert"]).to_json() == [
        {"op": "transpose", "args": ["K"]},
        {"op": "matmul", "args": ["Q", 0]},
        {"op": "scale", "args": [1]},
        {"op": "softmax", "args": [2]},
        {"op": "matmul", "args": [3, "V"]},
    ]


@given(st.text(alphabet="QKVPX(), _negaddmultscoyl\n", max_size=60))
def test_parser_answers_any_text_with_a_program_or_a_program_error(text):
    try:
        parse_program(text)
    except ProgramError:
        pass


# ---------------------------------------------------------------------------------------------------------
# Validity (SPEC §2, rules 1-6).
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MALFORMED_PROGRAMS))
def test_malformed_program_is_rejected_naming_the_instruction(name):
    source, instruction, expected_text = MALFORMED_PROGRAMS[name]
    with pytest.raises(ProgramError) as raised:
        validate_program(parse_program(source))
    message = str(raised.value)
    assert expected_text in message
    if instruction is not None:
        assert raised.value.instruction == instruction
        assert re.search(rf"\binstruction {instruction}\b", message)


def test_program_error_is_a_value_error():
    assert issubclass(ProgramError, ValueError)


def test_program_may_read_four_inputs_and_its_length_limit_is_configurable():
    four_inputs = parse_program("matmul(softmax(scale(matmul(add(Q, P), transpose(K)))), V)")
    assert validate_program(four_inputs).inputs_read() == ("Q", "K", "V", "P")
    long_program = MALFORMED_PROGRAMS["too_long"][0]
    validate_program(parse_program(long_program), max_program_length=19)
    with pytest.raises(ProgramError, match="max_program_length=18"):
        validate_program(parse_program(long_program), max_program_length=18)


@given(valid_programs())
def test_validate_returns_the_canonical_form(program):
    assert validate_program(program) == canonical_program(program)


@given(valid_programs())
def test_inferred_shapes_match_the_tensors_the_op_table_computes(program):
    values = evaluate(program, random_inputs())
    for value, (rows, cols) in zip(values, infer_shapes(program)):
        assert value.shape[-2:] == (AXIS_SIZES[rows], AXIS_SIZES[cols])


# ---------------------------------------------------------------------------------------------------------
# Canonical form.
# ---------------------------------------------------------------------------------------------------------


@given(valid_programs())
def test_canonical_form_is_idempotent_and_has_no_dead_instructions(program):
    canonical = canonical_program(program)
    assert canonical_program(canonical) == canonical
    read = {arg for instruction in canonical.instructions for arg in instruction.args if not isinstance(arg, str)}
    assert read == set(range(len(canonical) - 1))
    assert len({instruction for instruction in canonical.instructions}) == len(canonical)  # no repeated work


@given(valid_programs())
def test_canonical_form_computes_the_same_function(program):
    inputs = random_inputs()
    torch.testing.assert_close(evaluate(canonical_program(program), inputs)[-1], evaluate(program, inputs)[-1])


@given(valid_programs(), st.data())
def test_canonical_form_ignores_dead_instructions(program, data):
    position = data.draw(st.integers(0, len(program) - 1), label="position")
    shapes = infer_shapes(program)
    earlier = [(name, ("n", "d")) for name in "QKVP"] + [(index, shapes[index]) for index in range(position)]
    dead, _ = draw_instruction(data.draw, earlier)
    instructions = program.to_json()
    for instruction in instructions[position:]:
        instruction["args"] = [
            arg + 1 if isinstance(arg, int) and arg >= position else arg for arg in instruction["args"]
        ]
    with_dead_code = parse_program(instructions[:position] + [dead] + instructions[position:])

    assert canonical_program(with_dead_code) == canonical_program(program)
    assert program_key(with_dead_code) == program_key(program)
    assert validate_program(with_dead_code, max_program_length=len(with_dead_code)) == validate_program(program)


@given(valid_programs(), st.data())
def test_canonical_form_ignores_instruction_order(program, data):
    output = len(program) - 1
    dependencies = [
        {arg for arg in instruction.args if not isinstance(arg, str)} for instruction in program.instructions
    ]
    placed: list[int] = []
    while len(placed) < output:
        ready = [i for i in range(output) if i not in placed and dependencies[i] <= set(placed)]
        placed.append(data.draw(st.sampled_from(ready)))
    reordered = renumber(program, placed + [output])

    assert canonical_program(reordered) == canonical_program(program)
    assert program_key(reordered) == program_key(program)


@given(valid_programs(), st.data())
def test_canonical_form_ignores_the_order_of_add_arguments(program, data):
    swapped = Program(
        tuple(
            Instruction(instruction.op, instruction.args[::-1])
            if instruction.op == "add" and data.draw(st.booleans())
            else instruction
            for instruction in program.instructions
        )
    )
    assert canonical_program(swapped) == canonical_program(program)
    assert program_key(swapped) == program_key(program)


def test_canonical_form_keeps_the_order_of_non_commutative_arguments():
    bert = parse_program(SPEC_PROGRAMS["bert"])
    keys_as_queries = parse_program("matmul(softmax(scale(matmul(K, transpose(Q)))), V)")
    assert program_key(bert) != program_key(keys_as_queries)


def test_canonical_form_merges_repeated_subexpressions():
    repeated = parse_program("matmul(softmax(scale(matmul(add(Q, K), transpose(add(K, Q))))), V)")
    canonical = canonical_program(repeated)
    assert len(canonical) == len(repeated) - 1
    assert [instruction.op for instruction in canonical.instructions].count("add") == 1


# ---------------------------------------------------------------------------------------------------------
# The op table (SPEC §2 table): definitions and gradients.
# ---------------------------------------------------------------------------------------------------------


def _argument_shapes(op: str) -> list[tuple[int, ...]]:
    """Shape-appropriate (batch, heads, rows, cols) arguments with no two axes of equal size."""
    if op == "matmul":
        return [(1, 2, 3, 4), (1, 2, 4, 5)]
    if op in ("cosine", "euclidean"):
        return [(1, 2, 3, 4), (1, 2, 5, 4)]
    return [(1, 2, 3, 4)] * OPS[op].arity


def _arguments(op: str, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    arguments = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in _argument_shapes(op)]
    if op == "euclidean":
        arguments[1] = arguments[1] + 3.0  # rows far apart: the distance is smooth there
    return arguments


def _spec_definition(op: str, arguments: list[torch.Tensor], head_dim: int) -> torch.Tensor:
    """SPEC §2's definitions, written element by element where the library uses a trick."""
    x = arguments[0]
    if op == "neg":
        return -x
    if op == "transpose":
        return x.transpose(-1, -2)
    if op == "scale":
        return x / math.sqrt(head_dim)
    if op == "softmax":
        return torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)
    if op == "logsigmoid":
        return torch.log(1 / (1 + torch.exp(-x)))
    if op == "softsign":
        return x / (1 + x.abs())
    y = arguments[1]
    if op == "add":
        return x + y
    if op == "matmul":
        return torch.einsum("bhak,bhkc->bhac", x, y)
    rows_x, rows_y = x[..., :, None, :], y[..., None, :, :]  # (b, h, a, 1, k), (b, h, 1, b, k)
    if op == "cosine":
        norms = rows_x.norm(dim=-1).clamp_min(1e-6) * rows_y.norm(dim=-1).clamp_min(1e-6)
        return (rows_x * rows_y).sum(-1) / norms
    assert op == "euclidean"
    return torch.sqrt(((rows_x - rows_y) ** 2).sum(-1) + 1e-6)


def test_op_table_has_exactly_the_spec_ops():
    assert set(OPS) == {
        "neg", "transpose", "scale", "softmax", "logsigmoid", "softsign", "add", "matmul", "cosine", "euclidean"
    }
    assert {op: spec.arity for op, spec in OPS.items() if spec.arity == 2} == {
        "add": 2, "matmul": 2, "cosine": 2, "euclidean": 2
    }


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_matches_its_spec_definition(op):
    arguments = _arguments(op)
    torch.testing.assert_close(OPS[op].function(*arguments, 4), _spec_definition(op, arguments, 4))


def test_euclidean_adds_its_epsilon_to_tiny_distances():
    rows = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    nearby = rows.clone()
    nearby[..., 0] += 5e-4  # squared distance 2.5e-7, below the epsilon
    distances = OPS["euclidean"].function(rows, torch.cat([rows, nearby], dim=-2), 4)
    identical, close = distances[..., :3].diagonal(dim1=-2, dim2=-1), distances[..., 3:].diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(identical, torch.full((1, 1, 3), math.sqrt(1e-6), dtype=torch.float64))
    torch.testing.assert_close(close, torch.full((1, 1, 3), math.sqrt(2.5e-7 + 1e-6), dtype=torch.float64))


def test_euclidean_is_accurate_in_float32_for_nearby_rows():
    rows = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))  # unit scale, like projections
    distances = OPS["euclidean"].function(rows, rows, 8)
    exact = _spec_definition("euclidean", [rows.double(), rows.double()], 8)
    torch.testing.assert_close(distances.double(), exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_gradients_match_finite_differences(op):
    arguments = [argument.requires_grad_() for argument in _arguments(op, seed=1)]
    assert torch.autograd.gradcheck(lambda *tensors: OPS[op].function(*tensors, 4), arguments)


# ---------------------------------------------------------------------------------------------------------
# Fused attention plans (SPEC §7, last paragraph).
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPEC_PROGRAMS))
def test_every_spec_program_is_valid_and_runs_fused(name):
    canonical = validate_program(parse_program(SPEC_PROGRAMS[name]))
    plan = fused_attention_plan(canonical)
    assert plan is not None and plan.scale_count == 1


def test_bert_plan_reads_the_raw_projections():
    plan = fused_attention_plan(validate_program(parse_program(SPEC_PROGRAMS["bert"])))
    assert plan == FusedAttentionPlan(query="Q", key="K", value="V", scale_count=1)


@pytest.mark.parametrize(
    "expression, scale_count",
    [
        ("matmul(softmax(matmul(Q, transpose(K))), V)", 0),
        ("matmul(softmax(scale(scale(matmul(Q, transpose(K))))), V)", 2),
    ],
)
def test_plan_counts_the_scales_around_the_scores(expression, scale_count):
    assert fused_attention_plan(validate_program(parse_program(expression))).scale_count == scale_count


@pytest.mark.parametrize(
    "expression",
    [
        "matmul(softmax(cosine(Q, K)), V)",  # scores are not q·kᵀ
        "matmul(softmax(scale(matmul(Q, matmul(transpose(K), matmul(K, transpose(V)))))), V)",  # kᵀ is no transpose
        "matmul(Q, softmax(matmul(transpose(K), V)))",  # softmax over features
        "matmul(softmax(scale(matmul(Q, transpose(K)))), matmul(softmax(scale(matmul(Q, transpose(K)))), V))",
        "matmul(neg(softmax(scale(matmul(Q, transpose(K))))), V)",  # weights are transformed after softmax
    ],
)
def test_other_forms_have_no_fused_plan(expression):
    assert fused_attention_plan(validate_program(parse_program(expression))) is None


@given(fused_form_programs())
def test_generated_fused_form_programs_have_a_plan(program):
    assert fused_attention_plan(canonical_program(program)) is not None


def test_program_strategy_covers_both_execution_paths():
    """The property tests below and in test_modeling.py must exercise the interpreter and the fused path."""
    fused, fused_with_derived_qkv, interpreted = [], [], []

    @settings(max_examples=100)
    @given(valid_programs())
    def sample(program):
        canonical = canonical_program(program)
        plan = fused_attention_plan(canonical)
        (fused if plan else interpreted).append(program)
        if plan and not {plan.query, plan.key, plan.value} <= set("QKVP"):
            fused_with_derived_qkv.append(program)

    sample()
    total = len(fused) + len(interpreted)
    assert len(interpreted) >= total // 5, (len(interpreted), total)
    assert len(fused_with_derived_qkv) >= total // 5, (len(fused_with_derived_qkv), total)
