"""The wall-time simulator of ``search/scale_estimate.py`` and its script."""

from __future__ import annotations

import json

import pytest

from search.scale_estimate import (
    DataParallelModel,
    candidate_times,
    generation_sizes,
    generation_synchronous_wall_time,
    local_wall_time,
)


def test_the_paper_search_has_a_population_then_generations_of_25():
    assert generation_sizes(760, 100, 5, 5) == [100] + [25] * 26 + [10]
    assert generation_sizes(8, 4, 2, 2) == [4, 4]


def test_measured_times_are_rescaled_to_the_mean_asked_for_keeping_their_spread():
    times = candidate_times([1.0, 3.0], count=1000, mean_seconds=100.0, seed=1)
    assert set(times) == {50.0, 150.0} and abs(sum(times) / len(times) - 100.0) < 5.0
    with pytest.raises(ValueError, match="positive measured candidate times"):
        candidate_times([], 10, 1.0)


def test_a_generation_never_keeps_more_devices_busy_than_it_has_children():
    model = DataParallelModel(efficiency_per_doubling=1.0, max_devices_per_candidate=128)
    times, sizes = [10.0] * 30, [10, 10, 10]
    assert generation_synchronous_wall_time(times, sizes, 10, 1, model).wall_seconds == 30.0  # 3 generations, 1 round each
    assert generation_synchronous_wall_time(times, sizes, 1000, 1, model).wall_seconds == 30.0  # 990 devices idle
    assert generation_synchronous_wall_time(times, sizes, 5, 1, model).wall_seconds == 60.0
    assert generation_synchronous_wall_time(times, sizes, 10, 0.5, model).wall_seconds == 60.0  # 2 per device, half speed
    assert local_wall_time(times, 10, model).wall_seconds == 30.0  # perfect scaling: the same
    lossy = DataParallelModel(efficiency_per_doubling=0.5, max_devices_per_candidate=4)
    assert lossy.speedup(8) == lossy.speedup(4) == 4 * 0.5**2  # beyond the batch, devices idle
    assert local_wall_time(times, 8, lossy).utilisation == pytest.approx(300 / (8 * 300))


def test_a_straggler_holds_its_generation_back():
    model = DataParallelModel(1.0, 128)
    assert generation_synchronous_wall_time([1.0, 1.0, 9.0, 1.0], [2, 2], 2, 1, model).wall_seconds == 1.0 + 9.0


def test_the_script_estimates_from_a_history_file(tmp_path, capsys):
    from scripts.estimate_search_scale import main

    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({"status": "ok", "cost": {"wall_seconds": s}}) + "\n" for s in (10.0, 12.0, 14.0)))
    summary = main(["--history", str(history), "--devices", "8", "64"])
    assert [row["devices"] for row in summary["rows"]] == [8, 64]
    eight, sixty_four = summary["rows"]
    assert sixty_four["ray_days"] > eight["ray_days"] / 8 * 2  # 39 of 64 devices idle in every generation of 25
    assert "local days" in capsys.readouterr().out
