"""Token uniformity per layer (the paper's Figure 5): relative norm of the residual and average pairwise cosine
similarity of the token representations of each sentence, for any checkpoints, plotted side by side.

    python scripts/token_uniformity.py --checkpoints outputs/scaled/autobert-zero-base runs/bert-base \
        --sentences_file ../shared/data/glue/STS-B/dev.tsv --output_dir outputs/token_uniformity

Checkpoints are directories or Hub ids of any encoder that returns hidden states (AutoBERT-Zero through
`trust_remote_code`, BERT, ...). Without `--sentences_file`: STS-B dev when `../shared/data` sits beside the
repository, else the bundled SST-2 dev subset. Writes `token_uniformity.json` and `token_uniformity.png`.
"""

import json

from publishing.arguments import TokenUniformityArguments
from publishing.token_uniformity import run_token_uniformity
from training.arguments import parse_script_arguments


def main(argv: list[str] | None = None) -> None:
    (arguments,) = parse_script_arguments((TokenUniformityArguments,), argv)
    summary = run_token_uniformity(arguments)
    last_layers = {label: result["layers"][-1] for label, result in summary["checkpoints"].items()}
    print(json.dumps({"sentences_file": summary["sentences_file"], "last_layer": last_layers}, indent=2))
    print(f"plot and numbers in {arguments.output_dir}")


if __name__ == "__main__":
    main()
