"""What each GLUE task is: its files in the original TSV layout, columns, labels, metrics and submission files.

The TSV layout is the one GLUE's ``download_glue_data.py`` writes (``<TASK>/train.tsv``, ``dev.tsv``, ...);
the Hub layout is ``nyu-mll/glue``. Split names follow the Hub (``validation``, ``validation_matched``, ...)
whichever the source. Label lists are in the Hub's order, so a label id means the same thing from
either source. Metrics are the paper's (which are BERT's): CoLA Matthews correlation, MRPC and QQP F1
and accuracy, STS-B Pearson and Spearman, accuracy elsewhere, MNLI on matched and mismatched dev.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task. ``labels`` is ``None`` for regression (STS-B)."""

    name: str
    directory: str
    split_files: Mapping[str, str]
    text_columns: tuple[str, ...]
    label_column: str | None
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    score_metrics: tuple[str, ...]  # what ranks runs and enters the GLUE average
    submission_files: Mapping[str, str]
    hub_config: str
    hub_text_columns: tuple[str, ...]
    headerless_columns: tuple[str, ...] | None = None  # column names of train/dev files written without a header
    test_index_column: str = "index"
    label_range: tuple[float, float] | None = None  # the valid range of a regression label
    in_glue_average: bool = True
    split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # rows of each official split (nyu-mll/glue)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def validation_splits(self) -> dict[str, str]:
        """Validation split → suffix of its metric names (MNLI's mismatched dev reports ``accuracy_mm``)."""
        return {
            split: "_mm" if split.endswith("mismatched") else ""
            for split in self.split_files
            if split.startswith("validation")
        }


def _standard_splits() -> Mapping[str, str]:
    return MappingProxyType({"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"})


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
_MNLI_LABELS = ("entailment", "neutral", "contradiction")

