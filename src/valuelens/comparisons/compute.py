"""Per-item values, intervals and group tests computed from exported tables (pure functions of DataFrames).

Units of analysis (see :mod:`.settings`): ``model`` (the models' headline values), ``item`` (per item the mean
over the group's models that answered it; each group its own items) and ``paired`` (the items both groups
have). Every p value comes with an effect size: Cohen's d (Student/Welch, pooled SD), d_z (paired t),
rank-biserial (Mann–Whitney, Wilcoxon); the bootstrap gives an interval of the difference and no p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from valuelens import stats as S

from .catalogue import Entry, Metric, headline_rows, item_keys
from .settings import UNIT_TESTS, ComparisonSpec, group_of

TEST_LABELS = {"student": "Student t", "welch": "Welch t", "mannwhitney": "Mann–Whitney U",
               "wilcoxon": "Wilcoxon signed-rank", "paired_t": "paired t", "bootstrap": "bootstrap"}
T_TESTS = ("student", "welch", "paired_t")  # the tests Table 1's layout (t, DF, SED) can show


def numeric(s: pd.Series) -> pd.Series:
    """Numbers (booleans as 0/1; None, text → NaN)."""
    return pd.to_numeric(s.map(lambda v: np.nan if v is None else v), errors="coerce").astype(float)


def _where(df: pd.DataFrame, where: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    for col, value in where:
        df = df[df[col].astype(str) == value] if col in df.columns else df.iloc[0:0]
    return df


def item_frame(tables: dict[str, pd.DataFrame], m: Metric, by_value: str | None) -> pd.DataFrame | None:
    """One row per model × item of the metric's per-item source: model, the item key columns, ``value``
    (NaN dropped); None when the metric has no per-item table in this run."""
    src = m.item_source()
    if src is None or src[0] not in tables:
        return None
    table, column = src
    df = tables[table]
    if column not in df.columns or "model" not in df.columns:
        return None
    df = _where(headline_rows(df)[0], m.where if m.level == "items" else m.item_where)
    if m.by and by_value is not None:
        if m.by not in df.columns:
            return None
        df = df[df[m.by].astype(str) == by_value]
    keys = [k for k in item_keys(table, df) if k != m.by]
    out = df[["model", *keys]].copy()
    out["value"] = 1.0 - numeric(df[column]) if m.item_invert else numeric(df[column])
    return out[out["value"].notna()].reset_index(drop=True)


def item_matrix(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Items × models (an item's value of one model: the mean of its rows, e.g. over runs of a comparison)."""
    idx = frame[keys].astype(str).agg(" · ".join, axis=1) if keys else pd.Series("all", index=frame.index)
    return frame.assign(_item=idx).pivot_table(index="_item", columns="model", values="value", aggfunc="mean")


def interval(tables: dict[str, pd.DataFrame], m: Metric, by_value: str | None, model: str, value: float,
             n_resamples: int, seed: int, cache: dict | None = None) -> tuple[S.BootstrapCI | None, str]:
    """The 95% interval of one model's headline value and how it was found (or why there is none).

    Per-item source: bootstrap over items (within each stratum, e.g. language, when the headline value is a
    mean of per-stratum means), checked to reproduce the headline value. Else a table-given interval when the
    model has exactly one row. ``cache``: a dict kept between calls for the same metric and by_value.
    """
    cache = {} if cache is None else cache
    if m.positions is not None:
        ci, how = _position_interval(tables, m, by_value, model, value, n_resamples, seed)
        if ci is not None or how:
            return ci, how
    if "frame" not in cache:
        cache["frame"] = item_frame(tables, m, by_value)
    frame = cache["frame"]
    if frame is not None:
        own = frame[frame["model"] == model]
        strata = [c for c in m.strata if c in own.columns]
        parts = [g["value"].to_numpy() for _, g in own.groupby(strata, sort=False)] if strata else [own["value"].to_numpy()]
        parts = [p for p in parts if p.size]
        if parts and min(p.size for p in parts) >= 2:
            ci = S.bootstrap_ci_strata(parts, n_resamples=n_resamples, seed=seed)
            if math.isclose(ci.estimate, value, rel_tol=1e-9, abs_tol=1e-12):
                return ci, "items"
            return None, "its per-item values do not reproduce the headline value"
        if parts:
            return None, "fewer than 2 items with a value"
    if m.ci is not None and m.table in tables:
        df = _where(headline_rows(tables[m.table])[0], m.where)
        if m.by and by_value is not None and m.by in df.columns:
            df = df[df[m.by].astype(str) == by_value]
        rows = df[df["model"] == model] if "model" in df.columns else df.iloc[0:0]
        lo, hi = m.ci
        if not {lo, hi} <= set(rows.columns):
            return None, f"table {m.table} has no {lo}/{hi} columns"
        if len(rows) == 1:
            low, high = float(rows[lo].iloc[0]), float(rows[hi].iloc[0])
            if np.isfinite([low, high]).all():
                return S.BootstrapCI(value, low, high), "table"
            return None, "the table's interval is empty (NaN)"
        if len(rows) > 1:
            return None, f"the table's intervals are per row ({len(rows)} rows); their mean has none"
    return None, m.no_interval or "no per-item values"


