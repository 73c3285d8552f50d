"""The MARK section: the Table 3 layout and a trace viewer, then the layer's other tables."""

from __future__ import annotations

import re

import pandas as pd

from .blocks import Section
from .common import need, rest
from .figures import grid_bars
from .i18n import N_, tr, tr_known
from .load import Layer, ReportData

INTRO = N_("MARK (Liu et al. 2025b): a multi-stage personality-driven pipeline (stress analysis → MBTI type → stress "
         "impact on the cognitive functions → a choice per function → weighted vote and explanation) predicts each "
         "survey respondent's answer, compared with three prompting baselines on accuracy, 1−JSD and EMD against "
         "the human answer distribution, and Cohen's κ; p (Holm) is the paired McNemar test against MARK.")
MEASURES = ("ACC (%)", "1-JSD", "EMD", "kappa")
MAX_TRACES = 300  # in the viewer; every trace is in results/mark_traces.csv
STAGES = (("stress", N_("1. Stress analysis"), ("stress_level", "stressors"),
           N_("stress level {stress_level}; stressors: {stressors}")),
          ("type", N_("2. MBTI type"), ("mbti",), N_("demographic prior {prior_type}; predicted {mbti}")),
          ("impact", N_("3. Stress impact on the function stack"), ("stack",),
           N_("{stack}  (+ positive, - negative impact)")),
          ("reason", N_("4. Choice per cognitive function"), ("choices",), "{choices}"),
          ("vote", N_("5. Weighted vote"), ("weights", "answer"),
           N_("weights: {weights} → answer {answer}: {answer_text}")),
          ("explain", N_("6. Explanation"), ("explanation",), "{explanation}"))
FACTS = ((N_("model"), "model"), (N_("language"), "language"), (N_("country"), "country"),
         (N_("respondent"), "respondent_id"), (N_("question"), "question_id"), (N_("persona"), "persona"),
         (N_("MBTI prior"), "prior_type"), (N_("answer"), "answer"), (N_("truth"), "truth"),
         (N_("correct"), "correct"), (N_("valid"), "valid"), (N_("invalid at stage"), "invalid_stage"),
         (N_("error"), "error"), (N_("calls"), "calls"))


def table3_long(t3: pd.DataFrame, renamed: dict[str, str]) -> pd.DataFrame:
    """mark_table3's per-model columns ("MODEL ACC (%)", …) as rows: language, method, model, measure, value."""
    pat = re.compile(r"^(.*) (" + "|".join(re.escape(m) for m in MEASURES) + r")$")
    rows = []
    for col in t3.columns:
        m = pat.match(str(col))
        if not m:
            continue
        for i, r in t3.iterrows():
            if pd.isna(r[col]):
                continue
            model = m.group(1)
            if "run" in t3.columns and f"{model}@{r['run']}" in renamed:
                model = f"{model}@{r['run']}"
            rows.append({"language": r["language"], "method": r["method"], "model": model, "measure": m.group(2),
                         "value": r[col]})
    return pd.DataFrame(rows, columns=["language", "method", "model", "measure", "value"])


_NC_COLUMNS = {"accuracy": "ACC (%)", "kappa": "kappa", "p_vs_mark": "p (Holm)"}


