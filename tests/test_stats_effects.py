"""The statistics added for issue 19 against scipy and hand-worked examples: paired t, Mann–Whitney,
effect sizes, stratified / two-sample bootstrap, Benjamini–Hochberg."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from valuelens import stats as S


@pytest.mark.parametrize("seed", range(6))
def test_paired_t_vs_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    x = rng.normal(0, 1, n)
    y = x + rng.normal(0.3, 0.8, n)
    r = S.ttest_paired(x, y)
    ref = sps.ttest_rel(x, y)
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert r.df == n - 1 == ref.df
    d = x - y
    assert r.sed == pytest.approx(sps.sem(d))
    assert r.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    lo, hi = ref.confidence_interval(0.95)
    assert (r.diff_low, r.diff_high) == pytest.approx((lo, hi))
    assert r.sem1 == pytest.approx(sps.sem(x))


def test_paired_t_hand_worked_and_edges():
    # d = [1, 2, 3]: mean 2, SD 1, SED 1/√3, t = 2√3 = 3.4641, df 2
    r = S.ttest_paired([2, 4, 6], [1, 2, 3])
    assert r.t == pytest.approx(2 * math.sqrt(3)) and r.df == 2 and r.sed == pytest.approx(1 / math.sqrt(3))
    assert r.p == pytest.approx(2 * sps.t.sf(2 * math.sqrt(3), 2))
    assert S.ttest_paired([2, 3], [1, 2]).t == math.inf
    assert math.isnan(S.ttest_paired([1, 2], [1, 2]).p)
    with pytest.raises(ValueError):
        S.ttest_paired([1.0], [2.0])
    with pytest.raises(ValueError):
        S.ttest_paired([1.0, 2.0], [2.0])


@pytest.mark.parametrize("seed", range(5))
def test_cohens_d_and_t_interval(seed):
    rng = np.random.default_rng(10 + seed)
    a, b = rng.normal(0.5, 1, rng.integers(4, 40)), rng.normal(0, 1.5, rng.integers(4, 40))
    sp = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert S.cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / sp)
    for equal_var in (True, False):
        r = S.ttest(a, b, equal_var=equal_var)
        lo, hi = sps.ttest_ind(a, b, equal_var=equal_var).confidence_interval(0.95)
        assert (r.diff_low, r.diff_high) == pytest.approx((lo, hi))
        assert r.cohens_d == pytest.approx((a.mean() - b.mean()) / sp)


def test_rank_biserial_paired_hand_worked():
    # differences [1, -2, 3, 4] (one zero dropped): ranks 1, 2, 3, 4; W+ = 8, W− = 2 → (8 − 2)/10 = 0.6
    assert S.rank_biserial_paired([1, 0, 3, 4, 5], [0, 2, 0, 0, 5]) == pytest.approx(0.6)
    r = S.wilcoxon_paired([1, 0, 3, 4], [0, 2, 0, 0])
    assert r.rank_biserial == pytest.approx(0.6)
    assert math.isnan(S.rank_biserial_paired([1, 2], [1, 2]))


@pytest.mark.parametrize("seed", range(5))
def test_wilcoxon_rank_biserial_matches_scipy_rank_sums(seed):
    rng = np.random.default_rng(20 + seed)
    x = rng.normal(size=25)
    y = x + rng.normal(0.3, 1, 25)
    r = S.wilcoxon_paired(x, y)
    ref = sps.wilcoxon(x, y)
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    total = r.n * (r.n + 1) / 2  # W+ + W−; scipy's statistic is min(W+, W−)
    assert abs(r.rank_biserial) == pytest.approx((total - 2 * ref.statistic) / total)


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_vs_scipy(seed):
    rng = np.random.default_rng(30 + seed)
    a, b = rng.normal(0.4, 1, rng.integers(3, 30)), rng.normal(0, 1, rng.integers(3, 30))
    r = S.mann_whitney(a, b)
    ref = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    # rank-biserial = P(a > b) − P(a < b) over all pairs
    gt = (a[:, None] > b[None, :]).mean() - (a[:, None] < b[None, :]).mean()
    assert r.rank_biserial == pytest.approx(gt)


def test_bh_vs_hand_and_scipy():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04,
    # 0.04·4/4 = 0.04; step-up minimum from the top: [0.02, 0.02, 0.04, 0.04] → input order [0.02, 0.04, 0.04, 0.02]
    np.testing.assert_allclose(S.bh([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 0.2, 15)
    np.testing.assert_allclose(S.bh(p), sps.false_discovery_control(p))
    np.testing.assert_allclose(S.adjust(p, "holm"), S.holm(p))
    np.testing.assert_allclose(S.adjust(p, "none"), p)
    assert np.all(S.bh(p) <= S.holm(p) + 1e-15)  # BH never stricter than Holm
    with pytest.raises(ValueError):
        S.adjust(p, "bonferoni")
    assert S.bh([]).size == 0


def test_bootstrap_strata():
    rng = np.random.default_rng(5)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(3.0, 1.0, 40)
    est, lo, hi = S.bootstrap_ci_strata([a, b], n_resamples=3000, seed=1)
    assert est == pytest.approx((a.mean() + b.mean()) / 2)  # the mean of the strata's means, not the pooled mean
    # SE of the mean of means = ½√(1/400 + 1/40) ≈ 0.0829; the 95% width ≈ 2·1.96·0.0829 ≈ 0.325
    assert lo < est < hi and 0.25 < hi - lo < 0.40
    assert S.bootstrap_ci_strata([a, b], seed=1) == S.bootstrap_ci_strata([a, b], seed=1)
    one = S.bootstrap_ci_strata([a], n_resamples=2000, seed=2)
    assert one.estimate == pytest.approx(a.mean())
    assert one.high - one.low == pytest.approx(2 * 1.96 * a.std() / math.sqrt(a.size), rel=0.15)
    with pytest.raises(ValueError):
        S.bootstrap_ci_strata([a, []])


def test_bootstrap_diff():
    rng = np.random.default_rng(6)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 200)
    est, lo, hi = S.bootstrap_ci_diff(a, b, n_resamples=3000, seed=3)
    assert est == pytest.approx(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    # scipy's percentile bootstrap of the same statistic agrees to Monte Carlo precision
    ref = sps.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis), n_resamples=3000,
                        method="percentile", random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.05) and hi == pytest.approx(ref.high, abs=0.05)


def test_bootstrap_position_tv_against_metrics_position_bias():
    from valuelens.metrics import position_bias

    rng = np.random.default_rng(11)
    k = rng.integers(2, 6, 30)
    pos = np.minimum(k, rng.integers(1, 3, 30))  # leans to the first positions
    k2 = rng.integers(2, 5, 12)
    pos2 = rng.integers(1, k2 + 1)
    est, lo, hi = S.bootstrap_ci_position_tv([(pos, k), (pos2, k2)], n_resamples=40, seed=2)
    tv1, tv2 = position_bias(pos, k)["position_tv"], position_bias(pos2, k2)["position_tv"]
    assert est == pytest.approx((tv1 + tv2) / 2)
    # the same resamples by hand, each TV from metrics.position_bias
    r = np.random.default_rng(2)
    i1, i2 = r.integers(0, 30, (40, 30)), r.integers(0, 12, (40, 12))
    boot = [(position_bias(pos[a], k[a])["position_tv"] + position_bias(pos2[b], k2[b])["position_tv"]) / 2
            for a, b in zip(i1, i2)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    with pytest.raises(ValueError):
        S.bootstrap_ci_position_tv([([3], [2])])
