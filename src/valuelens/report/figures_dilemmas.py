"""Figures of the ethical-dilemma layer, from its exported tables as they are.

Figure types of the papers: value-pair preference stacked bars (Yuan et al.
Figure 8, ``dilemma_preferences``, order-balanced where both orders were asked; next to it the
position bias of the same answers, ``dilemma_position_bias``), consequence flip-rate bars (Figure 9,
``dilemma_consequence_flips``), prompt-form agreement bars (Figure 10,
``dilemma_agreement``) and the escalation rank trajectories per value (Wu et
al., ``dilemma_chain_winrates``, one figure per context mode and label set). Bars show the table's ``estimate``; error
bars its ``ci_low``/``ci_high``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .figures import GREY, _color, _style, grid_bars, levels, subplots
from .i18n import tr

NO_CHOICE = "(no choice)"
CI = ("ci_low", "ci_high")


BALANCED = "order_balanced"


def preference_form(pref: pd.DataFrame) -> str:
    """The form Figure 8 shows: the order-balanced estimate (Direct and Direct-Reverse averaged) when the table
    has it, else Direct, else the first form in the table."""
    forms = pref["form"].dropna().astype(str).drop_duplicates().tolist()
    return next((f for f in (BALANCED, "direct") if f in forms), forms[0])


def position_bias(df: pd.DataFrame, threshold: float) -> go.Figure:
    """Position TV per part (dilemmas, chains, MoralChoice), one colour per model, a panel per language;
    ``df``: the ``forms == "all"`` rows of dilemma_position_bias."""
    return grid_bars(df, "position_tv", "part", "model", cols="language", threshold=threshold,
                     ytitle=tr("position TV (0 to 0.5)"))


def preferences(pref: pd.DataFrame) -> go.Figure:
    """A panel per value pair; a stacked bar per language · model: the share of dilemmas won by each value
    and the share with no valid choice. ``pref``: the rows of one form, pairs other than "all"."""
    values = [v for v in levels(pref, "value") if v != NO_CHOICE]
    colors = {v: _color(i) for i, v in enumerate(values)}
    colors[NO_CHOICE] = GREY
    df = pref.assign(_order=pref["value"].map(lambda v: v == NO_CHOICE))  # the no-choice share on top
    df = df.sort_values("_order", kind="stable").drop(columns="_order")
    return grid_bars(df, "estimate", ("language", "model"), "value", cols="pair", stacked=True, colors=colors,
                     ytitle=tr("share of dilemmas"), row_px=330)


def flips(df: pd.DataFrame, threshold: float | None) -> go.Figure:
    """Flip rate per value pair (and over all pairs), one colour per model, a panel per language."""
    return grid_bars(df, "estimate", "pair", "model", cols="language", ci=CI, threshold=threshold,
                     ytitle=tr("flip rate"))


def steering(df: pd.DataFrame) -> go.Figure:
    """Steering accuracy per value pair (and over all pairs), one colour per model, a panel per steering
    method (rows) and language; ``df``: the rows of dilemma_steering to draw (requested_value "both")."""
    return grid_bars(df, "estimate", "pair", "model", rows="method", cols="language", ci=CI, threshold=None,
                     ytitle=tr("steering accuracy"))


def agreement(df: pd.DataFrame, threshold: float | None) -> go.Figure:
    """Agreement ratio per value pair, a panel per comparison (Direct vs Reverse, all forms) × language."""
    return grid_bars(df, "estimate", "pair", "model", rows="comparison", cols="language", ci=CI,
                     threshold=threshold, ytitle=tr("agreement"))


def trajectories(wins: pd.DataFrame) -> go.Figure:
    """Rank of each value per step (1 = highest win rate), a line per value, error bars the rank's bootstrap
    interval where the table has it; a panel per model (rows) and language (with the source when there are
    several). Hover: the win rate and the chains it is over. ``wins``: one context mode and label set."""
    wins = wins.copy()
    many = wins["source"].nunique() > 1 if "source" in wins.columns else False
    wins["_col"] = (wins["language"].astype(str) + (" · " + wins["source"].astype(str) if many else ""))
    models, cols = levels(wins, "model"), levels(wins, "_col")
    values = levels(wins, "value")
    fig = subplots(rows=len(models), cols=len(cols), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"{m} · {c}" for m in models for c in cols],
                        vertical_spacing=min(0.3, 120 / (260 * len(models))), horizontal_spacing=0.05)
    shown: set = set()
    for r, model in enumerate(models, start=1):
        for c, col in enumerate(cols, start=1):
            cell = wins[(wins["model"] == model) & (wins["_col"] == col)]
            for i, v in enumerate(values):
                s = cell[cell["value"] == v].sort_values("step")
                if s.empty or not s["rank"].notna().any():
                    continue
                err = {}
                if {"rank_ci_low", "rank_ci_high"} <= set(s.columns):  # the bootstrap interval of the rank
                    err = {"error_y": {"type": "data", "symmetric": False, "thickness": 1, "width": 3,
                                       "array": (s["rank_ci_high"] - s["rank"]).tolist(),
                                       "arrayminus": (s["rank"] - s["rank_ci_low"]).tolist()}}
                fig.add_trace(go.Scatter(x=s["step"].tolist(), y=s["rank"].tolist(), mode="lines+markers",
                                         name=str(v), legendgroup=str(v), showlegend=v not in shown,
                                         marker_color=_color(i), line={"width": 2}, connectgaps=False, **err,
                                         customdata=list(zip(s["estimate"].tolist(), s["n"].tolist())),
                                         hovertemplate=tr("{value}, step %{{x}}: rank %{{y}}<br>win rate "
                                                          "%{{customdata[0]:.3f}} over %{{customdata[1]}} chains",
                                                          value=v) + "<extra></extra>"), row=r, col=c)
                shown.add(v)
    top = float(pd.to_numeric(wins["rank"], errors="coerce").max())
    top = len(values) if top != top else max(top, 1.0)  # every panel on the same scale, rank 1 at the top
    fig.update_yaxes(range=[top + 0.4, 0.6], dtick=1)
    fig.update_yaxes(title_text=tr("rank"), col=1)
    fig.update_xaxes(dtick=1, title_text=tr("step"), row=len(models))
    return _style(fig, 260 * len(models) + 80, legend_title_text=tr("value"))