def not_computable_cells(t3: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A display copy of mark_table3 whose not-computable cells read "not computable" (never an empty
    number), and the measures named (empty when every cell is computable)."""
    if "not_computable" not in t3.columns or not t3["not_computable"].fillna("").astype(bool).any():
        return t3, ""
    out = t3.astype(object).copy()
    names: set[str] = set()
    for i, r in t3.iterrows():
        for what in filter(None, (x.strip() for x in str(r["not_computable"] or "").split(","))):
            suffix = _NC_COLUMNS.get(what)
            if suffix is None:
                continue
            names.add({"accuracy": "accuracy", "kappa": "Cohen's κ", "p_vs_mark": "the paired test"}[what])
            for col in t3.columns:
                if str(col).endswith(" " + suffix) and pd.isna(r[col]):
                    out.at[i, col] = "not computable"
    return out.drop(columns=["not_computable"]), ", ".join(sorted(names))


_NC_SUMMARY = {"accuracy": ("accuracy", "accuracy_low", "accuracy_high"), "kappa": ("kappa", "kappa_low", "kappa_high"),
               "p_vs_mark": ("mark_only_correct", "baseline_only_correct", "p_vs_mark", "p_holm")}


def summary_display(summ: pd.DataFrame) -> pd.DataFrame:
    """mark_summary for display: the empty cells its ``not_computable`` column names read "not computable"."""
    if "not_computable" not in summ.columns or not summ["not_computable"].fillna("").astype(bool).any():
        return summ
    out = summ.astype(object).copy()
    for i, r in summ.iterrows():
        for what in filter(None, (x.strip() for x in str(r["not_computable"] or "").split(","))):
            for col in _NC_SUMMARY.get(what, ()):
                if col in summ.columns and pd.isna(r[col]):
                    out.at[i, col] = "not computable"
    return out


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "—"


def _text(r: pd.Series, template: str) -> str:
    return tr_known(template).format_map(_Values({k: _plain(v) for k, v in r.items() if not _missing(v)}))


def _plain(v):
    """Whole floats (an answer column with gaps is float) as integers; numpy scalars as Python."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _stages(r: pd.Series, invalid: str | None, error: str | None) -> list[tuple[str, str]]:
    """What each stage produced, up to the stage whose reply could not be used (if any)."""
    out = []
    for key, title, cols, template in STAGES:
        if key == invalid:
            out.append((tr(title), tr("no valid reply: {error} (later stages were not run)",
                                      error=error or tr("no error recorded"))))
            break
        if any(c in r.index and not _missing(r[c]) for c in cols):
            out.append((tr(title), _text(r, template)))
    return out


def trace_groups(traces: pd.DataFrame, limit: int = MAX_TRACES) -> tuple[list[tuple[str, list[dict]]], list[str]]:
    """Traces for the viewer, grouped by model, at most ``limit`` in all (shared fairly between the models);
    and a note per model that was cut."""
    models = traces["model"].drop_duplicates().tolist()
    per = max(1, limit // max(1, len(models)))
    groups, cut = [], []
    n = 0
    for model in models:
        rows = traces[traces["model"] == model]
        if len(rows) > per:
            cut.append(tr("{model}: the first {n} of {total}", model=model, n=per, total=len(rows)))
        items = []
        for _, r in rows.head(per).iterrows():
            n += 1
            get = lambda c, r=r: _plain(r[c]) if c in r.index and not _missing(r[c]) else None  # noqa: E731
            label = " · ".join(str(get(c)) for c in ("language", "country") if get(c) is not None)
            label += " · " + tr("respondent {id}", id=get("respondent_id")) + f" · {get('question_id')}"
            if get("valid") is not None and not bool(get("valid")):
                label += " · " + tr("invalid")
            stages = _stages(r, get("invalid_stage"), get("error"))
            facts = [(tr(name), get(c)) for name, c in FACTS if get(c) is not None]
            items.append({"id": n, "label": label, "facts": facts, "stages": stages})
        groups.append((str(model), items))
    return groups, cut


def section(sec: Section, data: ReportData, layer: Layer) -> None:
    t = data.layer_tables(layer)
    sec.text(tr(INTRO))
    shown: set[str] = set()
    if "mark_table3" in t:
        t3 = need(sec, t, "mark_table3", tr("Table 3 layout"), ("language", "method"))
    else:  # built after all models: absent while a run is partial
        t3 = None
        sec.text(tr("Table 3 layout: not shown, this run has no table mark_table3 (it is written after every model "
                    "has finished; mark_summary, if present below, has the same numbers per model)."), "warn")
    if t3 is not None:
        shown_t3, flagged = not_computable_cells(t3)
        if flagged:
            sec.text(tr("Not computable here: {what}. The human data are country-level distributions without "
                        "respondents (personas drawn from marginals), so no simulated answer has a real answer to "
                        "match; 1−JSD and EMD are against each country's distribution.", what=flagged), "warn")
        sec.frame(shown_t3, tr("Table 3 layout"), tr("As exported (mark_table3): per prompt language and method, per "
                                                     "model: accuracy (%), 1−JSD and EMD against the human answers, "
                                                     "Cohen's κ, and the Holm-corrected p of the paired test against "
                                                     "MARK.") + (" " + tr("Cells marked 'not computable' have no "
                                                                          "value (see above).") if flagged else ""),
                  collapse=False)
        long = table3_long(t3, data.renamed)
        if len(long):
            sec.plot(grid_bars(long, "value", "method", "model", rows="language", cols="measure", shared_y=False,
                               row_px=320),
                     tr("Table 3 measures"), tr("The numbers of the table above, a panel per measure and language."),
                     key="mark-table3")
        shown.add("mark_table3")
    traces = need(sec, t, "mark_traces", tr("Trace viewer"), ("model", "respondent_id", "question_id"))
    if traces is not None:
        groups, cut = trace_groups(traces)
        n = sum(len(g) for _, g in groups)
        caption = tr("{n} traces from mark_traces (one per MARK respondent · question); pick one to see what each "
                     "stage produced. The full traces with every prompt and raw reply are in "
                     "OUT/mark_traces/*.jsonl.", n=n)
        if cut:
            caption += " " + tr("Shown: {cut} (all are in results/mark_traces.csv).", cut="; ".join(cut))
        sec.traces("mark-traces", tr("Trace viewer"), groups, caption)
        shown.add("mark_traces")
    if "mark_summary" in t:
        t = {**t, "mark_summary": summary_display(t["mark_summary"])}
    rest(sec, t, shown)
