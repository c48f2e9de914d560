"""Build a complete Hugging Face Hub repo folder (and, with --push, upload it) for AutoBERT-Zero models.

    python scripts/publish.py --checkpoint runs/pretrain-autobert-zero --output_dir outputs/hub \
        --glue_results runs/glue/glue_results.json [--push --repo_id ORG/NAME]
    python scripts/publish.py --search_dir runs/opnas-tiny --candidates 3 --output_dir outputs/hub
    python scripts/publish.py publish.yaml             # the same arguments from a .json / .yaml file

Each folder (OUTPUT_DIR/NAME) holds safetensors weights, `config.json` with the full `auto_map`, the modeling
code, the tokenizer, `README.md` (the model card), `architecture.png` and `results/` (the JSON files every
number of the card is read from). `--search_dir` publishes the top `--candidates` of a search, each with its
own card. `--push` uploads with `huggingface_hub` (token from `hf auth login` or `HF_TOKEN`); when that fails
(offline, no token, no network) the error says why and the folders stay complete on disk.
"""

import sys

from publishing.arguments import PublishArguments
from publishing.hub import PublishError
from publishing.model_card import CardError
from publishing.publish import run_publish
from training.arguments import parse_script_arguments


def main(argv: list[str] | None = None) -> None:
    try:
        (arguments,) = parse_script_arguments((PublishArguments,), argv)
        published = run_publish(arguments)
    except (PublishError, CardError, ValueError, FileNotFoundError) as error:
        sys.exit(f"publish: error: {error}")
    for repo in published:
        print(f"{repo.folder}" + (f" -> {repo.url}" if repo.url else ""))


if __name__ == "__main__":
    main()
