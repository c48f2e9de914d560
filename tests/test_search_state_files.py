"""State safety: one search per output folder, a stale lock taken over, --resume before the first write,
unreadable state files stopping with errors that name the file and the field (nothing deleted), launches
whose processes are not what was asked for, and the global batch on one and two ranks."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from search.config import ConfigError, split_global_batch
from search.distributed import LaunchError, check_launch
from search.lock import LOCK_FILE, SearchLockedError
from search.run_opnas import run_search
from search.state import StateFileError, load_state
from test_search_biws import SMOKE, smoke_config
from test_search_loop import synthetic_config, synthetic_settings


REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def folder_contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def test_a_second_search_on_the_same_folder_is_refused_and_a_crashed_ones_lock_is_taken_over(tmp_path, caplog):
    slow = {"evaluator.synthetic.delay_seconds": 0.05}
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(synthetic_settings(tmp_path / "search", max_evaluations=400, **slow)))
    first = subprocess.Popen([sys.executable, str(REPO / "search" / "run_opnas.py"), "--config", str(config_path), "--no_progress"],
                             env=ENVIRONMENT, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = tmp_path / "search" / "search_state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and not state_file.exists():
        time.sleep(0.02)
    assert first.poll() is None, first.stderr.read().decode()[-2000:]
    holder = rf"process {first.pid} on host {socket.gethostname()}, started 20\d\d-"
    for resume in (True, False):  # with or without --resume, it never reads or writes the folder
        with pytest.raises(SearchLockedError, match=rf"search is in use by another search \({holder}"):
            run_search(synthetic_config(tmp_path / "search", max_evaluations=400, **slow), resume=resume, progress=False)

    first.send_signal(signal.SIGKILL)  # a crash: the lock file still names it, the operating system's lock is gone
    first.wait()
    done = len(load_state(tmp_path / "search").history)
    with caplog.at_level(logging.WARNING, logger="search.lock"):
        state = run_search(synthetic_config(tmp_path / "search", max_evaluations=done + 2, **slow), resume=True, progress=False)
    assert len(state.history) == done + 2
    assert f"(process {first.pid} on host {socket.gethostname()}, started" in caplog.text and "ended without releasing it" in caplog.text
    assert (tmp_path / "search" / LOCK_FILE).read_text() == ""  # released by a clean exit


def test_resume_before_the_first_state_write_starts_a_new_search_and_says_so(tmp_path, caplog):
    (tmp_path / "early").mkdir()  # killed after creating its folder, before writing a state
    with caplog.at_level(logging.WARNING, logger="search.run_opnas"):
        resumed = run_search(synthetic_config(tmp_path / "early", max_evaluations=10), resume=True, progress=False)
    assert "holds no search state yet" in caplog.text and "starting a new search" in caplog.text
    straight = run_search(synthetic_config(tmp_path / "straight", max_evaluations=10), progress=False)
    assert [(r.key, r.score) for r in resumed.history] == [(r.key, r.score) for r in straight.history]


def _corrupt(field_path: str, value):
    def corrupt(state: dict) -> dict:
        *parents, leaf = field_path.split(".")
        node = state
        for parent in parents:
            node = node[int(parent)] if isinstance(node, list) else node[parent]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
        return state

    return corrupt


BYTE_CORRUPTIONS = {  # the file's bytes damaged: (damage, what the error must say)
    **{  # cut anywhere: inside a string, a number, a key, between tokens
        f"truncated at {share:.0%}": (lambda data, share=share: data[: int(len(data) * share)], r"not valid JSON, it ends early \(truncated\?\)")
        for share in (0.13, 0.31, 0.5, 0.77, 0.97)
    },
    "garbled bytes": (lambda data: data[:40] + b"\xff\xfe\x00" + data[43:], r"not UTF-8 text \(byte 40 of"),
    "not an object": (lambda data: b"[1, 2]", r"the document: expected an object, got list"),
}
JSON_CORRUPTIONS = {  # the document damaged
    "a score of the wrong type": (_corrupt("history.3.score", "high"), r"history\[3\]\.score: expected float or null, got 'high'"),
    "a missing field": (_corrupt("strategy_state", KeyError), r"the document: expected the keys .* missing \['strategy_state'\]"),
    "another format version": (_corrupt("format_version", 99), r"format_version 99 is not 3"),
    "format version 2": (_corrupt("format_version", 2), r"format_version 2 was written by an earlier version"),
    "a foreign strategy state": (_corrupt("strategy_state", {"priority": [1, 2]}), r"strategy_state is not a state of the opnas strategy"),
    "observations of the wrong type": (_corrupt("strategy_state.observations", 7), r"strategy_state is not a state of the opnas strategy"),
    "a file outside the folder": (
        _corrupt("evaluator_files", {"supernet": "../elsewhere.safetensors"}), r"evaluator_files\.supernet: expected a file name inside"
    ),
    "records out of order": (_corrupt("history.2.index", 5), r"history\[2\]\.index: expected 2"),
    "an arrived result of no pending candidate": (
        _corrupt("arrived", {"3": {"result": None, "error": "x", "write_back": None}}), r"arrived\.3: expected the index of a pending candidate"
    ),
    "a garbled generator state": (_corrupt("controller_rng", [3, [1, 2], None]), r"controller_rng: not the state of a random\.Random"),
    "a missing file": (_corrupt("evaluator_files", {"shared": "shared-000009.json"}), r"names shared-000009\.json, but .* does not exist"),
}


@pytest.mark.parametrize("corruption", [*BYTE_CORRUPTIONS, *JSON_CORRUPTIONS])
def test_an_unreadable_state_stops_the_resume_naming_the_file_and_field_and_deletes_nothing(tmp_path, corruption):
    run_search(synthetic_config(tmp_path, max_evaluations=10), progress=False)
    path = tmp_path / "search_state.json"
    if corruption in BYTE_CORRUPTIONS:
        damage, message = BYTE_CORRUPTIONS[corruption]
        path.write_bytes(damage(path.read_bytes()))
    else:
        damage, message = JSON_CORRUPTIONS[corruption]
        path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    before = folder_contents(tmp_path)
    with pytest.raises(StateFileError, match=rf"^{path}: (.* )?{message}"):
        run_search(synthetic_config(tmp_path, max_evaluations=12), resume=True, progress=False)
    assert folder_contents(tmp_path) == before


def test_a_truncated_super_net_stops_the_resume_naming_it_and_deletes_nothing(tmp_path):
    from search.supernet import SupernetFileError

    run_search(smoke_config(tmp_path, max_evaluations=2, **{"export.top_k": 0}), progress=False)
    supernet = tmp_path / load_state(tmp_path).evaluator_files["supernet"]
    supernet.write_bytes(supernet.read_bytes()[:-100])
    before = folder_contents(tmp_path)
    with pytest.raises(SupernetFileError, match=rf"^{supernet}: not a complete safetensors file"):
        run_search(smoke_config(tmp_path, **{"export.top_k": 0}), resume=True, progress=False)
    assert folder_contents(tmp_path) == before


def test_the_global_batch_is_split_over_processes_and_accumulation_steps():
    assert split_global_batch(128, 64, None, "stage") == (2, 1)  # paper.yaml on 64 GPUs: the paper's batch, not 64 × 128
    assert split_global_batch(128, 1, 32, "stage") == (32, 4)
    assert split_global_batch(12, 1, 5, "stage") == (4, 3)  # as few accumulation steps as fit, the batch kept exact
    with pytest.raises(ConfigError, match=r"stage\.batch_size=160 is the global batch .* multiple of the 64 processes"):
        split_global_batch(160, 64, None, "stage")


def test_a_launch_that_does_not_run_the_processes_asked_for_is_stopped():
    check_launch(1, {})  # python search/run_opnas.py
    check_launch(2, {"WORLD_SIZE": "2", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no"})  # accelerate --multi_gpu
    # accelerate launch --cpu --num_processes 2: what it exports here, for the one process it starts
    simple_launcher = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no"}
    with pytest.raises(LaunchError, match=r"accelerate launch was asked for more than one process .*`ACCELERATE_USE_CPU=1 torchrun"):
        check_launch(1, simple_launcher)
    with pytest.raises(LaunchError, match=r"WORLD_SIZE=2 processes, but this one sees a process group of 1: .* ACCELERATE_USE_CPU=1"):
        check_launch(1, {"WORLD_SIZE": "2"})  # torchrun on CPUs without ACCELERATE_USE_CPU: two lone searches


def test_accelerate_launch_with_two_cpu_processes_is_caught_not_run_single(tmp_path):
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(synthetic_settings(tmp_path / "out", max_evaluations=4)))
    accelerate = Path(sys.executable).parent / "accelerate"
    launched = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                               "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "search" / "run_opnas.py"),
                               "--config", str(config_path), "--no_progress"],
                              env=ENVIRONMENT, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert launched.returncode != 0 and "accelerate launch was asked for more than one process" in launched.stderr
    assert not (tmp_path / "out" / "search_state.json").exists()


def test_the_global_batch_is_the_same_on_one_and_two_ranks(tmp_path, monkeypatch):
    """A BIWS candidate under ``torchrun`` with 2 CPU ranks trains with the configured global batch (2 per rank),
    as on one process; a batch that two ranks cannot share stops the search before any candidate."""
    overrides = {**SMOKE, "max_evaluations": 1, "export.top_k": 0, "evaluator.biws.pretraining.batch_size": 4}
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(json.loads(json.dumps(smoke_config(tmp_path / "unused", **overrides).to_json()))))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(REPO / "search" / "run_opnas.py"), "--config", str(config_path), "--no_progress", "--output_dir", str(tmp_path / "two")],
        env={**ENVIRONMENT, "ACCELERATE_USE_CPU": "1"}, cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "world size 2" in two.stderr
    one = run_search(smoke_config(tmp_path / "one", **overrides), progress=False)
    (record,) = load_state(tmp_path / "two").history
    assert record.status == "ok", record.error
    assert record.cost["pretraining_global_batch"] == one.history[0].cost["pretraining_global_batch"] == 4

    from search import biws_evaluator

    monkeypatch.setattr(biws_evaluator, "distributed_state", lambda: types.SimpleNamespace(num_processes=2))
    with pytest.raises(ConfigError, match=r"evaluator\.biws\.pretraining\.batch_size=3 is the global batch .* multiple of the 2 processes"):
        biws_evaluator.BiwsEvaluator.from_config(smoke_config(tmp_path / "odd", **{**overrides, "evaluator.biws.pretraining.batch_size": 3}))
