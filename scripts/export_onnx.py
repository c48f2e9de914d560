"""Export an AutoBERT-Zero checkpoint to ONNX and check it against PyTorch in ONNX Runtime.

    python scripts/export_onnx.py --checkpoint DIR --output model.onnx [--static] [--tolerance 1e-4]

The model is the head the checkpoint's `config.json` names; batch size and sequence length are dynamic
(`--static` fixes them to the traced example). The check runs a padded batch of another size through both
and prints the largest absolute output difference; it fails above `--tolerance`. Needs the `export` extra.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_autobert_zero.export import export_checkpoint_to_onnx


@dataclass
class ExportArguments:
    checkpoint: str = field(metadata={"help": "A saved AutoBERT-Zero model directory (any head but multiple choice)."})
    output: str = field(metadata={"help": "The ONNX file to write."})
    static: bool = field(default=False, metadata={"help": "Fix batch size and sequence length to the traced example."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest accepted output difference from PyTorch (fp32)."})


def main() -> None:
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses()
    path, difference = export_checkpoint_to_onnx(args.checkpoint, args.output, dynamic=not args.static)
    print(f"exported {args.checkpoint} -> {path}; max abs output difference vs PyTorch on a padded batch "
          f"(ONNX Runtime, CPU): {difference:.3g}")
    if difference > args.tolerance:
        sys.exit(f"the difference {difference:.3g} is above the tolerance {args.tolerance:g}")


if __name__ == "__main__":
    main()
