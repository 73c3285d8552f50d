"""Pure measures of the dilemma layer (numpy/scipy, metrics and stats only).

Conventions: a *choice* is a value name, or None when the answer was invalid
or a tie; None never equals anything, so it counts against agreement,
steering and wins, and it is never dropped from a denominator. Ranks: 1 = the
highest win rate, ties get their average rank, NaN = not ranked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import lru_cache
from itertools import combinations

import numpy as np
from scipy.stats import kendalltau

from valuelens.metrics import entropy, form_consistency
from valuelens.stats import bootstrap_ci


def choose(p_a: float, p_b: float, p_invalid: float = 0.0) -> str:
    """"A", "B", "tie" or "invalid": the larger of p_A and p_B, unless the
    invalid share is larger than both (a valid answer wins a tie with it)."""
    if not (p_a >= 0 and p_b >= 0) or p_invalid > max(p_a, p_b):
        return "invalid"
    if p_a != p_b:
        return "A" if p_a > p_b else "B"
    return "tie" if p_a > 0 else "invalid"


def label_to_action(label: str, first: int) -> int | None:
    """Corpus action index (0/1) for a label when ``A`` stands for action ``first``."""
    if label == "A":
        return first
    if label == "B":
        return 1 - first
    return None


def summary(values: Sequence[float] | np.ndarray, seed: int, n_resamples: int = 1000,
            stat: Callable[[np.ndarray], float] | None = None) -> dict[str, float]:
    """estimate, ci_low, ci_high (95 % percentile bootstrap, stats.bootstrap_ci)
    and n; NaN when empty. Non-finite values are left out. For the default
    statistic (the mean) the values are sorted first, so the interval depends
    on the data, not on their order (and repeated inputs are computed once)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    if stat is None:
        est, low, high = _mean_ci(np.sort(v).tobytes(), seed, n_resamples)
    else:
        est, low, high = bootstrap_ci(v, stat=stat, n_resamples=n_resamples, seed=seed)
    return {"estimate": est, "ci_low": low, "ci_high": high, "n": int(v.size)}


@lru_cache(maxsize=4096)
def _mean_ci(data: bytes, seed: int, n_resamples: int) -> tuple[float, float, float]:
    return tuple(bootstrap_ci(np.frombuffer(data), n_resamples=n_resamples, seed=seed))  # type: ignore[return-value]


def shares(choices: Sequence[str | None], values: Sequence[str]) -> dict[str, np.ndarray]:
    """Per value (and "(no choice)"), the 0/1 indicator of each dilemma's choice."""
    c = list(choices)
    out = {v: np.array([x == v for x in c], dtype=float) for v in values}
    out["(no choice)"] = np.array([x is None for x in c], dtype=float)
    return out


def agreement_flags(by_form: Mapping[str, Sequence[str | None]]) -> np.ndarray:
    """1 where every form chose the same (non-None) value for the dilemma.
    ``by_form``: form → choices, aligned by dilemma."""
    cols = list(by_form.values())
    if len({len(c) for c in cols}) > 1:
        raise ValueError("choices per form must be aligned (same length)")
    return np.array([float(row[0] is not None and all(x == row[0] for x in row)) for row in zip(*cols)])


def flip_flags(base: Sequence[int | None], reask: Sequence[int | None]) -> np.ndarray:
    """Consequence flips, over dilemmas with a valid base action: 1 when the
    re-asked choice is the other action; an invalid re-ask is not a flip."""
    return np.array([float(r is not None and r != b) for b, r in zip(base, reask) if b is not None])


def follow_flags(chosen: Sequence[str | None], requested: Sequence[str]) -> np.ndarray:
    """Steering: 1 where the chosen value is the requested one."""
    return np.array([float(c is not None and c == r) for c, r in zip(chosen, requested)])


# escalation ---------------------------------------------------------------------

def win_tensor(steps: Sequence[tuple[int, int, str | None, str | None, str | None]],
               n_chains: int, n_steps: int, values: Sequence[str]) -> np.ndarray:
    """W[chain, step, value]: 1 when the value was at stake and chosen, 0 when
    at stake and not chosen (the other value, or an invalid answer), NaN when
    not at stake. ``steps``: (chain, step, value A, value B, chosen value);
    a step whose two values are equal is no contest (NaN)."""
    idx = {v: k for k, v in enumerate(values)}
    W = np.full((n_chains, n_steps, len(values)), np.nan)
    for c, t, va, vb, chosen in steps:
        if va == vb:
            continue
        for v in (va, vb):
            if v is not None:
                W[c, t, idx[v]] = float(chosen == v)
    return W


