"""Comparative statistics (pure functions, numpy/scipy only).

t-tests in the paper's Table 1 layout (Student, Welch, paired), Wilcoxon
signed-rank and Mann–Whitney U, effect sizes (Cohen's d, d_z, rank-biserial),
percentile bootstrap intervals (one sample, stratified, two independent
samples, pairs) and multiple-comparison corrections (Holm; Benjamini–Hochberg
via ``scipy.stats.false_discovery_control``).
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
    cohens_d: float = float("nan")  # (mean1 − mean2) / pooled SD, for both Student and Welch
    diff_low: float = float("nan")  # 95% t interval of mean1 − mean2 (this test's SED and DF)
    diff_high: float = float("nan")

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
    pooled_sd = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / (n1 + n2 - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = float(np.float64(mean1 - mean2) / pooled_sd)
    half = float(_st.t.ppf(0.975, df) * sed) if np.isfinite(df) and df > 0 else float("nan")
    return TTestResult(
        mean1=float(mean1), mean2=float(mean2), sd1=float(sd1), sd2=float(sd2),
        n1=n1, n2=n2, sem1=float(np.sqrt(v1)), sem2=float(np.sqrt(v2)),
        t=t, df=df, sed=sed, p=p, equal_var=equal_var, cohens_d=d,
        diff_low=float(mean1 - mean2) - half, diff_high=float(mean1 - mean2) + half,
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


@dataclass(frozen=True)
class PairedTTestResult:
    """Paired t-test on x − y: ``sed`` = SD(x − y)/√n, df = n − 1, ``d_z`` = mean(x − y)/SD(x − y)."""

    mean1: float
    mean2: float
    sd1: float
    sd2: float
    n: int
    mean_diff: float
    sd_diff: float
    t: float
    df: float
    sed: float
    p: float
    d_z: float
    diff_low: float  # 95% t interval of the mean difference
    diff_high: float

    @property
    def sem1(self) -> float:
        return self.sd1 / np.sqrt(self.n)

    @property
    def sem2(self) -> float:
        return self.sd2 / np.sqrt(self.n)


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size != b.size:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    return a, b


def ttest_paired(x, y) -> PairedTTestResult:
    """Two-sided paired t-test (as ``scipy.stats.ttest_rel``); needs n >= 2 pairs.

    With SD(x − y) = 0, t is ±inf (p = 0) if the mean difference is not 0, else NaN.
    """
    a, b = _paired(x, y)
    n = a.size
    if n < 2:
        raise ValueError(f"a paired t-test needs >= 2 pairs (got {n})")
    d = a - b
    md, sd = float(d.mean()), float(d.std(ddof=1))
    sed = sd / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float(np.float64(md) / sed)
        dz = float(np.float64(md) / sd)
    df = float(n - 1)
    p = float("nan") if np.isnan(t) else 0.0 if np.isinf(t) else min(1.0, float(2.0 * _st.t.sf(abs(t), df)))
    half = float(_st.t.ppf(0.975, df) * sed)
    return PairedTTestResult(float(a.mean()), float(b.mean()), float(a.std(ddof=1)), float(b.std(ddof=1)), n,
                             md, sd, t, df, float(sed), p, dz, md - half, md + half)


def cohens_d(x, y) -> float:
    """(mean(x) − mean(y)) / pooled SD (ddof 1): the effect size beside a two-sample t-test."""
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size < 2 or b.size < 2:
        raise ValueError(f"each sample needs >= 2 values (got {a.size} and {b.size})")
    return ttest_from_stats(a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size).cohens_d


class WilcoxonResult(NamedTuple):
    statistic: float
    p: float
    n: int
    rank_biserial: float = float("nan")  # (W+ − W−)/(W+ + W−) over the non-zero differences of x − y


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
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, rank_biserial_paired(a, b))


def rank_biserial_paired(x, y) -> float:
    """Matched-pairs rank-biserial correlation of x − y: (W+ − W−)/(W+ + W−), ranks of |x − y|
    (average ranks for ties) over the non-zero differences; in [−1, 1], NaN if all are zero."""
    a, b = _paired(x, y)
    d = a - b
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    r = _st.rankdata(np.abs(d))
    wp, wm = float(r[d > 0].sum()), float(r[d < 0].sum())
    return (wp - wm) / (wp + wm)


class MannWhitneyResult(NamedTuple):
    statistic: float  # U of x (scipy's)
    p: float
    n1: int
    n2: int
    rank_biserial: float  # 2·U/(n1·n2) − 1: P(x > y) − P(x < y), in [−1, 1]


def mann_whitney(x, y) -> MannWhitneyResult:
    """Two-sided Mann–Whitney U test (scipy's default method) with the rank-biserial correlation."""
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size < 1 or b.size < 1:
        raise ValueError(f"each sample needs >= 1 value (got {a.size} and {b.size})")
    res = _st.mannwhitneyu(a, b, alternative="two-sided")
    u = float(res.statistic)
    return MannWhitneyResult(u, float(res.pvalue), a.size, b.size, 2.0 * u / (a.size * b.size) - 1.0)


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


def _quantiles(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _check_boot(n_resamples: int, confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def _boot_means(v: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """n_resamples means of resamples of v with replacement (in chunks: memory stays small)."""
    out = np.empty(n_resamples)
    step = max(1, 2_000_000 // max(v.size, 1))
    for i in range(0, n_resamples, step):
        k = min(step, n_resamples - i)
        out[i:i + k] = v[rng.integers(0, v.size, (k, v.size))].mean(axis=1)
    return out


def bootstrap_ci_strata(strata, n_resamples: int = 2000, confidence: float = 0.95,
                        seed: int | None = 0) -> BootstrapCI:
    """Percentile bootstrap CI of the mean over strata of each stratum's mean.

    Each stratum (e.g. a prompt language) is resampled with replacement within
    itself, so the statistic is the one a summary table gives when it averages
    per-stratum means. One stratum: the plain bootstrap of the mean.
    """
    arrs = [_sample(x, "stratum") for x in strata]
    if not arrs or any(a.size == 0 for a in arrs):
        raise ValueError("every stratum needs >= 1 value")
    _check_boot(n_resamples, confidence)
    rng = np.random.default_rng(seed)
    boot = np.mean([_boot_means(a, n_resamples, rng) for a in arrs], axis=0)
    return BootstrapCI(float(np.mean([a.mean() for a in arrs])), *_quantiles(boot, confidence))


def bootstrap_ci_diff(x, y, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int | None = 0) -> BootstrapCI:
    """Percentile bootstrap CI of mean(x) − mean(y), x and y resampled independently."""
    a, b = _sample(x, "x"), _sample(y, "y")
    if a.size == 0 or b.size == 0:
        raise ValueError("x and y need >= 1 value each")
    _check_boot(n_resamples, confidence)
    rng = np.random.default_rng(seed)
    boot = _boot_means(a, n_resamples, rng) - _boot_means(b, n_resamples, rng)
    return BootstrapCI(float(a.mean() - b.mean()), *_quantiles(boot, confidence))


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


def bh(pvalues) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``), in the input order."""
    p = np.asarray(pvalues, dtype=float).ravel()
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1] (no NaN)")
    return p.copy() if p.size == 0 else np.asarray(_st.false_discovery_control(p, method="bh"), dtype=float)


CORRECTIONS = {"holm": "Holm–Bonferroni", "bh": "Benjamini–Hochberg", "none": "none"}


def adjust(pvalues, method: str) -> np.ndarray:
    """Adjusted p-values: ``holm``, ``bh`` or ``none``."""
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return bh(pvalues)
    if method == "none":
        return np.asarray(pvalues, dtype=float).ravel().copy()
    raise ValueError(f"unknown correction {method!r} (one of {', '.join(CORRECTIONS)})")


def _tv_rows(onehot: np.ndarray, spread: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Position TV of each resample (a row of item indices): ½Σ|observed − no-bias baseline| (metrics.position_bias)."""
    obs = onehot[idx].mean(axis=1)
    base = spread[idx].mean(axis=1)
    return np.clip(0.5 * np.abs(obs - base).sum(axis=1), 0.0, 1.0)


def bootstrap_ci_position_tv(strata, n_resamples: int = 2000, confidence: float = 0.95,
                             seed: int | None = 0) -> BootstrapCI:
    """Percentile bootstrap CI of the position TV (valuelens.metrics.position_bias), averaged over strata.

    Each stratum is (positions, n_options) of its valid items (1-based positions); items are resampled
    within their stratum and the TV against the resample's own no-bias baseline is recomputed.
    """
    _check_boot(n_resamples, confidence)
    prepared = []
    for positions, n_options in strata:
        pos = np.asarray(positions, dtype=float).ravel()
        k = np.asarray(n_options, dtype=float).ravel()
        if pos.size == 0 or pos.size != k.size or not np.isfinite(pos).all() or not np.isfinite(k).all():
            raise ValueError("every stratum needs >= 1 item with a finite position and option count")
        if np.any((pos < 1) | (pos > k) | (pos != np.round(pos))):
            raise ValueError("a position is not one of its item's 1..k")
        width = int(k.max())
        onehot = np.zeros((pos.size, width))
        onehot[np.arange(pos.size), pos.astype(int) - 1] = 1.0
        spread = (np.arange(width)[None, :] < k[:, None]) / k[:, None]
        prepared.append((onehot, spread))
    rng = np.random.default_rng(seed)
    boots, ests = [], []
    for onehot, spread in prepared:
        n = onehot.shape[0]
        ests.append(float(_tv_rows(onehot, spread, np.arange(n)[None, :])[0]))
        out = np.empty(n_resamples)
        step = max(1, 200_000 // max(n * onehot.shape[1], 1))
        for i in range(0, n_resamples, step):
            j = min(step, n_resamples - i)
            out[i:i + j] = _tv_rows(onehot, spread, rng.integers(0, n, (j, n)))
        boots.append(out)
    return BootstrapCI(float(np.mean(ests)), *_quantiles(np.mean(boots, axis=0), confidence))
