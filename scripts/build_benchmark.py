"""Build a benchmark table of the search space with real scores (held-out MLM loss after mini pretraining).

    python scripts/build_benchmark.py --workers 2                      # benchmarks/mini_2layer.json (+ .csv)
    python scripts/build_benchmark.py --calibrate_only --steps 300      # reliability of a protocol on 20 × 2 runs
    python scripts/build_benchmark.py --measure_trainer_overhead        # lean loop vs transformers' Trainer

Every option of the protocol (``search.benchmark_protocol.MiniPretrainingProtocol``) and of the build
(``search.benchmark_builder.BenchmarkBuildArguments``) is a flag. A killed build resumes where it stopped when
run again with the same options (finished runs are journaled under ``--work_dir``). The last line printed
is one JSON object: the calibration figures, the trainer-overhead measurement, or the table's summary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser

from search.benchmark_builder import BenchmarkBuildArguments, build_benchmark, calibrate, table_summary
from search.benchmark_protocol import MiniPretrainingProtocol, measure_trainer_overhead


@dataclasses.dataclass
class ModeArguments:
    measure_trainer_overhead: bool = dataclasses.field(
        default=False, metadata={"help": "Time the protocol's loop against transformers' Trainer on one architecture."}
    )


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    argv = sys.argv[1:] if argv is None else argv
    protocol, arguments, mode = HfArgumentParser(
        (MiniPretrainingProtocol, BenchmarkBuildArguments, ModeArguments)
    ).parse_args_into_dataclasses(args=argv)
    if mode.measure_trainer_overhead:
        result = measure_trainer_overhead(protocol, Path(arguments.work_dir or "runs/benchmarks/trainer-overhead"))
    elif arguments.calibrate_only:
        result = calibrate(arguments, protocol)
    else:
        table = build_benchmark(arguments, protocol, ["python", "scripts/build_benchmark.py", *argv])
        result = table_summary(table, arguments.output)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
