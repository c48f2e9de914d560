"""Build a benchmark table: score every architecture of a closed sub-space with the mini pretraining protocol
(:mod:`search.benchmark_protocol`) for each seed, plus the named presets, and write a
:class:`~search.tabular.BenchmarkTable`.

Runs go to worker processes (one torch thread each) and every finished (architecture, seed) run is appended
to a journal (JSON lines) the moment it arrives, in one ``write`` followed by ``fsync``. A build that is
killed loses only the runs in flight; run again, it reads the journal and trains only what is missing. The
journal starts with the protocol and the data digests it was written for, and a build for another protocol
refuses it. Calibration (how reliable the protocol is on a sample of the space) writes to the same journal,
so the runs of the final protocol's calibration count towards its table.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers

from modeling_autobert_zero.architecture import architecture_key
from modeling_autobert_zero.configuration_autobert_zero import ARCHITECTURE_PRESETS

from .benchmark_protocol import SCORE_NAME, MiniPretraining, MiniPretrainingProtocol, RunResult, file_sha256
from .reliability import IntraclassCorrelation, one_way_icc
from .space import Architecture, SearchSpace, enumerate_architectures
from .tabular import BenchmarkTable, TableEntry


logger = logging.getLogger(__name__)

JOURNAL_FORMAT = "autobert-zero-benchmark-journal"
JOURNAL_FORMAT_VERSION = 1
PRESET_NAMES = ("bert", "autobert-zero", "autobert-zero-att-only", "autobert-zero-conv-only")


class JournalError(ValueError):
    """A journal that cannot be continued: corrupt, or written for another protocol."""


# ---------------------------------------------------------------------------------------------------------
# The sub-space and the build settings.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchmarkBuildArguments:
    """What to build (the sub-space, seeds, presets) and how (workers, files). Command-line options of
    ``scripts/build_benchmark.py``; the defaults build ``benchmarks/mini_3layer.json``."""

    output: str = dataclasses.field(default="benchmarks/mini_3layer.json", metadata={"help": "Table file (.json; a .csv is written beside it)."})
    work_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Journal and data directory (default: runs/benchmarks/<protocol digest>)."}
    )
    workers: int = dataclasses.field(default=2, metadata={"help": "Worker processes (each runs with protocol.threads threads)."})
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1], metadata={"help": "Seeds every architecture is trained with."})
    presets: list[str] = dataclasses.field(default_factory=lambda: list(PRESET_NAMES), metadata={"help": "Named 12-layer architectures scored beside the table."})
    preset_seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "Seeds of the presets."})
    calibration_architectures: int = dataclasses.field(default=20, metadata={"help": "Architectures in the reliability sample."})
    calibration_seed: int = dataclasses.field(default=0, metadata={"help": "Seed drawing the reliability sample."})
    calibrate_only: bool = dataclasses.field(default=False, metadata={"help": "Score only the reliability sample and print its ICC."})
    num_layers: int = dataclasses.field(default=3, metadata={"help": "Sub-space: layers."})
    kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [3, 65], metadata={"help": "Sub-space: conv kernel sizes."})
    ops: list[str] = dataclasses.field(default_factory=lambda: ["matmul", "cosine"], metadata={"help": "Sub-space: program ops."})
    inputs: list[str] = dataclasses.field(default_factory=lambda: ["Q", "K"], metadata={"help": "Sub-space: program inputs."})
    min_program_length: int = dataclasses.field(default=2, metadata={"help": "Sub-space: shortest program sampled."})
    max_program_length: int = dataclasses.field(default=2, metadata={"help": "Sub-space: longest program."})

    def space(self) -> SearchSpace:
        return SearchSpace(
            num_layers=self.num_layers,
            layer_types=("conv", "attention"),
            kernel_sizes=tuple(self.kernel_sizes),
            ops=tuple(self.ops),
            inputs=tuple(self.inputs),
            min_program_length=self.min_program_length,
            max_program_length=self.max_program_length,
        )


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One training run to do: an architecture (canonical, or a preset's layers) and a seed."""

    layers: Architecture
    seed: int

    @property
    def key(self) -> str:
        return architecture_key(self.layers)


