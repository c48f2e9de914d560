"""Model cards are rendered from the repo folder's own files: every number comes from `results/*.json`, the
metadata is a valid Hub model card (it survives a save / load round trip), and the text says what the weights are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from modeling_autobert_zero import AutoBertZeroConfig
from publishing.model_card import (
    GLUE_RESULTS,
    MODEL_STATS,
    PRETRAINING_RESULTS,
    PRETRAINING_STATE,
    RESULTS_DIR,
    RUN_RECORD,
    SEARCH_RESULT,
    SEARCH_SETTINGS,
    WEIGHTS,
    CardError,
    CardSettings,
    paper_backbone_size,
    render_model_card,
)


LAYERS = [
    {"type": "conv", "kernel_size": 9},
    {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(K)))))), Q)"},
    {"type": "attention", "program": "matmul(softmax(cosine(Q, K)), V)"},
]
# Numbers no template or code could produce by chance: each must reach the card from these files only.
GLUE = {
    "runs": {"rte": {"lr0.0003_wd0.1": {"accuracy": 0.6173}}, "mrpc": {"lr0.0003_wd0.1": {"f1": 0.8127, "accuracy": 0.7346}}},
    "best": {
        "rte": {"run": "lr0.0003_wd0.1", "score": 0.6173, "metrics": {"accuracy": 0.6173}, "initialised_from": "ckpt"},
        "mrpc": {"run": "lr0.0003_wd0.1", "score": 0.8127, "metrics": {"f1": 0.8127, "accuracy": 0.7346}, "initialised_from": "ckpt"},
    },
    "glue_average": 71.5,
    "glue_average_is_partial": True,
}
STATS = {
    "model_class": "AutoBertZeroForPreTraining",
    "parameters": 1234567,
    "backbone_parameters": 1198765,
    "non_embedding_parameters": 45678,
    "vocab_size": 223,
    "forward_flops": 98765432,
    "flops_seq_length": 64,
}
PRETRAINING = {"train_loss": 6.4321, "eval_mlm_loss": 6.9876}
SEARCH = {"rank": 1, "index": 17, "score": 0.5917, "metrics": {"rte/accuracy": 0.5917}, "cost": {"wall_seconds": 12.3456}}
RECORD = {
    "command": "python scripts/quickstart.py",
    "cwd": "the repository root",
    "demo_data": True,
    "stages": [
        {"name": "pretraining", "commands": ["python scripts/pretrain.py runs/q/configs/pretrain.yaml"],
         "arguments_file": "runs/q/configs/pretrain.yaml", "arguments": {"train_files": ["demo_data/wikitext-2-raw/wiki.demo.raw"], "max_steps": 321},
         "output_dir": "runs/q/pretrain", "seconds": 42.0},
    ],
}


def repo_folder(tmp_path: Path, layers=LAYERS, weights_kind: str = "pretrained", **results) -> Path:
    AutoBertZeroConfig(layers=layers, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=223).save_pretrained(tmp_path)
    files = {MODEL_STATS: STATS, WEIGHTS: {"kind": weights_kind, "note": "Fake weights for a test.", "related": []}, **results}
    for name, content in files.items():
        (tmp_path / RESULTS_DIR).mkdir(exist_ok=True)
        (tmp_path / RESULTS_DIR / name).write_text(json.dumps(content))
    return tmp_path


def full_folder(tmp_path: Path) -> Path:
    return repo_folder(
        tmp_path,
        **{GLUE_RESULTS: GLUE, PRETRAINING_RESULTS: PRETRAINING, PRETRAINING_STATE: {"global_step": 321},
           SEARCH_RESULT: SEARCH, RUN_RECORD: RECORD},
    )


def test_every_number_comes_from_the_results_files_and_the_metadata_round_trips(tmp_path):
    folder = full_folder(tmp_path / "repo")
    card = render_model_card(folder, CardSettings(model_name="autobert-zero-test", repo_id="org/autobert-zero-test"))
    text = str(card)
    # GLUE scores (fractions in the files) on the card's one scale, 0-100, like the GLUE average
    for expected in ("| 61.73 |", "| 81.27 |", "| 73.46 |", "GLUE average (only these tasks): 71.50", "1,234,567", "1,198,765",
                     "45,678", "98,765,432", "6.4321", "6.9876", "proxy score 59.17", "| rte/accuracy | 59.17 |", "12.3456",
                     "321 optimizer steps", "of 64 tokens"):
        assert expected in text, expected
    assert "0.6173" not in text and "0.5917" not in text

    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    metadata = loaded.data.to_dict()
    assert metadata["license"] == "apache-2.0" and metadata["library_name"] == "transformers"
    assert set(metadata["datasets"]) == {"nyu-mll/glue", "Salesforce/wikitext"}
    assert "autobert-zero" in metadata["tags"] and "random-weights" not in metadata["tags"]
    results = metadata["model-index"][0]["results"]
    reported = {(r["dataset"]["config"], metric["name"]): metric["value"] for r in results for metric in r["metrics"]}
    assert reported == {("rte", "accuracy"): 61.73, ("mrpc", "f1"): 81.27, ("mrpc", "accuracy"): 73.46}
    assert all(r["dataset"]["type"] == "nyu-mll/glue" and r["dataset"]["split"] == "validation" for r in results)
    assert all("demo subset" in r["dataset"]["name"] for r in results)  # the run record says demo data
    assert [result.metric_value for result in loaded.data.eval_results] == [61.73, 81.27, 73.46]
    assert "demo" in metadata["tags"]  # the run record says demo data: the metadata says so too


def test_the_architecture_table_and_commands_are_in_the_card(tmp_path):
    text = str(render_model_card(full_folder(tmp_path), CardSettings(model_name="m")))
    assert "| 1 | conv | lightweight conv, kernel 9 | – |" in text
    assert "| 2 | attention | `matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(K)))))), Q)` | Q, K |" in text
    assert "| 3 | attention | `matmul(softmax(cosine(Q, K)), V)` | Q, K, V |" in text
    assert "![The layers and their attention programs](architecture.png)" in text
    assert "python scripts/pretrain.py runs/q/configs/pretrain.yaml" in text and "max_steps: 321" in text
    assert "selected by its proxy score on GLUE dev data" in text  # search + GLUE: the caveat is there
    assert "Reading of the paper's figure" not in text


def test_numbers_absent_from_the_files_are_absent_from_the_card(tmp_path):
    folder = repo_folder(tmp_path)  # only the model statistics and the weights' provenance
    card = render_model_card(folder, CardSettings(model_name="m"))
    text = str(card)
    assert "## Evaluation" not in text and "## Pretraining" not in text and "## Search" not in text
    assert "No run record was given" in text
    assert "model-index" not in text
    body = re.sub(r"\(https?://[^)]*\)", "", card.text.split("## Citation")[0])  # links hold the arXiv id
    body_numbers = set(re.findall(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+", body))
    assert body_numbers == {"1,234,567", "1,198,765", "45,678", "98,765,432"}


def test_random_weights_are_flagged_in_the_text_and_tags(tmp_path):
    card = render_model_card(repo_folder(tmp_path, weights_kind="random"), CardSettings(model_name="m"))
    assert "**These weights are a random initialisation. Nothing here was trained.**" in str(card)
    assert "random-weights" in card.data.tags
    assert "mean nothing until it is pretrained" in str(card)


@pytest.mark.parametrize("size", ["base", "large"])
def test_the_papers_backbone_gets_the_interpretation_notes(tmp_path, size):
    layers = AutoBertZeroConfig.from_preset("autobert-zero", size, hidden_size=32, num_attention_heads=2).layers
    assert paper_backbone_size(layers) == size
    text = str(render_model_card(repo_folder(tmp_path, layers=layers), CardSettings(model_name="m")))
    assert "read as `scale` (x/√d_h)" in text and "read as pass-through" in text
    assert ("Appendix D.2" in text) == (size == "large")


def test_a_malformed_results_file_is_an_error_naming_it(tmp_path):
    folder = repo_folder(tmp_path, **{GLUE_RESULTS: {"accuracy": 0.5}})  # a per-run file, not the GLUE summary
    with pytest.raises(CardError, match=r"results/glue_results.json: expected an object with the keys \['best'\]"):
        render_model_card(folder, CardSettings(model_name="m"))
    (folder / RESULTS_DIR / GLUE_RESULTS).write_text("{not json")
    with pytest.raises(CardError, match="glue_results.json: not valid JSON"):
        render_model_card(folder, CardSettings(model_name="m"))


def test_losses_stand_beside_the_loss_of_a_uniform_guess(tmp_path):
    text = str(render_model_card(full_folder(tmp_path), CardSettings(model_name="m")))
    # vocabulary of 223 tokens: MLM ln 223 = 5.4072, the total loss ln 223 + ln 2 = 6.1003; NSP ln 2 = 0.6931
    assert "| eval_mlm_loss | 6.9876 | 5.4072 |" in text and "| train_loss | 6.4321 | 6.1003 |" in text
    assert "NSP: ln 2 over two classes; MLM: ln V over the vocabulary of 223 tokens" in text


def glue_summary(examples: dict[str, int], demo: bool) -> dict:
    run = {"run": "lr2e-05_wd0.01", "score": 0.52, "metrics": {"accuracy": 0.52}, "initialised_from": "ckpt",
           "examples": examples, "majority_class_metrics": {"accuracy": 0.51}, "model_dir": "runs/glue/rte/lr2e-05_wd0.01"}
    return {"data": {"data_dir": "/data/glue", "hub_dataset": None, "demo_data": demo},
            "runs": {"rte": {run["run"]: run["metrics"]}}, "best": {"rte": run}, "glue_average": 52.0, "glue_average_is_partial": True}


def test_a_demo_subset_and_a_demo_size_pretraining_say_so_without_any_run_record(tmp_path):
    folder = repo_folder(
        tmp_path,
        **{GLUE_RESULTS: glue_summary({"train": 400, "validation": 100}, demo=True),
           PRETRAINING_RESULTS: {**PRETRAINING, "data": {"train_files": ["demo_data/wikitext-2-raw/wiki.demo.raw"], "demo_data": True}},
           PRETRAINING_STATE: {"global_step": 30, "train_batch_size": 8}},
    )
    card = render_model_card(folder, CardSettings(model_name="m"))
    (result,) = card.data.eval_results
    assert result.dataset_name == "GLUE RTE (bundled demo subset: the first 100 of 277 dev examples)"
    assert result.dataset_split == "validation[:100]" and result.metric_value == 52.0
    assert "demo" in card.data.tags
    text = str(card)
    assert "| RTE | accuracy | 52.00 | 51.00 | 100 of 277 |" in text  # beside the majority class, with the count
    assert "a demo-size run" in text and "fewer than BERT's 10,000 warm-up steps" in text
    assert "A demonstration, not a usable model" in text and "bundled demo text" in text


def test_full_dev_sets_after_a_real_pretraining_are_not_called_a_demo(tmp_path):
    folder = repo_folder(
        tmp_path,
        **{GLUE_RESULTS: glue_summary({"train": 2490, "validation": 277}, demo=False),
           PRETRAINING_RESULTS: {**PRETRAINING, "data": {"train_files": ["corpus.txt"], "demo_data": False}},
           PRETRAINING_STATE: {"global_step": 100_000}},
    )
    card = render_model_card(folder, CardSettings(model_name="m"))
    (result,) = card.data.eval_results
    assert (result.dataset_name, result.dataset_split) == ("GLUE RTE", "validation")
    assert "demo" not in card.data.tags and "demo" not in str(card).lower().replace("autobert-zero", "")


def test_how_to_use_loads_from_a_path_that_exists_and_has_a_pipeline_example(tmp_path):
    local = render_model_card(repo_folder(tmp_path), CardSettings(model_name="m", local_path="outputs/hub/m"))
    assert 'path = "outputs/hub/m"  # this folder, relative to the directory it was published from' in str(local)
    assert 'fill_mask = pipeline("fill-mask", model=path, trust_remote_code=True)' in str(local)
    pushed = render_model_card(repo_folder(tmp_path), CardSettings(model_name="m", repo_id="org/m", local_path="outputs/hub/m"))
    assert 'path = "org/m"\n' in str(pushed)


def test_a_search_on_the_demo_data_says_so(tmp_path):
    settings = {"evaluator": "biws", "proxy": "glue", "train_files": ["demo_data/wikitext-2-raw/wiki.demo.raw"],
                "glue_data_dir": "demo_data/glue", "demo_data": True, "pretraining_steps": 15, "candidates": 8}
    card = render_model_card(repo_folder(tmp_path, weights_kind="search", **{SEARCH_RESULT: SEARCH, SEARCH_SETTINGS: settings}),
                             CardSettings(model_name="m"))
    assert "demo" in card.data.tags
    assert "on the bundled demo data after 15 pretraining steps each (the paper: 40,000)" in str(card)
