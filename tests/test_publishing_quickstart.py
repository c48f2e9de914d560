"""The README's first command in its `--smoke` mode: every stage runs on the bundled demo data alone, writes
what it says it writes, and the published card reports the numbers the stages wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from publishing.hub import missing_repo_files


REPOSITORY = Path(__file__).resolve().parents[1]


def test_quickstart_smoke_runs_every_stage_on_the_demo_data(tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    environment.update(
        HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPOSITORY),
    )
    output_dir = tmp_path / "quickstart"
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "scripts" / "quickstart.py"), "--smoke", "--output_dir", str(output_dir)],
        capture_output=True, text=True, env=environment, cwd=REPOSITORY, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Where everything went:" in result.stdout and "reloaded in a fresh process" in result.stdout

    record = json.loads((output_dir / "run_record.json").read_text())
    names = ["held-out text", "OP-NAS search", "pretraining", "GLUE finetuning", "publishing"]
    assert [stage["name"] for stage in record["stages"]] == names
    assert record["cwd"] == "the repository root" and record["demo_data"] is True
    for stage in record["stages"][1:]:  # every script's arguments are on disk, as the script reads them
        arguments_file = REPOSITORY / stage["arguments_file"]  # relative to the repository, or absolute
        assert yaml.safe_load(arguments_file.read_text()) == stage["arguments"]
    search = record["stages"][1]["arguments"]
    assert search["evaluator"]["biws"]["tokenizer"] == "demo_data/vocab.txt"  # the bundled data only

    history = [json.loads(line) for line in (output_dir / "search" / "history.jsonl").read_text().splitlines()]
    assert len(history) == search["max_evaluations"] and any(entry["status"] == "ok" for entry in history)
    (folder,) = (output_dir / "hub").iterdir()
    assert missing_repo_files(folder) == []
    assert (folder / "search_best_so_far.png").is_file()

    card = (folder / "README.md").read_text()
    glue = json.loads((output_dir / "glue" / "glue_results.json").read_text())
    accuracy = glue["best"]["sst2"]["metrics"]["accuracy"]
    assert f"| SST-2 | accuracy | {accuracy:.4f} |" in card
    assert f"value: {accuracy}" in card  # the model-index holds the measured value
    pretraining = json.loads((output_dir / "pretrain" / "pretraining_results.json").read_text())
    assert f"| train_loss | {pretraining['train_loss']:.4f} |" in card
    assert "python scripts/pretrain.py" in card and "bundled demo subset" in card