def preset_layers(name: str) -> Architecture:
    if name not in ARCHITECTURE_PRESETS:
        raise ValueError(f"presets: unknown preset {name!r}; choose from {sorted(ARCHITECTURE_PRESETS)}")
    return ARCHITECTURE_PRESETS[name]()


def calibration_sample(architectures: Sequence[Architecture], count: int, seed: int) -> list[Architecture]:
    """``count`` architectures drawn without replacement (``random.Random(seed)``), in table order."""
    if not 2 <= count <= len(architectures):
        raise ValueError(f"calibration_architectures: expected 2..{len(architectures)}, got {count}")
    chosen = sorted(random.Random(seed).sample(range(len(architectures)), count))
    return [architectures[index] for index in chosen]


def data_digests(protocol: MiniPretrainingProtocol) -> dict[str, str]:
    return {path: file_sha256(path) for path in (protocol.text_file, protocol.vocab_file)}


def protocol_digest(protocol: MiniPretrainingProtocol, digests: dict[str, str]) -> str:
    text = json.dumps({"protocol": protocol.to_json(), "data_sha256": digests}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# The journal.
# ---------------------------------------------------------------------------------------------------------


class RunJournal:
    """Finished runs of one protocol, one JSON object per line after a header line.

    A line is appended with a single ``os.write`` on a file opened for appending, then ``fsync``: a kill
    leaves either the whole line or, at worst, a last line without its newline, which is dropped (that run
    is done again). Any other line that is not a valid run record is an error naming the file and line.
    """

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.header = header
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append_line(header)

    def _read(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            logger.warning("%s: dropping an unfinished last line (a run killed while it was written)", self.path)
            with open(self.path, "r+b") as handle:
                handle.truncate(complete)
                os.fsync(handle.fileno())
        lines = data[:complete].decode("utf-8", errors="replace").splitlines()
        if not lines:
            self._append_line(self.header)
            return
        found = self._parse(lines[0], 1)
        if found.get("format") != JOURNAL_FORMAT or found.get("format_version") != JOURNAL_FORMAT_VERSION:
            raise JournalError(f"{self.path}:1: not a benchmark journal (format {JOURNAL_FORMAT!r} v{JOURNAL_FORMAT_VERSION})")
        for field in ("protocol", "data_sha256"):
            if found.get(field) != self.header[field]:
                raise JournalError(
                    f"{self.path}:1: the journal was written for another {field} "
                    f"({_first_difference(found.get(field), self.header[field])}); "
                    "use another --work_dir for this protocol, or delete the journal to start over"
                )
        for number, line in enumerate(lines[1:], start=2):
            record = self._parse(line, number)
            try:
                key = architecture_key(record["layers"])
                seed = record["seed"]
                if not isinstance(seed, int) or not isinstance(record["held_out_mlm_loss"], float):
                    raise TypeError
                float(record["wall_seconds"]), float(record["cpu_seconds"]), bool(record["diverged"])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise JournalError(
                    f"{self.path}:{number}: not a run record (expected layers, seed, held_out_mlm_loss, "
                    f"wall_seconds, cpu_seconds, diverged): {type(error).__name__} {error}"
                ) from None
            self.records[(key, seed)] = record

    def _parse(self, line: str, number: int) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise JournalError(f"{self.path}:{number}: corrupt line, not JSON ({error.msg}): {line[:80]!r}") from None
        if not isinstance(value, dict):
            raise JournalError(f"{self.path}:{number}: expected a JSON object, got {line[:80]!r}")
        return value

    def _append_line(self, value: dict[str, Any]) -> None:
        line = (json.dumps(value, separators=(",", ":"), allow_nan=False) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def __contains__(self, request: RunRequest) -> bool:
        return (request.key, request.seed) in self.records

    def get(self, request: RunRequest) -> dict[str, Any]:
        return self.records[(request.key, request.seed)]

    def add(self, request: RunRequest, result: RunResult) -> None:
        record = {
            "layers": request.layers,
            "seed": request.seed,
            **dataclasses.asdict(result),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        self._append_line(record)
        self.records[(request.key, request.seed)] = record


def _first_difference(found: Any, expected: Any) -> str:
    if isinstance(found, dict) and isinstance(expected, dict):
        for name in sorted(set(found) | set(expected)):
            if found.get(name) != expected.get(name):
                return f"{name}: journal {found.get(name)!r}, now {expected.get(name)!r}"
    return f"journal {found!r:.80}, now {expected!r:.80}"


# ---------------------------------------------------------------------------------------------------------
# Running: worker processes, results journaled as they arrive.
# ---------------------------------------------------------------------------------------------------------

_worker_pretraining: MiniPretraining | None = None


def _start_worker(pretraining: MiniPretraining) -> None:
    global _worker_pretraining
    _worker_pretraining = pretraining


def _run_in_worker(layers: Architecture, seed: int) -> RunResult:
    assert _worker_pretraining is not None, "worker started without its prepared data"
    return _worker_pretraining.run(layers, seed)


def run_missing(
    requests: Sequence[RunRequest],
    pretraining: MiniPretraining,
    journal: RunJournal,
    workers: int,
    progress: Callable[[int, int, RunRequest, RunResult], None] | None = None,
) -> int:
    """Do every request the journal lacks, ``workers`` at a time, journaling each result as it arrives.
    Longer architectures start first, so the last runs in flight are short. Returns the number of runs done."""
    unique = {(request.key, request.seed): request for request in requests}
    missing = [request for request in unique.values() if request not in journal]
    missing.sort(key=lambda request: -len(request.layers))
    if not missing:
        return 0
    if workers <= 1:
        for done, request in enumerate(missing, start=1):
            result = pretraining.run(request.layers, request.seed)
            journal.add(request, result)
            if progress:
                progress(done, len(missing), request, result)
        return len(missing)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(pretraining,)
    ) as pool:
        futures = {pool.submit(_run_in_worker, request.layers, request.seed): request for request in missing}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                request = futures[future]
                try:
                    result = future.result()
                except Exception as error:
                    raise RuntimeError(f"run of {request.key} with seed {request.seed} failed: {error}") from error
                journal.add(request, result)
                if progress:
                    progress(done, len(missing), request, result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return len(missing)


# ---------------------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------------------


def _losses(journal: RunJournal, layers: Architecture, seeds: Sequence[int]) -> list[dict[str, Any]]:
    return [journal.get(RunRequest(layers, seed)) for seed in seeds]


def icc_of(journal: RunJournal, architectures: Sequence[Architecture], seeds: Sequence[int]) -> IntraclassCorrelation:
    """ICC(1) of the held-out-loss scores of ``architectures`` over ``seeds`` (all in the journal)."""
    return one_way_icc([[-record["held_out_mlm_loss"] for record in _losses(journal, layers, seeds)] for layers in architectures])


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, with ``-dirty`` if tracked files have changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _preset_summary(name: str, journal: RunJournal, seeds: Sequence[int]) -> dict[str, Any]:
    layers = preset_layers(name)
    records = _losses(journal, layers, seeds)
    losses = [record["held_out_mlm_loss"] for record in records]
    return {
        "name": name,
        "layers": layers,
        "seeds": list(seeds),
        "held_out_mlm_loss": losses,
        "scores": [-loss for loss in losses],
        "mean_held_out_mlm_loss": statistics.fmean(losses),
        "sd_held_out_mlm_loss": statistics.stdev(losses) if len(losses) > 1 else 0.0,
        "diverged": [int(record["diverged"]) for record in records],
        "wall_seconds": [record["wall_seconds"] for record in records],
        "cpu_seconds": [record["cpu_seconds"] for record in records],
    }


def assemble_table(
    arguments: BenchmarkBuildArguments,
    protocol: MiniPretrainingProtocol,
    pretraining: MiniPretraining,
    journal: RunJournal,
    architectures: Sequence[Architecture],
    provenance: dict[str, Any],
) -> BenchmarkTable:
    """The table from the journal: one entry per architecture (all seeds), the presets, the reliability."""
    seeds = list(arguments.seeds)
    entries = []
    for layers in architectures:
        records = _losses(journal, layers, seeds)
        entries.append(
            TableEntry(
                architecture=layers,
                scores=tuple(-record["held_out_mlm_loss"] for record in records),
                seconds=tuple(record["wall_seconds"] for record in records),
                metrics={
                    "held_out_mlm_loss": tuple(record["held_out_mlm_loss"] for record in records),
                    "final_train_loss": tuple(record["final_train_loss"] for record in records),
                    "cpu_seconds": tuple(record["cpu_seconds"] for record in records),
                    "diverged": tuple(float(record["diverged"]) for record in records),
                },
            )
        )
    reliability: dict[str, Any] = {}
    if len(seeds) >= 2:
        reliability = one_way_icc([list(entry.scores) for entry in entries]).to_json()
        sample = calibration_sample(architectures, arguments.calibration_architectures, arguments.calibration_seed)
        reliability["calibration"] = {
            **icc_of(journal, sample, seeds[:2]).to_json(),
            "sample_seed": arguments.calibration_seed,
            "architectures": [architecture_key(layers) for layers in sample],
        }
    runs = [record for entry in entries for record in _losses(journal, entry.architecture, seeds)]
    runs += [journal.get(RunRequest(preset_layers(name), seed)) for name in arguments.presets for seed in arguments.preset_seeds]
    cpu_total = sum(record["cpu_seconds"] for record in runs)
    provenance = {
        **provenance,
        "runs": len(runs),
        "runs_cpu_seconds": cpu_total,
        "runs_wall_seconds": sum(record["wall_seconds"] for record in runs),
        "quiet_machine_estimate_seconds": cpu_total / max(arguments.workers, 1),
        "diverged_runs": sum(int(record["diverged"]) for record in runs),
    }
    return BenchmarkTable(
        name=Path(arguments.output).stem,
        space=arguments.space(),
        seeds=tuple(seeds),
        entries=tuple(entries),
        exhaustive=True,
        score_name=SCORE_NAME,
        model={key: value for key, value in pretraining.model_settings.items()},
        protocol={**protocol.to_json(), "data": pretraining.data_summary()},
        reliability=reliability,
        presets=tuple(_preset_summary(name, journal, arguments.preset_seeds) for name in arguments.presets),
        provenance=provenance,
    )


def default_work_dir(protocol: MiniPretrainingProtocol, digests: dict[str, str]) -> Path:
    return Path("runs") / "benchmarks" / protocol_digest(protocol, digests)


def open_journal(arguments: BenchmarkBuildArguments, protocol: MiniPretrainingProtocol) -> tuple[RunJournal, Path, dict[str, str]]:
    digests = data_digests(protocol)
    work_dir = Path(arguments.work_dir) if arguments.work_dir else default_work_dir(protocol, digests)
    header = {
        "format": JOURNAL_FORMAT,
        "format_version": JOURNAL_FORMAT_VERSION,
        "protocol": protocol.to_json(),
        "data_sha256": digests,
    }
    return RunJournal(work_dir / "journal.jsonl", header), work_dir, digests


def _log_progress(done: int, total: int, request: RunRequest, result: RunResult) -> None:
    logger.info(
        "[%d/%d] seed %d loss %.4f%s (%.1fs wall, %.1fs cpu) %s",
        done,
        total,
        request.seed,
        result.held_out_mlm_loss,
        " DIVERGED" if result.diverged else "",
        result.wall_seconds,
        result.cpu_seconds,
        request.key,
    )


def calibrate(arguments: BenchmarkBuildArguments, protocol: MiniPretrainingProtocol) -> dict[str, Any]:
    """The reliability of ``protocol`` on a sample of the sub-space: ICC(1) over the sample × the first two
    seeds, with the between- and within-architecture SDs and what the runs cost."""
    if len(arguments.seeds) < 2:
        raise ValueError("seeds: calibration needs at least two seeds")
    journal, work_dir, _ = open_journal(arguments, protocol)
    pretraining = MiniPretraining(protocol, work_dir)
    architectures = enumerate_architectures(arguments.space())
    sample = calibration_sample(architectures, arguments.calibration_architectures, arguments.calibration_seed)
    seeds = list(arguments.seeds[:2])
    started = time.perf_counter()
    run_missing([RunRequest(layers, seed) for layers in sample for seed in seeds], pretraining, journal, arguments.workers, _log_progress)
    records = [record for layers in sample for record in _losses(journal, layers, seeds)]
    return {
        **icc_of(journal, sample, seeds).to_json(),
        "space_architectures": len(architectures),
        "mean_held_out_mlm_loss": statistics.fmean(record["held_out_mlm_loss"] for record in records),
        "mean_cpu_seconds_per_run": statistics.fmean(record["cpu_seconds"] for record in records),
        "mean_wall_seconds_per_run": statistics.fmean(record["wall_seconds"] for record in records),
        "session_wall_seconds": time.perf_counter() - started,
        "diverged_runs": sum(int(record["diverged"]) for record in records),
        "journal": str(journal.path),
        "protocol": protocol.to_json(),
    }


def build_benchmark(arguments: BenchmarkBuildArguments, protocol: MiniPretrainingProtocol, command: Sequence[str]) -> BenchmarkTable:
    """Score every architecture of the sub-space (all seeds) and the presets; write the table (JSON + CSV)."""
    journal, work_dir, digests = open_journal(arguments, protocol)
    pretraining = MiniPretraining(protocol, work_dir)
    space = arguments.space()
    architectures = [space.canonical_architecture(layers) for layers in enumerate_architectures(space)]
    requests = [RunRequest(layers, seed) for layers in architectures for seed in arguments.seeds]
    requests += [RunRequest(preset_layers(name), seed) for name in arguments.presets for seed in arguments.preset_seeds]
    versions = {  # taken before the runs: the code they ran with
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git_commit": git_commit(),
    }
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    done = run_missing(requests, pretraining, journal, arguments.workers, _log_progress)
    provenance = {
        "command": list(command),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "last_session": {"started": started_at, "wall_seconds": time.perf_counter() - started, "runs_done": done},
        "workers": arguments.workers,
        "threads_per_worker": protocol.threads,
        "data_sha256": digests,
        "versions": versions,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    table = assemble_table(arguments, protocol, pretraining, journal, architectures, provenance)
    table.save(arguments.output)
    return table



def table_summary(table: BenchmarkTable, path: str | os.PathLike) -> dict[str, Any]:
    """The headline numbers of a built table (the build command's last line)."""
    reliability = table.reliability
    return {
        "table": str(path),
        "entries": len(table),
        "exhaustive": table.exhaustive,
        "seeds": list(table.seeds),
        "icc": reliability.get("icc"),
        "icc_ci": [reliability.get("ci_low"), reliability.get("ci_high")],
        "calibration_icc": reliability.get("calibration", {}).get("icc"),
        "best_score": max(entry.score for entry in table.entries),
        "worst_score": min(entry.score for entry in table.entries),
        "presets": {preset["name"]: [preset["mean_held_out_mlm_loss"], preset["sd_held_out_mlm_loss"]] for preset in table.presets},
        "runs": table.provenance.get("runs"),
        "runs_cpu_seconds": table.provenance.get("runs_cpu_seconds"),
        "quiet_machine_estimate_seconds": table.provenance.get("quiet_machine_estimate_seconds"),
        "last_session_wall_seconds": table.provenance.get("last_session", {}).get("wall_seconds"),
    }
