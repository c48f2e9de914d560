"""BERT → `bert` preset conversion: same outputs as `transformers` BERT, every head, padding and token types."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForPreTraining, BertConfig, BertForMaskedLM, BertForPreTraining, BertModel

from modeling_autobert_zero import AutoBertZeroConfig
from modeling_autobert_zero.convert_bert import convert_bert_checkpoint, convert_bert_model, verify_conversion

REPO = Path(__file__).resolve().parents[1]


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2, vocab_size=99,
        max_position_embeddings=64,
    )
    return BertConfig(**{**values, **overrides})


@pytest.mark.parametrize("bert_class", [BertModel, BertForPreTraining, BertForMaskedLM])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_converted_model_reproduces_bert(bert_class, attn_implementation):
    torch.manual_seed(0)
    bert = bert_class(tiny_bert_config()).eval()
    converted = convert_bert_model(bert)
    converted.config._attn_implementation = attn_implementation
    assert verify_conversion(bert, converted) <= 1e-5
    assert converted.config.layers == [
        {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}
    ] * 2


def test_conversion_detects_a_wrong_weight():
    torch.manual_seed(0)
    bert = BertModel(tiny_bert_config()).eval()
    converted = convert_bert_model(bert)
    with torch.no_grad():
        converted.encoder.layer[1].mixer.input_projections["K"].weight.add_(0.5 * torch.randn_like(converted.encoder.layer[1].mixer.input_projections["K"].weight))
    assert verify_conversion(bert, converted) > 1e-3


def test_cli_converts_a_checkpoint_that_loads_with_auto_classes(tmp_path):
    torch.manual_seed(0)
    bert = BertForPreTraining(tiny_bert_config())
    bert.save_pretrained(tmp_path / "bert")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "convert_bert.py"), "--bert", str(tmp_path / "bert"),
         "--output", str(tmp_path / "converted")],
        capture_output=True, text=True, check=True,
    )
    assert "max abs output difference" in result.stdout
    saved = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert saved["model_type"] == "autobert_zero"
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "converted")
    assert verify_conversion(bert.eval(), model) <= 1e-5


def test_unsupported_bert_variants_are_refused(tmp_path):
    with pytest.raises(ValueError, match="position_embedding_type"):
        from modeling_autobert_zero.convert_bert import config_from_bert

        config_from_bert(tiny_bert_config(position_embedding_type="relative_key"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_bert_checkpoint(tmp_path / "missing", tmp_path / "out")


def test_conversion_config_is_the_bert_preset_at_base_size():
    preset = AutoBertZeroConfig.from_preset("bert", "base")
    converted = convert_bert_model(BertModel(tiny_bert_config(num_hidden_layers=12))).config
    assert converted.layers == preset.layers
