"""Tiny end-to-end runs: pretrain → GLUE → SQuAD with losses going down, the scripts from config files,
resuming, and the `Trainer` details (loss scaling, MLM and NSP losses logged apart)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import (
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
    TrainingArguments,
)

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroForPreTraining
from training.benchmark import benchmark_pretraining, format_results
from training.glue import finetune_glue
from training.models import build_pretraining_model, parse_config_overrides, pretraining_config, task_model
from training.pretraining_data import PretrainingCollator, build_pretraining_dataset
from training.runners import pretrain
from training.squad import finetune_squad
from training.tokenization import load_tokenizer
from training.trainers import PretrainingTrainer


REPO = Path(__file__).resolve().parents[1]
VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"  # words of these tests + characters
COLOURS = "red green blue yellow black white orange purple".split()
ANIMALS = "cat dog fox owl bear wolf hare deer".split()
PLACES = "river forest hill field lake valley meadow garden".split()
TINY_LAYERS = [
    {"type": "conv", "kernel_size": 3},
    {
        "type": "attention",
        "program": "matmul(softmax(scale(matmul(Q, transpose(neg(logsigmoid(neg(K))))))), add(Q, K))",
    },
]
TINY_SIZES = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


def _sentence(rng: np.random.Generator) -> str:
    return f"The {rng.choice(COLOURS)} {rng.choice(ANIMALS)} lives by the {rng.choice(PLACES)} ."


class LossRecorder(TrainerCallback):
    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append(dict(logs))


def _decreased(logs: list[dict]) -> bool:
    losses = [entry["loss"] for entry in logs]
    return len(losses) >= 4 and np.mean(losses[-2:]) < np.mean(losses[:2])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A plain-text corpus, an RTE-style GLUE folder and a SQuAD v2.0 file."""
    root = tmp_path_factory.mktemp("workspace")
    rng = np.random.default_rng(0)
    corpus = "\n\n".join(" ".join(_sentence(rng) for _ in range(8)) for _ in range(40)) + "\n"
    (root / "corpus.txt").write_text(corpus)

    rte = root / "glue" / "RTE"
    rte.mkdir(parents=True)
    for split, count in (("train", 64), ("dev", 16), ("test", 8)):
        rows = ["index\tsentence1\tsentence2" + ("" if split == "test" else "\tlabel")]
        for index in range(count):
            entailed = index % 2 == 0
            premise = _sentence(rng)
            hypothesis = ("Yes it is " if entailed else "No it is not ") + str(rng.choice(COLOURS)) + " ."
            label = "" if split == "test" else "\t" + ("entailment" if entailed else "not_entailment")
            rows.append(f"{index}\t{premise}\t{hypothesis}{label}")
        (rte / f"{split}.tsv").write_text("\n".join(rows) + "\n")

    paragraphs = []
    for article in range(6):
        animals = [str(animal) for animal in rng.permutation(ANIMALS)[:3]]
        colours = [str(colour) for colour in rng.permutation(COLOURS)[:3]]
        context = " ".join(f"The {animal} is {colour} ." for animal, colour in zip(animals, colours))
        qas = [
            {
                "id": f"a{article}q{index}",
                "question": f"What colour is the {animal} ?",
                "answers": [{"text": colour, "answer_start": context.index(f"{animal} is {colour}") + len(animal) + 4}],
                "is_impossible": False,
            }
            for index, (animal, colour) in enumerate(zip(animals, colours))
        ]
        absent = next(animal for animal in ANIMALS if animal not in animals)
        qas.append(
            {
                "id": f"a{article}none",
                "question": f"What colour is the {absent} ?",
                "answers": [],
                "is_impossible": True,
            }
        )
        paragraphs.append({"context": context, "qas": qas})
    squad = {"version": "v2.0", "data": [{"title": "Animals", "paragraphs": paragraphs}]}
    (root / "squad.json").write_text(json.dumps(squad))

    return root


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(VOCAB)


def tiny_pretraining_model(tokenizer, **overrides) -> AutoBertZeroForPreTraining:
    torch.manual_seed(0)
    config = AutoBertZeroConfig(layers=TINY_LAYERS, vocab_size=len(tokenizer), **{**TINY_SIZES, **overrides})
    return AutoBertZeroForPreTraining(config)


