"""The BIWS super-net (SPEC §5), made of the model's own modules: the weights every candidate starts from
and trains back into.

**Structure.** The super-net is the module tree of an ``AutoBertZeroForPreTraining`` (``autobert_zero``,
``cls``) in which every layer's mixer is a :class:`BiBranchMixer` holding both branches of that position:
the model's attention mixer with all four projections ``W_Q, W_K, W_V, W_P`` and ``W_O``, and the model's
conv mixer at the largest kernel with one learned transformation matrix per smaller size
(:class:`ElasticLightweightConv`: identity-initialised, chained 65 → 31 → 15 → 9 → 7 → 5 → 3 as
Once-for-All does for 2-D kernels, shared by all channels of the layer). Embeddings, each position's FFN
and LayerNorms, the pooler and the MLM/NSP heads are the model's modules under the model's names, the MLM
decoder tied to the word embeddings as in the model. Initialisation is the model's own
(``initialize_weights``), seeded.

**Mapping.** :meth:`BiwsSupernet.module_pairs` is the one place that says where a candidate's weights live
(Once-for-All's ``get_active_subnet``): it walks the candidate's module tree beside the super-net's and
pairs modules of the same name, which are of the same class and so have the same parameters, except that a
candidate's mixer pairs with its position's attention or conv branch by its class. No names are matched by
pattern, so a parameter renamed in the model is renamed in both trees. :meth:`~BiwsSupernet.extract`,
:meth:`~BiwsSupernet.candidate` and :meth:`~BiwsSupernet.write_back_from` are operations on these pairs.

**Conv kernels.** A candidate's conv kernel is *derived*, so it cannot be written back by copying: the
taps and transforms it came from must be what training updates. A candidate's conv mixer therefore holds
copies of the 65 taps and of the transforms on its chain as parameters and computes its kernel from them (a
``torch.nn.utils.parametrize`` parametrization); gradients reach both, and the write-back returns exactly
those: the taps the kernel depends on (the centre 31 for any kernel of 31 taps or fewer) and its chain.

**Generations.** Reading and writing are values, so a generation's children can be trained anywhere:
:meth:`~BiwsSupernet.snapshot` freezes the super-net's tensors (:class:`SupernetSnapshot`, safetensors
bytes for another process), :meth:`BiwsSupernet.from_snapshot` rebuilds a super-net (or a read-only view)
from one, a trained candidate gives a :class:`WriteBack` (plain tensors, safetensors bytes) and
:meth:`~BiwsSupernet.apply` copies one in. A write-back holds values, not deltas: applying a generation's
write-backs in proposal order gives the same tensors whichever process computed them (the bytes are the
same too), where two overlap the later one wins, and re-applying the persisted write-backs of an
interrupted generation in order to its snapshot gives the same tensors again.
:meth:`~BiwsSupernet.write_back` does both steps at once (sequential BIWS).

This module owns all tensors of the search; the strategies never see it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn.utils import parametrize
from transformers.initialization import no_init_weights

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import CONV_KERNEL_SIZES
from modeling_autobert_zero.modeling_autobert_zero import AutoBertZeroLightweightConv, AutoBertZeroSearchedAttention

from .state import atomic_write_bytes


KERNEL_CHAIN = tuple(sorted(CONV_KERNEL_SIZES, reverse=True))  # 65, 31, 15, 9, 7, 5, 3
SUPERNET_FILE_ROLE = "supernet"  # its key in the search state's evaluator_files
SUPERNET_FORMAT = "autobert-zero-biws-supernet"
WRITE_BACK_FORMAT = "autobert-zero-biws-write-back"
FORMAT_VERSION = 1  # 1: the model's module tree with bi-branch mixers; files without a version are older
# An attention program that reads all four inputs, so the attention branch holds W_Q, W_K, W_V and W_P.
# The super-net never runs it: the program only decides which projections the module has.
ALL_INPUTS_PROGRAM = "matmul(softmax(scale(matmul(add(Q, P), transpose(K)))), V)"


class SupernetFileError(ValueError):
    """A super-net or write-back file (or buffer) that cannot be used; the message names it and says why."""


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


def used_taps(kernel_size: int) -> slice:
    """The taps of the largest kernel that a ``kernel_size``-tap kernel depends on: all 65 for 65; for any
    smaller size the centre 31, since every chain starts by cropping to 31 and mixing all of them."""
    width = KERNEL_CHAIN[0] if kernel_size == KERNEL_CHAIN[0] else KERNEL_CHAIN[1]
    start = (KERNEL_CHAIN[0] - width) // 2
    return slice(start, start + width)


class KernelChain(nn.Module):
    """A candidate conv mixer's parametrization: its kernel computed from its copy of the 65 taps (the
    parametrized tensor) through its copies of the transforms on its chain, so training updates both."""

    def __init__(self, transforms: Mapping[str, torch.Tensor], kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.transforms = nn.ParameterDict(
            {str(size): nn.Parameter(transforms[str(size)].detach().clone()) for size in chain_sizes(kernel_size)}
        )

    def forward(self, taps: torch.Tensor) -> torch.Tensor:
        return chain_kernel(taps, self.transforms, self.kernel_size)


class ElasticLightweightConv(AutoBertZeroLightweightConv):
    """The conv branch of one layer position: the model's conv mixer at the largest kernel (its ``kernel``
    holds 65 taps per head) plus a learned ``(k, k)`` transform for every smaller size ``k``.

    Being the model's conv mixer, it is initialised by the model (``_init_weights``); the transforms start
    as identities, so every smaller kernel starts as the centre crop of the 65 taps.
    """

    def __init__(self, config: AutoBertZeroConfig, layer_idx: int):
        super().__init__(config, KERNEL_CHAIN[0], layer_idx)
        self.kernel_transforms = nn.ParameterDict(
            {str(size): nn.Parameter(torch.eye(size)) for size in KERNEL_CHAIN[1:]}
        )

    def derived_kernel(self, kernel_size: int) -> torch.Tensor:
        return chain_kernel(self.kernel, self.kernel_transforms, kernel_size)

    def train_through_chain(self, mixer: AutoBertZeroLightweightConv) -> None:
        """Make a candidate's conv mixer compute its kernel from its own copies of these 65 taps and of the
        transforms on its chain (see :class:`KernelChain`), so that training updates exactly what
        :meth:`trained_slots` gives back."""
        del mixer.kernel
        mixer.kernel = nn.Parameter(self.kernel.detach().clone())
        parametrize.register_parametrization(
            mixer, "kernel", KernelChain(self.kernel_transforms, mixer.kernel_size), unsafe=True
        )

    def trained_slots(self, mixer: nn.Module, where: str) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(super-net parameter, trained value) for a mixer made by :meth:`train_through_chain`: the taps its
        kernel depends on (a centre slice of :attr:`kernel`) and each transform on its chain."""
        chain = mixer.parametrizations.kernel[0] if parametrize.is_parametrized(mixer, "kernel") else None
        if not isinstance(chain, KernelChain):
            raise ValueError(
                f"{where}: this conv kernel is a plain tensor, not derived through the kernel chain, so it cannot be "
                "written back exactly; write back a model that BiwsSupernet.candidate() built"
            )
        taps = mixer.parametrizations.kernel.original
        return [
            (self.kernel, taps[:, used_taps(chain.kernel_size)]),
            *((self.kernel_transforms[size], transform) for size, transform in chain.transforms.items()),
        ]

    def centre_taps(self, width: int) -> torch.Tensor:
        """The centre ``width`` taps of :attr:`kernel` (a view), where a write-back of a smaller kernel goes."""
        if width not in KERNEL_CHAIN[:2]:
            raise ValueError(f"{width} taps: a kernel depends on {KERNEL_CHAIN[0]} or {KERNEL_CHAIN[1]} of them (used_taps)")
        start = (self.kernel.shape[-1] - width) // 2
        return self.kernel[:, start : start + width]


