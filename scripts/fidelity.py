"""How well BIWS scores rank architectures: Kendall τ against a benchmark table, or against longer training.

    python scripts/fidelity.py --benchmark benchmarks/mini_3layer.json --json
                               [--num_architectures 20] [--orders 2] [--steps N] [--generation_size G]
    python scripts/fidelity.py --search_dir runs/opnas-tiny [--num_architectures 5]
                               [--pretraining_steps 200] [--finetuning_steps 100]

``--benchmark``: takes a seeded sample of the table's architectures (``--sample spread``: evenly over its
ranking) and evaluates them through BIWS (weight sharing, proxy ``mlm_loss``) at the table protocol's sizes, data
and held-out tokens, in ``--orders`` seeded random orders, three ways — sequential BIWS, generation-synchronous
BIWS, and generation-synchronous BIWS minus a control architecture re-scored each generation
(``search/fidelity.py``) — then reports Kendall's τ against the
table's scores with a bootstrap interval, the table's seed-to-seed τ ceiling on the same architectures, and the
super-net-age confound (Spearman's ρ of score against evaluation index) before and after the mitigation. Each
finished order is kept in ``--work_dir`` and reused when the same command runs again. Writes ``--output``
(default ``<work_dir>/fidelity.json``).

``--search_dir``: takes ``--num_architectures`` successful candidates of the search, spread evenly over its
score ranking, trains each from a fresh initialisation (no weight sharing) for ``--pretraining_steps`` MLM + NSP
steps (default: 4× the search's), finetunes it on the search's proxy tasks, and reports Kendall's τ between the
search's (BIWS) scores and these scores. Writes ``fidelity.json`` into the search directory.

With ``--json`` the last line printed is the summary as one JSON object (strict JSON: an undefined τ is null,
with the reason beside it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser

from modeling_autobert_zero.architecture import architecture_key
from search.benchmark_protocol import file_sha256
from search.biws_evaluator import BiwsEvaluator
from search.comparison import paper_settings_for
from search.config import SearchConfig, dataclass_from_mapping
from search.controller import candidate_seed
from search.evaluator import EvaluationContext
from search.fidelity import (
    BEFORE,
    SAMPLES,
    VARIANTS,
    OrderRun,
    biws_setup_for,
    evaluation_orders,
    fidelity_summary,
    kendall_tau,
    protocol_evaluator,
    run_order,
    sample_entries,
    spread_over_ranking,
    table_protocol,
)
from search.state import CONFIG_COPY, atomic_write_json, load_state
from search.tabular import BenchmarkTable


@dataclasses.dataclass
class FidelityArguments:
    benchmark: str | None = dataclasses.field(default=None, metadata={"help": "A benchmark table (JSON) to compare BIWS against."})
    search_dir: str | None = dataclasses.field(default=None, metadata={"help": "A finished (or running) search's output_dir."})
    num_architectures: int | None = dataclasses.field(
        default=None, metadata={"help": "Architectures to evaluate (default: 20 of a table; 5 of a search, spread over its ranking)."}
    )
    sample: str = dataclasses.field(
        default="random", metadata={"help": f"--benchmark: {list(SAMPLES)}: seeded draw, or evenly over the table's ranking."}
    )
    orders: int = dataclasses.field(default=2, metadata={"help": "--benchmark: independent random evaluation orders."})
    steps: int | None = dataclasses.field(default=None, metadata={"help": "--benchmark: BIWS steps per candidate (default: the protocol's)."})
    generation_size: int | None = dataclasses.field(
        default=None, metadata={"help": "--benchmark: children per generation (default: K·C of the paper's settings scaled to the table)."}
    )
    mitigation: str = dataclasses.field(
        default="generation_control", metadata={"help": f"--benchmark: the 'after' variant, one of {[v for v in VARIANTS if v != BEFORE]}."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "--benchmark: seeds the sample, the orders, the candidates and the bootstrap."})
    bootstrap_replicates: int = dataclasses.field(default=2000, metadata={"help": "--benchmark: bootstrap resamples of architectures."})
    work_dir: str | None = dataclasses.field(default=None, metadata={"help": "--benchmark: data and finished orders (default: runs/fidelity/<table>)."})
    output: str | None = dataclasses.field(default=None, metadata={"help": "--benchmark: summary file (default: <work_dir>/fidelity.json)."})
    pretraining_steps: int | None = dataclasses.field(default=None, metadata={"help": "--search_dir: default 4× the search's."})
    finetuning_steps: int | None = dataclasses.field(default=None, metadata={"help": "--search_dir: default the search's."})
    json: bool = dataclasses.field(default=False, metadata={"help": "End with one line of JSON."})


def search_fidelity(arguments: FidelityArguments, command: str) -> dict:
    search_dir = Path(arguments.search_dir)
    config = dataclass_from_mapping(SearchConfig, json.loads((search_dir / CONFIG_COPY).read_text()))
    biws = config.evaluator.biws
    longer = dataclasses.replace(
        biws,
        weight_sharing=False,
        pretraining=dataclasses.replace(biws.pretraining, max_steps=arguments.pretraining_steps or 4 * biws.pretraining.max_steps),
        finetuning=dataclasses.replace(biws.finetuning, max_steps=arguments.finetuning_steps or biws.finetuning.max_steps),
    )
    records = [record for record in load_state(search_dir).history if record.status == "ok"]
    if len(records) < 2:
        raise ValueError(f"{search_dir}: Kendall's τ needs at least two successful candidates, found {len(records)}")
    ranked = sorted(records, key=lambda record: (-record.score, record.index))
    chosen = spread_over_ranking(ranked, arguments.num_architectures or 5)
    evaluator = BiwsEvaluator(longer, config.model, config.space.num_layers, config.seed)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for record in chosen:
            context = EvaluationContext(record.index, candidate_seed(config.seed, record.index), Path(scratch) / str(record.index))
            result = evaluator.evaluate(record.architecture, context)
            rows.append({"index": record.index, "biws_score": record.score, "scratch_score": result.score})
            print(f"candidate {record.index}: BIWS {record.score:.4f}  from scratch ({longer.pretraining.max_steps} steps) {result.score:.4f}")
    tau = kendall_tau([row["biws_score"] for row in rows], [row["scratch_score"] for row in rows])
    summary = {
        **tau.to_json("kendall_tau"),
        "pretraining_steps": longer.pretraining.max_steps,
        "search_pretraining_steps": biws.pretraining.max_steps,
        "architectures": rows,
        "command": command,
    }
    atomic_write_json(search_dir / "fidelity.json", summary)
    shown = "undefined" if tau.value is None else f"{tau.value:.3f} (p = {tau.p_value:.3f})"
    reason = f" ({tau.undefined_reason})" if tau.undefined_reason else ""
    print(f"Kendall tau = {shown}{reason} over {len(rows)} architectures -> {search_dir / 'fidelity.json'}")
    return summary


def _order_run(path: Path, inputs: dict, compute) -> OrderRun:
    """The order's run from ``path`` if it was made from exactly ``inputs``, otherwise computed and saved."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("inputs") == inputs:
            return OrderRun(**stored["run"])
        print(f"{path}: made from other settings; evaluating the order again")
    run = compute()
    atomic_write_json(path, {"inputs": inputs, "run": dataclasses.asdict(run)})
    return run


