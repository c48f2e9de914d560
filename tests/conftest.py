"""Shared helpers for the model tests: tiny configs and hypothesis strategies over the search space.

The strategies generate *valid* attention programs (SPEC §2) three ways, so that both execution paths
are exercised: fused-form programs ``matmul(softmax(scale…(matmul(q, transpose(k)))), v)`` with random
``q``/``k``/``v`` sub-programs (run by SDPA/eager kernels), shape-typed random expressions, and random
instruction lists with shared values and dead code (both mostly run by the interpreter).

Hypothesis runs derandomized with no example database, so CI sees the same examples every run. Set
``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples and many more of them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from modeling_autobert_zero import AutoBertZeroConfig, parse_program, validate_program
from modeling_autobert_zero.attention_programs import INPUT_NAMES, OPS, Program, ProgramError
from modeling_autobert_zero.configuration_autobert_zero import CONV_KERNEL_SIZES


# The tests run tiny tensors, where a second intra-op thread only adds synchronisation; on a shared,
# loaded CI machine its spin-waits made the model tests 2-4x slower.
torch.set_num_threads(1)

settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile("explore", max_examples=500, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_DATA = REPOSITORY / "demo_data"
FULL_DATA = REPOSITORY.parent / "shared" / "data"  # the full data sets, beside a checkout that has them (not a clone)


def data_sources(demo: object, full: object) -> dict[str, object]:
    """What a data test checks per source: the bundled demo subset always, the full data too where it exists.

    A test parametrized over these runs on every machine (a fresh clone has only ``demo_data/``) and never
    skips; the full files are checked wherever they sit beside the repository."""
    return {"demo": demo, **({"full": full} if FULL_DATA.is_dir() else {})}


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray instance with 2 CPUs, started once per session (that takes ~10 s). Its workers run offline
    and find the tests' helper modules (``toy_evaluators``) on their PYTHONPATH."""
    import ray

    paths = os.pathsep.join([str(REPOSITORY), str(REPOSITORY / "tests")])
    environment = {"PYTHONPATH": paths, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, runtime_env={"env_vars": environment})
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _remove_script_logging():
    """Scripts run in-process install console and log-file handlers (`training.console.configure_logging`):
    removed after each test, so no test logs to another test's files."""
    yield
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if getattr(handler, "_installed_by_training", False)]:
        root.removeHandler(handler)
        handler.close()


TOKEN, FEATURE = "n", "d"
ROW_SHAPE = (TOKEN, FEATURE)  # the shape of every input node and of a program's output
SAME_SHAPE_UNARY_OPS = ("neg", "scale", "softmax", "logsigmoid", "softsign")
ROW_PAIR_OPS = ("cosine", "euclidean")
MAX_PROGRAM_LENGTH = 16

# SPEC §7's attention programs, written out here so that the tests pin them independently of the presets.
BERT_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"
SPEC_PROGRAMS = {
    "bert": BERT_PROGRAM,
    "layer_2": "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(neg(K))))))), add(Q, K))",
    "layer_4": "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(add(logsigmoid(Q), add(Q, K)))))))), Q)",
    "layer_6_and_8": "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(K)))))), Q)",
    "layer_10": "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), add(softsign(scale(softsign(K))), V)))))), V)",
    "layer_12": "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), V))))), V)",
}

TINY_SIZES = {
    "hidden_size": 16,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "vocab_size": 50,
    "max_position_embeddings": 32,
}


def tiny_config(layers: list[dict], **overrides) -> AutoBertZeroConfig:
    """A config small enough to build and run in milliseconds (hidden 16, 2 heads, head size 8)."""
    return AutoBertZeroConfig(layers=layers, **{**TINY_SIZES, **overrides})


def random_batch(
    config: AutoBertZeroConfig, batch: int = 2, seq_len: int = 6, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Token ids that avoid the pad id, random token types, and a full attention mask."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, config.vocab_size, (batch, seq_len), generator=generator),
        "token_type_ids": torch.randint(0, config.type_vocab_size, (batch, seq_len), generator=generator),
        "attention_mask": torch.ones(batch, seq_len, dtype=torch.long),
    }


