"""How long a search takes on a cluster, estimated from measured per-candidate times (a small simulator).

A search is a sequence of generations (Algorithm 1): the initial population of ``M`` candidates, then
generations of ``K × C`` children, the last one cut by the budget. Its candidates' times on one device are
drawn (seeded, with replacement) from measured times, rescaled to a chosen mean: measurements give the
*spread* (stragglers hold a generation back), the mean is the scale being estimated. Two ways to use
``devices``:

- **local** (``--executor local`` under ``accelerate launch``): one candidate at a time on all devices,
  data-parallel; the generations do not matter.
- **generation-synchronous** (``--executor ray``): a generation's children at once, ``devices_per_candidate``
  each, a child starting on the first free slot in proposal order (as Ray's queue gives them out), the next
  generation starting when the last child of this one is done. A generation of ``K × C`` children never
  keeps more than ``K × C`` slots busy: devices beyond that idle. ``devices_per_candidate`` below 1 shares a
  device between candidates, each then running that much slower (no gain from sharing: a paper-size
  candidate fills a device); above 1 (data-parallel candidates, which this project's Ray executor does not
  run) is estimated with the same data-parallel model as ``local``.

The data-parallel model is an assumption, stated by its two parameters: ``efficiency_per_doubling`` (the
speedup of ``g`` devices is ``g × efficiency_per_doubling ** log2(g)``) and ``max_devices_per_candidate`` (the
global batch: a device needs at least one sequence, so more devices than sequences idle).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class DataParallelModel:
    """Speedup of one candidate trained data-parallel on ``g`` devices (an assumption, see the module docstring)."""

    efficiency_per_doubling: float = 0.9
    max_devices_per_candidate: int = 128

    def speedup(self, devices: float) -> float:
        if devices <= 1:
            return devices  # a share of a device: that share of its speed
        used = min(devices, self.max_devices_per_candidate)
        return used * self.efficiency_per_doubling ** math.log2(used)


def generation_sizes(num_candidates: int, population_size: int, num_parents: int, children_per_parent: int) -> list[int]:
    """The sizes of the generations of a search of ``num_candidates`` (the last one cut by the budget)."""
    sizes, left = [], num_candidates
    size = population_size
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size = num_parents * children_per_parent
    return sizes


def candidate_times(measured_seconds: Sequence[float], count: int, mean_seconds: float, seed: int = 0) -> list[float]:
    """``count`` single-device candidate times drawn from ``measured_seconds`` (with replacement), rescaled so
    that the measured mean becomes ``mean_seconds``: the measured spread at another scale."""
    if not measured_seconds or min(measured_seconds) <= 0:
        raise ValueError(f"expected positive measured candidate times, got {list(measured_seconds)[:5]}")
    scale = mean_seconds / statistics.fmean(measured_seconds)
    rng = random.Random(seed)
    return [scale * rng.choice(measured_seconds) for _ in range(count)]


@dataclasses.dataclass(frozen=True)
class Estimate:
    wall_seconds: float
    utilisation: float  # device-seconds of useful single-device work / (devices × wall time)


def local_wall_time(times: Sequence[float], devices: int, model: DataParallelModel) -> Estimate:
    wall = sum(times) / model.speedup(devices)
    return Estimate(wall, sum(times) / (devices * wall))


def generation_synchronous_wall_time(
    times: Sequence[float], sizes: Sequence[int], devices: int, devices_per_candidate: float, model: DataParallelModel
) -> Estimate:
    """Wall time when each generation's children run at once, ``devices_per_candidate`` each."""
    slots = math.floor(devices / devices_per_candidate + 1e-9)
    if slots < 1:
        raise ValueError(f"{devices} devices cannot hold a candidate of {devices_per_candidate} devices")
    speedup = model.speedup(devices_per_candidate)
    wall, start = 0.0, 0
    for size in sizes:
        free_at = [0.0] * min(slots, size)  # a heap of the times the slots become free
        for seconds in times[start : start + size]:
            heapq.heapreplace(free_at, free_at[0] + seconds / speedup)
        wall += max(free_at)
        start += size
    return Estimate(wall, sum(times) / (devices * wall))
