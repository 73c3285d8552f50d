"""Plotly figures for the report, as JSON to embed in the page.

Figures plot table columns as they are, or simple means of them (the
caption of each figure says which). Thresholds of the oversight flags are
drawn as dashed lines.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from valuelens.stats import BootstrapCI

from .i18n import tr, tr_known

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC", "Helvetica Neue", Arial, sans-serif'
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e", "#9498a0")


def to_json(fig: go.Figure) -> str:
    """Figure JSON that is safe inside ``<script type="application/json">``."""
    s = pio.to_json(fig, validate=False, pretty=False, remove_uids=True)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _style(fig: go.Figure, height: int, **layout) -> go.Figure:
    layout = {"barmode": "group", **layout}
    fig.update_layout(template="plotly_white", height=height, font={"family": FONT, "size": 12},
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, legend={"tracegroupgap": 4},
                      **layout)
    return fig


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def subplots(rows: int, cols: int, **kw) -> go.Figure:
    """``make_subplots`` with the spacings clamped to what the grid allows.

    plotly refuses a spacing above 1 / (n - 1) for n panels in a row or column
    (a report over 46 countries then failed); the clamp keeps at most half of
    each panel's share for the gaps, so wide grids get narrow gaps, never an error.
    """
    for key, n in (("horizontal_spacing", cols), ("vertical_spacing", rows)):
        if key in kw and n > 1:
            kw[key] = min(kw[key], 0.5 / (n - 1))
    return make_subplots(rows=rows, cols=cols, **kw)


def zero_text(values) -> list[str]:
    """"0" for a bar whose value prints as zero (it has no height to see), "" for the others."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append("")
            continue
        out.append("0" if f == f and abs(f) < 0.0005 else "")
    return out


def _zero_labels(values) -> dict:
    """go.Bar keywords that write "0" above zero-valued bars (nothing on the others)."""
    text = zero_text(values)
    if not any(text):
        return {}
    return {"text": text, "texttemplate": "%{text}", "textposition": "outside", "cliponaxis": False,
            "textfont_size": 10}


def metric_bars(df: pd.DataFrame, metrics: list[tuple[str, str, float | None]], series: str | None,
                x: str = "model") -> go.Figure:
    """One panel per (column, title, threshold); bars per ``x``, one colour per ``series`` value."""
    fig = subplots(rows=1, cols=len(metrics), subplot_titles=[t for _, t, _ in metrics], horizontal_spacing=0.06)
    levels = df[series].drop_duplicates().tolist() if series else [None]
    label = len(df) <= 12  # values on the bars while they fit
    for col_i, (col, _, threshold) in enumerate(metrics, start=1):
        for i, lev in enumerate(levels):
            sub = df if lev is None else df[df[series] == lev]
            text = {"texttemplate": "%{y:.3f}", "textposition": "outside", "textfont_size": 10,
                    "cliponaxis": False} if label else _zero_labels(sub[col])
            fig.add_trace(go.Bar(x=sub[x].astype(str), y=sub[col], name=str(lev) if lev is not None else col,
                                 legendgroup=str(lev), showlegend=col_i == 1 and lev is not None,
                                 marker_color=_color(i), hovertemplate="%{x}: %{y:.3f}<extra>" + str(lev) + "</extra>",
                                 **text),
                          row=1, col=col_i)
        if threshold is not None:
            fig.add_hline(y=threshold, line_dash="dash", line_color="#c0392b", line_width=1, row=1, col=col_i,
                          annotation_text=tr("flag {at}", at=f"{threshold:g}"), annotation_font_size=10)
    fig.update_yaxes(rangemode="tozero", tickformat=".3~f")
    return _style(fig, 360, legend_title_text=tr_known(series) if series else "")


