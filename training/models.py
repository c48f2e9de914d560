"""Models to train: pretraining models from a preset or a config file, and task models on a pretrained backbone.

`transformers-bert` is `transformers.BertForPreTraining` at the sizes of the `bert` preset: the
side-by-side baseline, trained on the same data with the same settings.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForPreTraining, BertConfig, PreTrainedConfig, PreTrainedModel

from modeling_autobert_zero import AutoBertZeroConfig
from modeling_autobert_zero.architecture import SIZE_PRESETS
from modeling_autobert_zero.configuration_autobert_zero import ARCHITECTURE_PRESETS, BERT_PROGRAM


TRANSFORMERS_BERT = "transformers-bert"
ARCHITECTURES = (*ARCHITECTURE_PRESETS, TRANSFORMERS_BERT)
SIZES = tuple(SIZE_PRESETS)
_BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
)


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """``"hidden_size=64,num_attention_heads=2"`` → ``{"hidden_size": 64, "num_attention_heads": 2}``.

    Each value is read as JSON (numbers, ``true``, ``null``, ``"text"``), or kept as a string when it is not
    JSON. Values with commas (a ``layers`` list) need the other form: a JSON object, ``'{"layers": [...]}'``.
    """
    if text is not None and text.strip().startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"config_overrides: not a valid JSON object ({error})") from None
        if not isinstance(fields, dict):
            raise ValueError("config_overrides: expected a JSON object of config fields")
        return fields
    overrides: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"config_overrides: expected key=value pairs separated by commas, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides


def bert_config_like(config: AutoBertZeroConfig) -> BertConfig:
    """A `BertConfig` with the sizes, dropout and initialisation of ``config`` (its layer types aside)."""
    return BertConfig(**{name: getattr(config, name) for name in _BERT_FIELDS})


def pretraining_config(
    architecture: str = "autobert-zero", size: str = "small", config_file: str | None = None, **overrides
) -> PreTrainedConfig:
    """The config of a model to pretrain: from ``config_file`` (a ``config.json`` of any architecture, or a
    checkpoint directory) when given, else the named preset at a paper size. ``overrides`` set config fields
    (``vocab_size``, ``hidden_size``, ...) and are validated like any config; ``layers`` replaces the preset's
    architecture and is scaled to the size like a preset (`AutoBertZeroConfig.at_size`: at `large` every block
    is repeated in place), and for the plain-BERT architectures ``num_hidden_layers`` sets the model's depth."""
    if config_file is not None:
        if not os.path.exists(config_file):
            raise FileNotFoundError(f"config_file: {config_file} does not exist")
        loaded = AutoConfig.from_pretrained(config_file)
        fields = loaded.to_dict()
        if "layers" in overrides:
            fields.pop("num_hidden_layers", None)  # it follows from the new layers
        return type(loaded).from_dict({**fields, **overrides})
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    if size not in SIZE_PRESETS:
        raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")
    plain_bert = architecture in ("bert", TRANSFORMERS_BERT)
    if architecture == TRANSFORMERS_BERT and any(
        layer != {"type": "attention", "program": BERT_PROGRAM} for layer in overrides.get("layers", [])
    ):
        raise ValueError(f"{TRANSFORMERS_BERT} is plain BERT: set num_hidden_layers, not other layer types")
    if plain_bert and "num_hidden_layers" in overrides and "layers" not in overrides:
        config = AutoBertZeroConfig(**{**SIZE_PRESETS[size], **overrides})  # BERT layers, num_hidden_layers of them
    elif "layers" in overrides:
        config = AutoBertZeroConfig.at_size(overrides.pop("layers"), size, **overrides)
    else:
        config = AutoBertZeroConfig.from_preset("bert" if plain_bert else architecture, size, **overrides)
    return bert_config_like(config) if architecture == TRANSFORMERS_BERT else config


def build_pretraining_model(config: PreTrainedConfig) -> PreTrainedModel:
    """A freshly initialised MLM + NSP model for ``config`` (`AutoBertZeroForPreTraining`, `BertForPreTraining`)."""
    return AutoModelForPreTraining.from_config(config)


def task_model(source: str | os.PathLike | nn.Module, auto_class, **config_updates) -> PreTrainedModel:
    """A task model (``auto_class``, e.g. `AutoModelForSequenceClassification`) on ``source``'s backbone.

    ``source`` is a checkpoint directory, or a model instance with any head (a pretraining model the search
    just trained, say). From an instance, the backbone's weights are copied into a new task model, so the
    source is never modified; every backbone weight must find its place (the pooler may be left out by heads
    without one). ``config_updates`` set task fields such as ``num_labels`` and ``problem_type``; a head of
    another size in a checkpoint (an MNLI classifier reused for RTE) is re-initialised.
    """
    if isinstance(source, (str, os.PathLike)):
        return auto_class.from_pretrained(os.fspath(source), ignore_mismatched_sizes=True, **config_updates)
    if not isinstance(source, PreTrainedModel):
        raise TypeError(f"source: expected a checkpoint directory or a PreTrainedModel, got {type(source).__name__}")
    config = copy.deepcopy(source.config)
    for name, value in config_updates.items():
        setattr(config, name, value)
    target = auto_class.from_config(config)
    missing, unexpected = target.base_model.load_state_dict(source.base_model.state_dict(), strict=False)
    unexpected = [name for name in unexpected if not name.startswith("pooler.")]
    if missing or unexpected:
        raise ValueError(
            f"the backbone of {type(source).__name__} does not fit {type(target).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return target
