"""The command line every script shares: a config file, `key=value` overrides and flags on top of it; and the
console: one progress bar per stage, every per-step log record in the log file, on the console only with
--verbose."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainingArguments

from search.config import ConfigError, load_config
from training.arguments import (
    ConsoleArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    PretrainingModelArguments,
    parse_script_arguments,
)
from training.console import STEP_LOGGER, configure_logging
from training.overrides import OverrideError, apply_overrides, parse_override, split_overrides
from training.trainers import MeanLossTrainer


REPOSITORY = Path(__file__).resolve().parents[1]
PRETRAINING = (PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments, ConsoleArguments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_steps=20", ("max_steps", 20)),
        ("learning_rate=1e-3", ("learning_rate", 1e-3)),  # YAML 1.1 reads 1e-3 as a string: a number here
        ("evaluator.biws.proxy=mlm_loss", ("evaluator.biws.proxy", "mlm_loss")),
        ("train_files=[a.txt, b.txt]", ("train_files", ["a.txt", "b.txt"])),
        ("weight_sharing=false", ("weight_sharing", False)),
        ("max_examples=null", ("max_examples", None)),
        ("run_name=", ("run_name", "")),
        ("config_overrides=hidden_size=64", ("config_overrides", "hidden_size=64")),
    ],
)
def test_an_override_is_a_key_and_a_yaml_value(text, expected):
    assert parse_override(text) == expected


def test_malformed_overrides_and_keys_into_values_are_errors_naming_them():
    for text in ("max_steps", "=3", "a..b=1", "--max_steps=3"):
        with pytest.raises(OverrideError, match="expected an override key=value"):
            parse_override(text)
    with pytest.raises(OverrideError, match=r"override model.hidden_size.x: model.hidden_size is 32, not a section"):
        apply_overrides({"model": {"hidden_size": 32}}, {"model.hidden_size.x": 1})
    assert apply_overrides({"a": {"b": 1}}, {"a.c.d": 2}) == {"a": {"b": 1, "c": {"d": 2}}}


def test_overrides_are_taken_out_wherever_they_stand_so_no_flag_swallows_one():
    rest, overrides = split_overrides(["--config", "x.yaml", "--resume", "max_evaluations=4", "--config_overrides", "a=1"],
                                      lambda key: key != "a")
    assert rest == ["--config", "x.yaml", "--resume", "--config_overrides", "a=1"]
    assert overrides == {"max_evaluations": 4}


def test_a_config_file_with_overrides_and_flags_flags_winning(tmp_path):
    settings = {"tokenizer": "demo_data/vocab.txt", "train_files": ["a.txt"], "output_dir": "runs/a", "max_steps": 5,
                "learning_rate": "1e-3", "report_to": "none"}
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(settings))
    model, data, training, console = parse_script_arguments(PRETRAINING, [
        str(tmp_path / "pretrain.yaml"), "max_steps=7", "train_files=b.txt", "--config_overrides", "hidden_size=64",
        "--max_steps", "9", "verbose=true",
    ])
    assert (model.tokenizer, model.config_overrides, data.train_files) == ("demo_data/vocab.txt", "hidden_size=64", ["b.txt"])
    assert (training.max_steps, training.learning_rate, training.output_dir, console.verbose) == (9, 1e-3, "runs/a", True)


def test_an_unknown_setting_in_a_file_or_on_the_command_line_is_an_error_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_text("tokenizer: v.txt\ntrain_files: [a]\nmax_stepz: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown argument 'max_stepz'; expected one of: .*max_steps"):
        parse_script_arguments(PRETRAINING, [str(tmp_path / "bad.yaml")])
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['max_stepz=3'\]"):
        parse_script_arguments(PRETRAINING, ["max_stepz=3", "--tokenizer", "v.txt", "--train_files", "a"])


def test_the_search_config_takes_dotted_overrides_and_names_a_wrong_one():
    config = load_config(REPOSITORY / "search" / "configs" / "tiny.yaml", {"evaluator.biws.pretraining.max_steps": 3})
    assert config.evaluator.biws.pretraining.max_steps == 3 and config.evaluator.biws.tokenizer == "demo_data/vocab-wikitext-demo.txt"
    with pytest.raises(ConfigError, match=r"tiny.yaml: unknown key evaluator.biws.pretraining.max_stepz"):
        load_config(REPOSITORY / "search" / "configs" / "tiny.yaml", {"evaluator.biws.pretraining.max_stepz": 3})


def _train_a_few_steps(tmp_path: Path, disable_tqdm: bool) -> None:
    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x, labels):
            return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}

    torch.manual_seed(0)
    data = [{"x": torch.randn(2), "labels": torch.tensor(1.0)} for _ in range(16)]
    arguments = TrainingArguments(str(tmp_path / "run"), max_steps=4, logging_steps=1, per_device_train_batch_size=4,
                                  report_to="none", disable_tqdm=disable_tqdm, save_strategy="no", use_cpu=True)
    MeanLossTrainer(model=Regression(), args=arguments, train_dataset=data).train()


@pytest.mark.parametrize("disable_tqdm", [False, True])  # the scripts' bar; the search's candidates (no bar)
def test_training_prints_no_line_per_step_but_logs_every_step_to_the_file(tmp_path, capfd, disable_tqdm):
    configure_logging(verbose=False, log_file=tmp_path / "training.log")
    _train_a_few_steps(tmp_path, disable_tqdm)
    console = capfd.readouterr()
    assert "'loss'" not in console.out + console.err and "step 1/4" not in console.out + console.err
    logged = (tmp_path / "training.log").read_text()
    assert [f"step {step}/4: loss" in logged for step in (1, 2, 3, 4)] == [True] * 4
    if not disable_tqdm:
        assert "loss=" in console.err  # the bar's postfix


def test_verbose_prints_every_step_too(tmp_path, capfd):
    configure_logging(verbose=True)
    _train_a_few_steps(tmp_path, disable_tqdm=True)
    assert sum(f"{STEP_LOGGER}: " in line for line in capfd.readouterr().err.splitlines()) == 5  # 4 steps, the summary


def test_a_library_user_who_configures_nothing_sees_no_step_lines(tmp_path, capfd):
    assert not [handler for handler in logging.getLogger().handlers if getattr(handler, "_installed_by_training", False)]
    _train_a_few_steps(tmp_path, disable_tqdm=True)
    assert "step 1/4" not in capfd.readouterr().err
