"""AutoBERT-Zero configuration: BERT's size fields plus the searched architecture as plain data."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .architecture import (
    CONV_KERNEL_SIZES,
    LAYER_TYPES,
    SIZE_PRESETS,
    compile_layers,
    layers_at_size,
    repeat_blocks_in_place,
)
from .attention_programs import DEFAULT_MAX_PROGRAM_LENGTH, Program, shown, without_cycle_collection


BERT_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"

# SPEC §7: the searched backbone of the paper's Figure 7, one entry per layer.
_SOFTPLUS_K_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(neg(K))))))), add(Q, K))"
_LAYER_4_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(add(logsigmoid(Q), add(Q, K)))))))), Q)"
_LAYER_6_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(K)))))), Q)"
_LAYER_10_PROGRAM = (
    "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), add(softsign(scale(softsign(K))), V)))))), V)"
)
_LAYER_12_PROGRAM = "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), V))))), V)"

AUTOBERT_ZERO_LAYERS = (
    {"type": "conv", "kernel_size": 65},
    {"type": "attention", "program": _SOFTPLUS_K_PROGRAM},
    {"type": "conv", "kernel_size": 9},
    {"type": "attention", "program": _LAYER_4_PROGRAM},
    {"type": "conv", "kernel_size": 3},
    {"type": "attention", "program": _LAYER_6_PROGRAM},
    {"type": "conv", "kernel_size": 7},
    {"type": "attention", "program": _LAYER_6_PROGRAM},
    {"type": "conv", "kernel_size": 7},
    {"type": "attention", "program": _LAYER_10_PROGRAM},
    {"type": "conv", "kernel_size": 3},
    {"type": "attention", "program": _LAYER_12_PROGRAM},
)

def _att_only(layers: list[dict]) -> list[dict]:
    """Paper Table 5 ablation: every conv layer replaced by the attention layer after it."""
    replaced = []
    for index, layer in enumerate(layers):
        if layer["type"] == "conv":
            following = next((later for later in layers[index + 1 :] if later["type"] == "attention"), None)
            if following is None:
                raise ValueError(f"layers[{index}]: a conv layer with no attention layer after it to copy")
            layer = following
        replaced.append(copy.deepcopy(layer))
    return replaced


def _conv_only(layers: list[dict]) -> list[dict]:
    """Paper Table 5 ablation: every attention layer replaced by the conv layer before it."""
    replaced = []
    for index, layer in enumerate(layers):
        if layer["type"] == "attention":
            previous = next((earlier for earlier in reversed(layers[:index]) if earlier["type"] == "conv"), None)
            if previous is None:
                raise ValueError(f"layers[{index}]: an attention layer with no conv layer before it to copy")
            layer = previous
        replaced.append(copy.deepcopy(layer))
    return replaced


ARCHITECTURE_PRESETS = {
    "bert": lambda: [{"type": "attention", "program": BERT_PROGRAM} for _ in range(12)],
    "autobert-zero": lambda: copy.deepcopy(list(AUTOBERT_ZERO_LAYERS)),
    "autobert-zero-att-only": lambda: _att_only(list(AUTOBERT_ZERO_LAYERS)),
    "autobert-zero-conv-only": lambda: _conv_only(list(AUTOBERT_ZERO_LAYERS)),
}

AUTO_CLASSES = {
    "AutoConfig": "configuration_autobert_zero.AutoBertZeroConfig",
    "AutoModel": "modeling_autobert_zero.AutoBertZeroModel",
    "AutoModelForPreTraining": "modeling_autobert_zero.AutoBertZeroForPreTraining",
    "AutoModelForMaskedLM": "modeling_autobert_zero.AutoBertZeroForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_autobert_zero.AutoBertZeroForSequenceClassification",
    "AutoModelForQuestionAnswering": "modeling_autobert_zero.AutoBertZeroForQuestionAnswering",
    "AutoModelForTokenClassification": "modeling_autobert_zero.AutoBertZeroForTokenClassification",
    "AutoModelForMultipleChoice": "modeling_autobert_zero.AutoBertZeroForMultipleChoice",
}


def _positive_integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {shown(value)}")


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {shown(value)}")


def _optional_probability(name: str, value: Any) -> None:
    if value is not None:
        _probability(name, value)


def _positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {shown(value)}")


def _non_negative_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a non-negative finite number, got {shown(value)}")


def _activation(name: str, value: Any) -> None:
    if not isinstance(value, str) or value not in ACT2FN:
        raise ValueError(f"{name}: expected the name of an activation in transformers' ACT2FN, got {shown(value)}")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {shown(value)}")


# `repr` prints at most this many characters of `layers` JSON (see `AutoBertZeroConfig.__repr__`).
_REPR_LAYERS_LIMIT = 20_000

# Checked whenever the field is set, at construction or later (the cross-field rules: `check_sizes`).
_FIELD_CHECKS = {
    "vocab_size": _positive_integer,
    "hidden_size": _positive_integer,
    "num_attention_heads": _positive_integer,
    "intermediate_size": _positive_integer,
    "max_position_embeddings": _positive_integer,
    "type_vocab_size": _positive_integer,
    "hidden_act": _activation,
    "hidden_dropout_prob": _probability,
    "attention_probs_dropout_prob": _probability,
    "conv_kernel_dropout": _probability,
    "classifier_dropout": _optional_probability,
    "initializer_range": _non_negative_number,
    "layer_norm_eps": _positive_number,
    "sparse_prediction": _boolean,
}


class AutoBertZeroConfig(PreTrainedConfig):
    r"""
    Configuration of an AutoBERT-Zero backbone: BERT's embedding and size fields, plus `layers`, the
    searched architecture (SPEC §1–§3), so any architecture of the search space is rebuilt from `config.json`.

    The architecture is the single source of truth: `num_hidden_layers` follows from `layers` (it is saved to
    `config.json` for tools that read it, and checked against `layers` when loaded), assigning `layers` or
    `max_program_length` validates and recompiles every layer, and every size field is checked when it is set;
    an invalid value is a `ValueError` naming the field (or the layer and instruction).

    Args:
        layers (`list[dict]`, *optional*):
            One entry per layer: `{"type": "attention", "program": ...}` (an expression string such as
            `"matmul(softmax(scale(matmul(Q, transpose(K)))), V)"` or an instruction list
            `[{"op": ..., "args": [...]}, ...]`) or `{"type": "conv", "kernel_size": k}` with k in
            (3, 5, 7, 9, 15, 31, 65). Defaults to `num_hidden_layers` (default 12) BERT attention layers.
            Reading `config.layers` gives a copy: change the architecture by assigning a new list.
        max_program_length (`int`, *optional*, defaults to 16):
            The longest program accepted (validity rule 6).
        conv_kernel_dropout (`float`, *optional*, defaults to 0.1):
            DropConnect on the normalised lightweight-conv kernel during training (Wu et al., 2019).
        conv_num_heads (`int`, *optional*):
            Heads of the lightweight convolution (kernels shared by `hidden_size / conv_num_heads`
            channels). Unset (`None`), it follows `num_attention_heads`.
        sparse_prediction (`bool`, *optional*, defaults to `False`):
            With `labels`, compute the masked-LM logits only at the labelled positions, as `ModernBertConfig`'s
            field of the same name does: the loss is the same, the vocabulary projection runs on ~15% of the
            tokens, and the logits have shape `(num_labelled, vocab_size)` in the order of
            `labels[labels != -100]`. Off, the MLM heads return `(batch, seq, vocab_size)` logits like every
            `transformers` head. This project's pretraining switches it on while it trains.
        The other arguments mean what they mean in `BertConfig`.
    """

    model_type = "autobert_zero"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int | None = None,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int | None = 0,
        layers: list[dict] | None = None,
        max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH,
        conv_kernel_dropout: float = 0.1,
        conv_num_heads: int | None = None,
        classifier_dropout: float | None = None,
        sparse_prediction: bool = False,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("auto_map", dict(AUTO_CLASSES))
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.conv_kernel_dropout = conv_kernel_dropout
        self.conv_num_heads = conv_num_heads
        self.classifier_dropout = classifier_dropout
        self.sparse_prediction = sparse_prediction
        self._max_program_length = DEFAULT_MAX_PROGRAM_LENGTH
        self.max_program_length = max_program_length  # before `layers`, which it limits
        if layers is None:
            if num_hidden_layers is not None:
                _positive_integer("num_hidden_layers", num_hidden_layers)
            layers = [{"type": "attention", "program": BERT_PROGRAM} for _ in range(num_hidden_layers or 12)]
        self.layers = layers
        if num_hidden_layers is not None:
            self.num_hidden_layers = num_hidden_layers  # only checks that it agrees with `layers`
        self.check_sizes()

    def __setattr__(self, name: str, value: Any) -> None:
        check = _FIELD_CHECKS.get(name)
        if check is not None:
            check(name, value)
        super().__setattr__(name, value)

    def check_sizes(self) -> None:
        """The rules between size fields, checked at construction and again when a model is built from the
        config (fields may be changed one at a time in between): heads divide the hidden size, and the pad
        token is a word of the vocabulary."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_size % self.conv_num_heads != 0:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of conv_num_heads={self.conv_num_heads}")
        pad = getattr(self, "pad_token_id", None)
        if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size):
            raise ValueError(
                f"pad_token_id: expected a token id in [0, vocab_size={self.vocab_size}) or None, got {shown(pad)}"
            )

    @property
    def layers(self) -> list[dict]:
        """The architecture, one entry per layer, programs as written (a fresh copy: assign a new list to change
        the architecture)."""
        with without_cycle_collection():
            return json.loads(self._layers_json)

    @layers.setter
    def layers(self, layers: list[dict]) -> None:
        compiled = compile_layers(layers, self.max_program_length)
        # Kept as JSON text: immutable, so the config can never drift from what was validated, and copied in
        # constant time by `to_dict`'s deep copy of the config's attributes.
        self._layers_json = json.dumps(
            [
                {**layer, "program": layer["program"].to_json()} if isinstance(layer.get("program"), Program) else dict(layer)
                for layer in layers
            ]
        )
        self._compiled_layers = compiled

    @property
    def num_hidden_layers(self) -> int:
        """The number of layers, which follows from `layers`."""
        return len(self._compiled_layers)

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int) -> None:
        if value != len(self._compiled_layers):
            raise ValueError(
                f"num_hidden_layers={shown(value)} disagrees with the {len(self._compiled_layers)} entries of layers; it "
                "follows from layers: leave it out, or assign layers instead (e.g. config.layers = config.layers[:4])"
            )

    @property
    def max_program_length(self) -> int:
        return self._max_program_length

    @max_program_length.setter
    def max_program_length(self, value: int) -> None:
        _positive_integer("max_program_length", value)
        previous = self._max_program_length
        self._max_program_length = value
        if "_layers_json" in self.__dict__:
            try:
                self._compiled_layers = compile_layers(self.layers, value)
            except ValueError:
                self._max_program_length = previous
                raise

    @property
    def conv_num_heads(self) -> int:
        """Heads of the lightweight convolutions: as set, or `num_attention_heads` when unset."""
        return self._conv_num_heads or self.num_attention_heads

    @conv_num_heads.setter
    def conv_num_heads(self, value: int | None) -> None:
        if value is not None:
            _positive_integer("conv_num_heads", value)
        self._conv_num_heads = value

    @property
    def compiled_layers(self) -> list[Program | int]:
        """Per layer: the parsed and validated :class:`Program` of an attention layer, or the kernel size of a
        conv layer."""
        return list(self._compiled_layers)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        for derived in ("_layers_json", "_compiled_layers", "_max_program_length", "_conv_num_heads"):
            output.pop(derived, None)
        output["layers"] = self.layers
        output["num_hidden_layers"] = self.num_hidden_layers
        output["max_program_length"] = self.max_program_length
        output["conv_num_heads"] = self._conv_num_heads
        return output

    def __repr__(self) -> str:
        """As `transformers` prints a config, except that a long `layers` list is summarised: `from_pretrained`
        logs every config it builds, and printing a megabyte of layers as indented JSON would take seconds."""
        if len(self._layers_json) <= _REPR_LAYERS_LIMIT:
            return super().__repr__()
        summary = self.to_diff_dict()
        summary["layers"] = f"<{self.num_hidden_layers} layers, {len(self._layers_json)} characters of JSON: see config.layers>"
        return f"{self.__class__.__name__} {json.dumps(self._encode_special_floats(summary), indent=2, sort_keys=True)}\n"

    @classmethod
    def at_size(cls, layers: list[dict], size: str = "base", **kwargs) -> "AutoBertZeroConfig":
        """The architecture ``layers`` (as searched, at the 12-layer depth) at a paper size (Table 6): the
        size's widths, and for `large` every (conv, attention) block repeated in place (Appendix D.2).
        Keyword arguments override config fields, widths included."""
        layers = layers_at_size(layers, size)
        return cls(layers=layers, **{**SIZE_PRESETS[size], **kwargs})

    @classmethod
    def from_preset(cls, name: str = "autobert-zero", size: str = "base", **kwargs) -> "AutoBertZeroConfig":
        """A named architecture (SPEC §7, paper Table 5) at a paper size (Table 6), see :meth:`at_size`.

        `name`: `bert`, `autobert-zero`, `autobert-zero-att-only`, `autobert-zero-conv-only`.
        `size`: `small`, `base`, `large` (`large` repeats every (conv, attention) block in place).
        Further keyword arguments override config fields (e.g. `vocab_size`).
        """
        if name not in ARCHITECTURE_PRESETS:
            raise ValueError(f"unknown preset name {name!r}; choose one of {sorted(ARCHITECTURE_PRESETS)}")
        if size not in SIZE_PRESETS:
            raise ValueError(f"unknown preset size {size!r}; choose one of {sorted(SIZE_PRESETS)}")
        return cls.at_size(ARCHITECTURE_PRESETS[name](), size, **kwargs)


__all__ = [
    "ARCHITECTURE_PRESETS",
    "AUTOBERT_ZERO_LAYERS",
    "AUTO_CLASSES",
    "BERT_PROGRAM",
    "CONV_KERNEL_SIZES",
    "LAYER_TYPES",
    "SIZE_PRESETS",
    "AutoBertZeroConfig",
    "repeat_blocks_in_place",
]