def append_padding(inputs: dict[str, torch.Tensor], extra: int, pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """The same batch with ``extra`` padded positions appended to every row."""
    batch = inputs["input_ids"].shape[0]
    return {
        "input_ids": torch.cat([inputs["input_ids"], torch.full((batch, extra), pad_token_id)], dim=1),
        "token_type_ids": torch.cat([inputs["token_type_ids"], torch.zeros(batch, extra, dtype=torch.long)], dim=1),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.zeros(batch, extra, dtype=torch.long)], dim=1),
    }


def is_valid(program: Program) -> bool:
    """Whether ``validate_program`` accepts the program (rules 4-6 are easier to filter than to build in)."""
    try:
        validate_program(program, MAX_PROGRAM_LENGTH)
    except ProgramError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Shape-typed random expressions.
# ---------------------------------------------------------------------------------------------------------


@st.composite
def typed_expressions(draw, shape: tuple[str, str] = ROW_SHAPE, depth: int = 3) -> str:
    """An expression of the given symbolic shape over the inputs, at most ``depth`` ops deep on any path."""
    rows, cols = shape
    if depth <= 0:
        # the cheapest way to reach each shape from the (n, d) inputs
        leaf = draw(st.sampled_from(INPUT_NAMES))
        if shape == ROW_SHAPE:
            return leaf
        if shape == (FEATURE, TOKEN):
            return f"transpose({leaf})"
        other = draw(st.sampled_from(INPUT_NAMES))
        if shape == (TOKEN, TOKEN):
            return f"matmul({leaf}, transpose({other}))"
        return f"matmul(transpose({leaf}), {other})"

    choices = ["unary", "transpose", "add", "matmul", "row_pair"]
    if shape == ROW_SHAPE:
        choices.append("input")
    choice = draw(st.sampled_from(choices))
    below = depth - 1
    if choice == "input":
        return draw(st.sampled_from(INPUT_NAMES))
    if choice == "unary":
        op = draw(st.sampled_from(SAME_SHAPE_UNARY_OPS))
        return f"{op}({draw(typed_expressions(shape, below))})"
    if choice == "transpose":
        return f"transpose({draw(typed_expressions((cols, rows), below))})"
    if choice == "add":
        return f"add({draw(typed_expressions(shape, below))}, {draw(typed_expressions(shape, below))})"
    inner = draw(st.sampled_from((TOKEN, FEATURE)))
    if choice == "matmul":
        left, right = draw(typed_expressions((rows, inner), below)), draw(typed_expressions((inner, cols), below))
        return f"matmul({left}, {right})"
    op = draw(st.sampled_from(ROW_PAIR_OPS))
    left, right = draw(typed_expressions((rows, inner), below)), draw(typed_expressions((cols, inner), below))
    return f"{op}({left}, {right})"


@st.composite
def fused_form_programs(draw) -> Program:
    """``matmul(softmax(scale^s(matmul(q, transpose(k)))), v)`` with random (n, d) sub-programs q, k, v."""
    query, key, value = (draw(typed_expressions(ROW_SHAPE, depth=draw(st.integers(0, 2)))) for _ in range(3))
    scores = f"matmul({query}, transpose({key}))"
    for _ in range(draw(st.integers(0, 2))):
        scores = f"scale({scores})"
    program = parse_program(f"matmul(softmax({scores}), {value})")
    assume(is_valid(program))
    return program


@st.composite
def expression_programs(draw) -> Program:
    """Shape-typed random expressions with an (n, d) result, kept when valid (mostly not fused-form)."""
    expression = draw(typed_expressions(ROW_SHAPE, depth=draw(st.integers(1, 3))))
    assume(expression not in INPUT_NAMES)  # a bare input is no program
    program = parse_program(expression)
    assume(is_valid(program))
    return program


# ---------------------------------------------------------------------------------------------------------
# Random instruction lists: shared values and dead instructions, which expressions cannot write.
# ---------------------------------------------------------------------------------------------------------


