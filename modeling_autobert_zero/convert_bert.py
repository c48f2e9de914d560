"""Turn a `transformers` BERT checkpoint into the `bert` architecture of this search space (SPEC §7).

Plain BERT is one point of the AutoBERT-Zero space: every layer is attention with the program
`matmul(softmax(scale(matmul(Q, transpose(K)))), V)`. Copying BERT's weights into it must reproduce BERT's
outputs, which pins the whole model (embeddings, interpreter, fused path, post-LN layers, heads) against a
trusted reference. `verify_conversion` measures exactly that.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForPreTraining, BertModel, PreTrainedModel

from .configuration_autobert_zero import BERT_PROGRAM, AutoBertZeroConfig
from .modeling_autobert_zero import AutoBertZeroForMaskedLM, AutoBertZeroForPreTraining, AutoBertZeroModel


# BERT class → the AutoBERT-Zero class with the same heads
_TARGET_CLASSES = {
    BertModel: AutoBertZeroModel,
    BertForPreTraining: AutoBertZeroForPreTraining,
    BertForMaskedLM: AutoBertZeroForMaskedLM,
}

# (pattern on the BERT key without its `bert.` prefix, replacement) for the backbone
_BACKBONE_RENAMES = [
    (r"^encoder\.layer\.(\d+)\.attention\.self\.query\.", r"encoder.layer.\1.mixer.input_projections.Q."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.key\.", r"encoder.layer.\1.mixer.input_projections.K."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.value\.", r"encoder.layer.\1.mixer.input_projections.V."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layer.\1.mixer.output_projection."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layer.\1.mixer_layer_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layer.\1.intermediate."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layer.\1.output."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layer.\1.output_layer_norm."),
    (r"^(embeddings|pooler)\.", r"\1."),
]


def config_from_bert(bert_config: BertConfig) -> AutoBertZeroConfig:
    """The `bert` preset with the sizes of `bert_config`; refuses BERT variants outside the search space."""
    if getattr(bert_config, "is_decoder", False) or getattr(bert_config, "add_cross_attention", False):
        raise ValueError("config.json: is_decoder/add_cross_attention BERT models are not encoders of this space")
    position_type = getattr(bert_config, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"config.json: position_embedding_type={position_type!r}; only 'absolute' is supported")
    return AutoBertZeroConfig(
        vocab_size=bert_config.vocab_size,
        hidden_size=bert_config.hidden_size,
        num_attention_heads=bert_config.num_attention_heads,
        intermediate_size=bert_config.intermediate_size,
        hidden_act=bert_config.hidden_act,
        hidden_dropout_prob=bert_config.hidden_dropout_prob,
        attention_probs_dropout_prob=bert_config.attention_probs_dropout_prob,
        max_position_embeddings=bert_config.max_position_embeddings,
        type_vocab_size=bert_config.type_vocab_size,
        initializer_range=bert_config.initializer_range,
        layer_norm_eps=bert_config.layer_norm_eps,
        pad_token_id=bert_config.pad_token_id,
        layers=[{"type": "attention", "program": BERT_PROGRAM} for _ in range(bert_config.num_hidden_layers)],
    )


def rename_bert_key(key: str, backbone_prefix: str) -> str:
    """Map one BERT parameter name to ours; head names (`cls.*`) are identical in both."""
    if key.startswith("cls."):
        return key
    key = key.removeprefix("bert.")
    for pattern, replacement in _BACKBONE_RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return f"{backbone_prefix}{renamed}"
    raise ValueError(f"no AutoBERT-Zero parameter corresponds to the BERT parameter {key!r}")


def convert_bert_model(bert: PreTrainedModel) -> PreTrainedModel:
    """A `BertModel`/`BertForPreTraining`/`BertForMaskedLM` → the same model in this space, same weights."""
    target_class = _TARGET_CLASSES.get(type(bert))
    if target_class is None:
        raise ValueError(
            f"cannot convert {type(bert).__name__}; supported: {', '.join(cls.__name__ for cls in _TARGET_CLASSES)}"
        )
    config = config_from_bert(bert.config)
    if target_class is AutoBertZeroModel:
        model = AutoBertZeroModel(config, add_pooling_layer=bert.pooler is not None)
    else:
        model = target_class(config)
    prefix = "" if target_class is AutoBertZeroModel else "autobert_zero."
    converted = {rename_bert_key(key, prefix): value for key, value in bert.state_dict().items()}
    converted = {key: value for key, value in converted.items() if not key.endswith(("position_ids", "token_type_ids"))}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"weights do not line up: missing {missing}, unexpected {unexpected}")
    return model.eval()


@torch.inference_mode()
def verify_conversion(bert: PreTrainedModel, converted: PreTrainedModel, seed: int = 0) -> float:
    """Max abs difference of every output tensor on a padded batch with both token types (eval mode).

    The converted model runs twice, through its fused attention path and through the general program
    interpreter, so both are held to BERT's numbers.
    """
    generator = torch.Generator().manual_seed(seed)
    batch, seq_len = 3, min(32, bert.config.max_position_embeddings)
    input_ids = torch.randint(1, bert.config.vocab_size, (batch, seq_len), generator=generator)
    token_type_ids = (torch.arange(seq_len) >= seq_len // 2).long().expand(batch, -1).contiguous()
    attention_mask = torch.ones(batch, seq_len, dtype=torch.long)
    attention_mask[1, seq_len - 7 :] = 0
    attention_mask[2, seq_len // 3 :] = 0
    inputs = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    bert_outputs = bert.eval()(**inputs, return_dict=True)
    real = attention_mask.bool()
    differences = []
    for use_interpreter in (False, True):
        our_outputs = converted.eval()(**inputs, return_dict=True, use_interpreter=use_interpreter)
        for name, reference in bert_outputs.items():
            if not isinstance(reference, torch.Tensor):
                continue
            ours = our_outputs[name]
            if reference.dim() >= 2 and reference.shape[:2] == real.shape:
                reference, ours = reference[real], ours[real]  # outputs at padded positions are not compared
            differences.append((ours - reference).abs().max().item())
    return max(differences)


def convert_bert_checkpoint(bert_dir: str | Path, output_dir: str | Path, tolerance: float = 1e-5) -> float:
    """Convert a saved BERT checkpoint directory, check its outputs, save it with its tokenizer."""
    bert_dir, output_dir = Path(bert_dir), Path(output_dir)
    if not (bert_dir / "config.json").is_file():
        raise FileNotFoundError(f"{bert_dir}: no config.json; expected a transformers BERT checkpoint directory")
    bert_config = BertConfig.from_pretrained(bert_dir)
    architectures = bert_config.architectures or ["BertModel"]
    bert_class = {cls.__name__: cls for cls in _TARGET_CLASSES}.get(architectures[0])
    if bert_class is None:
        raise ValueError(
            f"{bert_dir / 'config.json'}: architectures={architectures}; expected one of "
            f"{', '.join(cls.__name__ for cls in _TARGET_CLASSES)}"
        )
    bert = bert_class.from_pretrained(bert_dir, attn_implementation="eager").eval()
    converted = convert_bert_model(bert)
    difference = verify_conversion(bert, converted)
    if difference > tolerance:
        raise RuntimeError(f"converted model differs from BERT by {difference:.3g} > {tolerance:g}; nothing saved")
    converted.save_pretrained(output_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    except (OSError, ValueError):
        tokenizer = None
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    return difference
