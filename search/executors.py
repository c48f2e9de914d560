"""Where a generation's children are evaluated: here, one at a time (``local``), or on Ray workers at once (``ray``).

The search (``search/run_opnas.py``) proposes a generation, takes the evaluator's snapshot (the BIWS
super-net as the generation starts; None for an evaluator that shares nothing), and hands the children that
are not evaluated yet to an executor as :class:`CandidateJob` s. The executor yields each child's
:class:`CandidateOutcome` as it finishes, in any order; the search persists it at once and commits the
outcomes in proposal order. An executor only ever calls :func:`evaluate_candidate`, that is the evaluator's
:meth:`~search.evaluator.Evaluator.evaluate_from`: a pure function of the snapshot, the architecture and the
candidate's seed, so where and in which order the children run does not change the search.

- :class:`LocalExecutor`: the children one after the other in this process. Under ``accelerate launch`` or
  ``torchrun`` every process runs the same child (the search gives them the same jobs and snapshot), and the
  training library trains it data-parallel.
- :class:`RayExecutor`: the children at once on Ray workers, each with ``cpus_per_candidate`` CPUs and
  ``gpus_per_candidate`` of a GPU; the evaluator travels to the workers once per search and the snapshot once
  per generation, through Ray's object store (``ray.put``). A worker that dies mid-candidate (a lost node, an
  out-of-memory kill) makes Ray run the child again elsewhere (up to :data:`RAY_TASK_RETRIES` times); as the
  evaluation is a pure function, the retry's result is the one the lost attempt would have given, and the
  search records it once. Ray is an optional dependency: ``pip install -e ".[ray]"``.

Both fix the number of torch threads of a candidate to ``cpus_per_candidate``: float sums depend on it, so the
local executor and Ray workers give bit-identical results only with the same value.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .config import ExecutorSettings
from .distributed import distributed_state
from .evaluator import EvaluationContext, EvaluationResult, Evaluator


logger = logging.getLogger(__name__)

RAY_TASK_RETRIES = 3  # runs of a child after its worker died, before it is recorded as failed


@dataclasses.dataclass(frozen=True)
class CandidateJob:
    """One child to evaluate: its index in the search, its seed (``controller.candidate_seed``), its architecture."""

    index: int
    seed: int
    architecture: list[dict[str, Any]]


@dataclasses.dataclass
class CandidateOutcome:
    """What evaluating a child gave: its result and write-back, or (``result`` None) the error it raised, with
    the traceback for the search's log (a Ray worker's log is not the search's)."""

    result: EvaluationResult | None
    error: str | None = None
    write_back: bytes | None = None
    traceback: str | None = None


def evaluate_candidate(
    evaluator: Evaluator, snapshot: bytes | None, job: CandidateJob, scratch: Path, is_main_process: bool = True
) -> CandidateOutcome:
    """The evaluator's outcome for one child; an exception becomes a failed outcome (the search records it and
    goes on: one bad candidate never stops a search)."""
    context = EvaluationContext(job.index, job.seed, scratch, is_main_process)
    try:
        result, write_back = evaluator.evaluate_from(snapshot, job.architecture, context)
    except Exception as error:  # noqa: BLE001 - any failure of one candidate is recorded, the search goes on
        return CandidateOutcome(None, f"{type(error).__name__}: {error}", None, traceback.format_exc())
    return CandidateOutcome(result, None, write_back)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Executor(abc.ABC):
    """Evaluates the jobs of one generation and yields ``(job, outcome)`` as each finishes."""

    name: str

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the search's start: where and how many candidates run at once."""

    @abc.abstractmethod
    def evaluate(
        self, evaluator: Evaluator, snapshot: bytes | None, jobs: Sequence[CandidateJob]
    ) -> Iterator[tuple[CandidateJob, CandidateOutcome]]:
        """Every job's outcome, in the order they finish."""

    def close(self) -> None:
        """Release what the executor started."""


class LocalExecutor(Executor):
    """The children one after the other, in this process (and, under a multi-process launch, in every process
    at once: data-parallel). ``scratch_dir`` holds each child's training files while it runs."""

    name = "local"

    def __init__(self, settings: ExecutorSettings, scratch_dir: Path, num_processes: int = 1, is_main_process: bool = True):
        self.settings = settings
        self.scratch_dir = scratch_dir
        self.num_processes = num_processes
        self.is_main_process = is_main_process

    def describe(self) -> str:
        return (
            f"executor local: one candidate at a time, data-parallel over {self.num_processes} process(es), "
            f"{self.settings.cpus_per_candidate} torch thread(s) per process"
        )

    def evaluate(self, evaluator, snapshot, jobs):
        for job in jobs:
            scratch = self.scratch_dir / f"{job.index:06d}"
            with torch_threads(self.settings.cpus_per_candidate):
                outcome = evaluate_candidate(evaluator, snapshot, job, scratch, self.is_main_process)
            # every process trained in the same scratch folder: it goes once all are done with it (a process
            # that finished first must not delete the files the main process is still writing)
            if self.num_processes > 1:
                distributed_state().wait_for_everyone()
            if self.is_main_process:
                shutil.rmtree(scratch, ignore_errors=True)
            yield job, outcome


# ---------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------

_WORKER_EVALUATORS: dict[str, Evaluator] = {}  # in a Ray worker process: the search's evaluator, fetched once


