"""Run an OP-NAS search (paper Algorithm 1) from a YAML/JSON config: here, data-parallel, or on a Ray cluster.

    python search/run_opnas.py --config search/configs/tiny.yaml [--output_dir DIR] [--resume] [key=value ...]
    accelerate launch --multi_gpu --num_processes 8 search/run_opnas.py --config search/configs/paper.yaml
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 search/run_opnas.py --config ...   # CPUs only
    python search/run_opnas.py --config ... --executor ray --ray_address auto --gpus_per_candidate 1

The search works one generation at a time (SPEC §4–§6). The controller (strategy, mutations, UCB) proposes
a generation; the evaluator's snapshot is taken (the BIWS super-net as the generation starts); an executor
(``search/executors.py``) evaluates the children that are not evaluated yet, ``local``: one at a time, on every
process of a multi-process launch (data-parallel), ``ray``: all at once on Ray workers. Each child's outcome is
written to the output folder as it arrives (its result in the state, its write-back as a safetensors file),
and outcomes are committed in proposal order: the write-back applied to the super-net, the candidate
added to the history; when a generation is complete, the strategy observes it. So the result is the same
with any executor and any number of workers, and ``--resume`` never evaluates a finished child again.

One search per output folder (a lock, ``search.lock``); the state (``search_state.json``) and the evaluator's
files are written atomically, and every file is checked when a search resumes. Logs: a progress bar,
``history.jsonl`` (one line per candidate), TensorBoard when installed, and ``search.log`` (every log line,
the local candidates' training steps included; on the console too with ``--verbose``; Ray workers' logs stay
in Ray's session folder). Any config setting can follow as ``dotted.key=value``
(``evaluator.biws.pretraining.max_steps=5``).

From Python, ``run_search(config, evaluator=MyEvaluator())`` runs a search with your own evaluator.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any


if __package__ in (None, ""):  # run as a file (python search/run_opnas.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from search.config import ConfigError, SearchConfig, load_config
from search.controller import SearchController, candidate_seed, config_digest
from search.distributed import broadcast_from_main, check_launch, close_process_group, distributed_state
from search.evaluator import Evaluator, SyntheticEvaluator
from search.executors import CandidateJob, CandidateOutcome, make_executor
from search.lock import OutputFolderLock, SearchLockedError
from search.state import (
    CONFIG_COPY,
    STATE_FILE,
    ArrivedResult,
    SearchState,
    StateFileError,
    atomic_write_bytes,
    atomic_write_json,
    load_state,
    save_state,
)
from search.strategies import STRATEGIES
from search.table_evaluator import TableEvaluator
from training.console import configure_logging
from training.overrides import split_overrides


logger = logging.getLogger(__name__)

HISTORY_LOG = "history.jsonl"


@dataclasses.dataclass
class RunArguments:
    config: str = dataclasses.field(metadata={"help": "Search config (YAML or JSON), e.g. search/configs/tiny.yaml."})
    output_dir: str | None = dataclasses.field(default=None, metadata={"help": "Overrides the config's output_dir."})
    resume: bool = dataclasses.field(default=False, metadata={"help": "Continue the search saved in output_dir."})
    strategy: str | None = dataclasses.field(default=None, metadata={"help": f"Overrides the config: {sorted(STRATEGIES)}."})
    seed: int | None = dataclasses.field(default=None, metadata={"help": "Overrides the config's seed."})
    max_evaluations: int | None = dataclasses.field(default=None, metadata={"help": "Overrides the budget."})
    weight_sharing: bool | None = dataclasses.field(
        default=None, metadata={"help": "Overrides evaluator.biws.weight_sharing (BIWS on/off)."}
    )
    executor: str | None = dataclasses.field(
        default=None, metadata={"help": "Where candidates run: local (this process / every rank, data-parallel) or ray."}
    )
    ray_address: str | None = dataclasses.field(
        default=None, metadata={"help": "Ray: `auto` (the cluster `ray start` runs here) or HOST:PORT; default: start Ray here."}
    )
    workers: int | None = dataclasses.field(
        default=None, metadata={"help": "Ray: candidates evaluated at once (default: as many as the cluster holds)."}
    )
    cpus_per_candidate: int | None = dataclasses.field(
        default=None, metadata={"help": "CPUs Ray reserves per candidate, and each candidate's torch threads (every executor); default 1."}
    )
    gpus_per_candidate: float | None = dataclasses.field(
        default=None, metadata={"help": "Ray: GPUs per candidate, at most 1 (0.25: four candidates share a GPU); default 0."}
    )
    no_progress: bool = dataclasses.field(default=False, metadata={"help": "Hide the progress bar."})
    verbose: bool = dataclasses.field(
        default=False,
        metadata={"help": "Print the candidates' per-step training logs on the console too (always in OUTPUT_DIR/search.log)."},
    )

    def overrides(self) -> dict[str, Any]:
        pairs = {
            "output_dir": self.output_dir,
            "strategy": self.strategy,
            "seed": self.seed,
            "max_evaluations": self.max_evaluations,
            "evaluator.biws.weight_sharing": self.weight_sharing,
            "executor.name": self.executor,
            "executor.ray_address": self.ray_address,
            "executor.workers": self.workers,
            "executor.cpus_per_candidate": self.cpus_per_candidate,
            "executor.gpus_per_candidate": self.gpus_per_candidate,
        }
        return {key: value for key, value in pairs.items() if value is not None}


def build_evaluator(config: SearchConfig) -> Evaluator:
    """The evaluator the config names. BIWS is imported only when used: it needs the training library."""
    if config.evaluator.name == "synthetic":
        settings = config.evaluator.synthetic
        return SyntheticEvaluator(config.space, config.seed, settings.noise, settings.delay_seconds, settings.landscape)
    if config.evaluator.name == "table":
        settings = config.evaluator.table
        evaluator = TableEvaluator.for_search(settings.path, config.space, settings.per_query_seed)
        if not evaluator.table.exhaustive:
            logger.warning(
                "%s is not exhaustive: candidates outside it are recorded as failed (TableError)", settings.path
            )
        return evaluator
    from search.biws_evaluator import BiwsEvaluator

    return BiwsEvaluator.from_config(config)


class _SearchLog:
    """``history.jsonl`` and TensorBoard, main process only; rebuilt from the state on resume so that a kill
    between the state write and the log write loses or repeats nothing."""

    def __init__(self, output_dir: Path, state: SearchState, use_tensorboard: bool):
        self.path = output_dir / HISTORY_LOG
        lines = "".join(json.dumps(record.to_json(), allow_nan=False) + "\n" for record in state.history)
        atomic_write_bytes(self.path, lines.encode())
        self.best = max((r.score for r in state.history if r.status == "ok"), default=None)
        self.writer = None
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning("tensorboard is not installed: logging to %s only (pip install tensorboard)", self.path)
            else:
                # purge_step drops events a killed run wrote after its last saved state
                self.writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=len(state.history))

    def write(self, record) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(record.to_json(), allow_nan=False) + "\n")
        if record.status == "ok":
            self.best = record.score if self.best is None else max(self.best, record.score)
        if self.writer is not None:
            if record.score is not None:
                self.writer.add_scalar("search/score", record.score, record.index)
            if self.best is not None:
                self.writer.add_scalar("search/best_score", self.best, record.index)
            for name, value in {**record.metrics, **record.cost}.items():
                if value is not None:
                    self.writer.add_scalar(f"candidate/{name}", value, record.index)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _open_controller(config: SearchConfig, evaluator: Evaluator, output_dir: Path, resume: bool) -> SearchController:
    dims = config.model.dimensions(evaluator.vocab_size)
    strategy = STRATEGIES[config.strategy](config.space, config.search, config.objective, dims)
    digest = config_digest(config.search_defining_json())
    state_path = output_dir / STATE_FILE
    if resume and not state_path.exists():
        logger.warning("--resume: %s holds no search state yet (killed before its first write?): starting a new search", output_dir)
        resume = False
    if not resume:
        if state_path.exists():
            raise FileExistsError(f"{state_path} exists: pass --resume to continue that search, or choose another output_dir")
        return SearchController.start(strategy, config.space, dims, config.max_evaluations, config.seed, digest)
    state = load_state(output_dir)
    if state.config_digest != digest:
        raise ConfigError(
            f"{state_path}: this search was started with different settings (digest {state.config_digest}, the config "
            f"gives {digest}); only output_dir, max_evaluations, export, executor and tensorboard may change on --resume"
        )
    try:
        return SearchController(strategy, config.space, dims, config.max_evaluations, state)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise StateFileError(
            f"{state_path}: strategy_state is not a state of the {config.strategy} strategy ({type(error).__name__}: {error})"
        ) from None


def _check_files_exist(output_dir: Path, state: SearchState) -> None:
    for name in sorted(state.referenced_files()):
        if not (output_dir / name).is_file():
            raise StateFileError(f"{output_dir / STATE_FILE}: names {name}, but {output_dir / name} does not exist")


def _remove_unreferenced(output_dir: Path, before: set[str], state: SearchState) -> None:
    for name in before - state.referenced_files():
        (output_dir / name).unlink(missing_ok=True)


TAGGED_FILE = re.compile(r"(?P<stem>.+)-\d{6}(?P<suffix>\.[^-]*)")  # <role>-<tag><suffix>, as Evaluator.save names them


def _remove_orphans(output_dir: Path, state: SearchState) -> None:
    """Files a kill left between writing them and the state that would have named them: write-backs, and
    files of the evaluator's own naming (``<role>-<tag><suffix>`` beside one the state names)."""
    referenced = state.referenced_files()
    shapes = {("writeback", ".safetensors")}
    shapes |= {(match["stem"], match["suffix"]) for name in referenced if (match := TAGGED_FILE.fullmatch(name))}
    for stem, suffix in shapes:
        for path in output_dir.glob(f"{stem}-*{suffix}"):
            match = TAGGED_FILE.fullmatch(path.name)
            if match and (match["stem"], match["suffix"]) == (stem, suffix) and path.name not in referenced:
                path.unlink(missing_ok=True)


