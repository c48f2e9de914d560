"""Pretraining: `pretrain()` for any MLM + NSP model (the search's candidates too), and the script's driver."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from torch import nn
from transformers import AutoModelForPreTraining, TrainerCallback, TrainingArguments, set_seed

from .arguments import (
    PretrainingArguments,
    PretrainingDataArguments,
    PretrainingModelArguments,
    resolve_training_arguments,
)
from .atomic_files import write_json_atomic
from .models import build_pretraining_model, parse_config_overrides, pretraining_config
from .pretraining_data import PretrainingCollator, build_pretraining_dataset
from .run_info import is_demo_data
from .tokenization import load_tokenizer
from .trainers import PretrainingTrainer


logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PretrainingResult:
    """Final metrics (``train_loss``, ``eval_mlm_loss``, ...) and every log record (``loss``, ``mlm_loss``,
    ``nsp_loss``, ... per logging step)."""

    metrics: dict[str, float]
    log_history: list[dict[str, Any]]


def pretrain(
    model: nn.Module,
    tokenizer,
    train_dataset,
    output_dir: str | os.PathLike,
    *,
    eval_dataset=None,
    training_arguments: TrainingArguments | None = None,
    mlm_probability: float = 0.15,
    resume_from_checkpoint: str | bool | None = None,
    save_model: bool = True,
    callbacks: list[TrainerCallback] | None = None,
    data_record: dict[str, Any] | None = None,
    **training_overrides: Any,
) -> PretrainingResult:
    """Train ``model`` (in place) with MLM + NSP on ``train_dataset`` (from `build_pretraining_dataset`).

    ``model`` is any pretraining model whose forward takes ``labels`` and ``next_sentence_label`` and returns
    a loss: `AutoBertZeroForPreTraining`, `BertForPreTraining`, or a candidate the search built. Batches are
    masked afresh by a `PretrainingCollator`; the MLM and NSP losses are logged separately. Training
    arguments are ``training_arguments`` (default: `PretrainingArguments`, BERT's settings) with
    ``training_overrides`` (any `TrainingArguments` field, e.g. ``max_steps=200, learning_rate=5e-4``;
    ``None`` values are ignored) applied. With ``save_model`` the final model and the tokenizer are written
    to ``output_dir`` (safetensors), loadable with ``AutoModelForPreTraining`` / ``AutoTokenizer``, with
    ``pretraining_results.json``: the final metrics and, under ``data``, ``data_record`` (what was trained on).
    A run shorter than ``save_steps`` writes no resumable checkpoint (see
    `_without_checkpoint_at_the_end_of_short_runs`).
    """
    arguments = resolve_training_arguments(PretrainingArguments, output_dir, training_arguments, **training_overrides)
    arguments = _without_checkpoint_at_the_end_of_short_runs(arguments)
    trainer = PretrainingTrainer(
        model=model,
        args=arguments,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=PretrainingCollator(tokenizer, mlm_probability=mlm_probability),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    metrics = dict(train_output.metrics)
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    if save_model:
        trainer.save_model()
        trainer.save_state()
        if trainer.is_world_process_zero():
            record = {**metrics, **({"data": dict(data_record)} if data_record else {})}
            write_json_atomic(os.path.join(arguments.output_dir, "pretraining_results.json"), record)
            logger.info("final model written to %s", arguments.output_dir)
    return PretrainingResult(metrics=metrics, log_history=list(trainer.state.log_history))


def _without_checkpoint_at_the_end_of_short_runs(arguments: TrainingArguments) -> TrainingArguments:
    """``arguments`` without step checkpoints when the run ends before the first one would be due.

    With ``save_strategy="steps"``, `Trainer` also writes a resumable checkpoint (weights and optimizer
    state: three times the model's size) when training ends. A run shorter than ``save_steps`` (a demo or
    a smoke test) has nothing to resume, and its final model is saved anyway, so it writes none.
    """
    if arguments.save_strategy != "steps" or arguments.max_steps <= 0 or arguments.save_steps < 1:
        return arguments
    if arguments.max_steps >= arguments.save_steps:
        return arguments
    logger.info(
        "no resumable checkpoint: the run (%d steps) ends before save_steps (%d); pass --save_steps for checkpoints",
        arguments.max_steps,
        arguments.save_steps,
    )
    return dataclasses.replace(arguments, save_strategy="no")


def run_pretraining(
    model_arguments: PretrainingModelArguments,
    data_arguments: PretrainingDataArguments,
    arguments: PretrainingArguments,
) -> PretrainingResult:
    """`scripts/pretrain.py`: data from text, a model from a preset / config / checkpoint, then `pretrain()`.

    Under ``accelerate launch`` the main process builds (and caches) the data first; the others read the
    cache. ``resume_from_checkpoint`` is a checkpoint directory, or ``last`` for the newest one in the
    output directory.
    """
    set_seed(arguments.seed)
    tokenizer = load_tokenizer(model_arguments.tokenizer)
    pair_settings = dict(
        tokenizer=tokenizer,
        max_seq_length=data_arguments.max_seq_length,
        nsp_probability=data_arguments.nsp_probability,
        short_seq_probability=data_arguments.short_seq_probability,
        seed=arguments.seed,
        num_proc=data_arguments.preprocessing_num_workers,
        cache_dir=data_arguments.dataset_cache_dir,
        text_format=data_arguments.text_format,
    )
    with arguments.main_process_first(desc="building pretraining pairs"):
        train_dataset = build_pretraining_dataset(data_arguments.train_files, **pair_settings)
        eval_dataset = (
            build_pretraining_dataset(data_arguments.validation_files, **pair_settings)
            if data_arguments.validation_files
            else None
        )
    if data_arguments.max_train_samples is not None:
        train_dataset = train_dataset.select(range(min(data_arguments.max_train_samples, len(train_dataset))))
    if eval_dataset is not None and data_arguments.max_eval_samples is not None:
        eval_dataset = eval_dataset.select(range(min(data_arguments.max_eval_samples, len(eval_dataset))))

    if model_arguments.model_name_or_path:
        model = AutoModelForPreTraining.from_pretrained(model_arguments.model_name_or_path)
    else:
        overrides = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        overrides.update(parse_config_overrides(model_arguments.config_overrides))
        config = pretraining_config(
            model_arguments.architecture, model_arguments.size, model_arguments.config_file, **overrides
        )
        model = build_pretraining_model(config)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the model's vocab_size {model.config.vocab_size} is smaller than the tokenizer's {len(tokenizer)}"
        )
    logger.info(
        "pretraining %s (%.1fM parameters) on %d pairs",
        type(model).__name__,
        model.num_parameters() / 1e6,
        len(train_dataset),
    )
    resume = arguments.resume_from_checkpoint
    data_record = {
        "train_files": list(data_arguments.train_files),
        "validation_files": list(data_arguments.validation_files or []),
        "demo_data": all(is_demo_data(path) for path in data_arguments.train_files),
        "max_seq_length": data_arguments.max_seq_length,
        "train_pairs": len(train_dataset),
        "validation_pairs": len(eval_dataset) if eval_dataset is not None else 0,
    }
    return pretrain(
        model,
        tokenizer,
        train_dataset,
        arguments.output_dir,
        eval_dataset=eval_dataset,
        training_arguments=arguments,
        mlm_probability=data_arguments.mlm_probability,
        resume_from_checkpoint=True if resume == "last" else resume,
        data_record=data_record,
    )
