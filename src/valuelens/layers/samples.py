"""The ``samples`` table: every model call a layer made, joinable to the layer table row it is for.

:class:`~valuelens.models.cached.CachedModel` logs each call a layer makes
(hit or miss, failed or not) with the tag the layer gave it: (table,
row_id, part). Here the log becomes one row per (call, row it is for), and
the parsed answer and its validity are read from that row. Join keys: a
sample row joins ``results/TABLE`` on ``(model, row_id)`` where TABLE is its
``table`` column; every row of a layer's ``complete`` sample tables (see
:data:`SAMPLE_TABLES`) has at least one sample.

Nothing that differs between a fresh and a resumed run goes in (no "served
from cache" flag, no timestamps), so a run killed and resumed writes the same
table as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SAMPLES_TABLE = "samples"
TEXT_COLUMNS = ("table", "row_id", "part", "messages", "prefill", "labels", "settings", "response_format", "reply",
                "probs", "failure")
COLUMNS = ["model", "layer", "table", "row_id", "part", "language", "seq", "kind", "call_key", "sample", "messages", "prefill",
           "labels", "settings", "response_format", "reply", "probs", "covered_mass", "failure", "parsed", "valid"]


@dataclass(frozen=True)
class SampleTable:
    """A layer table whose rows are made from model calls.

    ``parsed`` / ``valid``: the row's columns holding the parsed answer and its validity, for replies
    (generate calls); ``parts`` overrides them for a part (e.g. first-token ``reply``). An option call's
    parsed answer is its most probable label, valid when it has probabilities. ``valid`` None: valid when
    the parsed answer is present (and not ``"invalid"``). ``complete``: every row has samples."""

    table: str
    parsed: str = ""
    valid: str | None = None
    parts: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    complete: bool = True


# Per layer key: its sample tables (the layers' own row_id columns are built in their code; see README "Output").
SAMPLE_TABLES: dict[str, tuple[SampleTable, ...]] = {
    "first_token": (SampleTable("first_token_items", parts={"reply": ("reply_option", None)}),
                    SampleTable("first_token_templates", complete=False)),
    "dilemmas": (SampleTable("dilemma_responses", "chosen_label", "valid"),
                 SampleTable("dilemma_chain_responses", "chosen_label", "valid"),
                 SampleTable("dilemma_moralchoice_responses", "decision")),
    "def": (SampleTable("def_answers", "option", "valid"),
            SampleTable("def_insensitivity_items", parts={"judge": ("judge_flagged", None)}, complete=False)),
    "mark": (SampleTable("mark_traces", "answer", "valid"), SampleTable("mark_responses", "answer", "valid")),
}


def _json(x: Any) -> str | None:
    return None if x is None else json.dumps(x, ensure_ascii=False, sort_keys=True)


def log_frame(model: str, log: list[dict[str, Any]]) -> pd.DataFrame:
    """One model's samples log as rows (parsed and valid still empty: :func:`finish` fills them)."""
    rows = []
    for seq, rec in enumerate(log):
        req, res = rec["request"], rec["result"] or {}
        kind = req.get("kind", "")
        labels = req.get("labels")
        probs = res.get("probs") if kind == "option_distribution" else None
        rows.append({
            "model": model, "layer": rec["layer"], "table": rec["table"], "row_id": rec["row_id"],
            "part": rec["part"], "language": None, "seq": seq, "kind": kind, "call_key": rec["call_key"],
            "sample": int(req.get("sample_index", 0)), "messages": _json(req.get("messages")),
            "prefill": req.get("prefill", ""), "labels": _json(labels), "settings": _json(req.get("settings")),
            "response_format": _json(req.get("response_format")),
            "reply": res.get("text") if kind == "generate" and not res.get("failure") else None,
            "probs": _json(dict(zip(labels, probs))) if probs is not None and labels else None,
            "covered_mass": res.get("covered_mass") if kind == "option_distribution" else None,
            "failure": res.get("failure") or "", "parsed": None, "valid": None,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _str(v: Any) -> str | None:
    """A text cell, or None (a missing one may come back from concat or Parquet as NaN)."""
    return v if isinstance(v, str) and v else None


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def finish(samples: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``parsed`` and ``valid`` of every sample: an option call's from its own probabilities, a reply's
    from the row it is for (its layer's :class:`SampleTable`)."""
    specs = {t.table: t for ts in SAMPLE_TABLES.values() for t in ts}
    out = samples.copy()
    parsed: list[str | None] = []
    valid: list[bool] = []
    language: list[str | None] = []
    index: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for table, model, row_id, part, kind, probs, failure in zip(out["table"], out["model"], out["row_id"],
                                                              out["part"], out["kind"], out["probs"], out["failure"]):
        df = tables.get(table)
        if df is not None and "row_id" in df.columns and table not in index:
            index[table] = {(str(m), str(r)): rec for m, r, rec in
                            zip(df["model"], df["row_id"], df.to_dict("records"))}
        row = index.get(table, {}).get((str(model), str(row_id)))
        language.append(_text(row.get("language")) if row is not None else None)
        if kind == "option_distribution":
            p = json.loads(probs) if _str(probs) else None
            top = max(p, key=lambda k: p[k]) if p else None
            parsed.append(top)
            valid.append(top is not None and not _str(failure))
            continue
        spec = specs.get(table)
        if spec is None or row is None:
            parsed.append(None)
            valid.append(False)
            continue
        pcol, vcol = spec.parts.get(part, (spec.parsed, spec.valid))
        value = _text(row.get(pcol)) if row is not None and pcol else None
        parsed.append(value)
        ok = bool(row.get(vcol)) if row is not None and vcol else value not in (None, "invalid")
        valid.append(bool(ok) and not _str(failure))
    out["parsed"] = pd.Series(parsed, index=out.index, dtype="object")
    out["valid"] = pd.Series(valid, index=out.index, dtype="bool")
    out["language"] = pd.Series(language, index=out.index, dtype="object")  # the row's prompt language
    for c in TEXT_COLUMNS:  # one type per column for Parquet: text or None (concat may have made NaN)
        out[c] = pd.Series([v if isinstance(v, str) else None for v in out[c]], index=out.index, dtype="object")
    for c in ("failure", "prefill", "part", "row_id", "table"):
        out[c] = out[c].fillna("")
    return out


def unjoined(samples: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> tuple[list[str], list[str]]:
    """What breaks the join, for tests and checks: samples with no row in their table, and rows of a
    complete sample table with no sample (each as ``table model row_id``)."""
    keys = {(t, str(m), str(r)) for t, m, r in zip(samples["table"], samples["model"], samples["row_id"])}
    rows = {name: set(zip(df["model"].astype(str), df["row_id"].astype(str)))
            for name, df in tables.items() if "row_id" in df.columns and "model" in df.columns}
    orphans = sorted(" ".join(k) for k in keys if (k[1], k[2]) not in rows.get(k[0], set()))
    missing = []
    for ts in SAMPLE_TABLES.values():
        for t in ts:
            df = tables.get(t.table)
            if df is None or not t.complete:
                continue
            for m, r in zip(df["model"].astype(str), df["row_id"].astype(str)):
                if (t.table, m, r) not in keys:
                    missing.append(f"{t.table} {m} {r}")
    return orphans, missing
