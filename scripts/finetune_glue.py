"""Finetune a pretrained checkpoint on GLUE tasks; report dev scores and write GLUE submission files.

    python scripts/finetune_glue.py --model_name_or_path runs/pretrain-autobert-zero \
        --task_name rte --data_dir ../shared/data/glue --output_dir runs/glue
    python scripts/finetune_glue.py --model_name_or_path CKPT --task_name all --data_dir GLUE_DIR \
        --paper_grid --init_from_mnli --output_dir runs/glue-all
    python scripts/finetune_glue.py config.yaml

`--task_name` takes one task, a comma-separated list, or `all`. Omit `--data_dir` to load `nyu-mll/glue` from
the Hub. `--paper_grid` searches learning rate {1e-5, 1.5e-5, 2e-5, 3e-5, 4e-5, 5e-5} × weight decay {0.1,
0.01} and keeps the best dev score; `--init_from_mnli` (or `--mnli_checkpoint`) starts RTE, MRPC and STS-B
from an MNLI-finetuned model. Results: `<output_dir>/glue_results.json`, submissions in `<output_dir>/submission/`.
"""

import json
import logging

from training.arguments import FinetuningArguments, GlueArguments, parse_script_arguments
from training.glue import run_glue


def main(argv: list[str] | None = None) -> None:
    glue_arguments, arguments = parse_script_arguments((GlueArguments, FinetuningArguments), argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=arguments.get_process_log_level()
    )
    summary = run_glue(glue_arguments, arguments)
    print(json.dumps({"best": summary["best"], "glue_average": summary.get("glue_average")}, indent=2))


if __name__ == "__main__":
    main()
