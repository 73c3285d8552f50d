"""Comparative statistics (pure functions, numpy/scipy only).

t-tests in the paper's Table 1 layout, Wilcoxon signed-rank for paired
comparisons, percentile bootstrap confidence intervals and Holm correction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class TTestResult:
    """Two-sample t-test; ``sed`` is the standard error of the difference."""

    mean1: float
    mean2: float
    sd1: float
    sd2: float
    n1: int
    n2: int
    sem1: float
    sem2: float
    t: float
    df: float
    sed: float
    p: float
    equal_var: bool

    def to_dict(self) -> dict:
        return asdict(self)


def ttest_from_stats(mean1, sd1, n1, mean2, sd2, n2, equal_var: bool = True) -> TTestResult:
    """Two-sided two-sample t-test from summary statistics (SD with ddof=1).

    Student (``equal_var=True``): s_p² = ((n1−1)s1² + (n2−1)s2²)/(n1+n2−2),
    SED = √(s_p²(1/n1 + 1/n2)), df = n1+n2−2. Welch: SED = √(s1²/n1 + s2²/n2),
    df = SED⁴ / ((s1²/n1)²/(n1−1) + (s2²/n2)²/(n2−1)) (Welch–Satterthwaite).
    t = (mean1 − mean2)/SED, p = 2·P(T_df > |t|). With SED = 0, t is ±inf
    (p = 0) if the means differ, else NaN (p = NaN).
    """
    n1, n2 = int(n1), int(n2)
    if n1 < 2 or n2 < 2:
        raise ValueError(f"each group needs n >= 2 (got n1={n1}, n2={n2})")
    if sd1 < 0 or sd2 < 0 or not np.isfinite([mean1, sd1, mean2, sd2]).all():
        raise ValueError("means must be finite and SDs finite and non-negative")
    v1, v2 = sd1**2 / n1, sd2**2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        if equal_var:
            df = float(n1 + n2 - 2)
            pooled = ((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / df
            sed = float(np.sqrt(pooled * (1.0 / n1 + 1.0 / n2)))
        else:
            sed = float(np.sqrt(v1 + v2))
            df = float(np.float64(v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)))
        t = float(np.float64(mean1 - mean2) / sed)
    if np.isnan(t) or np.isinf(t):
        p = float("nan") if np.isnan(t) else 0.0
    else:
        p = min(1.0, float(2.0 * _st.t.sf(abs(t), df)))
    return TTestResult(
        mean1=float(mean1), mean2=float(mean2), sd1=float(sd1), sd2=float(sd2),
        n1=n1, n2=n2, sem1=float(np.sqrt(v1)), sem2=float(np.sqrt(v2)),
        t=t, df=df, sed=sed, p=p, equal_var=equal_var,
    )


def _sample(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def ttest(a, b, equal_var: bool = True) -> TTestResult:
    """Two-sided Student (or Welch, ``equal_var=False``) t-test on raw samples.

    SDs use ddof=1; otherwise as :func:`ttest_from_stats`.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError(f"each sample needs >= 2 values (got {x.size} and {y.size})")
    return ttest_from_stats(x.mean(), x.std(ddof=1), x.size, y.mean(), y.std(ddof=1), y.size, equal_var)


class WilcoxonResult(NamedTuple):
    statistic: float
    p: float
    n: int


def wilcoxon_paired(x, y) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test on paired samples x, y.

    Zero differences are dropped (scipy's default ``zero_method="wilcox"``);
    ``n`` is the number of non-zero differences used. ``statistic`` is scipy's
    (the smaller of the positive and negative rank sums). If every difference
    is zero the test is undefined: statistic and p are NaN, n = 0.
    """
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size != b.size:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    n = int(np.count_nonzero(a - b))
    if n == 0:
        return WilcoxonResult(float("nan"), float("nan"), 0)
    res = _st.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n)


class BootstrapCI(NamedTuple):
    estimate: float
    low: float
    high: float


def bootstrap_ci(
    values,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI: (stat(values), low, high).

    Resamples with replacement ``n_resamples`` times from
    ``numpy.random.default_rng(seed)``; low/high are the (1−c)/2 and (1+c)/2
    percentiles of the resampled statistic. Same seed → same interval.
    """
    v = _sample(values, "values")
    if v.size == 0:
        raise ValueError("values is empty")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    for i in range(n_resamples):
        boot[i] = stat(v[rng.integers(0, v.size, v.size)])
    alpha = 1.0 - confidence
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return BootstrapCI(float(stat(v)), float(low), float(high))


def bootstrap_ci_paired(
    x,
    y,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> BootstrapCI:
    """Bootstrap CI of stat(x − y), resampling the pairs together."""
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size != b.size:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    return bootstrap_ci(a - b, stat, n_resamples, confidence, seed)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    Sorted ascending p_(1) ≤ … ≤ p_(m): adj_(i) = min(1, max_{j≤i} (m−j+1)·p_(j)).
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj_sorted
    return out