def distributions(options: pd.DataFrame, model: str, countries: list[str], languages: list[str]) -> go.Figure:
    """Stacked option probabilities per question: a panel per language (rows) and country (columns).

    With a ``human_prob`` column, each question has a model bar and a human bar.
    """
    df = options[options["model"] == model]
    countries = [c for c in countries if c in set(df["country"])]
    languages = [lang for lang in languages if lang in set(df["language"])]
    human = "human_prob" in df.columns and df["human_prob"].notna().any()
    titles = [f"{c} · {lang}" for lang in languages for c in countries]
    row_px = 300 if human else 250
    fig = subplots(rows=len(languages), cols=len(countries), subplot_titles=titles, shared_yaxes=True,
                        vertical_spacing=min(0.3, 110 / (row_px * len(languages))), horizontal_spacing=0.04)
    letters = sorted(df["option"].astype(str).unique())
    for r, lang in enumerate(languages, start=1):
        for c, country in enumerate(countries, start=1):
            cell = df[(df["language"] == lang) & (df["country"] == country)]
            for i, letter in enumerate(letters):
                opt = cell[cell["option"].astype(str) == letter]
                qs = opt["question_id"].astype(str).tolist()
                xs, ys, texts = qs, opt["prob"].tolist(), opt["option_text"].astype(str).tolist()
                if human:
                    xs = [qs + qs, [tr("model")] * len(qs) + [tr("human")] * len(qs)]
                    ys, texts = ys + opt["human_prob"].tolist(), texts + texts
                fig.add_trace(go.Bar(x=xs, y=ys, name=f"({letter})", legendgroup=letter, marker_color=_color(i),
                                     showlegend=r == 1 and c == 1, customdata=texts,
                                     hovertemplate=f"({letter}) %{{customdata}}<br>%{{y:.3f}}<extra></extra>"),
                              row=r, col=c)
    fig.update_yaxes(range=[0, 1], tickformat=".1~f")
    return _style(fig, row_px * len(languages) + 60, barmode="stack", legend_title_text=tr("option"))


def bars_with_ci(rows: list[dict], title: str) -> go.Figure:
    """rows: {"x", "series", "y", "ci": BootstrapCI | None}; error bars show the interval."""
    fig = go.Figure()
    df = pd.DataFrame(rows)
    for i, (lev, sub) in enumerate(df.groupby("series", sort=False)):
        cis: list[BootstrapCI | None] = sub["ci"].tolist()
        plus = [ci.high - y if ci else 0.0 for ci, y in zip(cis, sub["y"])]
        minus = [y - ci.low if ci else 0.0 for ci, y in zip(cis, sub["y"])]
        fig.add_trace(go.Bar(x=sub["x"].astype(str), y=sub["y"], name=str(lev), marker_color=_color(i),
                             error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus},
                             hovertemplate="%{x}: %{y:.3f}<extra>" + str(lev) + "</extra>", **_zero_labels(sub["y"])))
    fig.update_yaxes(rangemode="tozero", tickformat=".3~f", title_text=title)
    return _style(fig, 360)


def table2_bars(t2: pd.DataFrame, cells: list[str]) -> go.Figure:
    """The Table 2 cells as grouped bars, one colour per model · condition."""
    fig = go.Figure()
    keys = [k for k in ("model", "condition", "language") if k in t2.columns]
    for i, (_, row) in enumerate(t2.iterrows()):
        name = " · ".join(str(row[k]) for k in keys if pd.notna(row[k]))
        fig.add_trace(go.Bar(x=cells, y=[row[c] for c in cells], name=name, marker_color=_color(i),
                             hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
                             **_zero_labels([row[c] for c in cells])))
    fig.update_yaxes(rangemode="tozero", tickformat=".3~f", title_text="1−JSD")
    return _style(fig, 380)


