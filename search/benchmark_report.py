"""What a benchmark table says about the named architectures (the paper's Table 5 at mini scale).

The presets (``bert``, ``autobert-zero``, ``-att-only``, ``-conv-only``) are scored by the table's protocol with
several seeds; the same seed means the same initialisation stream, data order and masks for every preset, so
presets are compared *paired by seed*: a paired t-test (``scipy.stats.ttest_rel``) and the exact Wilcoxon
signed-rank test on the per-seed differences of held-out MLM loss. With five seeds the smallest two-sided
Wilcoxon p-value is 1/16 = 0.0625, so only the t-test can reach 0.05 there; both are reported.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from .tabular import BenchmarkTable


PAPER_TABLE_5_ORDER = ("autobert-zero", "autobert-zero-att-only", "bert", "autobert-zero-conv-only")
"""Best to worst in the paper's Table 5 (GLUE after full pretraining): the hybrid first, conv-only last."""


def _paired(first: Mapping[str, Any], second: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    losses = [dict(zip(preset["seeds"], preset["held_out_mlm_loss"])) for preset in (first, second)]
    common = sorted(set(losses[0]) & set(losses[1]))
    return [losses[0][seed] for seed in common], [losses[1][seed] for seed in common]


def paired_comparison(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """``first`` vs ``second`` (preset records of a table) on the seeds both have; negative ``mean_difference``:
    ``first`` has the lower (better) held-out loss."""
    a, b = _paired(first, second)
    if len(a) < 2:
        raise ValueError(f"presets {first['name']!r} and {second['name']!r} share fewer than two seeds")
    differences = np.subtract(a, b)
    t_test = stats.ttest_rel(a, b)
    wilcoxon_p = float(stats.wilcoxon(a, b, method="exact").pvalue) if np.any(differences != 0) else 1.0
    return {
        "first": first["name"],
        "second": second["name"],
        "seeds": len(a),
        "mean_difference": float(differences.mean()),
        "sd_difference": float(differences.std(ddof=1)),
        "first_better_seeds": int((differences < 0).sum()),
        "paired_t_p": float(t_test.pvalue),
        "wilcoxon_p": wilcoxon_p,
    }


def table_percentile(table: BenchmarkTable, loss: float) -> float:
    """Share (in %) of the table's entries whose mean held-out loss is higher (worse) than ``loss``."""
    losses = np.array([-entry.score for entry in table.entries])
    return float(100.0 * (losses > loss).mean())


def preset_report(table: BenchmarkTable) -> dict[str, Any]:
    """The presets' losses (per seed, mean ± sd, rank), every pairwise paired test, where each preset falls in the
    table's distribution, and whether the paper's Table 5 order holds."""
    if not table.presets:
        raise ValueError(f"table {table.name!r} has no presets")
    presets = sorted(table.presets, key=lambda preset: preset["mean_held_out_mlm_loss"])
    table_losses = [-entry.score for entry in table.entries]
    rows = [
        {
            "name": preset["name"],
            "seeds": list(preset["seeds"]),
            "held_out_mlm_loss": list(preset["held_out_mlm_loss"]),
            "mean": preset["mean_held_out_mlm_loss"],
            "sd": preset["sd_held_out_mlm_loss"],
            "table_percentile": table_percentile(table, preset["mean_held_out_mlm_loss"]),
        }
        for preset in presets
    ]
    comparisons = [paired_comparison(first, second) for first, second in itertools.combinations(presets, 2)]
    measured_order = [row["name"] for row in rows]
    paper_order = [name for name in PAPER_TABLE_5_ORDER if name in measured_order]
    return {
        "table": table.name,
        "presets": rows,
        "paired_tests": comparisons,
        "measured_order": measured_order,
        "paper_order": paper_order,
        "paper_order_holds": measured_order == paper_order,
        "table_held_out_mlm_loss": {
            "best": min(table_losses),
            "median": statistics.median(table_losses),
            "worst": max(table_losses),
            "entries": len(table_losses),
        },
    }


def format_preset_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables (for the README)."""
    seeds = report["presets"][0]["seeds"]
    lines = [
        "| preset | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean ± sd | better than % of table |",
        "|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for row in report["presets"]:
        per_seed = dict(zip(row["seeds"], row["held_out_mlm_loss"]))
        cells = " | ".join(f"{per_seed[seed]:.4f}" if seed in per_seed else "–" for seed in seeds)
        lines.append(f"| `{row['name']}` | {cells} | {row['mean']:.4f} ± {row['sd']:.4f} | {row['table_percentile']:.1f} |")
    lines += ["", "| first vs second | mean difference (first − second) | first better on | paired t p | Wilcoxon p |", "|---|---|---|---|---|"]
    for test in report["paired_tests"]:
        lines.append(
            f"| `{test['first']}` vs `{test['second']}` | {test['mean_difference']:+.4f} ± {test['sd_difference']:.4f} | "
            f"{test['first_better_seeds']}/{test['seeds']} seeds | {test['paired_t_p']:.3g} | {test['wilcoxon_p']:.3g} |"
        )
    spread = report["table_held_out_mlm_loss"]
    lines += [
        "",
        f"Measured order (best first): {', '.join(report['measured_order'])}; paper Table 5: "
        f"{', '.join(report['paper_order'])} — {'holds' if report['paper_order_holds'] else 'does not hold'}.",
        f"Table entries ({spread['entries']}): held-out loss best {spread['best']:.4f}, median {spread['median']:.4f}, "
        f"worst {spread['worst']:.4f}.",
    ]
    return "\n".join(lines)

