"""The publishing scripts' arguments: `HfArgumentParser` dataclasses (command line or one .json/.yaml file,
read with `training.arguments.parse_script_arguments`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modeling_autobert_zero.architecture import SIZE_PRESETS


@dataclass
class PublishArguments:
    output_dir: str = field(metadata={"help": "Where the repo folder(s) are written: OUTPUT_DIR/NAME."})
    checkpoint: str | None = field(
        default=None, metadata={"help": "A trained AutoBERT-Zero checkpoint directory (e.g. from scripts/pretrain.py)."}
    )
    search_dir: str | None = field(
        default=None, metadata={"help": "A search's output_dir: publish its top --candidates architectures instead."}
    )
    candidates: int = field(default=1, metadata={"help": "With --search_dir: how many of the best to publish."})
    name: str | None = field(
        default=None, metadata={"help": "Model name (default: the checkpoint's or search's folder name)."}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "vocab.txt or tokenizer dir (default: the checkpoint's)."})
    pretraining_results: str | None = field(
        default=None, metadata={"help": "pretraining_results.json (default: the checkpoint's, when present)."}
    )
    glue_results: str | None = field(
        default=None, metadata={"help": "glue_results.json written by scripts/finetune_glue.py for this checkpoint."}
    )
    squad_results: str | None = field(
        default=None, metadata={"help": "eval_results.json written by scripts/finetune_squad.py for this checkpoint."}
    )
    search_result: str | None = field(
        default=None,
        metadata={"help": "search_result.json of this architecture from search/export.py (default: the checkpoint's)."},
    )
    search_plots: str | None = field(
        default=None, metadata={"help": "A folder of search/plots.py figures to include (best_so_far.png, op_priority.png)."}
    )
    run_record: str | None = field(
        default=None, metadata={"help": "run_record.json with the exact commands (written by scripts/quickstart.py)."}
    )
    license: str = field(default="apache-2.0", metadata={"help": "License id for the card's metadata."})
    datasets: list[str] | None = field(
        default=None, metadata={"help": "Hub dataset ids for the metadata (default: derived from the results)."}
    )
    flops_seq_length: int = field(default=128, metadata={"help": "Sequence length of the FLOPs count in the card."})
    card_template: str | None = field(default=None, metadata={"help": "A Jinja card template (default: model_cards/autobert_zero.md)."})
    push: bool = field(default=False, metadata={"help": "Push the folder(s) to the Hub (needs --repo_id and a token)."})
    repo_id: str | None = field(
        default=None, metadata={"help": "ORG/NAME on the Hub; several candidates get the suffix -rank01, -rank02, ..."}
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    seed: int = field(default=0, metadata={"help": "Seeds the weights of candidates searched without weight sharing."})

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.search_dir is None):
            raise ValueError("give exactly one of --checkpoint (a trained checkpoint) or --search_dir (a search's output)")
        if self.candidates < 1:
            raise ValueError(f"--candidates: expected 1 or more, got {self.candidates}")
        if self.push and not self.repo_id:
            raise ValueError("--push needs --repo_id ORG/NAME")


@dataclass
class ScaleArguments:
    architecture: str = field(
        default="autobert-zero",
        metadata={"help": "A checkpoint directory or config.json (e.g. an exported search result), or a preset name."},
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "vocab.txt or tokenizer dir (default: the architecture checkpoint's)."}
    )
    output_dir: str = field(default="outputs/scaled", metadata={"help": "Checkpoints go to OUTPUT_DIR/autobert-zero-SIZE."})
    sizes: list[str] = field(default_factory=lambda: ["small", "base", "large"], metadata={"help": "Sizes to build."})
    trained_checkpoints: list[str] = field(
        default_factory=list,
        metadata={"help": "Pretrained checkpoints of this architecture: one that matches a size gives its weights; "
                          "others are named in the cards as trained at another scale."},
    )
    name_prefix: str = field(default="autobert-zero", metadata={"help": "Checkpoints are named PREFIX-SIZE."})
    seed: int = field(default=0, metadata={"help": "Seeds the random initialisation."})
    flops_seq_length: int = field(default=128, metadata={"help": "Sequence length of the FLOPs count in the cards."})
    push: bool = field(default=False, metadata={"help": "Push each checkpoint to ORGANIZATION/PREFIX-SIZE."})
    organization: str | None = field(default=None, metadata={"help": "Hub user or organization to push to."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repos as private."})

    def __post_init__(self) -> None:
        unknown = [size for size in self.sizes if size not in SIZE_PRESETS]
        if unknown or not self.sizes:
            raise ValueError(f"--sizes: expected some of {list(SIZE_PRESETS)}, got {self.sizes}")
        if self.push and not self.organization:
            raise ValueError("--push needs --organization (the Hub user or organization)")


@dataclass
class TokenUniformityArguments:
    checkpoints: list[str] = field(metadata={"help": "Checkpoint directories or Hub ids to compare (any BERT-like encoder)."})
    labels: list[str] | None = field(default=None, metadata={"help": "Legend labels (default: folder names)."})
    sentences_file: str | None = field(
        default=None,
        metadata={"help": "A GLUE TSV file whose sentences are encoded (default: STS-B dev from ../shared/data when "
                          "present, else the bundled SST-2 dev subset)."},
    )
    task_name: str | None = field(
        default=None, metadata={"help": "The GLUE task of --sentences_file (default: from its folder name, e.g. STS-B)."}
    )
    max_sentences: int = field(default=512, metadata={"help": "Encode at most this many sentences."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer sentences are truncated."})
    batch_size: int = field(default=32, metadata={"help": "Sentences per forward pass."})
    output_dir: str = field(
        default="outputs/token_uniformity", metadata={"help": "Writes token_uniformity.json and token_uniformity.png."}
    )


@dataclass
class QuickstartArguments:
    output_dir: str = field(default="outputs/quickstart", metadata={"help": "Where every stage writes its outputs."})
    demo_data: str = field(
        default=str(Path(__file__).resolve().parents[1] / "demo_data"),
        metadata={"help": "The bundled demo data folder (vocab.txt, wikitext-2-raw/, glue/)."},
    )
    glue_task: str = field(default="sst2", metadata={"help": "The GLUE task finetuned (and the search proxy's with glue)."})
    search_proxy: str = field(
        default="mlm_loss",
        metadata={
            "help": "How candidates are scored: mlm_loss (search/configs/tiny.yaml's held-out MLM loss, which separates "
                    "architectures at this size, README) or glue (the paper's; at demo budgets every candidate predicts "
                    "the majority class, so it ranks them at random).",
            "choices": ("mlm_loss", "glue"),
        },
    )
    smoke: bool = field(default=False, metadata={"help": "Tiny budgets (under a minute): checks that every stage runs."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an earlier quickstart's output_dir."})
    seed: int = field(default=0, metadata={"help": "Seeds the search, the training and the data order."})
    torch_threads: int = field(
        default=1,
        metadata={"help": "Intra-op threads. The demo models are tiny: a second thread only adds synchronisation."},
    )
    verbose: bool = field(
        default=False, metadata={"help": "Print every log line (each stage's, each training step's) on the console too."}
    )
