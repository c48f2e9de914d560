"""The search space and mutations: every sample and every child is valid, canonical, new, and plain data."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import BERT_PROGRAM, MALFORMED_PROGRAMS, layer_stacks
from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel, parse_program, validate_program
from modeling_autobert_zero.architecture import (
    ArchitectureError,
    ModelDimensions,
    architecture_key,
    canonical_architecture,
    count_backbone_parameters,
)
from search.mutation import (
    MutationDiagnostics,
    PriorityGuide,
    UniformGuide,
    _kept_arguments_child,
    edit_results,
    inter_layer_mutation,
    intra_layer_mutation,
    mutate,
)
from search.space import SearchSpace, SearchSpaceError, sample_architecture, sample_program
from search.ucb import Observation, OperationPriority


SPACE = SearchSpace(num_layers=4, max_program_length=12)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def assert_valid_and_canonical(architecture, space=SPACE):
    assert space.canonical_architecture(architecture) == architecture  # already canonical: unchanged
    assert AutoBertZeroConfig(layers=architecture, max_program_length=space.max_program_length).layers == architecture
    assert json.loads(json.dumps(architecture)) == architecture  # plain data
    for layer in architecture:
        if layer["type"] == "attention":
            program = parse_program(layer["program"])
            assert validate_program(program, space.max_program_length) == program
            assert set(program.inputs_read()) <= set(space.inputs)
            assert {instruction.op for instruction in program.instructions} <= set(space.ops)
        else:
            assert layer["kernel_size"] in space.kernel_sizes


@given(seeds)
def test_every_sampled_architecture_is_valid_and_canonical(seed):
    architecture = sample_architecture(SPACE, random.Random(seed))
    assert len(architecture) == SPACE.num_layers
    assert_valid_and_canonical(architecture)


@given(seeds)
def test_sampling_respects_a_restricted_space(seed):
    space = SearchSpace(num_layers=2, ops=("transpose", "scale", "softmax", "matmul", "add"), inputs=("Q", "K", "V"), kernel_sizes=(3, 7))
    assert_valid_and_canonical(sample_architecture(space, random.Random(seed)), space)


def known_only(*architectures):
    """An acceptance rule: new means not among ``architectures`` (keys recomputed, to check the mutation's own)."""
    known = {architecture_key(architecture) for architecture in architectures}

    def accept(key, architecture):
        assert key == architecture_key(architecture)  # the key the mutation computed is the architecture's
        return key not in known

    return accept


def some_priority(space, architectures):
    observations = [Observation.of(architecture, float(i)) for i, architecture in enumerate(architectures)]
    return OperationPriority.from_observations(observations, space.ops, space.kernel_sizes, space.num_layers)


@given(seeds, st.sampled_from(["uniform", "priority"]), st.integers(1, 3))
def test_every_child_is_valid_canonical_new_and_made_inter_then_intra(seed, guide_kind, edits):
    rng = random.Random(seed)
    parent = sample_architecture(SPACE, rng)
    frozen = copy.deepcopy(parent)
    others = [sample_architecture(SPACE, rng) for _ in range(3)]
    guide = UniformGuide() if guide_kind == "uniform" else PriorityGuide(some_priority(SPACE, [parent, *others]), 0.0025, 0.25)
    for _ in range(3):
        mutation = mutate(parent, SPACE, guide, rng, known_only(parent, *others), edits)
        child = mutation.architecture
        assert_valid_and_canonical(child)
        assert architecture_key(child) not in {architecture_key(a) for a in (parent, *others)}
        assert parent == frozen
        inter, intra = mutation.description.split("; intra: ")  # Algorithm 1, lines 6-7: inter-layer, then intra-layer
        assert inter.startswith("inter: layer ")
        changed = [i for i, (old, new) in enumerate(zip(parent, child)) if old != new]
        assert 1 <= len(changed) <= 2


@given(seeds)
def test_an_intra_layer_child_differs_in_one_attention_layer_only(seed):
    rng = random.Random(seed)
    parent = sample_architecture(SPACE, rng)
    mutation = intra_layer_mutation(parent, SPACE, UniformGuide(), rng, known_only(parent))
    if not any(layer["type"] == "attention" for layer in parent):
        assert mutation is None
        return
    changed = [i for i, (old, new) in enumerate(zip(parent, mutation.architecture)) if old != new]
    assert len(changed) == 1 and parent[changed[0]]["type"] == "attention" == mutation.architecture[changed[0]]["type"]
    assert_valid_and_canonical(mutation.architecture)


BERT = parse_program("matmul(softmax(scale(matmul(Q, transpose(K)))), V)")  # canonical: transpose, matmul, scale, softmax, matmul


def test_insertion_lengthens_a_path_and_deletion_shortens_it():
    space = SearchSpace(num_layers=1)
    assert validate_program(BERT) == BERT
    # insert on the edge scale -> softmax (position 3): softmax(neg(scale(...)))
    longer = edit_results(BERT, space, "insert", 3, "neg")
    assert "matmul(softmax(neg(scale(matmul(Q, transpose(K))))), V)" in {program.to_expression() for program in longer}
    # insert at the end (position k = 5): a new output on top of the old one
    assert "neg(matmul(softmax(scale(matmul(Q, transpose(K)))), V))" in {p.to_expression() for p in edit_results(BERT, space, "insert", 5, "neg")}
    # delete scale (position 2): its consumer reads its operand instead
    assert [p.to_expression() for p in edit_results(BERT, space, "delete", 2, None)] == ["matmul(softmax(matmul(Q, transpose(K))), V)"]
    # deleting transpose would need an operand of shape (d, n): none, so no child
    assert edit_results(BERT, space, "delete", 0, None) == ()
    for program in longer:
        assert len(program) == len(BERT) + 1
    # a replacement keeps the old arguments where the new op allows: scale -> softsign at 2
    kept = _kept_arguments_child(BERT, space, 2, "softsign")
    assert kept.to_expression() == "matmul(softmax(softsign(matmul(Q, transpose(K)))), V)"
    assert kept in edit_results(BERT, space, "replace", 2, "softsign")
    rng = random.Random(0)
    replaced = 0
    for _ in range(40):  # whenever softsign replaces scale, it keeps scale's argument
        child = intra_layer_mutation([{"type": "attention", "program": BERT.to_json()}], space, OnlyGuide("softsign", 2), rng, known_only())
        if "replace 2" in child.description:
            replaced += 1
            assert parse_program(child.architecture[0]["program"]) == kept
    assert replaced >= 1


@given(seeds)
def test_program_lengths_grow_and_shrink_within_the_limit(seed):
    rng = random.Random(seed)
    space = SearchSpace(num_layers=1, layer_types=("attention",), max_program_length=8)
    parent = sample_architecture(space, rng)
    length = len(parse_program(parent[0]["program"]))
    lengths = set()
    for _ in range(12):
        child = intra_layer_mutation(parent, space, UniformGuide(), rng, known_only(parent))
        if child is not None:
            assert_valid_and_canonical(child.architecture, space)
            lengths.add(len(parse_program(child.architecture[0]["program"])) - length)
    assert max(lengths, default=0) <= 8 - length


def test_over_many_children_programs_both_grow_and_shrink():
    space = SearchSpace(num_layers=1, layer_types=("attention",), max_program_length=10)
    rng = random.Random(0)
    grown = shrunk = 0
    for _ in range(40):
        parent = sample_architecture(space, rng)
        child = intra_layer_mutation(parent, space, UniformGuide(), rng, known_only(parent))
        difference = len(parse_program(child.architecture[0]["program"])) - len(parse_program(parent[0]["program"]))
        grown += difference > 0
        shrunk += difference < 0
    assert grown >= 5 and shrunk >= 5


def test_no_probability_goes_to_an_op_that_cannot_be_valid_where_it_is_written():
    """Position 0 of a canonical program applies an op to inputs only: matmul of two (n, d) inputs is never valid
    there. It is never offered, so even a guide that would put all its mass on matmul never draws it."""
    space = SearchSpace(num_layers=1, layer_types=("attention",))
    rng = random.Random(0)

    class MatmulLovingGuide(UniformGuide):
        def op_probabilities(self, position, options):
            return [1.0 if op == "matmul" else 1e-9 for op in options]

    for _ in range(60):
        parent = sample_architecture(space, rng)
        program = parse_program(parent[0]["program"])
        assert edit_results(program, space, "replace", 0, "matmul") == ()
        diagnostics = MutationDiagnostics()
        child = intra_layer_mutation(parent, space, MatmulLovingGuide(), rng, known_only(parent), diagnostics=diagnostics)
        description = child.description
        assert "replace 0: " not in description or not description.endswith("-> matmul")
        assert "insert 0: matmul" not in description
    assert parse_program(child.architecture[0]["program"]).instructions[0].op != "matmul"


class OnlyGuide(UniformGuide):
    """All the probability on one op wherever it can be valid; otherwise even."""

    def __init__(self, op, position):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "position", position)

    def op_probabilities(self, position, options):
        if position == self.position and self.op in options:
            return [1.0 if option == self.op else 0.0 for option in options]
        return super().op_probabilities(position, options)


