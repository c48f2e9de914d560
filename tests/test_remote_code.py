"""Checkpoints load with `trust_remote_code=True` where this package is not installed.

The parent process saves one checkpoint per head plus the inputs and its outputs (safetensors); a fresh
Python, run elsewhere with the repository off its path and any installed copy of the package hidden, loads
each with the Auto classes from `auto_map` and must reproduce the outputs exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import SPEC_PROGRAMS, random_batch, tiny_config
from safetensors.torch import save_file

from modeling_autobert_zero import (
    AutoBertZeroForMaskedLM,
    AutoBertZeroForMultipleChoice,
    AutoBertZeroForPreTraining,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForTokenClassification,
    AutoBertZeroModel,
)
from modeling_autobert_zero.configuration_autobert_zero import AUTO_CLASSES
from publishing.hub import HIDE_INSTALLED_PACKAGE


REPOSITORY = Path(__file__).resolve().parents[1]
AUTO_CLASS_OF = {
    AutoBertZeroModel: "AutoModel",
    AutoBertZeroForPreTraining: "AutoModelForPreTraining",
    AutoBertZeroForMaskedLM: "AutoModelForMaskedLM",
    AutoBertZeroForSequenceClassification: "AutoModelForSequenceClassification",
    AutoBertZeroForQuestionAnswering: "AutoModelForQuestionAnswering",
    AutoBertZeroForTokenClassification: "AutoModelForTokenClassification",
    AutoBertZeroForMultipleChoice: "AutoModelForMultipleChoice",
}
LAYERS = [
    {"type": "conv", "kernel_size": 7},
    {"type": "attention", "program": SPEC_PROGRAMS["layer_10"]},
    {"type": "attention", "program": "matmul(softmax(cosine(Q, K)), V)"},  # interpreter-only program
]

# Runs in the fresh interpreter: load every checkpoint through the Auto class its directory names.
LOADER = HIDE_INSTALLED_PACKAGE + """import torch, transformers
from safetensors.torch import load_file

results = {}
for directory, auto_class in json.loads(sys.argv[1]).items():
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=True)
    model = getattr(transformers, auto_class).from_pretrained(directory, trust_remote_code=True).eval()
    tensors = load_file(f"{directory}/io.safetensors")
    inputs = {name[len("input."):]: value for name, value in tensors.items() if name.startswith("input.")}
    with torch.no_grad():
        outputs = model(**inputs, return_dict=False)
    compared = [i for i in range(len(outputs)) if f"output.{i}" in tensors]
    results[directory] = {
        "config_class": type(config).__module__,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "layers": config.layers,
        "outputs_compared": len(compared),
        "max_difference": max((outputs[i] - tensors[f"output.{i}"]).abs().max().item() for i in compared),
    }
print(json.dumps(results))
"""


def _inputs_for(model_class, config) -> dict[str, torch.Tensor]:
    inputs = random_batch(config, batch=2, seq_len=6)
    inputs["attention_mask"][1, 4:] = 0
    if model_class is AutoBertZeroForMultipleChoice:
        inputs = {name: torch.stack([value, value.flip(0)], dim=1) for name, value in inputs.items()}  # 2 choices
    return inputs


def _save_checkpoints(root: Path) -> dict[str, str]:
    """One directory per head: checkpoint + io.safetensors (inputs and this process's outputs)."""
    directories = {}
    for model_class, auto_class in AUTO_CLASS_OF.items():
        torch.manual_seed(0)
        model = model_class(tiny_config(LAYERS)).eval()
        directory = root / model_class.__name__
        model.save_pretrained(directory)
        inputs = _inputs_for(model_class, model.config)
        with torch.no_grad():
            outputs = model(**inputs, return_dict=False)
        tensors = {f"input.{name}": value.contiguous() for name, value in inputs.items()}
        tensors.update({f"output.{i}": value.contiguous() for i, value in enumerate(outputs) if torch.is_tensor(value)})
        save_file(tensors, str(directory / "io.safetensors"))
        directories[str(directory)] = auto_class
    return directories


def _python_without_this_repository(tmp_path: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONPATH" and not key.startswith(("HF_", "TRANSFORMERS_"))
    }
    path = [
        entry
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != REPOSITORY
    ]
    environment.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),  # the dynamic-module cache lands here, not in the user's cache
        OMP_NUM_THREADS="1",  # tiny tensors: one thread, as in conftest.py
        PYTHONPATH=os.pathsep.join(path),
    )
    return environment


