"""`AutoBertZeroConfig`: every malformed architecture is a clear `ValueError`; presets match SPEC §7 and the paper."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from conftest import BERT_PROGRAM, MALFORMED_PROGRAMS, SPEC_PROGRAMS, TINY_SIZES, layer_stacks, tiny_config
from hypothesis import given
from hypothesis import strategies as st
from transformers import BertConfig, BertModel

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel, canonical_program, parse_program
from modeling_autobert_zero.configuration_autobert_zero import CONV_KERNEL_SIZES


VALID_LAYERS = [
    {"type": "conv", "kernel_size": 3},
    {"type": "conv", "kernel_size": 65},
    {"type": "attention", "program": BERT_PROGRAM},
    {"type": "attention", "program": SPEC_PROGRAMS["layer_2"]},
]
valid_layer_lists = st.lists(st.sampled_from(VALID_LAYERS), max_size=2).map(copy.deepcopy)

# Anything a JSON file (or a careless Python caller) can put where a layer, a program or a field belongs.
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=4)
    | st.binary(max_size=3),
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


def assert_rejected(layers: object, layer_index: int | None, instruction: int | None = None, text: str | None = None):
    """Building a config from ``layers`` raises a ValueError naming the layer (and instruction) at fault."""
    with pytest.raises(ValueError) as raised:
        tiny_config(layers)
    message = str(raised.value)
    if layer_index is None:
        assert message.startswith("layers:"), message
    else:
        assert f"layers[{layer_index}]" in message, message
    if instruction is not None:
        assert re.search(rf"\binstruction {instruction}\b", message), message
    if text is not None:
        assert text in message, message


def _surround(before: list[dict], bad_layer: object, after: list[dict]) -> tuple[list, int]:
    return [*before, bad_layer, *after], len(before)


# ---------------------------------------------------------------------------------------------------------
# Malformed architectures: always a ValueError naming layers[i] (and the instruction), never another type.
# ---------------------------------------------------------------------------------------------------------


@given(st.sampled_from(sorted(MALFORMED_PROGRAMS)), valid_layer_lists, valid_layer_lists)
def test_malformed_program_names_its_layer_and_instruction(name, before, after):
    source, instruction, text = MALFORMED_PROGRAMS[name]
    layers, index = _surround(before, {"type": "attention", "program": copy.deepcopy(source)}, after)
    assert_rejected(layers, index, instruction, text)


@given(
    st.one_of(
        st.integers().filter(lambda size: size not in CONV_KERNEL_SIZES),
        st.sampled_from([None, "7", True, False, 7.5, float("nan"), [7], {"kernel_size": 7}]),
    ),
    valid_layer_lists,
    valid_layer_lists,
)
def test_bad_kernel_size_names_its_layer(kernel_size, before, after):
    layers, index = _surround(before, {"type": "conv", "kernel_size": kernel_size}, after)
    assert_rejected(layers, index, text="kernel_size")


@pytest.mark.parametrize(
    "layer",
    [
        {"type": "attention"},
        {"type": "conv"},
        {"program": BERT_PROGRAM},
        {"kernel_size": 3},
        {"type": "attention", "program": BERT_PROGRAM, "kernel_size": 3},
        {"type": "conv", "kernel_size": 3, "program": BERT_PROGRAM},
        {"type": "conv", "kernel_size": 3, "dilation": 2},
        {"type": "mlp"},
        {"type": None, "kernel_size": 3},
        {"type": ["conv"], "kernel_size": 3},
        {1: "conv"},
        {},
        [{"type": "conv", "kernel_size": 3}],
        "conv",
        None,
        3,
        True,
    ],
)
def test_malformed_layer_entry_names_its_layer(layer):
    layers, index = _surround([VALID_LAYERS[0]], layer, [VALID_LAYERS[2]])
    assert_rejected(layers, index)


@given(junk, valid_layer_lists, valid_layer_lists)
def test_junk_layer_entry_names_its_layer(layer, before, after):
    layers, index = _surround(before, layer, after)
    assert_rejected(layers, index)


@given(junk, valid_layer_lists, valid_layer_lists)
def test_junk_program_names_its_layer(program, before, after):
    layers, index = _surround(before, {"type": "attention", "program": program}, after)
    assert_rejected(layers, index)


@given(
    st.sampled_from(["op", "args", "arg", "instruction"]),
    st.integers(0, 4),
    junk,
    valid_layer_lists,
)
def test_junk_inside_an_instruction_names_its_layer_and_instruction(part, position, value, before):
    instructions = parse_program(BERT_PROGRAM).to_json()
    if part == "instruction":
        instructions[position] = value
    elif part == "arg":
        instructions[position]["args"][0] = value
    else:
        instructions[position][part] = value
    layers, index = _surround(before, {"type": "attention", "program": instructions}, [])
    assert_rejected(layers, index, instruction=position)


@pytest.mark.parametrize("layers", [[], (), "conv", 5, {"type": "conv", "kernel_size": 3}, True])
def test_layers_that_are_not_a_list_of_layers_are_rejected(layers):
    assert_rejected(layers, None)


@pytest.mark.parametrize(
    "field, value, text",
    [
        ("max_program_length", 0, "max_program_length"),
        ("max_program_length", True, "max_program_length"),
        ("max_program_length", "16", "max_program_length"),
        ("num_hidden_layers", 3, "num_hidden_layers=3"),
        ("num_attention_heads", 3, "num_attention_heads=3"),
        ("conv_num_heads", 5, "conv_num_heads=5"),
    ],
)
def test_inconsistent_size_fields_are_rejected(field, value, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        tiny_config([VALID_LAYERS[0], VALID_LAYERS[2]], **{field: value})


def test_max_program_length_applies_to_every_layer():
    five_instructions = {"type": "attention", "program": BERT_PROGRAM}
    tiny_config([five_instructions], max_program_length=5)
    assert_rejected_with_length_4 = pytest.raises(ValueError, match=r"layers\[1\].*max_program_length=4")
    with assert_rejected_with_length_4:
        tiny_config([VALID_LAYERS[0], five_instructions], max_program_length=4)


# ---------------------------------------------------------------------------------------------------------
# Layers as data: every spelling compiles the same, and the config round-trips through JSON.
# ---------------------------------------------------------------------------------------------------------


def test_expression_instruction_list_and_program_object_compile_alike():
    program = parse_program(SPEC_PROGRAMS["layer_10"])
    spellings = [SPEC_PROGRAMS["layer_10"], program.to_json(), program]
    compiled = [tiny_config([{"type": "attention", "program": source}]).compiled_layers[0] for source in spellings]
    assert compiled[0] == compiled[1] == compiled[2]
    assert canonical_program(compiled[0]) == canonical_program(program)


@given(layer_stacks())
def test_config_round_trips_through_json(layers):
    config = tiny_config(layers)
    reloaded = AutoBertZeroConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert reloaded.compiled_layers == config.compiled_layers
    assert reloaded.to_dict() == config.to_dict()
    assert reloaded.num_hidden_layers == len(layers)


def test_program_objects_are_saved_as_instruction_lists(tmp_path):
    program = parse_program(SPEC_PROGRAMS["layer_4"])
    tiny_config([{"type": "attention", "program": program}]).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["layers"] == [{"type": "attention", "program": program.to_json()}]
    (compiled,) = AutoBertZeroConfig.from_pretrained(tmp_path).compiled_layers
    assert canonical_program(compiled) == canonical_program(program)


def test_config_keeps_its_own_copy_of_the_layers():
    """Changing the caller's layer list afterwards must not change what the config saves (or builds)."""
    instructions = parse_program(BERT_PROGRAM).to_json()
    layers = [{"type": "attention", "program": instructions}, {"type": "conv", "kernel_size": 3}]
    config = tiny_config(layers)
    saved_before = copy.deepcopy(config.to_dict()["layers"])

    layers[1]["kernel_size"] = 5
    instructions[0]["args"] = ["V"]  # transpose(V) instead of transpose(K)
    layers.append({"type": "conv", "kernel_size": 7})

    assert config.to_dict()["layers"] == saved_before
    assert AutoBertZeroConfig.from_dict(config.to_dict()).compiled_layers == config.compiled_layers


