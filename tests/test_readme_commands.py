"""Every command in the README's ```bash blocks runs, in order, on the bundled `demo_data/` alone, as a user
on a fresh clone would type it, with only smoke-size settings appended (steps, batch sizes, model sizes).

The commands are read from README.md, so a command added there that does not work fails this test; one whose
script this test does not know fails it too, until a smoke size is added to `SMOKE` below. They run in a
scratch folder that holds `demo_data/`, `configs/`, `scripts/` and `search/` (links to the repository) and
nothing else, as in a clone without `../shared`. Each runs in this process, as its script's ``__main__``
(``accelerate launch X`` and ``torchrun X`` are ``python X``: one process), so the whole README costs seconds
per command rather than an interpreter start each; ``--executor ray`` runs on the session's Ray instance.
"""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
import sys
import time
from pathlib import Path

import datasets
import pytest
import transformers
import yaml

from search.config import load_config
from training.console import STEP_LOGGER


REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
LINKED = ("demo_data", "configs", "scripts", "search", "benchmarks")  # read only: no README command writes there
FRESH_MACHINE = "python3 -m venv"  # the README's first two lines: run by CI (.ci/run) and the quickstart test
PLACEHOLDERS = {  # the Models section's conversion example names a BERT checkpoint: the README's own baseline
    "path/to/bert": "runs/pretrain-bert",
    "path/to/autobert-zero-bert": "runs/autobert-zero-bert",
}
SEARCH_SMOKE = [
    "max_evaluations=2", "search.population_size=2", "search.num_parents=1", "search.children_per_parent=1",
    "evaluator.biws.pretraining.max_steps=2", "evaluator.biws.pretraining.batch_size=4",
    "evaluator.biws.pretraining.max_examples=32", "evaluator.biws.pretraining.max_validation_examples=8",
    "evaluator.biws.finetuning.max_steps=2", "evaluator.biws.finetuning.batch_size=4",
    "evaluator.biws.finetuning.max_train_examples=8", "evaluator.biws.finetuning.max_eval_examples=8",
    "export.top_k=1", "tensorboard=false",
    # scores from a few GLUE examples tie, and fidelity.py's Kendall τ of tied rankings is NaN (which it cannot
    # write): the held-out MLM loss proxy gives every candidate its own score
    "evaluator.biws.proxy=mlm_loss",
]
# paper.yaml names the paper's data, which no clone has (the README says to point it at your copy): the demo
# data instead, and the paper's sizes cut down
PAPER_SMOKE = [
    "evaluator.biws.tokenizer=demo_data/vocab.txt", "evaluator.biws.pretraining.train_files=[demo_data/wikitext-2-raw/wiki.demo.raw]",
    "evaluator.biws.finetuning.data_dir=demo_data/glue", "evaluator.biws.finetuning.tasks=[rte]", "evaluator.biws.proxy=glue",
    "space.num_layers=2", "model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
    "model.max_position_embeddings=64", "evaluator.biws.pretraining.max_seq_length=32", "evaluator.biws.finetuning.max_seq_length=32",
]
TINY_MODEL = "--config_overrides", "hidden_size=32,num_attention_heads=2,intermediate_size=64,max_position_embeddings=64"
SMOKE = {  # script → what the test appends to its README command
    "scripts/pretrain.py": ["--max_steps", "2", "--per_device_train_batch_size", "4", "--max_seq_length", "32",
                            "--max_train_samples", "16", "--max_eval_samples", "8", *TINY_MODEL, "--report_to", "none"],
    "scripts/finetune_glue.py": ["--max_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "32",
                                 "--max_train_samples", "16", "--max_eval_samples", "16"],
    "scripts/finetune_squad.py": ["--max_steps", "2", "--per_device_train_batch_size", "4", "--max_train_samples", "8",
                                  "--max_eval_samples", "8", "--max_query_length", "16"],
    "scripts/publish.py": [],
    "scripts/scale_checkpoint.py": ["--sizes", "small"],
    "scripts/token_uniformity.py": ["--max_sentences", "16", "--batch_size", "8", "--max_seq_length", "32"],
    "scripts/convert_bert.py": [],
    "search/run_opnas.py": SEARCH_SMOKE,
    "search/export.py": [],
    "search/plots.py": [],
    "scripts/compare_strategies.py": ["--seeds", "2", "--budget", "6", "--population_size", "3", "--num_parents", "1",
                                      "--children_per_parent", "1"],
    # --search_dir: the smoke search's 2 candidates (3 asks for all); --benchmark: 3 of the table, 2 BIWS steps each, 1 order
    "scripts/fidelity.py": ["--num_architectures", "3", "--pretraining_steps", "2", "--finetuning_steps", "2", "--steps", "2",
                            "--orders", "1", "--bootstrap_replicates", "200"],
    "scripts/proxy_reliability.py": ["--architectures", "2", *SEARCH_SMOKE],
    "scripts/export_onnx.py": [],
    "scripts/estimate_search_scale.py": [],
    "scripts/report_benchmark.py": [],
}
PIP_EXTRA = re.compile(r'pip install -e "\.\[(\w+)\]"')  # installs an extra of setup.cfg (CI has them all: dev)


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ```bash blocks, continuation lines joined, comments kept (shlex drops them)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return commands


def reads_a_pretraining_run(command: str) -> bool:
    """Commands that read what the README's pretraining commands write run after all the others (in their
    README order): the Models section shows conversion and export before the Pretraining section."""
    return any(placeholder in command for placeholder in PLACEHOLDERS) or (
        "runs/pretrain-" in command and "scripts/pretrain.py" not in command
    )


def smoke_argv(command: str) -> tuple[str, list[str]]:
    """The script and arguments a README command runs, with the smoke settings appended. A launcher
    (``accelerate launch [OPTIONS]``, ``[VAR=value ...] torchrun [OPTIONS]``) runs its script as ``python``."""
    argv = shlex.split(command, comments=True)
    argv = [PLACEHOLDERS.get(word, word) for word in argv]
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # environment settings of the launch
        argv = argv[1:]
    launcher = 2 if argv[:2] == ["accelerate", "launch"] else 1 if argv[:1] == ["torchrun"] else 0
    if launcher:
        script_at = next(index for index, word in enumerate(argv) if word.endswith(".py"))
        argv = ["python", *argv[script_at:]]
    assert argv[0] == "python", f"README command {command!r}: expected `python SCRIPT ...`, `accelerate launch` or `torchrun`"
    script, arguments = argv[1], argv[2:]
    assert script in SMOKE, f"README command {command!r}: {script} has no smoke size in tests/test_readme_commands.py"
    extra = list(SMOKE[script])
    if script == "search/run_opnas.py" and "search/configs/paper.yaml" in arguments:
        extra += PAPER_SMOKE
    if script == "scripts/compare_strategies.py" and "--config" in arguments:  # real searches: the smoke search
        extra += ["--config", "smoke-search.yaml", "--strategies", "opnas", "random", "--biws", "with"]
    return script, arguments + extra


def run_script(workdir: Path, script: str, arguments: list[str]) -> None:
    """``python SCRIPT ARGUMENTS`` in ``workdir``, in this process."""
    saved_argv = sys.argv
    sys.argv = [script, *arguments]
    try:
        runpy.run_path(str(workdir / script), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise AssertionError(f"exited with {exit_.code!r}") from None
    finally:
        sys.argv = saved_argv


@pytest.fixture
def clone_like_workdir(tmp_path, monkeypatch):
    """A working directory with the repository's data, configs and scripts and nothing else; restores the
    logging and progress-bar settings the scripts change."""
    for name in LINKED:
        (tmp_path / name).symlink_to(REPOSITORY / name, target_is_directory=True)
    smoke = load_config(
        REPOSITORY / "search" / "configs" / "tiny.yaml",
        {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in SEARCH_SMOKE)},
    )
    (tmp_path / "smoke-search.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(smoke.to_json()))))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    level = logging.getLogger().level
    yield tmp_path  # conftest removes the logging handlers the scripts installed
    logging.getLogger().setLevel(level)
    datasets.enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()


def test_every_readme_command_runs_on_the_demo_data(clone_like_workdir, capfd, ray_cluster):  # Ray: the session's instance
    commands = [command for command in readme_commands(README.read_text(encoding="utf-8")) if FRESH_MACHINE not in command]
    assert len(commands) >= 15, commands  # the parser found the README's commands
    commands.sort(key=reads_a_pretraining_run)
    timings = []
    for command in commands:
        extra = PIP_EXTRA.search(command)
        if extra:  # the extra must exist: the test environment installed it through the dev extra
            assert f"\n{extra.group(1)} =" in (REPOSITORY / "setup.cfg").read_text(), f"README command {command!r}: no such extra"
            continue
        script, arguments = smoke_argv(command)
        started = time.perf_counter()
        try:
            run_script(clone_like_workdir, script, arguments)
        except Exception as error:  # noqa: BLE001 - name the README command that failed
            raise AssertionError(f"README command failed: {command}\n(run as: {script} {shlex.join(arguments)})") from error
        timings.append((time.perf_counter() - started, command))
    console = capfd.readouterr()
    # quiet consoles: no Trainer line per logging step, no per-step record (those are in the log files)
    assert "{'loss'" not in console.out + console.err and f"{STEP_LOGGER}:" not in console.err
    assert f"{STEP_LOGGER}: runs/opnas-tiny/candidates/000000/pretraining step 1/2: loss" in (
        clone_like_workdir / "runs" / "opnas-tiny" / "search.log"
    ).read_text()
    with capfd.disabled():
        print("\nREADME commands, smoke size (seconds):")
        for seconds, command in timings:
            print(f"  {seconds:6.1f}  {command[:110]}")
    # what the commands promise, on disk
    runs = clone_like_workdir / "runs"
    glue = json.loads((runs / "glue" / "glue_results.json").read_text())
    assert set(glue["best"]) == {"rte", "mrpc", "sst2"} and glue["data"]["demo_data"]
    for task, best in glue["best"].items():
        assert (runs / "glue" / task / best["run"] / "model.safetensors").is_file()  # the best model per task
    assert json.loads((runs / "squad-v2" / "eval_results.json").read_text())["data"]["version"] == "v2.0"
    assert not list(runs.glob("pretrain-*/checkpoint-*"))  # runs shorter than save_steps: final model only
    card = (clone_like_workdir / "outputs" / "hub" / "pretrain-autobert-zero" / "README.md").read_text()
    assert "bundled demo subset" in card and "- demo" in card and "a demo-size run" in card
    searched = (clone_like_workdir / "outputs" / "hub" / "opnas-tiny-rank01" / "README.md").read_text()
    assert "- demo" in searched and "on the bundled demo data after 2 pretraining steps each" in searched


def test_the_readme_pretraining_command_and_its_config_file_are_the_same_run():
    """`configs/pretrain-demo.yaml` holds the first pretraining command's settings, so the README's two forms
    (flags, file) cannot drift apart."""
    from training.arguments import (
        ConsoleArguments, PretrainingArguments, PretrainingDataArguments, PretrainingModelArguments, parse_script_arguments,
    )

    first = next(command for command in readme_commands(README.read_text(encoding="utf-8")) if "scripts/pretrain.py --" in command)
    types = (PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments, ConsoleArguments)
    from_flags = parse_script_arguments(types, shlex.split(first, comments=True)[2:])
    from_file = parse_script_arguments(types, [str(REPOSITORY / "configs" / "pretrain-demo.yaml")])
    assert from_flags[:2] == from_file[:2]
    assert from_flags[2].to_dict() == from_file[2].to_dict()
