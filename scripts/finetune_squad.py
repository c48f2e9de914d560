"""Finetune a pretrained checkpoint on SQuAD v1.1 or v2.0 (official JSON) and report official EM / F1.

    python scripts/finetune_squad.py --model_name_or_path runs/pretrain-autobert-zero \
        --train_file train-v1.1.json --validation_file ../shared/data/squad/dev-v1.1.json --output_dir runs/squad
    python scripts/finetune_squad.py config.yaml

Writes `predictions.json` in the official format (and, for v2.0, `null_odds.json`, with the no-answer
threshold chosen on the validation file) and `eval_results.json`.
"""

import json
import logging

from training.arguments import SquadArguments, SquadTrainingArguments, parse_script_arguments
from training.squad import run_squad


def main(argv: list[str] | None = None) -> None:
    squad_arguments, arguments = parse_script_arguments((SquadArguments, SquadTrainingArguments), argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=arguments.get_process_log_level()
    )
    print(json.dumps(run_squad(squad_arguments, arguments), indent=2))


if __name__ == "__main__":
    main()
