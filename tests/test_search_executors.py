"""Executors: the same search here, on one Ray worker and on two (synthetic, table, custom and BIWS
evaluators); a Ray worker killed mid-candidate; outcomes that arrive out of order, persisted, and a search
interrupted between them; the driver SIGKILLed at a random point of a Ray search and resumed.

Ray runs on a local instance with 2 CPUs started once per session (``ray_cluster`` in conftest).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from search import run_opnas
from search.config import ExecutorSettings, load_config
from search.evaluator import FunctionEvaluator, SyntheticEvaluator
from search.executors import LocalExecutor, make_executor
from search.run_opnas import run_search
from search.state import load_state
from test_search_biws import smoke_config
from test_search_loop import synthetic_config, synthetic_settings
from toy_evaluators import KillsItsWorkerOnce, SharedScoresEvaluator


REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "tests" / "fixtures" / "synthetic_table_tiny.json"
RAY_1, RAY_2 = {"executor.name": "ray", "executor.workers": 1}, {"executor.name": "ray", "executor.workers": 2}


def comparable(output_dir: Path) -> dict:
    """The saved state without what differs between runs of the same search: measured times."""
    state = json.loads((output_dir / "search_state.json").read_text())
    for record in state["history"]:
        record["cost"] = {name: value for name, value in record["cost"].items() if not name.endswith(("_seconds", "latency_ms"))}
    return state


def evaluations(log_dir: Path) -> list[dict]:
    path = log_dir / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def table_space() -> dict:
    return json.loads(TABLE.read_text())["space"]


@pytest.mark.parametrize("evaluator", ["synthetic", "table", "function", "shared scores"])
def test_local_and_ray_with_one_and_two_workers_give_the_same_search(ray_cluster, tmp_path, evaluator):
    overrides = {"max_evaluations": 14, "search.population_size": 6}
    if evaluator == "table":
        overrides.update({"evaluator.name": "table", "evaluator.table.path": str(TABLE), "space": table_space(),
                          "evaluator.table.per_query_seed": True, "max_evaluations": 10})

    def build(config):  # a fresh evaluator per search; None: the config's own
        if evaluator == "function":  # a user's function, a closure: it travels to the workers by value
            synthetic = SyntheticEvaluator(config.space, seed=3)
            return FunctionEvaluator(lambda architecture, context: {"score": synthetic.score(architecture) + context.seed % 7})
        return SharedScoresEvaluator(config.space, seed=3) if evaluator == "shared scores" else None

    for name, executor in {"local": {}, "ray1": RAY_1, "ray2": RAY_2}.items():
        config = synthetic_config(tmp_path / name, **overrides, **executor)
        state = run_search(config, evaluator=build(config), progress=False)
        assert len(state.history) == config.max_evaluations and all(record.status == "ok" for record in state.history)
    assert comparable(tmp_path / "local") == comparable(tmp_path / "ray1") == comparable(tmp_path / "ray2")
    if evaluator == "shared scores":  # the children of a generation saw its snapshot, not each other
        history = load_state(tmp_path / "local").history
        assert any(record.metrics["inherited"] != 0 for record in history[6:])
        assert all(record.metrics["inherited"] == 0 for record in history[:6])


def test_biws_is_bit_identical_on_one_process_and_on_two_ray_workers(ray_cluster, tmp_path):
    """Generation-synchronous BIWS: each child trains from its generation's snapshot in whichever process,
    and write-backs are applied in proposal order, so scores, metrics and super-net tensors are bit-identical."""
    overrides = {"max_evaluations": 4, "search.children_per_parent": 2, "export.top_k": 0}
    run_search(smoke_config(tmp_path / "local", **overrides), progress=False)
    run_search(smoke_config(tmp_path / "ray", **overrides, **RAY_2), progress=False)
    local, ray = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert [record["status"] for record in local["history"]] == ["ok"] * 4
    assert local == ray
    local_weights = load_file(tmp_path / "local" / local["evaluator_files"]["supernet"])
    ray_weights = load_file(tmp_path / "ray" / ray["evaluator_files"]["supernet"])
    assert local_weights.keys() == ray_weights.keys()
    assert all(torch.equal(tensor, ray_weights[name]) for name, tensor in local_weights.items())


def test_a_worker_killed_mid_candidate_is_retried_elsewhere_and_recorded_once(ray_cluster, tmp_path):
    marker = tmp_path / "killed-worker"
    config = synthetic_config(tmp_path / "ray", max_evaluations=12, **RAY_2)
    state = run_search(config, evaluator=KillsItsWorkerOnce(config.space, config.seed, victim=5, marker=str(marker)), progress=False)
    assert marker.exists()  # the worker evaluating candidate 5 died
    assert [record.index for record in state.history] == list(range(12)) and all(r.status == "ok" for r in state.history)
    straight = synthetic_config(tmp_path / "local", max_evaluations=12)
    run_search(straight, evaluator=SyntheticEvaluator(straight.space, straight.seed), progress=False)
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")
    lines = (tmp_path / "ray" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(12))


class ReversedExecutor(LocalExecutor):
    """Evaluates a generation's children last first, and stops the search (as a kill would) after
    ``stop_after`` outcomes of the search, if given."""

    stop_after: int | None = None

    def evaluate(self, evaluator, snapshot, jobs):
        for outcome in super().evaluate(evaluator, snapshot, list(reversed(jobs))):
            yield outcome
            self.outcomes = getattr(self, "outcomes", 0) + 1
            if self.outcomes == self.stop_after:
                raise KeyboardInterrupt("stopped")


def test_outcomes_arriving_out_of_order_are_persisted_and_never_evaluated_again(tmp_path, monkeypatch):
    """Children finish last first; the search is stopped after a few have arrived, then resumed. Nothing that
    arrived is evaluated again, and the search equals one run in proposal order without interruption."""
    settings = {"max_evaluations": 14, "search.population_size": 6}

    def search(output_dir, stop_after=None, resume=False):
        monkeypatch.setattr(ReversedExecutor, "stop_after", stop_after)
        config = synthetic_config(output_dir, **settings)
        return run_search(config, evaluator=SharedScoresEvaluator(config.space, seed=3, log_dir=str(tmp_path)), resume=resume, progress=False)

    monkeypatch.setattr(run_opnas, "make_executor", lambda settings, evaluator, scratch, *args: ReversedExecutor(settings, scratch))
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "stopped", stop_after=9)  # generation 0 (6 children) and 3 of generation 1, its last three
    state = load_state(tmp_path / "stopped")
    assert len(state.history) == 6 and sorted(state.arrived) == [9, 10, 11]
    assert sorted(path.name for path in (tmp_path / "stopped").glob("writeback-*")) == [
        "writeback-000009.safetensors", "writeback-000010.safetensors", "writeback-000011.safetensors"
    ]
    search(tmp_path / "stopped", resume=True)
    evaluated = [entry["index"] for entry in evaluations(tmp_path)]
    assert sorted(evaluated) == list(range(14))  # each child once, those that had arrived never again
    assert not list((tmp_path / "stopped").glob("writeback-*"))  # committed write-backs are folded into the state

    monkeypatch.undo()
    config = synthetic_config(tmp_path / "straight", **settings)
    run_search(config, evaluator=SharedScoresEvaluator(config.space, seed=3), progress=False)
    assert comparable(tmp_path / "stopped") == comparable(tmp_path / "straight")


def test_a_truncated_write_back_stops_the_search_naming_it_and_deletes_nothing(tmp_path, monkeypatch):
    from search.supernet import SupernetFileError

    monkeypatch.setattr(run_opnas, "make_executor", lambda settings, evaluator, scratch, *args: ReversedExecutor(settings, scratch))
    monkeypatch.setattr(ReversedExecutor, "stop_after", 1)
    config = smoke_config(tmp_path, max_evaluations=2, **{"export.top_k": 0})
    with pytest.raises(KeyboardInterrupt):
        run_search(config, progress=False)  # candidate 1 arrives first and waits for candidate 0, its write-back on disk
    write_back = tmp_path / load_state(tmp_path).arrived[1].write_back
    write_back.write_bytes(write_back.read_bytes()[:-64])
    monkeypatch.setattr(ReversedExecutor, "stop_after", None)
    with pytest.raises(SupernetFileError, match=rf"^{write_back}: not a complete safetensors file"):
        run_search(config, resume=True, progress=False)
    assert write_back.exists() and 1 in load_state(tmp_path).arrived


RAY_SEARCH_SCRIPT = """
import os, sys
import ray
from search.config import load_config
from search.run_opnas import run_search
from toy_evaluators import SharedScoresEvaluator

