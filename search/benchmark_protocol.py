"""The mini pretraining protocol that scores every entry of a benchmark table: held-out MLM loss after a
fixed number of steps from scratch, at a small width, on the bundled ``demo_data/`` text.

Why this protocol. A table is only useful if its scores separate architectures more than they separate two
trainings of the same architecture, and if a fresh clone can rebuild it. So:

- **Data**: one WikiText file split by *article* into training and held-out text (``held_out_articles`` are
  article positions in the file), before next-sentence pairs are built, so no held-out sentence can enter
  training as the random second segment of a pair. Pairs and masking come from the training library
  (``training.pretraining_data``): one place for BERT's masking rules.
- **Fixed held-out tokens**: the held-out pairs are masked ``held_out_maskings`` times, with seeds
  ``held_out_mask_seed + i``, by :func:`search.biws_evaluator.held_out_batches`, and only masked word pieces
  that the training articles contain are scored (:func:`score_only_trained_tokens`); every architecture and
  every seed is scored on exactly these tokens.
- **Seeded**: a run's seed decides the initialisation, the order of training pairs and the training masks,
  and nothing else; the pairs themselves are fixed by ``data_seed``. Dropout is off, so no other randomness
  enters. With the same thread count on CPU a run is bit-for-bit repeatable.
- **Lean loop**: the same optimisation as ``training.runners.pretrain`` — AdamW (BERT's ε 1e-6, weight decay
  0.01 except biases and LayerNorms), linear warm-up and decay to 0, the model's own MLM + NSP loss — as a
  plain loop over pre-padded pairs. ``scripts/build_benchmark.py --measure_trainer_overhead`` times both on
  one architecture; the table's runs are a few seconds each, so every second per run is ~15 minutes of a
  table build.
- **No gradient clipping** by default (``max_grad_norm=0``): in the calibration (``benchmarks/README.md``),
  clipping the global norm at 1.0 slowed learning at these learning rates and made architectures score
  more alike.
- A run whose training loss becomes NaN/Inf is not an error for a benchmark: the architecture is recorded
  as diverged with the loss of a uniform guess over the vocabulary, ``ln(vocab size)``, the score of a model
  that learned nothing (its ``diverged`` metric is 1).

Scores: higher is better, ``score = -held_out_mlm_loss``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from training.atomic_files import write_text_atomic
from training.corpus import is_article_heading, iter_documents
from training.pretraining_data import PretrainingCollator, build_pretraining_dataset
from training.tokenization import load_tokenizer

from .biws_evaluator import held_out_batches, held_out_mlm_loss, score_only_trained_tokens


SCORE_NAME = "neg_held_out_mlm_loss"
_DATA_ORDER_STREAM = 1  # the run seed's sub-stream that orders the training pairs (numpy SeedSequence key)


class ProtocolError(ValueError):
    """A protocol that cannot be run as given (bad sizes, article indices outside the file, ...)."""


def _setting(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class MiniPretrainingProtocol:
    """Every setting a table's scores depend on; stored in the table so anyone can rerun an entry. The fields
    double as command-line options of ``scripts/build_benchmark.py``."""

    text_file: str = _setting("demo_data/wikitext-2-raw/wiki.demo.raw", "WikiText raw file, split by article.")
    vocab_file: str = _setting("demo_data/vocab.txt", "BERT WordPiece vocabulary.")
    held_out_articles: list[int] = _setting([1, 5], "Positions (0-based) of the articles held out for scoring.")
    data_seed: int = _setting(0, "Seed of the next-sentence pairs (the same pairs for every run).")
    held_out_mask_seed: int = _setting(0, "Seed of the first fixed masking of the held-out pairs.")
    held_out_maskings: int = _setting(8, "Fixed maskings of the held-out pairs (seeds held_out_mask_seed + i).")
    compact_vocabulary: bool = _setting(True, "Cut the vocabulary to the word pieces the text uses.")
    hidden_size: int = _setting(32, "Width of every candidate.")
    num_attention_heads: int = _setting(2, "Attention (and lightweight-conv) heads.")
    intermediate_size: int = _setting(64, "FFN width.")
    max_seq_length: int = _setting(64, "Tokens per pair (also the position embeddings).")
    batch_size: int = _setting(32, "Pairs per optimizer step.")
    steps: int = _setting(200, "Optimizer steps from scratch.")
    learning_rate: float = _setting(5e-3, "Peak AdamW learning rate.")
    warmup_steps: int = _setting(20, "Linear warm-up steps, then linear decay to 0 at `steps`.")
    weight_decay: float = _setting(0.01, "AdamW weight decay (not on biases and LayerNorms).")
    max_grad_norm: float = _setting(0.0, "Gradient-norm clipping; 0 turns it off.")
    mlm_probability: float = _setting(0.15, "Share of tokens masked (BERT's 80/10/10 rule).")
    nsp_probability: float = _setting(0.5, "Share of pairs with a random second segment.")
    threads: int = _setting(1, "torch threads per run (runs are repeatable for a fixed count).")

    def __post_init__(self) -> None:
        positive = ("hidden_size", "num_attention_heads", "intermediate_size", "batch_size", "steps", "threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise ProtocolError(f"protocol.{name}: expected a positive integer, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ProtocolError(
                f"protocol: hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.max_seq_length < 5:
            raise ProtocolError(f"protocol.max_seq_length: expected at least 5, got {self.max_seq_length}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ProtocolError(f"protocol.warmup_steps: expected 0..steps ({self.steps}), got {self.warmup_steps}")
        if self.held_out_maskings < 1:
            raise ProtocolError(f"protocol.held_out_maskings: expected a positive integer, got {self.held_out_maskings}")
        if not self.held_out_articles or len(set(self.held_out_articles)) != len(self.held_out_articles):
            raise ProtocolError(f"protocol.held_out_articles: expected distinct article positions, got {self.held_out_articles}")
        if self.learning_rate <= 0:
            raise ProtocolError(f"protocol.learning_rate: expected a positive number, got {self.learning_rate}")

    def model_settings(self, vocab_size: int, pad_token_id: int) -> dict[str, Any]:
        """The `AutoBertZeroConfig` fields every architecture is trained with (dropout off: no noise but the seed)."""
        return {
            "vocab_size": vocab_size,
            "pad_token_id": pad_token_id,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_seq_length,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "conv_kernel_dropout": 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "protocol") -> "MiniPretrainingProtocol":
        """The protocol stored in a table or journal; every field is checked against the type of its default."""
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{source}: expected a JSON object, got {data!r:.80}")
        defaults = cls().to_json()
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise ProtocolError(f"{source}: unknown field(s) {unknown}; expected some of {sorted(defaults)}")
        values = {}
        for name, value in data.items():
            expected = type(defaults[name])
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            items_ok = expected is not list or all(isinstance(item, int) and not isinstance(item, bool) for item in value)
            if type(value) is not expected or not items_ok:
                raise ProtocolError(f"{source}.{name}: expected {'a list of integers' if expected is list else expected.__name__}, got {value!r:.80}")
            values[name] = value
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One (architecture, seed) run: the held-out loss it was scored by, and what it cost."""

    held_out_mlm_loss: float
    final_train_loss: float
    diverged: bool
    wall_seconds: float
    cpu_seconds: float

    @property
    def score(self) -> float:
        return -self.held_out_mlm_loss


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_articles(lines: Sequence[str], held_out_articles: Sequence[int], source: str = "text") -> tuple[list[str], list[str]]:
    """``(training lines, held-out lines)`` of a WikiText file: the articles (each starting at a `` = Title = ``
    line, see `training.corpus`) at positions ``held_out_articles`` are held out, the rest trains."""
    starts = [index for index, line in enumerate(lines) if is_article_heading(line)]
    if not starts:
        raise ProtocolError(f"{source}: no WikiText article heading (' = Title = ') found; cannot split by article")
    outside = [position for position in held_out_articles if not 0 <= position < len(starts)]
    if outside:
        raise ProtocolError(f"{source}: held_out_articles {outside} outside the file's {len(starts)} articles (0..{len(starts) - 1})")
    if len(held_out_articles) >= len(starts):
        raise ProtocolError(f"{source}: holding out {len(held_out_articles)} of {len(starts)} articles leaves none to train on")
    bounds = [0, *starts[1:], len(lines)]  # lines before the first heading belong to the first article
    train: list[str] = []
    held_out: list[str] = []
    for position in range(len(starts)):
        article = list(lines[bounds[position] : bounds[position + 1]])
        (held_out if position in held_out_articles else train).extend(article)
    return train, held_out


