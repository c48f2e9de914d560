"""Pretraining throughput (tokens/s) and peak memory: AutoBERT-Zero vs transformers.BertForPreTraining.

    python scripts/benchmark_training.py --tokenizer ../shared/data/vocab/bert-base-uncased-vocab.txt \
        --train_files ../shared/data/wikitext-2-raw/wiki.valid.raw --size small --steps 10

Same size, data, batch and masks for every model, in one process; prints ratios to BERT (see
`training.benchmark` for the variants and how memory is measured) and the command that reproduces them.
"""

import logging
import shlex
import sys

from training.arguments import BenchmarkArguments, parse_script_arguments
from training.atomic_files import write_json_atomic
from training.benchmark import benchmark_pretraining, format_results
from training.models import parse_config_overrides
from training.tokenization import load_tokenizer


def main(argv: list[str] | None = None) -> None:
    (arguments,) = parse_script_arguments((BenchmarkArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    results = benchmark_pretraining(
        load_tokenizer(arguments.tokenizer),
        arguments.train_files,
        size=arguments.size,
        batch_size=arguments.batch_size,
        max_seq_length=arguments.max_seq_length,
        steps=arguments.steps,
        warmup_steps=arguments.warmup_steps,
        seed=arguments.seed,
        cache_dir=arguments.dataset_cache_dir,
        **parse_config_overrides(arguments.config_overrides),
    )
    print(format_results(results))
    print("rerun: python " + shlex.join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]))
    if arguments.output_file:
        write_json_atomic(arguments.output_file, results)


if __name__ == "__main__":
    main()
