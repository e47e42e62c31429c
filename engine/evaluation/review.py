"""Review analytics: agreement between reviewers and how ratings follow the metrics.

Krippendorff's alpha, in two steps (counts, then reductions): a coincidence matrix of the values
paired within each unit, then observed over expected disagreement under the chosen metric
(nominal, ordinal, interval). Missing ratings are allowed; units rated once are not pairable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


def coincidences(units: Sequence[Sequence[float]], values: Sequence[float]) -> np.ndarray:
    """Coincidence matrix (V, V) of the values paired within units with two or more ratings.

    :param units: per unit, the values its raters gave (missing ratings left out)
    :param values: the value domain, in order
    """
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)))
    for u, unit in enumerate(units):
        for v in unit:
            counts[u, index[v]] += 1
    m = counts.sum(1)
    pairable = m >= 2
    c = counts[pairable]
    # o_ck = sum_u (n_uc * n_uk - [c == k] * n_uc) / (m_u - 1)
    weights = 1.0 / (m[pairable] - 1)
    out: np.ndarray = (c * weights[:, None]).T @ c - np.diag((c * weights[:, None]).sum(0))
    return out


def _delta(values: Sequence[float], n_c: np.ndarray, level: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    out: np.ndarray
    if level == "nominal":
        out = (v[:, None] != v[None, :]).astype(np.float64)
        return out
    if level == "interval":
        out = (v[:, None] - v[None, :]) ** 2
        return out
    # ordinal: (sum of n_g from c to k, minus half of n_c and n_k) squared
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    lo = np.minimum.outer(np.arange(len(v)), np.arange(len(v)))
    hi = np.maximum.outer(np.arange(len(v)), np.arange(len(v)))
    between = cum[hi + 1] - cum[lo]
    out = (between - (n_c[lo] + n_c[hi]) / 2) ** 2
    return out


def krippendorff_alpha(units: Sequence[Sequence[float]], level: str = "ordinal") -> float:
    """Krippendorff's alpha of ratings grouped by unit (NaN when nothing is pairable).

    :raises ValueError: for an unknown level of measurement
    """
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: must be one of {', '.join(LEVELS)}")
    values = sorted({v for unit in units for v in unit})
    if len(values) < 2:
        return 1.0 if any(len(u) >= 2 for u in units) else float("nan")
    o = coincidences(units, values)
    n_c = o.sum(1)
    n = n_c.sum()
    if n <= 1:
        return float("nan")
    delta = _delta(values, n_c, level)
    observed = (o * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    return float(1 - observed / expected) if expected > 0 else float("nan")


@dataclass(frozen=True)
class Correlation:
    metric: str
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n: int
    """Images with both a rating and the metric."""


def rating_metric_correlations(ratings: Mapping[int, float], scores: Mapping[int, Mapping[str, float]], metrics: Sequence[str]) -> list[Correlation]:
    """Spearman and Kendall correlation of each image's mean rating with each per-image metric."""
    from scipy import stats

    out = []
    for metric in metrics:
        pairs = [(r, scores[i][metric]) for i, r in ratings.items() if metric in scores.get(i, {})]
        if len(pairs) < 3:
            out.append(Correlation(metric, float("nan"), float("nan"), float("nan"), float("nan"), len(pairs)))
            continue
        x, y = np.array(pairs).T
        if np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant side has no rank order: undefined, not an error
            out.append(Correlation(metric, float("nan"), float("nan"), float("nan"), float("nan"), len(pairs)))
            continue
        s = stats.spearmanr(x, y)
        k = stats.kendalltau(x, y)
        out.append(Correlation(metric, float(s.statistic), float(s.pvalue), float(k.statistic), float(k.pvalue), len(pairs)))
    return out
