"""The whole pipeline on the bundled demo data (`demo_data/`, see its PROVENANCE.md), in minutes on 2 CPU cores:

    python scripts/quickstart.py [--output_dir outputs/quickstart] [--overwrite_output_dir] [--smoke]

1. a tiny OP-NAS search with BIWS weight sharing (`search/configs/tiny.yaml`: held-out MLM loss proxy), the best
   candidate exported;
2. that architecture pretrained from scratch at a larger width (MLM + NSP) on the demo WikiText-2 prefix;
3. GLUE finetuning on the demo SST-2 subset;
4. a complete Hub repo folder (weights, code, tokenizer, model card, plots), reloaded in a fresh process
   with `trust_remote_code`.

Each stage's arguments are written to OUTPUT_DIR/configs/ and run exactly as its script would run them; the
commands and timings go to OUTPUT_DIR/run_record.json and into the model card. `--smoke` uses tiny budgets
(under a minute) to check that every stage runs.
"""

from publishing.arguments import QuickstartArguments
from publishing.pipeline import run_quickstart
from training.arguments import parse_script_arguments


def main(argv: list[str] | None = None) -> None:
    (arguments,) = parse_script_arguments((QuickstartArguments,), argv)
    run_quickstart(arguments)


if __name__ == "__main__":
    main()
