"""`Trainer` subclasses: per-batch mean losses done right, and pretraining with MLM and NSP losses logged apart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn
from torch.nn import functional as F
from transformers import Trainer

from .atomic_files import make_readable
from .console import use_console_callbacks


class MeanLossTrainer(Trainer):
    """A `Trainer` for models whose loss is a mean over the batch (every head here, and `transformers`' BERT).

    `Trainer` takes a model whose ``forward`` accepts ``**kwargs`` to normalise its loss by the
    ``num_items_in_batch`` it passes, so it then skips dividing the loss by the gradient-accumulation steps
    and multiplies it by the number of processes. These models accept ``**kwargs`` but ignore that count,
    which would scale gradients by the accumulation steps and the process count. This class tells
    `Trainer` the truth: the loss is a per-batch mean.

    Its console shows one progress bar with the latest losses in the postfix; every log record goes to the
    ``training.steps`` logger instead of a console line (see `training.console`).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        use_console_callbacks(self)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`, with the weights file as readable as the others (safetensors writes it 0600)."""
        super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            make_readable(output_dir or self.args.output_dir)


@contextlib.contextmanager
def sparse_mlm_prediction(model: nn.Module) -> Iterator[None]:
    """Within the block, a model whose config has ModernBERT's `sparse_prediction` field computes its masked-LM
    logits at the labelled positions only; the field is restored afterwards, so checkpoints saved meanwhile
    and evaluation outside the block keep the `(batch, seq, vocab)` logits of every `transformers` head.

    The loss is the same and the vocabulary projection runs on ~15% of the tokens, which at `small` makes
    AutoBERT-Zero's pretraining step markedly faster (`scripts/benchmark_training.py`). Models without the field
    (`BertForPreTraining`) are left as they are.
    """
    config = getattr(extract_model_from_parallel(model), "config", None)
    if config is None or not hasattr(config, "sparse_prediction"):
        yield
        return
    previous = config.sparse_prediction
    config.sparse_prediction = True
    try:
        yield
    finally:
        config.sparse_prediction = previous


def split_pretraining_loss(
    outputs, next_sentence_label: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, masked-LM, next-sentence)`` losses of a pretraining model's output.

    Uses the model's own ``masked_lm_loss`` / ``next_sentence_loss`` when it reports them (AutoBERT-Zero);
    otherwise (`BertForPreTraining`, whose loss is their sum) the NSP loss is computed from the two NSP
    logits per example and the MLM loss is the remainder, so the vocabulary-sized logits are not scored twice.
    """
    loss = outputs.get("loss") if hasattr(outputs, "get") else None
    if loss is None:
        raise ValueError("the pretraining model returned no loss: the batch needs labels and next_sentence_label")
    masked_lm_loss = outputs.get("masked_lm_loss")
    next_sentence_loss = outputs.get("next_sentence_loss")
    if masked_lm_loss is None or next_sentence_loss is None:
        next_sentence_loss = F.cross_entropy(
            outputs["seq_relationship_logits"].view(-1, 2).float(), next_sentence_label.view(-1)
        )
        masked_lm_loss = loss - next_sentence_loss
    return loss, masked_lm_loss, next_sentence_loss


class PretrainingTrainer(MeanLossTrainer):
    """MLM + NSP pretraining; logs ``mlm_loss`` and ``nsp_loss`` beside ``loss`` (and ``eval_*`` likewise).

    Training steps, and evaluations that keep only the loss, run under :func:`sparse_mlm_prediction`;
    `predict` (and evaluation with `compute_metrics`) gets the heads' full logits.

    Training logs average the per-batch losses since the last log, as `Trainer` averages ``loss``, so
    ``mlm_loss + nsp_loss == loss``; evaluation weights batches by their size, as ``eval_loss`` does. Sums
    stay on the device between logs (no synchronisation per step) and are summed over processes when logged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loss_sums: dict[str, torch.Tensor] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # while training, only the loss is used: MLM logits at the labelled positions only
        with sparse_mlm_prediction(model) if model.training else contextlib.nullcontext():
            outputs = model(**inputs)
        loss, masked_lm_loss, next_sentence_loss = split_pretraining_loss(outputs, inputs["next_sentence_label"])
        phase = "train" if model.training else "eval"
        weight = 1.0 if model.training else float(inputs["next_sentence_label"].shape[0])
        sums = torch.stack(
            [
                masked_lm_loss.detach().mean() * weight,
                next_sentence_loss.detach().mean() * weight,
                loss.new_tensor(weight),
            ]
        )
        self._loss_sums[phase] = self._loss_sums[phase] + sums if phase in self._loss_sums else sums
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # an evaluation that keeps only the loss (no compute_metrics) needs no full MLM logits either
        with sparse_mlm_prediction(model) if prediction_loss_only else contextlib.nullcontext():
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _take_means(self, phase: str) -> tuple[float, float] | None:
        sums = self._loss_sums.pop(phase, None)
        if sums is None:
            return None
        masked_lm, next_sentence, weight = self.accelerator.reduce(sums, reduction="sum").tolist()
        return (round(masked_lm / weight, 4), round(next_sentence / weight, 4)) if weight > 0 else None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training-progress log
            means = self._take_means("train")
            if means is not None:
                logs["mlm_loss"], logs["nsp_loss"] = means
        super().log(logs, start_time)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._loss_sums.pop("eval", None)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        means = self._take_means("eval")
        if means is not None:
            output.metrics[f"{metric_key_prefix}_mlm_loss"], output.metrics[f"{metric_key_prefix}_nsp_loss"] = means
        return output
