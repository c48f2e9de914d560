"""Finetune a pretrained checkpoint on SQuAD v1.1 or v2.0 (official JSON) and report official EM / F1.

    python scripts/finetune_squad.py --model_name_or_path runs/pretrain-autobert-zero \
        --train_file demo_data/squad/v1.1/train.json --validation_file demo_data/squad/v1.1/dev.json --output_dir runs/squad
    python scripts/finetune_squad.py config.yaml [key=value ...] [--flag value ...]

The full data: `train-v1.1.json` / `dev-v1.1.json` or `train-v2.0.json` / `dev-v2.0.json` from
https://rajpurkar.github.io/SQuAD-explorer/ (the bundled `demo_data/squad/` holds a few articles, see its
PROVENANCE.md). Writes `predictions.json` in the official format (and, for v2.0, `null_odds.json`, with the
no-answer threshold chosen on the validation file), `eval_results.json` (scores 0-100, as the official
scripts print them), the fine-tuned model, and every training log record to `training.log` (`--verbose`
prints them too).
"""

import json
from pathlib import Path

from training.arguments import ConsoleArguments, SquadArguments, SquadTrainingArguments, parse_script_arguments
from training.console import configure_logging
from training.squad import run_squad


def main(argv: list[str] | None = None) -> None:
    squad_arguments, arguments, console = parse_script_arguments((SquadArguments, SquadTrainingArguments, ConsoleArguments), argv)
    configure_logging(console.verbose, Path(arguments.output_dir) / "training.log", arguments.should_log)
    metrics = run_squad(squad_arguments, arguments)
    if arguments.should_log:
        print(json.dumps({name: round(value, 2) for name, value in metrics.items()}, indent=2))


if __name__ == "__main__":
    main()