def group_dots(h, comparison, max_panels: int = 8) -> go.Figure:
    """Per tested metric, each model's value as a dot in its group, with the group mean as a bar."""
    tests = comparison.tests[:max_panels]
    fig = subplots(rows=1, cols=len(tests), subplot_titles=[t.entry.label for t in tests],
                        horizontal_spacing=0.05)
    for col, t in enumerate(tests, start=1):
        for i, (group, models) in enumerate(((comparison.a, comparison.models_a), (comparison.b, comparison.models_b))):
            vals = h.values.loc[models, t.entry.key].dropna()
            fig.add_trace(go.Bar(x=[group], y=[vals.mean()], marker_color=_color(i), opacity=0.35, showlegend=False,
                                 hovertemplate=tr("{group} mean", group=group) + ": %{y:.3f}<extra></extra>",
                                 **_zero_labels([vals.mean()])), row=1, col=col)
            fig.add_trace(go.Scatter(x=[group] * len(vals), y=vals.tolist(), mode="markers", text=vals.index.tolist(),
                                     marker={"color": _color(i), "size": 9, "line": {"width": 1, "color": "#fff"}},
                                     showlegend=False, hovertemplate="%{text}: %{y:.3f}<extra></extra>"),
                          row=1, col=col)
    fig.update_yaxes(tickformat=".3~f")
    return _style(fig, 320, barmode="overlay")


GREY = "#9498a0"


def levels(df: pd.DataFrame, col: str | None) -> list:
    """The distinct values of a column in table order ([None] without a column)."""
    return [None] if col is None else df[col].drop_duplicates().tolist()


def grid_bars(df: pd.DataFrame, y: str, x: str | tuple[str, str], series: str, rows: str | None = None,
              cols: str | None = None, *, threshold: float | None = None, ci: tuple[str, str] | None = None,
              ytitle: str = "", stacked: bool = False, shared_y: bool = True, colors: dict | None = None,
              row_px: int = 300, fmt: str = ".3f") -> go.Figure:
    """Bars of column ``y`` as they are in the table: a panel per ``rows`` × ``cols`` value, bars at ``x`` (a
    column, or two for a grouped axis), one colour per ``series`` value; ``ci``: (low, high) columns drawn as
    error bars; ``threshold``: a dashed oversight line."""
    rl, cl = levels(df, rows), levels(df, cols)
    titles = [" · ".join(str(v) for v in (r, c) if v is not None) for r in rl for c in cl]
    gap = 120 if isinstance(x, str) else 200  # a grouped axis has two rows of (often turned) labels
    fig = subplots(rows=len(rl), cols=len(cl), subplot_titles=titles, shared_yaxes=shared_y,
                        vertical_spacing=min(0.3, gap / (row_px * len(rl))),
                        horizontal_spacing=0.05 if shared_y else 0.08)
    sl = levels(df, series)
    shown: set = set()
    for ri, r in enumerate(rl, start=1):
        for ci_, c in enumerate(cl, start=1):
            cell = df if r is None else df[df[rows] == r]
            cell = cell if c is None else cell[cell[cols] == c]
            for si, s in enumerate(sl):
                sub = cell[cell[series] == s]
                if sub.empty:
                    continue
                xs = (sub[x].astype(str).tolist() if isinstance(x, str)
                      else [sub[x[0]].astype(str).tolist(), sub[x[1]].astype(str).tolist()])
                err = None
                if ci is not None:
                    lo, hi = sub[ci[0]].to_numpy(float), sub[ci[1]].to_numpy(float)
                    v = sub[y].to_numpy(float)
                    err = {"type": "data", "symmetric": False, "array": (hi - v).tolist(),
                           "arrayminus": (v - lo).tolist(), "thickness": 1}
                color = (colors or {}).get(s) or _color(si)
                fig.add_trace(go.Bar(x=xs, y=sub[y].tolist(), name=str(s), legendgroup=str(s),
                                     showlegend=s not in shown, marker_color=color, error_y=err,
                                     hovertemplate=f"%{{x}}: %{{y:{fmt}}}<extra>{s}</extra>",
                                     **({} if stacked else _zero_labels(sub[y]))), row=ri, col=ci_)
                shown.add(s)
            if threshold is not None:
                fig.add_hline(y=threshold, line_dash="dash", line_color="#c0392b", line_width=1, row=ri, col=ci_)
    fig.update_yaxes(rangemode="tozero", tickformat=".3~f")
    fig.update_yaxes(title_text=ytitle, col=1)
    _style(fig, (row_px + gap - 120) * len(rl) + 80, barmode="stack" if stacked else "group",
           legend_title_text=tr_known(series))
    if not isinstance(x, str):
        fig.update_layout(margin_b=130)
    return fig