config = load_config(sys.argv[1], {"output_dir": sys.argv[2]})
# a job's workers get its runtime environment: here, the path of toy_evaluators
ray.init(address=config.executor.ray_address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
run_search(config, evaluator=SharedScoresEvaluator(config.space, seed=3, delay_seconds=0.03), progress=False)
"""


def test_a_ray_search_whose_driver_is_killed_at_a_random_point_resumes_to_the_same_state(ray_cluster, tmp_path):
    """SIGKILL the driver of a Ray search (a subprocess; 2 workers of the session's cluster, children finishing
    out of order) once a random number of outcomes has been persisted; the search resumed (from this process)
    equals one never interrupted."""
    address = ray_cluster.get_runtime_context().gcs_address
    settings = synthetic_settings(tmp_path / "unused", max_evaluations=24, **{"search.population_size": 8, "executor.name": "ray",
                                  "executor.workers": 2, "executor.ray_address": address})
    config_path, script = tmp_path / "search.yaml", tmp_path / "ray_search.py"
    config_path.write_text(yaml.safe_dump(settings))
    script.write_text(RAY_SEARCH_SCRIPT)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(script), str(config_path), str(killed)], env=environment, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after = random.Random(99).randint(3, 18)  # outcomes committed or waiting
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            state = json.loads((killed / "search_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and len(state["history"]) + len(state["arrived"]) >= kill_after:
            break
        time.sleep(0.01)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = load_state(killed)
    assert len(interrupted.history) < 24

    resumed = load_config(config_path, {"output_dir": str(killed)})  # on the same cluster, from this process
    run_search(resumed, evaluator=SharedScoresEvaluator(resumed.space, seed=3), resume=True, progress=False)
    straight = load_config(config_path, {"output_dir": str(tmp_path / "straight"), "executor": {}})
    run_search(straight, evaluator=SharedScoresEvaluator(straight.space, seed=3), progress=False)
    assert comparable(killed) == comparable(tmp_path / "straight")


def test_ray_settings_that_cannot_run_stop_at_the_start(ray_cluster, tmp_path):
    config = synthetic_config(tmp_path, **{"executor.name": "ray", "executor.gpus_per_candidate": 0.25})
    with pytest.raises(RuntimeError, match=r"0 GPUs; a candidate asks for 1 CPUs .* and 0.25 GPUs"):
        run_search(config, progress=False)
    with pytest.raises(RuntimeError, match="runs from one driver process, not 2"):
        make_executor(ExecutorSettings(name="ray"), None, tmp_path, num_processes=2, is_main_process=True)
    assert ray_cluster.is_initialized()  # a cluster the search did not start is left running
