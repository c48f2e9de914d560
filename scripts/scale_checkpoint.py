"""Small / base / large checkpoints of one searched architecture (large: every block repeated in place, paper
Appendix D.2), each a complete Hub repo folder named autobert-zero-SIZE with its model card.

    python scripts/scale_checkpoint.py --architecture runs/opnas/export/rank01-candidate000123 \
        --tokenizer demo_data/vocab.txt --output_dir outputs/scaled
    python scripts/scale_checkpoint.py --architecture autobert-zero --tokenizer demo_data/vocab.txt \
        --trained_checkpoints runs/pretrain-autobert-zero-small [--push --organization ORG]

`--architecture` is a checkpoint directory or `config.json` (e.g. exported by `search/export.py`), or a preset
name. A `--trained_checkpoints` entry pretrained at exactly one of the sizes gives that size its weights; the
other sizes are a seeded random initialisation, and their cards say so in bold (and name the trained
checkpoints of other sizes). Every folder loads with `AutoModel.from_pretrained(folder, trust_remote_code=True)`.
"""

import sys

from publishing.arguments import ScaleArguments
from publishing.hub import PublishError
from publishing.scaling import run_scaling
from training.arguments import parse_script_arguments


def main(argv: list[str] | None = None) -> None:
    try:
        (arguments,) = parse_script_arguments((ScaleArguments,), argv)
        built = run_scaling(arguments)
    except (PublishError, ValueError, FileNotFoundError) as error:
        sys.exit(f"scale_checkpoint: error: {error}")
    for folder, url in built:
        print(f"{folder}" + (f" -> {url}" if url else ""))


if __name__ == "__main__":
    main()