class BiBranchMixer(nn.Module):
    """Both mixers of one layer position (SPEC §5). It never runs: a candidate's mixer takes its weights
    from the branch of its own class."""

    def __init__(self, attention: AutoBertZeroSearchedAttention, conv: ElasticLightweightConv):
        super().__init__()
        self.attention = attention
        self.conv = conv

    def branch_for(self, mixer: nn.Module) -> nn.Module:
        if isinstance(mixer, AutoBertZeroSearchedAttention):
            return self.attention
        if isinstance(mixer, AutoBertZeroLightweightConv):
            return self.conv
        raise TypeError(f"layer {self.conv.layer_idx}: no super-net branch for a {type(mixer).__name__} mixer")


def _initial_value(supernet_module: nn.Module, candidate_module: nn.Module, name: str) -> torch.Tensor:
    """The super-net tensor a candidate module's own parameter ``name`` starts from (a conv kernel derived)."""
    if isinstance(supernet_module, ElasticLightweightConv) and name == "kernel":
        return supernet_module.derived_kernel(candidate_module.kernel_size)
    return supernet_module.get_parameter(name)


def plain_state_dict(candidate: nn.Module) -> dict[str, torch.Tensor]:
    """A candidate's weights as a plain ``AutoBertZeroForPreTraining`` state dict, each chained conv kernel
    replaced by the kernel it derives: what finetuning starts from, read from the trained candidate itself
    (so a worker needs no super-net), and bit-equal to :meth:`BiwsSupernet.extract` after its write-back."""
    weights = candidate.state_dict()
    for name, module in candidate.named_modules():
        if parametrize.is_parametrized(module):
            prefix = f"{name}.parametrizations."
            weights = {key: value for key, value in weights.items() if not key.startswith(prefix)}
            weights.update({f"{name}.{tensor}": getattr(module, tensor).detach() for tensor in module.parametrizations})
    return weights


