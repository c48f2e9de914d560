"""The search loop with the instant synthetic evaluator: strategies, failures, budgets, config errors, resume."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modeling_autobert_zero import parse_program
from modeling_autobert_zero.architecture import ModelDimensions, architecture_key, count_backbone_parameters
from search.config import ConfigError, SearchConfig, dataclass_from_mapping, load_config
from search.evaluator import EvaluationResult, FunctionEvaluator, SyntheticEvaluator
from search.objective import Objective, ScoredCandidate, rank_candidates
from search.run_opnas import run_search
from search.state import STATE_FILE, load_state


REPO = Path(__file__).resolve().parents[1]
TIMING_COSTS = ("wall_seconds", "controller_seconds", "checkpoint_seconds")


def synthetic_settings(output_dir: Path, **overrides) -> dict:
    settings = {
        "output_dir": str(output_dir),
        "seed": 7,
        "strategy": "opnas",
        "max_evaluations": 30,
        "search": {"population_size": 8, "num_parents": 2, "children_per_parent": 3},
        "space": {"num_layers": 3, "max_program_length": 10},
        "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
        "evaluator": {"name": "synthetic"},
        "export": {"top_k": 0},
        "tensorboard": False,
    }
    for key, value in overrides.items():
        node = settings
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return settings


def synthetic_config(output_dir: Path, **overrides) -> SearchConfig:
    return dataclass_from_mapping(SearchConfig, synthetic_settings(output_dir, **overrides))


def comparable(state_json: dict) -> dict:
    """A state without the timings, which differ between runs of the same search."""
    state = json.loads(json.dumps(state_json))
    for record in state["history"]:
        for name in TIMING_COSTS:
            record["cost"].pop(name, None)
    return state


def completed_generation(state, record) -> bool:
    """Whether every proposal of the record's generation was recorded (its results then reached the strategy)."""
    return record.generation < state.generation or not state.pending


@pytest.mark.parametrize("strategy", ["opnas", "ea", "random"])
def test_each_strategy_evaluates_new_architectures_up_to_the_budget(tmp_path, strategy):
    state = run_search(synthetic_config(tmp_path, strategy=strategy), progress=False)
    keys = [record.key for record in state.history]
    assert len(keys) == 30 and len(set(keys)) == 30
    assert all(record.status == "ok" for record in state.history)
    assert [record.generation for record in state.history[:8]] == [0] * 8  # the initial population
    children = [record for record in state.history[8:] if record.parent is not None]
    if strategy == "random":
        assert not children
    else:
        assert len(children) >= 20
        for child in children:  # parents are among the best evaluated before the child's generation
            earlier = [r for r in state.history if r.generation < child.generation and r.status == "ok"]
            best = sorted(earlier, key=lambda r: (-r.score, r.index))[:2]
            assert child.parent in {r.index for r in best}
    observed = state.strategy_state.get("observations", [])
    completed = [record for record in state.history if record.status == "ok" and completed_generation(state, record)]
    if strategy == "opnas":  # the strategy observed every successful candidate of every completed generation
        assert [observation[0] for observation in observed] == [record.score for record in completed]
    else:
        assert state.strategy_state == {}
    summaries = state.generations
    assert [g["generation"] for g in summaries] == list(range(len(summaries)))
    assert [g["first_candidate"] for g in summaries] == [min(r.index for r in state.history if r.generation == g["generation"]) for g in summaries]
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(30))


def test_the_same_seed_gives_the_same_search(tmp_path):
    first = run_search(synthetic_config(tmp_path / "a"), progress=False)
    second = run_search(synthetic_config(tmp_path / "b"), progress=False)
    assert [(r.key, r.score) for r in first.history] == [(r.key, r.score) for r in second.history]
    other = run_search(synthetic_config(tmp_path / "c", seed=8), progress=False)
    assert [r.key for r in other.history] != [r.key for r in first.history]


def test_a_nan_or_failing_candidate_is_recorded_and_skipped(tmp_path):
    config = synthetic_config(tmp_path, max_evaluations=20)
    synthetic = SyntheticEvaluator(config.space, seed=0)

    def evaluate(architecture, context):
        if context.index == 1:
            return {"score": math.nan, "metrics": {"loss": math.inf}}
        if context.index == 2:
            raise RuntimeError("loss became nan at step 3")
        return EvaluationResult(score=synthetic.score(architecture))

    state = run_search(config, evaluator=FunctionEvaluator(evaluate), progress=False)
    nan_record, raising_record = state.history[1], state.history[2]
    assert nan_record.status == raising_record.status == "failed"
    assert nan_record.score is None and "non-finite score" in nan_record.error and nan_record.metrics == {"loss": None}
    assert raising_record.error == "RuntimeError: loss became nan at step 3"
    assert len(state.history) == 20
    assert all(record.parent not in (1, 2) for record in state.history)
    assert sum(record.status == "ok" for record in state.history) == 18
    observed_scores = [observation[0] for observation in state.strategy_state["observations"]]
    assert len(observed_scores) == sum(r.status == "ok" and completed_generation(state, r) for r in state.history)
    assert all(math.isfinite(score) for score in observed_scores)  # failures never reach the statistics
    json.loads((tmp_path / "search_state.json").read_text())  # strict JSON: no NaN written


