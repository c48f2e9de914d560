"""Token uniformity (the paper's Figure 5): how alike a layer makes the tokens of one sentence.

Stacked self-attention tends to map all tokens of a sentence to similar vectors (Dong et al., 2021, "Attention
is not all you need: pure attention loses rank doubly exponentially with depth"); the paper shows that its
searched hybrid backbone suffers less from this than BERT. Per layer (0 = the embedding output) and per
sentence, over its real tokens ``X`` (``n × d``, padding excluded):

- **relative norm of the residual** ``‖X − 1·x̄ᵀ‖_F / ‖X‖_F``, with ``x̄`` the mean token: ``1·x̄ᵀ`` is the
  closest matrix of identical rows in Frobenius norm, so the ratio is 0 when every token is the same vector;
- **average pairwise cosine similarity** of the ``n(n−1)/2`` pairs of distinct tokens: 1 for identical
  directions, about 0 for unrelated ones.

Both are averaged over the sentences (every sentence counts once, whatever its length).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from training.atomic_files import write_json_atomic  # noqa: E402
from training.glue import read_glue_tsv  # noqa: E402
from training.glue_tasks import GLUE_TASKS  # noqa: E402

from .arguments import TokenUniformityArguments  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
SHARED_STSB_DEV = REPO.parent / "shared" / "data" / "glue" / "STS-B" / "dev.tsv"
DEMO_SENTENCES = REPO / "demo_data" / "glue" / "SST-2" / "dev.tsv"
METRICS = {"relative_residual_norm": "relative norm of the residual", "mean_pairwise_cosine": "average pairwise cosine similarity"}


def relative_residual_norm(tokens: torch.Tensor) -> float:
    """``‖X − 1·x̄ᵀ‖_F / ‖X‖_F`` for the ``(n, d)`` token matrix ``X`` of one sentence."""
    tokens = tokens.double()
    norm = tokens.norm()
    if norm == 0:
        raise ValueError("relative_residual_norm: the token matrix is all zeros")
    return float((tokens - tokens.mean(dim=0, keepdim=True)).norm() / norm)


def mean_pairwise_cosine(tokens: torch.Tensor) -> float:
    """The mean cosine similarity over all pairs of distinct rows of ``tokens`` ``(n, d)``, ``n ≥ 2``."""
    count = tokens.shape[0]
    if count < 2:
        raise ValueError(f"mean_pairwise_cosine: needs at least 2 tokens, got {count}")
    unit = torch.nn.functional.normalize(tokens.double(), dim=-1)
    similarities = unit @ unit.T
    return float((similarities.sum() - similarities.diagonal().sum()) / (count * (count - 1)))


class UniformityAccumulator:
    """Sums both metrics per layer over batches of hidden states, to average over sentences at the end."""

    def __init__(self):
        self.sums: list[dict[str, float]] = []
        self.sentences = 0

    def add(self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> None:
        """``hidden_states``: one ``(batch, seq, hidden)`` tensor per layer; ``attention_mask``: ``(batch, seq)``."""
        if not self.sums:
            self.sums = [dict.fromkeys(METRICS, 0.0) for _ in hidden_states]
        if len(hidden_states) != len(self.sums):
            raise ValueError(f"expected hidden states of {len(self.sums)} layers, got {len(hidden_states)}")
        real = attention_mask.bool()
        for row in range(attention_mask.shape[0]):
            if int(real[row].sum()) < 2:
                continue  # no pair of tokens to compare
            self.sentences += 1
            for sums, layer in zip(self.sums, hidden_states):
                tokens = layer[row][real[row]]  # (real tokens, hidden)
                sums["relative_residual_norm"] += relative_residual_norm(tokens)
                sums["mean_pairwise_cosine"] += mean_pairwise_cosine(tokens)

    def result(self) -> dict[str, Any]:
        if self.sentences == 0:
            raise ValueError("no sentence with at least 2 tokens was measured")
        return {
            "num_sentences": self.sentences,
            "layers": [
                {"layer": index, **{name: value / self.sentences for name, value in sums.items()}}
                for index, sums in enumerate(self.sums)
            ],
        }


@torch.inference_mode()
def measure_token_uniformity(model, tokenizer, sentences: Sequence[str], batch_size: int = 32, max_length: int = 128, progress: bool = True) -> dict[str, Any]:
    """Both metrics for every layer of an encoder (anything that returns ``hidden_states``) on ``sentences``."""
    model.eval()
    accumulator = UniformityAccumulator()
    for start in tqdm(range(0, len(sentences), batch_size), desc="sentences", unit="batch", disable=not progress):
        batch = tokenizer(list(sentences[start : start + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        outputs = model(**batch.to(model.device), output_hidden_states=True)
        accumulator.add([layer.float().cpu() for layer in outputs.hidden_states], batch["attention_mask"].cpu())
    return accumulator.result()


def read_sentences(path: str | os.PathLike, task_name: str | None = None, max_sentences: int | None = None) -> list[str]:
    """The sentences of a labelled GLUE TSV file (both sentences of a pair), in file order.

    ``task_name`` defaults to the task whose folder the file is in (``STS-B/dev.tsv`` → ``stsb``).
    """
    path = Path(path)
    if task_name is None:
        by_directory = {task.directory: name for name, task in GLUE_TASKS.items()}
        task_name = by_directory.get(path.parent.name)
        if task_name is None:
            raise ValueError(f"{path}: cannot tell the GLUE task from the folder {path.parent.name!r}; pass task_name")
    columns, _ = read_glue_tsv(path, task_name, "validation")
    pairs = zip(columns["text_a"], columns["text_b"]) if "text_b" in columns else ((text,) for text in columns["text_a"])
    sentences = [sentence for pair in pairs for sentence in pair if sentence.strip()]
    return sentences[:max_sentences] if max_sentences is not None else sentences


def plot_token_uniformity(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Both metrics against the layer, side by side, one line per checkpoint."""
    figure, axes_pair = plt.subplots(1, 2, figsize=(10, 3.8))
    for axes, (metric, label) in zip(axes_pair, METRICS.items()):
        for name, result in results.items():
            layers = result["layers"]
            axes.plot([entry["layer"] for entry in layers], [entry[metric] for entry in layers], marker="o", markersize=3, label=name)
        axes.set_xlabel("layer (0 = embeddings)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    axes_pair[0].legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def default_sentences_file() -> Path:
    """STS-B dev (the paper's choice) when the shared data sits beside the repo, else the bundled SST-2 dev subset."""
    return SHARED_STSB_DEV if SHARED_STSB_DEV.is_file() else DEMO_SENTENCES


def run_token_uniformity(arguments: TokenUniformityArguments) -> dict[str, Any]:
    """`scripts/token_uniformity.py`: measure every checkpoint, write ``token_uniformity.json`` and ``.png``."""
    labels = arguments.labels or [Path(checkpoint).name for checkpoint in arguments.checkpoints]
    if len(labels) != len(arguments.checkpoints) or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {len(arguments.checkpoints)} distinct labels, one per checkpoint, got {labels}")
    sentences_file = Path(arguments.sentences_file) if arguments.sentences_file else default_sentences_file()
    sentences = read_sentences(sentences_file, arguments.task_name, arguments.max_sentences)
    results = {}
    for label, checkpoint in zip(labels, arguments.checkpoints):
        model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
        results[label] = {
            "checkpoint": str(checkpoint),
            **measure_token_uniformity(model, tokenizer, sentences, arguments.batch_size, arguments.max_seq_length),
        }
    output_dir = Path(arguments.output_dir)
    summary = {"sentences_file": str(sentences_file), "max_seq_length": arguments.max_seq_length, "checkpoints": results}
    write_json_atomic(output_dir / "token_uniformity.json", summary)
    plot_token_uniformity(results, output_dir / "token_uniformity.png", f"Token uniformity on {sentences_file.parent.name} {sentences_file.stem}")
    return summary
