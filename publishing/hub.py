"""Hub repository folders: what a complete AutoBERT-Zero repo holds, how one is built, and how it is pushed.

A repo folder is everything `AutoModel*.from_pretrained(repo, trust_remote_code=True)` needs on a machine
without this project — safetensors weights, `config.json` with the full `auto_map`, the modeling code,
the tokenizer — plus the model card (`README.md`), the diagram of the attention programs, and `results/`,
the JSON files every number of the card is read from. A folder is staged beside its destination and moved
into place only once it is complete, so a destination is either the previous folder or the new one.

Pushing is a separate step (`push_folder`): it never changes the folder, so when the Hub cannot be reached,
or no token is found, the error says so and the complete folder stays on disk to push later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from transformers import PreTrainedModel
from transformers.dynamic_module_utils import get_relative_imports

import modeling_autobert_zero
from modeling_autobert_zero.architecture import forward_flops
from modeling_autobert_zero.configuration_autobert_zero import AUTO_CLASSES
from search.plots import plot_architecture
from training.atomic_files import make_readable, write_json_atomic

from .model_card import (
    ARCHITECTURE_FIGURE,
    MODEL_STATS,
    RESULTS_DIR,
    WEIGHTS,
    CardSettings,
    render_model_card,
)


MODEL_CARD = "README.md"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.txt")
WEIGHT_KINDS = ("pretrained", "search", "random", "unrecorded")
# Files that must never be published: pickles (the Trainer's training_args.bin, optimizer states) run code when loaded.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MODEL_CLASSES = {model_class.__name__: model_class for model_class in (
    modeling_autobert_zero.AutoBertZeroModel,
    modeling_autobert_zero.AutoBertZeroForPreTraining,
    modeling_autobert_zero.AutoBertZeroForMaskedLM,
    modeling_autobert_zero.AutoBertZeroForSequenceClassification,
    modeling_autobert_zero.AutoBertZeroForQuestionAnswering,
    modeling_autobert_zero.AutoBertZeroForTokenClassification,
    modeling_autobert_zero.AutoBertZeroForMultipleChoice,
)}


class PublishError(RuntimeError):
    """A checkpoint that cannot be published, an incomplete repo folder, or a push that failed."""


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a repo's weights come from, written to ``results/weights.json`` for the card.

    ``kind``: ``pretrained`` (trained by this project's pretraining, with its results), ``search`` (a
    candidate's weights as the BIWS super-net holds them), ``random`` (an untrained initialisation) or
    ``unrecorded`` (a checkpoint given without any record of its training). ``related`` lists other
    checkpoints worth naming in the card (the same architecture trained at another size).
    """

    kind: str
    note: str
    source: str | None = None
    related: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in WEIGHT_KINDS:
            raise ValueError(f"weights kind: expected one of {WEIGHT_KINDS}, got {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "note": self.note, "source": self.source, "related": list(self.related)}


def load_checkpoint(path: str | os.PathLike) -> PreTrainedModel:
    """The AutoBERT-Zero model saved in ``path``, with the head its ``config.json`` names.

    The class comes from a fixed table of this package's classes, never from a name looked up freely.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PublishError(f"{path}: not a checkpoint directory (no config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PublishError(f"{config_file}: not valid JSON ({error})") from None
    if config.get("model_type") != modeling_autobert_zero.AutoBertZeroConfig.model_type:
        raise PublishError(
            f"{config_file}: field 'model_type' is {config.get('model_type')!r}; only AutoBERT-Zero checkpoints "
            f"('{modeling_autobert_zero.AutoBertZeroConfig.model_type}') are published by this tool"
        )
    names = config.get("architectures") or ["AutoBertZeroForPreTraining"]
    if len(names) != 1 or names[0] not in MODEL_CLASSES:
        raise PublishError(f"{config_file}: field 'architectures' must name one of {sorted(MODEL_CLASSES)}, got {names}")
    return MODEL_CLASSES[names[0]].from_pretrained(str(path))


def measure_model(model: PreTrainedModel, seq_length: int = 128) -> dict[str, Any]:
    """Parameter counts and the backbone's forward FLOPs on one sequence (``torch.utils.flop_counter``) of
    ``seq_length`` tokens, or of the model's longest sequence when that is shorter."""
    seq_length = min(seq_length, model.config.max_position_embeddings)
    backbone = model.base_model
    embeddings = backbone.get_input_embeddings()
    was_training = model.training
    model.eval()
    flops = forward_flops(backbone, seq_length)
    model.train(was_training)
    embedding_parameters = sum(parameter.numel() for parameter in backbone.embeddings.parameters())
    return {
        "model_class": type(model).__name__,
        "parameters": model.num_parameters(),
        "backbone_parameters": backbone.num_parameters(),
        "non_embedding_parameters": backbone.num_parameters() - embedding_parameters,
        "vocab_size": embeddings.num_embeddings,
        "forward_flops": flops,
        "flops_seq_length": seq_length,
    }


def build_repo_folder(
    model: PreTrainedModel,
    tokenizer,
    destination: str | os.PathLike,
    settings: CardSettings,
    weights: WeightsProvenance,
    results: Mapping[str, Any] | None = None,
    figures: Mapping[str, str | os.PathLike] | None = None,
    flops_seq_length: int = 128,
    template: str | os.PathLike | None = None,
) -> Path:
    """Write a complete Hub repo folder for ``model`` at ``destination`` and return it.

    ``results`` maps a file name in ``results/`` (e.g. ``glue_results.json``) to the JSON content a pipeline
    stage wrote; ``figures`` maps a file name in the repo to a PNG to copy (search plots). The card is then
    rendered from the staged folder itself, so it can only show numbers that are in the folder.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".staging"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        results_dir = staging / RESULTS_DIR
        for name, content in (results or {}).items():
            write_json_atomic(results_dir / name, content)
        write_json_atomic(results_dir / MODEL_STATS, measure_model(model, flops_seq_length))
        write_json_atomic(results_dir / WEIGHTS, weights.to_json())
        plot_architecture(model.config.layers, staging / ARCHITECTURE_FIGURE, settings.model_name)
        for name, source in (figures or {}).items():
            shutil.copyfile(source, staging / name)
        card = render_model_card(staging, settings, template)
        card.save(staging / MODEL_CARD)
        missing = missing_repo_files(staging)
        if missing:
            raise PublishError(f"{destination}: the repo folder would be incomplete: {'; '.join(missing)}")
        make_readable(staging)  # mkdtemp's folder and the safetensors file are created private (0700 / 0600)
        _replace_directory(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def _replace_directory(staging: Path, destination: Path) -> None:
    """Move the staged folder to ``destination``; an existing folder is kept aside until the move succeeded."""
    previous = None
    if destination.exists():
        previous = destination.with_name(f".{destination.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(destination, previous)
    os.replace(staging, destination)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def missing_repo_files(folder: str | os.PathLike) -> list[str]:
    """What keeps ``folder`` from being a complete repo (empty when it is complete).

    Checks the card, the figure, `config.json` and its full `auto_map`, every code file the auto_map's
    modules import (what `trust_remote_code` loads), safetensors weights (and every shard an index names),
    the tokenizer, and that no pickle-based file is present.
    """
    folder = Path(folder)
    problems = [f"no {name}" for name in (MODEL_CARD, ARCHITECTURE_FIGURE) if not (folder / name).is_file()]
    config_file = folder / "config.json"
    if not config_file.is_file():
        return [*problems, "no config.json"]
    auto_map = json.loads(config_file.read_text(encoding="utf-8")).get("auto_map") or {}
    if auto_map != AUTO_CLASSES:
        wrong = sorted(name for name in set(AUTO_CLASSES) | set(auto_map) if auto_map.get(name) != AUTO_CLASSES.get(name))
        problems.append(f"config.json: auto_map differs from the package's in {wrong}")
    pending = sorted({reference.split(".")[0] for reference in auto_map.values()})
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        code_file = folder / f"{module}.py"
        if not code_file.is_file():
            problems.append(f"no {code_file.name} (code that trust_remote_code loads)")
            continue
        pending.extend(get_relative_imports(str(code_file)))
    single_file, index = (folder / name for name in WEIGHT_FILES)
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        problems.extend(f"no {shard} (named by {index.name})" for shard in sorted(shards) if not (folder / shard).is_file())
    elif not single_file.is_file():
        problems.append(f"no safetensors weights ({' or '.join(WEIGHT_FILES)})")
    if not (folder / TOKENIZER_CONFIG).is_file() or not any((folder / name).is_file() for name in TOKENIZER_VOCABULARIES):
        problems.append(f"no tokenizer ({TOKENIZER_CONFIG} with {' or '.join(TOKENIZER_VOCABULARIES)})")
    unsafe = sorted(path.name for path in folder.rglob("*") if path.suffix in UNSAFE_SUFFIXES)
    if unsafe:
        problems.append(f"pickle-based files that must not be published: {unsafe}")
    return problems


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, commit_message: str | None = None) -> str:
    """Create ``repo_id`` on the Hub (if needed) and upload ``folder``; returns the repo URL.

    The token is the usual one (`hf auth login`, or `HF_TOKEN`). Every failure — offline mode, no token,
    no network, a refused request — raises :class:`PublishError` saying what happened; the folder is
    never changed, so it can be pushed again later.
    """
    folder = Path(folder)
    missing = missing_repo_files(folder)
    if missing:
        raise PublishError(f"{folder}: not pushing an incomplete repo folder: {'; '.join(missing)}")
    later = f"The folder {folder} is complete: push it later with `hf upload {repo_id} {folder} .`"
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise PublishError(f"HF_HUB_OFFLINE is set, so nothing is sent to the Hub. {later} (with HF_HUB_OFFLINE unset).")
    if huggingface_hub.get_token() is None:
        raise PublishError(f"no Hugging Face token: run `hf auth login` or set HF_TOKEN. {later}")
    try:
        url = huggingface_hub.create_repo(repo_id, private=private, exist_ok=True)
        huggingface_hub.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message or f"Upload {folder.name} (AutoBERT-Zero)",
        )
    # The transport's exception classes differ between huggingface_hub versions (requests, httpx, httpx2),
    # so every failure of the push is reported the same way, with its original type and message.
    except Exception as error:  # noqa: BLE001
        raise PublishError(f"could not push to {huggingface_hub.constants.ENDPOINT}/{repo_id}: {type(error).__name__}: {error}. {later}") from error
    return str(url)


def seeded_model(model_class: type[PreTrainedModel], config, seed: int) -> PreTrainedModel:
    """A freshly initialised model whose weights depend only on ``seed``, for repos of untrained weights
    (the global generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


# The start of a script for a new interpreter in which this package cannot be imported (even when it is
# installed, e.g. editable): a checkpoint loaded there must bring its own code, as on a Hub user's machine.
HIDE_INSTALLED_PACKAGE = """
import importlib.abc, json, sys


class PackageNotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "modeling_autobert_zero":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, PackageNotInstalled())
"""

# Loads each folder as a Hub user would.
_FRESH_LOADER = HIDE_INSTALLED_PACKAGE + """import torch
from transformers import AutoModel, AutoTokenizer

loaded = []
for folder in sys.argv[2:]:
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tokenizer([sys.argv[1]], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    loaded.append({"folder": folder, "module": type(model).__module__, "model_class": type(model).__name__,
                   "layers": model.config.layers, "hidden_size": model.config.hidden_size,
                   "input_ids": batch["input_ids"].tolist(), "hidden_shape": list(hidden.shape),
                   "hidden_sum": hidden.double().sum().item()})
print(json.dumps(loaded))
"""


def load_in_fresh_process(
    folders: Sequence[str | os.PathLike], text: str = "A searched backbone.", environment: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Load every repo folder the way a Hub user would — a new Python process in which this package cannot be
    imported, `AutoTokenizer` and `AutoModel` with `trust_remote_code=True` — and encode ``text``.

    Returns per folder the model's module (``transformers_modules.…``: the folder's own code), class, layers,
    the input ids and the sum of the last hidden state, so a caller can compare with this process's model.
    ``environment`` replaces the process environment (default: this one without ``PYTHONPATH``).
    """
    if environment is None:
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    paths = [str(Path(folder).resolve()) for folder in folders]
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_LOADER, text, *paths],
        capture_output=True, text=True, env=dict(environment), cwd=Path(paths[0]).parent,
    )
    if result.returncode != 0:
        raise PublishError(f"{', '.join(paths)} did not load with trust_remote_code in a fresh process:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