def test_a_parameter_budget_is_never_exceeded(tmp_path):
    dims = ModelDimensions(hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=30522)
    all_attention = [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}] * 3
    budget = count_backbone_parameters(all_attention, dims)
    state = run_search(synthetic_config(tmp_path, **{"objective.max_parameters": budget}), progress=False)
    assert all(record.cost["parameters"] <= budget for record in state.history)


def test_a_tiny_space_is_exhausted_without_ever_repeating_an_architecture(tmp_path):
    config = synthetic_config(tmp_path, **{"space.num_layers": 1, "space.layer_types": ["conv"], "space.kernel_sizes": [3, 5, 7]})
    state = run_search(config, progress=False)
    assert sorted(record.key for record in state.history) == ["conv3", "conv5", "conv7"]
    assert state.finished and "no new feasible architecture" in state.finish_reason


def test_a_pareto_search_selects_parents_from_the_front(tmp_path):
    state = run_search(synthetic_config(tmp_path, **{"objective.pareto": "parameters"}), progress=False)
    assert len(state.history) == 30
    first_generation = [r for r in state.history if r.generation == 0]
    front = rank_candidates(
        [ScoredCandidate(r.index, r.architecture, r.score, r.cost) for r in first_generation], Objective(pareto="parameters")
    )[:2]
    assert {r.parent for r in state.history if r.generation == 1} <= {c.index for c in front}


def test_pareto_ranking_puts_the_front_first():
    def candidate(index, score, parameters):
        return ScoredCandidate(index, [], score, {"parameters": parameters})

    candidates = [candidate(0, 0.9, 100), candidate(1, 0.8, 50), candidate(2, 0.85, 120), candidate(3, 0.7, 40), candidate(4, 0.8, 60)]
    by_score = [c.index for c in rank_candidates(candidates, Objective())]
    assert by_score == [0, 2, 1, 4, 3]
    pareto = [c.index for c in rank_candidates(candidates, Objective(pareto="parameters"))]
    assert pareto[:3] == [0, 1, 3]  # the front: nothing both scores higher and is smaller
    assert set(pareto[3:]) == {2, 4}


def test_a_larger_budget_continues_a_finished_search(tmp_path):
    run_search(synthetic_config(tmp_path, max_evaluations=12), progress=False)
    continued = run_search(synthetic_config(tmp_path, max_evaluations=20), resume=True, progress=False)
    straight = run_search(synthetic_config(tmp_path / "straight", max_evaluations=20), progress=False)
    assert [(r.key, r.score) for r in continued.history] == [(r.key, r.score) for r in straight.history]


def test_a_state_with_keys_spelled_the_old_way_resumes_as_if_written_now(tmp_path):
    """Keys used to be canonical expressions (exponential in shared values); a state written then resumes with
    keys recomputed from its architectures, so nothing it recorded is proposed again."""
    run_search(synthetic_config(tmp_path, max_evaluations=12), progress=False)
    data = json.loads((tmp_path / STATE_FILE).read_text())
    for record in data["history"]:
        record["key"] = " | ".join(
            f"conv{layer['kernel_size']}" if layer["type"] == "conv" else f"attention:{parse_program(layer['program']).to_expression()}"
            for layer in record["architecture"]
        )
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    continued = run_search(synthetic_config(tmp_path, max_evaluations=20), resume=True, progress=False)
    straight = run_search(synthetic_config(tmp_path / "straight", max_evaluations=20), progress=False)
    assert [(r.key, r.score) for r in continued.history] == [(r.key, r.score) for r in straight.history]
    assert all(record.key == architecture_key(record.architecture) for record in load_state(tmp_path).history)


def test_resume_refuses_a_different_search_and_a_fresh_start_refuses_an_existing_one(tmp_path):
    run_search(synthetic_config(tmp_path, max_evaluations=5), progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        run_search(synthetic_config(tmp_path, max_evaluations=5), progress=False)
    with pytest.raises(ConfigError, match="different settings"):
        run_search(synthetic_config(tmp_path, max_evaluations=9, seed=1), resume=True, progress=False)


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, **{"search.children_per_parnet": 3})))
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key search.children_per_parnet; expected one of: .*children_per_parent"):
        load_config(path)
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, **{"space.num_layers": "three"})))
    with pytest.raises(ConfigError, match=r"space.num_layers: expected int, got 'three'"):
        load_config(path)
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, strategy="bayes")))
    with pytest.raises(ConfigError, match=r"strategy: expected one of \['ea', 'opnas', 'random'\]"):
        load_config(path)
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, **{"search.num_parents": 0})))
    with pytest.raises(ConfigError, match=r"search.num_parents: expected a positive integer"):
        load_config(path)
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, **{"evaluator.synthetic.landscape": "smooth"})))
    with pytest.raises(ConfigError, match=r"evaluator.synthetic.landscape: expected one of \['positional', 'op_blind'\]"):
        load_config(path)
    path.write_text(yaml.safe_dump(synthetic_settings(tmp_path, **{"search.inter_layer_probability": 0.5})))
    with pytest.raises(ConfigError, match=r"unknown key search.inter_layer_probability"):  # every child is inter- then intra-layer now
        load_config(path)


