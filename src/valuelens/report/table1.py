"""The report's comparison section (Table 1 in the paper's layout, every test with its effect size) and the
summary's ranking with intervals."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pandas as pd

from valuelens.comparisons.compute import TEST_LABELS
from valuelens.stats import CORRECTIONS

from . import figures
from .blocks import Cell, Section
from .compare import Comparisons, CrossRun
from .headline import Headline, label, ranking
from .i18n import plural, tr, tr_known
from .load import ReportData


def _note(note: str) -> str:
    """valuelens.comparisons' "TEST not run: WHY" in the report's language."""
    test, sep, why = note.partition(" not run: ")
    return tr("{test} not run: {why}", test=tr_known(test), why=tr_known(why)) if sep else tr_known(note)


def _label_text(text: str) -> str:
    """An English entry label from valuelens.comparisons ("covered mass · China") in the report's language."""
    name, sep, rest = text.partition(" · ")
    return tr_known(name) + sep + rest


NOT_RUN = "not run"  # a model the audit did not give a layer: no value there, not a failure and not a 0


def ranking_tables(sec: Section, h: Headline, countries: list[str], data: ReportData | None = None) -> None:
    """The summary's ranking. When the models ran different layers (per-model ``layers:``), one ranking per
    layer, each over the models that ran it and that layer's metrics only: a mean rank over different metric
    sets, or a rank among models some of which never ran the layer, would compare unlike things."""
    if data is None or data.is_uniform():
        ranking_table(sec, h, countries)
        return
    for layer in data.layers:
        entries = [e for e in h.entries if data.layer_of_table(e.metric.table) == layer]
        if not entries:
            continue
        ran = [m for m in h.models if data.cell(m, layer) == "ran"]
        if not any(e.metric.better for e in entries) and len(ran) != 1:
            continue  # nothing to rank (the layer's headline values are shown, not ranked)
        keys = [e.key for e in entries]
        sources = [x for x in h.sources if any(x.startswith(f"{tr(e.metric.label)} = ") for e in entries)]
        sub = replace(h, models=ran, entries=entries, values=h.values.reindex(index=ran, columns=keys),
                      sources=sources)
        not_run = [m for m in h.models if data.cell(m, layer) == NOT_RUN]
        ranking_table(sec, sub, countries, f" · {tr_known(layer.title)}",
                      tr("Only the models that ran this layer ({models})", models=", ".join(ran))
                      + (tr("; not run by {models} (the audit did not give them this layer)",
                            models=", ".join(not_run)) if not_run else "") + tr(". "))


def ranking_table(sec: Section, h: Headline, countries: list[str], suffix: str = "", scope: str = "") -> None:
    """The summary's ranking (per metric: rank, interval, which neighbours it cannot be told from); one model:
    its values and intervals, no rank."""
    ranked = ranking(h)
    entries = [e for e in h.entries if e.metric.better]
    if len(ranked):
        rows = []
        for i, r in enumerate(ranked.to_dict("records"), start=1):
            cells: list[Any] = [i, r["model"]]
            apart = 0
            for e in entries:
                rank = r[e.key + "#rank"]
                ci = h.cis.get((e.key, r["model"]))
                has = not math.isnan(rank)
                sep = r[e.key + "#sep"] if has else ""
                apart += has and sep == ""
                note = ((f"#{int(rank)}" if has else "") + (f" [{ci.low:.3f}, {ci.high:.3f}]" if ci else "")
                        + (f" · {sep}" if sep else ""))
                cells.append(Cell(r[e.key], note=note))
            cells += [r["mean_rank"], tr("{k} of {n}", k=apart,
                                         n=sum(not math.isnan(r[e.key + '#rank']) for e in entries))]
            rows.append(cells)
        cols = ([tr("position"), tr("model")]
                + [f"{label(e)} ({tr('higher is better') if e.metric.better == 'higher' else tr('lower is better')})"
                   for e in entries]
                + [tr("mean rank"), tr("metrics where its interval overlaps neither neighbour")])
        sec.table(cols, rows, tr("Model ranking for {cultures}", cultures=", ".join(countries)
                                 or tr("the audited cultures")) + suffix,
                  scope + tr("Models ordered by their mean rank over the metrics shown that they have a value for "
                             "(#1 = best on that metric; ties share the better rank). [low, high] = 95% interval; "
                             "“not distinguishable from X” = its interval overlaps that of X, a neighbour in that "
                             "metric's order (or X has no interval), so the two ranks are not a finding. ")
                  + h.describe())
    elif len(h.values.dropna(how="all")) == 1 and h.entries:
        model = h.values.dropna(how="all").index[0]
        rows = []
        for e in h.entries:
            v = h.values.at[model, e.key]
            if pd.isna(v):
                continue
            ci = h.cis.get((e.key, model))
            better = {"higher": tr("higher"), "lower": tr("lower")}.get(e.metric.better or "", tr("not ranked"))
            rows.append([label(e), v, f"[{ci.low:.3f}, {ci.high:.3f}]" if ci else
                         tr("none ({why})", why=tr_known(h.no_ci.get((e.key, model), "no per-item values"))),
                         better])
        sec.table([tr("metric"), tr("value"), tr("95% interval"), tr("better")], rows,
                  tr("Headline values of {model}", model=model) + suffix,
                  scope + tr("One model with headline values: nothing to rank, and no comparison between models. ")
                  + h.describe())
    else:
        sec.text((suffix.removeprefix(" · ") + ": " if suffix else "")
                 + tr("No headline metric is available yet, so models are not ranked."), "muted")