def test_default_config_is_bert():
    config = AutoBertZeroConfig(num_hidden_layers=2, **TINY_SIZES)
    assert config.layers == [{"type": "attention", "program": BERT_PROGRAM}] * 2


# ---------------------------------------------------------------------------------------------------------
# Presets (SPEC §7; paper Tables 5 and 6).
# ---------------------------------------------------------------------------------------------------------


PAPER_SIZES = {  # paper Table 6: hidden, heads, intermediate, layers
    "small": (256, 4, 1024, 12),
    "base": (768, 12, 3072, 12),
    "large": (1024, 16, 4096, 24),
}
PRESET_NAMES = ["bert", "autobert-zero", "autobert-zero-att-only", "autobert-zero-conv-only"]
AUTOBERT_ZERO_KERNELS = [65, 9, 3, 7, 7, 3]  # layers 1, 3, ..., 11
AUTOBERT_ZERO_PROGRAMS = [  # layers 2, 4, ..., 12
    SPEC_PROGRAMS["layer_2"],
    SPEC_PROGRAMS["layer_4"],
    SPEC_PROGRAMS["layer_6_and_8"],
    SPEC_PROGRAMS["layer_6_and_8"],
    SPEC_PROGRAMS["layer_10"],
    SPEC_PROGRAMS["layer_12"],
]


