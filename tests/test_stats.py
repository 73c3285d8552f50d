"""Statistics against scipy and hand-worked examples."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from valuelens import stats as S


def test_ttest_from_stats_student_hand_worked():
    # Group 1: mean 5.0, sd 1.0, n 10; group 2: mean 4.0, sd 1.5, n 12.
    # Pooled variance = (9·1.0 + 11·2.25)/20 = (9 + 24.75)/20 = 1.6875
    # SED = √(1.6875·(1/10 + 1/12)) = √(1.6875·0.183333) = √0.309375 = 0.556215
    # t = (5 − 4)/0.556215 = 1.797866, df = 20
    # SEM1 = 1/√10 = 0.316228, SEM2 = 1.5/√12 = 0.433013
    r = S.ttest_from_stats(5.0, 1.0, 10, 4.0, 1.5, 12)
    assert r.sed == pytest.approx(math.sqrt(0.309375))
    assert r.sed == pytest.approx(0.556215, abs=1e-6)
    assert r.t == pytest.approx(1.797866, abs=1e-6)
    assert r.df == 20
    assert r.sem1 == pytest.approx(0.316228, abs=1e-6)
    assert r.sem2 == pytest.approx(0.433013, abs=1e-6)
    assert r.p == pytest.approx(2 * sps.t.sf(1 / math.sqrt(0.309375), 20))
    ref = sps.ttest_ind_from_stats(5.0, 1.0, 10, 4.0, 1.5, 12, equal_var=True)
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert (r.mean1, r.mean2, r.sd1, r.sd2, r.n1, r.n2) == (5.0, 4.0, 1.0, 1.5, 10, 12)
    assert set(r.to_dict()) >= {"mean1", "sd1", "sem1", "t", "df", "sed", "p"}


def test_ttest_from_stats_welch_hand_worked():
    # v1 = 1/10 = 0.1, v2 = 2.25/12 = 0.1875; SED = √0.2875 = 0.536190
    # t = 1/0.536190 = 1.865010
    # df = 0.2875² / (0.1²/9 + 0.1875²/11) = 0.08265625 / (0.00111111 + 0.00319602)
    #    = 0.08265625 / 0.00430713 = 19.1905
    r = S.ttest_from_stats(5.0, 1.0, 10, 4.0, 1.5, 12, equal_var=False)
    assert r.sed == pytest.approx(math.sqrt(0.2875))
    assert r.t == pytest.approx(1.865010, abs=1e-6)
    assert r.df == pytest.approx(0.08265625 / (0.01 / 9 + 0.1875**2 / 11))
    assert r.df == pytest.approx(19.1905, abs=1e-3)
    assert r.p == pytest.approx(2 * sps.t.sf(r.t, r.df))
    ref = sps.ttest_ind_from_stats(5.0, 1.0, 10, 4.0, 1.5, 12, equal_var=False)
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("equal_var", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_ttest_raw_vs_scipy(equal_var, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 1.0, rng.integers(5, 40))
    b = rng.normal(0.0, 2.0, rng.integers(5, 40))
    r = S.ttest(a, b, equal_var=equal_var)
    ref = sps.ttest_ind(a, b, equal_var=equal_var)
    assert r.t == pytest.approx(ref.statistic)
    assert r.p == pytest.approx(ref.pvalue)
    if hasattr(ref, "df"):
        assert r.df == pytest.approx(ref.df)
    assert r.sd1 == pytest.approx(np.std(a, ddof=1))
    assert r.sem2 == pytest.approx(sps.sem(b))


def test_ttest_edge_cases():
    with pytest.raises(ValueError):
        S.ttest([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        S.ttest([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError):
        S.ttest_from_stats(0, -1, 5, 0, 1, 5)
    r = S.ttest_from_stats(5, 0, 10, 4, 0, 12)
    assert r.t == math.inf and r.p == 0.0
    r = S.ttest_from_stats(5, 0, 10, 5, 0, 12)
    assert math.isnan(r.t) and math.isnan(r.p)


def test_wilcoxon_paired():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = x + rng.normal(0.4, 1.0, 30)
    y[:3] = x[:3]  # three zero differences, dropped
    r = S.wilcoxon_paired(x, y)
    ref = sps.wilcoxon(x, y, zero_method="wilcox")
    assert r.n == 27
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    # Hand-worked: differences [1, -2, 3, 4] → ranks 1,2,3,4; W- = 2, W+ = 8;
    # statistic = min = 2; exact two-sided p = 2·P(W ≤ 2) = 2·(3/16) = 0.375
    # (rank sums ≤ 2 among 16 sign patterns: {}, {1}, {2}).
    r = S.wilcoxon_paired([1, 0, 3, 4], [0, 2, 0, 0])
    assert (r.statistic, r.n) == (2.0, 4) and r.p == pytest.approx(0.375)
    r = S.wilcoxon_paired([1, 2], [1, 2])
    assert r.n == 0 and math.isnan(r.p)
    with pytest.raises(ValueError):
        S.wilcoxon_paired([1, 2], [1])


def test_bootstrap_ci():
    rng = np.random.default_rng(7)
    v = rng.normal(10.0, 2.0, 1000)
    est, low, high = S.bootstrap_ci(v)
    assert est == pytest.approx(v.mean())
    assert low < v.mean() < high
    # Width ≈ 2·1.96·2/√1000 ≈ 0.248
    assert 0.18 < high - low < 0.32
    assert S.bootstrap_ci(v, seed=1) == S.bootstrap_ci(v, seed=1)
    assert S.bootstrap_ci(v, seed=1) != S.bootstrap_ci(v, seed=2)
    est, low, high = S.bootstrap_ci(v, stat=np.median, n_resamples=500, confidence=0.9)
    assert low <= np.median(v) <= high
    assert S.bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError):
        S.bootstrap_ci([])
    with pytest.raises(ValueError):
        S.bootstrap_ci([1.0, 2.0], confidence=1.0)


def test_bootstrap_ci_paired():
    rng = np.random.default_rng(8)
    x = rng.normal(size=500)
    y = x - 0.5 + rng.normal(0, 0.1, 500)
    est, low, high = S.bootstrap_ci_paired(x, y)
    assert est == pytest.approx(np.mean(x - y))
    assert low < 0.5 < high
    assert S.bootstrap_ci_paired(x, y) == S.bootstrap_ci(x - y)


def test_holm_hand_worked():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted ascending:
    #   0.005 · 4 = 0.02
    #   0.01  · 3 = 0.03
    #   0.03  · 2 = 0.06
    #   0.04  · 1 = 0.04 → max(0.06, 0.04) = 0.06 (monotone)
    # Back in input order: [0.03, 0.06, 0.06, 0.02]
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # Capped at 1: 0.6·2 = 1.2 → 1
    np.testing.assert_allclose(S.holm([0.6, 0.7]), [1.0, 1.0])
    assert S.holm([]).size == 0
    with pytest.raises(ValueError):
        S.holm([0.5, 1.5])


def test_holm_properties_random():
    rng = np.random.default_rng(9)
    for _ in range(50):
        p = rng.uniform(0, 1, rng.integers(1, 12))
        adj = S.holm(p)
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in p
        # Never stricter than no correction, never looser than Bonferroni.
        assert np.all(adj <= np.minimum(1.0, p * p.size) + 1e-15)


def test_reproduces_the_papers_table_1_from_summary_statistics():
    """Liu et al. (platform paper, Table 1; from Liu et al. 2025a): Llama-3 vs
    Mistral series, DF 52 -> 27 models x runs per group.

    U.S.: means 1.28 / 0.93, SDs 0.50 / 0.34. By hand: SEM = 0.50/sqrt(27) =
    0.0962 -> 0.10 and 0.34/sqrt(27) = 0.0654 -> 0.07; SED = sqrt(0.25/27 +
    0.1156/27) = sqrt(0.013541) = 0.1164 -> 0.12; t = 0.35/0.1164 = 3.008 ->
    3.01; DF = 27 + 27 - 2 = 52; p(|T52| > 3.008) = 0.00405 (printed 0.0041).
    Chinese: 1.35 / 0.92, SDs 0.74 / 0.33: SED = sqrt(0.5476/27 + 0.1089/27)
    = 0.1559 -> 0.16; t = 0.43/0.1559 = 2.758 (printed 2.77: the inputs are
    themselves rounded to 2 decimals, which moves t by up to ~0.02);
    p = 0.0080 (printed 0.0079).
    """
    from valuelens.stats import ttest_from_stats

    us = ttest_from_stats(1.28, 0.50, 27, 0.93, 0.34, 27)
    assert (round(us.sem1, 2), round(us.sem2, 2), round(us.t, 2), us.df, round(us.sed, 2)) == \
        (0.10, 0.07, 3.01, 52, 0.12)
    assert abs(us.p - 0.0041) < 0.0001
    cn = ttest_from_stats(1.35, 0.74, 27, 0.92, 0.33, 27)
    assert (round(cn.sem1, 2), round(cn.sem2, 2), cn.df, round(cn.sed, 2)) == (0.14, 0.06, 52, 0.16)
    assert abs(cn.t - 2.77) < 0.02 and abs(cn.p - 0.0079) < 0.0003
