"""The BIWS super-net (SPEC §5): one set of weights every candidate is initialised from and trains back into.

Per layer position the super-net holds both branches: the attention branch (``W_Q, W_K, W_V, W_P`` and
``W_O``) and the conv branch (GLU projection, output projection and an :class:`ElasticKernel`: 65 taps of
kernel logits plus one learned transformation matrix per smaller size, identity-initialised and chained
65 → 31 → 15 → 9 → 7 → 5 → 3 as Once-for-All does for 2-D kernels). Embeddings, LayerNorms, FFNs, the pooler
and the MLM/NSP heads are shared by every candidate.

A candidate's conv kernel is a *derived* tensor, so it cannot be written back by copying: the
transformation matrices and the 65 taps it came from must be what training updated. The candidate is
therefore trained *through* the chain: :meth:`BiwsSupernet.candidate` builds an
``AutoBertZeroForPreTraining`` whose conv layers hold copies of the 65 taps and of the transforms on their
chain as parameters, and compute their kernel from them (a ``torch.nn.utils.parametrize`` parametrization).
Gradients reach the taps and the transforms; :meth:`BiwsSupernet.write_back` copies them back exactly.
Everything else is copied name for name. :meth:`BiwsSupernet.extract` gives the plain weights of an
ordinary ``AutoBertZeroForPreTraining`` (kernel already derived), for finetuning and export.

This module owns all tensors of the search; the strategies never see it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn.utils import parametrize

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero.attention_programs import INPUT_NAMES
from modeling_autobert_zero.configuration_autobert_zero import CONV_KERNEL_SIZES

from .state import atomic_write_bytes


KERNEL_CHAIN = tuple(sorted(CONV_KERNEL_SIZES, reverse=True))  # 65, 31, 15, 9, 7, 5, 3
SUPERNET_FILE_ROLE = "supernet"  # its key in the search state's evaluator_files
BACKBONE = "autobert_zero."
TIED_ALIASES = {  # the MLM decoder is tied to the word embeddings and the prediction bias
    "cls.predictions.decoder.weight": "autobert_zero.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
ELASTIC_TAPS = "parametrizations.kernel.original"
ELASTIC_TRANSFORM = re.compile(r"parametrizations\.kernel\.0\.transforms\.(\d+)$")
_MIXER_KEY = re.compile(r"^autobert_zero\.encoder\.layer\.(\d+)\.mixer\.(.+)$")
_LAYER_KEY = re.compile(r"^autobert_zero\.encoder\.layer\.(\d+)\.(.+)$")


def chain_kernel(taps: torch.Tensor, transforms: Mapping[str, torch.Tensor], kernel_size: int) -> torch.Tensor:
    """The ``kernel_size``-tap kernel derived from the largest kernel ``taps`` (heads, 65).

    Each step crops the centre ``k`` taps of the previous kernel and applies ``transforms[str(k)]``
    (``F.linear``: new_tap_j = Σ_i tap_i · T[j, i]), from 65 down to ``kernel_size``; identity transforms
    therefore give the plain centre crop.
    """
    kernel = taps
    for size in KERNEL_CHAIN[1:]:
        if size < kernel_size:
            break
        start = (kernel.shape[-1] - size) // 2
        kernel = F.linear(kernel[..., start : start + size], transforms[str(size)])
    return kernel


def chain_sizes(kernel_size: int) -> tuple[int, ...]:
    """The transforms a ``kernel_size``-tap kernel is derived through (empty for the largest size)."""
    return tuple(size for size in KERNEL_CHAIN[1:] if size >= kernel_size)


class ElasticKernel(nn.Module):
    """65 taps of kernel logits per head and a (k, k) transformation matrix for every smaller size k."""

    def __init__(self, num_heads: int):
        super().__init__()
        self.taps = nn.Parameter(torch.empty(num_heads, KERNEL_CHAIN[0]))
        self.transforms = nn.ParameterDict({str(size): nn.Parameter(torch.eye(size)) for size in KERNEL_CHAIN[1:]})

    def forward(self, kernel_size: int) -> torch.Tensor:
        return chain_kernel(self.taps, self.transforms, kernel_size)


class ChainedKernel(nn.Module):
    """A candidate conv layer's parametrization: its kernel computed from its copy of the 65 taps (the
    parametrized tensor) through its copies of the transforms on its chain, so both are trained."""

    def __init__(self, transforms: Mapping[str, torch.Tensor], kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.transforms = nn.ParameterDict(
            {str(size): nn.Parameter(transforms[str(size)].detach().clone()) for size in chain_sizes(kernel_size)}
        )

    def forward(self, taps: torch.Tensor) -> torch.Tensor:
        return chain_kernel(taps, self.transforms, self.kernel_size)


class AttentionBranch(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.input_projections = nn.ModuleDict({name: nn.Linear(hidden_size, hidden_size) for name in INPUT_NAMES})
        self.output_projection = nn.Linear(hidden_size, hidden_size)


class ConvBranch(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.glu_projection = nn.Linear(hidden_size, 2 * hidden_size)
        self.output_projection = nn.Linear(hidden_size, hidden_size)
        self.elastic_kernel = ElasticKernel(num_heads)


class SupernetLayer(nn.Module):
    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        hidden = config.hidden_size
        self.attention = AttentionBranch(hidden)
        self.conv = ConvBranch(hidden, config.conv_num_heads)
        self.mixer_layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(hidden, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, hidden)
        self.output_layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)


class _Namespace(nn.Module):
    """A bare container, so super-net names read like the model's (``embeddings.LayerNorm.weight``)."""


