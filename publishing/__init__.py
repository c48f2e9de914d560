"""Sharing results: Hub repo folders with model cards, scaled checkpoints, token-uniformity analysis, quickstart.

One module per job, each a library under a thin script in `scripts/`:

- `hub`: what a complete repo folder holds, building one from a model (atomically), checking it, pushing it.
- `model_card`: the card rendered from the folder's own `config.json` and `results/*.json` with the
  template in `model_cards/`, so every number in a card comes from a file a pipeline stage wrote.
- `publish`: `scripts/publish.py` — a trained checkpoint, or the top-k candidates of a search.
- `scaling`: `scripts/scale_checkpoint.py` — small / base / large of one architecture (large by repeating
  blocks in place, paper Appendix D.2).
- `token_uniformity`: `scripts/token_uniformity.py` — the paper's Figure 5 metrics per layer.
- `pipeline`: `scripts/quickstart.py` — search → export → pretraining → GLUE → repo folder on the demo data.
- `arguments`: the scripts' `HfArgumentParser` dataclasses.
"""
