"""What training shows on the console: one progress bar per stage, every log record in the log file.

`Trainer` writes each log record (losses, learning rate, ...) as a line on the console: under its progress
bar, or with ``print`` when the bar is off (``disable_tqdm``, as in the search's candidates), so a search of
a few dozen candidates fills the console with hundreds of lines. The Trainers of this library instead show
the latest losses in their progress bar's postfix and send every record to the ``training.steps`` logger,
whose records reach the log file (and TensorBoard / ``trainer_state.json`` as usual) but the console only with
``--verbose``. `configure_logging` sets that up for a script; a library user who configures nothing sees
no per-step lines at all.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import datasets
import transformers
from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.trainer_utils import has_length


STEP_LOGGER = "training.steps"
# What the progress bar's postfix shows, when a record holds it (pretraining adds the MLM and NSP parts).
POSTFIX_KEYS = ("loss", "mlm_loss", "nsp_loss", "eval_loss", "train_loss")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

step_logger = logging.getLogger(STEP_LOGGER)


def _formatted(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class StepLogCallback(TrainerCallback):
    """Every `Trainer` log record as one line of the ``training.steps`` logger (main process only)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            fields = ", ".join(f"{name} {_formatted(value)}" for name, value in logs.items() if name != "total_flos")
            step_logger.info("%s step %d/%d: %s", args.output_dir, state.global_step, state.max_steps, fields)


class PostfixProgressCallback(ProgressCallback):
    """`ProgressCallback` that puts the latest losses in the bar's postfix instead of writing a line per
    record, and whose evaluation bars vanish when done: one bar per training run stays on the console."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {name: _formatted(logs[name]) for name in POSTFIX_KEYS if name in logs}
            if shown:
                self.training_bar.set_postfix(shown)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and self.prediction_bar is None and has_length(eval_dataloader):
            self.prediction_bar = tqdm(total=len(eval_dataloader), leave=False, dynamic_ncols=True, desc="evaluating")
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)


def use_console_callbacks(trainer) -> None:
    """Swap ``trainer``'s line-per-record console output (`ProgressCallback` / `PrinterCallback`) for
    `PostfixProgressCallback` (unless ``disable_tqdm``) and `StepLogCallback`."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StepLogCallback())
    if not trainer.args.disable_tqdm:
        trainer.add_callback(PostfixProgressCallback())


class _TqdmStreamHandler(logging.StreamHandler):
    """Writes through `tqdm.write`, so a log line never breaks a progress bar that is being drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise; the handler reports it as usual
            self.handleError(record)


class _WithoutStepRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(STEP_LOGGER)


def configure_logging(
    verbose: bool = False,
    log_file: str | os.PathLike | None = None,
    main_process: bool = True,
    console_level: int = logging.INFO,
) -> None:
    """Console logging for a script: ``console_level`` on the main process (at least WARNING on the others), without the
    per-step records and the libraries' progress bars (`datasets` preparation, `transformers` weight files)
    unless ``verbose``; with ``log_file``, every record of the main process goes there too. Replaces the
    handlers an earlier call installed; leaves other handlers alone."""
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if getattr(handler, "_installed_by_training", False)]:
        root.removeHandler(handler)
        handler.close()
    console = _TqdmStreamHandler(sys.stderr)
    console.setLevel(console_level if main_process else max(console_level, logging.WARNING))
    if not verbose:
        console.addFilter(_WithoutStepRecords())
    handlers: list[logging.Handler] = [console]
    if log_file is not None and main_process:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._installed_by_training = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    if not verbose:  # the libraries' own bars (dataset preparation, saving weights) are not stages
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
