"""The search's YAML/JSON config: nested dataclasses, loaded with every key and type checked.

A config file mirrors :class:`SearchConfig` (see ``search/configs/tiny.yaml`` and ``paper.yaml``). An unknown
key, a missing required one, or a value of the wrong type is an error that names the file and the key path
(``evaluator.pretraining.max_steps``) and says what was expected. Relative paths in the config are taken
relative to the working directory, as in the ``transformers`` example scripts.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modeling_autobert_zero.architecture import ModelDimensions
from training.overrides import OverrideError, apply_overrides

from .evaluator import SYNTHETIC_LANDSCAPES
from .objective import Objective
from .space import SearchSpace
from .strategies import STRATEGIES, StrategySettings


class ConfigError(ValueError):
    pass


def split_global_batch(batch_size: int, world_size: int, max_per_device: int | None, where: str) -> tuple[int, int]:
    """``(per-device batch, gradient-accumulation steps)`` that make the global ``batch_size`` on ``world_size``
    processes: the batch is split evenly over the processes, then into as few accumulation steps as keep each
    device's batch within ``max_per_device`` (None: no limit). ``where`` names the settings in errors."""
    if batch_size < 1 or batch_size % world_size:
        raise ConfigError(
            f"{where}.batch_size={batch_size} is the global batch (all processes together); it must be a positive "
            f"multiple of the {world_size} processes this search runs on"
        )
    per_process = batch_size // world_size
    limit = per_process if max_per_device is None else max_per_device
    if limit < 1:
        raise ConfigError(f"{where}.max_per_device_batch_size: expected a positive integer, got {max_per_device}")
    steps = next(steps for steps in range(1, per_process + 1) if per_process % steps == 0 and per_process // steps <= limit)
    return per_process // steps, steps


@dataclasses.dataclass(frozen=True)
class PretrainingSettings:
    """The short MLM + NSP pretraining every candidate gets (paper: 40k steps). ``batch_size`` is the global
    batch, whatever the number of processes; ``max_per_device_batch_size`` (None: no limit) splits it into
    gradient-accumulation steps where one device cannot hold its share (:func:`split_global_batch`).
    ``max_grad_norm``: global gradient-norm clipping (0 turns it off; 1.0 is BERT's and the `Trainer`'s)."""

    train_files: tuple[str, ...] = ()
    max_seq_length: int = 128
    max_steps: int = 40000
    batch_size: int = 128
    max_per_device_batch_size: int | None = None
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.01
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    mlm_probability: float = 0.15
    nsp_probability: float = 0.5
    max_examples: int | None = None
    validation_files: tuple[str, ...] = ()  # held-out text: its MLM loss is recorded (and is the mlm_loss proxy)
    max_validation_examples: int = 256


@dataclasses.dataclass(frozen=True)
class FinetuningSettings:
    """The GLUE proxy: each task finetuned from the pretrained candidate, score = mean dev metric. ``batch_size``
    is the global batch and ``max_grad_norm`` the clipping, as in :class:`PretrainingSettings`."""

    tasks: tuple[str, ...] = ("rte",)
    data_dir: str = "demo_data/glue"
    max_seq_length: int = 128
    max_steps: int = 1000
    batch_size: int = 32
    max_per_device_batch_size: int | None = None
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None


PROXIES = ("glue", "mlm_loss")


@dataclasses.dataclass(frozen=True)
class BiwsSettings:
    """The paper's evaluator. ``weight_sharing`` False trains every candidate from scratch instead.

    ``proxy``: ``glue`` (the paper's: mean dev score of the finetuning tasks) or ``mlm_loss`` (minus the
    MLM loss on ``pretraining.validation_files``, no finetuning: for corpora without labelled tasks, and for
    small-scale runs where a few finetuning steps cannot lift any candidate above the majority class).
    """

    tokenizer: str = "demo_data/vocab.txt"
    weight_sharing: bool = True
    proxy: str = "glue"
    pretraining: PretrainingSettings = PretrainingSettings()
    finetuning: FinetuningSettings = FinetuningSettings()
    measure_latency: bool = False
    latency_batch_size: int = 1
    latency_seq_length: int = 128
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        if self.proxy not in PROXIES:
            raise ConfigError(f"evaluator.biws.proxy: expected one of {list(PROXIES)}, got {self.proxy!r}")
        if self.proxy == "mlm_loss" and not self.pretraining.validation_files:
            raise ConfigError("evaluator.biws.proxy is mlm_loss: give evaluator.biws.pretraining.validation_files")


@dataclasses.dataclass(frozen=True)
class SyntheticSettings:
    """The instant stand-in evaluator (tests, controller timing); says nothing about real architectures."""

    noise: float = 0.01
    delay_seconds: float = 0.0
    landscape: str = "positional"  # or "op_blind" (search/evaluator.py: SyntheticLandscape)

    def __post_init__(self) -> None:
        if self.landscape not in SYNTHETIC_LANDSCAPES:
            raise ConfigError(f"evaluator.synthetic.landscape: expected one of {list(SYNTHETIC_LANDSCAPES)}, got {self.landscape!r}")


@dataclasses.dataclass(frozen=True)
class TableSettings:
    """A benchmark table looked up instead of training (``search/table_evaluator.py``). The config's ``space``
    must be the table's. ``per_query_seed``: score = one seed's score drawn with the candidate's seed (seed
    noise included) instead of the mean over the table's seeds."""

    path: str = ""
    per_query_seed: bool = False


EVALUATORS = ("biws", "synthetic", "table")


@dataclasses.dataclass(frozen=True)
class EvaluatorSettings:
    name: str = "biws"
    biws: BiwsSettings = BiwsSettings()
    synthetic: SyntheticSettings = SyntheticSettings()
    table: TableSettings = TableSettings()

    def __post_init__(self) -> None:
        if self.name not in EVALUATORS:
            raise ConfigError(f"evaluator.name: expected one of {list(EVALUATORS)}, got {self.name!r}")
        if self.name == "table" and not self.table.path:
            raise ConfigError("evaluator.name is table: give evaluator.table.path (a benchmark table's JSON file)")


@dataclasses.dataclass(frozen=True)
class ModelSettings(ModelDimensions):
    """What every candidate shares: the model's sizes (:class:`~modeling_autobert_zero.architecture.ModelDimensions`,
    with its defaults) and dropout. ``vocab_size`` counts only where the evaluator has no tokenizer of its own
    (the synthetic one, or yours): the BIWS evaluator uses its tokenizer's size."""

    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    conv_kernel_dropout: float = 0.1

    def dimensions(self, vocab_size: int | None = None) -> ModelDimensions:
        """The sizes alone, with the evaluator's ``vocab_size`` where it has one."""
        sizes = {field.name: getattr(self, field.name) for field in dataclasses.fields(ModelDimensions)}
        return ModelDimensions(**{**sizes, "vocab_size": vocab_size or self.vocab_size})


EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class ExecutorSettings:
    """Where candidates are evaluated (``search/executors.py``). Not part of what the search is: a search may
    be resumed with another executor, and gives the same result with each (same ``cpus_per_candidate``).

    ``local``: one candidate at a time, on every process of ``accelerate launch`` / ``torchrun`` (data-parallel).
    ``ray``: the children of a generation at once on Ray workers, ``workers`` of them (None: as many as the
    cluster's resources hold), each with ``cpus_per_candidate`` CPUs and ``gpus_per_candidate`` of a GPU
    (a fraction shares one GPU between candidates); ``ray_address``: None starts Ray on this machine, ``auto``
    joins the cluster ``ray start`` runs here, ``HOST:PORT`` a remote one. ``cpus_per_candidate`` is also each
    candidate's number of torch threads, in every executor: float sums depend on it, so results are identical
    across executors only with the same value.
    """

    name: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_candidate: int = 1
    gpus_per_candidate: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ConfigError(f"executor.name: expected one of {list(EXECUTORS)}, got {self.name!r}")
        if self.cpus_per_candidate < 1:
            raise ConfigError(f"executor.cpus_per_candidate: expected a positive integer, got {self.cpus_per_candidate}")
        if not 0.0 <= self.gpus_per_candidate <= 1.0:
            raise ConfigError(
                f"executor.gpus_per_candidate: expected a value in [0, 1] (a candidate trains on one device of a Ray "
                f"worker; for data-parallel candidates use the local executor), got {self.gpus_per_candidate}"
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"executor.workers: expected a positive integer, got {self.workers}")
        if self.name == "local":
            for field, value, default in (
                ("workers", self.workers, None), ("gpus_per_candidate", self.gpus_per_candidate, 0.0), ("ray_address", self.ray_address, None)
            ):
                if value != default:
                    raise ConfigError(
                        f"executor.{field}={value} is a setting of the ray executor; the local one evaluates one candidate "
                        "at a time on every process it is launched with (accelerate launch / torchrun)"
                    )


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """How many of the best architectures ``run_opnas.py`` exports when the search ends (0: none)."""

    top_k: int = 5

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ConfigError(f"export.top_k: expected 0 or more, got {self.top_k}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    output_dir: str = "runs/opnas"
    seed: int = 0
    strategy: str = "opnas"
    max_evaluations: int = 1000
    search: StrategySettings = StrategySettings()
    space: SearchSpace = SearchSpace()
    model: ModelSettings = ModelSettings()
    objective: Objective = Objective()
    evaluator: EvaluatorSettings = EvaluatorSettings()
    export: ExportSettings = ExportSettings()
    executor: ExecutorSettings = ExecutorSettings()
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: expected one of {sorted(STRATEGIES)}, got {self.strategy!r}")
        if self.max_evaluations < 1:
            raise ConfigError(f"max_evaluations: expected a positive integer, got {self.max_evaluations}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def search_defining_json(self) -> dict[str, Any]:
        """The settings a resumed search must share with the original one (the budget may grow, the executor
        change)."""
        data = self.to_json()
        for free in ("output_dir", "max_evaluations", "export", "executor", "tensorboard"):
            data.pop(free)
        return data


def _check_value(annotation: Any, value: Any, where: str) -> Any:
    """``value`` converted to ``annotation`` (tuples from lists, floats from ints), or a ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _check_value(inner, value, where)
    if dataclasses.is_dataclass(annotation):
        return dataclass_from_mapping(annotation, value, where)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r:.80}")
        return tuple(_check_value(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation in (str, bool) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r:.80}")


def dataclass_from_mapping(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and value; defaults fill missing keys."""
    label = where or "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: expected a mapping of settings, got {data!r:.80}")
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s}; expected one of: {', '.join(sorted(fields))}")
    values = {
        name: _check_value(hints[name], value, f"{where}.{name}" if where else name) for name, value in data.items()
    }
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as error:
        message = str(error)
        raise ConfigError(message if where and message.startswith(where) else f"{label}: {message}") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """Read a YAML (or JSON) config file; ``overrides`` maps dotted keys to values (from the command line,
    see `training.overrides`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return dataclass_from_mapping(SearchConfig, apply_overrides(data, overrides or {}))
    except (ConfigError, OverrideError) as error:
        raise ConfigError(f"{path}: {error}") from None
