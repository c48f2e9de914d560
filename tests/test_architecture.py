"""The architecture module: one validator, canonical forms that match the frozen algorithm, linear keys, the
`large` rule in one place, and parameter counts that match the model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import BERT_PROGRAM, SPEC_PROGRAMS, TINY_SIZES, layer_stacks, valid_programs
from hypothesis import assume, given
from hypothesis import strategies as st
from legacy_canonical import legacy_architecture_key, legacy_canonical_program

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel, canonical_program, parse_program, program_key
from modeling_autobert_zero.architecture import (
    ArchitectureError,
    ModelDimensions,
    architecture_id,
    architecture_key,
    canonical_architecture,
    compile_layers,
    count_backbone_parameters,
    describe_layer,
    describe_program,
    forward_flops,
    layers_at_size,
    repeat_blocks_in_place,
)
from modeling_autobert_zero.attention_programs import INPUT_NAMES, OPS, Instruction, Program, compact_program
from modeling_autobert_zero.configuration_autobert_zero import ARCHITECTURE_PRESETS
from publishing.scaling import scaled_config
from training.models import pretraining_config


@st.composite
def random_dags(draw, max_length: int = 30) -> Program:
    """Any instruction list (shapes unchecked: canonical forms are defined for every parsed program), with
    shared values, `add(x, x)`, dead code and arguments near and far."""
    instructions = []
    for index in range(draw(st.integers(1, max_length))):
        op = draw(st.sampled_from(sorted(OPS)))
        operands = list(INPUT_NAMES) + list(range(index))
        args = tuple(draw(st.sampled_from(operands)) for _ in range(OPS[op].arity))
        instructions.append(Instruction(op, args))
    return Program(tuple(instructions))


def _expanded_length(program: Program) -> int:
    lengths: list[int] = []
    for instruction in program.instructions:
        lengths.append(len(instruction.op) + 2 + sum(1 if isinstance(a, str) else lengths[a] for a in instruction.args))
    return lengths[-1]


# ---------------------------------------------------------------------------------------------------------
# Canonical forms: identical to the frozen algorithm wherever it terminates.
# ---------------------------------------------------------------------------------------------------------


@given(st.one_of(valid_programs(), random_dags()))
def test_canonical_form_is_the_frozen_algorithms(program):
    assume(_expanded_length(program) < 200_000)  # the frozen algorithm prints every expression in full
    assert canonical_program(program) == legacy_canonical_program(program)


def test_canonical_form_matches_on_programs_with_thousands_of_values():
    """Many values exercise the order's blocks, splits and relabelling; chains keep the old printing cheap."""
    instructions = [Instruction("softsign", ("Q",))]
    for index in range(1, 3000):  # each value sorts *before* the last: every insertion hits the same gap
        instructions.append(Instruction("add", ("K", index - 1)))
        instructions.append(Instruction("neg", (len(instructions) - 1,)))
        instructions.append(Instruction("add", (len(instructions) - 1, len(instructions) - 2)))
    program = Program(tuple(instructions))
    assert canonical_program(program) == legacy_canonical_program(program)


@given(st.one_of(valid_programs(), random_dags()), st.one_of(valid_programs(), random_dags()))
def test_program_key_is_equal_exactly_when_canonical_forms_are(first, second):
    assume(max(_expanded_length(first), _expanded_length(second)) < 200_000)
    same_key = program_key(first) == program_key(second)
    assert same_key == (canonical_program(first) == canonical_program(second))
    assert same_key == (legacy_architecture_key(first) == legacy_architecture_key(second))


def test_keys_and_descriptions_stay_small_where_expressions_explode():
    tower = [{"op": "add", "args": ["K", "Q"]}] + [{"op": "add", "args": [i, i]} for i in range(60)]
    tower += [{"op": "transpose", "args": [60]}, {"op": "matmul", "args": ["Q", 61]}, {"op": "softmax", "args": [62]}]
    tower += [{"op": "matmul", "args": [63, "V"]}]
    layers = [{"type": "attention", "program": tower}]
    # printed as one expression the program would have 2^61 leaves
    assert len(architecture_key(layers)) < 40 * len(tower)
    assert len(describe_layer(layers[0])) < 40 * len(tower)
    assert describe_layer(layers[0]).startswith("0: add(K, Q); 1: add(0, 0)")
    assert describe_program(parse_program(BERT_PROGRAM)) == BERT_PROGRAM
    assert canonical_architecture(layers, max_program_length=len(tower))[0]["program"] == tower


def test_architecture_key_names_layers_and_ignores_spelling():
    spelled = [{"type": "conv", "kernel_size": 9}, {"type": "attention", "program": SPEC_PROGRAMS["layer_10"]}]
    as_list = [spelled[0], {"type": "attention", "program": parse_program(SPEC_PROGRAMS["layer_10"]).to_json()}]
    key = architecture_key(spelled)
    assert key == architecture_key(as_list) == architecture_key(canonical_architecture(spelled))
    assert key.startswith("conv9 | attention:")
    assert architecture_id(spelled) == architecture_id(as_list) and len(architecture_id(spelled)) == 12
    assert architecture_key(spelled[::-1]) != key


# ---------------------------------------------------------------------------------------------------------
# One validator, with the restrictions a search space adds.
# ---------------------------------------------------------------------------------------------------------


