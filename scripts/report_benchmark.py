"""The named presets of a benchmark table side by side (paper Table 5 at mini scale), with paired tests.

    python scripts/report_benchmark.py --table benchmarks/mini_3layer.json

Prints the Markdown tables that the README shows, then, as the last line, the whole report as one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser

from search.benchmark_report import format_preset_report, preset_report
from search.tabular import BenchmarkTable


@dataclasses.dataclass
class ReportArguments:
    table: str = dataclasses.field(default="benchmarks/mini_3layer.json", metadata={"help": "A table written by build_benchmark.py."})


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(ReportArguments).parse_args_into_dataclasses(args=argv)
    report = preset_report(BenchmarkTable.load(arguments.table))
    print(format_preset_report(report))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
