"""Convert a `transformers` BERT checkpoint into the `bert` architecture of AutoBERT-Zero's search space.

    python scripts/convert_bert.py --bert DIR --output DIR

Checks that the converted model reproduces BERT's outputs (padding and token types included) before saving.
"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_autobert_zero.convert_bert import convert_bert_checkpoint


@dataclass
class ConversionArguments:
    bert: str = field(metadata={"help": "A saved BertModel / BertForPreTraining / BertForMaskedLM directory."})
    output: str = field(metadata={"help": "Where to write the AutoBERT-Zero checkpoint and tokenizer."})
    tolerance: float = field(default=1e-5, metadata={"help": "Largest accepted output difference (fp32)."})


def main() -> None:
    (args,) = HfArgumentParser(ConversionArguments).parse_args_into_dataclasses()
    difference = convert_bert_checkpoint(args.bert, args.output, tolerance=args.tolerance)
    print(f"converted {args.bert} -> {args.output}; max abs output difference vs BERT: {difference:.3g}")


if __name__ == "__main__":
    main()
