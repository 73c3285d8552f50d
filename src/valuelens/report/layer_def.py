"""The DEF section: the paper's figures from the layer's tables, then its other tables."""

from __future__ import annotations

from . import figures_def as fdef
from .blocks import Section
from .common import need, rest, threshold
from .headline import DEF_INVALID_FLAG
from .i18n import N_, tr
from .load import HUMAN, Layer, ReportData

INTRO = N_("Diversity-Enhanced Framework (Liu et al. 2025a): virtual participants (a persona from the human survey's "
         "demographics, a random location, varied generation settings and a memory of earlier answers) answer the "
         "questionnaire many times, so each model has an answer distribution per culture to compare with the human "
         "survey. Two KL(model ‖ human) measures: over the valid answers only (column mean_kl_valid: the model's "
         "option shares among its valid answers), used for the ranking and the flags; and DEF's own definition "
         "(mean_kl_def), where the invalid share is a model outcome the humans never give, so a model that answers "
         "off-format looks far from humans; it is kept for comparability with DEF's numbers. In both, infinite KL is "
         "replaced by the largest finite KL in the run + 1 (DEF's rule; the _eps columns are the ε-smoothed "
         "alternative). The invalid share (refusals, hedges, replies naming no single option) is reported and "
         "flagged on its own (above {at}). A question is close to the humans when its KL is below "
         "0.5. Numeric scales (e.g. WVS 1-10) are shown in their order, not shuffled, so the number a model gives "
         "cannot be read as the wrong option.")


def section(sec: Section, data: ReportData, layer: Layer) -> None:
    t = data.layer_tables(layer)
    sec.text(tr(INTRO, at=f"{DEF_INVALID_FLAG:g}"))
    shown: set[str] = set()
    dims = need(sec, t, "def_dimensions", tr("KL per value dimension"),
                ("model", "language", "country", "dimension", "mean_kl_def"))
    if dims is not None:
        valid = "mean_kl_valid" in dims.columns and dims["mean_kl_valid"].notna().any()
        at = threshold("def_summary", "mean_kl_valid")
        line = " " + tr("Dashed line: {at} (close).", at=f"{at:g}") if at is not None else ""
        if valid:
            sec.plot(fdef.kl_dimensions(dims, at, "mean_kl_valid"),
                     tr("KL per value dimension and culture (valid answers)"),
                     tr("def_dimensions.mean_kl_valid: mean KL over the valid answers, over the questions of each "
                        "value dimension with at least one valid answer (n_questions_valid; (all): every such "
                        "question), per model, prompt language and country. Used for the ranking and the flags.")
                     + line, key="def-kl-dimensions")
        else:
            sec.text(tr("KL over the valid answers: def_dimensions has no mean_kl_valid (a run from before it "
                        "existed); only DEF's definition is shown."), "warn")
        sec.plot(fdef.kl_dimensions(dims, at), tr("KL per value dimension and culture (DEF's definition)"),
                 tr("def_dimensions.mean_kl_def: mean KL with the invalid share counted as a model outcome (DEF's "
                    "definition, for comparability), over the questions of each value dimension ((all): over every "
                    "question), per model, prompt language and country.") + line,
                 key="def-kl-dimensions-def" if valid else "def-kl-dimensions")
        sec.frame(dims, "def_dimensions", tr("As exported."))
        shown.add("def_dimensions")
    summ = t.get("def_summary")
    if summ is not None and {"model", "language", "country", "invalid_share"} <= set(summ.columns) and len(summ):
        sec.plot(fdef.invalid_share(summ, DEF_INVALID_FLAG), tr("Invalid answers per culture"),
                 tr("def_summary.invalid_share: share of the final answers (after retries) that are invalid, per "
                    "model, prompt language and country. Dashed line: {at} (flagged above it).",
                    at=f"{DEF_INVALID_FLAG:g}"),
                 key="def-invalid")
    ins = need(sec, t, "def_insensitivity", tr("Insensitivity (Figure 12)"), ("model", "language", "country"))
    if ins is not None and not fdef.rate_columns(ins):
        sec.text(tr("Insensitivity (Figure 12): not shown, def_insensitivity has no FF or CV rate (no factual items "
                    "or value pairs were rated)."), "warn")
        ins = None
    if ins is not None:
        cols = ", ".join(c for c, _ in fdef.rate_columns(ins))
        sec.plot(fdef.insensitivity(ins), tr("Insensitivity: FF and CV rates"),
                 tr("def_insensitivity ({cols}): FF = share of valid answers to the factual knowledge items that are "
                    "wrong; CV = share of valid answer pairs on opposite value items that contradict each other; "
                    "per model and culture (country · prompt language).", cols=cols), key="def-insensitivity")
        sec.frame(ins, "def_insensitivity", tr("As exported."))
        shown.add("def_insensitivity")
    prof = need(sec, t, "def_bias_profile", tr("Mismatch by sex and age group (Figures 18-19)"),
                ("model", "language", "country", "dimension", "facet", "group", "share"))
    if prof is not None:
        for facet, label in fdef.FACETS.items():
            if not (prof["facet"] == facet).any():
                sec.text(tr("Mismatch by {label}: def_bias_profile has no rows with facet {facet}.", label=tr(label),
                            facet=facet), "warn")
                continue
            sec.plot(fdef.mismatch(prof, facet), tr("Missed human majorities by {label}", label=tr(label)),
                     tr("def_bias_profile.share (facet {facet}): of the questions where the model's most chosen "
                        "option missed the human majority, the share whose majority was held by each {label} group "
                        "(tie: groups tied), per value dimension ((all): every question) and model.", facet=facet,
                        label=tr(label)),
                     key=f"def-mismatch-{facet.replace('_', '-')}")
        sec.frame(prof, "def_bias_profile", tr("As exported."))
        shown.add("def_bias_profile")
    pts = need(sec, t, "def_map", tr("Cultural variation map (Figure 11)"),
               ("model", "language", "country", "pc1", "pc2"))
    if pts is not None:
        runs = " " + tr("Each run has its own PCA, so each has its own panel.") if "run" in pts.columns and \
            pts["run"].nunique() > 1 else ""
        n = pts["n_features"].dropna().iloc[0] if "n_features" in pts.columns and pts["n_features"].notna().any() \
            else None
        sec.plot(fdef.cultural_map(pts), tr("Cultural variation map"),
                 tr("def_map.pc1, pc2: the first two principal components of the mean expected option value per "
                    "value dimension{features}, for each model · language and country and for the human survey "
                    "({human}); marker shape = country. The closer a model's countries lie together compared with "
                    "the humans', the less cultural variation it keeps.",
                    features=tr(" ({n} features)", n=int(n)) if n is not None else "", human=HUMAN) + runs,
                 key="def-map")
        sec.frame(pts, "def_map", tr("As exported."))
        shown.add("def_map")
        var = t.get("def_variation")
        if var is not None and len(var):
            sec.frame(var, tr("def_variation: variation preserved"),
                      tr("As exported: the model's distance between two countries ÷ the humans' distance, on the 2-D "
                         "map and in the full feature space (1 = same spread, 0 = no difference)."), collapse=False)
            shown.add("def_variation")
    rest(sec, t, shown)
