"""One report section per audit layer.

Each layer has its own figures in the papers' figure types (first-token here;
dilemmas, DEF and MARK in ``layer_*.py``), then its other tables as exported.
A layer without tables says whether it was not run or has no data yet, and
why; a figure whose table is missing or empty says so in its place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from valuelens.stats import bootstrap_ci

from . import figures, layer_def, layer_dilemmas, layer_mark
from . import position as pos
from .blocks import Section
from .common import threshold as _threshold
from .headline import model_order, rows_note
from .i18n import N_, tr, tr_known
from .load import Layer, ReportData
from .sections import synthetic_note

# (column, measure, direction); first_token_items columns: raw (original order), order-averaged
# (permutations), calibrated (calibrate)
DISTANCES = (("one_minus_jsd", N_("1−JSD vs human"), N_("higher is closer")),
             ("kl", N_("KL vs human"), N_("lower is closer")), ("emd", N_("EMD vs human"), N_("lower is closer")))
VARIANTS = (("", ""), ("_avg", N_(", order-averaged")), ("_cal", N_(", label-prior calibrated")))


def layer_sections(data: ReportData, seed: int = 0) -> list[Section]:
    """One section per layer the runs know (run.json["layers"]), built by the layer's
    ``section`` builder in SECTIONS, or by :func:`generic` for a layer without one."""
    out = []
    for layer in data.layers:
        sec = Section(f"layer-{layer.key}", tr_known(layer.title))
        status, reason = data.layer_status(layer)
        if status != "ok":
            sec.status, sec.reason = status, reason
        else:
            SECTIONS.get(layer.section, generic)(sec, data, layer, seed)
        if status == "ok":
            position_note(sec, data, layer.key)
            synthetic_note(sec, data, layer)
            who_ran(sec, data, layer)
        out.append(sec)
    return out


def who_ran(sec: Section, data: ReportData, layer: Layer) -> None:
    """At the top of a layer, when models were given different layers: which ran it, which did not."""
    if data.is_uniform():
        return
    cells: dict[str, list[str]] = {}
    for m in model_order(data):
        cells.setdefault(data.cell(m, layer), []).append(m)
    parts = [f"{tr_known(what)}: {', '.join(ms)}" for what, ms in cells.items() if what != "ran"]
    sec.blocks.insert(0, {"kind": "text", "cls": "muted", "text": (
        tr("Run by {models}", models=", ".join(cells.get("ran", [])) or tr("no model"))
        + (tr("; ") + tr("; ").join(parts) if parts else "") + tr(". ")
        + tr("A model that was not given this layer (not run) has no rows in its tables and is in none of its "
             "figures, rankings or comparisons."))})


def generic(sec: Section, data: ReportData, layer: Layer, seed: int = 0) -> None:
    """A layer without its own report builder: each of its tables as exported."""
    sec.text(tr("Tables of this layer ({prefix}*), as exported to results/.", prefix=layer.prefix), "muted")
    for name, df in sorted(data.layer_tables(layer).items()):
        sec.frame(df, name, tr("As exported (results/{name}.csv).", name=name))


def position_note(sec: Section, data: ReportData, layer: str) -> None:
    """At the top of a layer: whether any model's choices are position-dominated (report/position.py); each
    affected figure gets a banner saying it is not a value finding."""
    found = pos.hits(data, layer)
    parts = pos.checked(data, layer)
    if not parts:
        return
    at = 1 if sec.blocks and sec.blocks[0]["kind"] == "text" else 0  # after the layer's introduction
    if not found:
        sec.blocks.insert(at, {"kind": "text", "cls": "ok", "text": tr(
            "Position bias: no model's choices are position-dominated here ({parts}; {rule}).",
            parts=", ".join(parts), rule=pos.rule())})
        return
    sec.blocks.insert(at, {"kind": "list", "title": tr("Position-dominated choices: not value findings"),
                           "items": [{"text": h.text(), "flag": True, "detail": ""} for h in found]})
    sec.blocks.insert(at + 1, {"kind": "text", "cls": "warn", "text": tr(
        "Rule: {rule}. Such a model answers by the option's place in the prompt, not its content; the figures "
        "marked below show those answers and are not evidence of its values.", rule=pos.rule())})
    for b in sec.blocks:
        if b["kind"] == "plot":
            hit = pos.figure_hits(found, layer, b.get("key") or "")
            if hit:
                b["banner"] = pos.banner(hit)


def first_token(sec: Section, data: ReportData, layer: Layer, seed: int = 0) -> None:
    t = data.tables
    sec.text(tr("Zero-shot first-token probe (Cao et al. 2025): the model's distribution over the option letters at "
                "the first answer token, per country in the prompt and prompt language. Covered mass = probability "
                "on the option letters before renormalising; country gap = Jensen–Shannon distance (natural log) "
                "between the distributions for two countries; reply agreement = the free answer's letter equals the "
                "top option."))
    _skipped(sec, t.get("first_token_skipped"))
    _orders_note(sec, t.get("first_token_items"))
    summary = t.get("first_token_summary")
    if summary is not None:
        rows, which = rows_note(summary)
        panels = [(c, tr(title), _threshold("first_token_summary", c)) for c, title in
                  (("mean_covered_mass", "covered mass"), ("position_tv", "position bias (TV)"),
                   ("mean_country_gap_jsd", "country gap (JSD)"), ("reply_agreement", "reply agreement"))
                  if c in rows.columns and rows[c].notna().any()]
        if panels:
            sec.plot(figures.metric_bars(rows, panels, "language" if "language" in rows.columns else None),
                     tr("Per model and language"),
                     tr("Values of first_token_summary ({which}); dashed lines are the oversight thresholds.",
                        which=which), key="first-token-summary")
        sec.frame(summary, "first_token_summary", tr("As exported (results/{name}.csv).", name="first_token_summary"))
    t2 = t.get("first_token_table2")
    if t2 is not None and len(t2):
        keys = {"run", "model", "condition", "language", "average"}
        cells = [c for c in t2.columns if c not in keys and pd.api.types.is_numeric_dtype(t2[c])]
        cells += ["average"] if "average" in t2.columns else []
        cells = [c for c in cells if t2[c].notna().any()]
        sec.frame(t2, tr("Table 2 layout: 1−JSD per test cell"),
                  tr("As exported (first_token_table2): mean 1−JSD per test cell of unseen questions and/or "
                     "countries (Jensen–Shannon distance, natural log, clipped to [0, 1]); ZS zero-shot, FT "
                     "fine-tuned, [ctrl] with the country replaced by a random other one."), collapse=False)
        if cells:
            shown = t2[t2[cells].notna().any(axis=1)]
            if "distribution" in shown.columns:  # one bar group per distribution, named after it
                dist = shown["distribution"].astype(str)
                shown = shown.assign(condition=shown["condition"].astype(str).where(
                    dist == "raw", shown["condition"].astype(str) + " · " + dist))
            sec.plot(figures.table2_bars(shown, cells), tr("Table 2 cells"),
                     tr("The same numbers as the table above (distribution: raw = original option order; "
                        "order-averaged = mean over the asked orders; calibrated = label-prior calibrated)."),
                     key="first-token-table2")
        else:
            sec.text(tr("No 1−JSD values yet: the questionnaire of this run has no human answer distributions."),
                     "muted")
    items = t.get("first_token_items")
    if items is not None:
        _distances(sec, items, seed)
    _templates(sec, t.get("first_token_templates"), t.get("first_token_template_spread"))
    options = t.get("first_token_options")
    if options is not None and len(options):
        rows, which = rows_note(options)
        for model in rows["model"].drop_duplicates():
            sec.plot(figures.distributions(rows, model, data.countries(), data.languages()),
                     tr("Answer distributions: {model}", model=model),
                     tr("first_token_options.prob per question ({which}), stacked by option; hover for the option "
                        "text.", which=which) + (" " + tr("Human bars: human_prob.")
                                                           if _has_human(rows, model) else ""),
                     key="first-token-distributions")


Builder = Callable[[Section, ReportData, Layer, int], None]


def _unseeded(build: Callable[[Section, ReportData, Layer], None]) -> Builder:
    def builder(sec: Section, data: ReportData, layer: Layer, seed: int = 0) -> None:
        build(sec, data, layer)
    return builder


# Layer report builders by the registry's ``section`` name (LayerSpec.section).
SECTIONS: dict[str, Builder] = {
    "first_token": first_token,
    "dilemmas": _unseeded(layer_dilemmas.section),
    "def": _unseeded(layer_def.section),
    "mark": _unseeded(layer_mark.section),
}


def _orders_note(sec: Section, items: pd.DataFrame | None) -> None:
    """What option permutation and calibration did, when they were on."""
    if items is None or not len(items):
        return
    if "n_orders" in items.columns and items["n_orders"].notna().any():
        n = pd.to_numeric(items["n_orders"], errors="coerce")
        ordinal = int(items.drop_duplicates("question_id")["ordinal"].fillna(False).astype(bool).sum()) \
            if "ordinal" in items.columns else 0
        span = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}"
        sec.text(tr("Option order: every item was asked in {span} orders (the original first; setting "
                    "permutations); each order's distribution was mapped back to the original options. The *_avg "
                    "columns and the order-averaged rows of Table 2 use their mean; order_spread_jsd is the mean "
                    "Jensen–Shannon distance of each order's distribution from that mean (0 = the order changes "
                    "nothing). The raw columns keep the original order, the paper's prompt, which lists the options "
                    "in survey order.", span=span)
                 + (" " + tr("{n} of the questions are ordinal scales: a reversed order lists such a scale from its "
                             "other end, and a cyclic or random order breaks its monotone order on the page, so an "
                             "order-averaged figure mixes readings of the scale in different directions.", n=ordinal)
                    if ordinal else ""))
    if "one_minus_jsd_cal" in items.columns:
        sec.text(tr("Label-prior calibration (Zhao et al. 2021): the raw distribution divided by the model's "
                    "distribution for a content-free prompt (question and option texts \"N/A\", same country, "
                    "wording and number of options), then renormalised; the *_cal columns and the calibrated rows of "
                    "Table 2."))


def _templates(sec: Section, templates: pd.DataFrame | None, spread: pd.DataFrame | None) -> None:
    """Prompt sensitivity: each summary metric's range across wordings."""
    if spread is None or not len(spread):
        return
    names = sorted(templates["template"].astype(str).unique()) if templates is not None else []
    sec.text(tr("Prompt sensitivity: the ZS probe asked with {n} wordings ({names}), original option order. For each "
                "summary metric: min, max, range and sample SD across the wordings — how much of a number is the "
                "wording rather than the model.", n=len(names), names=", ".join(names)))
    sec.frame(spread, tr("Range across wordings"), tr("As exported ({name}).", name="first_token_template_spread"))
    if templates is not None:
        sec.frame(templates, tr("Per wording"),
                  tr("As exported (first_token_templates): first_token_summary per wording."))


