"""Pretraining throughput and peak memory of AutoBERT-Zero against `transformers.BertForPreTraining`, one process.

Every model trains (forward, backward, AdamW step) on the very same pre-collated batches of NSP pairs built
from real text, at the same size, batch and sequence length. All models stay resident and take turns step
by step (who goes first rotates), so a burst of load from elsewhere hits them alike: the throughput ratio
to ``bert`` is the median over steps of the ratio within a step. Throughput counts real (unpadded) tokens.

Variants: ``bert`` is `transformers.BertForPreTraining` as `transformers` ships it, the reference;
``bert-preset`` is this package's `bert` architecture (`AutoBertZeroForPreTraining`: the same network, trained
as this project's pretraining trains it, projecting only the masked positions onto the vocabulary
(`training.trainers.sparse_mlm_prediction`)); and
``autobert-zero`` is the searched backbone. ``autobert-zero`` / ``bert`` is the end-to-end gain,
``autobert-zero`` / ``bert-preset`` the part the architecture alone brings.

Peak memory is what a model holds between steps (weights and optimizer state, measured when it is built and
warmed up) plus the largest transient peak of its steps (activations, gradients): from the CUDA allocator on
a GPU; on CPU from the process's resident set (Linux ``VmRSS`` / ``VmHWM``, the peak reset before each
step), which allocator caching makes approximate.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertForPreTraining

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining

from .models import bert_config_like
from .pretraining_data import PretrainingCollator, build_pretraining_dataset
from .trainers import sparse_mlm_prediction


logger = logging.getLogger(__name__)

REFERENCE = "bert"


def benchmark_variants(size: str, **config_overrides) -> dict[str, Callable[[], torch.nn.Module]]:
    """Variant name → model factory, all at the same paper ``size``."""
    bert_preset = AutoBertZeroConfig.from_preset("bert", size, **config_overrides)
    autobert_zero = AutoBertZeroConfig.from_preset("autobert-zero", size, **config_overrides)
    return {
        REFERENCE: lambda: BertForPreTraining(bert_config_like(bert_preset)),
        "bert-preset": lambda: AutoBertZeroForPreTraining(bert_preset),
        "autobert-zero": lambda: AutoBertZeroForPreTraining(autobert_zero),
    }


class _MemoryMeter:
    """Current and peak memory of ``device`` in bytes; ``None`` where it cannot be read (non-Linux CPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _proc_status(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def current(self) -> int | None:
        gc.collect()
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the resident set is what is in use
        except OSError:
            pass
        return self._proc_status("VmRSS")

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current resident set
        except OSError:
            pass

    def peak(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return self._proc_status("VmHWM")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    with sparse_mlm_prediction(model):  # as `PretrainingTrainer` trains
        model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _difference(after: int | None, before: int | None) -> float | None:
    return None if after is None or before is None else float(max(after - before, 0))


def benchmark_pretraining(
    tokenizer,
    sources,
    size: str = "small",
    batch_size: int = 8,
    max_seq_length: int = 128,
    steps: int = 10,
    warmup_steps: int = 2,
    seed: int = 0,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Throughput (tokens/s) and peak memory of every variant, and their ratios to ``bert``.

    Each model first takes ``warmup_steps`` untimed steps (allocating its optimizer state), then the models
    take the ``steps`` timed steps in turn; ``tokens_per_second`` is a model's median step, the throughput
    ratio the median of its within-step ratios to ``bert``. Returns ``{"variants": {name: {"tokens_per_second",
    "peak_memory_bytes", "throughput_ratio", "memory_ratio"}}, "settings": {...}}``; ratios are variant /
    ``bert`` (a throughput ratio above 1 is faster, a memory ratio below 1 is leaner).
    """
    if warmup_steps < 1 or steps < 1:
        raise ValueError(f"steps and warmup_steps must be at least 1, got {steps} and {warmup_steps}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pairs = build_pretraining_dataset(sources, tokenizer, max_seq_length=max_seq_length, seed=seed, cache_dir=cache_dir)
    collator = PretrainingCollator(tokenizer, seed=seed)
    needed = batch_size * (warmup_steps + steps)
    examples = [pairs[index % len(pairs)] for index in range(needed)]
    batches = [
        {name: tensor.to(device) for name, tensor in collator(examples[start : start + batch_size]).items()}
        for start in range(0, needed, batch_size)
    ]
    variants = benchmark_variants(
        size, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **config_overrides
    )
    meter = _MemoryMeter(device)
    trained: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
    resident: dict[str, float | None] = {}
    for name, factory in variants.items():
        before = meter.current()
        torch.manual_seed(seed)
        model = factory().to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for batch in batches[:warmup_steps]:
            _train_step(model, optimizer, batch)
        _synchronize(device)
        resident[name] = _difference(meter.current(), before)
        trained[name] = (model, optimizer)

    names = list(variants)
    step_throughput: dict[str, list[float]] = {name: [] for name in names}
    transient: dict[str, float | None] = {name: 0.0 for name in names}
    for step, batch in enumerate(batches[warmup_steps:]):
        tokens = int(batch["attention_mask"].sum())
        for name in names[step % len(names) :] + names[: step % len(names)]:
            model, optimizer = trained[name]
            before = meter.current()
            meter.reset_peak()
            _synchronize(device)
            start = time.perf_counter()
            _train_step(model, optimizer, batch)
            _synchronize(device)
            step_throughput[name].append(tokens / (time.perf_counter() - start))
            growth = _difference(meter.peak(), before)
            transient[name] = None if growth is None or transient[name] is None else max(transient[name], growth)
        logger.info(
            "step %d: %s", step, ", ".join(f"{name} {step_throughput[name][-1]:.0f} tokens/s" for name in names)
        )

    results: dict[str, dict[str, float | None]] = {}
    for name in names:
        both = resident[name] is not None and transient[name] is not None
        results[name] = {
            "tokens_per_second": statistics.median(step_throughput[name]),
            "peak_memory_bytes": resident[name] + transient[name] if both else None,
        }
    reference = results[REFERENCE]
    for name, entry in results.items():
        # ratios of the same step: load that changes from step to step cancels out
        per_step = [mine / theirs for mine, theirs in zip(step_throughput[name], step_throughput[REFERENCE])]
        entry["throughput_ratio"] = statistics.median(per_step)
        both = entry["peak_memory_bytes"] is not None and reference["peak_memory_bytes"]
        entry["memory_ratio"] = entry["peak_memory_bytes"] / reference["peak_memory_bytes"] if both else None
    settings = {
        "size": size,
        "batch_size": batch_size,
        "max_seq_length": max_seq_length,
        "steps": steps,
        "warmup_steps": warmup_steps,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config_overrides": config_overrides,
    }
    return {"variants": results, "settings": settings}


def format_results(results: dict[str, Any]) -> str:
    """The results as a table, ratios against ``bert``."""
    settings = results["settings"]
    lines = [
        f"pretraining step (forward + backward + AdamW), size={settings['size']}, batch {settings['batch_size']} × "
        f"{settings['max_seq_length']}, median of {settings['steps']} timed steps per model, "
        f"{settings['device']}, {settings['threads']} threads",
        f"{'variant':<28}{'tokens/s':>12}{'× bert':>9}{'peak MiB':>11}{'× bert':>9}",
    ]
    for name, entry in results["variants"].items():
        peak = entry["peak_memory_bytes"]
        memory_ratio = entry["memory_ratio"]
        lines.append(
            f"{name:<28}{entry['tokens_per_second']:>12.0f}{entry['throughput_ratio']:>9.2f}"
            f"{(peak / 2**20 if peak is not None else float('nan')):>11.0f}"
            f"{(memory_ratio if memory_ratio is not None else float('nan')):>9.2f}"
        )
    return "\n".join(lines)
