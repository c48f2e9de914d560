"""Pretrain AutoBERT-Zero (any preset or config.json) or the BERT baseline with MLM + NSP on raw text.

    python scripts/pretrain.py --tokenizer demo_data/vocab.txt --train_files demo_data/wikitext-2-raw/wiki.demo.raw \
        --validation_files demo_data/wikitext-2-raw/wiki.demo-test.raw --architecture autobert-zero --size small \
        --max_steps 200 --per_device_train_batch_size 8 --max_seq_length 64 --logging_steps 10 \
        --output_dir runs/pretrain-autobert-zero
    python scripts/pretrain.py config.yaml [key=value ...] [--flag value ...]   # settings from a .json / .yaml file
    accelerate launch scripts/pretrain.py ...          # multi-GPU / multi-node through Accelerate's config

`--architecture transformers-bert` trains `transformers.BertForPreTraining` at the same size, on the same
data, with the same settings. `--resume_from_checkpoint last` continues from the newest checkpoint in
`--output_dir`. Every `TrainingArguments` option applies; defaults follow BERT (lr 1e-4, 10k warm-up steps,
linear decay, weight decay 0.01, 1M steps of 32 sequences of 128 tokens per device). The console shows one
progress bar with the latest losses; every log record goes to OUTPUT_DIR/training.log and TensorBoard
(`--verbose` prints them too).
"""

from pathlib import Path

from training.arguments import (
    ConsoleArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    PretrainingModelArguments,
    parse_script_arguments,
)
from training.console import configure_logging
from training.runners import run_pretraining


def main(argv: list[str] | None = None) -> None:
    model_arguments, data_arguments, arguments, console = parse_script_arguments(
        (PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments, ConsoleArguments), argv
    )
    configure_logging(console.verbose, Path(arguments.output_dir) / "training.log", arguments.should_log)
    result = run_pretraining(model_arguments, data_arguments, arguments)
    print({name: round(value, 4) for name, value in result.metrics.items() if "loss" in name})


if __name__ == "__main__":
    main()