def benchmark_fidelity(arguments: FidelityArguments, command: str) -> dict:
    started = time.perf_counter()
    table_path = Path(arguments.benchmark)
    table = BenchmarkTable.load(table_path)
    protocol = table_protocol(table, str(table_path))
    count = arguments.num_architectures or 20
    entries, control = sample_entries(table, count, arguments.seed, arguments.sample)
    orders = evaluation_orders(count, arguments.orders, arguments.seed)
    generation_size = arguments.generation_size or paper_settings_for(len(table)).num_parents * paper_settings_for(len(table)).children_per_parent
    work_dir = Path(arguments.work_dir or Path("runs") / "fidelity" / table_path.stem)
    pretraining, settings, model = biws_setup_for(protocol, work_dir / "data", arguments.steps)
    steps = settings.pretraining.max_steps
    architectures = [entry.architecture for entry in entries]
    print(
        f"table {table.name!r} ({len(table)} architectures, seeds {list(table.seeds)}): {count} sampled ({arguments.sample}, seed "
        f"{arguments.seed}), "
        f"{arguments.orders} orders, {steps} BIWS steps per candidate (protocol: {protocol.steps} from scratch), "
        f"generations of {generation_size}, control {architecture_key(control.architecture)}"
    )

    runs = []
    data_digests = {path: file_sha256(path) for path in (protocol.text_file, protocol.vocab_file)}
    for order, positions in enumerate(orders):
        order_seed = candidate_seed(arguments.seed, order)
        inputs = {
            "protocol": protocol.to_json(),  # what BIWS trains on; the table's scores do not enter an order's run
            "data_sha256": data_digests,
            "architectures": [architecture_key(layers) for layers in architectures],
            "control": architecture_key(control.architecture),
            "positions": positions,
            "steps": steps,
            "generation_size": generation_size,
            "seed": order_seed,
        }
        scratch = Path(tempfile.mkdtemp(prefix="fidelity-", dir=work_dir))
        try:
            run = _order_run(
                work_dir / f"order-{order}.json",
                inputs,
                lambda: run_order(
                    lambda: protocol_evaluator(pretraining, settings, model, table.space.num_layers),
                    architectures,
                    control.architecture,
                    positions,
                    generation_size,
                    order_seed,
                    protocol.threads,
                    scratch,
                ),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        runs.append(run)
        print(f"order {order}: {run.seconds:.0f} s; sequential scores by index: " + " ".join(f"{s:.3f}" for s in run.scores[BEFORE]))

    summary = fidelity_summary(runs, entries, table, arguments.mitigation, arguments.bootstrap_replicates, arguments.seed)
    summary.update(
        {
            "table": str(table_path),
            "table_name": table.name,
            "table_size": len(table),
            "num_architectures": count,
            "sample": arguments.sample,
            "orders": arguments.orders,
            "order_positions": orders,
            "architectures": [architecture_key(layers) for layers in architectures],
            "control_architecture": architecture_key(control.architecture),
            "biws_steps": steps,
            "protocol_steps": protocol.steps,
            "generation_size": generation_size,
            "candidates_trained": sum(2 * len(run.positions) + math.ceil(len(run.positions) / generation_size) for run in runs),
            "order_seconds": [run.seconds for run in runs],
            "seconds": time.perf_counter() - started,
            "data": pretraining.data_summary(),
            "command": command,
        }
    )
    output = Path(arguments.output or work_dir / "fidelity.json")
    atomic_write_json(output, summary)
    _report(summary, output)
    return summary


def _number(value, digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:+.{digits}f}"


def _report(summary: dict, output: Path) -> None:
    print(
        f"Kendall tau (BIWS {summary['mitigation']}, mean of {summary['orders']} orders, vs table mean): "
        f"{_number(summary['kendall_tau'])} [95% bootstrap {_number(summary['kendall_tau_ci_low'])}, "
        f"{_number(summary['kendall_tau_ci_high'])}], p = {_number(summary['kendall_tau_p'])}; per order "
        + ", ".join(_number(value) for value in summary["kendall_tau_per_order"])
    )
    print(
        f"Kendall tau before (sequential BIWS): {_number(summary['kendall_tau_before'])} "
        f"[{_number(summary['kendall_tau_before_ci_low'])}, {_number(summary['kendall_tau_before_ci_high'])}]; gain "
        f"{_number(summary['kendall_tau_gain'])} [paired bootstrap {_number(summary['kendall_tau_gain_ci_low'])}, "
        f"{_number(summary['kendall_tau_gain_ci_high'])}]"
    )
    print(
        f"seed-to-seed ceiling (table seed 0 vs seed 1, same architectures): {_number(summary['seed_tau_ceiling'])} "
        f"[{_number(summary['seed_tau_ceiling_ci_low'])}, {_number(summary['seed_tau_ceiling_ci_high'])}]; "
        f"whole table {_number(summary['table_seed_tau'])}, ICC {_number(summary['table_icc'])}"
    )
    print(
        f"age correlation (Spearman, score vs index, orders pooled): before {_number(summary['age_correlation_before'])} "
        f"(p = {_number(summary['age_correlation_before_p'])}), after {_number(summary['age_correlation_after'])} "
        f"(p = {_number(summary['age_correlation_after_p'])})"
    )
    for variant, numbers in summary["variants"].items():
        print(
            f"  {variant:>18}: tau {_number(numbers['kendall_tau'])}, age rho pooled {_number(numbers['age_correlation'])}, "
            "per order " + ", ".join(_number(value) for value in numbers["age_correlation_per_order"])
            + f" (mean |rho| {_number(numbers['age_correlation_per_order_mean_abs'])})"
        )
    print(f"goals: {summary['goals']} -> {output}")


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(FidelityArguments).parse_args_into_dataclasses(args=argv)
    sources = [name for name in ("benchmark", "search_dir") if getattr(arguments, name) is not None]
    if len(sources) != 1:
        raise ValueError(f"give exactly one of --benchmark, --search_dir (got {sources or 'none'})")
    command = "python scripts/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = benchmark_fidelity(arguments, command) if arguments.benchmark else search_fidelity(arguments, command)
    if arguments.json:
        print(json.dumps(summary, allow_nan=False))
    return summary


if __name__ == "__main__":
    main()
