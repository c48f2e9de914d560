"""Benchmarks of the search: controller overhead per candidate, and BIWS against training from scratch.

    python scripts/benchmark_search.py [--candidates 300] [--config search/configs/tiny.yaml]
                                       [--warmup_candidates 8] [--steps 20] [--targets 3] [--max_multiple 16]

1. **Controller overhead.** A search with the paper's controller settings (M=100, K=5, C=5, α=0.01, 12
   layers, programs up to 16 ops) and the instant synthetic evaluator: wall time per candidate of
   everything that is not evaluation (sampling, mutation, UCB, the state write, the JSONL log), against the
   time one real BIWS candidate of ``--config`` takes here (goal: < 1%).
2. **BIWS vs from scratch.** A super-net is warmed up the way a search warms it (``--warmup_candidates``
   random architectures, ``--steps`` MLM + NSP steps each, written back). Then for ``--targets`` new random
   architectures: the held-out MLM loss after ``--steps`` steps from the super-net, and the number of steps
   a from-scratch initialisation needs to reach that loss (evaluated every ``--steps`` steps, up to
   ``--max_multiple`` × ``--steps``). Ratio = BIWS steps / from-scratch steps (goal ≤ 0.15; paper: 80% saved).
   The proxy is the MLM loss on fixed, pre-masked held-out pairs (WikiText-2 test): at CPU scale a GLUE dev
   score of a few-step model is noise, a held-out loss is not.

Every number is measured in this run on this machine; the last line is one JSON object of all figures.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from transformers import HfArgumentParser, set_seed

from modeling_autobert_zero import AutoBertZeroForPreTraining
from modeling_autobert_zero.architecture import architecture_key
from search.biws_evaluator import BiwsEvaluator, HeldOutLossTracker, held_out_mlm_loss
from search.config import SearchConfig, dataclass_from_mapping, load_config
from search.evaluator import EvaluationContext
from search.run_opnas import run_search
from search.space import sample_architecture
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
    pretraining = config.evaluator.biws.pretraining

    def pretrain_steps(model, steps: int, seed: int, every: int) -> HeldOutLossTracker:
        tracker = HeldOutLossTracker(batches, every)
        pretrain(
            model, tokenizer, evaluator.pretraining_data, work_dir / "pretraining", save_model=False, callbacks=[tracker],
            **{**evaluator.training_overrides(pretraining, seed), "max_steps": steps},
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
    with tempfile.TemporaryDirectory() as temporary:
        work_dir = Path(temporary)
        overhead = controller_overhead(arguments, work_dir)
        evaluation, supernet_write = biws_candidate_seconds(config, work_dir)
        figures.update(overhead, biws_candidate_seconds=evaluation, supernet_write_seconds=supernet_write)
        figures["overhead_ratio"] = (overhead["controller_seconds_per_candidate"] + supernet_write) / evaluation
        print(f"controller: {1000 * overhead['controller_seconds_per_candidate']:.1f} ms per candidate over "
              f"{arguments.candidates} candidates (paper settings, state file {overhead['state_bytes'] / 1e6:.2f} MB at the end)")
        print(f"one BIWS candidate of {arguments.config}: {evaluation:.1f} s; super-net write {1000 * supernet_write:.1f} ms")
        print(f"overhead / evaluation = {100 * figures['overhead_ratio']:.3f}% (goal < 1%)")

        comparison = biws_against_scratch(arguments, config, work_dir)
        figures.update(comparison)
        for index, target in enumerate(comparison["targets"]):
            reached = target["scratch_steps_to_match"]
            ratio = f"{target['ratio']:.3f}" if reached else f"< {1 / arguments.max_multiple:.3f} (not reached)"
            print(f"target {index}: BIWS held-out MLM loss {target['biws_loss']:.3f} after {arguments.steps} steps; from scratch "
                  f"starts at {target['scratch_start_loss']:.3f}, needs {reached or f'> {arguments.steps * arguments.max_multiple}'} "
                  f"steps -> BIWS/scratch steps = {ratio} (goal <= 0.15)")
    print(f"rerun: {command}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