def draw_instruction(
    draw, values, result_shape: tuple[str, str] | None = None, mixing_only: bool = False
) -> tuple[dict, tuple[str, str]]:
    """One shape-correct instruction over earlier ``values`` (operand, shape) pairs, and its result shape.

    ``result_shape`` keeps only instructions giving that shape; ``mixing_only`` only those that reduce over
    the token axis. The caller makes sure one exists (an element-wise op of an input always gives (n, d)).
    """
    options = []
    for op, spec in OPS.items():
        if spec.arity == 1:
            for operand, (rows, cols) in values:
                options.append((op, (operand,), [(rows, cols)], (cols, rows) if op == "transpose" else (rows, cols)))
            continue
        for left, (rows, cols) in values:
            for right, (right_rows, right_cols) in values:
                arg_shapes = [(rows, cols), (right_rows, right_cols)]
                if op == "add" and (right_rows, right_cols) == (rows, cols):
                    options.append((op, (left, right), arg_shapes, (rows, cols)))
                elif op == "matmul" and right_rows == cols:
                    options.append((op, (left, right), arg_shapes, (rows, right_cols)))
                elif op in ROW_PAIR_OPS and right_cols == cols:
                    options.append((op, (left, right), arg_shapes, (rows, right_rows)))
    if result_shape is not None:
        options = [option for option in options if option[3] == result_shape]
    if mixing_only:
        options = [option for option in options if OPS[option[0]].contracted_axis(option[2]) == TOKEN]
    op, args, _, result = draw(st.sampled_from(options))
    return {"op": op, "args": list(args)}, result


@st.composite
def instruction_list_programs(draw) -> Program:
    """A random DAG written as an instruction list: values may be reused, some may be dead.

    The output reduces over the token axis by construction (it reads an (n, n) value, made if missing).
    """
    values: list[tuple[object, tuple[str, str]]] = [(name, ROW_SHAPE) for name in INPUT_NAMES]
    instructions = []

    def emit(instruction: dict, shape: tuple[str, str]) -> None:
        values.append((len(instructions), shape))
        instructions.append(instruction)

    for _ in range(draw(st.integers(0, 5))):
        emit(*draw_instruction(draw, values))
    if all(shape != (TOKEN, TOKEN) for _, shape in values):
        emit(*draw_instruction(draw, values, result_shape=(TOKEN, TOKEN)))
    output, _ = draw_instruction(draw, values, result_shape=ROW_SHAPE, mixing_only=True)
    instructions.append(output)
    program = parse_program(instructions)
    assume(is_valid(program))
    return program


def valid_programs() -> st.SearchStrategy[Program]:
    """Valid programs: about half fused-form (most with derived q/k/v), the rest only the interpreter runs."""
    kinds = {"expression": expression_programs(), "instruction list": instruction_list_programs()}
    kinds["fused"] = kinds["fused form"] = fused_form_programs()  # twice: half the draws
    return st.sampled_from(sorted(kinds)).flatmap(kinds.__getitem__)


@st.composite
def layer_stacks(draw, min_layers: int = 1, max_layers: int = 3) -> list[dict]:
    """A config's ``layers``: conv layers and attention layers whose programs are expressions or instruction lists."""
    layers = []
    for _ in range(draw(st.integers(min_layers, max_layers))):
        if draw(st.booleans()):
            layers.append({"type": "conv", "kernel_size": draw(st.sampled_from(CONV_KERNEL_SIZES))})
        else:
            program = draw(valid_programs())
            expression = program.to_expression()
            # an expression repeats shared values, so it can be longer than the instruction list it prints
            fits_as_expression = len(parse_program(expression)) <= MAX_PROGRAM_LENGTH
            source = expression if fits_as_expression and draw(st.booleans()) else program.to_json()
            layers.append({"type": "attention", "program": source})
    return layers


# ---------------------------------------------------------------------------------------------------------
# Malformed programs: each with the instruction index its error must name (None: a whole-program error).
# ---------------------------------------------------------------------------------------------------------


def _chain(op: str, operand: str, times: int) -> str:
    return f"{op}(" * times + operand + ")" * times


