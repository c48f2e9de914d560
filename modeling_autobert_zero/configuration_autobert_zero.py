"""AutoBERT-Zero configuration: BERT's size fields plus the searched architecture as plain data."""

from __future__ import annotations

import copy
from typing import Any

from transformers import PreTrainedConfig

from .attention_programs import (
    DEFAULT_MAX_PROGRAM_LENGTH,
    Program,
    ProgramError,
    parse_program,
    validate_program,
)


CONV_KERNEL_SIZES = (3, 5, 7, 9, 15, 31, 65)
LAYER_TYPES = ("attention", "conv")

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

# Paper Table 6 sizes. `large` doubles the 12-layer stack by repeating every (conv, attention) block in
# place (paper Appendix D.2), so only `small` and `base` list a layer count.
SIZE_PRESETS: dict[str, dict[str, int]] = {
    "small": {"hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "base": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
}


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


def repeat_blocks_in_place(layers: list[dict]) -> list[dict]:
    """Scale depth as the paper's `large` does: every (conv, attention) block appears twice in a row.

    A stack that is not made of (conv, attention) pairs (plain BERT) repeats each layer in place instead,
    which is the same rule with blocks of one layer.
    """
    paired = len(layers) % 2 == 0 and all(
        layers[i]["type"] == "conv" and layers[i + 1]["type"] == "attention" for i in range(0, len(layers), 2)
    )
    block = 2 if paired else 1
    repeated = []
    for start in range(0, len(layers), block):
        chunk = layers[start : start + block]
        repeated.extend(copy.deepcopy(chunk) + copy.deepcopy(chunk))
    return repeated


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


def validate_layers(layers: Any, max_program_length: int) -> list[Program | int]:
    """Check every layer of an architecture; return each layer's canonical program or kernel size.

    Any malformed entry, whatever its type, raises a ``ValueError`` that starts with ``layers[i]`` and, for
    programs, names the instruction, op and shapes (SPEC §2).
    """
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ValueError(f"layers: expected a non-empty list of layer objects, got {layers!r:.80}")
    compiled: list[Program | int] = []
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, dict):
            raise ValueError(f"{where}: expected an object with a 'type', got {layer!r:.80}")
        layer_type = layer.get("type")
        if layer_type == "attention":
            if set(layer) != {"type", "program"}:
                raise ValueError(f"{where}: an attention layer has exactly the keys 'type' and 'program', got {sorted(map(str, layer))}")
            try:
                compiled.append(validate_program(parse_program(layer["program"]), max_program_length))
            except ProgramError as error:
                raise ValueError(f"{where} (attention): {error}") from None
        elif layer_type == "conv":
            if set(layer) != {"type", "kernel_size"}:
                raise ValueError(f"{where}: a conv layer has exactly the keys 'type' and 'kernel_size', got {sorted(map(str, layer))}")
            kernel_size = layer["kernel_size"]
            if type(kernel_size) is not int or kernel_size not in CONV_KERNEL_SIZES:
                raise ValueError(f"{where} (conv): kernel_size must be one of {CONV_KERNEL_SIZES}, got {kernel_size!r:.40}")
            compiled.append(kernel_size)
        else:
            raise ValueError(f"{where}: 'type' must be one of {LAYER_TYPES}, got {layer_type!r:.40}")
    return compiled


class AutoBertZeroConfig(PreTrainedConfig):
    r"""
    Configuration of an AutoBERT-Zero backbone: BERT's embedding and size fields, plus `layers`, the
    searched architecture (SPEC §1–§3), so any architecture of the search space is rebuilt from `config.json`.

    Args:
        layers (`list[dict]`, *optional*):
            One entry per layer: `{"type": "attention", "program": ...}` (an expression string such as
            `"matmul(softmax(scale(matmul(Q, transpose(K)))), V)"` or an instruction list
            `[{"op": ..., "args": [...]}, ...]`) or `{"type": "conv", "kernel_size": k}` with k in
            (3, 5, 7, 9, 15, 31, 65). Defaults to `num_hidden_layers` BERT attention layers.
        max_program_length (`int`, *optional*, defaults to 16):
            The longest program accepted (validity rule 6).
        conv_kernel_dropout (`float`, *optional*, defaults to 0.1):
            DropConnect on the normalised lightweight-conv kernel during training (Wu et al., 2019).
        conv_num_heads (`int`, *optional*):
            Heads of the lightweight convolution (kernels shared by `hidden_size / conv_num_heads`
            channels). Defaults to `num_attention_heads`.
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
        pad_token_id: int = 0,
        layers: list[dict] | None = None,
        max_program_length: int = DEFAULT_MAX_PROGRAM_LENGTH,
        conv_kernel_dropout: float = 0.1,
        conv_num_heads: int | None = None,
        classifier_dropout: float | None = None,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("auto_map", dict(AUTO_CLASSES))
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        if isinstance(max_program_length, bool) or not isinstance(max_program_length, int) or max_program_length < 1:
            raise ValueError(f"max_program_length: expected a positive integer, got {max_program_length!r}")
        if layers is None:
            layers = [{"type": "attention", "program": BERT_PROGRAM} for _ in range(num_hidden_layers or 12)]
        compiled = validate_layers(layers, max_program_length)
        if num_hidden_layers is not None and num_hidden_layers != len(layers):
            raise ValueError(
                f"num_hidden_layers={num_hidden_layers} disagrees with the {len(layers)} entries of layers; "
                "leave num_hidden_layers out, it follows from layers"
            )
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"hidden_size={hidden_size} is not a multiple of num_attention_heads={num_attention_heads}"
            )
        conv_num_heads = conv_num_heads or num_attention_heads
        if hidden_size % conv_num_heads != 0:
            raise ValueError(f"hidden_size={hidden_size} is not a multiple of conv_num_heads={conv_num_heads}")

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
        self.layers = copy.deepcopy(list(layers))
        self.num_hidden_layers = len(layers)
        self.max_program_length = max_program_length
        self.conv_kernel_dropout = conv_kernel_dropout
        self.conv_num_heads = conv_num_heads
        self.classifier_dropout = classifier_dropout
        self._compiled_layers = compiled

    @property
    def compiled_layers(self) -> list[Program | int]:
        """Per layer: the canonical :class:`Program` of an attention layer, or the kernel size of a conv layer."""
        return self._compiled_layers

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_compiled_layers", None)
        output["layers"] = [
            {**layer, "program": layer["program"].to_json()} if isinstance(layer.get("program"), Program) else layer
            for layer in copy.deepcopy(self.layers)
        ]
        return output

    @classmethod
    def from_preset(cls, name: str = "autobert-zero", size: str = "base", **kwargs) -> "AutoBertZeroConfig":
        """A named architecture (SPEC §7, paper Table 5) at a paper size (Table 6).

        `name`: `bert`, `autobert-zero`, `autobert-zero-att-only`, `autobert-zero-conv-only`.
        `size`: `small`, `base`, `large` (`large` repeats every (conv, attention) block in place).
        Further keyword arguments override config fields (e.g. `vocab_size`).
        """
        if name not in ARCHITECTURE_PRESETS:
            raise ValueError(f"unknown preset name {name!r}; choose one of {sorted(ARCHITECTURE_PRESETS)}")
        if size not in SIZE_PRESETS:
            raise ValueError(f"unknown preset size {size!r}; choose one of {sorted(SIZE_PRESETS)}")
        layers = ARCHITECTURE_PRESETS[name]()
        if size == "large":
            layers = repeat_blocks_in_place(layers)
        return cls(layers=layers, **{**SIZE_PRESETS[size], **kwargs})