def _position(v) -> float:
    """A chosen position: a number (1-based) or an option letter (A = 1); NaN when there is none."""
    if isinstance(v, str):
        return float(ord(v) - ord("A") + 1) if len(v) == 1 and "A" <= v <= "Z" else float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _position_interval(tables, m: Metric, by_value, model, value, n_resamples, seed) -> tuple[S.BootstrapCI | None, str]:
    """Bootstrap over answers of the position TV; (None, "") when the table is not there."""
    table, pcol, kcol = m.positions
    df = tables.get(table)
    if df is None or not {pcol, "model"} <= set(df.columns) or (isinstance(kcol, str) and kcol not in df.columns):
        return None, ""
    df = _where(headline_rows(df)[0], m.item_where)
    if m.by and by_value is not None and m.by in df.columns:
        df = df[df[m.by].astype(str) == by_value]
    own = df[df["model"] == model]
    pos = own[pcol].map(_position).to_numpy(float)
    if isinstance(kcol, int):  # every question has this many options (dilemmas: A/B)
        k = np.full(len(own), float(kcol))
    elif own[kcol].map(lambda v: isinstance(v, str)).any():  # the options as shown, "3,1,2": their count
        k = own[kcol].map(lambda v: v.count(",") + 1 if isinstance(v, str) and v else np.nan).to_numpy(float)
    else:
        k = pd.to_numeric(own[kcol], errors="coerce").to_numpy(float)
    ok = np.isfinite(pos) & np.isfinite(k)
    strata = [c for c in m.strata if c in own.columns]
    keys = own[strata].astype(str).agg("|".join, axis=1).to_numpy() if strata else np.zeros(len(own))
    parts = [(pos[ok & (keys == g)], k[ok & (keys == g)]) for g in dict.fromkeys(keys[ok])]
    if not parts or min(p.size for p, _ in parts) < 2:
        return None, "fewer than 2 answers with a position"
    ci = S.bootstrap_ci_position_tv(parts, n_resamples=n_resamples, seed=seed)
    if math.isclose(ci.estimate, value, rel_tol=1e-9, abs_tol=1e-12):
        return ci, "answers"
    return None, "its answers do not reproduce the headline value"


# group comparisons -------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One test of one metric between two groups."""

    test: str
    statistic: float
    df: float
    p: float
    effect: float
    effect_name: str
    low: float  # 95% interval of the difference a − b (mean, or mean paired difference)
    high: float
    n: str
    correction: str = "holm"
    p_adj: float = float("nan")
    sed: float = float("nan")  # t tests: the standard error of the difference


@dataclass
class Row:
    """One metric (entry) compared between the groups with one unit: Table 1's two rows and the tests."""

    entry: Entry
    unit: str
    n_models: tuple[int, int]
    desc: tuple[tuple[int, float, float, float], tuple[int, float, float, float]]  # (n, mean, SD, SEM) per group
    t_test: str | None = None  # the test in Table 1's t / DF / SED / p columns
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def outcome(self, test: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.test == test), None)


@dataclass
class Comparison:
    by: str
    label: str
    a: str
    b: str
    models_a: list[str]
    models_b: list[str]
    origin: str  # "automatic" or "audit file comparisons[i]"
    correction: str = "holm"
    rows: list[Row] = field(default_factory=list)
    skipped_metrics: dict[str, list[str]] = field(default_factory=dict)  # reason -> metric labels
    warnings: list[str] = field(default_factory=list)