GLUE_TASKS: Mapping[str, GlueTask] = MappingProxyType(
    {
        "cola": GlueTask(
            name="cola",
            directory="CoLA",
            split_files=_standard_splits(),
            text_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            metrics=("matthews_correlation",),
            score_metrics=("matthews_correlation",),
            submission_files=MappingProxyType({"test": "CoLA.tsv"}),
            hub_config="cola",
            split_sizes=MappingProxyType({"train": 8551, "validation": 1043, "test": 1063}),
            hub_text_columns=("sentence",),
            headerless_columns=("source", "label", "original_label", "sentence"),
        ),
        "sst2": GlueTask(
            name="sst2",
            directory="SST-2",
            split_files=_standard_splits(),
            text_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            metrics=("accuracy",),
            score_metrics=("accuracy",),
            submission_files=MappingProxyType({"test": "SST-2.tsv"}),
            hub_config="sst2",
            split_sizes=MappingProxyType({"train": 67349, "validation": 872, "test": 1821}),
            hub_text_columns=("sentence",),
        ),
        "mrpc": GlueTask(
            name="mrpc",
            directory="MRPC",
            split_files=_standard_splits(),
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            labels=_BINARY,
            metrics=("f1", "accuracy"),
            score_metrics=("f1",),
            submission_files=MappingProxyType({"test": "MRPC.tsv"}),
            hub_config="mrpc",
            split_sizes=MappingProxyType({"train": 3668, "validation": 408, "test": 1725}),
            hub_text_columns=("sentence1", "sentence2"),
        ),
        "stsb": GlueTask(
            name="stsb",
            directory="STS-B",
            split_files=_standard_splits(),
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            labels=None,
            metrics=("pearson", "spearman"),
            score_metrics=("spearman",),
            submission_files=MappingProxyType({"test": "STS-B.tsv"}),
            hub_config="stsb",
            split_sizes=MappingProxyType({"train": 5749, "validation": 1500, "test": 1379}),
            hub_text_columns=("sentence1", "sentence2"),
            label_range=(0.0, 5.0),
        ),
        "qqp": GlueTask(
            name="qqp",
            directory="QQP",
            split_files=_standard_splits(),
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            labels=_BINARY,
            metrics=("f1", "accuracy"),
            score_metrics=("f1",),
            submission_files=MappingProxyType({"test": "QQP.tsv"}),
            hub_config="qqp",
            split_sizes=MappingProxyType({"train": 363846, "validation": 40430, "test": 390965}),
            hub_text_columns=("question1", "question2"),
            test_index_column="id",
        ),
        "mnli": GlueTask(
            name="mnli",
            directory="MNLI",
            split_files=MappingProxyType(
                {
                    "train": "train.tsv",
                    "validation_matched": "dev_matched.tsv",
                    "validation_mismatched": "dev_mismatched.tsv",
                    "test_matched": "test_matched.tsv",
                    "test_mismatched": "test_mismatched.tsv",
                }
            ),
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=_MNLI_LABELS,
            metrics=("accuracy",),
            score_metrics=("accuracy", "accuracy_mm"),
            submission_files=MappingProxyType({"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}),
            hub_config="mnli",
            split_sizes=MappingProxyType({"train": 392702, "validation_matched": 9815, "validation_mismatched": 9832, "test_matched": 9796, "test_mismatched": 9847}),
            hub_text_columns=("premise", "hypothesis"),
        ),
        "qnli": GlueTask(
            name="qnli",
            directory="QNLI",
            split_files=_standard_splits(),
            text_columns=("question", "sentence"),
            label_column="label",
            labels=_ENTAILMENT,
            metrics=("accuracy",),
            score_metrics=("accuracy",),
            submission_files=MappingProxyType({"test": "QNLI.tsv"}),
            hub_config="qnli",
            split_sizes=MappingProxyType({"train": 104743, "validation": 5463, "test": 5463}),
            hub_text_columns=("question", "sentence"),
        ),
        "rte": GlueTask(
            name="rte",
            directory="RTE",
            split_files=_standard_splits(),
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_ENTAILMENT,
            metrics=("accuracy",),
            score_metrics=("accuracy",),
            submission_files=MappingProxyType({"test": "RTE.tsv"}),
            hub_config="rte",
            split_sizes=MappingProxyType({"train": 2490, "validation": 277, "test": 3000}),
            hub_text_columns=("sentence1", "sentence2"),
        ),
        "wnli": GlueTask(
            name="wnli",
            directory="WNLI",
            split_files=_standard_splits(),
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_BINARY,
            metrics=("accuracy",),
            score_metrics=("accuracy",),
            submission_files=MappingProxyType({"test": "WNLI.tsv"}),
            hub_config="wnli",
            split_sizes=MappingProxyType({"train": 635, "validation": 71, "test": 146}),
            hub_text_columns=("sentence1", "sentence2"),
            in_glue_average=False,  # BERT and the paper leave WNLI out of the average
        ),
        "ax": GlueTask(
            name="ax",
            directory="diagnostic",
            split_files=MappingProxyType({"test": "diagnostic.tsv"}),
            text_columns=("sentence1", "sentence2"),
            label_column=None,
            labels=_MNLI_LABELS,  # the diagnostic set is predicted by the MNLI model
            metrics=(),
            score_metrics=(),
            submission_files=MappingProxyType({"test": "AX.tsv"}),
            hub_config="ax",
            split_sizes=MappingProxyType({"test": 1104}),
            hub_text_columns=("premise", "hypothesis"),
            in_glue_average=False,
        ),
    }
)

# The finetuning order of "all": MNLI first, so RTE, MRPC and STS-B can start from its checkpoint.
TRAINABLE_TASKS = ("mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte", "wnli")
MNLI_INITIALISED_TASKS = ("rte", "mrpc", "stsb")  # the paper's choice, following BERT-style recipes
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "diagnostic": "ax"}


def get_glue_task(name: str) -> GlueTask:
    """The task called ``name`` (case-insensitive; ``SST-2``, ``STS-B`` and ``diagnostic`` are accepted too)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; expected one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def parse_task_names(text: str) -> list[str]:
    """``"rte"``, ``"rte,mrpc"`` or ``"all"`` (the nine trainable tasks, MNLI first) as canonical names."""
    if text.strip().lower() == "all":
        return list(TRAINABLE_TASKS)
    names = [get_glue_task(part.strip()).name for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"task_name: expected a task, a comma-separated list of tasks, or 'all', got {text!r}")
    if "ax" in names:
        raise ValueError("task 'ax' (the diagnostic set) has no training data: run 'mnli', which also writes AX.tsv")
    return sorted(dict.fromkeys(names), key=TRAINABLE_TASKS.index)
