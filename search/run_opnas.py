"""Run an OP-NAS search (paper Algorithm 1) from a YAML/JSON config, on one process or under Accelerate.

    python search/run_opnas.py --config search/configs/tiny.yaml [--output_dir DIR] [--resume] [key=value ...]
    accelerate launch search/run_opnas.py --config search/configs/paper.yaml --resume
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 search/run_opnas.py --config ...   # CPUs only

Every process runs the same loop. The main process alone runs the controller (strategy, mutations, UCB);
it broadcasts each decision (the next architecture, then its result), so every process evaluates the same
candidate data-parallel and no two processes can disagree about what comes next. After every candidate
the main process writes the evaluator's files (the super-net, safetensors) and then the search state
(``search_state.json``), each atomically; ``--resume`` continues from the last state with nothing lost or
repeated. Logs: a progress bar, ``history.jsonl`` (one line per candidate), TensorBoard when installed, and
``search.log`` (every log line, the candidates' training steps included; on the console too with ``--verbose``).
Any config setting can follow as ``dotted.key=value`` (``evaluator.biws.pretraining.max_steps=5``).

From Python, ``run_search(config, evaluator=MyEvaluator())`` runs a search with your own evaluator.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any


if __package__ in (None, ""):  # run as a file (python search/run_opnas.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from search.config import ConfigError, SearchConfig, load_config
from search.controller import SearchController, candidate_seed, config_digest
from search.distributed import broadcast_from_main, close_process_group, distributed_state
from search.evaluator import EvaluationContext, EvaluationResult, Evaluator, SyntheticEvaluator
from search.state import CONFIG_COPY, STATE_FILE, SearchState, atomic_write_bytes, atomic_write_json, load_state, save_state
from search.strategies import STRATEGIES, Proposal
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
    if not resume:
        if state_path.exists():
            raise FileExistsError(f"{state_path} exists: pass --resume to continue that search, or choose another output_dir")
        return SearchController.start(strategy, config.space, dims, config.max_evaluations, config.seed, digest)
    state = load_state(output_dir)
    if state.config_digest != digest:
        raise ConfigError(
            f"{state_path}: this search was started with different settings (digest {state.config_digest}, the config "
            f"gives {digest}); only output_dir, max_evaluations, export and tensorboard may change on --resume"
        )
    return SearchController(strategy, config.space, dims, config.max_evaluations, state)


def run_search(
    config: SearchConfig, evaluator: Evaluator | None = None, resume: bool = False, progress: bool = True
) -> SearchState | None:
    """Run (or, with ``resume``, continue) a search. Returns the final state on the main process, None on the
    others (only the main process runs the controller)."""
    is_main = distributed_state().is_main_process
    evaluator = evaluator or build_evaluator(config)
    output_dir = Path(config.output_dir)

    controller, opening_error = None, None
    if is_main:
        try:
            controller = _open_controller(config, evaluator, output_dir, resume)
        except (ConfigError, OSError, ValueError) as error:
            opening_error = error
    message = broadcast_from_main(None if opening_error is None else str(opening_error))
    if opening_error is not None:
        raise opening_error
    if message is not None:
        raise RuntimeError(f"the main process could not open the search: {message}")

    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in output_dir.glob(".*.tmp"):  # temporary files of atomic writes a kill interrupted
            leftover.unlink(missing_ok=True)
        atomic_write_json(output_dir / CONFIG_COPY, config.to_json())
        if controller.state.torch_rng_state is not None:
            saved = bytearray(base64.b64decode(controller.state.torch_rng_state))
            torch.random.set_rng_state(torch.frombuffer(saved, dtype=torch.uint8))
    # every process restores the evaluator (the super-net) from the files the main process names
    evaluator_files = broadcast_from_main(controller.state.evaluator_files if is_main else None)
    if evaluator_files:
        evaluator.load(output_dir, evaluator_files)

    log = _SearchLog(output_dir, controller.state, config.tensorboard) if is_main else None
    bar = tqdm(
        total=config.max_evaluations,
        initial=len(controller.state.history) if is_main else 0,
        disable=not (is_main and progress),
        desc=f"{config.strategy} search",
        unit="candidate",
    )
    try:
        while True:
            started = time.perf_counter()
            decision = None
            if is_main:
                proposal = controller.next_proposal()
                decision = None if proposal is None else (proposal.to_json(), len(controller.state.history))
            decision = broadcast_from_main(decision)
            if decision is None:
                break
            proposal_json, index = decision
            proposal = Proposal.from_json(proposal_json)
            proposing_seconds = time.perf_counter() - started

            scratch = output_dir / "candidates" / f"{index:06d}"
            context = EvaluationContext(index, candidate_seed(config.seed, index), scratch, is_main)
            outcome = _evaluate(evaluator, proposal, context)
            outcome = broadcast_from_main(outcome)
            if not is_main:
                continue

            recording_started = time.perf_counter()
            result, failure = outcome
            files = evaluator.save(output_dir, f"{index:06d}")
            overhead = {
                "controller_seconds": proposing_seconds,
                "checkpoint_seconds": time.perf_counter() - recording_started,
            }
            record = controller.record(proposal, result, failure, overhead)
            stale = set(controller.state.evaluator_files.values()) - set(files.values())
            controller.state.evaluator_files = files
            controller.state.torch_rng_state = base64.b64encode(torch.random.get_rng_state().numpy().tobytes()).decode()
            save_state(output_dir, controller.state)
            for name in stale:
                (output_dir / name).unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
            log.write(record)
            bar.update(1)
            bar.set_postfix(best=f"{log.best:.4f}" if log.best is not None else "-", last=record.status)
        if is_main:
            save_state(output_dir, controller.state)
            if (output_dir / "candidates").is_dir() and not any((output_dir / "candidates").iterdir()):
                (output_dir / "candidates").rmdir()
    finally:
        bar.close()
        if log is not None:
            log.close()
    return controller.state if is_main else None


def _evaluate(evaluator: Evaluator, proposal: Proposal, context: EvaluationContext) -> tuple[EvaluationResult | None, str | None]:
    """The evaluator's result, or (None, the error) if it raised: a failed candidate never stops the search."""
    try:
        return evaluator.evaluate(proposal.architecture, context), None
    except Exception as error:  # noqa: BLE001 - any failure of one candidate is recorded, the search goes on
        logger.warning("candidate %d failed:\n%s", context.index, traceback.format_exc())
        return None, f"{type(error).__name__}: {error}"


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