def win_rates(W: np.ndarray) -> np.ndarray:
    """(steps, values): mean win over the chains where the value is at stake."""
    with np.errstate(invalid="ignore"):
        n = np.sum(np.isfinite(W), axis=0)
        s = np.nansum(W, axis=0)
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def ranks(rates: np.ndarray) -> np.ndarray:
    """Per step, rank of each value by win rate (1 = highest, ties averaged)."""
    out = np.full(rates.shape, np.nan)
    for t in range(rates.shape[0]):
        ok = np.isfinite(rates[t])
        x = rates[t, ok]
        # average rank, descending: (# larger) + (# equal, itself included, + 1) / 2
        out[t, ok] = (x[None, :] > x[:, None]).sum(1) + ((x[None, :] == x[:, None]).sum(1) + 1) / 2
    return out


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall τ-b over entries finite in both; NaN with < 2 of them or no variation."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    tau = kendalltau(x[ok], y[ok]).statistic
    return float(tau) if np.isfinite(tau) else math.nan


def stability(rates: np.ndarray) -> np.ndarray:
    """Kendall τ between the win rates of consecutive steps (length steps − 1)."""
    return np.array([kendall(rates[t], rates[t + 1]) for t in range(rates.shape[0] - 1)])


def volatility(rank: np.ndarray) -> np.ndarray:
    """Per value: mean |rank change| over consecutive steps ranked in both."""
    d = np.abs(np.diff(rank, axis=0))
    with np.errstate(invalid="ignore"):
        n = np.sum(np.isfinite(d), axis=0)
        return np.where(n > 0, np.nansum(d, axis=0) / np.maximum(n, 1), np.nan)


def pairwise_agreement(outcomes: Sequence[Hashable]) -> float:
    """Share of pairs of models with the same outcome (NaN with < 2 models)."""
    pairs = list(combinations(outcomes, 2))
    return float(np.mean([a == b for a, b in pairs])) if pairs else math.nan


def kendall_tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b between ``x[b]`` and ``y[b]`` for every row b at once (the
    same statistic as scipy.stats.kendalltau, over the entries finite in both;
    NaN with fewer than 2 of them or no variation in one): Σ sign(xi−xj)·sign(yi−yj)
    over pairs / √((n0 − ties in x)(n0 − ties in y)). For the bootstrap, where
    scipy's per-call overhead dominates; tested equal to scipy."""
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    ok = np.isfinite(x) & np.isfinite(y)
    iu = np.triu_indices(x.shape[1], 1)
    pair = (ok[:, :, None] & ok[:, None, :])[:, iu[0], iu[1]]
    with np.errstate(invalid="ignore"):
        dx = np.sign(x[:, :, None] - x[:, None, :])[:, iu[0], iu[1]]
        dy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    dx, dy = np.where(pair, dx, 0.0), np.where(pair, dy, 0.0)
    n0 = pair.sum(1)
    denom = np.sqrt((n0 - (pair & (dx == 0)).sum(1)) * (n0 - (pair & (dy == 0)).sum(1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(1) / np.where(denom > 0, denom, 1), np.nan)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' κ of ``counts[subject, category]`` (raters per category; the
    same number of raters for every subject): (P̄ − P_e) / (1 − P_e). NaN with
    no subject, fewer than 2 raters, or P_e = 1 (every rating in one category)."""
    m = np.asarray(counts, dtype=float)
    if m.ndim != 2 or m.shape[0] == 0:
        return math.nan
    n = m.sum(axis=1)
    if np.any(n != n[0]) or n[0] < 2:
        return math.nan
    n_r = n[0]
    p_i = (np.sum(m * m, axis=1) - n_r) / (n_r * (n_r - 1))
    p_j = m.sum(axis=0) / m.sum()
    pe = float(np.sum(p_j * p_j))
    if pe >= 1 - 1e-12:
        return math.nan
    return float((p_i.mean() - pe) / (1 - pe))


# MoralChoice ---------------------------------------------------------------------

def moralchoice_scenario(forms: Sequence[tuple[float, float] | None]) -> dict[str, float]:
    """Per scenario, from per-form action likelihoods (p(action1), p(action2))
    (None = no valid answer in that form, left out): the marginal action
    likelihood (uniform over the remaining forms), its entropy (nats), the
    question-form consistency (metrics.form_consistency: 1 − gJSD / ln 2 for
    two actions) and the mean per-form entropy."""
    dists = [np.asarray(f, dtype=float) / sum(f) for f in forms if f is not None and sum(f) > 0]
    if not dists:
        return {"marginal_action1": math.nan, "marginal_entropy": math.nan, "form_consistency": math.nan,
                "mean_form_entropy": math.nan, "n_forms": 0}
    marginal = np.mean(dists, axis=0)
    return {"marginal_action1": float(marginal[0]), "marginal_entropy": entropy(marginal, normalize=True),
            "form_consistency": form_consistency(dists, normalize=True),
            "mean_form_entropy": float(np.mean([entropy(d, normalize=True) for d in dists])),
            "n_forms": len(dists)}
