"""Estimate a search's wall time on a cluster from measured per-candidate times (``search/scale_estimate.py``).

    python scripts/estimate_search_scale.py --history runs/benchmark-executors/local/history.jsonl \
        [--devices 8 64 256] [--num_candidates 760] [--mean_device_hours 31.6] [--efficiency_per_doubling 0.9]

The measured times (``cost.wall_seconds`` of the successful candidates of ``--history``, or
``--candidate_seconds``) give the spread of candidate times; they are rescaled to ``--mean_device_hours`` per
candidate on one device (default: the paper's ~24K GPU-hours over 760 candidates). For each device count it
prints the wall time of the ``local`` executor (data-parallel, one candidate at a time), of the ``ray`` executor
(generation-synchronous, one device per candidate), and of data-parallel candidates run
generation-synchronously (the best power-of-two devices per candidate: an estimate of what this project's Ray
executor does not do), with the share of device time doing candidate work. The last line is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import statistics
import sys
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser

from search.scale_estimate import (
    DataParallelModel,
    candidate_times,
    generation_sizes,
    generation_synchronous_wall_time,
    local_wall_time,
)


@dataclasses.dataclass
class EstimateArguments:
    history: str | None = dataclasses.field(default=None, metadata={"help": "A search's history.jsonl: its candidates' wall_seconds."})
    candidate_seconds: list[float] = dataclasses.field(default_factory=list, metadata={"help": "Measured times instead of --history."})
    devices: list[int] = dataclasses.field(default_factory=lambda: [8, 64, 256])
    num_candidates: int = 760
    population_size: int = 100
    num_parents: int = 5
    children_per_parent: int = 5
    mean_device_hours: float = dataclasses.field(
        default=24000 / 760, metadata={"help": "Mean single-device time per candidate (paper: ~24K GPU-hours / 760)."}
    )
    efficiency_per_doubling: float = dataclasses.field(default=0.9, metadata={"help": "Data-parallel efficiency kept per doubling of devices (an assumption)."})
    max_devices_per_candidate: int = dataclasses.field(default=128, metadata={"help": "The global batch: at most one device per sequence."})
    seed: int = 0


def measured_seconds(arguments: EstimateArguments) -> list[float]:
    if arguments.candidate_seconds:
        return list(arguments.candidate_seconds)
    if not arguments.history:
        raise SystemExit("give --history (a search's history.jsonl) or --candidate_seconds")
    records = [json.loads(line) for line in Path(arguments.history).read_text().splitlines() if line.strip()]
    times = [record["cost"]["wall_seconds"] for record in records if record["status"] == "ok" and record["cost"].get("wall_seconds")]
    if len(times) < 2:
        raise SystemExit(f"{arguments.history}: fewer than two successful candidates with a wall_seconds cost")
    return times


def main(argv: list[str] | None = None) -> dict:
    (arguments,) = HfArgumentParser(EstimateArguments).parse_args_into_dataclasses(args=argv)
    measured = measured_seconds(arguments)
    model = DataParallelModel(arguments.efficiency_per_doubling, arguments.max_devices_per_candidate)
    sizes = generation_sizes(arguments.num_candidates, arguments.population_size, arguments.num_parents, arguments.children_per_parent)
    times = candidate_times(measured, arguments.num_candidates, arguments.mean_device_hours * 3600, arguments.seed)
    spread = statistics.stdev(measured) / statistics.fmean(measured)
    print(f"{arguments.num_candidates} candidates in {len(sizes)} generations ({sizes[0]}, then {sizes[1]} each); "
          f"{arguments.mean_device_hours:.1f} device-hours per candidate on average, spread (CV) {spread:.3f} from "
          f"{len(measured)} measured candidates; data-parallel efficiency {arguments.efficiency_per_doubling} per doubling, "
          f"at most {arguments.max_devices_per_candidate} devices per candidate")
    rows = []
    print(f"{'devices':>8} {'local days':>11} {'local busy':>11} {'ray days':>9} {'ray busy':>9} {'ray+DP days':>12} {'devices/cand.':>14}"
          "  (ray+DP: not implemented; busy: share of device time doing candidate work)")
    for devices in arguments.devices:
        local = local_wall_time(times, devices, model)
        ray = generation_synchronous_wall_time(times, sizes, devices, 1, model)
        per_candidate = min(
            (2**power for power in range(devices.bit_length())),
            key=lambda option: generation_synchronous_wall_time(times, sizes, devices, option, model).wall_seconds,
        )
        hybrid = generation_synchronous_wall_time(times, sizes, devices, per_candidate, model)
        rows.append({
            "devices": devices,
            "local_days": local.wall_seconds / 86400, "local_busy": local.utilisation,
            "ray_days": ray.wall_seconds / 86400, "ray_busy": ray.utilisation,
            "ray_data_parallel_days": hybrid.wall_seconds / 86400, "ray_data_parallel_devices_per_candidate": per_candidate,
        })
        print(f"{devices:>8} {local.wall_seconds / 86400:>11.1f} {local.utilisation:>11.2f} {ray.wall_seconds / 86400:>9.1f} "
              f"{ray.utilisation:>9.2f} {hybrid.wall_seconds / 86400:>12.1f} {per_candidate:>14}")
    command = "python scripts/estimate_search_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    summary = {"command": command, "generation_sizes": sizes, "measured_spread": spread, "rows": rows}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
