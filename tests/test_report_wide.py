"""Figures over many countries or models render (a DEF report over the 46 countries of the
Cao et al. 2025 file failed: plotly refuses subplot spacings above 1 / (panels - 1))."""

from __future__ import annotations

import pandas as pd
import pytest

from valuelens.report.figures import distributions, grid_bars, subplots


@pytest.mark.parametrize("n", [2, 12, 46, 120])
def test_grid_bars_with_many_columns_and_rows(n):
    df = pd.DataFrame([{"country": f"C{i}", "language": lang, "model": "m", "kl": 0.1 * (i % 7)}
                       for i in range(n) for lang in ("en", "zh")])
    fig = grid_bars(df, "kl", "model", "model", rows="language", cols="country")
    assert len(fig.data) == 2 * n
    fig = grid_bars(df, "kl", "model", "model", rows="country", cols="language", shared_y=False)
    assert len(fig.data) == 2 * n


def test_distributions_over_46_countries():
    rows = [{"model": "m", "country": f"C{i}", "language": lang, "question_id": "q1", "option": o,
             "prob": p, "option_text": o, "human_prob": 1 - p}
            for i in range(46) for lang in ("en", "zh") for o, p in (("A", 0.3), ("B", 0.7))]
    fig = distributions(pd.DataFrame(rows), "m", [f"C{i}" for i in range(46)], ["en", "zh"])
    assert len(fig.data) == 46 * 2 * 2


def test_subplots_clamps_spacing_and_keeps_allowed_values():
    # an allowed spacing is kept as given: panel 2 starts 0.1 after panel 1 ends
    fig = subplots(1, 3, horizontal_spacing=0.1)
    d1, d2 = fig.layout.xaxis.domain, fig.layout.xaxis2.domain
    assert d2[0] - d1[1] == pytest.approx(0.1)
    # too large for 46 columns: clamped to half of each panel's share, all domains inside [0, 1] and ordered
    fig = subplots(2, 46, horizontal_spacing=0.06, vertical_spacing=0.9)
    doms = [fig.layout[f"xaxis{'' if k == 1 else k}"].domain for k in range(1, 47)]
    assert all(0 <= a < b <= 1 for a, b in doms)
    assert all(doms[k][1] <= doms[k + 1][0] for k in range(45))
    assert doms[1][0] - doms[0][1] == pytest.approx(0.5 / 45)