def _restore(evaluator: Evaluator, output_dir: Path, state: SearchState) -> bytes | None:
    """Put the evaluator in the state the search state names (its files checked as they load) and return the
    snapshot of a generation in progress, taken from the files it started from (none: the evaluator as
    constructed). Nothing in the folder is changed until everything has loaded."""
    _check_files_exist(output_dir, state)
    snapshot = None
    if state.pending:
        evaluator.load(output_dir, state.snapshot_files)
        snapshot = evaluator.snapshot()
    evaluator.load(output_dir, state.evaluator_files)
    _remove_orphans(output_dir, state)
    return snapshot


class _Generations:
    """The main process's side of the search: opens generations, takes their snapshots, persists each
    outcome as it arrives and commits outcomes in proposal order (see the module docstring). ``snapshot``:
    the restored snapshot of a generation in progress."""

    def __init__(
        self, config: SearchConfig, controller: SearchController, evaluator: Evaluator, output_dir: Path, snapshot: bytes | None, log, bar
    ):
        self.config, self.controller, self.evaluator, self.output_dir = config, controller, evaluator, output_dir
        self.state = controller.state
        self.snapshot = snapshot
        self.log, self.bar = log, bar
        self.proposing_seconds = 0.0
        self.fresh_write_backs: dict[int, bytes] = {}  # the head's write-back, applied without a file round trip

    def open(self) -> tuple[bytes | None, list[CandidateJob]] | None:
        """The next children to evaluate, with the snapshot they start from; None when the search is over."""
        while True:
            started = time.perf_counter()
            opening = not self.state.pending
            proposals = self.controller.open_generation()
            if not proposals:
                return None
            if opening:
                self.state.snapshot_files = dict(self.state.evaluator_files)
                self.snapshot = self.evaluator.snapshot()
            self.proposing_seconds = time.perf_counter() - started
            first = len(self.state.history)
            self.commit_ready()  # outcomes that arrived before a kill, now at the head of the queue
            if len(self.state.history) > first:
                continue
            jobs = [
                CandidateJob(index, candidate_seed(self.config.seed, index), proposal.architecture)
                for index, proposal in enumerate(proposals, start=first)
                if index not in self.state.arrived
            ]
            return self.snapshot, jobs

    def arrive(self, job: CandidateJob, outcome: CandidateOutcome) -> None:
        """Persist an outcome at once; commit it (and the ones waiting behind it) when it is at the head."""
        if outcome.traceback:
            logger.warning("candidate %d failed:\n%s", job.index, outcome.traceback)
        # through JSON as a persisted outcome would be, so that a commit never depends on whether it waited
        try:
            arrived = ArrivedResult.from_json(ArrivedResult(outcome.result, outcome.error).to_json(), "the evaluator's result")
        except (TypeError, ValueError) as error:
            arrived = ArrivedResult(None, f"the evaluator returned a result the search cannot record: {error}")
            outcome.write_back = None
        self.state.arrived[job.index] = arrived
        if job.index == len(self.state.history):
            if outcome.write_back is not None:
                self.fresh_write_backs[job.index] = outcome.write_back
            self.commit_ready()
            return
        if outcome.write_back is not None:
            arrived.write_back = f"writeback-{job.index:06d}.safetensors"
            atomic_write_bytes(self.output_dir / arrived.write_back, outcome.write_back)
        save_state(self.output_dir, self.state)

    def commit_ready(self) -> None:
        """Commit the arrived outcomes at the head of the queue, in proposal order: apply each write-back, record
        the candidate; then write the evaluator's files and the state once."""
        before = self.state.referenced_files()
        records = []
        budget = self.controller.max_evaluations
        while self.state.pending and (index := len(self.state.history)) in self.state.arrived and index < budget:
            arrived = self.state.arrived.pop(index)
            write_back = self.fresh_write_backs.pop(index, None)
            source = f"candidate {index}'s write-back"
            if arrived.write_back is not None:
                source = str(self.output_dir / arrived.write_back)
                write_back = (self.output_dir / arrived.write_back).read_bytes()
            if write_back is not None:
                self.evaluator.apply(write_back, source)
            overhead = {"controller_seconds": self.proposing_seconds}
            self.proposing_seconds = 0.0  # the proposing time of a generation counts once, on its first commit
            records.append(self.controller.record(self.controller.state.pending[0], arrived.result, arrived.error, overhead))
        if not records:
            return
        started = time.perf_counter()
        # tagged by the last candidate it holds: the same name whether candidates were committed one by one or
        # together, and the name a save interrupted by a kill gets again after the resume
        self.state.evaluator_files = self.evaluator.save(self.output_dir, f"{records[-1].index:06d}")
        if not self.state.pending:
            self.state.snapshot_files = {}  # the generation is complete: the next one starts from its end
        for record in records:
            record.cost["checkpoint_seconds"] = (time.perf_counter() - started) / len(records)
        save_state(self.output_dir, self.state)
        _remove_unreferenced(self.output_dir, before, self.state)
        for record in records:
            self.log.write(record)
            self.bar.update(1)
            self.bar.set_postfix(best=f"{self.log.best:.4f}" if self.log.best is not None else "-", last=record.status)


