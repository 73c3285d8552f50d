"""Headline per-model metrics with intervals, ranking, bias profiles and oversight flags.

Every value is a column of an exported table; the only aggregation is the
simple mean of that column over a model's rows (NaN skipped), and the report
says which rows. The metrics are declared in valuelens.comparisons.catalogue
(:data:`METRICS`, re-exported here). Each value carries a 95% interval where
one can be had (valuelens.comparisons.compute.interval: a seeded bootstrap over
items, or the table's own interval) or the reason it has none; the ranking says
where neighbours' intervals overlap ("not distinguishable").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from valuelens.comparisons.catalogue import (  # noqa: F401 - re-exported for the report's other modules
    DEF_INVALID_FLAG,
    HEADLINE_CONDITION,
    METRICS,
    OPS,
    POSITION_FLAG,
    beyond,
    Entry,
    Metric,
    headline_rows,
)
from valuelens.comparisons.compute import interval
from valuelens.stats import BootstrapCI

from .i18n import tr, tr_known
from .load import HUMAN, ReportData


def rows_note(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """:func:`headline_rows` with its note in the report's language."""
    rows, _ = headline_rows(df)
    filtered = "condition" in df.columns and (df["condition"] == HEADLINE_CONDITION).any()
    return rows, tr("rows with condition {c}", c=HEADLINE_CONDITION) if filtered else tr("all rows")


def label(e: Entry) -> str:
    """An entry's label in the report's language (the group value, a country or language, as it is)."""
    return tr(e.metric.label) + (f" · {e.by_value}" if e.by_value else "")


def where_text(k: str, v: object) -> str:
    """"language en", "country China": a table key and its value."""
    return f"{tr_known(k)} {v}"


@dataclass
class Headline:
    models: list[str]
    entries: list[Entry] = field(default_factory=list)
    values: pd.DataFrame = field(default_factory=pd.DataFrame)  # index model, columns Entry.key
    cis: dict[tuple[str, str], BootstrapCI] = field(default_factory=dict)  # (entry key, model)
    no_ci: dict[tuple[str, str], str] = field(default_factory=dict)  # (entry key, model) -> why no interval
    n_resamples: int = 2000
    seed: int = 0
    sources: list[str] = field(default_factory=list)  # "label = table.column (which rows)"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """How the per-model values were taken from the tables."""
        if not self.sources:
            return ""
        return (tr("Per-model values are simple means of a table column over the model's rows (NaN skipped): ")
                + "; ".join(self.sources) + ". " + " ".join(self.notes)).strip()

    def per_model(self, entry: Entry) -> pd.Series:
        return self.values[entry.key]


def model_order(data: ReportData) -> list[str]:
    out = [m for m in data.catalogue.get("name", pd.Series(dtype=object)).dropna().tolist()]
    for df in data.tables.values():
        if "model" in df.columns:
            out += [m for m in df["model"].dropna().unique().tolist() if m not in out and m != HUMAN]
    return out


def compute(data: ReportData, seed: int = 0, n_resamples: int = 2000) -> Headline:
    h = Headline(model_order(data), n_resamples=n_resamples, seed=seed)
    cols: dict[str, pd.Series] = {}
    countries = data.countries()
    for m in METRICS:
        df = data.tables.get(m.table)
        if df is None or m.column not in df.columns or "model" not in df.columns:
            continue
        df, which = rows_note(df)
        df = m.rows(df)
        which += ", " + ", ".join(where_text(c, v) for c, v in m.where) if m.where else ""
        unit = tr("one per item") if m.level == "items" else tr("one per language")
        groups: list[str | None] = [None]
        if m.by and m.by in df.columns:
            present = df[m.by].dropna().unique().tolist()
            groups = [c for c in countries if c in present] + [c for c in present if c not in countries]
        for g in groups:
            sub = df if g is None else df[df[m.by] == g]
            s = pd.to_numeric(sub[m.column], errors="coerce").groupby(sub["model"], sort=False).mean()
            if not s.notna().any():
                continue
            e = Entry(m, g)
            h.entries.append(e)
            cols[e.key] = s
            cache: dict = {}
            for model, v in s.items():
                if pd.isna(v):
                    continue
                ci, how = interval(data.tables, m, g, model, float(v), n_resamples, seed, cache)
                if ci is not None:
                    h.cis[(e.key, model)] = ci
                else:
                    h.no_ci[(e.key, model)] = how
        if any(e.metric is m for e in h.entries):
            per = tr(", per {by}", by=tr_known(m.by)) if m.by and groups != [None] else ""
            h.sources.append(f"{tr(m.label)} = {m.table}.{m.column} ({which}, {unit}{per})")
    h.values = pd.DataFrame(cols).reindex(h.models) if cols else pd.DataFrame(index=h.models)
    h.notes.append(interval_note(h))
    return h


def interval_note(h: Headline) -> str:
    """How the intervals were found, and which headline values have none and why."""
    if not h.entries:
        return ""
    parts = [tr("Intervals [low, high]: 95%, percentile bootstrap over items ({n} resamples, seed {seed}; where a "
                "value is a mean over prompt languages, items are resampled within each language; position TVs: "
                "over the answers, the no-bias baseline recomputed per resample), or the layer table's own "
                "interval where a model has one row (dilemma and MARK rates, per language).",
                n=h.n_resamples, seed=h.seed)]
    missing: dict[str, set[str]] = {}
    for (key, _), why in h.no_ci.items():
        name = next(label(e) for e in h.entries if e.key == key)
        missing.setdefault(why, set()).add(name)
    for why, labels in missing.items():
        parts.append(tr("No interval ({why}): {metrics}.", why=tr_known(why), metrics=", ".join(sorted(labels))))
    return " ".join(parts)


