"""Figures of the DEF layer (Liu et al. 2025a), from its exported tables as they are.

KL per value dimension per culture (``def_dimensions``: over the valid
answers, and DEF's own definition with invalid answers), the invalid share
per culture (``def_summary``), insensitivity FF/CV rates (Figure 12, ``def_insensitivity``), the sex and age groups behind the
missed human majorities (Figures 18-19, ``def_bias_profile``) and the
cultural variation map (Figure 11, ``def_map``).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .figures import GREY, _color, _style, grid_bars, levels, subplots
from .i18n import N_, tr
from .load import HUMAN

RATES = (("ff_rate", N_("FF: false facts")), ("cv_rate", N_("CV: value conflicts")),
         ("judge_ff_rate", N_("FF (LLM judge)")), ("judge_cv_rate", N_("CV (LLM judge)")))
FACETS = {"sex": N_("sex"), "age_group": N_("age group")}
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "x", "pentagon", "hexagon")


def kl_dimensions(dims: pd.DataFrame, threshold: float | None, column: str = "mean_kl_def") -> go.Figure:
    """Mean KL (``column``: mean_kl_valid or DEF's mean_kl_def) per value dimension, a colour per model, a panel
    per language × country."""
    return grid_bars(dims, column, "dimension", "model", rows="language", cols="country",
                     threshold=threshold, ytitle=tr("mean KL"), row_px=320)


def invalid_share(summary: pd.DataFrame, threshold: float | None) -> go.Figure:
    """def_summary.invalid_share: bars per country, a colour per model, a panel per language."""
    return grid_bars(summary, "invalid_share", "country", "model", cols="language", threshold=threshold,
                     ytitle=tr("invalid share"))


def rate_columns(ins: pd.DataFrame) -> list[tuple[str, str]]:
    return [(c, label) for c, label in RATES if c in ins.columns and ins[c].notna().any()]


def insensitivity_long(ins: pd.DataFrame) -> pd.DataFrame:
    """One row per model × culture × rate column: the table's values, unchanged."""
    parts = []
    for col, label in rate_columns(ins):
        d = ins[["model", "language", "country", col]].rename(columns={col: "rate"})
        parts.append(d.assign(measure=tr(label), culture=d["country"].astype(str) + " · " + d["language"].astype(str)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def insensitivity(ins: pd.DataFrame) -> go.Figure:
    """FF and CV rates (and the judge's, if any): a panel per rate, bars per model, a colour per culture."""
    return grid_bars(insensitivity_long(ins), "rate", "model", "culture", cols="measure", ytitle=tr("rate"))


def mismatch(profile: pd.DataFrame, facet: str) -> go.Figure:
    """Shares of the groups (sex or age group) behind the human majorities the model missed, stacked; per value
    dimension and model, a panel per language × country."""
    rows = profile[profile["facet"] == facet]
    colors = {g: (GREY if g == "tie" else _color(i)) for i, g in enumerate(levels(rows, "group"))}
    return grid_bars(rows, "share", ("dimension", "model"), "group", rows="language", cols="country", stacked=True,
                     colors=colors, ytitle=tr("share of missed majorities"), row_px=320)


def cultural_map(points: pd.DataFrame) -> go.Figure:
    """The 2-D PCA map: a line through each model · language's culture points and the humans' (black).
    Each run has its own PCA, so a comparison draws a panel per run."""
    runs = levels(points, "run") if "run" in points.columns else [None]
    fig = subplots(rows=1, cols=len(runs), subplot_titles=[str(r) for r in runs] if runs != [None] else None,
                        horizontal_spacing=0.08)
    countries = levels(points, "country")
    symbol = {c: SYMBOLS[i % len(SYMBOLS)] for i, c in enumerate(countries)}
    models = [m for m in levels(points, "model") if m != HUMAN]
    color = {m: _color(i) for i, m in enumerate(models)}
    color[HUMAN] = "#1d2330"
    shown: set = set()
    for c, run in enumerate(runs, start=1):
        pts = points if run is None else points[points["run"] == run]
        groups = [(m, lang) for m, lang in pts[["model", "language"]].drop_duplicates().itertuples(index=False)]
        groups.sort(key=lambda g: g[0] != HUMAN)
        for model, lang in groups:
            g = pts[(pts["model"] == model) & (pts["language"] == lang)]
            name = tr("human survey") if model == HUMAN else f"{model} · {lang}"
            fig.add_trace(go.Scatter(
                x=g["pc1"].tolist(), y=g["pc2"].tolist(), mode="lines+markers+text", name=name, legendgroup=name,
                showlegend=name not in shown, text=g["country"].astype(str).tolist(), textposition="top center",
                textfont_size=10, marker={"color": color.get(model, GREY), "size": 13 if model == HUMAN else 10,
                                          "symbol": [symbol[x] for x in g["country"]],
                                          "line": {"width": 1, "color": "#fff"}},
                line={"color": color.get(model, GREY), "width": 1, "dash": "solid" if model == HUMAN else "dot"},
                hovertemplate=f"{name}<br>%{{text}}: PC1 %{{x:.3f}}, PC2 %{{y:.3f}}<extra></extra>"), row=1, col=c)
            shown.add(name)
        e1, e2 = _explained(pts, "explained_pc1"), _explained(pts, "explained_pc2")
        fig.update_xaxes(title_text=f"PC1{e1}", zeroline=True, zerolinecolor="#dde2ea", row=1, col=c)
        fig.update_yaxes(title_text=f"PC2{e2}", zeroline=True, zerolinecolor="#dde2ea", row=1, col=c)
    fig.update_xaxes(tickformat=".2~f")
    fig.update_yaxes(tickformat=".2~f")
    return _style(fig, 480, legend_title_text=tr("points"))


def _explained(pts: pd.DataFrame, col: str) -> str:
    if col not in pts.columns or not pts[col].notna().any():
        return ""
    return tr(" ({pct}% of variance)", pct=f"{100 * float(pts[col].dropna().iloc[0]):.1f}")