class RecordingGuide(UniformGuide):
    """A uniform guide that remembers at which program positions a mutation drew an op."""

    def __init__(self):
        object.__setattr__(self, "positions", [])

    def op_probabilities(self, position, options):
        self.positions.append(position)
        return super().op_probabilities(position, options)


def test_children_of_a_length_k_parent_draw_from_the_first_k_positions_and_k_for_a_new_output():
    parent = [{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": BERT.to_json()}]
    space = SearchSpace(num_layers=2, layer_types=("attention",))
    guide = RecordingGuide()
    rng = random.Random(0)
    for _ in range(200):
        assert intra_layer_mutation(parent, space, guide, rng, known_only(parent)) is not None
    assert set(guide.positions) == set(range(len(BERT) + 1))  # replace at 0..k-1, insert at 0..k


def test_priority_guided_mutation_follows_the_position_table():
    """Position 2 of BERT's program (scale) strongly prefers softsign: replacements there mostly take it."""
    space = SearchSpace(num_layers=1, layer_types=("attention",))
    parent = [{"type": "attention", "program": BERT.to_json()}]
    observations = [Observation(1.0 if op == "softsign" else 0.0, ((2, op),), ()) for op in space.ops for _ in range(5)]
    priority = OperationPriority.from_observations(observations, space.ops, space.kernel_sizes, 1)
    guide = PriorityGuide(priority, alpha=0.0, temperature=0.05)
    rng = random.Random(0)
    replacements = []
    for _ in range(300):
        description = intra_layer_mutation(parent, space, guide, rng, known_only(parent)).description
        if "replace 2: scale -> " in description:
            replacements.append(description.rsplit("-> ", 1)[1])
    assert len(replacements) > 20
    assert replacements.count("softsign") / len(replacements) > 0.9


def test_inter_layer_mutation_draws_kernel_sizes_from_the_guide():
    space = SearchSpace(num_layers=1, layer_types=("conv",), kernel_sizes=(3, 5, 7))
    parent = [{"type": "conv", "kernel_size": 3}]
    rng = random.Random(0)
    sizes = {inter_layer_mutation(parent, space, UniformGuide(), rng).architecture[0]["kernel_size"] for _ in range(50)}
    assert sizes == {5, 7}  # never the parent's own size
    child = mutate(parent, space, UniformGuide(), rng, known_only(parent))
    assert child.description.endswith("intra: none (no attention layer)")


def test_equivalent_programs_share_one_key():
    space = SearchSpace(num_layers=1)
    written = [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(V, K))))), V)"}]
    reordered = [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(K, V))))), V)"}]
    assert architecture_key(space.canonical_architecture(written)) == architecture_key(space.canonical_architecture(reordered))


