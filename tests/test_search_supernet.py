"""The BIWS super-net: built from the model's modules, kernel transforms, the module mapping (extract →
candidate → write-back round trips, renamed parameters), training through the chain, snapshots and
write-backs as values (independent of the process that computed them)."""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from conftest import layer_stacks
from hypothesis import given, settings

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero import modeling_autobert_zero as modeling
from search.space import SearchSpace, sample_architecture
from search.supernet import (
    ALL_INPUTS_PROGRAM,
    KERNEL_CHAIN,
    BiwsSupernet,
    ElasticLightweightConv,
    SupernetSnapshot,
    WriteBack,
    chain_sizes,
    plain_state_dict,
)


SETTINGS = {"vocab_size": 60, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}
BERT = "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"
MIXED = [
    {"type": "conv", "kernel_size": 9},
    {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(K, P))))), Q)"},
    {"type": "conv", "kernel_size": 65},
]
LAYER = "autobert_zero.encoder.layer"


def supernet(num_layers: int = 3, seed: int = 0) -> BiwsSupernet:
    return BiwsSupernet(SETTINGS, num_layers, seed=seed)


def tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def equal_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, SETTINGS["vocab_size"], (4, 10), generator=generator)
    return {
        "input_ids": input_ids,
        "labels": torch.where(torch.rand(4, 10, generator=generator) < 0.3, input_ids, -100),
        "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }


def train(candidate: torch.nn.Module, steps: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(candidate.parameters(), lr=0.5)
    for step in range(steps):
        candidate(**batch(seed + step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return candidate.eval()


def elastic_conv(num_heads: int) -> ElasticLightweightConv:
    conv = ElasticLightweightConv(AutoBertZeroConfig(layers=MIXED, conv_num_heads=num_heads, **SETTINGS), layer_idx=0)
    torch.nn.init.normal_(conv.kernel)
    return conv


# ---------------------------------------------------------------------------------------------------------
# Structure and initialisation.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", KERNEL_CHAIN)
def test_kernel_transforms_compose_to_the_right_shape_and_identity_gives_the_centre_crop(kernel_size):
    conv = elastic_conv(num_heads=2)
    kernel = conv.derived_kernel(kernel_size)
    assert kernel.shape == (2, kernel_size)
    start = (65 - kernel_size) // 2
    assert torch.equal(kernel, conv.kernel[:, start : start + kernel_size])  # identity transforms: exact crop


def test_each_transform_acts_on_the_centre_of_the_next_larger_kernel():
    conv = elastic_conv(num_heads=2)
    with torch.no_grad():
        for size in ("31", "15", "9"):
            conv.kernel_transforms[size].copy_(torch.randn(int(size), int(size)))
    k31 = conv.kernel[:, 17:48] @ conv.kernel_transforms["31"].T
    k15 = k31[:, 8:23] @ conv.kernel_transforms["15"].T
    k9 = k15[:, 3:12] @ conv.kernel_transforms["9"].T
    assert torch.allclose(conv.derived_kernel(9), k9, atol=1e-6)
    assert chain_sizes(9) == (31, 15, 9) and chain_sizes(65) == ()


def test_the_super_net_is_the_models_module_tree_with_both_branches_per_position():
    net = supernet()
    layer = net.autobert_zero.encoder.layer[1]
    assert type(layer) is modeling.AutoBertZeroLayer and type(net.autobert_zero.embeddings) is modeling.AutoBertZeroEmbeddings
    assert isinstance(layer.mixer.attention, modeling.AutoBertZeroSearchedAttention)
    assert sorted(layer.mixer.attention.input_projections) == ["K", "P", "Q", "V"]
    assert isinstance(layer.mixer.conv, modeling.AutoBertZeroLightweightConv) and layer.mixer.conv.kernel.shape == (2, 65)
    assert sorted(map(int, layer.mixer.conv.kernel_transforms)) == sorted(KERNEL_CHAIN[1:])
    assert net.cls.predictions.decoder.weight is net.autobert_zero.embeddings.word_embeddings.weight  # tied as in the model


def test_initialisation_is_the_models_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = supernet(seed=1)
    assert torch.equal(torch.rand(3), expected_next)
    assert equal_tensors(tensors(first), tensors(supernet(seed=1)))
    assert not equal_tensors(tensors(first), tensors(supernet(seed=2)))

    # everything but the conv branches is what the model itself initialises from that seed
    torch.manual_seed(1)
    model = AutoBertZeroForPreTraining(first.candidate_config([{"type": "attention", "program": ALL_INPUTS_PROGRAM}] * 3))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, first.get_parameter(name.replace(".mixer.", ".mixer.attention."))), name
    conv = first.autobert_zero.encoder.layer[0].mixer.conv
    assert torch.equal(conv.kernel_transforms["31"], torch.eye(31))
    assert 0.01 < conv.kernel.std() < 0.03 and torch.count_nonzero(conv.glu_projection.bias) == 0  # the model's rule
    assert torch.count_nonzero(first.autobert_zero.embeddings.word_embeddings.weight[0]) == 0  # the padding embedding


def test_every_candidate_shares_one_set_of_weights():
    net = supernet()
    first, second = net.extract(MIXED), net.extract([{"type": "attention", "program": BERT}] * 3)
    for shared in ("autobert_zero.embeddings.word_embeddings.weight", f"{LAYER}.1.intermediate.weight", "cls.predictions.bias"):
        assert torch.equal(first[shared], second[shared])


# ---------------------------------------------------------------------------------------------------------
# The mapping: extract, candidate, write-back.
# ---------------------------------------------------------------------------------------------------------


def test_extract_gives_a_strict_state_dict_of_the_candidate_model():
    net = supernet()
    weights = net.extract(MIXED)
    model = AutoBertZeroForPreTraining(net.candidate_config(MIXED))
    model.load_state_dict(weights, strict=True)
    conv, attention = net.autobert_zero.encoder.layer[0].mixer.conv, net.autobert_zero.encoder.layer[1].mixer.attention
    assert torch.equal(weights[f"{LAYER}.0.mixer.kernel"], conv.kernel[:, 28:37])
    assert f"{LAYER}.1.mixer.input_projections.V.weight" not in weights  # the program never reads V
    assert torch.equal(weights[f"{LAYER}.1.mixer.input_projections.P.weight"], attention.input_projections.P.weight)


def test_a_candidate_starts_as_extract_says_and_computes_the_same():
    net = supernet()
    candidate = net.candidate(MIXED).eval()
    plain = AutoBertZeroForPreTraining(net.candidate_config(MIXED)).eval()
    plain.load_state_dict(net.extract(MIXED), strict=True)
    assert equal_tensors(plain_state_dict(candidate), tensors(plain))
    assert candidate.cls.predictions.decoder.weight is candidate.autobert_zero.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(candidate(**batch()).prediction_logits, plain(**batch()).prediction_logits)


@pytest.mark.parametrize("seed", range(3))
def test_extract_then_write_back_is_an_exact_round_trip(seed):
    net = supernet(seed=seed)
    architecture = sample_architecture(SearchSpace(num_layers=3), random.Random(seed))
    before = tensors(net)
    net.write_back(net.candidate(architecture))
    assert equal_tensors(before, tensors(net))


SHARED_SUPERNET = supernet(seed=7)


@settings(max_examples=25)
@given(architecture=layer_stacks(min_layers=3, max_layers=3))
def test_a_write_back_holds_exactly_the_slots_the_candidate_used(architecture):
    net = SHARED_SUPERNET
    write_back = net.write_back_from(net.candidate(architecture))
    expected = set()
    for name, parameter in net.named_parameters():
        if not name.startswith(f"{LAYER}."):
            expected.add(name)
            continue
        index, rest = name[len(LAYER) + 1 :].split(".", 1)
        layer = architecture[int(index)]
        if not rest.startswith("mixer."):
            expected.add(name)
        elif layer["type"] == "attention" and rest.startswith("mixer.attention."):
            inputs = net.candidate_config(architecture).compiled_layers[int(index)].inputs_read()
            if not rest.startswith("mixer.attention.input_projections.") or rest.split(".")[3] in inputs:
                expected.add(name)
        elif layer["type"] == "conv" and rest.startswith("mixer.conv."):
            transform = rest.startswith("mixer.conv.kernel_transforms.")
            if not transform or int(rest.rsplit(".", 1)[1]) in chain_sizes(layer["kernel_size"]):
                expected.add(name)
    assert set(write_back.tensors) == expected
    before = tensors(net)
    net.apply(write_back)  # untrained: applying changes nothing
    assert equal_tensors(before, tensors(net))


def test_trained_weights_return_to_where_they_came_from_kernel_transforms_included():
    net = supernet()
    before = tensors(net)
    candidate = train(net.candidate(MIXED))
    net.write_back(candidate)

    after = tensors(net)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    conv0, conv2 = f"{LAYER}.0.mixer.conv.", f"{LAYER}.2.mixer.conv."
    # the k=9 layer trained its taps and the 31 → 15 → 9 chain; the k=65 layer only its taps
    assert {f"{conv0}kernel_transforms.31", f"{conv0}kernel_transforms.15", f"{conv0}kernel_transforms.9",
            f"{conv0}kernel", f"{conv2}kernel"} <= changed
    assert not any(name.startswith(f"{conv0}kernel_transforms.") and name.endswith((".7", ".5", ".3")) for name in changed)
    assert not any(name.startswith(f"{conv2}kernel_transforms.") for name in changed)
    assert not any(name.startswith((f"{LAYER}.0.mixer.attention.", f"{LAYER}.2.mixer.attention.", f"{LAYER}.1.mixer.conv."))
                   for name in changed)
    assert f"{LAYER}.1.mixer.attention.input_projections.V.weight" not in changed
    outer = [*range(17), *range(48, 65)]
    assert torch.equal(after[f"{conv0}kernel"][:, outer], before[f"{conv0}kernel"][:, outer])

    # the candidate trained *is* what extract now hands out, and what plain_state_dict reads from it
    plain = AutoBertZeroForPreTraining(net.candidate_config(MIXED)).eval()
    plain.load_state_dict(net.extract(MIXED), strict=True)
    assert equal_tensors(plain_state_dict(candidate), tensors(plain))
    with torch.no_grad():
        assert torch.equal(candidate(**batch(5)).prediction_logits, plain(**batch(5)).prediction_logits)


def test_write_back_refuses_a_plain_kernel_and_a_foreign_model():
    net = supernet()
    plain = AutoBertZeroForPreTraining(net.candidate_config(MIXED))
    plain.load_state_dict(net.extract(MIXED))
    with pytest.raises(ValueError, match=rf"{LAYER}.0.mixer: this conv kernel is a plain tensor"):
        net.write_back(plain)
    with pytest.raises(ValueError, match=rf"candidate module {LAYER}.3 has no counterpart"):
        net.write_back(supernet(num_layers=4).candidate(MIXED + MIXED[:1]))
    wider = BiwsSupernet({**SETTINGS, "intermediate_size": 64}, 3).candidate(MIXED)
    before = tensors(net)
    with pytest.raises(ValueError, match=r"intermediate.weight': \(64, 16\) torch.float32, the super-net holds \(32, 16\)"):
        net.write_back(wider)
    assert equal_tensors(before, tensors(net))  # nothing was applied


# ---------------------------------------------------------------------------------------------------------
# A renamed parameter: the mapping goes through the modules, not their names.
# ---------------------------------------------------------------------------------------------------------


def renaming(module_class, old: str, new: str):
    """Patch ``module_class`` (where the model builds it, and its subclasses) so that its child ``old`` is
    registered as ``new``; a read-only alias keeps its forward working."""
    original_init = module_class.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_module(new, self._modules.pop(old))

    return init, property(lambda self: getattr(self, new))


@pytest.mark.parametrize(
    "module_class, old, new, candidate_key, supernet_key",
    [
        (modeling.AutoBertZeroLayer, "mixer_layer_norm", "attention_layer_norm",
         f"{LAYER}.1.attention_layer_norm.weight", f"{LAYER}.1.attention_layer_norm.weight"),
        (modeling.AutoBertZeroSearchedAttention, "output_projection", "W_O",
         f"{LAYER}.1.mixer.W_O.weight", f"{LAYER}.1.mixer.attention.W_O.weight"),
        (modeling.AutoBertZeroLightweightConv, "glu_projection", "gate",
         f"{LAYER}.0.mixer.gate.weight", f"{LAYER}.0.mixer.conv.gate.weight"),
    ],
)
def test_the_mapping_survives_a_renamed_parameter(monkeypatch, module_class, old, new, candidate_key, supernet_key):
    init, alias = renaming(module_class, old, new)
    monkeypatch.setattr(module_class, "__init__", init)
    monkeypatch.setattr(module_class, old, alias, raising=False)
    net = supernet()
    weights = net.extract(MIXED)
    assert candidate_key in weights and candidate_key.replace(new, old) not in weights
    before = tensors(net)
    net.write_back(net.candidate(MIXED))  # round trip: exact
    assert equal_tensors(before, tensors(net))

    candidate = train(net.candidate(MIXED))
    net.write_back(candidate)  # the renamed weights trained and went back where they came from
    assert not torch.equal(before[supernet_key], tensors(net)[supernet_key])
    plain = AutoBertZeroForPreTraining(net.candidate_config(MIXED)).eval()
    plain.load_state_dict(net.extract(MIXED), strict=True)
    assert equal_tensors(plain_state_dict(candidate), tensors(plain))


# ---------------------------------------------------------------------------------------------------------
# Snapshots and write-backs as values.
# ---------------------------------------------------------------------------------------------------------


def test_a_snapshot_is_a_frozen_copy_that_candidates_can_be_built_from():
    net = supernet()
    snapshot = net.snapshot()
    frozen = {name: tensor.clone() for name, tensor in snapshot.tensors.items()}
    view = BiwsSupernet.from_snapshot(snapshot, share=True)
    assert equal_tensors(tensors(view.candidate(MIXED)), tensors(net.candidate(MIXED)))
    net.write_back(train(net.candidate(MIXED)))
    assert equal_tensors(dict(snapshot.tensors), frozen)  # the super-net moved on, the snapshot did not
    with pytest.raises(RuntimeError, match="shares a snapshot's tensors"):
        view.apply(view.write_back_from(view.candidate(MIXED)))

    restored = BiwsSupernet.from_snapshot(SupernetSnapshot.from_bytes(snapshot.to_bytes()))
    assert equal_tensors(dict(restored.snapshot().tensors), frozen)
    assert restored.cls.predictions.decoder.weight is restored.autobert_zero.embeddings.word_embeddings.weight
    restored.write_back(train(restored.candidate(MIXED)))  # a copy: applying leaves the snapshot alone
    assert equal_tensors(dict(snapshot.tensors), frozen)


def test_a_write_back_is_a_value_that_round_trips_through_bytes():
    net = supernet()
    candidate = train(net.candidate(MIXED))
    write_back = net.write_back_from(candidate)
    assert write_back.tensors[f"{LAYER}.0.mixer.conv.kernel"].shape == (2, 31)  # the taps a 9-tap kernel depends on
    assert write_back.tensors[f"{LAYER}.2.mixer.conv.kernel"].shape == (2, 65)
    restored = WriteBack.from_bytes(write_back.to_bytes())
    assert restored.architecture == MIXED and equal_tensors(dict(restored.tensors), dict(write_back.tensors))
    sequential = supernet()
    sequential.write_back(candidate)
    net.apply(restored)
    assert equal_tensors(tensors(net), tensors(sequential))


def test_write_backs_apply_in_proposal_order_later_slots_win():
    net = supernet()
    start = net.snapshot()
    view = BiwsSupernet.from_snapshot(start, share=True)
    first = view.write_back_from(train(view.candidate(MIXED), seed=1))
    second = view.write_back_from(train(view.candidate([{"type": "conv", "kernel_size": 3}] * 3), seed=2))
    net.apply(first)
    net.apply(second)
    after = tensors(net)
    for name, tensor in second.tensors.items():
        if tensor.shape == after[name].shape:
            assert torch.equal(after[name], tensor), name
        else:  # the centre taps of a conv kernel; the outer ones as the first child (or the snapshot) left them
            outer = [*range(17), *range(48, 65)]
            earlier = first.tensors.get(name)
            earlier = earlier if earlier is not None and earlier.shape == after[name].shape else start.tensors[name]
            assert torch.equal(after[name][:, 17:48], tensor) and torch.equal(after[name][:, outer], earlier[:, outer]), name
    only_first = set(first.tensors) - set(second.tensors)
    assert only_first and all(torch.equal(after[name], first.tensors[name]) for name in only_first)
    assert not torch.equal(after[f"{LAYER}.2.mixer.conv.kernel"][:, :17], start.tensors[f"{LAYER}.2.mixer.conv.kernel"][:, :17])


def trained_write_back(snapshot_bytes: bytes, architecture: list[dict], seed: int) -> bytes:
    """What a worker does: build the candidate from the generation's snapshot, train it, return its write-back."""
    torch.set_num_threads(1)
    view = BiwsSupernet.from_snapshot(SupernetSnapshot.from_bytes(snapshot_bytes), share=True)
    return view.write_back_from(train(view.candidate(architecture), seed=seed)).to_bytes()


def test_write_backs_do_not_depend_on_the_process_that_computed_them():
    net = supernet()
    snapshot_bytes = net.snapshot().to_bytes()
    children = [(MIXED, 1), ([{"type": "attention", "program": BERT}, {"type": "conv", "kernel_size": 31}, MIXED[1]], 2)]
    here = [trained_write_back(snapshot_bytes, architecture, seed) for architecture, seed in children]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        there = list(worker.map(trained_write_back, [snapshot_bytes] * 2, *zip(*children)))
    assert here == there  # byte for byte
    driver, other = supernet(), BiwsSupernet.from_snapshot(SupernetSnapshot.from_bytes(snapshot_bytes))
    for mine, theirs in zip(here, there):
        driver.apply(WriteBack.from_bytes(mine))
        other.apply(WriteBack.from_bytes(theirs))
    assert equal_tensors(tensors(driver), tensors(other))
