"""Benchmark tables (in the spirit of NAS-Bench-201/301): measured scores for every architecture of a closed
sub-space, so that search strategies can be compared over many seeds by lookup instead of training.

A table is one JSON document (with a CSV beside it for people) holding:

- the sub-space (a :class:`~search.space.SearchSpace`) and whether the table is ``exhaustive`` (every
  architecture of that space is an entry, so a strategy searching the space can never miss the table);
- the candidates' model sizes (``model``) and the scoring ``protocol`` (steps, data and its digests, ...);
- ``seeds`` and, per entry, one score per seed (higher is better; ``score_name`` says what it is), the
  seconds each run took and any further per-seed ``metrics``;
- ``reliability`` (how far the scores tell architectures apart beyond seed noise, e.g. an intraclass
  correlation), reference architectures scored the same way (``presets``) and ``provenance`` (versions,
  command, time).

Entries are identified by :func:`~modeling_autobert_zero.architecture.architecture_key` recomputed from their
stored architecture when the table is read, so a table stays usable when the key's spelling changes (as it did
when keys became linear in the program's size). Everything is plain JSON written atomically; reading checks every
field and names the file and the entry it is about.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modeling_autobert_zero.architecture import ArchitectureError, architecture_key, describe_architecture

from .config import ConfigError, dataclass_from_mapping
from .space import Architecture, SearchSpace, SearchSpaceError
from .state import atomic_write_bytes, atomic_write_json


TABLE_FORMAT = "autobert-zero-benchmark-table"
TABLE_FORMAT_VERSION = 1


class TableError(ValueError):
    """A table file that cannot be read, or an architecture the table does not hold."""


@dataclasses.dataclass(frozen=True)
class TableEntry:
    """One architecture (canonical) and what the protocol measured for it, one value per table seed."""

    architecture: Architecture
    scores: tuple[float, ...]
    seconds: tuple[float, ...]
    metrics: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    @property
    def score(self) -> float:
        """The mean over seeds: the architecture's score in the table."""
        return statistics.fmean(self.scores)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": architecture_key(self.architecture),
            "architecture": self.architecture,
            "scores": list(self.scores),
            "score": self.score,
            "seconds": list(self.seconds),
            "metrics": {name: list(values) for name, values in self.metrics.items()},
        }


