"""Metrics against independent computations, hand-worked cases and properties."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import binomtest
from scipy.stats import entropy as sp_entropy
from scipy.stats import wasserstein_distance

from valuelens import metrics as M

LN2 = math.log(2)


@st.composite
def dist_pair(draw, min_k=1, max_k=8):
    """Two probability vectors of the same length (zeros allowed)."""
    k = draw(st.integers(min_k, max_k))
    weights = st.lists(st.floats(0, 1, allow_subnormal=False), min_size=k, max_size=k)
    out = []
    for _ in range(2):
        w = np.array(draw(weights.filter(lambda v: sum(v) > 1e-3)))
        out.append(w / w.sum())
    return out


# --- KL -------------------------------------------------------------------

def test_kl_hand_worked():
    # KL([.5,.5] ‖ [.25,.75]) = .5 ln(.5/.25) + .5 ln(.5/.75)
    #                         = .5 (0.693147 − 0.405465) = 0.143841
    assert M.kl([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.1438410362, abs=1e-9)


def test_kl_matches_rel_entr_and_is_inf_on_missing_support():
    p, q = [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]
    assert M.kl(p, q) == pytest.approx(rel_entr(p, q).sum())
    assert M.kl(p, q) == pytest.approx(sp_entropy(p, q))
    assert M.kl([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert M.kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(LN2)  # 0·ln 0 = 0


def test_kl_smoothed_is_finite_and_documented_formula():
    eps = M.DEFAULT_EPS
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    ps, qs = (p + eps) / (1 + 2 * eps), (q + eps) / (1 + 2 * eps)
    got = M.kl(p, q, eps=eps)
    assert math.isfinite(got)
    assert got == pytest.approx(rel_entr(ps, qs).sum())
    # 0.5 ln(0.5/1e-6) ≈ 0.5 · 13.12 dominates: a large but finite value.
    assert 6.0 < got < 7.0


def test_kl_validation_and_normalize():
    with pytest.raises(ValueError, match="sums to"):
        M.kl([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match="negative"):
        M.kl([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="length"):
        M.kl([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        M.kl([np.nan, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="eps"):
        M.kl([0.5, 0.5], [0.5, 0.5], eps=0)
    assert M.kl([1, 1], [1, 3], normalize=True) == pytest.approx(M.kl([0.5, 0.5], [0.25, 0.75]))
    assert M.kl([0.5, 0.5 + 5e-7], [0.5, 0.5]) >= 0  # within tolerance


def test_kl_table_replace_inf():
    # largest finite = 1.3 → inf and NaN become 2.3
    got = M.kl_table_replace_inf([0.2, math.inf, 1.3, math.nan])
    np.testing.assert_allclose(got, [0.2, 2.3, 1.3, 2.3])
    np.testing.assert_allclose(M.kl_table_replace_inf([math.inf, math.nan]), [1.0, 1.0])
    assert M.kl_table_replace_inf([]).size == 0


# --- Jensen–Shannon -------------------------------------------------------

def test_js_hand_worked_and_vs_scipy():
    # Disjoint supports: m = [.5,.5], each KL to m = ln 2 → JSD = ln 2, distance √ln2.
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(LN2)
    assert M.js_distance([1, 0], [0, 1]) == pytest.approx(0.8325546112)
    assert M.one_minus_jsd([1, 0], [0, 1]) == pytest.approx(1 - 0.8325546112)
    p, q = [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]
    assert M.js_distance(p, q) == pytest.approx(jensenshannon(p, q))
    assert M.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2)


def test_js_never_nan_where_scipy_is():
    # A pair differing in the last bit: scipy's jensenshannon returns NaN here
    # (a tiny negative divergence under the square root); Cao et al. then drop
    # the item. We keep it: a distance of ~0 (rounding noise), never NaN.
    p = [0.09489926455223137, 0.9051007354477687]
    q = [0.09489926455223137, 0.9051007354477688]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(jensenshannon(p, q))
    assert M.js_distance(p, q) == pytest.approx(0.0, abs=1e-7)
    assert M.one_minus_jsd(p, q) == pytest.approx(1.0, abs=1e-7)
    assert M.js_distance(p, p) == 0.0 and M.one_minus_jsd(p, p) == 1.0


@settings(max_examples=200, deadline=None)
@given(dist_pair())
def test_js_properties(pq):
    p, q = pq
    d, dist = M.js_divergence(p, q), M.js_distance(p, q)
    assert 0.0 <= d <= LN2 and 0.0 <= dist <= 1.0
    assert not math.isnan(d) and not math.isnan(dist)
    assert d == pytest.approx(M.js_divergence(q, p), abs=1e-12)
    assert dist == pytest.approx(M.js_distance(q, p), abs=1e-12)
    assert M.js_distance(p, p) == 0.0 and M.one_minus_jsd(p, p) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = jensenshannon(p, q)
    if not math.isnan(ref):
        assert dist == pytest.approx(ref, abs=1e-7)


# --- Ordinal EMD ----------------------------------------------------------

def test_ordinal_emd_hand_worked():
    # All mass at the first vs last of 3 options: distance 2, / (k−1) = 1.
    assert M.ordinal_emd([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)
    # Adjacent options: distance 1, / 2 = 0.5.
    assert M.ordinal_emd([1, 0, 0], [0, 1, 0]) == pytest.approx(0.5)
    # Reversed [.7,.2,.1]: CDFs [.7,.9] vs [.1,.3] → .6 + .6 = 1.2, / 2 = 0.6.
    p, r = [0.7, 0.2, 0.1], [0.1, 0.2, 0.7]
    assert M.ordinal_emd(p, r) == pytest.approx(0.6)
    # Cao et al.'s quirk (probabilities as sample values) scores this 0.
    assert wasserstein_distance(p, r) == pytest.approx(0.0)
    assert M.ordinal_emd([1.0], [1.0]) == 0.0


@settings(max_examples=200, deadline=None)
@given(dist_pair(min_k=2))
def test_ordinal_emd_properties(pq):
    p, q = pq
    k = len(p)
    e = M.ordinal_emd(p, q)
    assert 0.0 <= e <= 1.0 and not math.isnan(e)
    assert e == pytest.approx(M.ordinal_emd(q, p), abs=1e-12)
    assert M.ordinal_emd(p, p) == 0.0
    ref = wasserstein_distance(range(k), range(k), p, q) / (k - 1)
    assert e == pytest.approx(ref, abs=1e-9)
    rev = p[::-1]
    if not np.allclose(p, rev, atol=1e-9):
        assert M.ordinal_emd(p, rev) > 0.0


@settings(max_examples=200, deadline=None)
@given(dist_pair())
def test_kl_properties(pq):
    p, q = pq
    assert M.kl(p, q) >= 0.0 and not math.isnan(M.kl(p, q))
    assert M.kl(p, p) == pytest.approx(0.0, abs=1e-12)
    s = M.kl(p, q, eps=M.DEFAULT_EPS)
    assert math.isfinite(s) and s >= 0.0


# --- Agreement ------------------------------------------------------------

def test_accuracy():
    assert M.accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        M.accuracy([1], [1, 2])
    with pytest.raises(ValueError):
        M.accuracy([], [])


def test_cohen_kappa_hand_worked():
    # Confusion table (rows = true, cols = pred):   a  b
    #                                          a   4  1
    #                                          b   2  3
    # p_o = 7/10; rows .5/.5, cols .6/.4; p_e = .5·.6 + .5·.4 = .5
    # κ = (.7 − .5)/(1 − .5) = 0.4
    t = ["a"] * 5 + ["b"] * 5
    p = ["a"] * 4 + ["b"] + ["a"] * 2 + ["b"] * 3
    assert M.cohen_kappa(t, p) == pytest.approx(0.4)
    # Extra unused label changes nothing.
    assert M.cohen_kappa(t, p, labels=["a", "b", "c"]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not in labels"):
        M.cohen_kappa(t, p, labels=["a"])


def test_cohen_kappa_random_vs_confusion_table():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    p[:80] = t[:80]
    table = np.zeros((4, 4))
    np.add.at(table, (t, p), 1)
    n = table.sum()
    po = np.trace(table) / n
    pe = sum(table[i].sum() * table[:, i].sum() for i in range(4)) / n**2
    assert M.cohen_kappa(t.tolist(), p.tolist()) == pytest.approx((po - pe) / (1 - pe))


def test_cohen_kappa_degenerate():
    assert M.cohen_kappa(["a"] * 3, ["a"] * 3) == 1.0  # p_e = 1, perfect agreement
    assert M.cohen_kappa([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)


# --- Entropy and generalised JSD ------------------------------------------

def test_entropy():
    # H([.5,.25,.25]) = .5 ln2 + .25 ln4 + .25 ln4 = 1.5 ln 2
    assert M.entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 * LN2)
    assert M.entropy([1.0, 0.0]) == 0.0
    p = [0.1, 0.6, 0.3]
    assert M.entropy(p) == pytest.approx(sp_entropy(p))


def test_generalized_jsd_and_form_consistency():
    p, q = [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]
    # Two distributions with equal weights: the ordinary JSD.
    assert M.generalized_jsd([p, q]) == pytest.approx(M.js_divergence(p, q))
    dists = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    w = np.array([0.5, 0.3, 0.2])
    ref = sp_entropy(w @ dists) - sum(wi * sp_entropy(d) for wi, d in zip(w, dists))
    assert M.generalized_jsd(dists, w) == pytest.approx(ref)
    # Three forms over two actions, [1,0],[1,0],[0,1]: mix [2/3,1/3],
    # gJSD = H(mix) = ln 3 − (2/3) ln 2 = 0.636514; bound min(ln 3, ln 2) = ln 2;
    # consistency = 1 − 0.636514/0.693147 = 1 − 0.918296 = 0.081704.
    forms = [[1, 0], [1, 0], [0, 1]]
    assert M.generalized_jsd(forms) == pytest.approx(math.log(3) - 2 / 3 * LN2)
    assert M.form_consistency(forms) == pytest.approx(0.0817041659, abs=1e-9)
    assert M.form_consistency([[1, 0], [0, 1]]) == pytest.approx(0.0)
    assert M.form_consistency([p, p, p]) == pytest.approx(1.0)
    assert M.form_consistency([p]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        M.generalized_jsd([[1.0], [0.5, 0.5]])


@settings(max_examples=100, deadline=None)
@given(dist_pair(min_k=2), dist_pair(min_k=2))
def test_form_consistency_bounds(a, b):
    dists = [a[0], a[1]] + ([b[0], b[1]] if len(b[0]) == len(a[0]) else [])
    c = M.form_consistency(dists)
    assert 0.0 <= c <= 1.0
    assert M.generalized_jsd(dists) >= 0.0


# --- Simple summaries -----------------------------------------------------

def test_expected_option_value_and_share_below():
    # 0·.2 + 1·.3 + 2·.5 = 1.3
    assert M.expected_option_value([0.2, 0.3, 0.5]) == pytest.approx(1.3)
    assert M.expected_option_value([0.2, 0.3, 0.5], [1, 2, 3]) == pytest.approx(2.3)
    with pytest.raises(ValueError):
        M.expected_option_value([0.5, 0.5], [1, 2, 3])
    # 0.1 and 0.2 are below 0.5; 0.5 itself is not (strict).
    assert M.share_below([0.1, 0.5, 0.7, 0.2]) == pytest.approx(0.5)
    assert M.share_below([0.1, math.nan]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.share_below([])


# position bias --------------------------------------------------------------------

def test_position_baseline_hand_worked():
    # two 2-option items and two 4-option items: (½+½+¼+¼)/4 on positions 1, 2; (¼+¼)/4 on 3, 4
    assert M.position_baseline([2, 2, 4, 4]) == pytest.approx([0.375, 0.375, 0.125, 0.125])


def test_position_bias_hand_worked():
    r = M.position_bias([1, 1, 3, 1], [2, 2, 4, 4])
    obs, base = np.array([0.75, 0, 0.25, 0]), np.array([0.375, 0.375, 0.125, 0.125])
    assert r["position_tv"] == pytest.approx(0.5)  # ½(0.375 + 0.375 + 0.125 + 0.125)
    assert r["position_js_distance"] == pytest.approx(jensenshannon(obs, base))
    assert (r["top_position"], r["top_position_share"], r["position_n"]) == (1, 0.75, 4)
    # p under no bias, exactly: all 2·2·4·4 = 64 equally likely choice vectors, the share with TV >= 0.5
    tvs = [M.position_bias(list(c), [2, 2, 4, 4], alpha=1.1)["position_tv"]
           for c in itertools.product([1, 2], [1, 2], [1, 2, 3, 4], [1, 2, 3, 4])]
    exact = np.mean(np.array(tvs) >= 0.5 - 1e-12)
    assert r["position_p"] == pytest.approx(exact, abs=0.015)
    assert exact == pytest.approx(14 / 64) and r["position_dominated"] is False  # 4 items: not evidence enough


def test_position_bias_leaves_out_invalid_items():
    r = M.position_bias([2, None, float("nan"), 1], [2, 5, 3, 2])
    assert (r["position_tv"], r["position_n"], r["top_position"]) == (0.0, 2, 1)  # tie: the lowest position
    assert r["position_dominated"] is False
    e = M.position_bias([None], [3])
    assert e["position_n"] == 0 and math.isnan(e["position_tv"]) and e["position_dominated"] is None


@given(st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_position_bias_always_first_closed_form(ks):
    r = M.position_bias([1] * len(ks), ks)
    assert r["position_tv"] == pytest.approx(1 - np.mean([1 / k for k in ks]))
    assert r["top_position_share"] == 1.0


@given(st.integers(2, 9), st.integers(1, 30))
def test_position_bias_always_last_of_k(k, n):
    assert M.position_bias([k] * n, [k] * n)["position_tv"] == pytest.approx(1 - 1 / k)


def test_position_bias_uniform_chooser_is_near_zero():
    rng = np.random.default_rng(0)
    ks = rng.integers(2, 6, size=20_000)
    pos = rng.integers(1, ks + 1)  # uniform over each item's own positions
    r = M.position_bias(pos, ks)
    assert r["position_tv"] < 0.02 and r["position_dominated"] is False
    # a chooser that cycles exactly through each k's positions gives exactly 0
    ks = [2, 2, 3, 3, 3]
    assert M.position_bias([1, 2, 1, 2, 3], ks)["position_tv"] == pytest.approx(0.0, abs=1e-12)


def test_position_bias_threshold_and_binary_reading():
    # binary items: TV = |share of position 1 − ½|
    r = M.position_bias([2] * 8 + [1] * 2, [2] * 10)
    assert r["position_tv"] == pytest.approx(0.3) and r["position_dominated"] is False  # not beyond 0.3
    r = M.position_bias([2] * 9 + [1], [2] * 10)
    # exact two-sided binomial: P(X <= 1 or X >= 9), X ~ Bin(10, ½) = 22/1024
    assert r["position_p"] == pytest.approx(binomtest(9, 10, 0.5).pvalue, abs=0.005)
    assert r["position_dominated"] is True
    assert M.position_bias([2] * 9 + [1], [2] * 10, threshold=0.45)["position_dominated"] is False
    # always B on 4 items: TV 0.5, but p = 2/16 -- too few items to call it position-dominated
    r = M.position_bias([2] * 4, [2] * 4)
    assert r["position_tv"] == 0.5 and r["position_p"] == pytest.approx(0.125, abs=0.01)
    assert r["position_dominated"] is False and M.position_bias([2] * 6, [2] * 6)["position_dominated"] is True


def test_position_bias_rejects_bad_input():
    with pytest.raises(ValueError, match="not one of 1..2"):
        M.position_bias([3], [2])
    with pytest.raises(ValueError, match="not one of"):
        M.position_bias([0], [2])
    with pytest.raises(ValueError, match="differ in length"):
        M.position_bias([1, 2], [2])
    with pytest.raises(ValueError, match="integers"):
        M.position_baseline([0])


def test_position_bias_against_a_reference_chooser():
    # 12 two-option items: the model always picks position 1; the reference (humans) picks 1 on 9 of them
    ref = [1] * 9 + [2] * 3
    r = M.position_bias([1] * 12, [2] * 12, reference=ref)
    assert r["position_tv"] == 0.5 and r["reference_position_tv"] == pytest.approx(0.25)
    assert r["position_tv_vs_reference"] == pytest.approx(0.25)  # (1, 0) vs (¾, ¼)
    assert r["position_p"] < M.POSITION_ALPHA and r["position_dominated"] is False  # close to the humans
    # choosing exactly what the reference chose is never position-dominated, however skewed
    same = M.position_bias([1] * 12, [2] * 12, reference=[1] * 12)
    assert same["position_tv_vs_reference"] == 0.0 and same["position_dominated"] is False
    # far from both the baseline and the reference: dominated; unknown reference items are left out of the comparison
    far = M.position_bias([2] * 12, [2] * 12, reference=ref[:10] + [None, None])
    assert far["position_tv_vs_reference"] == pytest.approx(0.9) and far["position_dominated"] is True
    assert M.position_bias([2] * 12, [2] * 12, reference=[None] * 12)["position_dominated"] is True
    with pytest.raises(ValueError, match="reference position"):
        M.position_bias([1], [2], reference=[3])
