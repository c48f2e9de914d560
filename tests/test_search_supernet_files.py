"""Super-net files: a round trip, the same bytes from every process, and a clear error, naming the file,
for every file that cannot be used (truncated, garbled, other tensors or settings, older or newer format);
nothing is deleted or changed when a file is refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save as save_safetensors

from search.supernet import METADATA_KEY, BiwsSupernet, SupernetFileError, SupernetSnapshot, WriteBack


SETTINGS = {"vocab_size": 60, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}
CONV = [{"type": "conv", "kernel_size": 9}] * 3


def supernet(num_layers: int = 3, seed: int = 0, **settings) -> BiwsSupernet:
    return BiwsSupernet({**SETTINGS, **settings}, num_layers, seed=seed)


def parameters(net: BiwsSupernet) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in net.named_parameters()}


def same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


@pytest.fixture
def saved(tmp_path):
    net = supernet(seed=4)
    path = tmp_path / "supernet-000003.safetensors"
    net.save(path)
    return net, path


def test_the_super_net_round_trips_through_safetensors(saved):
    net, path = saved
    assert path.read_bytes() == net.snapshot().to_bytes()  # a file is a snapshot's bytes
    loaded = BiwsSupernet.from_file(path)
    assert same(parameters(loaded), parameters(net))
    assert loaded.cls.predictions.decoder.weight is loaded.autobert_zero.embeddings.word_embeddings.weight
    other = supernet(seed=5)
    other.load(path)
    assert same(parameters(other), parameters(net))
    loaded.write_back(loaded.candidate(CONV))  # a loaded super-net is an ordinary one
    loaded.save(path)
    assert same(parameters(BiwsSupernet.from_file(path)), parameters(net))


def rewritten(path, tensors=None, description=None, metadata=None) -> None:
    """Rewrite a super-net file with other tensors, description or raw metadata."""
    snapshot = SupernetSnapshot.from_bytes(path.read_bytes())
    tensors = dict(snapshot.tensors) if tensors is None else tensors
    if metadata is None:
        data = path.read_bytes()
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        original = json.loads(header["__metadata__"][METADATA_KEY])
        metadata = {METADATA_KEY: json.dumps({**original, **(description or {})})}
    path.write_bytes(save_safetensors(tensors, metadata=metadata))


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def garble_header(path) -> None:
    data = bytearray(path.read_bytes())
    data[9:40] = b"#" * 31  # inside the JSON header
    path.write_bytes(bytes(data))


def snapshot_tensors(path) -> dict[str, torch.Tensor]:
    return dict(SupernetSnapshot.from_bytes(path.read_bytes()).tensors)


CASES = {
    "empty": (lambda path: truncate(path, 0), "not a complete safetensors file .* truncated or corrupted"),
    "truncated_in_the_length": (lambda path: truncate(path, 5), "not a complete safetensors file .* truncated"),
    "truncated_in_the_header": (lambda path: truncate(path, 200), "not a complete safetensors file .* truncated"),
    "truncated_in_the_data": (lambda path: truncate(path, path.stat().st_size - 100), "not a complete safetensors file"),
    "garbled_header": (garble_header, "not a complete safetensors file .* corrupted"),
    "a_tensor_missing": (
        lambda path: rewritten(path, tensors={name: tensor for name, tensor in snapshot_tensors(path).items() if "pooler" not in name}),
        r"not those of a super-net of 3 layers .*missing \['autobert_zero.pooler.dense.bias'",
    ),
    "an_unknown_tensor": (
        lambda path: rewritten(path, tensors={**snapshot_tensors(path), "extra.weight": torch.zeros(2)}),
        r"unexpected \['extra.weight'\]",
    ),
    "a_wrong_shape": (
        lambda path: rewritten(path, tensors={**snapshot_tensors(path), "cls.predictions.bias": torch.zeros(61)}),
        r"cls.predictions.bias is \(61,\) torch.float32, expected \(60,\) torch.float32",
    ),
    "a_wrong_dtype": (
        lambda path: rewritten(path, tensors={**snapshot_tensors(path), "cls.predictions.bias": torch.zeros(60, dtype=torch.float16)}),
        r"cls.predictions.bias is \(60,\) torch.float16",
    ),
    "settings_for_other_tensors": (
        lambda path: rewritten(path, description={"num_layers": 2}),
        r"not those of a super-net of 2 layers",
    ),
    "invalid_settings": (
        lambda path: rewritten(path, description={"model_settings": {**SETTINGS, "hidden_size": 15}}),
        r"hidden_size=15 is not a multiple of num_attention_heads=2",
    ),
    "settings_not_an_object": (
        lambda path: rewritten(path, description={"model_settings": [1, 2]}),
        r"expected an object of model settings and a positive num_layers",
    ),
    "metadata_not_json": (lambda path: rewritten(path, metadata={METADATA_KEY: "{not json"}), r"'biws' metadata is not JSON"),
    "the_older_format": (
        lambda path: rewritten(path, metadata={"model_settings": json.dumps(SETTINGS), "num_layers": "3"}),
        r"a super-net file in an older format \(no format version",
    ),
    "a_newer_format": (lambda path: rewritten(path, description={"format_version": 2}), r"format version 2 is a newer or unknown one"),
    "no_metadata": (lambda path: rewritten(path, metadata={}), r"its metadata has no 'biws' entry: not in the 'autobert-zero-biws-supernet' format"),
    "a_write_back_file": (
        lambda path: path.write_bytes(WriteBack(CONV, {"cls.predictions.bias": torch.zeros(60)}).to_bytes()),
        r"its format is 'autobert-zero-biws-write-back', expected 'autobert-zero-biws-supernet'",
    ),
}


@pytest.mark.parametrize("damage", sorted(CASES))
def test_an_unusable_super_net_file_is_a_clear_error_naming_it_and_changes_nothing(saved, damage):
    net, path = saved
    spoil, message = CASES[damage]
    spoil(path)
    damaged = path.read_bytes()
    with pytest.raises(SupernetFileError, match=message) as error:
        BiwsSupernet.from_file(path)
    assert str(error.value).startswith(f"{path}: ")
    before = parameters(net)
    with pytest.raises(SupernetFileError) as error:
        net.load(path)
    assert str(error.value).startswith(f"{path}: ")
    assert same(parameters(net), before) and path.read_bytes() == damaged


def test_a_file_of_other_settings_is_refused_by_load(saved):
    _, path = saved
    for other in (supernet(num_layers=2), supernet(intermediate_size=64)):
        before = parameters(other)
        with pytest.raises(SupernetFileError, match=rf"^{path}: saved for 3 layers with .*, this super-net has"):
            other.load(path)
        assert same(parameters(other), before)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):  # search.export retries when a running search replaced the file
        BiwsSupernet.from_file(tmp_path / "supernet-000001.safetensors")


def test_write_back_bytes_name_their_source_when_unreadable():
    data = WriteBack(CONV, {"cls.predictions.bias": torch.zeros(60)}).to_bytes()
    with pytest.raises(SupernetFileError, match=r"^candidate 7's write-back: not a complete safetensors file"):
        WriteBack.from_bytes(data[:-3], source="candidate 7's write-back")
    with pytest.raises(SupernetFileError, match=r"^snapshot: its format is 'autobert-zero-biws-write-back'"):
        SupernetSnapshot.from_bytes(data, source="snapshot")
