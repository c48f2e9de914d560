"""How a candidate is judged (NNI's "evaluator"): one interface, swappable by the user.

An :class:`Evaluator` turns an architecture into an :class:`EvaluationResult` (a proxy score, higher is
better, plus metrics and costs). To judge candidates on your own task, either subclass :class:`Evaluator` or
wrap a function ``evaluate(architecture, context) -> EvaluationResult | {"score": ..., ...}`` in
:class:`FunctionEvaluator`, and pass it to :func:`search.run_opnas.run_search`: it then runs with every
executor (``search.executors``: one process, data-parallel processes, or Ray workers, which get a copy of it).

An evaluator whose candidates share state (the BIWS super-net) also implements the weight-sharing hooks:
:meth:`Evaluator.snapshot` (the state a generation starts from), :meth:`Evaluator.evaluate_from` (a child
trained from a snapshot, giving back a write-back) and :meth:`Evaluator.apply` (a write-back copied in, in
proposal order), with :meth:`Evaluator.save` / :meth:`Evaluator.load` for the state between restarts.

Built in: :class:`SyntheticEvaluator` (instant, for tests and for timing the controller; its landscape,
:class:`SyntheticLandscape`, also scores the synthetic tables of strategy comparisons) here,
:class:`~search.table_evaluator.TableEvaluator` (a benchmark table looked up) beside it, and the
paper's BIWS evaluator (super-net initialisation → MLM + NSP → GLUE proxy) in :mod:`search.biws_evaluator`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modeling_autobert_zero.attention_programs import canonical_program, parse_program

from .space import SearchSpace


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
    """Judges architectures. Every process of a data-parallel search evaluates the same architecture with the
    same context; the main process's result is the one recorded. An evaluator that raises on some processes
    only leaves the others waiting in their training collectives, as any DDP job would. Ray workers evaluate
    on a copy of the evaluator (pickled once per search), so keep it picklable and its results a function of
    the architecture and ``context.seed``.

    ``vocab_size``: the vocabulary the candidates are built with, when the evaluator decides it (a
    tokenizer's size); None leaves it to the config's ``model.vocab_size``.
    """

    vocab_size: int | None = None

    @abc.abstractmethod
    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        """The candidate's proxy score. Raise, or return a non-finite score, if it failed: the search records
        the error and goes on."""

    def save(self, directory: Path, tag: str) -> dict[str, str]:
        """Write what must survive a restart; return {role: file name relative to ``directory``}, each named
        ``<role>-<tag><suffix>`` (``tag``: 6 digits naming the point of the search), so that a resumed search
        can tell the files a kill left behind, unnamed by its state, and remove them. An evaluator with no
        state between candidates writes nothing."""
        return {}

    def load(self, directory: Path, files: Mapping[str, str]) -> None:
        """Restore what :meth:`save` wrote (``files`` as it returned them)."""

    # Weight sharing (BIWS): what the children of one generation share. An evaluator without shared state keeps
    # these defaults, and every executor then calls only :meth:`evaluate`.

    def snapshot(self) -> bytes | None:
        """The shared state every child of a generation starts from, taken when the generation starts (bytes, so
        it can travel to another process); None: this evaluator shares nothing between candidates."""
        return None

    def evaluate_from(
        self, snapshot: bytes | None, architecture: list[dict[str, Any]], context: EvaluationContext
    ) -> tuple[EvaluationResult, bytes | None]:
        """Evaluate one child starting from ``snapshot``; return its result and its *write-back* (what it gives
        back to the shared state, bytes; None when it gives nothing back), leaving this evaluator unchanged.

        It must be a pure function of ``snapshot``, ``architecture`` and ``context.seed``: an executor may run it
        in another process (on a copy of this evaluator), in any order, or twice (a retry after a lost worker).
        """
        return self.evaluate(architecture, context), None

    def apply(self, write_back: bytes, source: str) -> None:
        """Copy a child's write-back into the shared state. The search calls it in proposal order, once the
        write-backs of all earlier children of the generation are in; ``source`` names it in errors."""
        raise NotImplementedError(f"{type(self).__name__} shares no state, so it has no write-back to apply ({source})")


class FunctionEvaluator(Evaluator):
    """A plain function as an evaluator: ``function(architecture, context)`` returns an
    :class:`EvaluationResult` or a mapping with at least ``score``."""

    def __init__(self, function: Callable[[list[dict[str, Any]], EvaluationContext], Any]):
        self.function = function

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        result = self.function(architecture, context)
        return result if isinstance(result, EvaluationResult) else EvaluationResult.from_mapping(result)


SYNTHETIC_LANDSCAPES = ("positional", "op_blind")


class SyntheticLandscape:
    """A documented synthetic score function over a search space, for tests, timing and strategy comparisons.
    It says nothing about real architectures.

    Each layer contributes a term; the *structured* score is the mean of the layers' terms:

    - ``positional``: an attention layer's term is the mean over its canonical positions of a weight per
      (position, op), shared by all layers; a conv layer's term is a weight per (layer, kernel size). Op
      identity per position carries signal: what operation priority assumes.
    - ``op_blind`` (a control): an attention layer's term is a value drawn per program, with the spread the
      positional term would have (one position's weight has standard deviation 1/√3, a mean of ``ℓ`` of them
      1/√(3ℓ)); a conv layer's term is a value per layer, the same for every kernel size. Neither the op at a
      position nor the kernel size carries signal, yet a child that keeps a layer keeps its term, so
      evolution still works.

    Weights are uniform in [-1, 1], values normal; all are drawn from generators seeded by ``seed`` and the
    layer's or architecture's name (:meth:`layer_name`), so the landscape is a fixed function. :meth:`score` adds an
    architecture-specific normal term of standard deviation ``epistasis`` (so the landscape is not exactly
    additive); :meth:`seed_score` adds normal noise of standard deviation ``seed_noise`` per (architecture,
    seed), as repeated training would. ``nominal_spread`` = 1/√(3L), the spread of a mean of ``L`` layer
    terms, is the unit the comparisons give ``epistasis`` and ``seed_noise`` in.
    """

    def __init__(self, space: SearchSpace, kind: str = "positional", seed: int = 0, epistasis: float = 0.0):
        if kind not in SYNTHETIC_LANDSCAPES:
            raise ValueError(f"synthetic landscape: expected one of {list(SYNTHETIC_LANDSCAPES)}, got {kind!r}")
        self.space = space
        self.kind = kind
        self.seed = seed
        self.epistasis = epistasis
        self.nominal_spread = 1.0 / math.sqrt(3.0 * space.num_layers)
        weights = random.Random(f"synthetic-landscape:{seed}")
        self.op_weights = [{op: weights.uniform(-1.0, 1.0) for op in space.ops} for _ in range(space.max_program_length)]
        self.kernel_weights = [
            {kernel: weights.uniform(-1.0, 1.0) for kernel in space.kernel_sizes} for _ in range(space.num_layers)
        ]
        self._terms: dict[tuple[int, str], float] = {}

    def _gauss(self, *parts: Any) -> float:
        return random.Random(":".join(map(str, ("synthetic", self.kind, self.seed, *parts)))).gauss(0.0, 1.0)

    @staticmethod
    def layer_name(layer: Mapping[str, Any]) -> str:
        """The name a layer's draws are seeded with: ``conv9``, or ``attention:`` and its canonical program as one
        expression (SPEC §2's syntax); an architecture's name joins its layers' with `` | ``.

        Part of the landscape's definition, so it never follows the spelling of the architecture keys: the
        landscape stays one fixed function, and every synthetic figure measured on it reproduces. (These were the
        keys' spelling when the figures in the README were measured.) An expression repeats shared values, so it
        grows exponentially with a program's sharing: this is for the short programs of synthetic experiments."""
        if layer["type"] == "conv":
            return f"conv{layer['kernel_size']}"
        return f"attention:{canonical_program(parse_program(layer['program'])).to_expression()}"

    def layer_term(self, index: int, layer: Mapping[str, Any], name: str | None = None) -> float:
        """Layer ``index``'s term (``name``: its :meth:`layer_name`, when known)."""
        name = name or self.layer_name(layer)
        if (index, name) not in self._terms:
            if layer["type"] == "conv":
                term = self.kernel_weights[index][layer["kernel_size"]] if self.kind == "positional" else self._gauss("conv", index) / math.sqrt(3.0)
            else:
                ops = [instruction.op for instruction in parse_program(layer["program"]).instructions]
                if self.kind == "positional":
                    term = statistics.fmean(self.op_weights[position][op] for position, op in enumerate(ops))
                else:
                    term = self._gauss(name) / math.sqrt(3.0 * len(ops))
            self._terms[index, name] = term
        return self._terms[index, name]

    def score(self, architecture: Sequence[Mapping[str, Any]]) -> float:
        """The architecture's (noise-free) score: structured score plus its epistatic term."""
        return self._score(architecture, [self.layer_name(layer) for layer in architecture])

    def _score(self, architecture: Sequence[Mapping[str, Any]], names: Sequence[str]) -> float:
        structured = statistics.fmean(self.layer_term(i, layer, name) for i, (layer, name) in enumerate(zip(architecture, names)))
        return structured + self.epistasis * self._gauss("epistasis", " | ".join(names)) if self.epistasis else structured

    def seed_score(self, architecture: Sequence[Mapping[str, Any]], seed: int, seed_noise: float) -> float:
        """The score one training run with ``seed`` would report: :meth:`score` plus seed noise."""
        names = [self.layer_name(layer) for layer in architecture]
        return self._score(architecture, names) + seed_noise * self._gauss("seed", seed, " | ".join(names))


class SyntheticEvaluator(Evaluator):
    """An instant, seeded stand-in for training, for tests and for measuring the controller's overhead: the
    :class:`SyntheticLandscape` ``landscape`` (positional by default) with ``noise`` as its epistasis, so
    operation priority has something real to find and every run of the same search gives the same scores.
    ``delay_seconds`` stands in for training time. It says nothing about real architectures.
    """

    def __init__(
        self, space: SearchSpace, seed: int = 0, noise: float = 0.01, delay_seconds: float = 0.0, landscape: str = "positional"
    ):
        self.landscape = SyntheticLandscape(space, landscape, seed, epistasis=noise)
        self.delay_seconds = delay_seconds

    def score(self, architecture: Sequence[Mapping[str, Any]]) -> float:
        return self.landscape.score(architecture)

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        started = time.perf_counter()
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        score = self.score(architecture)
        return EvaluationResult(score=score, metrics={"synthetic": score}, cost={"wall_seconds": time.perf_counter() - started})
