"""Does a search config's proxy tell architectures apart? ICC(1) of its scores over architectures × seeds.

A search can only find good architectures if its proxy score separates them by more than the noise of
training one of them: the spread test of the benchmark tables (:func:`search.reliability.one_way_icc`;
ICC ≥ 0.8 exactly when the between-architecture SD is at least twice the seed SD). This measures it for any
search config, with the config's own evaluator and proxy:

- ``architectures`` distinct architectures are drawn from the config's space (``sample_seed``; the same
  sampler the search starts from, ``search.space.sample_architecture``);
- each is evaluated once per seed, **from scratch** (weight sharing off: the measurement is about the proxy,
  not the super-net's history), on the same data, held-out tokens and finetuning examples, with the
  executor's thread count; seed ``j`` (``controller.candidate_seed(config.seed, j)``, the same for every
  architecture) sets what a candidate's own seed sets in a search: its initialisation, training order and
  masks;
- ICC(1) with its 95 % interval, the between- and within-architecture SDs, and every score.

An evaluation that fails (a diverging candidate) is recorded as a search records it, and its architecture is
left out of the ICC (``architectures_failed`` counts them).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modeling_autobert_zero.architecture import architecture_key

from .config import SearchConfig
from .controller import candidate_seed
from .evaluator import Evaluator
from .executors import CandidateJob, evaluate_candidate, torch_threads
from .reliability import one_way_icc
from .run_opnas import build_evaluator
from .space import Architecture, SearchSpace, sample_architecture


@dataclasses.dataclass
class ProxyReliabilityArguments:
    config: str = dataclasses.field(metadata={"help": "A search config (YAML or JSON), e.g. search/configs/tiny.yaml."})
    architectures: int = dataclasses.field(default=20, metadata={"help": "Distinct architectures sampled from the config's space."})
    seeds: int = dataclasses.field(default=2, metadata={"help": "Evaluations of each architecture, each with its own seed."})
    sample_seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the architecture sample."})
    work_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Scratch folder for the candidates' training (default: a temporary folder)."}
    )
    json: bool = dataclasses.field(default=False, metadata={"help": "End with one line of JSON."})


def sample_distinct_architectures(space: SearchSpace, count: int, seed: int, max_draws: int = 100_000) -> list[Architecture]:
    """``count`` architectures of ``space`` with distinct canonical forms, drawn with ``random.Random(seed)``."""
    if count < 2:
        raise ValueError(f"architectures: expected at least 2 to compare, got {count}")
    rng = random.Random(seed)
    chosen: dict[str, Architecture] = {}
    for _ in range(max_draws):
        architecture = space.canonical_architecture(sample_architecture(space, rng))
        chosen.setdefault(architecture_key(architecture), architecture)
        if len(chosen) == count:
            return list(chosen.values())
    raise ValueError(f"architectures: the space holds fewer than {count} distinct architectures ({len(chosen)} found in {max_draws} draws)")


def from_scratch(config: SearchConfig) -> SearchConfig:
    """``config`` with BIWS weight sharing off (other evaluators have none)."""
    evaluator = config.evaluator
    biws = dataclasses.replace(evaluator.biws, weight_sharing=False)
    return dataclasses.replace(config, evaluator=dataclasses.replace(evaluator, biws=biws))


def measure_proxy_reliability(
    config: SearchConfig,
    evaluator: Evaluator,
    architectures: list[Architecture],
    seeds: int,
    work_dir: Path,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Evaluate every architecture ``seeds`` times with ``evaluator`` and summarise the scores' ICC(1); see the
    module docstring."""
    if seeds < 2:
        raise ValueError(f"seeds: expected at least 2 evaluations per architecture, got {seeds}")
    run_seeds = [candidate_seed(config.seed, repeat) for repeat in range(seeds)]
    entries: list[dict[str, Any]] = []
    wall_seconds: list[float] = []
    started = time.perf_counter()
    for number, architecture in enumerate(architectures):
        scores: list[float | None] = []
        errors: list[str] = []
        for repeat, seed in enumerate(run_seeds):
            job = CandidateJob(index=number * seeds + repeat, seed=seed, architecture=architecture)
            clock = time.perf_counter()
            with torch_threads(config.executor.cpus_per_candidate):
                outcome = evaluate_candidate(evaluator, None, job, work_dir / f"a{number}-s{repeat}")
            wall_seconds.append(time.perf_counter() - clock)
            result = outcome.result
            if result is None or result.status != "ok" or result.score is None:
                scores.append(None)
                errors.append(f"seed {seed}: {outcome.error or f'{result.status}: {result.error}'}")
            else:
                scores.append(float(result.score))
        entries.append({"architecture": architecture, "scores": scores, **({"errors": errors} if errors else {})})
        shown = ", ".join("failed" if score is None else f"{score:.4f}" for score in scores)
        progress(f"architecture {number + 1}/{len(architectures)}: {shown} ({time.perf_counter() - started:.0f} s)")
    complete = [entry["scores"] for entry in entries if None not in entry["scores"]]
    if len(complete) < 2:
        raise RuntimeError(f"only {len(complete)} architecture(s) evaluated with every seed; ICC needs at least 2")
    icc = {  # None where every score is equal: nothing is separated, and ICC(1) is undefined
        name: None if isinstance(value, float) and math.isnan(value) else value
        for name, value in one_way_icc(complete).to_json().items()
    }
    means = [statistics.fmean(scores) for scores in complete]
    return {
        **icc,
        "architectures_failed": len(entries) - len(complete),
        "score_mean": statistics.fmean(means),
        "score_range": [min(means), max(means)],
        "distinct_scores": len({round(score, 9) for scores in complete for score in scores}),
        "mean_seconds_per_evaluation": statistics.fmean(wall_seconds) if wall_seconds else 0.0,
        "wall_seconds": time.perf_counter() - started,
        "run_seeds": run_seeds,
        "evaluator": config.evaluator.name,
        "proxy": config.evaluator.biws.proxy if config.evaluator.name == "biws" else config.evaluator.name,
        "entries": entries,
    }


def run_proxy_reliability(
    config: SearchConfig, arguments: ProxyReliabilityArguments, progress: Callable[[str], None] = lambda line: None
) -> dict[str, Any]:
    """The measurement for ``config`` (made from scratch) as ``arguments`` ask."""
    config = from_scratch(config)
    architectures = sample_distinct_architectures(config.space, arguments.architectures, arguments.sample_seed)
    evaluator = build_evaluator(config)
    if arguments.work_dir is not None:
        return measure_proxy_reliability(config, evaluator, architectures, arguments.seeds, Path(arguments.work_dir), progress)
    with tempfile.TemporaryDirectory(prefix="proxy-reliability-") as scratch:
        return measure_proxy_reliability(config, evaluator, architectures, arguments.seeds, Path(scratch), progress)