def _evaluate_on_ray_worker(evaluator_box: list, snapshot: bytes | None, job: CandidateJob, threads: int) -> CandidateOutcome:
    """A Ray task: one child, on a copy of the search's evaluator (``evaluator_box`` holds its object
    reference, unresolved, so that a worker fetches and unpickles it once, not once per child)."""
    import ray

    (reference,) = evaluator_box
    key = reference.hex()
    if key not in _WORKER_EVALUATORS:
        _WORKER_EVALUATORS.clear()  # a worker serves one search at a time
        _WORKER_EVALUATORS[key] = ray.get(reference)
    with torch_threads(threads), tempfile.TemporaryDirectory(prefix=f"autobert-zero-candidate-{job.index:06d}-") as scratch:
        return evaluate_candidate(_WORKER_EVALUATORS[key], snapshot, job, Path(scratch))


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError('the ray executor needs Ray: pip install -e ".[ray]"') from None
    return ray


class RayExecutor(Executor):
    """A generation's children at once on a Ray cluster (see the module docstring). ``workers``: the most
    children in flight (None: as many as the cluster's CPUs and GPUs hold at the resources per candidate).
    Connects to ``settings.ray_address`` unless Ray is already initialised in this process (then that
    cluster is used and left running); a Ray instance it started itself it shuts down in :meth:`close`."""

    name = "ray"

    def __init__(self, settings: ExecutorSettings, evaluator: Evaluator):
        ray = import_ray()
        self.settings = settings
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            # the workers' console output stays in Ray's session logs: the search's console shows its own progress
            ray.init(address=settings.ray_address, log_to_driver=False, include_dashboard=False)
        resources = ray.cluster_resources()
        self.cluster = {"CPU": resources.get("CPU", 0.0), "GPU": resources.get("GPU", 0.0)}
        capacity = math.floor(self.cluster["CPU"] / settings.cpus_per_candidate + 1e-9)
        if settings.gpus_per_candidate > 0:
            capacity = min(capacity, math.floor(self.cluster["GPU"] / settings.gpus_per_candidate + 1e-9))
        if capacity < 1:
            self.close()
            raise RuntimeError(
                f"the Ray cluster has {self.cluster['CPU']:g} CPUs and {self.cluster['GPU']:g} GPUs; a candidate asks for "
                f"{settings.cpus_per_candidate} CPUs (executor.cpus_per_candidate) and {settings.gpus_per_candidate:g} GPUs "
                "(executor.gpus_per_candidate), so none would ever run"
            )
        self.workers = settings.workers or capacity
        if self.workers > capacity:
            logger.warning(
                "executor.workers=%d, but the Ray cluster holds %d candidates at once at these resources: the others queue",
                self.workers,
                capacity,
            )
        self.evaluator_box = [ray.put(evaluator)]
        self.task = ray.remote(_evaluate_on_ray_worker).options(
            num_cpus=settings.cpus_per_candidate,
            num_gpus=settings.gpus_per_candidate,
            max_retries=RAY_TASK_RETRIES,
            retry_exceptions=False,  # an evaluator's exception is a result (a failed candidate), not a lost worker
        )

    def describe(self) -> str:
        return (
            f"executor ray: up to {self.workers} candidates at once (workers), each {self.settings.cpus_per_candidate} "
            f"CPU(s) / torch thread(s) and {self.settings.gpus_per_candidate:g} GPU; cluster {self.cluster['CPU']:g} CPUs, "
            f"{self.cluster['GPU']:g} GPUs"
        )

    def evaluate(self, evaluator, snapshot, jobs):
        import ray
        from ray.exceptions import RayError, RayTaskError

        snapshot_reference = ray.put(snapshot)  # once per generation; every worker reads it from the object store
        waiting = list(reversed(jobs))
        running: dict[Any, CandidateJob] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    job = waiting.pop()
                    running[self.task.remote(self.evaluator_box, snapshot_reference, job, self.settings.cpus_per_candidate)] = job
                (finished,), _ = ray.wait(list(running), num_returns=1)
                job = running.pop(finished)
                try:
                    outcome = ray.get(finished)
                except RayTaskError as error:  # the task itself raised: the evaluator's errors are outcomes, so this is
                    raise RuntimeError(  # the worker's set-up (say, a module the evaluator needs is not on its path)
                        f"a Ray worker could not evaluate candidate {job.index}: {error.cause!r}; every worker needs the "
                        "packages and files the evaluator uses"
                    ) from error
                except RayError as error:  # the worker died on every try (a lost node, the out-of-memory killer)
                    outcome = CandidateOutcome(
                        None, f"{type(error).__name__}: the Ray worker evaluating it was lost {RAY_TASK_RETRIES + 1} times: {error}"
                    )
                yield job, outcome
        finally:
            for reference in running:  # the search stopped early (an error, an interrupt): no orphan work
                ray.cancel(reference, force=True)

    def close(self) -> None:
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False


def make_executor(
    settings: ExecutorSettings, evaluator: Evaluator, scratch_dir: Path, num_processes: int, is_main_process: bool
) -> Executor:
    if settings.name == "ray":
        if num_processes > 1:
            raise RuntimeError(
                f"the ray executor runs from one driver process, not {num_processes} (launch it with python, not "
                "accelerate launch / torchrun); its workers are Ray's"
            )
        return RayExecutor(settings, evaluator)
    return LocalExecutor(settings, scratch_dir, num_processes, is_main_process)
