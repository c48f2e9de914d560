"""How far scores tell architectures apart beyond the noise of training them: the one-way random-effects
intraclass correlation ICC(1) (Shrout & Fleiss 1979, case 1; McGraw & Wong 1996, "ICC(1)").

Every architecture (a *target*) is trained ``k`` times with different seeds; the seeds are not the same kind
of "rater" across architectures in any sense that matters, so the one-way model fits: ``score = μ + a_i + e_ij``
with architecture effects ``a_i`` (variance ``σ_b²``) and seed noise ``e_ij`` (variance ``σ_w²``).

    ICC(1) = (MSB − MSW) / (MSB + (k − 1)·MSW) = σ_b² / (σ_b² + σ_w²)

with the ANOVA estimates ``σ_w² = MSW`` and ``σ_b² = (MSB − MSW) / k``. So ICC ≥ 0.8 holds exactly when
``σ_b ≥ 2·σ_w``: the spread between architectures is at least twice the seed-to-seed spread. The confidence
interval is the exact one from the F distribution of ``MSB / MSW``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class IntraclassCorrelation:
    icc: float
    ci_low: float
    ci_high: float
    between_sd: float
    within_sd: float
    targets: int
    seeds: int
    confidence: float = 0.95
    kind: str = "ICC(1): one-way random effects, single measurement"

    def to_json(self) -> dict[str, float | int | str]:
        return dataclasses.asdict(self)


def one_way_icc(scores: Sequence[Sequence[float]], confidence: float = 0.95) -> IntraclassCorrelation:
    """ICC(1) of ``scores[i][j]``: target ``i`` (an architecture), repeat ``j`` (a seed); every target needs the
    same number ``k ≥ 2`` of repeats, and there must be at least two targets."""
    table = np.asarray(scores, dtype=float)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        raise ValueError(f"expected at least 2 targets × 2 repeats of scores, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("every score must be finite")
    n, k = table.shape
    target_means = table.mean(axis=1)
    msb = k * ((target_means - table.mean()) ** 2).sum() / (n - 1)
    msw = ((table - target_means[:, None]) ** 2).sum() / (n * (k - 1))
    between_variance = max((msb - msw) / k, 0.0)
    if msw == 0.0:
        icc = ci_low = ci_high = 1.0 if msb > 0 else math.nan
    else:
        icc = (msb - msw) / (msb + (k - 1) * msw)
        f_observed = msb / msw
        tail = (1.0 - confidence) / 2.0
        f_low = f_observed / stats.f.ppf(1.0 - tail, n - 1, n * (k - 1))
        f_high = f_observed * stats.f.ppf(1.0 - tail, n * (k - 1), n - 1)
        ci_low, ci_high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
    return IntraclassCorrelation(
        icc=float(icc),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        between_sd=math.sqrt(between_variance),
        within_sd=math.sqrt(msw),
        targets=n,
        seeds=k,
        confidence=confidence,
    )