def test_shipped_configs_load():
    tiny = load_config(REPO / "search" / "configs" / "tiny.yaml")
    paper = load_config(REPO / "search" / "configs" / "paper.yaml")
    assert (paper.search.population_size, paper.search.num_parents, paper.search.children_per_parent) == (100, 5, 5)
    # the paper's α = 0.01 and T = 1 on GLUE points, in units of the population's spread (search/ucb.py)
    assert (paper.search.ucb_alpha, paper.search.ucb_temperature) == (0.0025, 0.25)
    assert paper.evaluator.biws.pretraining.max_steps == 40000
    assert tiny.evaluator.name == "biws" and tiny.model.hidden_size <= 64


def test_a_search_killed_at_a_random_point_resumes_to_the_same_state(tmp_path):
    """SIGKILL a running search (subprocess) after a random number of candidates, resume it (in this process),
    and compare with a search that was never interrupted: same history, statistics, queue and generator state."""
    config_path = tmp_path / "search.yaml"
    settings = synthetic_settings(tmp_path / "unused", max_evaluations=40, **{"evaluator.synthetic.delay_seconds": 0.04})
    config_path.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}

    def command(output_dir, *extra):
        return [sys.executable, str(REPO / "search" / "run_opnas.py"), "--config", str(config_path),
                "--output_dir", str(output_dir), "--no_progress", *extra]

    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    rng = random.Random(1234)
    kill_after, extra_delay = rng.randint(2, 30), rng.uniform(0.0, 0.04)
    process = subprocess.Popen(command(killed_dir), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = killed_dir / "search_state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists():
            try:
                if len(json.loads(state_file.read_text())["history"]) >= kill_after:
                    break
            except json.JSONDecodeError:  # never expected: writes are atomic
                raise AssertionError("a reader saw a partly written state file")
        time.sleep(0.005)
    time.sleep(extra_delay)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted_at = len(load_state(killed_dir).history)
    assert interrupted_at < 40

    run_search(load_config(config_path, {"output_dir": str(killed_dir)}), resume=True, progress=False)  # here: faster
    run_search(load_config(config_path, {"output_dir": str(straight_dir)}), progress=False)
    resumed = json.loads(state_file.read_text())
    straight = json.loads((straight_dir / "search_state.json").read_text())
    assert len(resumed["history"]) == 40
    assert comparable(resumed) == comparable(straight)
    logged = [json.loads(line) for line in (killed_dir / "history.jsonl").read_text().splitlines()]
    assert [record["index"] for record in logged] == list(range(40))


DISTRIBUTED_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from search.config import load_config
from search.distributed import close_process_group, distributed_state
from search.evaluator import FunctionEvaluator, SyntheticEvaluator
from search.run_opnas import run_search
from modeling_autobert_zero.architecture import architecture_key

config = load_config(sys.argv[1], {{"output_dir": sys.argv[2]}})
synthetic = SyntheticEvaluator(config.space, seed=config.seed)  # what the config's evaluator would be
rank = distributed_state().process_index
seen = []

def evaluate(architecture, context):
    seen.append([context.index, context.seed, architecture_key(architecture)])
    return {{"score": synthetic.score(architecture) + 0.5 * rank}}  # other ranks disagree: only rank 0 may count

run_search(config, evaluator=FunctionEvaluator(evaluate), progress=False)
Path(sys.argv[2], f"rank{{rank}}.json").write_text(json.dumps(seen))
close_process_group()
"""


def test_every_process_of_a_distributed_search_evaluates_what_rank_0_decided(tmp_path):
    """Two CPU processes (``torchrun`` with gloo): both see the same candidates in the same order, and the
    search (rank 0's scores) is the one a single process runs."""
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump(synthetic_settings(tmp_path / "unused", max_evaluations=16)))
    script = tmp_path / "distributed_search.py"
    script.write_text(DISTRIBUTED_SCRIPT.format(repo=str(REPO)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "1"}
    with socket.socket() as probe:  # a free port for the process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    completed = subprocess.run([*launch, str(script), str(config_path), str(tmp_path / "two")], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = json.loads((tmp_path / "two" / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "two" / "rank1.json").read_text())
    assert len(rank0) == 16 and rank0 == rank1
    single = run_search(synthetic_config(tmp_path / "one", max_evaluations=16), progress=False)
    distributed = load_state(tmp_path / "two")
    assert [(r.key, r.score) for r in distributed.history] == [(r.key, r.score) for r in single.history]
