"""The scripts' arguments: `HfArgumentParser` dataclasses, read from the command line or one .json/.yaml file.

Training hyperparameters are `TrainingArguments` subclasses with BERT's defaults (Devlin et al., 2019),
whose settings the paper follows: pretraining with Adam (lr 1e-4, β₂ 0.999, ε 1e-6, weight decay 0.01),
10,000 warm-up steps, linear decay, sequences of 128 tokens; finetuning with lr 2e-5 (GLUE; the paper's
grid is {1e-5, 1.5e-5, 2e-5, 3e-5, 4e-5, 5e-5} × weight decay {0.1, 0.01}) or 3e-5 (SQuAD), 10% warm-up.
Every value can be overridden from the command line or the config file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from .models import ARCHITECTURES, SIZES
from .overrides import split_overrides


PAPER_LEARNING_RATES = (1e-5, 1.5e-5, 2e-5, 3e-5, 4e-5, 5e-5)
PAPER_WEIGHT_DECAYS = (0.1, 0.01)


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of settings in a ``.json`` / ``.yaml`` / ``.yml`` file (an empty file is no settings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"arguments file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, got {type(data).__name__}")
    return data


def parse_script_arguments(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """Instances of ``dataclass_types`` from ``argv`` (default: the command line).

    ``argv`` may start with a ``.json`` / ``.yaml`` / ``.yml`` file of settings; ``key=value`` overrides
    (`training.overrides`) and ``--key value`` flags change them, flags taking precedence:

        python scripts/pretrain.py runs/pretrain.yaml max_steps=20 --output_dir runs/short

    A setting in the file or an override that no dataclass has is an error naming it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    source, settings = "the command line", {}
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        source, settings = argv[0], read_settings_file(argv[0])
        argv = argv[1:]
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    flags, overrides = split_overrides(argv, lambda key: key in actions)
    settings.update(overrides)
    unknown = sorted(set(settings) - set(actions))
    if unknown:
        raise ValueError(f"{source}: unknown argument {unknown[0]!r}; expected one of: {', '.join(sorted(actions))}")
    for name, value in settings.items():
        if actions[name].nargs in ("+", "*") and value is not None and not isinstance(value, list):
            settings[name] = [value]  # `train_files=a.txt` means a list of one file
        actions[name].required = False
    parser.set_defaults(**settings)
    *parsed, remaining = parser.parse_args_into_dataclasses(
        args=flags, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        names = ", ".join(sorted(actions))
        raise ValueError(f"unknown argument(s) {remaining}: expected --name value or name=value, name one of: {names}")
    return tuple(parsed)


def resolve_training_arguments(
    arguments_class: type[TrainingArguments],
    output_dir: str,
    given: TrainingArguments | None = None,
    **overrides: Any,
) -> TrainingArguments:
    """``given`` (or ``arguments_class``'s defaults) with ``output_dir`` and the non-``None`` ``overrides`` set."""
    overrides = {name: value for name, value in overrides.items() if value is not None}
    known = {field_.name for field_ in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown training arguments {unknown}; see transformers.TrainingArguments")
    if given is None:
        return arguments_class(output_dir=str(output_dir), **overrides)
    return dataclasses.replace(given, output_dir=str(output_dir), **overrides)


@dataclass
class ConsoleArguments:
    """What a script prints; see `training.console`."""

    verbose: bool = field(
        default=False,
        metadata={"help": "Print every training log record (losses, learning rate, ...) on the console too; they "
                          "always go to OUTPUT_DIR/training.log (and to TensorBoard with --report_to tensorboard)."},
    )


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` with BERT's pretraining defaults (BERT used 256 sequences per step, 1M steps)."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (BERT: 1e-4)."})
    warmup_steps: float = field(default=10_000, metadata={"help": "Linear warm-up steps (a float < 1: a fraction)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "Adam epsilon (BERT: 1e-6)."})
    max_steps: int = field(default=1_000_000, metadata={"help": "Optimizer steps (BERT: 1M at batch 256)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Sequences per device and step."})
    logging_steps: float = field(default=100, metadata={"help": "Log losses every this many steps."})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the losses of the first step too."})
    save_steps: float = field(
        default=10_000,
        metadata={"help": "Write a resumable checkpoint (model and optimizer state) every this many steps; a run "
                          "shorter than this writes none, only its final model."},
    )
    save_total_limit: int | None = field(default=3, metadata={"help": "Checkpoints kept."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports losses only."})
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata={"help": "Where to log: tensorboard (under output_dir/runs), none, ..."}
    )
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "Pin batches in memory (helps only with a GPU)."}
    )


@dataclass
class FinetuningArguments(TrainingArguments):
    """`TrainingArguments` with BERT's GLUE finetuning defaults; no intermediate checkpoints."""

    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up (a float < 1: a fraction of training)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Examples per device and step."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Examples per device in evaluation."})
    logging_steps: float = field(default=50, metadata={"help": "Log the loss every this many steps."})
    save_strategy: str = field(default="no", metadata={"help": "Intermediate checkpoints ('no', 'steps', 'epoch')."})
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "Pin batches in memory (helps only with a GPU)."}
    )


@dataclass
class SquadTrainingArguments(FinetuningArguments):
    """`TrainingArguments` with BERT's SQuAD finetuning defaults."""

    learning_rate: float = field(default=3e-5, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs."})
    per_device_train_batch_size: int = field(default=12, metadata={"help": "Examples per device and step."})


@dataclass
class PretrainingModelArguments:
    tokenizer: str = field(metadata={"help": "A WordPiece vocab.txt or a saved tokenizer directory."})
    architecture: str = field(
        default="autobert-zero",
        metadata={
            "help": f"A preset, or '{ARCHITECTURES[-1]}' for the transformers.BertForPreTraining baseline.",
            "choices": ARCHITECTURES,
        },
    )
    size: str = field(default="small", metadata={"help": "Paper size (Table 6).", "choices": SIZES})
    config_file: str | None = field(
        default=None, metadata={"help": "A config.json (any architecture) to use instead of architecture/size."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Config fields to override, e.g. 'hidden_size=64,num_attention_heads=2'."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue pretraining a saved checkpoint instead of a fresh model."}
    )


@dataclass
class PretrainingDataArguments:
    train_files: list[str] = field(
        metadata={"help": "Text files (WikiText or blank-line-separated) or a Hub dataset 'name[:config]'."}
    )
    validation_files: list[str] | None = field(default=None, metadata={"help": "Held-out text for eval losses."})
    text_format: str = field(
        default="auto", metadata={"help": "Text layout.", "choices": ("auto", "wikitext", "plain")}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per sequence, [CLS] and [SEP]s included."})
    nsp_probability: float = field(default=0.5, metadata={"help": "Share of pairs whose second segment is random."})
    short_seq_probability: float = field(
        default=0.1, metadata={"help": "Share of documents packed to a shorter random length."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked (80/10/10)."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Where datasets caches (default: HF cache)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many validation pairs."})


@dataclass
class GlueArguments:
    model_name_or_path: str = field(metadata={"help": "A pretrained checkpoint directory (its tokenizer is used)."})
    task_name: str = field(metadata={"help": "A GLUE task, a comma-separated list, or 'all'."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "GLUE root (with <TASK>/ folders) or one task's folder; omit to load nyu-mll/glue from the Hub."
        },
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "vocab.txt or tokenizer dir (default: the checkpoint's)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    learning_rates: list[float] | None = field(
        default=None, metadata={"help": "A grid of learning rates (default: the training arguments' one)."}
    )
    weight_decays: list[float] | None = field(
        default=None, metadata={"help": "A grid of weight decays (default: the training arguments' one)."}
    )
    paper_grid: bool = field(
        default=False, metadata={"help": "Search the paper's grid: lr {1e-5..5e-5} × weight decay {0.1, 0.01}."}
    )
    mnli_checkpoint: str | None = field(
        default=None, metadata={"help": "Start RTE, MRPC and STS-B from this MNLI-finetuned checkpoint."}
    )
    init_from_mnli: bool = field(
        default=False,
        metadata={"help": "Start RTE, MRPC and STS-B from this run's best MNLI model (needs mnli among the tasks)."},
    )
    skip_malformed_rows: bool = field(
        default=False, metadata={"help": "Skip (and count) TSV rows with a wrong field count instead of failing."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many dev examples."})
    write_test_predictions: bool = field(
        default=True, metadata={"help": "Write GLUE submission files for the test sets."}
    )
    save_best_model: bool = field(
        default=True,
        metadata={"help": "Keep the fine-tuned model of every task's best run in its run folder "
                          "(--no_save_best_model: keep only results)."},
    )


@dataclass
class SquadArguments:
    model_name_or_path: str = field(metadata={"help": "A pretrained checkpoint directory (its tokenizer is used)."})
    train_file: str = field(metadata={"help": "SQuAD-format JSON to train on."})
    validation_file: str = field(metadata={"help": "SQuAD-format JSON to evaluate (EM / F1) and predict."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "vocab.txt or tokenizer dir (default: the checkpoint's)."}
    )
    version_2_with_negative: bool | None = field(
        default=None, metadata={"help": "SQuAD 2.0 (default: from the files)."}
    )
    max_seq_length: int = field(default=384, metadata={"help": "Tokens per feature."})
    doc_stride: int = field(default=128, metadata={"help": "Overlap between windows of a long context."})
    max_query_length: int = field(default=64, metadata={"help": "Questions are cut to this many tokens."})
    n_best_size: int = field(default=20, metadata={"help": "Start / end candidates per feature."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer in tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training questions."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many evaluation questions."})


@dataclass
class BenchmarkArguments:
    tokenizer: str = field(metadata={"help": "A WordPiece vocab.txt or a saved tokenizer directory."})
    train_files: list[str] = field(metadata={"help": "Text to build the benchmark batches from."})
    size: str = field(default="small", metadata={"help": "Paper size of every model.", "choices": SIZES})
    config_overrides: str | None = field(default=None, metadata={"help": "Config fields to override in every model."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per step."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per sequence."})
    steps: int = field(default=10, metadata={"help": "Timed training steps per model (the models take turns)."})
    warmup_steps: int = field(default=2, metadata={"help": "Untimed steps per model first (at least 1)."})
    seed: int = field(default=0, metadata={"help": "Seeds weights, pairs and masks."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Where datasets caches."})
    output_file: str | None = field(default=None, metadata={"help": "Also write the results as JSON here."})