def section(comp: Comparisons, h: Headline) -> Section:
    """Per comparison and unit, Table 1 in the paper's layout and every test with its effect size."""
    sec = Section("comparisons", tr("Comparisons"))
    n_models = len(h.values.dropna(how="all")) if not h.values.empty else 0
    if n_models < 2:
        sec.text(tr("Comparisons need at least two models with headline values; this report has {n}, so nothing "
                    "is compared.", n=n_models), "muted")
        return sec
    sec.text(tr("Groups of models from the catalogue compared on the headline metrics, in the layout of the "
                "paper's Table 1 (Mean, SD, SEM, t, DF, SED, p). Unit of analysis: item = one observation per item "
                "(question × culture × prompt language), its value the mean over the group's models, each group its "
                "own items (DF = n1 + n2 − 2 for Student); paired = the items both groups have, pair by pair; model "
                "= one headline value per model. Two-sided tests; SD with ddof 1; SEM = SD/√n; SED = standard error "
                "of the difference; d = Cohen's d (pooled SD; d_z for paired t); r = rank-biserial correlation; the "
                "interval is the 95% interval of the difference (first group − second). Wilcoxon signed-rank pairs "
                "the items both groups have. ") + _correction_text(comp))
    for c in comp.done:
        for unit in dict.fromkeys(r.unit for r in c.rows):
            rows = [r for r in c.rows if r.unit == unit]
            table1, tests = [], []
            for r in rows:
                (na, ma, sa, ea), (nb, mb, sb, eb) = r.desc
                o = r.outcome(r.t_test) if r.t_test else None
                tcols = ([Cell(o.statistic, 2), Cell(_df(o.df), 2), Cell(o.sed, 2),
                          Cell(o.p, 2, kind="p"), Cell(o.p_adj, 2, kind="p"), Cell(o.effect, 2),
                          Cell(f"[{_f(o.low)}, {_f(o.high)}]", 2), Cell(tr_known(TEST_LABELS[o.test]), 2)]
                         if o else [Cell("—", 2)] * 7 + [Cell(tr("none of Student, Welch, paired t"), 2)])
                table1.append([Cell(label(r.entry), 2), c.a, na, ma, sa, ea, *tcols])
                table1.append([c.b, nb, mb, sb, eb])
                for x in r.outcomes:
                    tests.append([label(r.entry), tr_known(TEST_LABELS[x.test]), x.n, x.statistic, _df(x.df),
                                  Cell(x.p, kind="p"), Cell(x.p_adj, kind="p"),
                                  f"{tr_known(x.effect_name)} {_f(x.effect)}", f"[{_f(x.low)}, {_f(x.high)}]"])
            n_what = {"item": tr("items"), "paired": tr("paired items"), "model": tr("models")}[unit]
            unit_text = tr_known(unit)
            cols = [tr("metric"), tr("group"), f"n ({n_what})", tr("mean"), "SD", "SEM", "t", "DF", "SED", "p",
                    f"p ({_short(c.correction)})", "d", tr("95% interval of the difference"), tr("test")]
            caption = (tr("Unit: {unit}.", unit=unit_text) + f" {c.a}: {', '.join(c.models_a)}. {c.b}: "
                       f"{', '.join(c.models_b)}. " + tr("From: {origin}.", origin=c.origin) + " "
                       + " ".join(tr_known(w) for w in c.warnings))
            for reason, labels in c.skipped_metrics.items():
                caption += " " + tr("Not tested ({reason}): {metrics}.", reason=tr_known(reason),
                                    metrics=", ".join(_label_text(x) for x in labels))
            notes = sorted({n for r in rows for n in r.notes})
            if notes:
                caption += " " + "; ".join(_note(n) for n in notes) + tr(".")
            title = tr("{label}: {a} vs {b} (unit: {unit})", label=c.label, a=c.a, b=c.b, unit=unit_text)
            sec.table(cols, table1, title, caption.strip())
            sec.table([tr("metric"), tr("test"), "n", tr("statistic"), "DF", "p", f"p ({_short(c.correction)})",
                       tr("effect size"), tr("95% interval of the difference")], tests, title + tr(": tests"),
                      tr("Every test run, with its effect size. Bootstrap: percentile interval of the difference of "
                         "the means (paired: of the mean item difference), no p."), collapse=True)
        model_rows = [r for r in c.rows if r.unit == "model"]
        if model_rows:
            view = SimpleNamespace(tests=model_rows, a=c.a, b=c.b, models_a=c.models_a, models_b=c.models_b)
            sec.plot(figures.group_dots(h, view), tr("{label}: per-model values", label=c.label),
                     tr("Each dot is one model's headline value (the observations of the model-level tests above); "
                        "bars are group means."), key="comparison-dots")
        if not c.rows:
            sec.text(tr("{label}: {a} vs {b} ({origin}): nothing tested.", label=c.label, a=c.a, b=c.b,
                        origin=c.origin) + " "
                     + " ".join(f"{tr_known(reason)}: {', '.join(_label_text(x) for x in labels)}."
                                for reason, labels in c.skipped_metrics.items()),
                     "muted")
    if comp.skipped:
        sec.items([{"text": s, "flag": False, "detail": ""} for s in comp.skipped], tr("Not compared"))
    return sec


