"""Publishing: a complete repo folder that loads in a fresh process with `trust_remote_code`, a push that
cannot reach the Hub failing clearly with the folder left complete, and a search's top-k each with its card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from publishing.arguments import PublishArguments
from publishing.hub import (
    HIDE_INSTALLED_PACKAGE,
    PublishError,
    load_checkpoint,
    load_in_fresh_process,
    missing_repo_files,
    push_folder,
)
from publishing.model_card import GLUE_RESULTS, RESULTS_DIR
from publishing.publish import run_publish
from search.config import SearchConfig, dataclass_from_mapping
from search.run_opnas import run_search
from training.tokenization import load_tokenizer


REPOSITORY = Path(__file__).resolve().parents[1]
VOCAB = REPOSITORY / "tests" / "fixtures" / "training" / "vocab.txt"
LAYERS = [
    {"type": "conv", "kernel_size": 3},
    {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(add(scale(K), V))))), V)"},
]
GLUE = {"runs": {}, "best": {"rte": {"run": "lr0.001_wd0.01", "score": 0.5432, "metrics": {"accuracy": 0.5432}}}}
PRETRAINING = {"train_loss": 4.3210}
UNROUTABLE = "http://127.0.0.1:9"  # the discard port: refused at once, nothing leaves the machine

def fresh_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This interpreter's environment without Hub settings, with its own caches, plus ``extra``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    environment.update(HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    return environment


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny pretraining checkpoint with its tokenizer and the files a pretraining run leaves beside it."""
    directory = tmp_path_factory.mktemp("checkpoint")
    tokenizer = load_tokenizer(VOCAB)
    torch.manual_seed(0)
    config = AutoBertZeroConfig(layers=LAYERS, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                vocab_size=len(tokenizer), max_position_embeddings=64)
    AutoBertZeroForPreTraining(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "pretraining_results.json").write_text(json.dumps(PRETRAINING))
    (directory / "trainer_state.json").write_text(json.dumps({"global_step": 77, "train_batch_size": 8, "log_history": []}))
    (directory / "training_args.bin").write_bytes(b"a pickle the Trainer writes: must not be published")
    (directory / "glue_results.json").write_text(json.dumps(GLUE))
    return directory


@pytest.fixture(scope="module")
def failed_push(checkpoint, tmp_path_factory):
    """`scripts/publish.py --push` run against an endpoint that refuses connections, with a token set."""
    root = tmp_path_factory.mktemp("published")
    command = [
        sys.executable, str(REPOSITORY / "scripts" / "publish.py"),
        "--checkpoint", str(checkpoint), "--output_dir", str(root), "--name", "tiny",
        "--glue_results", str(checkpoint / "glue_results.json"), "--push", "--repo_id", "org/tiny",
    ]
    environment = fresh_environment(root, HF_ENDPOINT=UNROUTABLE, HF_TOKEN="hf_not_a_real_token", PYTHONPATH=str(REPOSITORY))
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=root, timeout=300)
    return result, root / "tiny"


def test_a_push_that_cannot_reach_the_hub_fails_clearly_and_leaves_the_folder_complete(failed_push):
    result, folder = failed_push
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"publish: error: could not push to {UNROUTABLE}/org/tiny:"), result.stderr[-2000:]
    assert f"The folder {folder} is complete" in message
    assert missing_repo_files(folder) == []
    names = {path.name for path in folder.iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "modeling_autobert_zero.py", "configuration_autobert_zero.py",
            "attention_programs.py", "lightweight_conv.py", "tokenizer.json", "tokenizer_config.json", "architecture.png",
            RESULTS_DIR} <= names
    assert "training_args.bin" not in names
    card = (folder / "README.md").read_text()
    assert "| 54.32 |" in card and "4.3210" in card and "77 optimizer steps" in card
    assert 'path = "org/tiny"' in card and "AutoModel.from_pretrained(path, trust_remote_code=True)" in card
    # everything readable by others, as any file the user writes (mkstemp and safetensors create 0600)
    modes = {path.relative_to(folder): path.stat().st_mode & 0o777 for path in [folder, *folder.rglob("*")]}
    assert all(mode == (0o755 if (folder / path).is_dir() else 0o644) for path, mode in modes.items()), modes