@pytest.mark.parametrize("size", sorted(PAPER_SIZES))
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_builds_at_the_paper_size(name, size):
    config = AutoBertZeroConfig.from_preset(name, size)
    hidden, heads, intermediate, num_layers = PAPER_SIZES[size]
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (hidden, heads, intermediate)
    assert config.num_hidden_layers == len(config.layers) == num_layers


def test_autobert_zero_base_is_the_searched_backbone_of_figure_7():
    config = AutoBertZeroConfig.from_preset("autobert-zero", "base")
    assert [layer["type"] for layer in config.layers] == ["conv", "attention"] * 6
    assert [layer["kernel_size"] for layer in config.layers[0::2]] == AUTOBERT_ZERO_KERNELS
    expected = [canonical_program(parse_program(program)) for program in AUTOBERT_ZERO_PROGRAMS]
    assert [canonical_program(program) for program in config.compiled_layers[1::2]] == expected


def test_autobert_zero_creates_only_the_projections_its_programs_read():
    config = AutoBertZeroConfig.from_preset("autobert-zero", "base", **TINY_SIZES)
    model = AutoBertZeroModel(config)
    projections = {
        index + 1: sorted(layer.mixer.input_projections)
        for index, layer in enumerate(model.encoder.layer)
        if config.layers[index]["type"] == "attention"
    }
    assert projections == {
        2: ["K", "Q"], 4: ["K", "Q"], 6: ["K", "Q"], 8: ["K", "Q"], 10: ["K", "Q", "V"], 12: ["K", "Q", "V"]
    }


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_large_repeats_every_block_of_base_in_place(name):
    base = AutoBertZeroConfig.from_preset(name, "base").layers
    large = AutoBertZeroConfig.from_preset(name, "large").layers
    block = 2 if name in ("autobert-zero",) else 1  # blocks are (conv, attention) pairs where the stack has them
    expected = []
    for start in range(0, len(base), block):
        expected += base[start : start + block] * 2
    assert large == expected


def test_autobert_zero_large_is_conv_attention_conv_attention_per_block():
    base = AutoBertZeroConfig.from_preset("autobert-zero", "base").layers
    large = AutoBertZeroConfig.from_preset("autobert-zero", "large").layers
    for block in range(6):
        assert large[4 * block : 4 * block + 4] == [base[2 * block], base[2 * block + 1]] * 2


@pytest.mark.parametrize("size", ["base", "large"])
def test_att_only_replaces_each_conv_by_the_attention_after_it(size):
    hybrid = AutoBertZeroConfig.from_preset("autobert-zero", size).layers
    att_only = AutoBertZeroConfig.from_preset("autobert-zero-att-only", size).layers
    assert att_only == [hybrid[index | 1] for index in range(len(hybrid))]
    assert {layer["type"] for layer in att_only} == {"attention"}