def run_search(
    config: SearchConfig, evaluator: Evaluator | None = None, resume: bool = False, progress: bool = True
) -> SearchState | None:
    """Run (or, with ``resume``, continue) a search. Returns the final state on the main process, None on the
    others (only the main process runs the controller). ``evaluator`` defaults to the config's; pass a fresh
    one (its state is restored from the output folder)."""
    processes = distributed_state()
    check_launch(processes.num_processes)
    is_main = processes.is_main_process
    evaluator = evaluator or build_evaluator(config)
    output_dir = Path(config.output_dir)

    lock = OutputFolderLock(output_dir)
    controller, opening_error = None, None
    if is_main:
        try:
            lock.acquire()
            controller = _open_controller(config, evaluator, output_dir, resume)
        except (ConfigError, OSError, ValueError, SearchLockedError) as error:
            opening_error = error
            lock.release()
    message = broadcast_from_main(None if opening_error is None else str(opening_error))
    if opening_error is not None:
        raise opening_error
    if message is not None:
        raise RuntimeError(f"the main process could not open the search: {message}")

    executor = log = bar = None
    try:
        executor = make_executor(config.executor, evaluator, output_dir / "candidates", processes.num_processes, is_main)
        generations = None
        if is_main:
            logger.info("search in %s: world size %d; %s", output_dir, processes.num_processes, executor.describe())
            snapshot = _restore(evaluator, output_dir, controller.state)
            for leftover in output_dir.glob(".*.tmp"):  # temporary files of atomic writes a kill interrupted
                leftover.unlink(missing_ok=True)
            atomic_write_json(output_dir / CONFIG_COPY, config.to_json())
            log = _SearchLog(output_dir, controller.state, config.tensorboard)
            bar = tqdm(
                total=config.max_evaluations,
                initial=len(controller.state.history),
                disable=not progress,
                desc=f"{config.strategy} search",
                unit="candidate",
            )
            generations = _Generations(config, controller, evaluator, output_dir, snapshot, log, bar)
        while True:
            plan = broadcast_from_main(generations.open() if is_main else None)  # every rank: the same children
            if plan is None:
                break
            snapshot, jobs = plan
            outcomes = executor.evaluate(evaluator, snapshot, jobs)
            try:
                for job, outcome in outcomes:
                    if is_main:
                        generations.arrive(job, outcome)
            finally:
                outcomes.close()
        if is_main:
            save_state(output_dir, controller.state)
            if (output_dir / "candidates").is_dir() and not any((output_dir / "candidates").iterdir()):
                (output_dir / "candidates").rmdir()
    finally:
        if executor is not None:
            executor.close()
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        lock.release()
    return controller.state if is_main else None


