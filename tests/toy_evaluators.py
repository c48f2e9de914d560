"""Evaluators for the executor tests, importable by Ray workers (the tests put this folder on their PYTHONPATH)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from search.evaluator import EvaluationResult, Evaluator, SyntheticEvaluator
from search.state import atomic_write_json


class SharedScoresEvaluator(Evaluator):
    """Weight sharing in miniature, instant: the shared state is one number per (layer position, layer type).
    A child's score reads its positions' numbers from the snapshot it is given, and its write-back sets them to
    values computed from its own score. So the final state depends on which snapshot each child started from
    and on the order the write-backs were applied, as the BIWS super-net does, without any training.

    ``delay_seconds``: each child sleeps between 1 and 5 times this (by its index), so that children finish
    out of proposal order on concurrent workers. ``log_dir``: each evaluation appends its index and process id
    to ``log_dir/evaluations.jsonl``.
    """

    def __init__(self, space, seed: int = 0, delay_seconds: float = 0.0, log_dir: str | None = None):
        self.synthetic = SyntheticEvaluator(space, seed)
        self.delay_seconds = delay_seconds
        self.log_dir = log_dir
        self.shared: dict[str, float] = {}

    @staticmethod
    def positions(architecture: list[dict[str, Any]]) -> list[str]:
        return [f"{index}:{layer['type']}" for index, layer in enumerate(architecture)]

    def snapshot(self) -> bytes:
        return json.dumps(self.shared, sort_keys=True).encode()

    def evaluate_from(self, snapshot, architecture, context):
        if self.log_dir is not None:
            with open(Path(self.log_dir) / "evaluations.jsonl", "a") as log:
                log.write(json.dumps({"index": context.index, "pid": os.getpid()}) + "\n")
        if self.delay_seconds:
            time.sleep(self.delay_seconds * (1 + (context.index * 7919) % 5))
        shared = json.loads(snapshot)
        inherited = sum(shared.get(position, 0.0) for position in self.positions(architecture))
        score = self.synthetic.score(architecture) + 0.1 * inherited
        write_back = {position: 0.5 * shared.get(position, 0.0) + score for position in self.positions(architecture)}
        return EvaluationResult(score=score, metrics={"inherited": inherited}), json.dumps(write_back, sort_keys=True).encode()

    def evaluate(self, architecture, context):
        result, write_back = self.evaluate_from(self.snapshot(), architecture, context)
        self.apply(write_back, f"candidate {context.index}")
        return result

    def apply(self, write_back: bytes, source: str) -> None:
        try:
            values = json.loads(write_back)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{source}: not a write-back of shared scores ({error})") from None
        self.shared.update(values)

    def save(self, directory, tag):
        name = f"shared-{tag}.json"
        atomic_write_json(Path(directory) / name, self.shared)
        return {"shared": name}

    def load(self, directory, files):
        if "shared" in files:
            self.shared = json.loads((Path(directory) / files["shared"]).read_text())


class KillsItsWorkerOnce(Evaluator):
    """The synthetic evaluator, except that the first evaluation of candidate ``victim`` kills the process it
    runs in (SIGKILL, as a lost node or the out-of-memory killer would), once per ``marker`` file, which names
    the killed process."""

    def __init__(self, space, seed: int, victim: int, marker: str):
        self.synthetic = SyntheticEvaluator(space, seed)
        self.victim, self.marker = victim, marker

    def evaluate(self, architecture, context):
        if context.index == self.victim and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(0.2)  # mid-candidate
            os.kill(os.getpid(), signal.SIGKILL)
        return self.synthetic.evaluate(architecture, context)