def overlaps(a: BootstrapCI | None, b: BootstrapCI | None) -> bool | None:
    """Whether two intervals overlap; None when either is missing."""
    if a is None or b is None:
        return None
    return a.low <= b.high and b.low <= a.high


def separation(h: Headline, e: Entry, models: list[str]) -> dict[str, str]:
    """Per model, how its value stands against its neighbours in the order of this metric: "" when its
    interval overlaps neither, else "not distinguishable from X, Y" (or "no interval")."""
    vals = h.values[e.key].reindex(models).dropna()
    order = vals.sort_values(ascending=e.metric.better == "lower", kind="stable").index.tolist()
    out = {}
    for i, model in enumerate(order):
        ci = h.cis.get((e.key, model))
        if ci is None:
            out[model] = tr("no interval")
            continue
        near = [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)
                and overlaps(ci, h.cis.get((e.key, order[j]))) in (True, None)]
        out[model] = tr("not distinguishable from {models}", models=", ".join(near)) if near else ""
    return out


def ranking(h: Headline) -> pd.DataFrame:
    """Per ranked entry the rank (1 = best, ties share the best rank), then the mean rank; ``KEY#sep`` says
    which neighbours' intervals overlap (:func:`separation`). Empty with fewer than two models: one model
    has no rank."""
    ranked = [e for e in h.entries if e.metric.better]
    if not ranked or h.values.empty:
        return pd.DataFrame()
    vals = h.values.dropna(how="all")
    if len(vals) < 2:
        return pd.DataFrame()
    ranks = pd.DataFrame({e.key: vals[e.key].rank(ascending=e.metric.better == "lower", method="min")
                          for e in ranked})
    out = pd.DataFrame({"mean_rank": ranks.mean(axis=1)})
    for e in ranked:
        out[e.key] = vals[e.key]
        out[e.key + "#rank"] = ranks[e.key]
        sep = separation(h, e, vals.index.tolist())
        out[e.key + "#sep"] = [sep.get(m, "") for m in vals.index]
    out = out.rename_axis(None)
    out["model"] = out.index
    return out.sort_values(["mean_rank", "model"]).reset_index(drop=True)


def flags(data: ReportData, h: Headline) -> list[dict]:
    """Values beyond a metric's threshold, at the finest level the table has."""
    out = []
    for e in h.entries:
        m = e.metric
        if not m.flag:
            continue
        op, at = m.flag
        if m.level == "summary":
            df = m.rows(headline_rows(data.tables[m.table])[0])
            if e.by_value is not None:
                df = df[df[m.by] == e.by_value]
            keys = [c for c in ("language", "condition", "country", "context", "value") if c in df.columns]
            for row in df.itertuples(index=False):
                v = getattr(row, m.column)
                if pd.notna(v) and beyond(op, v, at) and _also(m, row):
                    where = ", ".join(where_text(k, getattr(row, k)) for k in keys)
                    out.append({"model": row.model, "where": where, "metric": tr(m.label), "value": float(v),
                                "rule": _rule(m), "meaning": tr(m.meaning), "key": e.key})
        else:
            for model, v in h.per_model(e).items():
                if pd.notna(v) and beyond(op, v, at):
                    out.append({"model": model,
                                "where": where_text(m.by, e.by_value) if m.by and e.by_value else tr("all items"),
                                "metric": tr(m.label), "value": float(v),
                                "rule": tr("{rule} (mean)", rule=f"{op} {at:g}"),
                                "meaning": tr(m.meaning), "key": e.key})
    return out


def _also(m: Metric, row) -> bool:
    """The metric's extra flag conditions (a column the table lacks, or NaN there, does not count), applied
    to the values as printed."""
    return all(pd.isna(getattr(row, c)) or beyond(op, getattr(row, c), at) for c, op, at in m.flag_also
               if hasattr(row, c))


def _rule(m: Metric) -> str:
    assert m.flag is not None
    return tr(" and ").join([f"{m.flag[0]} {m.flag[1]:g}", *(f"{c} {op} {at:g}" for c, op, at in m.flag_also)])


def flag_rules(h: Headline) -> list[dict]:
    seen, out = set(), []
    for e in h.entries:
        m = e.metric
        if m.flag and m.key not in seen:
            seen.add(m.key)
            out.append({"metric": tr(m.label), "rule": _rule(m), "meaning": tr(m.meaning),
                        "source": f"{m.table}.{m.column}" + (f" ({m.which()})" if m.where else "")})
    return out


def bias_profiles(h: Headline, raised: list[dict]) -> list[dict]:
    """Per model: its headline values, the flagged ones marked with a few words."""
    flagged = {(f["model"], f["key"]) for f in raised}
    out = []
    for model in h.models:
        parts: list[dict[str, Any]] = []
        for e in h.entries:
            v = h.values.at[model, e.key] if model in h.values.index else np.nan
            if pd.isna(v):
                continue
            hit = (model, e.key) in flagged
            parts.append({"text": f"{tr(e.metric.profile)} ({label(e)} {v:.3f})" if hit else f"{label(e)} {v:.3f}",
                          "flag": hit})
        if parts:
            out.append({"model": model, "parts": parts, "n_flags": sum(p["flag"] for p in parts)})
    return out
