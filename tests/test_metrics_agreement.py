"""Cohen's κ (one implementation, metrics.kappa_from_table, behind cohen_kappa and the
vectorised kappa_codes) and the exact McNemar test, against hand-worked values and
an independent formula."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from valuelens.metrics import cohen_kappa, kappa_codes, kappa_from_table, mcnemar_exact


def test_kappa_hand_worked():
    # 50 pairs: [[20, 5], [10, 15]] → p_o = 35/50 = 0.7, p_e = (25·30 + 25·20)/50² = 0.5, κ = 0.2/0.5 = 0.4
    assert kappa_from_table([[20, 5], [10, 15]]) == pytest.approx(0.4)
    t = [0] * 25 + [1] * 25
    p = [0] * 20 + [1] * 5 + [0] * 10 + [1] * 15
    assert cohen_kappa(t, p) == pytest.approx(0.4)
    assert kappa_codes(np.array(t), np.array(p), 2) == pytest.approx(0.4)
    assert kappa_from_table([[3, 0], [0, 0]]) == 1.0 and kappa_from_table([[0, 2], [0, 0]]) == 0.0  # p_e = 1


def test_kappa_codes_equals_cohen_kappa():
    rng = np.random.default_rng(1)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 40))
        t, p = rng.integers(0, k, n), rng.integers(0, k, n)
        assert kappa_codes(t, p, k) == pytest.approx(cohen_kappa(t.tolist(), p.tolist(), labels=range(k)))


@pytest.mark.parametrize("bad", [[[1, 2, 3]], [[0, 0], [0, 0]], [[1, -1], [0, 1]], [[np.nan, 1], [1, 1]]])
def test_kappa_table_errors(bad):
    with pytest.raises(ValueError):
        kappa_from_table(bad)


def test_kappa_codes_errors():
    with pytest.raises(ValueError, match="0..1"):
        kappa_codes(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="one length"):
        kappa_codes(np.array([0, 1]), np.array([0]), 2)


def _exact_p(x: int, y: int) -> float:
    """Two-sided exact McNemar p: 2 · P(Binomial(n, ½) ≤ min(x, y)), capped at 1 (n = x + y)."""
    n = x + y
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(min(x, y) + 1)) / 2 ** n)


def _pairs(x: int, y: int, both: int, neither: int):
    a = [True] * x + [False] * y + [True] * both + [False] * neither
    b = [False] * x + [True] * y + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_hand_worked():
    # 1 vs 5 discordant pairs: p = 2 · (C(6,0) + C(6,1)) / 2⁶ = 14/64
    assert mcnemar_exact(*_pairs(1, 5, 7, 3)) == (1, 5, pytest.approx(14 / 64))
    assert mcnemar_exact(*_pairs(0, 0, 4, 4)) == (0, 0, 1.0)
    assert mcnemar_exact(*_pairs(3, 3, 0, 0))[2] == pytest.approx(1.0)


def test_mcnemar_matches_the_binomial_formula():
    rng = np.random.default_rng(2)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, 30, 2))
        got = mcnemar_exact(*_pairs(x, y, int(rng.integers(0, 5)), int(rng.integers(0, 5))))
        assert got[:2] == (x, y) and got[2] == pytest.approx(_exact_p(x, y), rel=1e-9)


def test_mcnemar_shapes():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])