QUIET = {"report_to": [], "disable_tqdm": True, "save_strategy": "no", "use_cpu": True}


def test_pretrain_then_glue_then_squad_losses_decrease(workspace, tokenizer, tmp_path):
    pairs = build_pretraining_dataset(
        workspace / "corpus.txt", tokenizer, max_seq_length=32, cache_dir=str(tmp_path / "cache")
    )
    model = tiny_pretraining_model(tokenizer)
    result = pretrain(
        model, tokenizer, pairs, tmp_path / "pretrained", eval_dataset=pairs.select(range(32)),
        max_steps=40, learning_rate=2e-3, warmup_steps=4, logging_steps=5, per_device_train_batch_size=16, **QUIET,
    )  # fmt: skip
    logs = [entry for entry in result.log_history if "loss" in entry]
    assert _decreased(logs), logs
    for entry in logs:  # the two losses are logged separately and add up to the total
        assert entry["mlm_loss"] + entry["nsp_loss"] == pytest.approx(entry["loss"], abs=2e-3)
    assert result.metrics["eval_mlm_loss"] + result.metrics["eval_nsp_loss"] == pytest.approx(
        result.metrics["eval_loss"], abs=2e-3
    )
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path / "pretrained")
    assert torch.equal(
        reloaded.autobert_zero.embeddings.word_embeddings.weight, model.autobert_zero.embeddings.word_embeddings.weight
    )
    assert (
        AutoTokenizer.from_pretrained(tmp_path / "pretrained")("The red cat")["input_ids"]
        == tokenizer("The red cat")["input_ids"]
    )

    glue_logs = LossRecorder()
    metrics = finetune_glue(
        tmp_path / "pretrained", "rte", workspace / "glue", tmp_path / "rte", max_seq_length=32,
        max_steps=40, learning_rate=2e-3, warmup_steps=0.1, logging_steps=5, per_device_train_batch_size=16,
        callbacks=[glue_logs], **QUIET,
    )  # fmt: skip
    assert _decreased(glue_logs.logs), glue_logs.logs
    assert set(metrics) == {"accuracy"} and 0.0 <= metrics["accuracy"] <= 1.0
    submission = (tmp_path / "rte" / "RTE.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 9
    assert all(line.split("\t")[1] in ("entailment", "not_entailment") for line in submission[1:])
    assert json.loads((tmp_path / "rte" / "eval_results.json").read_text()) == metrics

    before = {name: value.clone() for name, value in model.state_dict().items()}
    squad_logs = LossRecorder()
    metrics = finetune_squad(
        model, workspace / "squad.json", workspace / "squad.json", tmp_path / "squad", tokenizer=tokenizer,
        max_seq_length=48, doc_stride=8, max_query_length=12, num_train_epochs=12, learning_rate=2e-3,
        warmup_steps=0.1, logging_steps=5, per_device_train_batch_size=8, save_model=False, callbacks=[squad_logs],
        **QUIET,
    )  # fmt: skip
    assert _decreased(squad_logs.logs), squad_logs.logs
    assert all(
        torch.equal(value, before[name]) for name, value in model.state_dict().items()
    )  # the source is untouched
    assert {"exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1", "best_f1_thresh"} <= set(metrics)
    assert metrics["f1"] == pytest.approx(metrics["best_f1"])
    predictions = json.loads((tmp_path / "squad" / "predictions.json").read_text())
    null_odds = json.loads((tmp_path / "squad" / "null_odds.json").read_text())
    assert (
        set(predictions) == set(null_odds)
        and len(predictions) == 24
        and all(isinstance(text, str) for text in predictions.values())
    )


def _run_script(name: str, argv: list[str]) -> None:
    runpy.run_path(str(REPO / "scripts" / name), run_name="script")["main"](argv)


def test_scripts_run_from_yaml_and_json_files_and_resume(workspace, tmp_path):
    pretrain_config = {
        "tokenizer": str(VOCAB),
        "train_files": [str(workspace / "corpus.txt")],
        "config_overrides": json.dumps({"layers": TINY_LAYERS, **TINY_SIZES}),
        "max_seq_length": 32,
        "dataset_cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "pretrained"),
        "max_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
    }
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(pretrain_config))
    _run_script("pretrain.py", [str(tmp_path / "pretrain.yaml")])
    assert (tmp_path / "pretrained" / "checkpoint-2").is_dir()
    (tmp_path / "resume.yaml").write_text(
        yaml.safe_dump({**pretrain_config, "max_steps": 3, "resume_from_checkpoint": "last"})
    )
    _run_script("pretrain.py", [str(tmp_path / "resume.yaml")])
    state = json.loads((tmp_path / "pretrained" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [entry["step"] for entry in state["log_history"] if "loss" in entry] == [
        1,
        2,
        3,
    ]

    glue_config = {
        "model_name_or_path": str(tmp_path / "pretrained"),
        "task_name": "rte",
        "data_dir": str(workspace / "glue"),
        "max_seq_length": 32,
        "learning_rates": [1e-3, 5e-4],
        "output_dir": str(tmp_path / "glue"),
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
    }
    (tmp_path / "glue.json").write_text(json.dumps(glue_config))
    _run_script("finetune_glue.py", [str(tmp_path / "glue.json")])
    summary = json.loads((tmp_path / "glue" / "glue_results.json").read_text())
    assert sorted(summary["runs"]["rte"]) == ["lr0.0005_wd0.01", "lr0.001_wd0.01"]
    assert summary["best"]["rte"]["run"] in summary["runs"]["rte"] and summary["glue_average_is_partial"]
    assert (tmp_path / "glue" / "submission" / "RTE.tsv").is_file()
    # the best run keeps its fine-tuned model (as transformers' run_glue does), the other only its results
    best = summary["best"]["rte"]
    (other,) = set(summary["runs"]["rte"]) - {best["run"]}
    assert best["model_dir"] == str(tmp_path / "glue" / "rte" / best["run"])
    assert AutoModelForSequenceClassification.from_pretrained(best["model_dir"]).config.num_labels == 2
    assert sorted(path.name for path in (tmp_path / "glue" / "rte" / other).iterdir()) == ["RTE.tsv", "eval_results.json"]
    assert best["examples"] == {"train": 64, "validation": 16, "test": 8} and best["majority_class_metrics"] == {"accuracy": 0.5}
    # the same file with a key=value override and a flag: results only
    _run_script("finetune_glue.py", [str(tmp_path / "glue.json"), f"output_dir={tmp_path / 'glue-results-only'}", "--no_save_best_model"])
    only = json.loads((tmp_path / "glue-results-only" / "glue_results.json").read_text())
    assert only["best"]["rte"]["model_dir"] is None and not list((tmp_path / "glue-results-only").rglob("model.safetensors"))

    _run_script(
        "finetune_squad.py",
        [
            "--model_name_or_path", str(tmp_path / "pretrained"), "--train_file", str(workspace / "squad.json"),
            "--validation_file", str(workspace / "squad.json"), "--max_seq_length", "48", "--doc_stride", "8",
            "--max_query_length", "12", "--max_steps", "2", "--output_dir", str(tmp_path / "squad"),
            "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
        ],
    )  # fmt: skip
    assert json.loads((tmp_path / "squad" / "eval_results.json").read_text())["total"] == 24


def test_gradient_accumulation_does_not_scale_the_loss(workspace, tokenizer, tmp_path):
    pairs = build_pretraining_dataset(
        workspace / "corpus.txt", tokenizer, max_seq_length=32, cache_dir=str(tmp_path / "cache")
    )
    losses = {}
    for accumulation in (1, 2):
        arguments = TrainingArguments(
            str(tmp_path / f"ga{accumulation}"), max_steps=1, learning_rate=0.0, logging_steps=1,
            per_device_train_batch_size=8 // accumulation, gradient_accumulation_steps=accumulation, **QUIET,
        )  # fmt: skip
        trainer = PretrainingTrainer(
            model=tiny_pretraining_model(
                tokenizer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, conv_kernel_dropout=0.0
            ),
            args=arguments,
            train_dataset=pairs.select(range(8)),
            data_collator=PretrainingCollator(tokenizer, mlm_probability=0.5, seed=0),
        )
        trainer.train()
        losses[accumulation] = trainer.state.log_history[0]["loss"]
    # the mean of two half-batch means, not their sum (transformers would double it for these models)
    assert losses[2] == pytest.approx(losses[1], rel=0.15)


def test_task_models_copy_the_backbone_and_configs_build_both_baselines(tokenizer):
    source = tiny_pretraining_model(tokenizer)
    classifier = task_model(
        source, AutoModelForSequenceClassification, num_labels=3, problem_type="single_label_classification"
    )
    for name, value in source.autobert_zero.state_dict().items():
        assert torch.equal(classifier.autobert_zero.state_dict()[name], value), name
    assert classifier.config.num_labels == 3 and source.config.num_labels == 2

    overrides = {
        "vocab_size": len(tokenizer),
        **parse_config_overrides("hidden_size=32,num_attention_heads=2,intermediate_size=64"),
    }
    bert = build_pretraining_model(pretraining_config("transformers-bert", "small", **overrides))
    same_size = build_pretraining_model(pretraining_config("bert", "small", **overrides))
    assert type(bert).__name__ == "BertForPreTraining" and type(same_size).__name__ == "AutoBertZeroForPreTraining"
    assert bert.num_parameters() == same_size.num_parameters()
    with pytest.raises(ValueError, match="unknown architecture 'gpt'"):
        pretraining_config("gpt")
    with pytest.raises(ValueError, match="key=value"):
        parse_config_overrides("hidden_size")


def test_benchmark_reports_throughput_and_memory_ratios_to_bert(workspace, tokenizer, tmp_path):
    results = benchmark_pretraining(
        tokenizer, workspace / "corpus.txt", size="small", batch_size=2, max_seq_length=32, steps=1, warmup_steps=1,
        cache_dir=str(tmp_path), device="cpu", **TINY_SIZES,
    )  # fmt: skip
    assert list(results["variants"]) == ["bert", "bert-preset", "autobert-zero"]
    assert results["variants"]["bert"]["throughput_ratio"] == 1.0
    assert all(entry["tokens_per_second"] > 0 for entry in results["variants"].values())
    table = format_results(results)
    assert "autobert-zero" in table and "× bert" in table


def test_pretraining_computes_mlm_logits_at_labelled_positions_only_where_only_the_loss_counts(
    workspace, tokenizer, tmp_path
):
    """The opt-in is switched on by the training library itself (the search pretrains through `pretrain` too),
    while training and in loss-only evaluation: saved checkpoints and `predict` keep the full logits of every
    transformers head."""
    pairs = build_pretraining_dataset(workspace / "corpus.txt", tokenizer, max_seq_length=32, cache_dir=str(tmp_path / "c"))
    model = tiny_pretraining_model(tokenizer)
    seen_shapes = []

    def record(module, args, output):
        seen_shapes.append((module.training, tuple(output.shape)))

    model.cls.predictions.register_forward_hook(record)
    trainer = PretrainingTrainer(
        model=model,
        args=TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, **QUIET),
        train_dataset=pairs.select(range(8)),
        eval_dataset=pairs.select(range(4)),
        data_collator=PretrainingCollator(tokenizer, seed=0),
    )
    trainer.train()
    assert seen_shapes and all(training and len(shape) == 2 for training, shape in seen_shapes)  # (num_labelled, vocab)
    seen_shapes.clear()
    metrics = trainer.evaluate()
    assert "eval_mlm_loss" in metrics and seen_shapes and all(len(shape) == 2 for _, shape in seen_shapes)
    seen_shapes.clear()
    predictions = trainer.predict(pairs.select(range(4)))
    assert seen_shapes and all(len(shape) == 3 for _, shape in seen_shapes)  # (batch, seq, vocab)
    assert predictions.predictions[0].ndim == 3
    trainer.save_model()
    assert model.config.sparse_prediction is False
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sparse_prediction"] is False


def test_sparse_prediction_block_restores_the_config_and_leaves_bert_alone(tokenizer):
    from training.trainers import sparse_mlm_prediction

    model = tiny_pretraining_model(tokenizer)
    with pytest.raises(RuntimeError), sparse_mlm_prediction(model):
        assert model.config.sparse_prediction is True
        raise RuntimeError("a failed step")
    assert model.config.sparse_prediction is False
    bert = build_pretraining_model(pretraining_config("transformers-bert", "small", vocab_size=len(tokenizer), **TINY_SIZES))
    with sparse_mlm_prediction(bert):
        assert not hasattr(bert.config, "sparse_prediction")
