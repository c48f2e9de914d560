"""Finetune a pretrained checkpoint on GLUE tasks; report dev scores, keep the best model per task, write
GLUE submission files.

    python scripts/finetune_glue.py --model_name_or_path runs/pretrain-autobert-zero \
        --task_name rte,mrpc,sst2 --data_dir demo_data/glue --output_dir runs/glue
    python scripts/finetune_glue.py --model_name_or_path CKPT --task_name all --data_dir GLUE_DIR \
        --paper_grid --init_from_mnli --output_dir runs/glue-all
    python scripts/finetune_glue.py config.yaml [key=value ...] [--flag value ...]

`--task_name` takes one task, a comma-separated list, or `all`. Omit `--data_dir` to load `nyu-mll/glue` from
the Hub. `--paper_grid` searches learning rate {1e-5, 1.5e-5, 2e-5, 3e-5, 4e-5, 5e-5} × weight decay {0.1,
0.01} and keeps the best dev score; `--init_from_mnli` (or `--mnli_checkpoint`) starts RTE, MRPC and STS-B
from an MNLI-finetuned model. Results: `<output_dir>/glue_results.json` (with each task's best model folder;
`--no_save_best_model` keeps results only), submissions in `<output_dir>/submission/`, every training log
record in `<output_dir>/training.log` (`--verbose` prints them too).
"""

from pathlib import Path

from training.arguments import ConsoleArguments, FinetuningArguments, GlueArguments, parse_script_arguments
from training.console import configure_logging
from training.glue import run_glue
from training.glue_tasks import GLUE_TASKS
from training.metrics import percent


def main(argv: list[str] | None = None) -> None:
    glue_arguments, arguments, console = parse_script_arguments((GlueArguments, FinetuningArguments, ConsoleArguments), argv)
    configure_logging(console.verbose, Path(arguments.output_dir) / "training.log", arguments.should_log)
    summary = run_glue(glue_arguments, arguments)
    if not arguments.should_log:
        return
    print("best dev scores (0-100):")
    for task_name, best in summary["best"].items():
        scores = ", ".join(f"{metric} {percent(value)}" for metric, value in best["metrics"].items())
        baseline = ", ".join(f"{metric} {percent(value)}" for metric, value in best["majority_class_metrics"].items())
        model = f"; model in {best['model_dir']}" if best["model_dir"] else ""
        print(f"  {GLUE_TASKS[task_name].directory:<6} {scores}" + (f" (majority class: {baseline})" if baseline else "")
              + f" [{best['run']}{model}]")
    if "glue_average" in summary:
        scope = "these tasks only" if summary["glue_average_is_partial"] else "all tasks"
        print(f"  GLUE average ({scope}): {summary['glue_average']:.2f}")
    print(f"summary: {Path(arguments.output_dir) / 'glue_results.json'}")


if __name__ == "__main__":
    main()
