"""The search space and mutations: every sample and every child is valid, canonical, new, and plain data."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel, parse_program, validate_program
from search.mutation import PriorityGuide, UniformGuide, inter_layer_mutation, intra_layer_mutation, mutate
from search.space import (
    ModelDimensions,
    SearchSpace,
    SearchSpaceError,
    architecture_key,
    canonical_architecture,
    count_backbone_parameters,
    sample_architecture,
    sample_program,
)
from search.ucb import OperationPriority, PriorityTable


SPACE = SearchSpace(num_layers=4, max_program_length=12)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def assert_valid_and_canonical(architecture, space=SPACE):
    assert canonical_architecture(architecture, space) == architecture  # already canonical: unchanged
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


@given(seeds, st.sampled_from(["uniform", "priority"]), st.integers(1, 3))
def test_every_mutation_is_valid_canonical_new_and_leaves_the_parent_unchanged(seed, guide_kind, positions):
    rng = random.Random(seed)
    parent = sample_architecture(SPACE, rng)
    frozen = copy.deepcopy(parent)
    priority = OperationPriority.empty(SPACE.ops, SPACE.kernel_sizes, SPACE.num_layers).with_architecture(parent, 0.7)
    guide = UniformGuide(SPACE) if guide_kind == "uniform" else PriorityGuide(priority, alpha=0.01)
    for _ in range(3):
        child = mutate(parent, SPACE, guide, rng, inter_layer_probability=0.5, positions_per_mutation=positions).architecture
        assert_valid_and_canonical(child)
        assert architecture_key(child) != architecture_key(parent)
        assert parent == frozen


@given(seeds)
def test_an_intra_layer_child_differs_in_one_attention_layer_only(seed):
    rng = random.Random(seed)
    parent = sample_architecture(SPACE, rng)
    mutation = intra_layer_mutation(parent, SPACE, UniformGuide(SPACE), rng)
    if not any(layer["type"] == "attention" for layer in parent):
        assert mutation is None
        return
    changed = [i for i, (old, new) in enumerate(zip(parent, mutation.architecture)) if old != new]
    assert len(changed) == 1 and parent[changed[0]]["type"] == "attention" == mutation.architecture[changed[0]]["type"]


class RecordingGuide(UniformGuide):
    """A uniform guide that remembers which program positions a mutation asked about."""

    def __init__(self, space):
        super().__init__(space)
        object.__setattr__(self, "positions", [])

    def op_probabilities(self, position):
        self.positions.append(position)
        return super().op_probabilities(position)


def test_children_of_a_length_k_parent_use_only_the_first_k_position_tables():
    program = parse_program("matmul(softmax(scale(matmul(Q, transpose(K)))), V)")  # k = 5
    parent = [{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": program.to_json()}]
    space = SearchSpace(num_layers=2)
    guide = RecordingGuide(space)
    rng = random.Random(0)
    for _ in range(200):
        assert intra_layer_mutation(parent, space, guide, rng, positions_per_mutation=2) is not None
    assert set(guide.positions) == set(range(len(program)))  # all of the first k, nothing beyond


def test_priority_guided_mutation_follows_the_position_table():
    """Position 0's table strongly prefers ``neg``: children that replace the op at position 0 mostly take it."""
    space = SearchSpace(num_layers=1, layer_types=("attention",))
    parent = canonical_architecture(
        [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(softsign(K))))), V)"}], space
    )
    assert parse_program(parent[0]["program"]).instructions[0].op == "softsign"
    preferred = PriorityTable(space.ops, (1,) * len(space.ops), tuple(1.0 if op == "neg" else 0.0 for op in space.ops))
    priority = OperationPriority(space.ops, space.kernel_sizes, (preferred,), ())
    guide = PriorityGuide(priority, alpha=0.0, temperature=0.05)
    rng = random.Random(0)
    replacements = []
    for _ in range(300):
        description = intra_layer_mutation(parent, space, guide, rng).description
        if "ops 0: softsign -> " in description:
            replacements.append(description.rsplit("-> ", 1)[1])
    assert len(replacements) > 20
    assert replacements.count("neg") / len(replacements) > 0.9


def test_inter_layer_mutation_draws_kernel_sizes_from_the_guide():
    space = SearchSpace(num_layers=1, layer_types=("conv",), kernel_sizes=(3, 5, 7))
    parent = [{"type": "conv", "kernel_size": 3}]
    rng = random.Random(0)
    sizes = {inter_layer_mutation(parent, space, UniformGuide(space), rng).architecture[0]["kernel_size"] for _ in range(50)}
    assert sizes == {5, 7}  # never the parent's own size


def test_equivalent_programs_share_one_key():
    space = SearchSpace(num_layers=1)
    written = [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(V, K))))), V)"}]
    reordered = [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(K, V))))), V)"}]
    assert architecture_key(canonical_architecture(written, space)) == architecture_key(canonical_architecture(reordered, space))


def test_canonical_architecture_names_the_bad_layer():
    space = SearchSpace(num_layers=2)
    with pytest.raises(SearchSpaceError, match=r"layers\[1\] \(attention\): .*output must have shape \(n, d\)"):
        canonical_architecture([{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(Q, transpose(K))"}], space)
    with pytest.raises(SearchSpaceError, match=r"layers\[0\]: a conv layer"):
        canonical_architecture([{"type": "conv", "kernel_size": 4}, {"type": "conv", "kernel_size": 3}], space)
    with pytest.raises(SearchSpaceError, match="a list of 2 layers"):
        canonical_architecture([{"type": "conv", "kernel_size": 3}], space)


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