@pytest.mark.parametrize("size", ["base", "large"])
def test_conv_only_replaces_each_attention_by_the_conv_before_it(size):
    hybrid = AutoBertZeroConfig.from_preset("autobert-zero", size).layers
    conv_only = AutoBertZeroConfig.from_preset("autobert-zero-conv-only", size).layers
    assert conv_only == [hybrid[index & ~1] for index in range(len(hybrid))]
    assert {layer["type"] for layer in conv_only} == {"conv"}


def test_bert_preset_is_plain_bert():
    config = AutoBertZeroConfig.from_preset("bert", "base")
    assert config.layers == [{"type": "attention", "program": BERT_PROGRAM}] * 12


def _parameter_count(config) -> int:
    with torch.device("meta"):  # counts without allocating ~100M parameters
        model = BertModel(config) if isinstance(config, BertConfig) else AutoBertZeroModel(config)
    return sum(parameter.numel() for parameter in model.parameters())


def test_autobert_zero_base_is_smaller_than_bert_base():
    bert_base = _parameter_count(BertConfig())
    assert _parameter_count(AutoBertZeroConfig.from_preset("bert", "base")) == bert_base
    assert _parameter_count(AutoBertZeroConfig.from_preset("autobert-zero", "base")) < bert_base


def test_preset_overrides_and_unknown_names():
    config = AutoBertZeroConfig.from_preset("autobert-zero", "small", vocab_size=123, hidden_dropout_prob=0.0)
    assert (config.vocab_size, config.hidden_dropout_prob, config.hidden_size) == (123, 0.0, 256)
    with pytest.raises(ValueError, match="autobert-zero-conv-only"):
        AutoBertZeroConfig.from_preset("autobert-zero-v2", "base")
    with pytest.raises(ValueError, match="small"):
        AutoBertZeroConfig.from_preset("autobert-zero", "tiny")


# ---------------------------------------------------------------------------------------------------------
# The config cannot go stale: the architecture is validated whenever it changes, derived fields are derived.
# ---------------------------------------------------------------------------------------------------------


def test_assigning_layers_revalidates_and_recompiles():
    config = tiny_config([VALID_LAYERS[0], VALID_LAYERS[2]])
    config.layers = [VALID_LAYERS[2], VALID_LAYERS[3], VALID_LAYERS[1]]
    assert config.num_hidden_layers == 3 and config.compiled_layers[2] == 65
    assert canonical_program(config.compiled_layers[1]) == canonical_program(parse_program(SPEC_PROGRAMS["layer_2"]))
    model = AutoBertZeroModel(config)
    assert [type(layer.mixer).__name__ for layer in model.encoder.layer] == [
        "AutoBertZeroSearchedAttention", "AutoBertZeroSearchedAttention", "AutoBertZeroLightweightConv"
    ]
    with pytest.raises(ValueError, match=r"layers\[1\] \(conv\): kernel_size"):
        config.layers = [VALID_LAYERS[2], {"type": "conv", "kernel_size": 4}]
    with pytest.raises(ValueError, match=r"layers\[0\] \(attention\)"):
        config.update({"layers": [{"type": "attention", "program": "matmul(Q, K)"}]})
    assert config.num_hidden_layers == 3 and config.to_dict()["layers"][2] == VALID_LAYERS[1]  # unchanged


def test_reading_layers_gives_a_copy_so_the_config_cannot_drift():
    config = tiny_config([VALID_LAYERS[0], VALID_LAYERS[2]])
    layers = config.layers
    layers[0]["kernel_size"] = 4  # invalid, but only in the copy
    layers.append(VALID_LAYERS[1])
    assert config.layers == [VALID_LAYERS[0], VALID_LAYERS[2]] and config.num_hidden_layers == 2
    config.layers = layers[1:]  # assigning is how the architecture changes
    assert config.layers == [VALID_LAYERS[2], VALID_LAYERS[1]]