def _df(v: float) -> float | int:
    """Degrees of freedom: an integer as an integer (Student, paired: n1 + n2 − 2, n − 1), Welch's as it is."""
    return int(v) if math.isfinite(v) and float(v).is_integer() else v


def _f(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.3f}"


def _short(correction: str) -> str:
    return {"holm": "Holm", "bh": "BH", "none": tr("unadjusted")}[correction]


def _correction_text(comp: Comparisons) -> str:
    if not comp.families:
        return ""
    parts = [f"{tr_known(TEST_LABELS[t])}: {tr_known(CORRECTIONS[m])} " + plural(n, "over {n} test", "over {n} tests")
             for (t, m), n in sorted(comp.families.items())]
    return tr("Adjusted p values, per test over every comparison in this report — ") + "; ".join(parts) + tr(".")


def cross_run_section(rows: list[CrossRun]) -> Section:
    """`valuelens compare`: the same model × item across runs, paired differences with intervals."""
    sec = Section("cross-run", tr("Paired differences across runs"))
    if not rows:
        sec.text(tr("No model occurs in the first run and a later one with per-item values on the same items, so "
                    "there is nothing to pair (a model is matched across runs by its name)."), "muted")
        return sec
    sec.text(tr("Each model that occurs in the first run and a later one (matched by name), on each headline metric "
                "with per-item values: the items both runs have, later run − first run. Paired t (DF = pairs − 1; "
                "d_z = mean difference / SD of the differences), Wilcoxon signed-rank (r = rank-biserial), and a "
                "percentile bootstrap interval of the mean difference ({resamples}). p (Holm): over the paired t "
                "tests of this section.",
                resamples=rows[0].bootstrap.n.split(", ")[-1] if rows[0].bootstrap else ""))
    table = []
    for r in rows:
        t, w, b = r.paired_t, r.wilcoxon, r.bootstrap
        table.append([r.model, r.label, f"{r.run_a} → {r.run_b}", r.n, r.mean_a, r.mean_b,
                      b.effect if b else r.mean_b - r.mean_a, f"[{_f(b.low)}, {_f(b.high)}]" if b else "—",
                      t.statistic if t else float("nan"), Cell(t.p if t else float("nan"), kind="p"),
                      Cell(t.p_adj if t else float("nan"), kind="p"), t.effect if t else float("nan"),
                      Cell(w.p if w else float("nan"), kind="p"), w.effect if w else float("nan")])
    sec.table([tr("model"), tr("metric"), tr("runs"), tr("paired items"), tr("mean (first)"), tr("mean (later)"),
               tr("difference"), tr("95% interval (bootstrap)"), tr("paired t"), "p", "p (Holm)", "d_z",
               tr("Wilcoxon p"), "r"], table, tr("Paired differences per model and metric"),
              tr("— where a test cannot run (e.g. all differences zero: no variation to test)."))
    return sec
