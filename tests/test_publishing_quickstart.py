"""The README's first command in its `--smoke` mode: every stage runs on the bundled demo data alone, writes
what it says it writes, and the published card reports the numbers the stages wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from publishing.hub import HIDE_INSTALLED_PACKAGE, missing_repo_files


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
    assert record["cwd"] == str(REPOSITORY.resolve()) and record["demo_data"] is True  # the real working directory
    assert record["timestamp"] and record["versions"]["torch"] == torch.__version__ and record["versions"]["accelerate"]
    assert record["machine"]["accelerator"] in ("cpu", "cuda", "mps") and record["machine"]["cpu_count"] >= 1
    assert record["git"] is None or len(record["git"]["commit"]) == 40
    for stage in record["stages"][1:]:  # every script's arguments are on disk, as the script reads them
        arguments_file = REPOSITORY / stage["arguments_file"]  # relative to the repository, or absolute
        assert yaml.safe_load(arguments_file.read_text()) == stage["arguments"]
    search = record["stages"][1]["arguments"]
    tiny = yaml.safe_load((REPOSITORY / "search" / "configs" / "tiny.yaml").read_text())
    assert search["evaluator"]["biws"]["tokenizer"] == tiny["evaluator"]["biws"]["tokenizer"]  # the bundled data only
    assert search["evaluator"]["biws"]["proxy"] == tiny["evaluator"]["biws"]["proxy"] and search["model"] == tiny["model"]
    pretraining_arguments = record["stages"][2]["arguments"]  # the winner at the budget's width, BERT's vocabulary
    assert pretraining_arguments["tokenizer"] == "demo_data/vocab.txt" and "hidden_size=32" in pretraining_arguments["config_overrides"]

    history = [json.loads(line) for line in (output_dir / "search" / "history.jsonl").read_text().splitlines()]
    assert len(history) == search["max_evaluations"] and any(entry["status"] == "ok" for entry in history)
    (folder,) = (output_dir / "hub").iterdir()
    assert missing_repo_files(folder) == []
    assert (folder / "search_best_so_far.png").is_file()

    card = (folder / "README.md").read_text()
    glue = json.loads((output_dir / "glue" / "glue_results.json").read_text())
    accuracy = glue["best"]["sst2"]["metrics"]["accuracy"]
    assert f"| SST-2 | accuracy | {100 * accuracy:.2f} |" in card  # on the card's one scale, 0-100
    assert f"value: {round(100 * accuracy, 2)}" in card  # the model-index holds the measured value
    assert "split: validation[:32]" in card and "bundled demo subset: the first 32 of 872 dev examples" in card
    assert (output_dir / "glue" / "sst2" / glue["best"]["sst2"]["run"] / "model.safetensors").is_file()  # best model kept
    pretraining = json.loads((output_dir / "pretrain" / "pretraining_results.json").read_text())
    assert f"| train_loss | {pretraining['train_loss']:.4f} |" in card
    assert "python scripts/pretrain.py" in card and "a demo-size run" in card and "- demo" in card
    assert f"run from `{REPOSITORY.resolve()}`" in card and "torch " in card

    # the README's code after the quickstart loads the folder it names, in a process that cannot import this package
    readme = (REPOSITORY / "README.md").read_text()
    code = readme.split("## The quickstart")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "user" / "outputs").mkdir(parents=True)
    (tmp_path / "user" / "outputs" / "quickstart").symlink_to(output_dir, target_is_directory=True)
    completed = subprocess.run(
        [sys.executable, "-c", HIDE_INSTALLED_PACKAGE + code + "\nprint(type(model).__module__)"],
        capture_output=True, text=True, env={**environment, "PYTHONPATH": ""}, cwd=tmp_path / "user", timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().startswith("transformers_modules.")
