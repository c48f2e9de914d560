"""The paper's candidate evaluator: BIWS initialisation → short MLM + NSP pretraining → GLUE proxy → score.

With weight sharing, each child of a generation starts from the super-net snapshot taken when its generation
started (:mod:`search.supernet`), is pretrained, and gives back the weights it trained as a write-back (before
it is finetuned), which the search applies in proposal order (:meth:`BiwsEvaluator.evaluate_from`, SPEC §5);
without, it starts from a fresh initialisation (the "w/o BIWS" curves of the paper's Figure 6). The proxy
score is the mean over the configured GLUE tasks of each task's dev score (``training.metrics.glue_score``),
or, with the ``mlm_loss`` proxy, minus the MLM loss on held-out text, at the masked tokens that the training
pairs contain (:func:`score_only_trained_tokens`; see :class:`~search.config.BiwsSettings`).
Pretraining and finetuning are the training library's (``training.runners.pretrain``,
``training.glue.finetune_glue``), so under ``accelerate launch`` every candidate trains data-parallel on all
processes; each stage's ``batch_size`` is the global batch whatever the number of processes
(:func:`~search.config.split_global_batch`).

A candidate whose pretraining loss becomes NaN/Inf raises :class:`NonFiniteLossError` and gives nothing back;
the search records the error and goes on.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import forward_flops
from training.glue import finetune_glue
from training.metrics import glue_score
from training.pretraining_data import PretrainingCollator, build_pretraining_dataset
from training.runners import pretrain
from training.tokenization import load_tokenizer
from training.trainers import sparse_mlm_prediction

from .config import BiwsSettings, FinetuningSettings, ModelSettings, PretrainingSettings, SearchConfig, split_global_batch
from .distributed import distributed_state
from .evaluator import EvaluationContext, EvaluationResult, Evaluator
from .supernet import SUPERNET_FILE_ROLE, BiwsSupernet, SupernetFileError, SupernetSnapshot, WriteBack, plain_state_dict


class NonFiniteLossError(RuntimeError):
    pass


class StopOnNonFiniteLoss(TrainerCallback):
    """Stops training at the first logged NaN/Inf loss and remembers the step (``logging_nan_inf_filter`` is
    turned off, so the Trainer does not hide such losses from the log)."""

    def __init__(self):
        self.bad_step: int | None = None
        self.bad_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_step, self.bad_loss = state.global_step, loss
            control.should_training_stop = True


HELD_OUT_BATCH_SIZE = 32


def held_out_batches(dataset, tokenizer, mlm_probability: float, seed: int) -> list[dict[str, torch.Tensor]]:
    """Padded, masked batches of held-out pairs, masked once with a seeded collator, so that every candidate
    (and every evaluation of one) is scored on exactly the same tokens."""
    collator = PretrainingCollator(tokenizer, mlm_probability=mlm_probability, seed=seed)
    rows = [dataset[index] for index in range(len(dataset))]
    return [collator(rows[start : start + HELD_OUT_BATCH_SIZE]) for start in range(0, len(rows), HELD_OUT_BATCH_SIZE)]


def score_only_trained_tokens(batch: dict[str, torch.Tensor], trained_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """``batch`` with the MLM label removed (-100) wherever the masked token never occurs in the training text.

    About a quarter of the masked held-out word pieces of a small WikiText split are names and numbers that the
    training articles never contain. No architecture can predict them; their loss only measures how far a
    model has pushed down the logits of classes it never saw, which is seed noise to a benchmark or a search
    (``scripts/proxy_reliability.py`` measures it). The inputs (and so which tokens are masked or replaced)
    are unchanged.
    """
    labels = batch["labels"]
    unseen = (labels != -100) & ~torch.isin(labels, trained_tokens)
    return {**batch, "labels": labels.masked_fill(unseen, -100)}


@torch.no_grad()
def held_out_mlm_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean MLM loss of a pretraining model over fixed batches, in eval mode (the mode is restored). Only the
    loss is kept, so the vocabulary projection runs at the masked positions only (``sparse_mlm_prediction``):
    the same loss, several times faster at small sizes (``scripts/benchmark_search.py``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with sparse_mlm_prediction(model):
        losses = [model(**{name: tensor.to(device) for name, tensor in batch.items()}).masked_lm_loss.item() for batch in batches]
    model.train(was_training)
    return statistics.fmean(losses)


class HeldOutLossTracker(TrainerCallback):
    """Records :func:`held_out_mlm_loss` every ``every`` optimizer steps (for learning curves)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], every: int):
        self.batches, self.every = batches, every
        self.losses: dict[int, float] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.losses[state.global_step] = held_out_mlm_loss(model, self.batches)