def _skipped(sec: Section, skipped: pd.DataFrame | None) -> None:
    """The data items the loader left out, counted once per file and item (every model lists them)."""
    if skipped is None:
        return
    keys = [c for c in ("run", "file", "item") if c in skipped.columns]
    uniq = skipped.drop(columns=[c for c in ("model",) if c in skipped.columns]).drop_duplicates(subset=keys or None)
    if not len(uniq):
        sec.text(tr("Data: no item was skipped."), "muted")
        return
    sec.text(tr("Data: {n} item(s) of the data file(s) skipped as degenerate (all option shares 0, or a sum more "
                "than 2% off the file's scale after detecting percent vs fractions); they are not in any number "
                "below. Set first_token.data.strict: true to make them an error.", n=len(uniq)))
    sec.frame(uniq, tr("Skipped data items"), tr("As exported (first_token_skipped), one row per file and item."))


def _has_human(options: pd.DataFrame, model: str) -> bool:
    return "human_prob" in options.columns and options.loc[options["model"] == model, "human_prob"].notna().any()


def _distances(sec: Section, items: pd.DataFrame, seed: int) -> None:
    series = "condition" if "condition" in items.columns else ("country" if "country" in items.columns else None)
    for col, name, title in [(c + suffix, tr(measure), f"{tr(measure)}{tr(variant)} ({tr(direction)})")
                             for suffix, variant in VARIANTS for c, measure, direction in DISTANCES]:
        if col not in items.columns or not items[col].notna().any():
            continue
        rows = []
        for keys, g in items.groupby(["model"] + ([series] if series else []), sort=False):
            model, lev = keys[0], (keys[1] if series else tr("all items"))
            v = pd.to_numeric(g[col], errors="coerce").dropna().to_numpy()
            if v.size == 0:
                continue
            ci = bootstrap_ci(v, seed=seed) if v.size >= 2 and np.isfinite(v).all() else None
            rows.append({"x": model, "series": lev, "y": float(v.mean()), "ci": ci})
        if rows:
            by = tr(" and {series}", series=tr_known(series)) if series else ""
            sec.plot(figures.bars_with_ci(rows, name), title,
                     tr("Mean of first_token_items.{col} per model{by} over items; error bars: 95% percentile "
                        "bootstrap over items (2000 resamples, seed {seed}).", col=col, by=by, seed=seed),
                     key="first-token-distance")