def test_canonical_architecture_names_the_bad_layer():
    space = SearchSpace(num_layers=2, kernel_sizes=(3, 9), ops=("transpose", "matmul", "softmax", "scale"))
    with pytest.raises(ArchitectureError, match=r"^layers\[1\] \(attention\): .*output must have shape \(n, d\)"):
        space.canonical_architecture([{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(Q, transpose(K))"}])
    with pytest.raises(ArchitectureError, match=r"^layers\[0\] \(conv\): kernel_size must be one of \(3, 9\), got 4"):
        space.canonical_architecture([{"type": "conv", "kernel_size": 4}, {"type": "conv", "kernel_size": 3}])
    with pytest.raises(ArchitectureError, match=r"^layers\[1\] \(attention\): instruction 2 \(neg\): op not allowed here"):
        space.canonical_architecture([{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(softmax(neg(matmul(Q, transpose(K)))), V)"}])
    with pytest.raises(ArchitectureError, match=r"^layers: expected 2 layers, got 1"):
        space.canonical_architecture([{"type": "conv", "kernel_size": 3}])


MODEL_REJECTS = st.one_of(
    st.sampled_from(sorted(MALFORMED_PROGRAMS)).map(lambda name: {"type": "attention", "program": copy.deepcopy(MALFORMED_PROGRAMS[name][0])}),
    st.sampled_from([4, 0, -3, 9.0, True, None, "9", [9]]).map(lambda kernel: {"type": "conv", "kernel_size": kernel}),
    st.sampled_from(
        [{"type": "mlp"}, {"type": "conv"}, {"type": "attention"}, {"kernel_size": 3}, {"type": "conv", "kernel_size": 3, "program": BERT_PROGRAM}, "conv", None, []]
    ),
)


@given(layer_stacks(1, 4), st.one_of(st.none(), MODEL_REJECTS), st.data())
def test_the_search_accepts_and_rejects_exactly_what_the_model_does(layers, rejected, data):
    """Over the whole space (every op, input and kernel size) the search's validator is the model's: the same
    canonical form and key for every architecture the config accepts, and for one it rejects the same error,
    naming the same layer."""
    position = data.draw(st.integers(0, len(layers)))
    if rejected is not None:
        layers.insert(position, rejected)
    space = SearchSpace(num_layers=len(layers))
    try:
        config = AutoBertZeroConfig(layers=copy.deepcopy(layers))
    except ArchitectureError as error:
        assert rejected is not None
        with pytest.raises(ArchitectureError) as raised:
            space.canonical_architecture(layers)
        assert str(raised.value) == str(error) and str(error).startswith(f"layers[{position}]")
        return
    assert rejected is None
    canonical = space.canonical_architecture(layers)
    assert canonical == canonical_architecture(config.layers)
    assert architecture_key(canonical) == architecture_key(config.layers) == architecture_key(layers)


def test_an_unsatisfiable_space_fails_with_a_clear_error():
    space = SearchSpace(num_layers=1, ops=("neg", "scale"), max_sampling_attempts=50)
    with pytest.raises(SearchSpaceError, match="no valid program found"):
        sample_program(space, random.Random(0))


@pytest.mark.parametrize("seed", range(4))
def test_parameter_count_matches_the_model(seed):
    dims = ModelDimensions(hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=50, max_position_embeddings=32)
    architecture = sample_architecture(SearchSpace(num_layers=3), random.Random(seed))
    config = AutoBertZeroConfig(layers=architecture, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=50, max_position_embeddings=32)
    with torch.device("meta"):
        model = AutoBertZeroModel(config)
    assert count_backbone_parameters(architecture, dims) == sum(parameter.numel() for parameter in model.parameters())


ONE_OP_PER_POSITION = SearchSpace(  # benchmarks/mini_3layer.json's space: cosine at position 0, matmul at 1
    num_layers=3, kernel_sizes=(3, 65), ops=("matmul", "cosine"), inputs=("Q", "K"), min_program_length=2, max_program_length=2
)


def test_a_replacement_may_keep_the_op_and_change_its_operands():
    """Where every position admits one op, operand changes are the only intra-layer children; without them
    evolution there has no child of an attention layer and falls back to random sampling."""
    program = parse_program("matmul(cosine(K, K), Q)")
    assert [child.to_json() for child in edit_results(program, ONE_OP_PER_POSITION, "replace", 0, "cosine")]
    rng = random.Random(0)
    for _ in range(50):
        parent = sample_architecture(ONE_OP_PER_POSITION, rng)
        if not any(layer["type"] == "attention" for layer in parent):
            continue
        mutation = intra_layer_mutation(parent, ONE_OP_PER_POSITION, UniformGuide(), rng, known_only(parent))
        assert mutation is not None and "(new operands)" in mutation.description
        assert_valid_and_canonical(mutation.architecture, ONE_OP_PER_POSITION)
