"""Scaled checkpoints: `large` is `base` with every (conv, attention) block repeated in place (layer order and
shapes), each size loads with `AutoModel(..., trust_remote_code=True)`, and the weights are what the card says."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from publishing.hub import load_in_fresh_process
from publishing.model_card import RESULTS_DIR, WEIGHTS
from publishing.scaling import build_scaled_checkpoints, scaled_config, scaled_layers
from training.tokenization import load_tokenizer


VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"

ATTENTION_A = "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(K)))))), Q)"
ATTENTION_B = "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), V))))), V)"
SEARCHED = [
    {"type": "conv", "kernel_size": 9},
    {"type": "attention", "program": ATTENTION_A},
    {"type": "conv", "kernel_size": 3},
    {"type": "attention", "program": ATTENTION_B},
]
# Tiny stand-ins for the paper's sizes; base and large share a width so their layers compare shape for shape.
TINY_SIZES = {
    "small": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
    "base": {"hidden_size": 24, "num_attention_heads": 2, "intermediate_size": 48},
    "large": {"hidden_size": 24, "num_attention_heads": 2, "intermediate_size": 48},
}


def layer_shapes(state: dict[str, torch.Tensor], index: int) -> dict[str, tuple[int, ...]]:
    prefix = f"autobert_zero.encoder.layer.{index}."
    return {name[len(prefix):]: tuple(tensor.shape) for name, tensor in state.items() if name.startswith(prefix)}


def test_large_repeats_every_block_of_base_in_place():
    assert scaled_layers(SEARCHED, "large") == [SEARCHED[0], SEARCHED[1], SEARCHED[0], SEARCHED[1],
                                                SEARCHED[2], SEARCHED[3], SEARCHED[2], SEARCHED[3]]
    assert scaled_layers(SEARCHED, "base") == SEARCHED and scaled_layers(SEARCHED, "small") == SEARCHED
    preset = AutoBertZeroConfig.from_preset("autobert-zero", "base").layers
    assert scaled_config(preset, "large").to_dict()["layers"] == AutoBertZeroConfig.from_preset("autobert-zero", "large").to_dict()["layers"]
    assert scaled_config(preset, "large").hidden_size == 1024 and scaled_config(preset, "small").num_hidden_layers == 12


def test_scaled_folders_load_and_large_has_base_layers_duplicated(tmp_path):
    tokenizer = load_tokenizer(VOCAB)
    folders = build_scaled_checkpoints(SEARCHED, tokenizer, tmp_path, size_presets=TINY_SIZES, flops_seq_length=16)
    assert [folder.name for folder in folders] == ["autobert-zero-small", "autobert-zero-base", "autobert-zero-large"]
    states = {folder.name.rsplit("-", 1)[1]: load_file(str(folder / "model.safetensors")) for folder in folders}
    base, large = states["base"], states["large"]
    for index in range(8):  # large layers 4b..4b+3 are conv_b, attn_b, conv_b, attn_b
        block, position = divmod(index, 4)
        assert layer_shapes(large, index) == layer_shapes(base, 2 * block + position % 2)
    assert layer_shapes(large, 0) != layer_shapes(large, 1)  # conv and attention layers really differ
    assert not torch.equal(large["autobert_zero.encoder.layer.0.mixer.kernel"], large["autobert_zero.encoder.layer.2.mixer.kernel"])

    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "PYTHONPATH"))}
    environment.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    loaded = load_in_fresh_process(folders, environment=environment)  # AutoModel, trust_remote_code, package hidden
    for folder, size, model in zip(folders, TINY_SIZES, loaded):
        assert model["module"].startswith("transformers_modules.")
        assert model["hidden_size"] == TINY_SIZES[size]["hidden_size"]
        assert model["layers"] == scaled_layers(SEARCHED, size)
        card = (folder / "README.md").read_text()
        assert "**These weights are a random initialisation. Nothing here was trained.**" in card
        assert f"of the `{size}` size" in card


def test_a_checkpoint_pretrained_at_one_size_gives_that_size_its_weights(tmp_path):
    tokenizer = load_tokenizer(VOCAB)
    trained = scaled_config(SEARCHED, "small", TINY_SIZES, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(1)
    model = AutoBertZeroForPreTraining(trained)
    model.save_pretrained(tmp_path / "trained-small")
    (tmp_path / "trained-small" / "pretraining_results.json").write_text('{"train_loss": 5.4321}')
    small, base = build_scaled_checkpoints(SEARCHED, tokenizer, tmp_path / "scaled", sizes=("small", "base"),
                                           trained_checkpoints=[tmp_path / "trained-small"], size_presets=TINY_SIZES)
    saved = load_file(str(small / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        if name in saved:
            torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0)
    assert '"kind": "pretrained"' in (small / RESULTS_DIR / WEIGHTS).read_text()
    assert "5.4321" in (small / "README.md").read_text()
    base_card = (base / "README.md").read_text()
    assert "random initialisation" in base_card and "trained-small" in base_card  # named as trained at another size
