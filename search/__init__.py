"""OP-NAS with BIWS weight sharing (paper Algorithm 1, SPEC §4–§6), one module per job:

- ``space``: which architectures the search may propose (the model's validator narrowed), sampling and
  enumeration. Validity, canonical form, keys, descriptions and parameter counts are the model's
  (``modeling_autobert_zero.architecture``), shared with publishing and training.
- ``mutation``, ``ucb``: inter- then intra-layer mutations; operation priority (UCB tables per position).
- ``strategies``: ``opnas``, ``ea`` and ``random`` behind one interface, each owning its state; ``objective``:
  ranking and budgets.
- ``controller``, ``state``: what to evaluate next, one generation at a time, and the search state written
  atomically as each candidate's result arrives; ``lock``: one search per output folder.
- ``evaluator``: the evaluator interface (swap in your own; weight-sharing hooks for snapshots and
  write-backs) and a synthetic one; ``table_evaluator``: a benchmark table (``tabular``) looked up;
  ``biws_evaluator``: the paper's (super-net → MLM + NSP → GLUE proxy), on the training library;
  ``supernet``: the BIWS weights.
- ``executors``: where a generation's children run (this process and its data-parallel ranks, or Ray
  workers); ``scale_estimate``: a search's wall time on a cluster, from measured candidate times.
- ``comparison``: strategies compared over paired seeds, with statistics.
- ``run_opnas`` (the runner), ``export``, ``plots``, ``config``.

Strategy code never touches tensors: only ``supernet`` and ``biws_evaluator`` do.
"""

from modeling_autobert_zero.architecture import architecture_key

from .evaluator import EvaluationContext, EvaluationResult, Evaluator, FunctionEvaluator, SyntheticEvaluator
from .space import SearchSpace, sample_architecture


__all__ = [
    "EvaluationContext",
    "EvaluationResult",
    "Evaluator",
    "FunctionEvaluator",
    "SearchSpace",
    "SyntheticEvaluator",
    "architecture_key",
    "sample_architecture",
]
