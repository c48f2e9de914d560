"""Scaled checkpoints: `small`, `base` and `large` of one searched architecture, as complete repo folders.

The sizes are the paper's (Table 6, `SIZE_PRESETS`); `large` repeats every (conv, attention) block of the
architecture in place (paper Appendix D.2, `repeat_blocks_in_place`), so a 12-layer architecture gives a
24-layer large model. Each size gets the weights that exist: a pretrained checkpoint of exactly that
architecture and size when one is given, else a seeded random initialisation — and its card says which.
A pretrained checkpoint of the same architecture at another size is named in the cards, since its weights
cannot fill a model of different width.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import SIZE_PRESETS, architecture_key, layers_at_size
from modeling_autobert_zero.configuration_autobert_zero import ARCHITECTURE_PRESETS
from training.tokenization import load_tokenizer

from .arguments import ScaleArguments
from .hub import PublishError, WeightsProvenance, build_repo_folder, push_folder, seeded_model
from .model_card import CardSettings
from .publish import pretraining_record


SIZE_FIELDS = ("hidden_size", "num_attention_heads", "intermediate_size")


def scaled_layers(layers: Sequence[Mapping[str, Any]], size: str) -> list[dict[str, Any]]:
    """The architecture at ``size``: unchanged for small and base, every block repeated in place for large."""
    return layers_at_size(layers, size)


def scaled_config(
    layers: Sequence[Mapping[str, Any]],
    size: str,
    size_presets: Mapping[str, Mapping[str, int]] = SIZE_PRESETS,
    **fields: Any,
) -> AutoBertZeroConfig:
    """The config of ``layers`` at a paper size; ``fields`` set the rest (``vocab_size``, ``pad_token_id``)."""
    if size not in size_presets:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(size_presets)}")
    return AutoBertZeroConfig.at_size(layers, size, **{**size_presets[size], **fields})


def architecture_of(source: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``layers`` of a preset name, a checkpoint directory or a ``config.json`` (validated on the way)."""
    if str(source) in ARCHITECTURE_PRESETS:
        return ARCHITECTURE_PRESETS[str(source)]()
    path = Path(source)
    if not path.exists():
        raise PublishError(
            f"architecture: {source} is neither a preset ({', '.join(ARCHITECTURE_PRESETS)}) nor an existing "
            "checkpoint directory or config.json"
        )
    return AutoBertZeroConfig.from_pretrained(str(path)).layers


def _fits(config: AutoBertZeroConfig, trained: AutoBertZeroConfig) -> bool:
    return (
        architecture_key(trained.layers) == architecture_key(config.layers)
        and all(getattr(trained, name) == getattr(config, name) for name in (*SIZE_FIELDS, "vocab_size"))
    )


def _describe(path: Path, config: AutoBertZeroConfig) -> str:
    return (
        f"`{path}`: {config.num_hidden_layers} layers, hidden size {config.hidden_size}, pretrained by this "
        "project at that size (its weights cannot fill this width)"
    )


def build_scaled_checkpoints(
    layers: Sequence[Mapping[str, Any]],
    tokenizer,
    output_dir: str | os.PathLike,
    sizes: Sequence[str] = tuple(SIZE_PRESETS),
    trained_checkpoints: Sequence[str | os.PathLike] = (),
    size_presets: Mapping[str, Mapping[str, int]] = SIZE_PRESETS,
    name_prefix: str = "autobert-zero",
    seed: int = 0,
    flops_seq_length: int = 128,
    organization: str | None = None,
) -> list[Path]:
    """Write ``output_dir/<name_prefix>-<size>`` for every size and return the folders.

    A trained checkpoint must be a pretraining checkpoint of ``layers`` (or of its large form); one whose
    sizes and vocabulary match a size gives that size its weights, the others are named in the cards.
    """
    base_key = architecture_key(layers)
    large_key = architecture_key(scaled_layers(layers, "large"))
    trained = {}
    for path in map(Path, trained_checkpoints):
        config = AutoBertZeroConfig.from_pretrained(str(path))
        if architecture_key(config.layers) not in (base_key, large_key):
            raise PublishError(f"{path}: its layers are not the architecture being scaled (nor its large form)")
        if config.architectures != ["AutoBertZeroForPreTraining"]:
            raise PublishError(f"{path}/config.json: expected a pretraining checkpoint (AutoBertZeroForPreTraining), got {config.architectures}")
        trained[path] = config
    folders = []
    for size in sizes:
        config = scaled_config(layers, size, size_presets, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        matching = [path for path, trained_config in trained.items() if _fits(config, trained_config)]
        results: dict[str, Any] = {}
        if matching:
            source = matching[0]
            model = AutoBertZeroForPreTraining.from_pretrained(str(source))
            results = pretraining_record(source)
            weights = WeightsProvenance("pretrained", f"Pretrained by this project, from `{source}`.", str(source))
        else:
            model = seeded_model(AutoBertZeroForPreTraining, config, seed)
            related = [_describe(path, trained_config) for path, trained_config in trained.items()]
            weights = WeightsProvenance(
                "random",
                f"Seeded initialisation (seed {seed}) of the `{size}` size: no checkpoint pretrained at this size was "
                "given. Pretrain it before any use.",
                related=related,
            )
        name = f"{name_prefix}-{size}"
        repo_id = f"{organization}/{name}" if organization else None
        folders.append(build_repo_folder(
            model, tokenizer, Path(output_dir) / name, CardSettings(model_name=name, repo_id=repo_id), weights, results,
            flops_seq_length=flops_seq_length,
        ))
    return folders


def run_scaling(arguments: ScaleArguments) -> list[tuple[Path, str | None]]:
    """`scripts/scale_checkpoint.py`: build the folders, then, with ``push``, push each to ORGANIZATION/NAME."""
    layers = architecture_of(arguments.architecture)
    tokenizer_source = arguments.tokenizer or arguments.architecture
    try:
        tokenizer = load_tokenizer(tokenizer_source)
    except (OSError, ValueError) as error:
        raise PublishError(f"no tokenizer ({error}); pass --tokenizer with a vocab.txt or tokenizer directory") from None
    folders = build_scaled_checkpoints(
        layers,
        tokenizer,
        arguments.output_dir,
        arguments.sizes,
        arguments.trained_checkpoints,
        name_prefix=arguments.name_prefix,
        seed=arguments.seed,
        flops_seq_length=arguments.flops_seq_length,
        organization=arguments.organization,
    )
    if not arguments.push:
        return [(folder, None) for folder in folders]
    return [
        (folder, push_folder(folder, f"{arguments.organization}/{folder.name}", arguments.private)) for folder in folders
    ]