def compact_vocabulary(tokenizer, lines: Sequence[str]) -> list[str]:
    """The tokens of ``tokenizer``'s vocabulary that the WikiText ``lines`` use, plus its special tokens, in
    vocabulary order.

    WordPiece tokenizes a word by greedy longest match over the vocabulary; every piece it picks here is kept,
    and no piece is added, so the same text is split into the same pieces by the smaller vocabulary. What
    shrinks is the output layer: at a width of 64 the 30,522-way softmax costs more than the whole encoder,
    and classes that never occur in the text only slow learning down.
    """
    used: set[int] = set(tokenizer.all_special_ids)
    for document in iter_documents(lines, "wikitext"):
        for ids in tokenizer(document, add_special_tokens=False)["input_ids"]:
            used.update(ids)
    vocabulary = tokenizer.convert_ids_to_tokens(sorted(used))
    return vocabulary


class MiniPretraining:
    """A protocol with its data prepared once (tokenizer, training pairs, fixed held-out batches), ready to
    score any number of (architecture, seed) runs in this process.

    ``work_dir`` receives the split text files and the `datasets` cache of their pairs.
    """

    def __init__(self, protocol: MiniPretrainingProtocol, work_dir: str | os.PathLike):
        self.protocol = protocol
        work_dir = Path(work_dir)
        text_path = Path(protocol.text_file)
        try:
            lines = text_path.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError as error:
            raise ProtocolError(f"protocol.text_file: cannot read {text_path} ({error.strerror})") from None
        self.tokenizer = load_tokenizer(protocol.vocab_file, model_max_length=protocol.max_seq_length)
        if protocol.compact_vocabulary:
            compact = write_text_atomic(work_dir / "vocab.txt", "".join(f"{token}\n" for token in compact_vocabulary(self.tokenizer, lines)))
            self.tokenizer = load_tokenizer(compact, model_max_length=protocol.max_seq_length)
        train_lines, held_out_lines = split_articles(lines, protocol.held_out_articles, str(text_path))
        pair_settings = dict(
            tokenizer=self.tokenizer,
            max_seq_length=protocol.max_seq_length,
            nsp_probability=protocol.nsp_probability,
            seed=protocol.data_seed,
            cache_dir=str(work_dir / "datasets_cache"),
            text_format="wikitext",
        )
        data = {}
        for part, part_lines in (("train", train_lines), ("held_out", held_out_lines)):
            path = write_text_atomic(work_dir / f"{part}.raw", "".join(part_lines))
            data[part] = build_pretraining_dataset(str(path), **pair_settings)
        self.train_rows: list[dict[str, Any]] = data["train"].to_list()
        padded = self.tokenizer.pad(
            [{name: row[name] for name in ("input_ids", "token_type_ids", "attention_mask")} for row in self.train_rows],
            padding="max_length",
            max_length=protocol.max_seq_length,
            return_tensors="pt",
        )
        self.train_tensors = {name: tensor.long() for name, tensor in padded.items()}
        self.train_tensors["next_sentence_label"] = torch.tensor([row["next_sentence_label"] for row in self.train_rows])
        trained_tokens = torch.tensor(sorted({token for row in self.train_rows for token in row["input_ids"]}))
        self.held_out = [
            score_only_trained_tokens(batch, trained_tokens)
            for masking in range(protocol.held_out_maskings)
            for batch in held_out_batches(data["held_out"], self.tokenizer, protocol.mlm_probability, protocol.held_out_mask_seed + masking)
        ]
        self.model_settings = protocol.model_settings(len(self.tokenizer), self.tokenizer.pad_token_id)

    @property
    def held_out_masked_tokens(self) -> int:
        return int(sum((batch["labels"] != -100).sum() for batch in self.held_out))

    def data_summary(self) -> dict[str, Any]:
        return {
            "train_pairs": len(self.train_rows),
            "train_tokens": int(sum(len(row["input_ids"]) for row in self.train_rows)),
            "held_out_pairs": int(sum(batch["input_ids"].shape[0] for batch in self.held_out)),
            "held_out_masked_tokens": self.held_out_masked_tokens,
        }

    def build_model(self, layers: Sequence[Mapping[str, Any]], seed: int) -> AutoBertZeroForPreTraining:
        """The architecture at the protocol's width, initialised from ``seed``."""
        torch.manual_seed(seed)
        return AutoBertZeroForPreTraining(AutoBertZeroConfig(layers=[dict(layer) for layer in layers], **self.model_settings))

    def _batches(self, seed: int):
        """Training batches for ``seed``: pairs in a fresh seeded permutation per epoch, masked by the training
        library's collator seeded from the run seed (so masks differ between seeds and repeat for a seed).

        The pairs are padded once, up front, and each step only masks (``PretrainingCollator.mask_tokens``, the
        one place of BERT's masking rule): padding a batch of Python lists every step costs more than the
        step's whole forward pass at this size.
        """
        order = np.random.default_rng([seed, _DATA_ORDER_STREAM])
        collator = PretrainingCollator(self.tokenizer, mlm_probability=self.protocol.mlm_probability, seed=seed)
        size = self.protocol.batch_size
        queue = torch.empty(0, dtype=torch.long)
        while True:
            while len(queue) < size:
                queue = torch.cat([queue, torch.from_numpy(order.permutation(len(self.train_rows)))])
            chosen, queue = queue[:size], queue[size:]
            batch = {name: tensor[chosen] for name, tensor in self.train_tensors.items()}
            batch["input_ids"], batch["labels"] = collator.mask_tokens(batch["input_ids"])
            yield batch

    def run(self, layers: Sequence[Mapping[str, Any]], seed: int) -> RunResult:
        """Train ``layers`` from scratch for ``protocol.steps`` steps and score it on the held-out tokens."""
        protocol = self.protocol
        torch.set_num_threads(protocol.threads)
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        model = self.build_model(layers, seed)
        model.train()
        no_decay = [parameter for name, parameter in model.named_parameters() if name.endswith("bias") or "LayerNorm" in name]
        no_decay_ids = {id(parameter) for parameter in no_decay}
        decay = [parameter for parameter in model.parameters() if id(parameter) not in no_decay_ids]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": protocol.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=protocol.learning_rate,
            eps=1e-6,
            foreach=True,
        )
        schedule = get_linear_schedule_with_warmup(optimizer, protocol.warmup_steps, protocol.steps)
        batches = self._batches(seed)
        diverged = False
        loss_value = math.nan
        for _ in range(protocol.steps):
            loss = model(**next(batches)).loss
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                diverged = True
                break
            loss.backward()
            if protocol.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.max_grad_norm, foreach=True)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        held_out = math.log(len(self.tokenizer)) if diverged else held_out_mlm_loss(model, self.held_out)
        if not math.isfinite(held_out):
            diverged, held_out = True, math.log(len(self.tokenizer))
        return RunResult(
            held_out_mlm_loss=held_out,
            final_train_loss=loss_value if math.isfinite(loss_value) else math.log(len(self.tokenizer)),
            diverged=diverged,
            wall_seconds=time.perf_counter() - wall_started,
            cpu_seconds=time.process_time() - cpu_started,
        )