def model_groups(catalogue: pd.DataFrame, by: str, models: list[str]) -> dict[str, list[str]]:
    """Group value -> the models in it (catalogue rows in order; models without a known value left out)."""
    out: dict[str, list[str]] = {}
    if "name" not in catalogue.columns:
        return out
    for row in catalogue.to_dict("records"):
        g = group_of(row, by)
        if row["name"] in models and g is not None and row["name"] not in out.get(g, []):
            out.setdefault(g, []).append(row["name"])
    return out


def _desc(v: np.ndarray) -> tuple[int, float, float, float]:
    n = int(v.size)
    sd = float(v.std(ddof=1)) if n >= 2 else float("nan")
    return n, float(v.mean()) if n else float("nan"), sd, sd / math.sqrt(n) if n >= 2 else float("nan")


def observations(unit: str, e: Entry, values: pd.DataFrame, items: pd.DataFrame | None, models_a: list[str],
                 models_b: list[str]) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], tuple[int, int]]:
    """(a, b, (paired a, paired b), models with a value per group) for one unit."""
    if unit == "model":
        x = values.loc[models_a, e.key].dropna().to_numpy(float)
        y = values.loc[models_b, e.key].dropna().to_numpy(float)
        return x, y, (np.array([]), np.array([])), (x.size, y.size)
    assert items is not None
    cols_a = [m for m in models_a if m in items.columns]
    cols_b = [m for m in models_b if m in items.columns]
    xa = items[cols_a].mean(axis=1).dropna() if cols_a else pd.Series(dtype=float)
    xb = items[cols_b].mean(axis=1).dropna() if cols_b else pd.Series(dtype=float)
    common = xa.index.intersection(xb.index)
    pa, pb = xa.loc[common].to_numpy(float), xb.loc[common].to_numpy(float)
    n_models = (int(items[cols_a].notna().any().sum()) if cols_a else 0,
                int(items[cols_b].notna().any().sum()) if cols_b else 0)
    if unit == "paired":
        return pa, pb, (pa, pb), n_models
    return xa.to_numpy(float), xb.to_numpy(float), (pa, pb), n_models


def run_test(test: str, x: np.ndarray, y: np.ndarray, pair: tuple[np.ndarray, np.ndarray], unit: str,
             n_resamples: int, seed: int) -> tuple[Outcome | None, str, Any]:
    """(outcome, why not, the raw scipy-backed result) of one test; why not is "" when it ran."""
    nan = float("nan")
    pa, pb = pair
    if test in ("student", "welch"):
        if x.size < 2 or y.size < 2:
            return None, "fewer than 2 observations in a group", None
        r = S.ttest(x, y, equal_var=test == "student")
        if r.sed == 0:
            return None, "no variation within either group", None
        return Outcome(test, r.t, r.df, r.p, r.cohens_d, "Cohen's d", r.diff_low, r.diff_high,
                       f"{r.n1} / {r.n2}", sed=r.sed), "", r
    if test == "mannwhitney":
        if x.size < 1 or y.size < 1:
            return None, "a group has no observation", None
        r = S.mann_whitney(x, y)
        return Outcome(test, r.statistic, nan, r.p, r.rank_biserial, "rank-biserial r", nan, nan,
                       f"{r.n1} / {r.n2}"), "", r
    if test == "wilcoxon":
        w = S.wilcoxon_paired(pa, pb) if pa.size else None
        if w is None or w.n == 0:
            return None, "no item with a non-zero difference in both groups", None
        return Outcome(test, w.statistic, nan, w.p, w.rank_biserial, "rank-biserial r", nan, nan,
                       f"{pa.size} paired items ({w.n} non-zero differences)"), "", w
    if test == "paired_t":
        if pa.size < 2:
            return None, "fewer than 2 items in both groups", None
        r = S.ttest_paired(pa, pb)
        if r.sed == 0:
            return None, "the paired differences do not vary", None
        return Outcome(test, r.t, r.df, r.p, r.d_z, "d_z", r.diff_low, r.diff_high, f"{r.n} pairs", sed=r.sed), "", r
    if test == "bootstrap":
        if unit == "paired":  # the mean item difference; model/item: difference of means, groups independent
            if pa.size < 2:
                return None, "fewer than 2 items in both groups", None
            ci = S.bootstrap_ci_paired(pa, pb, n_resamples=n_resamples, seed=seed)
            n = f"{pa.size} pairs, {n_resamples} resamples"
        else:
            if x.size < 2 or y.size < 2:
                return None, "fewer than 2 observations in a group", None
            ci = S.bootstrap_ci_diff(x, y, n_resamples=n_resamples, seed=seed)
            n = f"{x.size} / {y.size}, {n_resamples} resamples"
        return Outcome(test, nan, nan, nan, ci.estimate, "mean difference", ci.low, ci.high, n), "", ci
    raise ValueError(f"unknown test {test!r}")


