"""Distribution and agreement metrics, and the exact McNemar test (pure functions, numpy/scipy only).

All logarithms are natural (nats). Probability vectors are validated: 1-D,
same length, finite, non-negative and summing to 1 within ``ATOL`` (1e-6);
with ``normalize=True`` they are divided by their sum instead of checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import entr, rel_entr
from scipy.stats import binomtest

ATOL = 1e-6
DEFAULT_EPS = 1e-6
"""Default ε for smoothed KL: add ε to every entry of both vectors, renormalise."""

LN2 = float(np.log(2.0))


def _dist(p, normalize: bool = False, name: str = "p") -> np.ndarray:
    a = np.asarray(p, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D probability vector, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if np.any(a < 0):
        raise ValueError(f"{name} has negative entries (min {a.min():g})")
    total = a.sum()
    if normalize:
        if total <= 0:
            raise ValueError(f"{name} sums to 0 and cannot be normalised")
        return a / total
    if abs(total - 1.0) > ATOL:
        raise ValueError(f"{name} sums to {total:.8g}, not 1 (tolerance {ATOL:g}); pass normalize=True")
    return a


def _pair(p, q, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = _dist(p, normalize, "p"), _dist(q, normalize, "q")
    if a.size != b.size:
        raise ValueError(f"p and q differ in length ({a.size} vs {b.size})")
    return a, b


def kl(p, q, eps: float | None = None, normalize: bool = False) -> float:
    """KL(p‖q) = Σ p_i ln(p_i / q_i), in nats; terms with p_i = 0 count 0.

    Unsmoothed (``eps=None``) it is ``inf`` when some q_i = 0 where p_i > 0.
    With ``eps`` (e.g. :data:`DEFAULT_EPS`), ε is added to every entry of both
    p and q, each is renormalised to sum 1, and the result is always finite.
    """
    a, b = _pair(p, q, normalize)
    if eps is not None:
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        a = (a + eps) / (1.0 + eps * a.size)
        b = (b + eps) / (1.0 + eps * b.size)
    return float(max(np.sum(rel_entr(a, b)), 0.0))


def kl_table_replace_inf(values) -> np.ndarray:
    """DEF's rule: replace inf/NaN KL values by (largest finite value + 1).

    The replacement depends on the other values in the table. If no value is
    finite, the largest finite value is taken as 0, so all become 1.0.
    """
    v = np.array(values, dtype=float).ravel()
    finite = np.isfinite(v)
    top = v[finite].max() if finite.any() else 0.0
    v[~finite] = top + 1.0
    return v


def js_divergence(p, q, normalize: bool = False) -> float:
    """JSD(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = (p+q)/2; nats, in [0, ln 2]."""
    a, b = _pair(p, q, normalize)
    m = 0.5 * (a + b)
    d = 0.5 * (np.sum(rel_entr(a, m)) + np.sum(rel_entr(b, m)))
    return float(np.clip(d, 0.0, LN2))


def js_distance(p, q, normalize: bool = False) -> float:
    """Jensen–Shannon distance √JSD (natural log, as scipy's ``jensenshannon``).

    At most √ln 2 ≈ 0.833. Clipped to [0, 1] and never NaN: scipy can return
    NaN for (nearly) identical inputs through rounding; we return 0 there.
    """
    return float(np.clip(np.sqrt(js_divergence(p, q, normalize)), 0.0, 1.0))


def one_minus_jsd(p, q, normalize: bool = False) -> float:
    """1 − JS distance (Cao et al.'s Table 2 metric); higher is better, in [0, 1]."""
    return 1.0 - js_distance(p, q, normalize)


def ordinal_emd(p, q, normalize: bool = False) -> float:
    """Ordinal EMD: 1-D Wasserstein distance over positions 0..k-1, divided by k−1.

    W = Σ_{i<k-1} |F_p(i) − F_q(i)| with F the CDFs; result in [0, 1] (0 if
    k = 1). Unlike Cao et al.'s code, which passes the probabilities to
    ``wasserstein_distance`` as sample values (order-blind, so a reversed
    distribution scores 0), the probabilities here are weights on positions.
    """
    a, b = _pair(p, q, normalize)
    k = a.size
    if k == 1:
        return 0.0
    w = np.sum(np.abs(np.cumsum(a) - np.cumsum(b))[:-1])
    return float(np.clip(w / (k - 1), 0.0, 1.0))


def _labels_pair(y_true, y_pred) -> tuple[list, list]:
    t, p = list(y_true), list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length ({len(t)} vs {len(p)})")
    if not t:
        raise ValueError("y_true and y_pred are empty")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Share of positions where y_pred equals y_true."""
    t, p = _labels_pair(y_true, y_pred)
    return sum(a == b for a, b in zip(t, p)) / len(t)


def cohen_kappa(y_true, y_pred, labels: Sequence | None = None) -> float:
    """Unweighted Cohen's κ = (p_o − p_e) / (1 − p_e).

    p_o = observed agreement; p_e = Σ_c (row share of c)(column share of c).
    ``labels`` fixes the category set (default: labels seen, in first-seen
    order); a value outside it raises ValueError. Degenerate p_e = 1 (both
    raters use one and the same category): 1.0 if p_o = 1, else 0.0.
    """
    t, p = _labels_pair(y_true, y_pred)
    cats = list(dict.fromkeys(t + p)) if labels is None else list(labels)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in zip(t, p):
        if a not in index or b not in index:
            raise ValueError(f"label {a if a not in index else b!r} not in labels {cats!r}")
        table[index[a], index[b]] += 1
    return kappa_from_table(table)


def kappa_from_table(table) -> float:
    """Cohen's κ of a k × k contingency table (counts or shares; rows: rater 1, columns:
    rater 2): (p_o − p_e) / (1 − p_e), with :func:`cohen_kappa`'s rule for p_e = 1."""
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.size == 0:
        raise ValueError(f"table must be a non-empty square matrix, got shape {t.shape}")
    if t.sum() <= 0 or np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("table must hold non-negative finite counts with a positive total")
    t = t / t.sum()
    po = float(np.trace(t))
    pe = float(t.sum(axis=1) @ t.sum(axis=0))
    if np.isclose(pe, 1.0):
        return 1.0 if np.isclose(po, 1.0) else 0.0
    return (po - pe) / (1.0 - pe)


def kappa_codes(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """:func:`cohen_kappa` for integer codes 0 … k−1 (vectorised: a bootstrap calls it thousands of times)."""
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if t.shape != p.shape or t.ndim != 1 or not t.size:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of one length, got {t.shape} and {p.shape}")
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
        raise ValueError(f"codes must lie in 0..{k - 1}")
    return kappa_from_table(np.bincount(t * k + p, minlength=k * k).reshape(k, k))


def mcnemar_exact(a, b) -> tuple[int, int, float]:
    """Exact two-sided McNemar test of paired successes ``a`` and ``b`` (booleans, one pair per
    position): (a right & b wrong, a wrong & b right, p), p from the binomial test of the first
    count among the discordant pairs at ½; p = 1 with no discordant pair."""
    x_, y_ = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x_.shape != y_.shape or x_.ndim != 1:
        raise ValueError(f"a and b must be 1-D of one length, got {x_.shape} and {y_.shape}")
    x, y = int(np.sum(x_ & ~y_)), int(np.sum(~x_ & y_))
    return x, y, (float(binomtest(x, x + y, 0.5).pvalue) if x + y else 1.0)


def entropy(p, normalize: bool = False) -> float:
    """Shannon entropy H(p) = −Σ p_i ln p_i, in nats (0 ln 0 = 0)."""
    return float(max(np.sum(entr(_dist(p, normalize))), 0.0))


def _dists(dists, weights, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = [_dist(d, normalize, f"dists[{i}]") for i, d in enumerate(dists)]
    if not rows:
        raise ValueError("dists is empty")
    if len({r.size for r in rows}) != 1:
        raise ValueError("all distributions in dists must have the same length")
    n = len(rows)
    w = np.full(n, 1.0 / n) if weights is None else _dist(weights, False, "weights")
    if w.size != n:
        raise ValueError(f"{w.size} weights for {n} distributions")
    return np.vstack(rows), w


def generalized_jsd(dists, weights=None, normalize: bool = False) -> float:
    """Generalised JSD = H(Σ w_i p_i) − Σ w_i H(p_i), in nats (≥ 0).

    ``weights`` default to uniform. Upper bound: min(H(w), ln k), i.e.
    min(ln n, ln k) for n distributions over k options with uniform weights.
    """
    P, w = _dists(dists, weights, normalize)
    mix = w @ P
    d = np.sum(entr(mix)) - w @ np.sum(entr(P), axis=1)
    return float(max(d, 0.0))


def form_consistency(dists, weights=None, normalize: bool = False) -> float:
    """MoralChoice question-form consistency = 1 − gJSD / min(H(w), ln k), in [0, 1].

    The divisor is gJSD's upper bound (see :func:`generalized_jsd`); for
    two-action distributions it is ln 2, so this equals 1 − gJSD in bits.
    1.0 when the forms agree exactly, or when the bound is 0 (one form or k=1).
    """
    P, w = _dists(dists, weights, normalize)
    bound = min(float(np.sum(entr(w))), float(np.log(P.shape[1])))
    if bound <= 0:
        return 1.0
    return float(np.clip(1.0 - generalized_jsd(P, w) / bound, 0.0, 1.0))


def expected_option_value(p, values=None, normalize: bool = False) -> float:
    """Σ p_i v_i; ``values`` default to option positions 0..k-1."""
    a = _dist(p, normalize)
    v = np.arange(a.size, dtype=float) if values is None else np.asarray(values, dtype=float)
    if v.shape != a.shape:
        raise ValueError(f"values has shape {v.shape}, p has {a.shape}")
    return float(a @ v)


def share_below(values, threshold: float = 0.5) -> float:
    """Share of values strictly below ``threshold`` (e.g. DEF's "close": KL < 0.5).

    NaN counts as not below; ±inf compare as usual. Empty input raises.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("values is empty")
    return float(np.mean(v < threshold))


# Position bias -------------------------------------------------------------------

POSITION_TV_THRESHOLD = 0.3
"""A layer's choices are *position-dominated* when their position total variation exceeds this
(and is unlikely under no bias, see :data:`POSITION_ALPHA`).

For two-option items it means one position wins more than 80 % of the items
(TV = |share − ½|); for four-option items, e.g. one position in more than 55 %."""
POSITION_ALPHA = 0.05
"""... and when the Monte Carlo p-value of that TV under no bias is below this, so that
a handful of items chosen at random is not called position-dominated."""
POSITION_DRAWS = 10_000


def position_baseline(n_options) -> np.ndarray:
    """The no-bias distribution over positions 1..max(k): each item with k options
    spreads 1/k over positions 1..k, averaged over items (entry i = position i + 1)."""
    k = np.asarray(n_options, dtype=float).ravel()
    if k.size == 0:
        raise ValueError("n_options is empty")
    if not np.all(np.isfinite(k)) or np.any(k < 1) or np.any(k != np.round(k)):
        raise ValueError("n_options must be integers >= 1")
    k = k.astype(int)
    out = np.zeros(int(k.max()))
    for kk, count in zip(*np.unique(k, return_counts=True)):
        out[:kk] += count / kk
    return out / k.size


def position_null_p(tv: float, n_options, draws: int = POSITION_DRAWS, seed: int = 0) -> float:
    """P(TV ≥ ``tv``) when every item picks one of its k positions uniformly at random:
    (1 + #draws at least as far) / (1 + draws), over ``draws`` seeded simulations."""
    k = np.asarray(n_options, dtype=int).ravel()
    base = position_baseline(k)
    rng = np.random.default_rng(seed)
    counts = np.zeros((draws, base.size))
    for kk, m in zip(*np.unique(k, return_counts=True)):
        counts[:, :kk] += rng.multinomial(m, np.full(kk, 1.0 / kk), size=draws)
    sim = 0.5 * np.abs(counts / k.size - base).sum(axis=1)
    return float((1 + np.sum(sim >= tv - 1e-9)) / (1 + draws))


def position_bias(positions, n_options, threshold: float = POSITION_TV_THRESHOLD,
                  alpha: float = POSITION_ALPHA, reference=None) -> dict:
    """Position bias of chosen options: ``positions[i]`` (1-based) is where item i's
    chosen option was shown, ``n_options[i]`` how many it had; None/NaN positions
    (no valid choice) are left out with their item.

    Observed = share of items choosing each position; baseline =
    :func:`position_baseline` of the same items. Returns ``position_tv`` (total
    variation ½Σ|obs − base|, in [0, 1); always-first gives 1 − mean(1/k)),
    ``position_js_distance`` (√JSD, natural log), ``top_position`` (most chosen,
    the lowest on ties), ``top_position_share``, ``position_n``, ``position_p``
    (:func:`position_null_p`) and ``position_dominated`` (TV > ``threshold``, up to
    1e-9 rounding, and p < ``alpha``). NaN / None with no valid item.

    ``reference``: the positions a reference chooser picked on the same items (e.g.
    the humans' modal answer; None = unknown), for scales that are not position-
    neutral. Adds ``reference_position_tv`` (its own TV from the baseline) and
    ``position_tv_vs_reference`` (TV between the two position distributions, over
    the items valid in both); position-dominated then also needs the latter >
    ``threshold``, so matching the reference is never position-dominated.
    """
    pos = np.array([np.nan if p is None else p for p in positions], dtype=float).ravel()
    k = np.asarray(n_options, dtype=float).ravel()
    if pos.size != k.size:
        raise ValueError(f"positions and n_options differ in length ({pos.size} vs {k.size})")
    ref = None
    if reference is not None:
        ref = np.array([np.nan if p is None else p for p in reference], dtype=float).ravel()
        if ref.size != k.size:
            raise ValueError(f"reference and n_options differ in length ({ref.size} vs {k.size})")
        with np.errstate(invalid="ignore"):
            if np.any(np.isfinite(ref) & ((ref != np.round(ref)) | (ref < 1) | (ref > k))):
                raise ValueError("a reference position is not one of its item's 1..k")
    ok = np.isfinite(pos)
    empty = {"position_tv": np.nan, "position_js_distance": np.nan, "top_position": None,
             "top_position_share": np.nan, "position_n": 0, "position_p": np.nan, "position_dominated": None}
    if ref is not None:
        empty.update(_vs_reference(pos, ref, k))
    if not ok.any():
        return empty
    extra = _vs_reference(pos, ref, k) if ref is not None else {}
    pos, k = pos[ok], k[ok]
    base = position_baseline(k)
    if np.any(pos != np.round(pos)) or np.any(pos < 1) or np.any(pos > k):
        bad = next(i for i, (p, kk) in enumerate(zip(pos, k)) if p != round(p) or not 1 <= p <= kk)
        raise ValueError(f"position {pos[bad]:g} is not one of 1..{int(k[bad])} (valid item {bad})")
    obs = np.bincount(pos.astype(int) - 1, minlength=base.size) / pos.size
    tv = float(np.clip(0.5 * np.abs(obs - base).sum(), 0.0, 1.0))
    top = int(np.argmax(obs))
    p = position_null_p(tv, k)
    vs = extra.get("position_tv_vs_reference", np.inf)
    vs = np.inf if np.isnan(vs) else vs  # no item with a reference: the baseline alone decides
    return {"position_tv": tv, "position_js_distance": js_distance(obs, base, normalize=True),
            "top_position": top + 1, "top_position_share": float(obs[top]), "position_n": int(pos.size),
            "position_p": p, **extra,  # 0.8 − 0.5 is not beyond 0.3:
            "position_dominated": bool(tv > threshold + 1e-9 and p < alpha and vs > threshold + 1e-9)}


def _vs_reference(pos: np.ndarray, ref: np.ndarray, k: np.ndarray) -> dict:
    has = np.isfinite(ref)
    both = has & np.isfinite(pos)
    out = {"reference_position_tv": np.nan, "position_tv_vs_reference": np.nan}
    if has.any():
        base = position_baseline(k[has])
        r = np.bincount(ref[has].astype(int) - 1, minlength=base.size) / has.sum()
        out["reference_position_tv"] = float(np.clip(0.5 * np.abs(r - base).sum(), 0.0, 1.0))
    if both.any():
        size = int(k[both].max())
        a = np.bincount(pos[both].astype(int) - 1, minlength=size) / both.sum()
        b = np.bincount(ref[both].astype(int) - 1, minlength=size) / both.sum()
        out["position_tv_vs_reference"] = float(np.clip(0.5 * np.abs(a - b).sum(), 0.0, 1.0))
    return out