def measure_trainer_overhead(
    protocol: MiniPretrainingProtocol, work_dir: str | os.PathLike, repeats: int = 3
) -> dict[str, Any]:
    """Why the protocol has its own loop: the same training (architecture, steps, batch, optimizer settings)
    through ``training.runners.pretrain`` (transformers' `Trainer`) and through :meth:`MiniPretraining.run`,
    interleaved ``repeats`` times; medians of wall and CPU seconds, and their ratios (Trainer / lean)."""
    from training.runners import pretrain  # the Trainer path is only needed for this comparison

    pretraining = MiniPretraining(protocol, work_dir)
    layers = [
        {"type": "conv", "kernel_size": 3},
        {"type": "attention", "program": "matmul(cosine(Q, K), Q)"},
        {"type": "conv", "kernel_size": 65},
    ]  # an architecture of benchmarks/mini_3layer.json
    timings: dict[str, dict[str, list[float]]] = {"lean": {"wall": [], "cpu": []}, "trainer": {"wall": [], "cpu": []}}
    for repeat in range(repeats):
        result = pretraining.run(layers, seed=repeat)
        timings["lean"]["wall"].append(result.wall_seconds)
        timings["lean"]["cpu"].append(result.cpu_seconds)
        torch.set_num_threads(protocol.threads)
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        model = pretraining.build_model(layers, seed=repeat)
        pretrain(
            model,
            pretraining.tokenizer,
            pretraining.train_rows,
            Path(work_dir) / "trainer",
            mlm_probability=protocol.mlm_probability,
            save_model=False,
            max_steps=protocol.steps,
            per_device_train_batch_size=protocol.batch_size,
            learning_rate=protocol.learning_rate,
            warmup_steps=protocol.warmup_steps,
            weight_decay=protocol.weight_decay,
            max_grad_norm=protocol.max_grad_norm,
            seed=repeat,
            logging_steps=protocol.steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        held_out_mlm_loss(model, pretraining.held_out)
        timings["trainer"]["wall"].append(time.perf_counter() - wall_started)
        timings["trainer"]["cpu"].append(time.process_time() - cpu_started)
    medians = {path: {kind: float(np.median(values)) for kind, values in kinds.items()} for path, kinds in timings.items()}
    return {
        "architecture": layers,
        "steps": protocol.steps,
        "repeats": repeats,
        "median_seconds": medians,
        "trainer_over_lean_wall": medians["trainer"]["wall"] / medians["lean"]["wall"],
        "trainer_over_lean_cpu": medians["trainer"]["cpu"] / medians["lean"]["cpu"],
        "trainer_overhead_wall_seconds": medians["trainer"]["wall"] - medians["lean"]["wall"],
        "threads": protocol.threads,
    }
