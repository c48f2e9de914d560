"""A benchmark table as an evaluator: a candidate's score is looked up, not trained (NAS-Bench style).

:class:`TableEvaluator` answers every architecture of a :class:`~search.tabular.BenchmarkTable` instantly,
behind the same :class:`~search.evaluator.Evaluator` interface as the BIWS evaluator, so the search loop,
its state and its resume are exactly those of a real search; only the cost is the time the table's
protocol recorded. Two ways to score:

- ``per_query_seed=False`` (default): the entry's mean over the table's seeds, the architecture's best
  estimate of its score; every query of an architecture gives the same value.
- ``per_query_seed=True``: one seed's score, chosen by the candidate's own seed (``context.seed``), as a
  search that trains each candidate once would see it: seed noise included, and reproducible because the
  candidate's seed depends only on the search seed and the candidate's index.

The cost is that seed's recorded seconds (the mean over seeds by default), under ``table_seconds``. An
architecture the table lacks is an error naming it and the table (:class:`~search.tabular.TableError`).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from pathlib import Path
from typing import Any

from .evaluator import EvaluationContext, EvaluationResult, Evaluator
from .space import SearchSpace
from .tabular import BenchmarkTable, TableError


class TableEvaluator(Evaluator):
    def __init__(self, table: BenchmarkTable, per_query_seed: bool = False):
        self.table = table
        self.per_query_seed = per_query_seed

    @classmethod
    def for_search(cls, path: str | Path, space: SearchSpace, per_query_seed: bool = False) -> "TableEvaluator":
        """The table at ``path``, checked to cover exactly the space a search will explore: strategies configured
        with another space would propose architectures the table cannot answer."""
        table = BenchmarkTable.load(path)
        if table.space != space:
            ours, theirs = dataclasses.asdict(space), dataclasses.asdict(table.space)
            differences = ", ".join(f"{name}: config {ours[name]!r}, table {theirs[name]!r}" for name in ours if ours[name] != theirs[name])
            raise TableError(
                f"{path}: the table {table.name!r} covers another search space than the config's `space` ({differences}); "
                f"set the config's space to the table's: {theirs}"
            )
        return cls(table, per_query_seed)

    def evaluate(self, architecture: list[dict[str, Any]], context: EvaluationContext) -> EvaluationResult:
        entry = self.table.lookup(architecture)
        if self.per_query_seed:
            which = random.Random(context.seed).randrange(len(self.table.seeds))
            score, seconds = entry.scores[which], entry.seconds[which]
            metrics = {name: values[which] for name, values in entry.metrics.items()}
            metrics["table_seed"] = float(self.table.seeds[which])
        else:
            score, seconds = entry.score, statistics.fmean(entry.seconds)
            metrics = {name: statistics.fmean(values) for name, values in entry.metrics.items()}
        metrics[self.table.score_name] = score
        metrics["table_mean_score"] = entry.score  # the architecture's quality, whichever score the search saw
        return EvaluationResult(score=score, metrics=metrics, cost={"table_seconds": seconds})