@dataclasses.dataclass(frozen=True)
class BenchmarkTable:
    name: str
    space: SearchSpace
    seeds: tuple[int, ...]
    entries: tuple[TableEntry, ...]
    exhaustive: bool
    score_name: str
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    protocol: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reliability: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    presets: tuple[Mapping[str, Any], ...] = ()
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for position, entry in enumerate(self.entries):
            key = architecture_key(entry.architecture)
            if key in index:
                raise TableError(f"entries[{position}] repeats the architecture of entries[{index[key]}]: {key}")
            if len(entry.scores) != len(self.seeds) or len(entry.seconds) != len(self.seeds):
                raise TableError(
                    f"entries[{position}]: expected one score and one time per seed ({len(self.seeds)}), got "
                    f"{len(entry.scores)} scores and {len(entry.seconds)} times"
                )
            index[key] = position
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, architecture: Sequence[Mapping[str, Any]]) -> bool:
        return architecture_key(architecture) in self._index

    def lookup(self, architecture: Sequence[Mapping[str, Any]]) -> TableEntry:
        """The entry of ``architecture`` (canonical); :class:`TableError` if the table does not hold it."""
        key = architecture_key(architecture)
        if key not in self._index:
            raise TableError(f"table {self.name!r} has no entry for the architecture {key}")
        return self.entries[self._index[key]]

    # -----------------------------------------------------------------------------------------------------
    # Files.
    # -----------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "format_version": TABLE_FORMAT_VERSION,
            "name": self.name,
            "space": dataclasses.asdict(self.space),
            "exhaustive": self.exhaustive,
            "score_name": self.score_name,
            "seeds": list(self.seeds),
            "model": dict(self.model),
            "protocol": dict(self.protocol),
            "reliability": dict(self.reliability),
            "presets": [dict(preset) for preset in self.presets],
            "provenance": dict(self.provenance),
            "entries": [entry.to_json() for entry in self.entries],
        }

    def to_csv(self) -> str:
        """One row per entry: key, mean score, one score column per seed, mean seconds, readable layers."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["key", "score", *(f"score_seed{seed}" for seed in self.seeds), "mean_seconds", "layers"]
        )
        for entry in self.entries:
            writer.writerow(
                [
                    architecture_key(entry.architecture),
                    repr(entry.score),
                    *(repr(score) for score in entry.scores),
                    repr(statistics.fmean(entry.seconds)),
                    " | ".join(describe_architecture(entry.architecture)),
                ]
            )
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the table (JSON) and, beside it, the same entries as CSV; both atomically."""
        path = Path(path)
        atomic_write_json(path, self.to_json())
        atomic_write_bytes(path.with_suffix(".csv"), self.to_csv().encode())
        return path

    @classmethod
    def from_json(cls, data: Any, source: str = "table") -> "BenchmarkTable":
        if not isinstance(data, Mapping):
            raise TableError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != TABLE_FORMAT or data.get("format_version") != TABLE_FORMAT_VERSION:
            raise TableError(
                f"{source}: not a benchmark table of format {TABLE_FORMAT!r} version {TABLE_FORMAT_VERSION} "
                f"(found format {data.get('format')!r}, version {data.get('format_version')!r})"
            )
        required = ("name", "space", "exhaustive", "score_name", "seeds", "entries")
        missing = [field for field in required if field not in data]
        if missing:
            raise TableError(f"{source}: missing field(s) {missing}")
        try:
            space = dataclass_from_mapping(SearchSpace, data["space"], "space")
        except (ConfigError, SearchSpaceError) as error:
            raise TableError(f"{source}: {error}") from None
        seeds = _int_list(data["seeds"], f"{source}: seeds")
        if not isinstance(data["entries"], list):
            raise TableError(f"{source}: entries: expected a list")
        entries = tuple(_entry_from_json(item, space, f"{source}: entries[{i}]") for i, item in enumerate(data["entries"]))
        mappings = {}
        for field in ("model", "protocol", "reliability", "provenance"):
            value = data.get(field, {})
            if not isinstance(value, Mapping):
                raise TableError(f"{source}: {field}: expected a JSON object, got {type(value).__name__}")
            mappings[field] = dict(value)
        presets = data.get("presets", [])
        if not isinstance(presets, list) or not all(isinstance(preset, Mapping) for preset in presets):
            raise TableError(f"{source}: presets: expected a list of JSON objects")
        if not isinstance(data["exhaustive"], bool) or not isinstance(data["name"], str):
            raise TableError(f"{source}: 'exhaustive' must be true/false and 'name' a string")
        try:
            return cls(
                name=data["name"],
                space=space,
                seeds=tuple(seeds),
                entries=entries,
                exhaustive=data["exhaustive"],
                score_name=str(data["score_name"]),
                presets=tuple(dict(preset) for preset in presets),
                **mappings,
            )
        except TableError as error:
            raise TableError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> "BenchmarkTable":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise TableError(f"{path}: cannot read the benchmark table ({error.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TableError(f"{path}: not valid JSON ({error})") from None
        return cls.from_json(data, str(path))


def _int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TableError(f"{where}: expected a non-empty list of integers, got {value!r:.80}")
    return value


def _float_tuple(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise TableError(f"{where}: expected a list of numbers, got {value!r:.80}")
    if not all(math.isfinite(v) for v in value):
        raise TableError(f"{where}: every value must be finite, got {value!r:.80}")
    return tuple(float(v) for v in value)


def _entry_from_json(item: Any, space: SearchSpace, where: str) -> TableEntry:
    if not isinstance(item, Mapping) or "architecture" not in item or "scores" not in item or "seconds" not in item:
        raise TableError(f"{where}: expected an object with 'architecture', 'scores' and 'seconds'")
    try:
        architecture = space.canonical_architecture(item["architecture"])
    except ArchitectureError as error:
        raise TableError(f"{where}: the architecture is not in the table's space: {error}") from None
    metrics = item.get("metrics", {})
    if not isinstance(metrics, Mapping):
        raise TableError(f"{where}: metrics: expected a JSON object")
    return TableEntry(
        architecture=architecture,
        scores=_float_tuple(item["scores"], f"{where}: scores"),
        seconds=_float_tuple(item["seconds"], f"{where}: seconds"),
        metrics={name: _float_tuple(values, f"{where}: metrics.{name}") for name, values in metrics.items()},
    )