# ---------------------------------------------------------------------------------------------------------
# Values: snapshots and write-backs, as plain tensors and safetensors bytes.
# ---------------------------------------------------------------------------------------------------------


METADATA_KEY = "biws"  # the one metadata entry: safetensors writes several in an order that varies by process


def _to_bytes(tensors: Mapping[str, torch.Tensor], description: Mapping[str, Any]) -> bytes:
    """Safetensors bytes whose metadata is ``description`` as one sorted JSON document, so the same tensors
    and description give the same bytes in any process."""
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    return save_safetensors(contiguous, metadata={METADATA_KEY: json.dumps(dict(description), sort_keys=True)})


def _read_bytes(data: bytes, source: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of safetensors bytes."""
    try:
        tensors = load_safetensors(data)
    except SafetensorError as error:
        raise SupernetFileError(f"{source}: not a complete safetensors file ({error}); it is truncated or corrupted") from None
    header_length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_length]).get("__metadata__") or {}, tensors


def _read_file(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file, the tensors memory-mapped (read as they are used)."""
    try:
        tensors = load_safetensors_file(path)
        with safe_open(path, framework="pt") as handle:
            return handle.metadata() or {}, tensors
    except SafetensorError as error:
        raise SupernetFileError(f"{path}: not a complete safetensors file ({error}); it is truncated or corrupted") from None


def _description(metadata: Mapping[str, str], source: str, expected_format: str) -> dict[str, Any]:
    """The description :func:`_to_bytes` stored, checked to be in ``expected_format`` and this version."""
    if METADATA_KEY not in metadata:
        if expected_format == SUPERNET_FORMAT and "model_settings" in metadata:
            raise SupernetFileError(
                f"{source}: a super-net file in an older format (no format version; this version reads format "
                f"{FORMAT_VERSION}, the model's own module tree); resume it with the autobert-zero version that "
                "wrote it, or start a new search"
            )
        raise SupernetFileError(f"{source}: its metadata has no {METADATA_KEY!r} entry: not in the {expected_format!r} format")
    try:
        description = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise SupernetFileError(f"{source}: its {METADATA_KEY!r} metadata is not JSON ({error})") from None
    if not isinstance(description, dict) or description.get("format") != expected_format:
        found = description.get("format") if isinstance(description, dict) else None
        raise SupernetFileError(f"{source}: its format is {found!r}, expected {expected_format!r}")
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        age = "an older" if type(version) is int and version < FORMAT_VERSION else "a newer or unknown"
        raise SupernetFileError(
            f"{source}: {expected_format} format version {version!r} is {age} one; this version reads {FORMAT_VERSION}"
        )
    return description


def _supernet_description(model_settings: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    return {
        "format": SUPERNET_FORMAT,
        "format_version": FORMAT_VERSION,
        "model_settings": dict(model_settings),
        "num_layers": num_layers,
    }


@dataclasses.dataclass(frozen=True)
class SupernetSnapshot:
    """The super-net's tensors at one moment (copies, never written to): what every child of a generation
    starts from. ``tensors`` maps the super-net's parameter names (each tied parameter once) to tensors;
    :meth:`to_bytes` is the super-net file's content, so a snapshot travels to another process as bytes."""

    model_settings: Mapping[str, Any]
    num_layers: int
    tensors: Mapping[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        return _to_bytes(self.tensors, _supernet_description(self.model_settings, self.num_layers))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "super-net bytes") -> "SupernetSnapshot":
        return cls._checked(*_read_bytes(data, source), source)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "SupernetSnapshot":
        """A super-net file's snapshot, its tensors memory-mapped."""
        return cls._checked(*_read_file(path), str(path))

    @classmethod
    def _checked(cls, metadata: Mapping[str, str], tensors: dict[str, torch.Tensor], source: str) -> "SupernetSnapshot":
        description = _description(metadata, source, SUPERNET_FORMAT)
        model_settings, num_layers = description.get("model_settings"), description.get("num_layers")
        if not isinstance(model_settings, dict) or type(num_layers) is not int or num_layers < 1:
            raise SupernetFileError(
                f"{source}: expected an object of model settings and a positive num_layers in its metadata, got "
                f"{model_settings!r:.80} and {num_layers!r:.20}"
            )
        return cls(model_settings, num_layers, tensors)


@dataclasses.dataclass(frozen=True)
class WriteBack:
    """What one trained candidate gives back: exactly the super-net slots it trained (super-net parameter
    names → values; a conv layer's taps as the centre slice its kernel depends on, plus its chain's
    transforms). Plain tensors, so a worker can return it and a driver can persist it (:meth:`to_bytes`)
    before :meth:`BiwsSupernet.apply` copies it in."""

    architecture: list[dict[str, Any]]
    tensors: Mapping[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        description = {"format": WRITE_BACK_FORMAT, "format_version": FORMAT_VERSION, "architecture": self.architecture}
        return _to_bytes(self.tensors, description)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "write-back bytes") -> "WriteBack":
        metadata, tensors = _read_bytes(data, source)
        architecture = _description(metadata, source, WRITE_BACK_FORMAT).get("architecture")
        if not isinstance(architecture, list):
            raise SupernetFileError(f"{source}: expected the candidate's architecture (a list of layers) in its metadata")
        return cls(architecture, tensors)


# ---------------------------------------------------------------------------------------------------------
# The super-net.
# ---------------------------------------------------------------------------------------------------------


class BiwsSupernet(nn.Module):
    """Bi-branch weight sharing over ``num_layers`` positions (see the module docstring).

    ``model_settings`` are the :class:`~modeling_autobert_zero.AutoBertZeroConfig` fields every candidate
    shares (sizes, vocabulary, dropouts; not ``layers``). Two super-nets with the same settings and seed are
    equal; building one leaves torch's global random generator as it was. ``initialise=False`` builds the
    modules without initialising them, for tensors assigned next (:meth:`from_snapshot`).
    """

    def __init__(self, model_settings: Mapping[str, Any], num_layers: int, seed: int = 0, *, initialise: bool = True):
        super().__init__()
        self.model_settings = dict(model_settings)
        self.num_layers = num_layers
        self.shares_snapshot = False
        config = self.candidate_config([{"type": "attention", "program": ALL_INPUTS_PROGRAM}] * num_layers)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            if initialise:
                model = self._bi_branch_model(config)
                model.initialize_weights()  # the conv branches; everything else was initialised on construction
            else:
                with no_init_weights():
                    model = self._bi_branch_model(config)
                model.tie_weights()
        self.autobert_zero = model.autobert_zero
        self.cls = model.cls

    @staticmethod
    def _bi_branch_model(config: AutoBertZeroConfig) -> AutoBertZeroForPreTraining:
        model = AutoBertZeroForPreTraining(config)
        for index, layer in enumerate(model.autobert_zero.encoder.layer):
            layer.mixer = BiBranchMixer(layer.mixer, ElasticLightweightConv(config, index))
        return model

    def candidate_config(self, architecture: Sequence[Mapping[str, Any]]) -> AutoBertZeroConfig:
        return AutoBertZeroConfig(layers=[dict(layer) for layer in architecture], **self.model_settings)

    def _check_architecture(self, architecture: Sequence[Mapping[str, Any]]) -> None:
        if len(architecture) != self.num_layers:
            raise ValueError(f"the super-net has {self.num_layers} layer positions, the architecture {len(architecture)}")

    # -----------------------------------------------------------------------------------------------------
    # The mapping, and the operations on it.
    # -----------------------------------------------------------------------------------------------------

    def module_pairs(self, candidate: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
        """``(name, candidate module, super-net module)`` for every module of ``candidate`` (an
        ``AutoBertZeroForPreTraining`` of any architecture with this super-net's settings), parents first;
        ``name`` is the module's prefix in the candidate's state dict.

        The one place that says where a candidate's weights live: modules pair by name, and a mixer with
        its position's branch of the same class. Each candidate module's own parameters are those of its
        super-net module under the same names, except a conv mixer's kernel, which the conv branch derives
        (:class:`ElasticLightweightConv`); a candidate's kernel chain belongs to that branch too.
        """
        pairs: list[tuple[str, nn.Module, nn.Module]] = []

        def visit(name: str, candidate_module: nn.Module, supernet_module: nn.Module) -> None:
            if isinstance(supernet_module, BiBranchMixer):
                supernet_module = supernet_module.branch_for(candidate_module)
            pairs.append((name, candidate_module, supernet_module))
            chained = parametrize.is_parametrized(candidate_module)
            for child_name, child in candidate_module.named_children():
                if chained and child_name == "parametrizations":
                    continue
                try:
                    counterpart = supernet_module.get_submodule(child_name)
                except AttributeError:
                    raise ValueError(
                        f"candidate module {name}{child_name} has no counterpart in the super-net "
                        f"({self.num_layers} layers, {self.model_settings}); was the candidate built by another one?"
                    ) from None
                visit(f"{name}{child_name}.", child, counterpart)

        visit("", candidate, self)
        return pairs

    @torch.no_grad()
    def extract(self, architecture: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """The candidate's weights as a plain ``AutoBertZeroForPreTraining`` state dict (copies; conv kernels
        derived through the chain), loadable with ``load_state_dict(..., strict=True)``: for finetuning and
        export."""
        self._check_architecture(architecture)
        with torch.device("meta"):
            skeleton = AutoBertZeroForPreTraining(self.candidate_config(architecture))
        weights = {}
        for name, candidate_module, supernet_module in self.module_pairs(skeleton):
            for parameter_name, _ in candidate_module.named_parameters(recurse=False):
                value = _initial_value(supernet_module, candidate_module, parameter_name)
                weights[name + parameter_name] = value.detach().clone(memory_format=torch.contiguous_format)
        return weights

    @torch.no_grad()
    def candidate(self, architecture: Sequence[Mapping[str, Any]]) -> AutoBertZeroForPreTraining:
        """A trainable candidate initialised from the super-net, its conv kernels derived through their chains
        (see the module docstring). Train it, then hand it to :meth:`write_back_from` or :meth:`write_back`."""
        self._check_architecture(architecture)
        with no_init_weights():  # every weight is copied from the super-net next
            model = AutoBertZeroForPreTraining(self.candidate_config(architecture))
        model.tie_weights()
        for _, candidate_module, supernet_module in self.module_pairs(model):
            for parameter_name, parameter in candidate_module.named_parameters(recurse=False):
                parameter.copy_(_initial_value(supernet_module, candidate_module, parameter_name))
            if isinstance(supernet_module, ElasticLightweightConv):
                supernet_module.train_through_chain(candidate_module)
        return model

    def write_back_from(self, candidate: AutoBertZeroForPreTraining, copy: bool = True) -> WriteBack:
        """The slots a (trained) candidate from :meth:`candidate` gives back, as a value; the super-net is not
        changed. Only the projections an attention program reads are in it, only the branch a position used,
        of a conv layer only the taps its kernel depends on and the transforms on its chain.

        ``copy=False`` leaves the candidate's own tensors in it (no copy: valid until the candidate trains
        again), for a write-back applied at once."""
        slot_names = {id(parameter): name for name, parameter in self.named_parameters()}
        tensors: dict[str, torch.Tensor] = {}
        for name, candidate_module, supernet_module in self.module_pairs(candidate):
            if isinstance(supernet_module, ElasticLightweightConv):
                slots = supernet_module.trained_slots(candidate_module, where=name.rstrip("."))
            else:
                slots = [
                    (supernet_module.get_parameter(parameter_name), parameter)
                    for parameter_name, parameter in candidate_module.named_parameters(recurse=False)
                ]
            for slot, value in slots:
                value = value.detach()
                tensors[slot_names[id(slot)]] = value.clone(memory_format=torch.contiguous_format) if copy else value
        return WriteBack(architecture=candidate.config.to_dict()["layers"], tensors=tensors)

    @torch.no_grad()
    def apply(self, write_back: WriteBack) -> None:
        """Copy a write-back into the super-net, all of it or (if any entry does not fit) nothing."""
        if self.shares_snapshot:
            raise RuntimeError("this super-net shares a snapshot's tensors (from_snapshot(share=True)); applying would change the snapshot")
        slots = dict(self.named_parameters())
        elastic = {id(module.kernel): module for module in self.modules() if isinstance(module, ElasticLightweightConv)}
        targets = []
        for name, tensor in write_back.tensors.items():
            slot = slots.get(name)
            if slot is None:
                raise ValueError(f"write-back entry {name!r}: the super-net has no such parameter")
            target = slot
            if tensor.shape != slot.shape and id(slot) in elastic and tensor.shape[:-1] == slot.shape[:-1]:
                target = elastic[id(slot)].centre_taps(tensor.shape[-1])
            if tensor.shape != target.shape or tensor.dtype != target.dtype:
                raise ValueError(
                    f"write-back entry {name!r}: {tuple(tensor.shape)} {tensor.dtype}, the super-net holds "
                    f"{tuple(slot.shape)} {slot.dtype}"
                )
            targets.append((target, tensor))
        for target, tensor in targets:
            target.copy_(tensor)

    def write_back(self, candidate: AutoBertZeroForPreTraining) -> None:
        """Sequential BIWS: give a trained candidate's weights back to the positions they came from, now."""
        self.apply(self.write_back_from(candidate, copy=False))

    # -----------------------------------------------------------------------------------------------------
    # Snapshots and files.
    # -----------------------------------------------------------------------------------------------------

    def snapshot(self) -> SupernetSnapshot:
        tensors = {name: parameter.detach().clone() for name, parameter in self.named_parameters()}
        return SupernetSnapshot(dict(self.model_settings), self.num_layers, tensors)

    @classmethod
    def from_snapshot(cls, snapshot: SupernetSnapshot, share: bool = False) -> "BiwsSupernet":
        """A super-net holding a snapshot's values: a copy, or with ``share=True`` the snapshot's own tensors
        (no copy; enough to build candidates and write-backs, which copy, but :meth:`apply` is refused)."""
        tensors = snapshot.tensors if share else {name: tensor.clone() for name, tensor in snapshot.tensors.items()}
        supernet = cls._from_tensors(snapshot.model_settings, snapshot.num_layers, tensors)
        supernet.shares_snapshot = share
        return supernet

    @classmethod
    def _from_tensors(
        cls, model_settings: Mapping[str, Any], num_layers: int, tensors: Mapping[str, torch.Tensor]
    ) -> "BiwsSupernet":
        supernet = cls(model_settings, num_layers, initialise=False)
        supernet._check_tensors(tensors)
        owners: dict[str, list[tuple[nn.Module, str]]] = {}
        slot_names = {id(parameter): name for name, parameter in supernet.named_parameters()}
        for module in supernet.modules():
            for attribute, parameter in module.named_parameters(recurse=False):
                owners.setdefault(slot_names[id(parameter)], []).append((module, attribute))
        for name, places in owners.items():  # a tied parameter stays one parameter
            parameter = nn.Parameter(tensors[name])
            for module, attribute in places:
                setattr(module, attribute, parameter)
        return supernet

    def _check_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        if set(tensors) != set(own):
            missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
            raise ValueError(
                f"the tensors are not those of a super-net of {self.num_layers} layers with these settings "
                f"(missing {missing[:4]}{'…' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
                f"{'…' if len(unexpected) > 4 else ''})"
            )
        for name, tensor in tensors.items():
            if tensor.shape != own[name].shape or tensor.dtype != own[name].dtype:
                raise ValueError(
                    f"{name} is {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(own[name].shape)} {own[name].dtype}"
                )

    def save(self, path: str | os.PathLike) -> None:
        """Safetensors, written atomically: the bytes of :meth:`snapshot` (taken without an extra copy)."""
        tensors = {name: parameter.detach() for name, parameter in self.named_parameters()}
        atomic_write_bytes(path, _to_bytes(tensors, _supernet_description(self.model_settings, self.num_layers)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BiwsSupernet":
        snapshot = SupernetSnapshot.from_file(path)
        try:
            return cls._from_tensors(snapshot.model_settings, snapshot.num_layers, snapshot.tensors)
        except (ValueError, TypeError) as error:
            raise SupernetFileError(f"{path}: {error}") from error

    @torch.no_grad()
    def load(self, path: str | os.PathLike) -> None:
        """Replace this super-net's weights with a saved one of the same settings; a file that does not fit
        raises :class:`SupernetFileError` and changes nothing."""
        snapshot = SupernetSnapshot.from_file(path)
        saved = (json.loads(json.dumps(snapshot.model_settings)), snapshot.num_layers)
        if saved != (json.loads(json.dumps(self.model_settings)), self.num_layers):
            raise SupernetFileError(
                f"{path}: saved for {snapshot.num_layers} layers with {snapshot.model_settings}, this super-net has "
                f"{self.num_layers} layers with {self.model_settings}"
            )
        try:
            self._check_tensors(snapshot.tensors)
        except ValueError as error:
            raise SupernetFileError(f"{path}: {error}") from None
        for name, parameter in self.named_parameters():
            parameter.copy_(snapshot.tensors[name])