def test_validator_narrowed_to_a_search_space():
    bert = {"type": "attention", "program": BERT_PROGRAM}
    conv = {"type": "conv", "kernel_size": 65}
    with pytest.raises(ArchitectureError, match=r"^layers: expected 3 layers, got 2"):
        compile_layers([bert, conv], num_layers=3)
    with pytest.raises(ArchitectureError, match=r"^layers\[1\] \(conv\): kernel_size must be one of \(3, 9\), got 65"):
        compile_layers([bert, conv], kernel_sizes=(3, 9))
    with pytest.raises(ArchitectureError, match=r"^layers\[1\]: layer type 'conv' is not allowed here"):
        compile_layers([bert, conv], layer_types=("attention",))
    with pytest.raises(ArchitectureError, match=r"^layers\[0\] \(attention\): instruction 2 \(scale\): op not allowed"):
        compile_layers([bert, conv], ops=("matmul", "softmax", "transpose"))
    with pytest.raises(ArchitectureError, match=r"^layers\[0\] \(attention\): the program reads \['V'\], not allowed"):
        compile_layers([bert, conv], inputs=("Q", "K"))
    dead_scale = parse_program(BERT_PROGRAM).to_json()
    dead_scale.insert(0, {"op": "softsign", "args": ["P"]})  # dead: reads P with an op outside the space
    for instruction in dead_scale[1:]:
        instruction["args"] = [arg + 1 if isinstance(arg, int) else arg for arg in instruction["args"]]
    compile_layers([{"type": "attention", "program": dead_scale}], ops=("matmul", "softmax", "transpose", "scale"), inputs="QKV")


def test_errors_about_untrusted_values_always_print():
    huge = 10**5000
    deeply_nested: list = []
    for _ in range(100_000):
        deeply_nested = [deeply_nested]
    for layer, text in [
        ({"type": "conv", "kernel_size": huge}, "an integer of 16610 bits"),
        ({"type": "attention", "program": [{"op": "neg", "args": ["Q"]}, {"op": "neg", "args": [huge]}]}, "16610 bits"),
        ({"type": "attention", "program": [{"op": "neg", "args": deeply_nested}]}, "an argument must be"),
        ({"type": "attention", "program": [deeply_nested]}, "instruction 0"),
        (deeply_nested, "layers[0]"),
    ]:
        with pytest.raises(ArchitectureError, match="layers\\[0\\]") as raised:
            compile_layers([layer])
        assert text in str(raised.value) and len(str(raised.value)) < 1000


@given(layer_stacks())
def test_canonical_architecture_is_json_and_idempotent(layers):
    canonical = canonical_architecture(layers)
    assert json.loads(json.dumps(canonical)) == canonical
    assert canonical_architecture(canonical) == canonical
    assert architecture_key(canonical) == architecture_key(layers)


# ---------------------------------------------------------------------------------------------------------
# The `large` rule exists once: presets, training and publishing scale alike.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_PRESETS))
def test_large_is_the_same_everywhere(name):
    layers = ARCHITECTURE_PRESETS[name]()
    preset = AutoBertZeroConfig.from_preset(name, "large")
    assert preset.layers == layers_at_size(layers, "large") == repeat_blocks_in_place(layers)
    assert AutoBertZeroConfig.at_size(layers, "large").layers == preset.layers
    assert pretraining_config("autobert-zero", "large", layers=layers).layers == preset.layers
    assert scaled_config(layers, "large").layers == preset.layers
    assert preset.num_hidden_layers == 2 * len(layers)


def test_small_and_base_keep_the_architecture_and_change_only_widths():
    layers = ARCHITECTURE_PRESETS["autobert-zero"]()
    for size, hidden in (("small", 256), ("base", 768)):
        config = AutoBertZeroConfig.at_size(layers, size, vocab_size=100)
        assert config.layers == layers and config.hidden_size == hidden and config.vocab_size == 100
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        layers_at_size(layers, "huge")


# ---------------------------------------------------------------------------------------------------------
# Costs.
# ---------------------------------------------------------------------------------------------------------


@given(layer_stacks(max_layers=4), st.integers(1, 3))
def test_parameter_count_matches_the_model(layers, conv_heads):
    with_dead_code = copy.deepcopy(layers)
    for layer in with_dead_code:
        if layer["type"] == "attention":  # a dead instruction reading P creates no projection
            program = parse_program(layer["program"]).to_json()
            shifted = [{"op": i["op"], "args": [a + 1 if isinstance(a, int) else a for a in i["args"]]} for i in program]
            layer["program"] = [{"op": "neg", "args": ["P"]}, *shifted]
    config = AutoBertZeroConfig(
        layers=with_dead_code, max_program_length=17, conv_num_heads=(1, 2, 4)[conv_heads - 1],
        **{**TINY_SIZES, "hidden_size": 16}
    )
    with torch.device("meta"):
        model = AutoBertZeroModel(config)
    dims = ModelDimensions.from_config(config)
    assert count_backbone_parameters(with_dead_code, dims) == sum(p.numel() for p in model.parameters())


def test_forward_flops_counts_the_backbone():
    config = AutoBertZeroConfig(layers=[{"type": "attention", "program": BERT_PROGRAM}], **TINY_SIZES)
    model = AutoBertZeroModel(config).eval()
    d, n, ffn = config.hidden_size, 8, config.intermediate_size
    projections = 4 * 2 * n * d * d  # Q, K, V, W_O
    attention = 2 * 2 * n * n * d  # scores and weighted values, all heads
    feed_forward = 2 * 2 * n * d * ffn
    pooler = 2 * d * d
    assert forward_flops(model, n) == projections + attention + feed_forward + pooler


def test_compact_program_drops_dead_code_and_repeats_in_written_order():
    program = parse_program("matmul(softmax(scale(matmul(add(Q, K), transpose(add(K, Q))))), V)")
    compact = compact_program(program)
    assert [instruction.op for instruction in compact.instructions] == [
        "add", "transpose", "matmul", "scale", "softmax", "matmul"
    ]
    assert canonical_program(compact) == canonical_program(program)
