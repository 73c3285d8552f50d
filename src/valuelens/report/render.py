"""Render a report to one self-contained HTML file (jinja2, autoescaped).

plotly.js is embedded inline and each figure is inline JSON: the file opens
from disk with no network, and its Content-Security-Policy forbids fetching
anything.
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import plotly
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from valuelens import __version__

from . import compare, headline, i18n, overview, sections, table1
from . import samples as sample_browser
from .blocks import Cell, Section
from .i18n import tr, tr_known
from .layers import layer_sections
from .load import ReportData

REPORT_NAME = "report.html"


def num(v: Any) -> str:
    """3 decimals for reals, integers as they are, — for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return tr("yes") if v else tr("no")
    if isinstance(v, Integral):
        return str(int(v))
    if isinstance(v, Real):
        f = float(v)
        if math.isnan(f):
            return "—"
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        return f"{f:.3f}"
    try:
        if v != v:  # pandas NA / NaT
            return "—"
    except (TypeError, ValueError):
        pass
    return str(v)


def pval(v: Any) -> str:
    if v is None or not isinstance(v, Real) or math.isnan(float(v)):
        return "—"
    return "<0.001" if float(v) < 0.001 else f"{float(v):.3f}"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("valuelens.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, pval=pval)
    env.globals.update(t=tr, tk=tr_known)
    env.tests["cellobj"] = lambda x: isinstance(x, Cell)
    return env


def _plotlyjs() -> Markup:
    js = get_plotlyjs()
    # Inside <script>, only "</script" could end the element early; plotly.js has none today.
    return Markup(js.replace("</script", "<\\/script"))


def report_language(data: ReportData) -> str:
    """The audit file's ``report.language`` (the first run's that sets one), else English."""
    for run in data.runs:
        lang = ((run.manifest.get("audit") or {}).get("report") or {}).get("language")
        if lang in i18n.LANGUAGES:
            return str(lang)
    return "en"


def render(data: ReportData, language: str | None = None) -> str:
    """The report as HTML; ``language`` (en | zh) for its fixed texts, default the audit's ``report.language``."""
    with i18n.language(language or report_language(data)):
        return _render(data)


def _render(data: ReportData) -> str:
    seed = int(next((r.manifest["seed"] for r in data.runs if isinstance(r.manifest.get("seed"), int)), 0))
    h = headline.compute(data, seed)
    layers = layer_sections(data, seed)
    secs: list[Section] = [overview.section(data, h), sections.summary(data, h), *layers,
                           table1.section(compare.compare(data, h), h),
                           *([table1.cross_run_section(compare.cross_run(data, h))] if data.is_comparison else []),
                           sample_browser.section(data), sections.run_facts(data), sections.catalogue(data),
                           sections.about(h)]
    tables = {e.key: e.metric.table for e in h.entries}
    metrics = list({e.metric.key: {"label": tr(e.metric.label), "table": e.metric.table} for e in h.entries}.values())
    sample_browser.link_everything(data, secs, [{**f, "table": tables.get(f["key"], "")} for f in
                                                headline.flags(data, h)], metrics)
    n = 0
    for s in secs:
        for b in s.blocks:
            if b["kind"] == "plot":
                n += 1
                b["id"] = f"plot-{n}"
                b["json"] = Markup(b["json"])
    title = (tr("valuelens comparison: {runs}", runs=", ".join(r.name for r in data.runs)) if data.is_comparison
             else tr("valuelens audit: {name}", name=data.title.removeprefix("valuelens audit: ")))
    return environment().get_template("report.html.j2").render(
        title=title, version=__version__, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        runs=data.runs, sections=secs, plotlyjs=_plotlyjs(), plotly_version=_plotlyjs_version(),
        toy=sections.toy_models(data), html_lang="zh-CN" if i18n.current() == "zh" else "en")


def _plotlyjs_version() -> str:
    try:
        from plotly.offline.offline import get_plotlyjs_version

        return get_plotlyjs_version()
    except ImportError:  # pragma: no cover - older plotly
        return f"(from plotly.py {plotly.__version__})"


def write_html(path: Path, html: str) -> Path:
    from valuelens.results import write_text_atomic  # no .tmp left behind on a failed write

    return write_text_atomic(path, html)