def compare_entry(spec_tests: tuple[str, ...], unit: str, e: Entry, values: pd.DataFrame,
                  items: pd.DataFrame | None, models_a: list[str], models_b: list[str], n_resamples: int,
                  seed: int) -> tuple[Row | None, str]:
    x, y, pair, n_models = observations(unit, e, values, items, models_a, models_b)
    if min(x.size, y.size) == 0:
        return None, "a group has no value"
    desc = (_desc(x), _desc(y))
    row = Row(e, unit, n_models, desc)
    for test in spec_tests:
        out, why, raw = run_test(test, x, y, pair, unit, n_resamples, seed)
        if out is None:
            row.notes.append(f"{TEST_LABELS[test]} not run: {why}")
            continue
        row.outcomes.append(out)
        if row.t_test is None and test in T_TESTS:
            row.t_test = test
            if test == "paired_t":  # Table 1 describes the paired items
                row.desc = ((raw.n, raw.mean1, raw.sd1, raw.sem1), (raw.n, raw.mean2, raw.sd2, raw.sem2))
    if not row.outcomes:
        return None, "; ".join(n.split(": ", 1)[1] for n in row.notes) or "no test ran"
    return row, ""


def adjust_all(comparisons: list[Comparison]) -> int:
    """Adjusted p per test kind and correction over every outcome with a p; returns the number of tests."""
    outs = [o for c in comparisons for r in c.rows for o in r.outcomes]
    families: dict[tuple[str, str], list[Outcome]] = {}
    for o in outs:
        if np.isfinite(o.p):
            families.setdefault((o.test, o.correction), []).append(o)
    for (_, method), group in families.items():
        for o, p in zip(group, S.adjust([o.p for o in group], method)):
            o.p_adj = float(p)
    return sum(len(g) for g in families.values())


def family_sizes(comparisons: list[Comparison]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for c in comparisons:
        for r in c.rows:
            for o in r.outcomes:
                if np.isfinite(o.p):
                    out[(o.test, o.correction)] = out.get((o.test, o.correction), 0) + 1
    return out


def run_spec(spec: ComparisonSpec, origin: str, label: str, a: str, b: str, groups: dict[str, list[str]],
             entries: list[Entry], values: pd.DataFrame, tables: dict[str, pd.DataFrame], n_resamples: int,
             seed: int) -> Comparison:
    c = Comparison(spec.by, label, a, b, groups.get(a, []), groups.get(b, []), origin, spec.correction)
    wanted = set(spec.metrics())
    item_cache: dict[str, pd.DataFrame | None] = {}
    for e in entries:
        if e.metric.key not in wanted:
            continue
        unit = spec.unit_of(e.metric.key)
        if unit != "model" and not e.metric.item_source():
            continue  # not requested for this metric (only an explicit metric list makes this an error)
        items = None
        if unit != "model":
            if e.key not in item_cache:
                frame = item_frame(tables, e.metric, e.by_value)
                src = e.metric.item_source()
                item_cache[e.key] = (item_matrix(frame, [k for k in item_keys(src[0], frame) if k != e.metric.by])
                                     if frame is not None and len(frame) else None)
            items = item_cache[e.key]
            if items is None:
                c.skipped_metrics.setdefault("no per-item table in this run", []).append(e.label)
                continue
        tests = tuple(t for t in spec.tests_of(e.metric.key) if t in UNIT_TESTS[unit])
        row, why = compare_entry(tests, unit, e, values, items, c.models_a, c.models_b, n_resamples, seed)
        if row is None:
            c.skipped_metrics.setdefault(why, []).append(e.label)
            continue
        for o in row.outcomes:
            o.correction = spec.correction
        c.rows.append(row)
    return c

