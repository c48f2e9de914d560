"""Quickstart on the bundled demo data: build, inspect, run, save and reload an AutoBERT-Zero model.

    python scripts/quickstart.py [--output_dir outputs/quickstart] [--size small]

Prints the searched architecture of the paper (SPEC §7) layer by layer, its size against BERT's, encodes
sentence pairs from the bundled RTE subset, checks the fused attention path against the general program
interpreter, saves a `from_pretrained`-ready checkpoint with its tokenizer and code, and reloads it in a
fresh process through `AutoModel.from_pretrained(..., trust_remote_code=True)`.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import BertTokenizer, HfArgumentParser

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel

REPO = Path(__file__).resolve().parents[1]


@dataclass
class QuickstartArguments:
    output_dir: str = field(default="outputs/quickstart", metadata={"help": "Where the checkpoint is written."})
    size: str = field(default="small", metadata={"help": "Preset size: small, base or large."})
    demo_data: str = field(default=str(REPO / "demo_data"), metadata={"help": "The bundled demo data folder."})
    seed: int = field(default=0)


def read_rte_pairs(path: Path, count: int) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(row["sentence1"], row["sentence2"]) for _, row in zip(range(count), rows)]


def main() -> None:
    (args,) = HfArgumentParser(QuickstartArguments).parse_args_into_dataclasses()
    torch.manual_seed(args.seed)
    demo = Path(args.demo_data)
    tokenizer = BertTokenizer(vocab=str(demo / "vocab.txt"))
    config = AutoBertZeroConfig.from_preset("autobert-zero", args.size, vocab_size=tokenizer.vocab_size)
    model = AutoBertZeroModel(config).eval()
    bert_params = sum(p.numel() for p in AutoBertZeroModel(AutoBertZeroConfig.from_preset("bert", args.size)).parameters())

    print(f"AutoBERT-Zero ({args.size}): {config.num_hidden_layers} layers, hidden {config.hidden_size}")
    for index, layer in enumerate(config.layers, start=1):
        description = f"kernel {layer['kernel_size']}" if layer["type"] == "conv" else layer["program"]
        print(f"  {index:>2} {layer['type']:<9} {description}")
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params:,} ({params / bert_params:.3f}x the bert preset at the same size)")

    pairs = read_rte_pairs(demo / "glue" / "RTE" / "train.tsv", 4)
    batch = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True,
                      max_length=128, return_tensors="pt")
    with torch.inference_mode():
        fused = model(**batch).last_hidden_state
        interpreted = model(**batch, use_interpreter=True).last_hidden_state
    real = batch["attention_mask"].bool()
    difference = (fused - interpreted)[real].abs().max().item()
    print(f"encoded {len(pairs)} RTE pairs -> {tuple(fused.shape)}; fused vs interpreter max |diff| {difference:.2e}")

    output_dir = Path(args.output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    reload = (
        "import sys, torch; from transformers import AutoModel, AutoTokenizer;"
        "d = sys.argv[1]; m = AutoModel.from_pretrained(d, trust_remote_code=True).eval();"
        "t = AutoTokenizer.from_pretrained(d, trust_remote_code=True); b = t(['a fresh process'], return_tensors='pt');"
        "print(type(m).__name__, tuple(m(**b).last_hidden_state.shape))"
    )
    result = subprocess.run([sys.executable, "-c", reload, str(output_dir)], capture_output=True, text=True,
                            cwd=output_dir, check=True)
    print(f"saved to {output_dir}; reloaded with trust_remote_code in a fresh process: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