def test_num_hidden_layers_follows_layers_and_is_saved_for_other_tools(tmp_path):
    config = tiny_config([VALID_LAYERS[0], VALID_LAYERS[2], VALID_LAYERS[1]])
    config.num_hidden_layers = 3  # agreeing is fine
    with pytest.raises(ValueError, match=r"num_hidden_layers=4 disagrees with the 3 entries of layers"):
        config.num_hidden_layers = 4
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["num_hidden_layers"] == 3 == len(saved["layers"])
    # plain transformers tooling reads the field from config.json without this package's classes
    from transformers import PreTrainedConfig

    assert PreTrainedConfig.get_config_dict(str(tmp_path))[0]["num_hidden_layers"] == 3
    assert AutoBertZeroConfig.from_pretrained(tmp_path).num_hidden_layers == 3
    saved["num_hidden_layers"] = 5
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="num_hidden_layers=5 disagrees"):
        AutoBertZeroConfig.from_pretrained(tmp_path)


def test_lowering_max_program_length_revalidates_every_layer():
    config = tiny_config([VALID_LAYERS[0], VALID_LAYERS[2]])
    with pytest.raises(ValueError, match=r"layers\[1\] .*max_program_length=4"):
        config.max_program_length = 4
    assert config.max_program_length == 16
    config.max_program_length = 5


def test_conv_heads_follow_attention_heads_unless_set():
    config = tiny_config([VALID_LAYERS[0]])
    assert config.conv_num_heads == 2 and config.to_dict()["conv_num_heads"] is None
    config.num_attention_heads = 4
    assert config.conv_num_heads == 4
    assert tiny_config([VALID_LAYERS[0]], conv_num_heads=8).conv_num_heads == 8


BAD_FIELDS = [
    ("num_attention_heads", 0, "num_attention_heads: expected a positive integer"),
    ("hidden_size", -32, "hidden_size: expected a positive integer"),
    ("hidden_size", 16.0, "hidden_size: expected a positive integer"),
    ("intermediate_size", True, "intermediate_size: expected a positive integer"),
    ("vocab_size", 0, "vocab_size"),
    ("max_position_embeddings", -1, "max_position_embeddings"),
    ("type_vocab_size", "2", "type_vocab_size"),
    ("conv_num_heads", 0, "conv_num_heads"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob: expected a probability"),
    ("attention_probs_dropout_prob", -0.1, "attention_probs_dropout_prob"),
    ("conv_kernel_dropout", float("nan"), "conv_kernel_dropout"),
    ("classifier_dropout", 2, "classifier_dropout"),
    ("layer_norm_eps", 0, "layer_norm_eps: expected a positive finite number"),
    ("initializer_range", float("inf"), "initializer_range"),
    ("hidden_act", "swishy", "hidden_act"),
    ("sparse_prediction", "yes", "sparse_prediction"),
    ("max_program_length", -3, "max_program_length"),
]


@pytest.mark.parametrize("field, value, text", BAD_FIELDS)
def test_every_field_is_checked_naming_it(field, value, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        tiny_config([VALID_LAYERS[0]], **{field: value})
    config = tiny_config([VALID_LAYERS[0]])
    with pytest.raises(ValueError, match=re.escape(text)):
        setattr(config, field, value)


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"hidden_size": 17}, "hidden_size=17 is not a multiple of num_attention_heads=2"),
        ({"conv_num_heads": 3}, "hidden_size=16 is not a multiple of conv_num_heads=3"),
        ({"pad_token_id": 50}, "pad_token_id: expected a token id in [0, vocab_size=50)"),
        ({"pad_token_id": -1}, "pad_token_id"),
    ],
)
def test_fields_that_disagree_are_rejected_at_construction_and_when_a_model_is_built(fields, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        tiny_config([VALID_LAYERS[0]], **fields)
    config = tiny_config([VALID_LAYERS[0]])
    for name, value in fields.items():  # fields may change one at a time, so this is checked at build time
        setattr(config, name, value)
    with pytest.raises(ValueError, match=re.escape(text)):
        AutoBertZeroModel(config)
