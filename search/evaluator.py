"""How a candidate is judged (NNI's "evaluator"): one interface, swappable by the user.

An :class:`Evaluator` turns an architecture into an :class:`EvaluationResult` (a proxy score, higher is
better, plus metrics and costs). The search only ever calls :meth:`Evaluator.evaluate`, and
:meth:`Evaluator.save` / :meth:`Evaluator.load` for whatever the evaluator must keep between candidates
(the BIWS super-net). To judge candidates on your own task, either subclass :class:`Evaluator` or wrap a
function ``evaluate(architecture, context) -> EvaluationResult | {"score": ..., ...}`` in
:class:`FunctionEvaluator`, and pass it to :func:`search.run_opnas.run_search`.

Built in: :class:`SyntheticEvaluator` (instant, for tests and for timing the controller) here, and the
paper's BIWS evaluator (super-net initialisation → MLM + NSP → GLUE proxy) in :mod:`search.biws_evaluator`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modeling_autobert_zero.attention_programs import parse_program

from .space import SearchSpace, architecture_key


@dataclasses.dataclass(frozen=True)
class EvaluationContext:
    """What an evaluator knows about the candidate beyond its architecture.

    ``seed`` is derived from the search seed and ``index``, so a candidate re-evaluated after a resume
    sees exactly the randomness it saw the first time. ``output_dir`` is a scratch directory for this
    candidate; ``is_main_process`` is False on every other rank under ``accelerate launch``.
    """

    index: int
    seed: int
    output_dir: Path
    is_main_process: bool = True


@dataclasses.dataclass
class EvaluationResult:
    """``score``: the proxy score, higher is better. ``status="infeasible"``: the candidate broke a budget
    measured by the evaluator (say, latency) and was not trained; ``error`` says which."""

    score: float | None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    cost: dict[str, float] = dataclasses.field(default_factory=dict)
    status: str = "ok"
    error: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "EvaluationResult":
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown or "score" not in data:
            raise ValueError(
                f"an evaluation result needs 'score' and may have 'metrics', 'cost', 'status', 'error'; got {sorted(data)}"
            )
        return cls(**data)


class Evaluator(abc.ABC):
    """Judges architectures. Every process of a distributed search calls :meth:`evaluate` with the same
    architecture and context; the main process's result is the one recorded. An evaluator that raises on
    some processes only leaves the others waiting in their training collectives, as any DDP job would.

    ``vocab_size``: the vocabulary the candidates are built with, when the evaluator decides it (a
    tokenizer's size); None leaves it to the config's ``model.vocab_size``.
    """

    vocab_size: int | None = None

    @abc.abstractmethod
    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        """The candidate's proxy score. Raise, or return a non-finite score, if it failed: the search records
        the error and goes on."""

    def save(self, directory: Path, tag: str) -> dict[str, str]:
        """Write what must survive a restart; return {role: file name relative to ``directory``}.
        ``tag`` is unique per save. An evaluator with no state between candidates writes nothing."""
        return {}

    def load(self, directory: Path, files: Mapping[str, str]) -> None:
        """Restore what :meth:`save` wrote (``files`` as it returned them)."""


class FunctionEvaluator(Evaluator):
    """A plain function as an evaluator: ``function(architecture, context)`` returns an
    :class:`EvaluationResult` or a mapping with at least ``score``."""

    def __init__(self, function: Callable[[list[dict[str, Any]], EvaluationContext], Any]):
        self.function = function

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        result = self.function(architecture, context)
        return result if isinstance(result, EvaluationResult) else EvaluationResult.from_mapping(result)


class SyntheticEvaluator(Evaluator):
    """An instant, seeded stand-in for training, for tests and for measuring the controller's overhead.

    The score is a fixed additive function of the architecture (a hidden weight per (program position, op)
    and per (layer, kernel size), drawn from ``seed``) plus noise that depends only on the architecture, so
    operation priority has something real to find and every run of the same search gives the same scores.
    ``delay_seconds`` stands in for training time. It says nothing about real architectures.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, noise: float = 0.01, delay_seconds: float = 0.0):
        self.seed = seed
        self.noise = noise
        self.delay_seconds = delay_seconds
        weights = random.Random(f"synthetic-landscape:{seed}")
        self.op_weights = [
            {op: weights.uniform(-1.0, 1.0) for op in space.ops} for _ in range(space.max_program_length)
        ]
        self.kernel_weights = [
            {kernel: weights.uniform(-1.0, 1.0) for kernel in space.kernel_sizes} for _ in range(space.num_layers)
        ]

    def score(self, architecture: Sequence[Mapping[str, Any]]) -> float:
        terms = []
        for layer_index, layer in enumerate(architecture):
            if layer["type"] == "conv":
                terms.append(self.kernel_weights[layer_index][layer["kernel_size"]])
            else:
                instructions = parse_program(layer["program"]).instructions
                terms.append(sum(self.op_weights[i][ins.op] for i, ins in enumerate(instructions)) / len(instructions))
        noise = random.Random(f"synthetic-noise:{self.seed}:{architecture_key(architecture)}").gauss(0.0, self.noise)
        return min(1.0, max(0.0, 0.5 + 0.4 * math.tanh(sum(terms) / len(terms)) + noise))

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        started = time.perf_counter()
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        score = self.score(architecture)
        return EvaluationResult(score=score, metrics={"synthetic": score}, cost={"wall_seconds": time.perf_counter() - started})
