"""Search state (SPEC §6): everything the search knows, as one JSON document written atomically.

The state holds the history of every committed candidate (architecture, status, score, metrics, cost, error),
the queue of proposals of the current generation not yet committed, the results of that generation that
arrived before their turn (``arrived``: an executor evaluating children at once finishes them in any order,
and the search commits them in proposal order), one summary per generation (what the strategy reported when
it proposed it), the strategy's own state (opaque JSON: for OP-NAS its operation-priority observations), the
controller's random-generator state, and the names of the evaluator's files: the ones that hold its state now
(``evaluator_files``: the super-net after every committed candidate) and the ones the current generation
started from (``snapshot_files``). The population of Algorithm 1 is the set of successful candidates in the
history, so it is not stored twice.

Writes go to a temporary file in the same directory, are flushed to disk, and replace the old file in one
``os.replace``: a search killed at any moment leaves either the previous state or the new one. Reading
checks every field: a truncated, garbled or foreign file is a :class:`StateFileError` that names the file
and the field, and nothing is changed or deleted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeling_autobert_zero.architecture import architecture_key
from training.atomic_files import write_bytes_atomic

from .evaluator import EvaluationResult
from .strategies import Proposal


# 3: a generation's children start from the snapshot taken when it starts (``snapshot_files``), results may
# arrive before their turn (``arrived``); no torch generator state (every candidate seeds its own).
# 2: the strategy's state is opaque (``strategy_state``), per-generation summaries (``generations``);
# children are made by Algorithm 1's inter- then intra-layer mutation.
STATE_FORMAT_VERSION = 3
STATE_FILE = "search_state.json"
CONFIG_COPY = "search_config.json"  # the resolved config, beside the state
CANDIDATE_STATUSES = ("ok", "failed", "infeasible")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the complete new one."""
    write_bytes_atomic(path, data)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Strict JSON (no NaN), compact: with ``indent`` Python's slow pure encoder would run instead of the C one."""
    atomic_write_bytes(path, (json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n").encode())


def finite_or_none(value: Any) -> float | None:
    """Floats as strict JSON allows them: NaN and infinities become None (the error field says why)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class StateFileError(ValueError):
    """A search state that cannot be read: the message names the file, the field and what is wrong."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Reader:
    """Checks a JSON document field by field; every error names the file and the field's path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> StateFileError:
        return StateFileError(f"{self.source}: {where}: {problem}")

    def object(self, value: Any, where: str, keys: tuple[str, ...] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        if keys is not None and set(value) != set(keys):
            missing, unexpected = sorted(set(keys) - set(value)), sorted(set(value) - set(keys))
            raise self.fail(where, f"expected the keys {list(keys)}; missing {missing}, unexpected {unexpected}")
        return value

    def list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def typed(self, value: Any, where: str, kind: type, optional: bool = False) -> Any:
        if optional and value is None:
            return None
        valid = _is_number(value) if kind is float else isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not valid:
            raise self.fail(where, f"expected {kind.__name__}{' or null' if optional else ''}, got {value!r:.60}")
        return float(value) if kind is float else value

    def numbers(self, value: Any, where: str) -> dict[str, float | None]:
        return {name: self.typed(number, f"{where}.{name}", float, optional=True) for name, number in self.object(value, where).items()}

    def architecture(self, value: Any, where: str) -> list[dict[str, Any]]:
        layers = self.list(value, where)
        for index, layer in enumerate(layers):
            self.typed(self.object(layer, f"{where}[{index}]").get("type"), f"{where}[{index}].type", str)
        return layers

    def file_names(self, value: Any, where: str) -> dict[str, str]:
        names = {role: self.typed(name, f"{where}.{role}", str) for role, name in self.object(value, where).items()}
        for role, name in names.items():
            if not is_plain_file_name(name):
                raise self.fail(f"{where}.{role}", f"expected a file name inside the output folder, got {name!r}")
        return names


def is_plain_file_name(name: str) -> bool:
    """A name the state may refer to: one file directly in the output folder (no path, no parent reference)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


@dataclasses.dataclass
class CandidateRecord:
    """One evaluated candidate. ``cost`` holds measured quantities (seconds, FLOPs, parameters, ...);
    timings differ between runs, everything else is reproducible from the seed. ``key`` is the architecture's
    :func:`~modeling_autobert_zero.architecture.architecture_key`: written for people reading the file,
    recomputed from the architecture when a state is read."""

    index: int
    key: str
    architecture: list[dict[str, Any]]
    parent: int | None
    mutation: str
    generation: int
    status: str
    score: float | None
    metrics: dict[str, float | None]
    cost: dict[str, float | None]
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in CANDIDATE_STATUSES:
            raise ValueError(f"candidate {self.index}: status must be one of {CANDIDATE_STATUSES}, got {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        # not dataclasses.asdict: its deep copy of every architecture dominated the time of a state write
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "state", where: str = "record") -> "CandidateRecord":
        """The record, checked field by field, with its key recomputed: a state written while keys were spelled
        otherwise (before they became linear in the program's size) resumes as if written now, since only the
        keys' equality counts."""
        read = _Reader(source)
        data = read.object(data, where, tuple(field.name for field in dataclasses.fields(cls)))
        status = read.typed(data["status"], f"{where}.status", str)
        if status not in CANDIDATE_STATUSES:
            raise read.fail(f"{where}.status", f"expected one of {list(CANDIDATE_STATUSES)}, got {status!r}")
        read.typed(data["key"], f"{where}.key", str)
        architecture = read.architecture(data["architecture"], f"{where}.architecture")
        try:
            key = architecture_key(architecture)
        except (KeyError, TypeError, ValueError) as error:
            raise read.fail(f"{where}.architecture", f"not an architecture of this search space ({error!r})") from error
        return cls(
            index=read.typed(data["index"], f"{where}.index", int),
            key=key,
            architecture=architecture,
            parent=read.typed(data["parent"], f"{where}.parent", int, optional=True),
            mutation=read.typed(data["mutation"], f"{where}.mutation", str),
            generation=read.typed(data["generation"], f"{where}.generation", int),
            status=status,
            score=read.typed(data["score"], f"{where}.score", float, optional=True),
            metrics=read.numbers(data["metrics"], f"{where}.metrics"),
            cost=read.numbers(data["cost"], f"{where}.cost"),
            error=read.typed(data["error"], f"{where}.error", str, optional=True),
        )


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # a score as strict JSON writes it


def result_to_json(result: EvaluationResult) -> dict[str, Any]:
    """An evaluator's result as strict JSON: non-finite metrics and costs become null (as in a record), a
    non-finite score its name, so the committed record says exactly what the evaluator returned."""
    score = result.score
    if score is not None and not math.isfinite(score):
        score = "nan" if math.isnan(score) else "inf" if score > 0 else "-inf"
    return {
        "score": score,
        "metrics": {name: finite_or_none(value) for name, value in result.metrics.items()},
        "cost": {name: finite_or_none(value) for name, value in result.cost.items()},
        "status": result.status,
        "error": result.error,
    }


def result_from_json(data: Any, source: str, where: str) -> EvaluationResult:
    read = _Reader(source)
    data = read.object(data, where, ("score", "metrics", "cost", "status", "error"))
    score = data["score"]
    score = NON_FINITE[score] if isinstance(score, str) and score in NON_FINITE else read.typed(score, f"{where}.score", float, optional=True)
    status = read.typed(data["status"], f"{where}.status", str)
    if status not in CANDIDATE_STATUSES:
        raise read.fail(f"{where}.status", f"expected one of {list(CANDIDATE_STATUSES)}, got {status!r}")
    return EvaluationResult(
        score=score,
        metrics=read.numbers(data["metrics"], f"{where}.metrics"),
        cost=read.numbers(data["cost"], f"{where}.cost"),
        status=status,
        error=read.typed(data["error"], f"{where}.error", str, optional=True),
    )


@dataclasses.dataclass
class ArrivedResult:
    """A candidate's evaluation, kept until it is committed: its result (None if the evaluator raised
    ``error``) and the name of the file holding its write-back (None when it gave nothing back)."""

    result: EvaluationResult | None
    error: str | None
    write_back: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "result": None if self.result is None else result_to_json(self.result),
            "error": self.error,
            "write_back": self.write_back,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "state", where: str = "arrived") -> "ArrivedResult":
        read = _Reader(source)
        data = read.object(data, where, ("result", "error", "write_back"))
        write_back = read.typed(data["write_back"], f"{where}.write_back", str, optional=True)
        if write_back is not None and not is_plain_file_name(write_back):
            raise read.fail(f"{where}.write_back", f"expected a file name inside the output folder, got {write_back!r}")
        return cls(
            result=None if data["result"] is None else result_from_json(data["result"], source, f"{where}.result"),
            error=read.typed(data["error"], f"{where}.error", str, optional=True),
            write_back=write_back,
        )


def rng_state_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(data: list[Any]) -> random.Random:
    rng = random.Random()
    version, internal, gauss_next = data
    rng.setstate((version, tuple(internal), gauss_next))
    return rng


STATE_KEYS = (
    "format_version", "config_digest", "generation", "finished", "finish_reason", "history", "pending", "arrived",
    "generations", "strategy_state", "controller_rng", "evaluator_files", "snapshot_files",
)


@dataclasses.dataclass
class SearchState:
    """The whole search, as data. ``config_digest`` guards against resuming with a different config.

    ``arrived`` maps a candidate index (of the current generation, not yet committed) to its evaluation;
    ``snapshot_files`` are the evaluator files the current generation's children start from (empty: the
    evaluator as constructed); ``evaluator_files`` hold its state after every committed candidate.
    """

    config_digest: str
    controller_rng: list[Any]
    strategy_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[CandidateRecord] = dataclasses.field(default_factory=list)
    pending: list[Proposal] = dataclasses.field(default_factory=list)
    arrived: dict[int, ArrivedResult] = dataclasses.field(default_factory=dict)
    generation: int = -1  # the generation the pending proposals belong to; 0 is the initial population
    generations: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one summary per generation
    evaluator_files: dict[str, str] = dataclasses.field(default_factory=dict)
    snapshot_files: dict[str, str] = dataclasses.field(default_factory=dict)
    finished: bool = False
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "config_digest": self.config_digest,
            "generation": self.generation,
            "finished": self.finished,
            "finish_reason": self.finish_reason,
            "history": [record.to_json() for record in self.history],
            "pending": [proposal.to_json() for proposal in self.pending],
            "arrived": {str(index): arrived.to_json() for index, arrived in sorted(self.arrived.items())},
            "generations": self.generations,
            "strategy_state": self.strategy_state,
            "controller_rng": self.controller_rng,
            "evaluator_files": self.evaluator_files,
            "snapshot_files": self.snapshot_files,
        }

    def referenced_files(self) -> set[str]:
        """Every file in the output folder this state needs."""
        write_backs = {arrived.write_back for arrived in self.arrived.values() if arrived.write_back}
        return set(self.evaluator_files.values()) | set(self.snapshot_files.values()) | write_backs

    @classmethod
    def from_json(cls, data: Any, source: str = "state") -> "SearchState":
        read = _Reader(source)
        version = read.object(data, "the document").get("format_version")
        if version in (1, 2):
            raise StateFileError(
                f"{source}: format_version {version} was written by an earlier version of the search "
                + (
                    "(operation priority kept by the controller, children made by an inter- *or* an intra-layer mutation)"
                    if version == 1
                    else "(each child of a generation trained from the super-net its predecessors had written to)"
                )
                + f" and cannot be continued by this one (format {STATE_FORMAT_VERSION}). Start the search again in a new "
                "output_dir; the old history.jsonl stays readable"
            )
        if version != STATE_FORMAT_VERSION:
            raise StateFileError(
                f"{source}: format_version {version!r} is not {STATE_FORMAT_VERSION}; "
                "this state was written by another version of the search"
            )
        data = read.object(data, "the document", STATE_KEYS)
        history = [CandidateRecord.from_json(record, source, f"history[{i}]") for i, record in enumerate(read.list(data["history"], "history"))]
        for position, record in enumerate(history):
            if record.index != position:
                raise read.fail(f"history[{position}].index", f"expected {position} (records are kept in order), got {record.index}")
        pending = []
        for i, proposal in enumerate(read.list(data["pending"], "pending")):
            where = f"pending[{i}]"
            proposal = read.object(proposal, where, ("architecture", "parent", "mutation"))
            read.architecture(proposal["architecture"], f"{where}.architecture")
            read.typed(proposal["parent"], f"{where}.parent", int, optional=True)
            read.typed(proposal["mutation"], f"{where}.mutation", str)
            pending.append(Proposal.from_json(proposal))
        arrived = {}
        for key, value in read.object(data["arrived"], "arrived").items():
            index = int(key) if key.isdigit() else None
            if index is None or not len(history) <= index < len(history) + len(pending):
                raise read.fail(
                    f"arrived.{key}",
                    f"expected the index of a pending candidate ({len(history)} to {len(history) + len(pending) - 1})",
                )
            arrived[index] = ArrivedResult.from_json(value, source, f"arrived.{key}")
        controller_rng = data["controller_rng"]
        try:
            rng_from_json(controller_rng)
        except (TypeError, ValueError) as error:
            raise read.fail("controller_rng", f"not the state of a random.Random ({error})") from None
        return cls(
            config_digest=read.typed(data["config_digest"], "config_digest", str),
            controller_rng=controller_rng,
            strategy_state=dict(read.object(data["strategy_state"], "strategy_state")),
            history=history,
            pending=pending,
            arrived=arrived,
            generation=read.typed(data["generation"], "generation", int),
            generations=[dict(read.object(summary, f"generations[{i}]")) for i, summary in enumerate(read.list(data["generations"], "generations"))],
            evaluator_files=read.file_names(data["evaluator_files"], "evaluator_files"),
            snapshot_files=read.file_names(data["snapshot_files"], "snapshot_files"),
            finished=read.typed(data["finished"], "finished", bool),
            finish_reason=read.typed(data["finish_reason"], "finish_reason", str, optional=True),
        )


def save_state(directory: str | os.PathLike, state: SearchState) -> Path:
    path = Path(directory) / STATE_FILE
    atomic_write_json(path, state.to_json())
    return path


def load_state(directory: str | os.PathLike) -> SearchState:
    """The state in ``directory``; :class:`StateFileError` (naming the file and the field) if it cannot be used,
    FileNotFoundError if there is none."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no search state to resume from (start without --resume)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StateFileError(f"{path}: not UTF-8 text (byte {error.start} of {len(raw)}): the file is garbled or not a search state") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # a cut inside a string is reported at the string's start, not at the end of the text
        ends_early = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        problem = "it ends early (truncated?)" if ends_early else "garbled"
        raise StateFileError(f"{path}: not valid JSON, {problem} ({error})") from None
    return SearchState.from_json(data, str(path))
