"""The BIWS super-net: kernel transforms, extract → write_back round trips, training through the chain, files."""

from __future__ import annotations

import random

import pytest
import torch

from modeling_autobert_zero import AutoBertZeroForPreTraining
from search.space import SearchSpace, sample_architecture
from search.supernet import KERNEL_CHAIN, BiwsSupernet, ElasticKernel, chain_sizes


SETTINGS = {"vocab_size": 60, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}
BERT = "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"
MIXED = [
    {"type": "conv", "kernel_size": 9},
    {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(K, P))))), Q)"},
    {"type": "conv", "kernel_size": 65},
]


def supernet(num_layers: int = 3, seed: int = 0) -> BiwsSupernet:
    return BiwsSupernet(SETTINGS, num_layers, seed=seed)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, SETTINGS["vocab_size"], (4, 10), generator=generator)
    return {
        "input_ids": input_ids,
        "labels": torch.where(torch.rand(4, 10, generator=generator) < 0.3, input_ids, -100),
        "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }


@pytest.mark.parametrize("kernel_size", KERNEL_CHAIN)
def test_kernel_transforms_compose_to_the_right_shape_and_identity_gives_the_centre_crop(kernel_size):
    elastic = ElasticKernel(num_heads=3)
    torch.nn.init.normal_(elastic.taps)
    kernel = elastic(kernel_size)
    assert kernel.shape == (3, kernel_size)
    start = (65 - kernel_size) // 2
    assert torch.equal(kernel, elastic.taps[:, start : start + kernel_size])  # identity transforms: exact crop


def test_each_transform_acts_on_the_centre_of_the_next_larger_kernel():
    elastic = ElasticKernel(num_heads=2)
    torch.nn.init.normal_(elastic.taps)
    with torch.no_grad():
        for size in ("31", "15", "9"):
            elastic.transforms[size].copy_(torch.randn(int(size), int(size)))
    k31 = elastic.taps[:, 17:48] @ elastic.transforms["31"].T
    k15 = k31[:, 8:23] @ elastic.transforms["15"].T
    k9 = k15[:, 3:12] @ elastic.transforms["9"].T
    assert torch.allclose(elastic(9), k9, atol=1e-6)
    assert chain_sizes(9) == (31, 15, 9) and chain_sizes(65) == ()


def test_extract_gives_a_strict_state_dict_of_the_candidate_model():
    net = supernet()
    weights = net.extract(MIXED)
    model = AutoBertZeroForPreTraining(net.candidate_config(MIXED))
    model.load_state_dict(weights, strict=True)
    assert weights["autobert_zero.encoder.layer.0.mixer.kernel"].shape == (2, 9)
    assert torch.equal(weights["autobert_zero.encoder.layer.0.mixer.kernel"], net.layer[0].conv.elastic_kernel.taps[:, 28:37])
    assert "autobert_zero.encoder.layer.1.mixer.input_projections.V.weight" not in weights  # the program never reads V
    assert torch.equal(weights["autobert_zero.encoder.layer.1.mixer.input_projections.P.weight"], net.layer[1].attention.input_projections.P.weight)


@pytest.mark.parametrize("seed", range(3))
def test_extract_then_write_back_is_an_exact_round_trip(seed):
    net = supernet(seed=seed)
    architecture = sample_architecture(SearchSpace(num_layers=3), random.Random(seed))
    before = snapshot(net)
    net.write_back(architecture, net.candidate(architecture).state_dict())
    after = snapshot(net)
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_trained_weights_return_to_where_they_came_from_kernel_transforms_included():
    net = supernet()
    before = snapshot(net)
    candidate = net.candidate(MIXED)
    optimizer = torch.optim.SGD(candidate.parameters(), lr=0.5)
    for step in range(2):
        candidate(**batch(step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    candidate.eval()
    net.write_back(MIXED, candidate.state_dict())

    changed = {name for name in before if not torch.equal(before[name], net.state_dict()[name])}
    # the k=9 layer trained its taps and the 31 → 15 → 9 chain; the k=65 layer only its taps
    assert {"layer.0.conv.elastic_kernel.transforms.31", "layer.0.conv.elastic_kernel.transforms.15",
            "layer.0.conv.elastic_kernel.transforms.9", "layer.0.conv.elastic_kernel.taps",
            "layer.2.conv.elastic_kernel.taps"} <= changed
    assert not any(name.startswith("layer.0.conv.elastic_kernel.transforms.") and name.endswith((".7", ".5", ".3")) for name in changed)
    assert not any(name.startswith("layer.2.conv.elastic_kernel.transforms.") for name in changed)
    assert not any(name.startswith(("layer.0.attention.", "layer.2.attention.", "layer.1.conv.")) for name in changed)
    assert "layer.1.attention.input_projections.V.weight" not in changed
    outer_taps = torch.cat([net.layer[0].conv.elastic_kernel.taps[:, :17], net.layer[0].conv.elastic_kernel.taps[:, 48:]], dim=1)
    assert torch.equal(outer_taps, torch.cat([before["layer.0.conv.elastic_kernel.taps"][:, :17], before["layer.0.conv.elastic_kernel.taps"][:, 48:]], dim=1))

    # the candidate trained *is* what extract now hands out: same weights, same outputs
    plain = AutoBertZeroForPreTraining(net.candidate_config(MIXED)).eval()
    plain.load_state_dict(net.extract(MIXED), strict=True)
    assert torch.equal(plain.autobert_zero.encoder.layer[0].mixer.kernel, candidate.autobert_zero.encoder.layer[0].mixer.kernel)
    with torch.no_grad():
        expected, found = candidate(**batch(5)), plain(**batch(5))
    assert torch.equal(expected.prediction_logits, found.prediction_logits)


def test_write_back_refuses_a_plain_kernel_and_a_foreign_state_dict():
    net = supernet()
    with pytest.raises(ValueError, match="does not match this architecture's candidate"):
        net.write_back(MIXED, net.extract(MIXED))
    with pytest.raises(ValueError, match="does not match"):
        net.write_back(MIXED, net.candidate([{"type": "attention", "program": BERT}] * 3).state_dict())


def test_the_super_net_round_trips_through_safetensors(tmp_path):
    net = supernet(seed=4)
    path = tmp_path / "supernet.safetensors"
    net.save(path)
    loaded = BiwsSupernet.from_file(path)
    assert all(torch.equal(tensor, loaded.state_dict()[name]) for name, tensor in net.state_dict().items())
    other = supernet(seed=5)
    other.load(path)
    assert all(torch.equal(tensor, other.state_dict()[name]) for name, tensor in net.state_dict().items())
    with pytest.raises(ValueError, match="saved for 3 layers"):
        supernet(num_layers=2).load(path)


def test_initialisation_is_seeded_and_shares_one_set_of_weights():
    assert all(torch.equal(a, b) for a, b in zip(supernet(seed=1).state_dict().values(), supernet(seed=1).state_dict().values()))
    net = supernet()
    assert torch.equal(net.layer[0].conv.elastic_kernel.transforms["31"], torch.eye(31))
    assert torch.count_nonzero(net.embeddings.word_embeddings.weight[0]) == 0  # the padding embedding
    first, second = net.extract(MIXED), net.extract([{"type": "attention", "program": BERT}] * 3)
    for shared in ("autobert_zero.embeddings.word_embeddings.weight", "autobert_zero.encoder.layer.1.intermediate.weight"):
        assert torch.equal(first[shared], second[shared])