def test_saved_checkpoints_carry_their_code_and_a_complete_auto_map(tmp_path):
    model = AutoBertZeroForMaskedLM(tiny_config(LAYERS))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForPreTraining",
        "AutoModelForMaskedLM",
        "AutoModelForSequenceClassification",
        "AutoModelForQuestionAnswering",
        "AutoModelForTokenClassification",
        "AutoModelForMultipleChoice",
    }
    assert config["auto_map"] == AUTO_CLASSES
    saved_files = {path.name for path in tmp_path.iterdir()}
    assert {
        "configuration_autobert_zero.py",
        "modeling_autobert_zero.py",
        "attention_programs.py",
        "lightweight_conv.py",
        "model.safetensors",
    } <= saved_files
    # every module the saved code imports from its own package was saved beside it
    for source in tmp_path.glob("*.py"):
        for line in source.read_text().splitlines():
            if line.startswith("from ."):
                assert f"{line.split()[1][1:]}.py" in saved_files, (source.name, line)


def test_every_head_loads_with_trust_remote_code_in_a_fresh_python(tmp_path):
    directories = _save_checkpoints(tmp_path / "checkpoints")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(directories)],
        cwd=workdir,
        env=_python_without_this_repository(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(results) == set(directories)
    for directory, result in results.items():
        assert result["model_class"].startswith("transformers_modules."), result  # the checkpoint's own code
        assert result["model_class"].endswith(Path(directory).name)
        assert result["config_class"].startswith("transformers_modules.")
        assert result["layers"][0] == LAYERS[0]
        assert result["outputs_compared"] >= 1
        assert result["max_difference"] == 0.0, (directory, result)


# Runs in the fresh interpreter: the tokenizer of a saved folder, declining the repository's code.
TOKENIZER_LOADER = HIDE_INSTALLED_PACKAGE + """from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=False)
print(json.dumps({
    "class": type(tokenizer).__module__ + "." + type(tokenizer).__name__,
    "input_ids": tokenizer("the red cat")["input_ids"],
    "ran_repository_code": any(name.startswith("transformers_modules") for name in sys.modules),
}))
"""


def test_the_tokenizer_of_a_saved_folder_loads_without_running_its_code(tmp_path):
    """The tokenizer is a stock `BertTokenizer`: `AutoTokenizer` loads it with `trust_remote_code=False` in a
    fresh Python that has neither this package nor the folder's code, and asks nothing. (Without the argument,
    transformers 5 resolves the folder's `AutoConfig` first and asks whether to run its code: that question
    comes from `config.json`'s `auto_map`, which `trust_remote_code=True` model loading needs.)"""
    from training.tokenization import load_tokenizer

    folder = tmp_path / "folder"
    AutoBertZeroForPreTraining(tiny_config(LAYERS)).save_pretrained(folder)
    tokenizer = load_tokenizer(REPOSITORY / "tests" / "fixtures" / "training" / "vocab.txt")
    tokenizer.save_pretrained(folder)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", TOKENIZER_LOADER, str(folder)],
        cwd=workdir, env=_python_without_this_repository(tmp_path), capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Do you wish to run the custom code" not in completed.stdout + completed.stderr
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "transformers.models.bert.tokenization_bert.BertTokenizer"
    assert loaded["input_ids"] == tokenizer("the red cat")["input_ids"]
    assert not loaded["ran_repository_code"]