def test_the_cards_how_to_use_code_runs_in_a_fresh_process_with_its_fill_mask_pipeline(checkpoint, tmp_path, monkeypatch):
    """The card's own code block, run from where the folder was published, by a process that cannot import this
    package (as on a Hub user's machine): loads the folder, encodes, and fills a mask."""
    monkeypatch.chdir(tmp_path)
    (repo,) = run_publish(PublishArguments(output_dir="hub", checkpoint=str(checkpoint), name="tiny"))
    card = (repo.folder / "README.md").read_text()
    code = card.split("## How to use")[1].split("```python\n")[1].split("```")[0]
    assert 'pipeline("fill-mask", model=path, trust_remote_code=True)' in code
    assert 'path = "hub/tiny"  # this folder, relative to the directory it was published from' in code
    completed = subprocess.run(
        [sys.executable, "-c", HIDE_INSTALLED_PACKAGE + code + "\nprint('FILLED', len(fill_mask('Paris is the [MASK] of France.')))"],
        capture_output=True, text=True, env=fresh_environment(tmp_path, HF_HUB_OFFLINE="1"), cwd=tmp_path, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "FILLED 5" in completed.stdout


def test_the_folder_loads_in_a_fresh_process_without_this_package(failed_push, checkpoint, tmp_path):
    _, folder = failed_push
    (loaded,) = load_in_fresh_process([folder], "the red cat lives by the river", fresh_environment(tmp_path, HF_HUB_OFFLINE="1"))
    assert loaded["module"].startswith("transformers_modules.")  # the folder's code, not this package
    assert loaded["model_class"] == "AutoBertZeroModel" and loaded["layers"] == LAYERS
    model = load_checkpoint(checkpoint).eval()
    with torch.no_grad():
        hidden = model.autobert_zero(input_ids=torch.tensor(loaded["input_ids"])).last_hidden_state
    assert list(hidden.shape) == loaded["hidden_shape"]
    assert abs(hidden.double().sum().item() - loaded["hidden_sum"]) < 1e-6 * hidden.numel()


def test_offline_mode_or_no_token_fail_before_any_request(failed_push, monkeypatch):
    _, folder = failed_push
    before = sorted((path.relative_to(folder), path.stat().st_mtime_ns) for path in folder.rglob("*"))

    def no_request(*args, **kwargs):
        raise AssertionError("the Hub must not be contacted")

    monkeypatch.setattr(huggingface_hub, "create_repo", no_request)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PublishError, match=r"HF_HUB_OFFLINE is set, so nothing is sent to the Hub\. The folder .* is complete"):
        push_folder(folder, "org/tiny")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PublishError, match=r"no Hugging Face token: run `hf auth login` or set HF_TOKEN"):
        push_folder(folder, "org/tiny")
    assert sorted((path.relative_to(folder), path.stat().st_mtime_ns) for path in folder.rglob("*")) == before


def test_an_incomplete_folder_is_named_and_never_pushed(failed_push, tmp_path):
    _, folder = failed_push
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        if path.is_file() and path.name != "attention_programs.py":
            (broken / path.name).write_bytes(path.read_bytes())
    (broken / "optimizer.pt").write_bytes(b"pickle")
    problems = missing_repo_files(broken)
    assert "no attention_programs.py (code that trust_remote_code loads)" in problems
    assert "pickle-based files that must not be published: ['optimizer.pt']" in problems
    with pytest.raises(PublishError, match="not pushing an incomplete repo folder"):
        push_folder(broken, "org/tiny")


def test_only_autobert_zero_checkpoints_are_published(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(PublishError, match=r"config.json: field 'model_type' is 'bert'"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="--push needs --repo_id"):
        PublishArguments(output_dir=str(tmp_path), checkpoint=str(tmp_path), push=True)


def test_the_top_candidates_of_a_search_each_get_a_folder_and_card(tmp_path):
    search_dir = tmp_path / "search"
    config = dataclass_from_mapping(SearchConfig, {
        "output_dir": str(search_dir),
        "max_evaluations": 5,
        "search": {"population_size": 3, "num_parents": 1, "children_per_parent": 2},
        "space": {"num_layers": 2, "max_program_length": 8},
        "model": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32},
        "evaluator": {"name": "synthetic", "biws": {"tokenizer": str(VOCAB)}},
        "tensorboard": False,
    })
    state = run_search(config, progress=False)
    published = run_publish(PublishArguments(output_dir=str(tmp_path / "hub"), search_dir=str(search_dir), candidates=2,
                                             repo_id="org/found"))
    ranked = sorted((r for r in state.history if r.status == "ok"), key=lambda r: (-r.score, r.index))[:2]
    assert [repo.folder.name for repo in published] == ["search-rank01", "search-rank02"]
    assert [repo.repo_id for repo in published] == ["org/found-rank01", "org/found-rank02"]
    for repo, record in zip(published, ranked):
        assert missing_repo_files(repo.folder) == []
        assert AutoBertZeroConfig.from_pretrained(repo.folder).layers == record.architecture
        card = (repo.folder / "README.md").read_text()
        assert f"candidate {record.index}, proxy score {record.score:.4f} (a synthetic score: the stand-in" in card
        assert "random initialisation" in card  # a synthetic search keeps no weights: the card says so
        assert (repo.folder / "search_best_so_far.png").is_file()
    assert not any(path.name.startswith(".export-") for path in (tmp_path / "hub").iterdir())
    assert not (tmp_path / "hub" / "search-rank01" / RESULTS_DIR / GLUE_RESULTS).exists()
