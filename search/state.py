"""Search state (SPEC §6): everything the search knows, as one JSON document written atomically.

The state holds the history of every candidate (architecture, status, score, metrics, cost, error), the
queue of proposals of the current generation not yet evaluated, one summary per generation (what the strategy
reported when it proposed it: mutation counts, the entropy of its distributions), the strategy's own state
(opaque JSON: for OP-NAS its operation-priority observations), the controller's random-generator state,
torch's generator state, and the names of the evaluator's files (the super-net's safetensors). The
population of Algorithm 1 is the set of successful candidates in the history, so it is not stored twice.

Writes go to a temporary file in the same directory, are flushed to disk, and replace the old file in one
``os.replace``: a search killed at any moment leaves either the previous state or the new one.
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

from .strategies import Proposal


# 2: the strategy's state is opaque (``strategy_state``), per-generation summaries (``generations``);
# children are made by Algorithm 1's inter- then intra-layer mutation.
STATE_FORMAT_VERSION = 2
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
    def from_json(cls, data: Mapping[str, Any]) -> "CandidateRecord":
        """The record, with its key recomputed: a state written while keys were spelled otherwise (before they
        became linear in the program's size) resumes as if written now, since only the keys' equality counts."""
        return cls(**{**data, "key": architecture_key(data["architecture"])})


def rng_state_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(data: list[Any]) -> random.Random:
    rng = random.Random()
    version, internal, gauss_next = data
    rng.setstate((version, tuple(internal), gauss_next))
    return rng


@dataclasses.dataclass
class SearchState:
    """The whole search, as data. ``config_digest`` guards against resuming with a different config."""

    config_digest: str
    controller_rng: list[Any]
    strategy_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[CandidateRecord] = dataclasses.field(default_factory=list)
    pending: list[Proposal] = dataclasses.field(default_factory=list)
    generation: int = -1  # the generation the pending proposals belong to; 0 is the initial population
    generations: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one summary per generation
    torch_rng_state: str | None = None
    evaluator_files: dict[str, str] = dataclasses.field(default_factory=dict)
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
            "generations": self.generations,
            "strategy_state": self.strategy_state,
            "controller_rng": self.controller_rng,
            "torch_rng_state": self.torch_rng_state,
            "evaluator_files": self.evaluator_files,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "state") -> "SearchState":
        version = data.get("format_version")
        if version == 1:
            raise ValueError(
                f"{source}: format_version 1 was written by an earlier version of the search (operation priority "
                f"kept by the controller, children made by an inter- *or* an intra-layer mutation) and cannot be "
                f"continued by this one (format {STATE_FORMAT_VERSION}). Start the search again in a new output_dir; "
                "the old history.jsonl stays readable"
            )
        if version != STATE_FORMAT_VERSION:
            raise ValueError(
                f"{source}: format_version {version!r} is not {STATE_FORMAT_VERSION}; "
                "this state was written by another version of the search"
            )
        return cls(
            config_digest=data["config_digest"],
            controller_rng=data["controller_rng"],
            strategy_state=dict(data["strategy_state"]),
            history=[CandidateRecord.from_json(record) for record in data["history"]],
            pending=[Proposal.from_json(proposal) for proposal in data["pending"]],
            generation=data["generation"],
            generations=list(data["generations"]),
            torch_rng_state=data["torch_rng_state"],
            evaluator_files=dict(data["evaluator_files"]),
            finished=data["finished"],
            finish_reason=data["finish_reason"],
        )


def save_state(directory: str | os.PathLike, state: SearchState) -> Path:
    path = Path(directory) / STATE_FILE
    atomic_write_json(path, state.to_json())
    return path


def load_state(directory: str | os.PathLike) -> SearchState:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no search state to resume from (start without --resume)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return SearchState.from_json(data, str(path))
