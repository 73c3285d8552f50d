"""The overview at the top of the report: one heat map of every headline value, models × measures (each
measure per culture, prompt language or context where the layer gives it), a panel per layer.

A cell's colour is its oversight state, not its size (the measures have different scales and directions):
flagged (beyond the measure's rule, as in the oversight table), within the rule, or a measure without a
rule; the cell shows the value, the hover its 95% interval (or why there is none), the rule and where it was
flagged. Decision: the state, because one colour scale over KL, rates and distances would compare numbers
that are not comparable, and because it reads the same with one model and with twenty.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from .blocks import Section
from .figures import FONT, subplots
from .headline import Headline, _rule, flags, label
from .i18n import tr, tr_known
from .load import ReportData

NO_RULE, WITHIN, FLAGGED = 0, 1, 2
COLORS = {NO_RULE: "#e3e7ee", WITHIN: "#cce8d4", FLAGGED: "#f4b88f"}
ROW_PX = 26
MAX_TEXT_MODELS = 24  # values printed in the cells up to this many models; beyond, on hover only
MAX_MARK_MODELS = 10  # "⚑" beside the value up to this many models (narrower cells: the colour says it)


def _scale() -> list[list]:
    """A stepped colour scale: z 0, 1, 2 (zmin 0, zmax 2) each get their own colour."""
    out: list[list] = []
    for i, state in enumerate((NO_RULE, WITHIN, FLAGGED)):
        out += [[i / 3, COLORS[state]], [(i + 1) / 3, COLORS[state]]]
    return out


def layer_of(data: ReportData, table: str) -> str:
    """The title of the layer whose tables the measure reads (its table prefix)."""
    for layer in data.layers:
        if table.startswith(layer.prefix):
            return tr_known(layer.title)
    return tr("Other")


def figure(data: ReportData, h: Headline) -> go.Figure | None:
    """The heat map, or None when there is no headline value."""
    models = [m for m in h.models if m in h.values.index and h.values.loc[m].notna().any()]
    if not models or not h.entries:
        return None
    raised: dict[tuple[str, str], list[str]] = {}
    for f in flags(data, h):
        raised.setdefault((f["key"], str(f["model"])), []).append(f["where"])
    panels: dict[str, list] = {}
    for e in h.entries:
        if h.values[e.key].reindex(models).notna().any():
            panels.setdefault(layer_of(data, e.metric.table), []).append(e)
    names = list(panels)
    n_rows = [len(panels[n]) for n in names]
    gap_px = 46
    height = ROW_PX * sum(n_rows) + gap_px * (len(names) - 1) + 190
    fig = subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names,
                        row_heights=[n / sum(n_rows) for n in n_rows],
                        vertical_spacing=min(0.2, gap_px / height) if len(names) > 1 else 0)
    text_on = len(models) <= MAX_TEXT_MODELS
    for r, name in enumerate(names, start=1):
        z: list[list[int | None]] = []
        text: list[list[str]] = []
        hover: list[list[str]] = []
        ys: list[str] = []
        for e in panels[name]:
            ys.append(label(e))
            zr: list[int | None] = []
            tr_: list[str] = []
            hr: list[str] = []
            m = e.metric
            for model in models:
                v = h.values.at[model, e.key]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    zr.append(None)
                    tr_.append("")
                    hr.append(f"{model} · {label(e)}: " + tr("no value"))
                    continue
                where = raised.get((e.key, model))
                state = FLAGGED if where else (WITHIN if m.flag else NO_RULE)
                zr.append(state)
                tr_.append(f"{v:.3f}" + (" ⚑" if where and len(models) <= MAX_MARK_MODELS else ""))
                ci = h.cis.get((e.key, model))
                lines = [f"<b>{model}</b> · {label(e)}", tr("value {v}", v=f"{v:.3f}"),
                         tr("95% interval [{low}, {high}]", low=f"{ci.low:.3f}", high=f"{ci.high:.3f}") if ci else
                         tr("no interval ({why})", why=tr_known(h.no_ci.get((e.key, model), "no per-item values")))]
                if m.better:
                    lines.append(tr("higher is better") if m.better == "higher" else tr("lower is better"))
                if m.flag:
                    lines.append(tr("flag when {rule}", rule=_rule(m)))
                if where:
                    lines.append(tr("flagged: {where}", where="; ".join(dict.fromkeys(where))))
                hr.append("<br>".join(lines))
            z.append(zr)
            text.append(tr_)
            hover.append(hr)
        fig.add_trace(go.Heatmap(z=z, x=models, y=ys, text=text, customdata=hover, zmin=0, zmax=2,
                                 colorscale=_scale(), showscale=False, xgap=2, ygap=2,
                                 texttemplate="%{text}" if text_on else None, textfont={"size": 10 if len(models) <= MAX_MARK_MODELS else 9},
                                 hovertemplate="%{customdata}<extra></extra>", hoverongaps=False),
                      row=r, col=1)
        fig.update_yaxes(autorange="reversed", row=r, col=1, tickfont={"size": 11}, dtick=1)  # every row named
    fig.update_xaxes(tickangle=-35 if len(models) > 6 else 0, tickfont={"size": 11}, dtick=1)
    fig.update_xaxes(side="top", showticklabels=True, row=1, col=1)
    fig.update_layout(template="plotly_white", height=height, font={"family": FONT, "size": 12},
                      margin={"l": 10, "r": 10, "t": 150 if len(models) > 6 else 70, "b": 90},
                      plot_bgcolor="#ffffff")
    fig.update_annotations(font_size=13, xanchor="left", x=0)  # the panel (layer) titles, left-aligned
    if len(models) > 6 and fig.layout.annotations:  # the first title above the turned model names
        fig.layout.annotations[0].yshift = 60
    return fig


def section(data: ReportData, h: Headline) -> Section:
    sec = Section("overview", tr("Overview"))
    fig = figure(data, h)
    if fig is None:
        sec.text(tr("No headline value yet: the overview shows every model's headline measures once a layer has "
                    "written its tables."), "muted")
        return sec
    sec.plot(fig, tr("Every model on every headline measure"),
             tr("A row per headline measure (per culture, prompt language or context where the layer gives one), a "
                "column per model, a panel per layer. Colour: orange (⚑ beside the value) = flagged for a human "
                "look (the rule of the oversight table in the summary), green = within its rule, grey = a measure without a rule (shown, "
                "not judged); blank = no value. Hover a cell for its 95% interval, which direction is better and the "
                "rule. Values as in the summary: a simple mean of the table column over the model's rows."),
             key="overview")
    return sec