def main(argv: list[str] | None = None) -> SearchState | None:
    """The command line: RunArguments' flags, then any config setting as ``dotted.key=value`` (`training.overrides`)."""
    datasets.disable_progress_bars()  # every candidate re-reads its GLUE task: one bar per candidate is noise
    flags, settings = split_overrides(sys.argv[1:] if argv is None else argv)
    (arguments,) = HfArgumentParser(RunArguments).parse_args_into_dataclasses(args=flags)
    config = load_config(arguments.config, {**settings, **arguments.overrides()})
    configure_logging(arguments.verbose, Path(config.output_dir) / "search.log", distributed_state().is_main_process)
    state = run_search(config, resume=arguments.resume, progress=not arguments.no_progress)
    if distributed_state().is_main_process and config.export.top_k > 0:
        from search.export import export_top_k

        for path in export_top_k(config.output_dir):
            logger.info("exported %s", path)
    if distributed_state().is_main_process:
        ok = [record for record in state.history if record.status == "ok"]
        best = max(ok, key=lambda record: record.score, default=None)
        logger.info(
            "%d candidates (%d ok); best score %s; state in %s",
            len(state.history),
            len(ok),
            f"{best.score:.4f} (candidate {best.index})" if best else "-",
            Path(config.output_dir) / STATE_FILE,
        )
    close_process_group()
    return state


if __name__ == "__main__":
    main()
