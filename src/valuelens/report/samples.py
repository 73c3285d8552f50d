"""The sample browser (issue 23): what the model was asked and what it said, behind every number.

Reads ``results/samples`` (see valuelens.layers.samples; the report imports
no layer code, so the columns are named here). The browser is one section
(``#samples``) with the samples inline as JSON and a filter by model, layer,
language and free text (item, prompt, reply). Links elsewhere in the report
open it filtered: ``#samples?model=M&layer=L&language=X``. For large audits
at most :data:`CAP` samples per (model, layer, table, language) are embedded,
spread evenly over the cell; the report says so and names the Parquet file
that has them all.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from markupsafe import Markup

from .blocks import Section
from .i18n import N_, tr, tr_known
from .load import ReportData

CAP = 40  # samples embedded per (model, layer, table, language); all are in results/samples.parquet
SECTION_ID = "samples"

# Every fixed text of the browser (English keys of the translation table, report/i18n.py); texts() gives them
# in the report's language.
TEXTS: dict[str, str] = {
    "title": N_("Sample browser"),
    "intro": N_("Every model call the layers made: the prompt as sent, the reply or the option probabilities, "
                "the parsed answer and whether it was valid. Filter by model, layer, language or any text (an item "
                "id, words of the prompt or reply). Links beside flags, headline metrics and figures open it "
                "filtered to the samples behind them."),
    "capped": N_("{shown} of {total} samples are embedded: at most {cap} per model × layer × table × language, "
                 "spread evenly over each; all are in {path} (one row per call; join key: model, table, row_id)."),
    "all": N_("All {total} samples are embedded ({path} has them as a table; join key: model, table, row_id)."),
    "none": N_("No samples table in this run (results/samples.parquet is written by valuelens runs since issue "
               "23)."),
    "model": N_("model"), "layer": N_("layer"), "table": N_("table"), "language": N_("language"),
    "search": N_("search"), "any": N_("any"), "matches": N_("{n} matching samples"),
    "first": N_("(first {n} shown)"), "prompt": N_("Prompt"), "reply": N_("Reply"),
    "probs": N_("Option probabilities"), "parsed": N_("parsed"), "valid": N_("valid"), "invalid": N_("invalid"),
    "failure": N_("failure"), "key": N_("cache key"), "link": N_("Samples behind this"),
    "flag_links": N_("Samples behind each flag"), "metric_links": N_("Samples behind each headline metric"),
    "figure_link": N_("Samples behind this figure"),
}



def texts() -> dict[str, str]:
    """:data:`TEXTS` in the report's language (placeholders left for the caller and the page's script)."""
    return {k: tr(v) for k, v in TEXTS.items()}


PATH = "results/samples.parquet"
# A figure's samples, where its key names a finer set than its layer's: the per-call table it is drawn from.
FIGURE_TABLES = {"dilemma-preferences": "dilemma_responses", "dilemma-flips": "dilemma_responses",
                 "dilemma-agreement": "dilemma_responses", "position-dilemmas": "dilemma_responses",
                 "dilemma-trajectories": "dilemma_chain_responses", "def-kl-dimensions": "def_answers",
                 "def-kl-dimensions-def": "def_answers", "def-invalid": "def_answers", "def-map": "def_answers",
                 "def-mismatch-sex": "def_answers", "def-mismatch-age-group": "def_answers"}


def href(**filters: Any) -> str:
    """A link that opens the browser filtered (empty filters left out)."""
    q = urlencode({k: str(v) for k, v in filters.items() if v not in (None, "")})
    return f"#{SECTION_ID}" + (f"?{q}" if q else "")


def _layer_of(data: ReportData, table: str) -> str:
    return next((ly.key for ly in data.layers if table.startswith(ly.prefix)), "")


def embedded(samples: pd.DataFrame, cap: int = CAP) -> pd.DataFrame:
    """At most ``cap`` rows per (model, layer, table, language), evenly spaced in call order."""
    parts = []
    for _, g in samples.groupby(["model", "layer", "table", samples["language"].fillna("")], sort=False):
        if len(g) > cap:
            step = len(g) / cap
            g = g.iloc[[int(i * step) for i in range(cap)]]
        parts.append(g)
    return pd.concat(parts).sort_index() if parts else samples.iloc[:0]


def _v(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and x != x) else x


def _json(x: Any) -> Any:
    return json.loads(x) if isinstance(x, str) and x else None


def records(df: pd.DataFrame) -> dict[str, list[Any]]:
    """Compact rows for the page: model, layer, table, row_id, part, language, kind, prompt (an index into
    ``prompts``: models asked the same prompt share it), prefill, reply, probs, parsed, valid, failure, cache
    key (first 16 hex digits)."""
    out: list[list[Any]] = []
    prompts: dict[str, int] = {}
    for r in df.itertuples(index=False):
        text = r.messages if isinstance(r.messages, str) else "[]"
        out.append([r.model, r.layer, r.table, r.row_id, r.part, _v(r.language) or "", r.kind,
                    prompts.setdefault(text, len(prompts)), _v(r.prefill) or "", _v(r.reply),
                    _json(r.probs), _v(r.parsed), bool(r.valid), _v(r.failure) or "",
                    str(r.call_key)[:16]])
    return {"rows": out, "prompts": [[[m.get("role", ""), m.get("content", "")] for m in _json(t) or []]
                                     for t in prompts]}


def section(data: ReportData, cap: int = CAP) -> Section:
    T = texts()
    sec = Section(SECTION_ID, T["title"])
    samples = data.tables.get("samples")
    if samples is None or samples.empty:
        sec.status, sec.reason = "no data yet", T["none"]
        return sec
    shown = embedded(samples, cap)
    sec.text(T["intro"])
    note = (T["capped"].format(shown=len(shown), total=len(samples), cap=cap, path=PATH) if len(shown) < len(samples)
            else T["all"].format(total=len(samples), path=PATH))
    payload = json.dumps(records(shown), ensure_ascii=False, separators=(",", ":"))
    sec.blocks.append({"kind": "samples", "note": note, "texts": T, "cap": cap, "total": len(samples),
                       "models": sorted(shown["model"].astype(str).unique()),
                       "layers": sorted(shown["layer"].astype(str).unique()),
                       "tables": sorted(shown["table"].astype(str).unique()),
                       "languages": sorted(x for x in shown["language"].dropna().astype(str).unique()),
                       # inside <script type="application/json">: only "</" could end it early
                       "json": Markup(payload.replace("</", "<\\/"))})
    return sec


def link_everything(data: ReportData, secs: list[Section], flags: list[dict], metrics: list[dict]) -> None:
    """Links into the browser: every figure (its layer's samples), and in the summary one list of links per
    raised flag (model, layer, language) and per headline metric (its layer)."""
    if data.tables.get("samples") is None:
        return
    for s in secs:
        key = s.id[len("layer-"):] if s.id.startswith("layer-") else ""
        for b in s.blocks:
            if b["kind"] == "plot" and key:
                b["samples_href"] = href(layer=key, table=FIGURE_TABLES.get(b.get("key", ""), ""))
                b["samples_text"] = tr(TEXTS["figure_link"])
    summary = next((s for s in secs if s.id == "summary"), None)
    if summary is None:
        return
    if flags:
        links = []
        for f in flags:
            lang = re.search(re.escape(tr_known("language")) + r" (\w+)", str(f.get("where", "")))
            layer = _layer_of(data, f.get("table", ""))
            links.append({"text": f"{f['model']} · {f['metric']} · {f.get('where', '')}",
                          "href": href(model=f["model"], layer=layer, language=lang.group(1) if lang else "")})
        summary.blocks.append({"kind": "links", "title": tr(TEXTS["flag_links"]), "links": links, "cls": "flag-links"})
    if metrics:
        summary.blocks.append({"kind": "links", "title": tr(TEXTS["metric_links"]), "cls": "metric-links",
                               "links": [{"text": m["label"], "href": href(layer=_layer_of(data, m["table"]))}
                                         for m in metrics]})
