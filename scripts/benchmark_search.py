"""Benchmarks of the search: controller overhead, the held-out loss, BIWS against training from scratch, executors.

    python scripts/benchmark_search.py [--candidates 300] [--config search/configs/tiny.yaml]
                                       [--warmup_candidates 8] [--steps 20] [--targets 3] [--max_multiple 16]
    python scripts/benchmark_search.py --executor ray --workers 2 [--repeats 1] [--output_dir runs/benchmark-executors]

1. **Controller overhead** (``controller``). A search with the paper's controller settings (M=100, K=5, C=5,
   α=0.01, 12 layers, programs up to 16 ops) and the instant synthetic evaluator: wall time per candidate of
   everything that is not evaluation (sampling, mutation, UCB, the state write, the JSONL log), against the
   time one real BIWS candidate of ``--config`` takes here (goal: < 1%).
2. **Held-out loss** (``held_out_loss``). ``held_out_mlm_loss`` of a candidate of ``--config`` with the MLM logits
   at the masked positions only, against the same loop with the logits of every position (the heads' default):
   time ratio, medians of ``--repeats`` interleaved runs, and the largest difference of the two losses.
3. **BIWS vs from scratch** (``biws_vs_scratch``). A super-net is warmed up the way a search warms it
   (``--warmup_candidates`` random architectures, ``--steps`` MLM + NSP steps each, written back). Then for
   ``--targets`` new random architectures: the held-out MLM loss after ``--steps`` steps from the super-net, and
   the number of steps a from-scratch initialisation needs to reach that loss (evaluated every ``--steps`` steps,
   up to ``--max_multiple`` × ``--steps``). Ratio = BIWS steps / from-scratch steps (goal ≤ 0.15; paper: 80%
   saved). The proxy is the MLM loss on fixed, pre-masked held-out pairs (WikiText-2 test): at CPU scale a GLUE
   dev score of a few-step model is noise, a held-out loss is not.
4. **Executors** (``--executor ray``: this one alone). The same BIWS search of ``--config`` (``--executor_candidates``
   candidates: a population of half of them, then generations of 2 × 2 children; ``--executor_steps``
   pretraining steps, so that a candidate takes 15 s or more; one torch thread per candidate) with the local executor and with ``--workers`` Ray workers on a Ray
   instance started here with that many CPUs, ``--repeats`` interleaved pairs; prints the wall-time ratio
   ray / local (goal ≤ 0.6 with 2 workers on 2 cores), with and without starting Ray, checks that both searches
   are identical (history, scores, super-net tensors), and the per-candidate times (for
   ``scripts/estimate_search_scale.py``: keep the searches with ``--output_dir``).

Every number is measured in this run on this machine; the last line is one JSON object of all figures.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from safetensors.torch import load_file
from transformers import HfArgumentParser, set_seed

from modeling_autobert_zero import AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import architecture_key
from search.biws_evaluator import BiwsEvaluator, HeldOutLossTracker, held_out_mlm_loss
from search.config import SearchConfig, dataclass_from_mapping, load_config
from search.evaluator import EvaluationContext
from search.run_opnas import run_search
from search.space import sample_architecture
from search.state import load_state
from training.runners import pretrain


@dataclasses.dataclass
class BenchmarkArguments:
    config: str = dataclasses.field(default="search/configs/tiny.yaml", metadata={"help": "The BIWS config measured."})
    candidates: int = dataclasses.field(default=300, metadata={"help": "Candidates of the controller-overhead search."})
    warmup_candidates: int = dataclasses.field(default=8, metadata={"help": "Candidates that train the super-net first."})
    steps: int = dataclasses.field(default=20, metadata={"help": "Pretraining steps per BIWS candidate."})
    targets: int = dataclasses.field(default=3, metadata={"help": "New architectures compared BIWS vs scratch."})
    max_multiple: int = dataclasses.field(default=16, metadata={"help": "From scratch runs up to this many × steps."})
    eval_pairs: int = dataclasses.field(default=256, metadata={"help": "Held-out pairs of the MLM-loss proxy."})
    eval_file: str = dataclasses.field(default="../shared/data/wikitext-2-raw/wiki.test.raw")
    seed: int = 0
    benchmarks: str = dataclasses.field(
        default="controller,held_out_loss,biws_vs_scratch", metadata={"help": "Which to run (comma-separated)."}
    )
    executor: str | None = dataclasses.field(default=None, metadata={"help": "ray: compare the Ray executor with the local one (only)."})
    workers: int = dataclasses.field(default=2, metadata={"help": "Ray workers (and the CPUs of the Ray instance started)."})
    executor_candidates: int = dataclasses.field(default=8, metadata={"help": "Candidates of the executor benchmark's search."})
    executor_steps: int = dataclasses.field(
        default=800, metadata={"help": "Pretraining steps of its candidates (800: 15 s or more each on one thread of tiny.yaml)."}
    )
    repeats: int = dataclasses.field(default=1, metadata={"help": "Interleaved repeats (executors; the held-out loss runs 5 × as many)."})
    output_dir: str | None = dataclasses.field(default=None, metadata={"help": "Keep the executor benchmark's searches here."})


def controller_overhead(arguments: BenchmarkArguments, work_dir: Path) -> dict[str, float]:
    config = dataclass_from_mapping(
        SearchConfig,
        {
            "output_dir": str(work_dir / "controller"),
            "seed": arguments.seed,
            "max_evaluations": arguments.candidates,
            "search": {"population_size": 100, "num_parents": 5, "children_per_parent": 5, "ucb_alpha": 0.01},
            "space": {"num_layers": 12, "max_program_length": 16},
            "evaluator": {"name": "synthetic"},
            "export": {"top_k": 0},
            "tensorboard": False,
        },
    )
    started = time.perf_counter()
    state = run_search(config, progress=False)
    total = time.perf_counter() - started
    evaluation = sum(record.cost["wall_seconds"] for record in state.history)
    proposing = [record.cost["controller_seconds"] for record in state.history]
    return {
        "controller_seconds_per_candidate": (total - evaluation) / len(state.history),
        "proposing_seconds_max": max(proposing),
        "state_bytes": (work_dir / "controller" / "search_state.json").stat().st_size,
    }


def biws_candidate_seconds(config: SearchConfig, work_dir: Path) -> tuple[float, float]:
    """Wall time of one real BIWS candidate (and of writing the super-net) with this config."""
    evaluator = BiwsEvaluator.from_config(config)
    architecture = sample_architecture(config.space, random.Random(0))
    started = time.perf_counter()
    evaluator.evaluate(architecture, EvaluationContext(0, 0, work_dir / "candidate"))
    evaluation = time.perf_counter() - started
    started = time.perf_counter()
    evaluator.save(work_dir, "benchmark")
    return evaluation, time.perf_counter() - started


def biws_against_scratch(arguments: BenchmarkArguments, config: SearchConfig, work_dir: Path) -> dict[str, object]:
    evaluator = BiwsEvaluator.from_config(config)  # tokenizer, pairs, held-out batches and a fresh super-net
    tokenizer, supernet, batches = evaluator.tokenizer, evaluator.supernet, evaluator.held_out

    def pretrain_steps(model, steps: int, seed: int, every: int) -> HeldOutLossTracker:
        tracker = HeldOutLossTracker(batches, every)
        pretrain(
            model, tokenizer, evaluator.pretraining_data, work_dir / "pretraining", save_model=False, callbacks=[tracker],
            **{**evaluator.training_overrides("pretraining", seed), "max_steps": steps},
        )
        return tracker

    rng = random.Random(arguments.seed)
    seen: set[str] = set()

    def new_architecture():
        while True:
            architecture = sample_architecture(config.space, rng)
            if architecture_key(architecture) not in seen:
                seen.add(architecture_key(architecture))
                return architecture

    for index in range(arguments.warmup_candidates):
        architecture = new_architecture()
        set_seed(index)
        candidate = supernet.candidate(architecture)
        pretrain_steps(candidate, arguments.steps, index, arguments.steps)
        supernet.write_back(candidate)

    results = []
    for target in range(arguments.targets):
        architecture = new_architecture()
        seed = 1000 + target
        set_seed(seed)
        biws_loss = pretrain_steps(supernet.candidate(architecture), arguments.steps, seed, arguments.steps).losses[arguments.steps]
        set_seed(seed)
        scratch = AutoBertZeroForPreTraining(supernet.candidate_config(architecture))
        start_loss = held_out_mlm_loss(scratch, batches)
        curve = pretrain_steps(scratch, arguments.steps * arguments.max_multiple, seed, arguments.steps).losses
        reached = next((step for step, loss in sorted(curve.items()) if loss <= biws_loss), None)
        results.append({
            "biws_loss": biws_loss,
            "scratch_start_loss": start_loss,
            "scratch_curve": curve,
            "scratch_steps_to_match": reached,
            "ratio": arguments.steps / reached if reached else None,
        })
    return {"targets": results}


def held_out_loss_speed(arguments: BenchmarkArguments, config: SearchConfig) -> dict[str, float]:
    """``held_out_mlm_loss`` (MLM logits at masked positions only) against the same loop with full logits."""
    evaluator = BiwsEvaluator.from_config(config)
    model = evaluator.supernet.candidate(sample_architecture(config.space, random.Random(arguments.seed)))
    batches = evaluator.held_out

    @torch.no_grad()
    def full_logits_loss() -> float:  # the reference: what held_out_mlm_loss ran before
        model.eval()
        return statistics.fmean(model(**batch).masked_lm_loss.item() for batch in batches)

    timings: dict[str, list[float]] = {"sparse": [], "full": []}
    losses = {}
    for _ in range(5 * arguments.repeats):
        for name, function in (("sparse", lambda: held_out_mlm_loss(model, batches)), ("full", full_logits_loss)):
            started = time.perf_counter()
            losses[name] = function()
            timings[name].append(time.perf_counter() - started)
    return {
        "held_out_pairs": sum(len(batch["input_ids"]) for batch in batches),
        "held_out_seconds_sparse": statistics.median(timings["sparse"]),
        "held_out_seconds_full": statistics.median(timings["full"]),
        "held_out_speedup": statistics.median(timings["full"]) / statistics.median(timings["sparse"]),
        "held_out_loss_difference": abs(losses["sparse"] - losses["full"]),
    }


def executor_speed(arguments: BenchmarkArguments, work_dir: Path) -> dict[str, object]:
    """The same BIWS search with the local executor and on Ray workers (see the module docstring)."""
    import ray

    population = arguments.executor_candidates // 2
    settings = {
        "max_evaluations": arguments.executor_candidates,
        "search.population_size": population, "search.num_parents": 2, "search.children_per_parent": 2,
        "evaluator.biws.pretraining.max_steps": arguments.executor_steps,
        "export.top_k": 0, "tensorboard": False, "executor.cpus_per_candidate": 1,
    }
    ray_settings = {"executor.name": "ray", "executor.workers": arguments.workers}
    started = time.perf_counter()
    ray.init(num_cpus=arguments.workers, log_to_driver=False, include_dashboard=False)
    ray_start = time.perf_counter() - started
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for repeat in range(arguments.repeats):
            for name, extra in (("local", {}), ("ray", ray_settings)):
                config = load_config(arguments.config, {**settings, **extra, "output_dir": str(work_dir / f"{name}-{repeat}")})
                started = time.perf_counter()
                run_search(config, progress=False)
                seconds[name].append(time.perf_counter() - started)
                print(f"  {name} search {repeat}: {seconds[name][-1]:.1f} s")
    finally:
        ray.shutdown()
    local, remote = load_state(work_dir / "local-0"), load_state(work_dir / "ray-0")

    def untimed(state):
        return [(record.key, record.status, record.score, record.metrics) for record in state.history]

    local_weights = load_file(work_dir / "local-0" / local.evaluator_files["supernet"])
    ray_weights = load_file(work_dir / "ray-0" / remote.evaluator_files["supernet"])
    identical = untimed(local) == untimed(remote) and all(torch.equal(t, ray_weights[n]) for n, t in local_weights.items())
    ratios = [ray / local for ray, local in zip(seconds["ray"], seconds["local"])]
    candidate_seconds = [record.cost["wall_seconds"] for record in local.history if record.status == "ok"]
    worker_seconds = [record.cost["wall_seconds"] for record in remote.history if record.status == "ok"]
    # where the time went: a candidate slower on a worker than here means the workers shared fewer cores than
    # they were given (other load on the machine); the rest of the Ray search's time is scheduling and barriers
    slowdown = statistics.fmean(worker_seconds) / statistics.fmean(candidate_seconds)
    busy = sum(worker_seconds) / (arguments.workers * seconds["ray"][0])
    return {
        "workers": arguments.workers,
        "executor_candidates": arguments.executor_candidates,
        "local_search_seconds": seconds["local"],
        "ray_search_seconds": seconds["ray"],
        "ray_start_seconds": ray_start,
        "ray_over_local": statistics.median(ratios),
        "ray_over_local_with_ray_start": (seconds["ray"][0] + ray_start) / seconds["local"][0],
        "identical_results": identical,
        "candidate_seconds": candidate_seconds,
        "worker_candidate_seconds": worker_seconds,
        "worker_slowdown": slowdown,
        "workers_busy": busy,
        "ray_over_local_without_slowdown": statistics.median(ratios) / slowdown,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    (arguments,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    command = "python scripts/benchmark_search.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    config = load_config(arguments.config, {
        "evaluator.biws.pretraining.max_steps": arguments.steps,
        "evaluator.biws.pretraining.validation_files": [arguments.eval_file],
        "evaluator.biws.pretraining.max_validation_examples": arguments.eval_pairs,
        "tensorboard": False,
    })
    figures: dict[str, object] = {"command": command, "torch_threads": torch.get_num_threads()}
    benchmarks = {"executors"} if arguments.executor == "ray" else set(arguments.benchmarks.split(","))
    with tempfile.TemporaryDirectory() as temporary:
        work_dir = Path(temporary)
        if "controller" in benchmarks:
            overhead = controller_overhead(arguments, work_dir)
            evaluation, supernet_write = biws_candidate_seconds(config, work_dir)
            figures.update(overhead, biws_candidate_seconds=evaluation, supernet_write_seconds=supernet_write)
            figures["overhead_ratio"] = (overhead["controller_seconds_per_candidate"] + supernet_write) / evaluation
            print(f"controller: {1000 * overhead['controller_seconds_per_candidate']:.1f} ms per candidate over "
                  f"{arguments.candidates} candidates (paper settings, state file {overhead['state_bytes'] / 1e6:.2f} MB at the end)")
            print(f"one BIWS candidate of {arguments.config}: {evaluation:.1f} s; super-net write {1000 * supernet_write:.1f} ms")
            print(f"overhead / evaluation = {100 * figures['overhead_ratio']:.3f}% (goal < 1%)")

        if "held_out_loss" in benchmarks:
            speed = held_out_loss_speed(arguments, config)
            figures.update(speed)
            print(f"held-out MLM loss over {speed['held_out_pairs']} pairs: {1000 * speed['held_out_seconds_sparse']:.0f} ms with "
                  f"logits at masked positions, {1000 * speed['held_out_seconds_full']:.0f} ms with all logits -> "
                  f"{speed['held_out_speedup']:.2f}x faster; losses differ by {speed['held_out_loss_difference']:.1e}")

        if "biws_vs_scratch" in benchmarks:
            comparison = biws_against_scratch(arguments, config, work_dir)
            figures.update(comparison)
            for index, target in enumerate(comparison["targets"]):
                reached = target["scratch_steps_to_match"]
                ratio = f"{target['ratio']:.3f}" if reached else f"< {1 / arguments.max_multiple:.3f} (not reached)"
                print(f"target {index}: BIWS held-out MLM loss {target['biws_loss']:.3f} after {arguments.steps} steps; from scratch "
                      f"starts at {target['scratch_start_loss']:.3f}, needs {reached or f'> {arguments.steps * arguments.max_multiple}'} "
                      f"steps -> BIWS/scratch steps = {ratio} (goal <= 0.15)")

        if "executors" in benchmarks:
            speed = executor_speed(arguments, Path(arguments.output_dir) if arguments.output_dir else work_dir)
            figures.update(speed)
            times = speed["candidate_seconds"]
            print(f"{arguments.executor_candidates} candidates of {arguments.config} ({arguments.executor_steps} pretraining steps, 1 thread each): "
                  f"{min(times):.1f}-{max(times):.1f} s per candidate (median {statistics.median(times):.1f} s)")
            print(f"wall time ray ({arguments.workers} workers) / local = {speed['ray_over_local']:.3f} (goal <= 0.6 with 2 workers "
                  f"on 2 cores); with starting Ray ({speed['ray_start_seconds']:.1f} s): {speed['ray_over_local_with_ray_start']:.3f}; "
                  f"identical results: {speed['identical_results']}")
            print(f"a candidate took {speed['worker_slowdown']:.2f}x as long on a Ray worker as here (1.0 on an idle machine: "
                  f"more means the cores were shared with other work); workers busy {100 * speed['workers_busy']:.0f}% of the "
                  f"Ray search; ratio without that slowdown: {speed['ray_over_local_without_slowdown']:.3f}")
    print(f"rerun: {command}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
