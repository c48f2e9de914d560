"""Pretrain AutoBERT-Zero (any preset or config.json) or the BERT baseline with MLM + NSP on raw text.

    python scripts/pretrain.py --tokenizer ../shared/data/vocab/bert-base-uncased-vocab.txt \
        --train_files ../shared/data/wikitext-2-raw/wiki.valid.raw \
        --validation_files ../shared/data/wikitext-2-raw/wiki.test.raw \
        --architecture autobert-zero --size small --output_dir runs/pretrain-autobert-zero --report_to tensorboard
    python scripts/pretrain.py config.yaml            # the same arguments from a .json / .yaml file
    accelerate launch scripts/pretrain.py ...          # multi-GPU / multi-node through Accelerate's config

`--architecture transformers-bert` trains `transformers.BertForPreTraining` at the same size, on the same
data, with the same settings. `--resume_from_checkpoint last` continues from the newest checkpoint in
`--output_dir`. Every `TrainingArguments` option applies; defaults follow BERT (lr 1e-4, 10k warm-up steps,
linear decay, weight decay 0.01).
"""

import logging

from training.arguments import (
    PretrainingArguments,
    PretrainingDataArguments,
    PretrainingModelArguments,
    parse_script_arguments,
)
from training.runners import run_pretraining


def main(argv: list[str] | None = None) -> None:
    model_arguments, data_arguments, arguments = parse_script_arguments(
        (PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=arguments.get_process_log_level()
    )
    result = run_pretraining(model_arguments, data_arguments, arguments)
    print({name: value for name, value in result.metrics.items() if "loss" in name})


if __name__ == "__main__":
    main()
