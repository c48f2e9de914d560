"""Does a search config's proxy separate architectures? ICC(1) over sampled architectures × seeds, from scratch.

    python scripts/proxy_reliability.py --config search/configs/tiny.yaml --architectures 20 --seeds 2 --json
    python scripts/proxy_reliability.py --config search/configs/tiny.yaml evaluator.biws.proxy=glue --json

Samples ``--architectures`` distinct architectures of the config's space, evaluates each ``--seeds`` times
from scratch with the config's own evaluator and proxy (``search.proxy_reliability``), and prints every
architecture's scores, then ICC(1) with its 95 % interval and the between- and within-architecture SDs
(ICC ≥ 0.8: architectures differ by at least twice the seed noise). Any config setting can follow as
``dotted.key=value``, as for ``search/run_opnas.py``. With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets
from transformers import HfArgumentParser

from search.config import load_config
from search.proxy_reliability import ProxyReliabilityArguments, run_proxy_reliability
from training.console import configure_logging
from training.overrides import split_overrides


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    datasets.disable_progress_bars()
    configure_logging()
    flags, settings = split_overrides(argv)
    (arguments,) = HfArgumentParser(ProxyReliabilityArguments).parse_args_into_dataclasses(args=flags)
    config = load_config(arguments.config, settings)
    print(f"{arguments.architectures} architectures × {arguments.seeds} seeds of {arguments.config}, from scratch", flush=True)
    result = run_proxy_reliability(config, arguments, progress=lambda line: print(line, flush=True))
    result["command"] = shlex.join(["python", "scripts/proxy_reliability.py", *argv])
    icc = (f"ICC(1) {result['icc']:.3f} (95 % CI {result['ci_low']:.3f} to {result['ci_high']:.3f})" if result["icc"] is not None
           else "ICC(1) undefined: every score is the same")
    print(
        f"proxy {result['proxy']}: {icc}, "
        f"between-architecture SD {result['between_sd']:.4g}, seed SD {result['within_sd']:.4g}, "
        f"{result['distinct_scores']} distinct scores; {result['mean_seconds_per_evaluation']:.1f} s per evaluation"
    )
    if arguments.json:
        print(json.dumps(result, allow_nan=False))
    return result


if __name__ == "__main__":
    main()