MALFORMED_PROGRAMS = {
    # name: (program source, instruction the error names, text the message must contain)
    "unknown_op": ([{"op": "transpose", "args": ["K"]}, {"op": "relu", "args": [0]}], 1, "'relu'"),
    "unknown_op_expression": ("matmul(softmax(relu(matmul(Q, transpose(K)))), V)", None, "'relu'"),
    "op_not_a_string": ([{"op": 3, "args": ["Q"]}], 0, "unknown op"),
    "too_few_arguments": ([{"op": "add", "args": ["Q"]}], 0, "(add): takes 2"),
    "too_many_arguments": ("matmul(softmax(scale(matmul(Q, transpose(K, V)))), V)", 0, "(transpose): takes 1"),
    "self_reference": ([{"op": "neg", "args": ["Q"]}, {"op": "neg", "args": [1]}], 1, "earlier instruction"),
    "self_reference_first": ([{"op": "neg", "args": [0]}], 0, "(neg)"),
    "forward_reference": (
        [{"op": "neg", "args": ["Q"]}, {"op": "add", "args": [0, 2]}, {"op": "neg", "args": ["K"]}],
        1,
        "(add): argument 2",
    ),
    "negative_reference": ([{"op": "neg", "args": ["Q"]}, {"op": "neg", "args": [-1]}], 1, "argument -1"),
    "bool_as_index": ([{"op": "neg", "args": ["Q"]}, {"op": "neg", "args": [True]}], 1, "True"),
    "float_as_index": ([{"op": "neg", "args": ["Q"]}, {"op": "neg", "args": [0.0]}], 1, "0.0"),
    "nested_list_as_argument": ([{"op": "neg", "args": [["Q"]]}], 0, "(neg)"),
    "args_not_a_list": ([{"op": "neg", "args": "Q"}], 0, "'args' must be a list"),
    "extra_instruction_key": ([{"op": "neg", "args": ["Q"], "note": 1}], 0, "exactly the keys"),
    "instruction_not_an_object": ([[{"op": "neg", "args": ["Q"]}]], 0, "exactly the keys"),
    "matmul_inner_axes": ("matmul(softmax(scale(matmul(Q, K))), V)", 0, "(n, d) · (n, d)"),
    "add_shapes": ("matmul(softmax(add(Q, transpose(K))), V)", 1, "(n, d) and (d, n)"),
    "cosine_row_widths": ("matmul(softmax(cosine(Q, transpose(K))), V)", 1, "(cosine)"),
    "output_n_by_n": ("softmax(scale(matmul(Q, transpose(K))))", 3, "got (n, n)"),
    "output_d_by_n": ("transpose(matmul(softmax(scale(matmul(Q, transpose(K)))), V))", 5, "got (d, n)"),
    "one_input": ("matmul(softmax(scale(matmul(Q, transpose(Q)))), Q)", 4, "reads 1"),
    "one_live_input_behind_dead_code": (
        [
            {"op": "neg", "args": ["K"]},
            {"op": "transpose", "args": ["Q"]},
            {"op": "matmul", "args": ["Q", 1]},
            {"op": "softmax", "args": [2]},
            {"op": "matmul", "args": [3, "Q"]},
        ],
        4,
        "reads 1",
    ),
    "unknown_input": ([{"op": "transpose", "args": ["X"]}], 0, "'X'"),
    "lowercase_input": ([{"op": "neg", "args": ["q"]}], 0, "'q'"),
    "unknown_input_expression": ("matmul(softmax(scale(matmul(Q, transpose(X)))), V)", None, "'X'"),
    "no_token_mixing": ("softmax(add(Q, K))", 1, "never mixes tokens"),
    "element_wise_only": ("add(Q, logsigmoid(K))", 1, "never mixes tokens"),
    "too_long": (  # 19 instructions
        f"matmul(softmax(scale(matmul(Q, transpose({_chain('neg', 'K', 14)})))), V)", 16, "max_program_length"
    ),
    "empty_list": ([], None, "at least one instruction"),
    "empty_expression": ("", None, "empty"),
    "bare_input": ("Q", None, "bare input"),
    "trailing_tokens": ("matmul(softmax(scale(matmul(Q, transpose(K)))), V) V", None, "after the program"),
    "python_code": ("__import__('os').system('true')", None, "expression"),
    # no parser depth limit: a deep expression is judged like any other, here by its length
    "nested_deeply": (_chain("neg", "Q", 5000), 16, "has 5000 instructions, more than max_program_length=16"),
    "none": (None, None, "NoneType"),
    "number": (3, None, "int"),
    "bool": (True, None, "bool"),
    "single_instruction_object": ({"op": "neg", "args": ["Q"]}, None, "dict"),
}
