"""Pretraining (MLM + NSP) and GLUE / SQuAD finetuning for AutoBERT-Zero, on `transformers`' `Trainer`.

One library for the `scripts/` entry points and the search's candidate evaluator, one module per job:

- `tokenization`: a BERT WordPiece tokenizer from a `vocab.txt` or a saved tokenizer directory.
- `corpus`: raw text (WikiText or blank-line-separated documents, or a Hub dataset) as documents of sentences.
- `pretraining_data`: BERT's NSP sentence pairs as a `datasets.Dataset`, and the dynamic-masking collator.
- `models`: pretraining models from presets / config files, and task models initialised from a backbone.
- `trainers`: `Trainer` subclasses (per-batch mean losses; MLM and NSP losses logged separately).
- `runners`: `pretrain()` and the pretraining script's driver.
- `glue_tasks`, `glue`: GLUE task metadata, TSV / Hub readers, finetuning, grid search, submission files.
- `squad`: SQuAD v1.1 / v2.0 reading, features, n-best post-processing, finetuning.
- `metrics`: GLUE and official SQuAD metrics, computed offline.
- `arguments`: the scripts' `HfArgumentParser` dataclasses.
- `benchmark`: pretraining throughput and memory against `transformers.BertForPreTraining`.

Importing a submodule registers AutoBERT-Zero with the `transformers` Auto classes.
"""