def candidate_model_settings(model: ModelSettings, tokenizer) -> dict[str, Any]:
    """The `AutoBertZeroConfig` fields every candidate shares."""
    return {
        **dataclasses.asdict(model),
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }


def forward_latency_ms(model: torch.nn.Module, batch_size: int, seq_length: int, repeats: int = 5) -> float:
    """Median wall time of an inference forward pass, on the device the model is on."""
    model.eval()
    input_ids = torch.ones(batch_size, seq_length, dtype=torch.long, device=next(model.parameters()).device)
    timings = []
    with torch.inference_mode():
        model(input_ids=input_ids)  # warm-up
        for _ in range(repeats):
            if input_ids.is_cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            model(input_ids=input_ids)
            if input_ids.is_cuda:
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - started) * 1000)
    model.train()
    return statistics.median(timings)


class GlobalBatchProbe(TrainerCallback):
    """Reads the batch one optimizer step actually sees (per device × accumulation steps × processes) from the
    `Trainer`'s arguments, so the cost records what ran rather than what was asked for."""

    def __init__(self):
        self.global_batch: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


class BiwsEvaluator(Evaluator):
    """The paper's evaluator (see the module docstring). It is an :class:`~search.evaluator.Evaluator` with the
    weight-sharing hooks: :meth:`snapshot` and :meth:`apply` work on the live super-net, :meth:`evaluate_from`
    trains a child from a snapshot and touches nothing of this object, so it runs on a copy in a Ray worker.
    A pickled copy carries the settings, tokenizer and data, not the super-net (children get snapshots)."""

    def __init__(
        self,
        settings: BiwsSettings,
        model: ModelSettings,
        num_layers: int,
        seed: int = 0,
        max_latency_ms: float | None = None,
    ):
        self.settings = settings
        self.max_latency_ms = max_latency_ms
        self.tokenizer = load_tokenizer(settings.tokenizer)
        self.vocab_size = len(self.tokenizer)
        self.model_settings = candidate_model_settings(model, self.tokenizer)
        self.supernet = BiwsSupernet(self.model_settings, num_layers, seed) if settings.weight_sharing else None
        pretraining = settings.pretraining
        for where, length in (
            ("pretraining.max_seq_length", pretraining.max_seq_length),
            ("finetuning.max_seq_length", settings.finetuning.max_seq_length),
            ("latency_seq_length", settings.latency_seq_length if settings.measure_latency else 0),
        ):
            if length > model.max_position_embeddings:
                raise ValueError(
                    f"evaluator.biws.{where}={length} exceeds model.max_position_embeddings={model.max_position_embeddings}"
                )
        if not pretraining.train_files:
            raise ValueError("evaluator.biws.pretraining.train_files: give at least one text file or Hub dataset")
        for stage in ("pretraining", "finetuning"):  # a batch that does not split stops the search now, not each candidate
            self.batch_split(stage)
        # finetuning reads its task files in each candidate, perhaps in a Ray worker with another working directory
        self.glue_data_dir = settings.finetuning.data_dir
        if self.glue_data_dir and Path(self.glue_data_dir).is_dir():
            self.glue_data_dir = str(Path(self.glue_data_dir).resolve())
        with distributed_state().main_process_first():
            dataset = build_pretraining_dataset(
                list(pretraining.train_files),
                self.tokenizer,
                max_seq_length=pretraining.max_seq_length,
                nsp_probability=pretraining.nsp_probability,
                seed=seed,
            )
            held_out = None
            if pretraining.validation_files:
                held_out = build_pretraining_dataset(
                    list(pretraining.validation_files),
                    self.tokenizer,
                    max_seq_length=pretraining.max_seq_length,
                    nsp_probability=pretraining.nsp_probability,
                    seed=seed + 1,
                )
        if pretraining.max_examples is not None:
            dataset = dataset.shuffle(seed=seed).select(range(min(pretraining.max_examples, len(dataset))))
        self.pretraining_data = dataset
        self.held_out: list[dict[str, torch.Tensor]] = []
        if held_out is not None:
            held_out = held_out.shuffle(seed=seed).select(range(min(pretraining.max_validation_examples, len(held_out))))
            trained_tokens = torch.tensor(sorted({token for ids in dataset["input_ids"] for token in ids}))
            self.held_out = [
                score_only_trained_tokens(batch, trained_tokens)
                for batch in held_out_batches(held_out, self.tokenizer, pretraining.mlm_probability, seed)
            ]

    @classmethod
    def from_config(cls, config: SearchConfig) -> "BiwsEvaluator":
        return cls(
            config.evaluator.biws, config.model, config.space.num_layers, config.seed, config.objective.max_latency_ms
        )

    def candidate_config(self, architecture: list[dict[str, Any]]) -> AutoBertZeroConfig:
        return AutoBertZeroConfig(layers=architecture, **self.model_settings)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "supernet": None, "is_copy": True}

    def _live_supernet(self) -> BiwsSupernet | None:
        if getattr(self, "is_copy", False) and self.settings.weight_sharing:
            raise RuntimeError(
                "this BiwsEvaluator is a copy (pickled, as a Ray worker holds it) without the super-net: evaluate children "
                "with evaluate_from(snapshot, ...); snapshots and write-backs belong to the search's own evaluator"
            )
        return self.supernet

    def snapshot(self) -> bytes | None:
        supernet = self._live_supernet()
        return None if supernet is None else supernet.snapshot().to_bytes()

    def apply(self, write_back: bytes, source: str) -> None:
        supernet = self._live_supernet()
        if supernet is None:
            raise RuntimeError(f"{source}: weight sharing is off (evaluator.biws.weight_sharing), so there is nothing to write back to")
        try:
            supernet.apply(WriteBack.from_bytes(write_back, source))
        except SupernetFileError:
            raise
        except ValueError as error:
            raise SupernetFileError(f"{source}: {error}") from None

    def evaluate_from(
        self, snapshot: bytes | None, architecture: list[dict[str, Any]], context: EvaluationContext
    ) -> tuple[EvaluationResult, bytes | None]:
        """Generation-synchronous BIWS: the child starts from ``snapshot`` (None: a fresh initialisation) and
        returns its result and the weights its pretraining trained, as a write-back; this evaluator (and its
        super-net) is left unchanged. A pure function of the snapshot, the architecture and ``context.seed``."""
        set_seed(context.seed)
        view = None
        if snapshot is not None:
            view = BiwsSupernet.from_snapshot(SupernetSnapshot.from_bytes(snapshot, "the generation's super-net snapshot"), share=True)
        model = self._initial_model(view, architecture)
        result = self._train_and_score(model, architecture, context)
        trained = view is not None and result.status == "ok"
        return result, view.write_back_from(model).to_bytes() if trained else None

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        """Sequential BIWS, for direct use: the child starts from the live super-net and its trained weights are
        written back at once."""
        supernet = self._live_supernet()
        set_seed(context.seed)
        model = self._initial_model(supernet, architecture)
        result = self._train_and_score(model, architecture, context)
        if supernet is not None and result.status == "ok":
            supernet.write_back(model)
        return result

    def _initial_model(self, supernet: BiwsSupernet | None, architecture: list[dict[str, Any]]) -> AutoBertZeroForPreTraining:
        if supernet is not None:
            return supernet.candidate(architecture)
        return AutoBertZeroForPreTraining(self.candidate_config(architecture))

    def _train_and_score(self, model: AutoBertZeroForPreTraining, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        """Pretrain ``model`` in place and score it; finetuning works on copies, so ``model`` ends as pretrained."""
        started = time.perf_counter()
        pretraining, finetuning = self.settings.pretraining, self.settings.finetuning
        flops_per_sequence = forward_flops(model, pretraining.max_seq_length)
        cost: dict[str, float] = {
            # training ≈ 3 × forward (backward costs about twice the forward); batch_size is the global batch
            "pretraining_flops": 3.0 * flops_per_sequence * pretraining.batch_size * pretraining.max_steps,
        }
        if self.settings.measure_latency:
            cost["latency_ms"] = forward_latency_ms(model, self.settings.latency_batch_size, self.settings.latency_seq_length)
            if self.max_latency_ms is not None and cost["latency_ms"] > self.max_latency_ms:
                return EvaluationResult(
                    score=None,
                    cost=cost,
                    status="infeasible",
                    error=f"latency {cost['latency_ms']:.2f} ms exceeds objective.max_latency_ms={self.max_latency_ms}",
                )

        watchdog, batch_probe = StopOnNonFiniteLoss(), GlobalBatchProbe()
        pretraining_started = time.perf_counter()
        result = pretrain(
            model,
            self.tokenizer,
            self.pretraining_data,
            context.output_dir / "pretraining",
            mlm_probability=pretraining.mlm_probability,
            save_model=False,
            callbacks=[watchdog, batch_probe],
            **self.training_overrides("pretraining", context.seed),
        )
        cost["pretraining_seconds"] = time.perf_counter() - pretraining_started
        self._check_finite(model, watchdog, result.metrics)
        cost["pretraining_global_batch"] = float(batch_probe.global_batch)

        metrics: dict[str, float] = {"pretraining_loss": result.metrics.get("train_loss", math.nan)}
        if self.held_out:
            metrics["held_out_mlm_loss"] = held_out_mlm_loss(model, self.held_out)
        if self.settings.proxy == "mlm_loss":
            cost["wall_seconds"] = time.perf_counter() - started
            return EvaluationResult(score=-metrics["held_out_mlm_loss"], metrics=metrics, cost=cost)

        # finetuning starts from a plain model with the trained weights (conv kernels derived from their chains)
        pretrained = AutoBertZeroForPreTraining(self.candidate_config(architecture))
        pretrained.load_state_dict(plain_state_dict(model), strict=True)
        task_scores = []
        finetuning_started = time.perf_counter()
        for task in finetuning.tasks:
            task_metrics = finetune_glue(
                pretrained,
                task,
                self.glue_data_dir,
                context.output_dir / f"finetuning-{task}",
                tokenizer=self.tokenizer,
                max_seq_length=finetuning.max_seq_length,
                max_train_samples=finetuning.max_train_examples,
                max_eval_samples=finetuning.max_eval_examples,
                write_test_predictions=False,
                save_model=False,
                **self.training_overrides("finetuning", context.seed),
            )
            metrics.update({f"{task}/{name}": value for name, value in task_metrics.items()})
            task_scores.append(glue_score(task, task_metrics))
        cost["finetuning_seconds"] = time.perf_counter() - finetuning_started
        cost["wall_seconds"] = time.perf_counter() - started
        return EvaluationResult(score=float(sum(task_scores) / len(task_scores)), metrics=metrics, cost=cost)

    def batch_split(self, stage: str) -> tuple[int, int]:
        """(per-device batch, accumulation steps) of ``stage`` on this search's processes."""
        settings: PretrainingSettings | FinetuningSettings = getattr(self.settings, stage)
        return split_global_batch(
            settings.batch_size, distributed_state().num_processes, settings.max_per_device_batch_size, f"evaluator.biws.{stage}"
        )

    def training_overrides(self, stage_name: str, seed: int) -> dict[str, Any]:
        """`TrainingArguments` fields for one stage (``pretraining`` or ``finetuning``) of a candidate's training:
        its global batch split over this search's processes, no checkpoints, no reporting."""
        stage: PretrainingSettings | FinetuningSettings = getattr(self.settings, stage_name)
        per_device, accumulation = self.batch_split(stage_name)
        return {
            "max_steps": stage.max_steps,
            "per_device_train_batch_size": per_device,
            "gradient_accumulation_steps": accumulation,
            "learning_rate": stage.learning_rate,
            "warmup_steps": stage.warmup_ratio,  # a float below 1 is a fraction of the steps
            "weight_decay": stage.weight_decay,
            "max_grad_norm": stage.max_grad_norm,
            "seed": seed,
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
            "logging_steps": max(1, min(50, stage.max_steps // 10)),
            "logging_nan_inf_filter": False,
            "dataloader_num_workers": self.settings.dataloader_num_workers,
            "dataloader_pin_memory": torch.cuda.is_available(),
        }

    @staticmethod
    def _check_finite(model: torch.nn.Module, watchdog: StopOnNonFiniteLoss, metrics: Mapping[str, float]) -> None:
        if watchdog.bad_step is not None:
            raise NonFiniteLossError(f"pretraining loss became {watchdog.bad_loss} at step {watchdog.bad_step}")
        loss = metrics.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLossError(f"pretraining ended with train_loss={loss}")
        for name, parameter in model.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteLossError(f"pretraining left non-finite values in {name}")

    def save(self, directory: Path, tag: str) -> dict[str, str]:
        if self.supernet is None:
            return {}
        name = f"supernet-{tag}.safetensors"
        self.supernet.save(Path(directory) / name)
        return {SUPERNET_FILE_ROLE: name}

    def load(self, directory: Path, files: Mapping[str, str]) -> None:
        """The super-net a save wrote (changed only if the whole file is good); a file a kill left behind is not
        named in ``files`` and is overwritten when the search saves at that point again."""
        if self.supernet is None or SUPERNET_FILE_ROLE not in files:
            return
        self.supernet.load(Path(directory) / files[SUPERNET_FILE_ROLE])