class BiwsSupernet(nn.Module):
    """Bi-branch weight sharing over ``num_layers`` positions.

    ``model_settings`` are the :class:`~modeling_autobert_zero.AutoBertZeroConfig` fields every candidate
    shares (sizes, vocabulary, dropouts; not ``layers``). Initialisation follows the model's
    (BERT's: normal(0, ``initializer_range``) weights, zero biases, unit LayerNorms, a zero padding
    embedding, small normal kernel logits) and is seeded, so two super-nets with the same seed are equal.
    """

    def __init__(self, model_settings: Mapping[str, Any], num_layers: int, seed: int = 0):
        super().__init__()
        self.model_settings = dict(model_settings)
        self.num_layers = num_layers
        config = self.candidate_config([{"type": "conv", "kernel_size": KERNEL_CHAIN[-1]}] * num_layers)
        self.config = config
        hidden = config.hidden_size
        self.embeddings = _Namespace()
        self.embeddings.word_embeddings = nn.Embedding(config.vocab_size, hidden)
        self.embeddings.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.layer = nn.ModuleList([SupernetLayer(config) for _ in range(num_layers)])
        self.pooler = _Namespace()
        self.pooler.dense = nn.Linear(hidden, hidden)
        self.cls = _Namespace()
        self.cls.predictions = _Namespace()
        self.cls.predictions.transform = _Namespace()
        self.cls.predictions.transform.dense = nn.Linear(hidden, hidden)
        self.cls.predictions.transform.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.cls.predictions.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.cls.seq_relationship = nn.Linear(hidden, 2)
        self._initialise(seed)

    @torch.no_grad()
    def _initialise(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        std = self.config.initializer_range
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std, generator=generator)
                if isinstance(module, nn.Linear):
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, ElasticKernel):
                module.taps.normal_(0.0, std, generator=generator)
        if self.config.pad_token_id is not None:
            self.embeddings.word_embeddings.weight[self.config.pad_token_id].zero_()

    # -----------------------------------------------------------------------------------------------------
    # Candidates.
    # -----------------------------------------------------------------------------------------------------

    def candidate_config(self, architecture: Sequence[Mapping[str, Any]]) -> AutoBertZeroConfig:
        return AutoBertZeroConfig(layers=[dict(layer) for layer in architecture], **self.model_settings)

    def _check_architecture(self, architecture: Sequence[Mapping[str, Any]]) -> None:
        if len(architecture) != self.num_layers:
            raise ValueError(f"the super-net has {self.num_layers} layer positions, the architecture {len(architecture)}")

    def supernet_name(self, name: str, architecture: Sequence[Mapping[str, Any]]) -> str:
        """The super-net parameter a candidate parameter comes from (tied aliases resolved)."""
        name = TIED_ALIASES.get(name, name)
        mixer = _MIXER_KEY.match(name)
        if mixer:
            index, rest = int(mixer.group(1)), mixer.group(2)
            branch = "attention" if architecture[index]["type"] == "attention" else "conv"
            if rest == "kernel" or rest == ELASTIC_TAPS:
                return f"layer.{index}.conv.elastic_kernel.taps"
            transform = ELASTIC_TRANSFORM.match(rest)
            if transform:
                return f"layer.{index}.conv.elastic_kernel.transforms.{transform.group(1)}"
            return f"layer.{index}.{branch}.{rest}"
        layer = _LAYER_KEY.match(name)
        if layer:
            return f"layer.{layer.group(1)}.{layer.group(2)}"
        return name[len(BACKBONE) :] if name.startswith(BACKBONE) else name

    def candidate_names(self, architecture: Sequence[Mapping[str, Any]]) -> list[str]:
        """The state-dict names of the candidate's ``AutoBertZeroForPreTraining`` (built on the meta device)."""
        with torch.device("meta"):
            model = AutoBertZeroForPreTraining(self.candidate_config(architecture))
        return list(model.state_dict())

    @torch.no_grad()
    def extract(self, architecture: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """The candidate's weights as a plain ``AutoBertZeroForPreTraining`` state dict (copies; conv kernels
        derived through the chain), loadable with ``load_state_dict(..., strict=True)``."""
        self._check_architecture(architecture)
        parameters = dict(self.named_parameters())
        weights = {}
        for name in self.candidate_names(architecture):
            mixer = _MIXER_KEY.match(name)
            if mixer and mixer.group(2) == "kernel":
                index = int(mixer.group(1))
                kernel = self.layer[index].conv.elastic_kernel(architecture[index]["kernel_size"])
                weights[name] = kernel.detach().clone().contiguous()
            else:
                weights[name] = parameters[self.supernet_name(name, architecture)].detach().clone()
        return weights

    def candidate(self, architecture: Sequence[Mapping[str, Any]]) -> AutoBertZeroForPreTraining:
        """A trainable candidate initialised from the super-net, its conv kernels parametrised through the
        chain (see the module docstring). Train it, then hand its ``state_dict()`` to :meth:`write_back`."""
        model = AutoBertZeroForPreTraining(self.candidate_config(architecture))
        model.load_state_dict(self.extract(architecture), strict=True)
        for index, layer in enumerate(architecture):
            if layer["type"] != "conv":
                continue
            mixer = model.autobert_zero.encoder.layer[index].mixer
            elastic = self.layer[index].conv.elastic_kernel
            del mixer.kernel
            mixer.kernel = nn.Parameter(elastic.taps.detach().clone())
            parametrize.register_parametrization(
                mixer, "kernel", ChainedKernel(elastic.transforms, layer["kernel_size"]), unsafe=True
            )
        return model

    @torch.no_grad()
    def write_back(self, architecture: Sequence[Mapping[str, Any]], state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy a trained candidate's weights back to the positions they came from.

        ``state_dict`` is the ``state_dict()`` of a model from :meth:`candidate` (conv kernels as taps and
        transforms). Of the 65 taps, only those the candidate's kernel depends on are written: the centre 31
        for a kernel of 31 taps or fewer. A plain derived kernel is refused: it cannot be written back exactly.
        """
        self._check_architecture(architecture)
        expected = set(self.candidate_names(architecture))
        expected = {name for name in expected if not (_MIXER_KEY.match(name) and name.endswith(".mixer.kernel"))}
        for index, layer in enumerate(architecture):
            if layer["type"] == "conv":
                prefix = f"autobert_zero.encoder.layer.{index}.mixer."
                expected.add(prefix + ELASTIC_TAPS)
                expected.update(f"{prefix}parametrizations.kernel.0.transforms.{size}" for size in chain_sizes(layer["kernel_size"]))
        given = set(state_dict)
        if given != expected:
            missing, unexpected = sorted(expected - given), sorted(given - expected)
            raise ValueError(
                "write_back: the state dict does not match this architecture's candidate "
                f"(missing {missing[:4]}{'…' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
                f"{'…' if len(unexpected) > 4 else ''}); pass the state_dict() of the model candidate() built"
            )
        parameters = dict(self.named_parameters())
        for name, tensor in state_dict.items():
            if name in TIED_ALIASES:
                continue
            target = parameters[self.supernet_name(name, architecture)]
            if name.endswith(ELASTIC_TAPS):
                kernel_size = architecture[int(_MIXER_KEY.match(name).group(1))]["kernel_size"]
                used = KERNEL_CHAIN[0] if kernel_size == KERNEL_CHAIN[0] else KERNEL_CHAIN[1]
                start = (KERNEL_CHAIN[0] - used) // 2
                target[:, start : start + used].copy_(tensor[:, start : start + used])
            else:
                target.copy_(tensor)

    # -----------------------------------------------------------------------------------------------------
    # Files.
    # -----------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Safetensors, written atomically; the metadata records how to rebuild the super-net."""
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        metadata = {"model_settings": json.dumps(self.model_settings, sort_keys=True), "num_layers": str(self.num_layers)}
        atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))

    @staticmethod
    def _file_metadata(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "model_settings" not in metadata or "num_layers" not in metadata:
            raise ValueError(f"{path}: not a BIWS super-net file (no model_settings/num_layers in its metadata)")
        return json.loads(metadata["model_settings"]), int(metadata["num_layers"])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BiwsSupernet":
        model_settings, num_layers = cls._file_metadata(path)
        supernet = cls(model_settings, num_layers)
        supernet.load_tensors(load_file(str(path)), str(path))
        return supernet

    def load(self, path: str | os.PathLike) -> None:
        """Replace this super-net's weights with a saved one of the same settings."""
        model_settings, num_layers = self._file_metadata(path)
        if (model_settings, num_layers) != (json.loads(json.dumps(self.model_settings)), self.num_layers):
            raise ValueError(
                f"{path}: saved for {num_layers} layers with {model_settings}, this super-net has "
                f"{self.num_layers} layers with {self.model_settings}"
            )
        self.load_tensors(load_file(str(path)), str(path))

    @torch.no_grad()
    def load_tensors(self, tensors: Mapping[str, torch.Tensor], source: str) -> None:
        own = self.state_dict()
        if set(tensors) != set(own):
            missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
            raise ValueError(f"{source}: super-net tensors do not match (missing {missing[:4]}, unexpected {unexpected[:4]})")
        for name, tensor in tensors.items():
            if tensor.shape != own[name].shape:
                raise ValueError(f"{source}: {name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)}")
            own[name].copy_(tensor)

