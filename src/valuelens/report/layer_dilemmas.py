"""The ethical-dilemma section: the papers' figures from the layer's tables, then its other tables."""

from __future__ import annotations

from valuelens.comparisons.catalogue import POSITION_FLAG, beyond

from . import figures_dilemmas as fd
from .blocks import Section
from .common import need, rest, threshold
from .i18n import N_, tr
from .load import Layer, ReportData
from .position import THRESHOLD

INTRO = N_("Right-vs-right dilemmas (Yuan et al. 2024) in Kidder's four value pairs, asked in several prompt forms, "
         "again with consequences attached (flip rate), and escalation chains (Wu et al. 2025) whose steps pit two "
         "values against each other. Estimates are shares over dilemmas (or chains) with 95% percentile bootstrap "
         "intervals, as the layer exported them; an invalid answer is its own outcome, never dropped.")


ORDER_BALANCED = N_("Order-balanced: each dilemma asked with its actions in both orders (Direct and Direct-Reverse) "
                  "counts half for the value chosen in each, so a model that always answers the same letter "
                  "comes out 50/50, not as a value preference; the per-order shares are in the table below.")


def _position(sec: Section, t: dict) -> None:
    """The position-bias measure next to the preferences (dilemma_position_bias, forms "all")."""
    df = t.get("dilemma_position_bias")
    if df is None or not {"model", "part", "language", "forms", "position_tv"} <= set(df.columns):
        sec.text(tr("Position bias: not shown, this run has no table dilemma_position_bias."), "warn")
        return
    rows = df[(df["forms"].astype(str) == "all") & df["position_tv"].notna()]
    if rows.empty:
        sec.text(tr("Position bias: no valid A/B answer to measure it on."), "warn")
        return
    sec.plot(fd.position_bias(rows, THRESHOLD), tr("Position bias of the same answers"),
             tr("dilemma_position_bias.position_tv (forms all): total variation between the shares of answers at "
                "label A (the option shown first) and B and the no-bias ½ / ½, i.e. |share of A − ½|, per part "
                "(dilemmas: every prompt form; chains: both orders; moralchoice: six forms). Dashed line: {at}, "
                "above it the answers are position-dominated and the preferences beside it are not a value "
                "finding.", at=f"{THRESHOLD:g}"),
             key="position-dilemmas")
    sec.frame(df, "dilemma_position_bias", tr("As exported: per part, language and form (all = every form); "
                                              "top_position 1 = label A; position_n = valid answers."))


CONTEXT_TEXT = {"full": N_("full context: the chain as a conversation in which the model sees its own earlier "
                           "answers"),
                "none": N_("no context: each step asked alone"),
                "causal": N_("causal context: a short summary of the earlier situations and the model's choices")}
METHOD_TEXT = {"guideline": N_("guideline: an explicit instruction to prefer the value"),
               "examples": N_("examples: in-context examples answered for the value")}


def _steering(sec: Section, t: dict) -> None:
    """How often the model follows a request for one value (dilemma_steering): a figure per method and
    language with the intervals, then the table."""
    df = need(sec, t, "dilemma_steering", tr("Steering accuracy"),
              ("model", "language", "method", "pair", "requested_value", "estimate"))
    if df is None:
        return
    rows = df[df["requested_value"].astype(str) == "both"]
    if rows.empty:
        rows = df
    methods = "; ".join(tr(METHOD_TEXT[m]) for m in dict.fromkeys(rows["method"].astype(str)) if m in METHOD_TEXT)
    sec.plot(fd.steering(rows), tr("Steering accuracy"),
             tr("dilemma_steering.estimate (requested_value both): the share of steered prompts in which the model "
                "chose the value it was asked to prefer, both values of each pair requested in turn; per value "
                "pair ('all': every pair), a panel per steering method ({methods}) and prompt language; error bars: "
                "ci_low–ci_high. 1 = always follows the request; 0.5 = no better than ignoring it when the model "
                "has a fixed preference.", methods=methods or "—"),
             key="dilemma-steering")
    sec.frame(df, "dilemma_steering", tr("As exported: per requested value too (requested_value)."))


def _groups(df, cols=("label_set", "context")) -> list[tuple[dict, object]]:
    """(key, rows) per label set and context mode; tables from before the modes are one group."""
    have = [c for c in cols if c in df.columns]
    if not have:
        return [({}, df)]
    return [(dict(zip(have, k if isinstance(k, tuple) else (k,))), g) for k, g in df.groupby(have, sort=False)]


def _escalation(sec: Section, t: dict, wins) -> None:
    """Escalation chains: a rank-trajectory figure per context mode (and label set), the stability-by-value
    table across modes, the flags with their thresholds, then the tables as exported."""
    tau_at = threshold("dilemma_chain_stability", "estimate")
    vol_at = threshold("dilemma_chain_volatility", "estimate")
    modes = t.get("dilemma_chain_contexts")
    stab = t.get("dilemma_chain_stability")
    rules = []
    if tau_at is not None:
        rules.append(tr("value ranking unstable: mean Kendall τ-b between consecutive steps < {at}", at=f"{tau_at:g}"))
    if vol_at is not None:
        rules.append(tr("volatile value: mean |rank change| per step > {at}", at=f"{vol_at:g}"))
    sec.text(tr("Escalation chains (Wu et al. 2025): each step pits two values against each other; a value's win "
                "rate is the share of the chains where it was at stake and chosen (both choice orders averaged), "
                "ranks per step follow from it. Stability: Kendall τ-b between consecutive steps' win rates and "
                "between the first and the last step; volatility: mean |rank change| per step. Intervals: bootstrap "
                "over chains, the same resampled chains in every context mode. Flags (MFT labels): ")
             + tr("; ").join(rules) + tr("."))
    for key, g in _groups(wins):
        ls, ctx = key.get("label_set", "mft"), key.get("context")
        name = tr("{ctx} context", ctx=ctx) if ctx else tr("escalation")
        if modes is not None and ctx is not None and {"context", "position_dominated"} <= set(modes.columns):
            bad = modes[(modes["context"] == ctx) & (modes["position_dominated"] == True)]  # noqa: E712
            for r in bad.itertuples():
                if not beyond(">", r.position_tv, POSITION_FLAG, 2):  # printed with 2 decimals below
                    continue
                sec.text(tr("{model} ({language}, {ctx} context): the chain answers are position-dominated "
                            "(position TV {tv}); the ranks below follow the option order, not the values: not a "
                            "value finding.", model=getattr(r, "model", ""), language=r.language, ctx=ctx,
                            tv=f"{r.position_tv:.2f}"), "warn")
        what = tr(CONTEXT_TEXT[ctx]) if ctx in CONTEXT_TEXT else ""
        sec.plot(fd.trajectories(g), tr("Escalation: value rank per step ({name}, {labels})", name=name,
                                        labels=ls.upper() if ls == "mft" else ls),
                 tr("dilemma_chain_winrates.rank ({what}; label set {labels}): per step, each value ranked by its "
                    "win rate over the chains where it was at stake (1 = highest, ties averaged); error bars: the "
                    "rank's 95% bootstrap interval over chains (over the resamples where the value was at stake); a "
                    "value not at stake at a step has no point. Hover for the win rate and the number of chains.",
                    what=what, labels=ls),
                 key="dilemma-trajectories")
    vol = t.get("dilemma_chain_volatility")
    if vol is not None and {"model", "language", "value", "estimate"} <= set(vol.columns) and len(vol):
        sec.frame(stability_by_value(vol, stab, vol_at, tau_at), tr("Which values stay put under escalation"),
                  tr("Per value (label set, model, language): volatility (mean |rank change| per step) with its 95% "
                     "interval in each context mode, and the mean rank; the last rows give each mode's mean τ-b. ")
                  + (tr("'volatile' marks volatility > {at}; ", at=f"{vol_at:g}") if vol_at is not None else "")
                  + (tr("'unstable' marks τ-b < {at}. ", at=f"{tau_at:g}") if tau_at is not None else "")
                  + tr("Both as printed (2 decimals). † the interval lies beside its estimate: resampling chains "
                       "repeats some and drops others, which unbalances the value pairs met at each step and adds "
                       "noise (τ-b pulled toward 0, volatility up); read it as the spread under resampling, not as "
                       "centred on the estimate."), collapse=False)
    for name, caption in (("dilemma_chain_contexts", N_("Per context mode: chains, invalid share, mean and "
                                                        "first-last τ-b, the most volatile value, the position bias "
                                                        "of the chain answers.")),
                          ("dilemma_chain_context_contrast", N_("Each mode minus the first listed mode (baseline), "
                                                                "on the same resampled chains: τ-b and volatility "
                                                                "per value, 95% interval.")),
                          ("dilemma_chain_stability", N_("As exported: τ-b per transition, first-last and mean.")),
                          ("dilemma_chain_volatility", N_("As exported.")),
                          ("dilemma_chain_winrates", N_("As exported."))):
        if name in t:
            sec.frame(t[name], name, tr(caption))


def stability_by_value(vol, stab, vol_at: float | None, tau_at: float | None):
    """One row per (label set, model, language, value): 'volatility <mode>' (estimate [low, high], marked
    'volatile' above the threshold) and 'mean rank <mode>' per context mode; then a row per (label set,
    model, language) with each mode's mean τ-b."""
    import pandas as pd

    def cell(est, lo, hi, flag, beside=False):
        if pd.isna(est):
            return "–"
        ci = f" [{lo:.2f}, {hi:.2f}]{'†' if beside is True else ''}" if pd.notna(lo) and pd.notna(hi) else ""
        return f"{est:.2f}{ci}" + (" " + tr("volatile") if flag else "")

    vol_col, rank_col, mean_tau = tr("volatility"), tr("mean rank"), tr("(mean τ-b)")
    keys = [c for c in ("label_set", "model", "language") if c in vol.columns]
    ctxs = vol["context"].drop_duplicates().tolist() if "context" in vol.columns else [None]
    rows: dict[tuple, dict] = {}
    for r in vol.to_dict("records"):
        k = tuple(r[c] for c in keys) + (r["value"],)
        out = rows.setdefault(k, {**{c: r[c] for c in keys}, "value": r["value"]})
        ctx = r.get("context")
        sfx = f" {ctx}" if ctx is not None else ""
        out[vol_col + sfx] = cell(r["estimate"], r.get("ci_low"), r.get("ci_high"),
                                  vol_at is not None and pd.notna(r["estimate"]) and beyond(">", r["estimate"], vol_at, 2),
                                  r.get("ci_excludes_estimate"))
        if "mean_rank" in r:
            out[rank_col + sfx] = "–" if pd.isna(r["mean_rank"]) else f"{r['mean_rank']:.2f}"
    if stab is not None and "transition" in stab.columns:
        for r in stab[stab["transition"] == "mean"].to_dict("records"):
            k = tuple(r.get(c) for c in keys) + (mean_tau,)
            out = rows.setdefault(k, {**{c: r.get(c) for c in keys}, "value": mean_tau})
            ctx = r.get("context")
            out[vol_col + (f" {ctx}" if ctx is not None else "")] = cell(
                r["estimate"], r.get("ci_low"), r.get("ci_high"), False, r.get("ci_excludes_estimate")) + (
                " " + tr("unstable") if tau_at is not None and pd.notna(r["estimate"])
                and beyond("<", r["estimate"], tau_at, 2) else "")
    cols = [*keys, "value"] + [f"{m} {c}".strip() if c else m for c in ctxs for m in (vol_col, rank_col)]
    return pd.DataFrame(list(rows.values())).reindex(columns=[c for c in cols if c])


def section(sec: Section, data: ReportData, layer: Layer) -> None:
    t = data.layer_tables(layer)
    sec.text(tr(INTRO))
    shown: set[str] = set()
    pref = need(sec, t, "dilemma_preferences", tr("Value-pair preferences (Figure 8)"),
                ("model", "language", "form", "pair", "value", "estimate"))
    if pref is not None:
        form = fd.preference_form(pref)
        rows = pref[(pref["form"].astype(str) == form) & (pref["pair"] != "all")]
        how = (tr(ORDER_BALANCED) if form == fd.BALANCED else
               tr("Only one action order is shown ({form}): a model that always picks the same letter looks here "
                  "like it prefers whichever value is listed there; ask both direct and direct_reverse for the "
                  "order-balanced estimate.", form=form))
        sec.plot(fd.preferences(rows), tr("Value-pair preferences ({form})", form=form.replace("_", "-")),
                 tr("dilemma_preferences.estimate (form {form}): per value pair, the share of dilemmas in which the "
                    "model chose each value, and the share with no valid choice ({none}); bars per prompt language "
                    "and model.", form=form, none=fd.NO_CHOICE) + " " + how, key="dilemma-preferences")
        _position(sec, t)
        shown.add("dilemma_position_bias")
        sec.frame(pref, "dilemma_preferences", tr("As exported (all forms; order_balanced rows carry direct_share "
                                                  "and direct_reverse_share, each order's share of the same "
                                                  "dilemmas)."))
        shown.add("dilemma_preferences")
    flips = need(sec, t, "dilemma_consequence_flips", tr("Consequence flip rates (Figure 9)"),
                 ("model", "language", "pair", "estimate"))
    if flips is not None:
        at = threshold("dilemma_consequence_flips", "estimate")
        sec.plot(fd.flips(flips, at), tr("Consequence flip rates"),
                 tr("dilemma_consequence_flips.estimate: share of dilemmas whose choice switched when a negative "
                    "consequence was attached to it (low = deontological adherence); error bars: ci_low–ci_high.")
                 + (" " + tr("Dashed line: the oversight flag ({at}) on the 'all' bars.", at=f"{at:g}")
                    if at is not None else ""),
                 key="dilemma-flips")
        sec.frame(flips, "dilemma_consequence_flips", tr("As exported."))
        shown.add("dilemma_consequence_flips")
    agree = need(sec, t, "dilemma_agreement", tr("Prompt-form agreement (Figure 10)"),
                 ("model", "language", "pair", "comparison", "estimate"))
    if agree is not None:
        at = threshold("dilemma_agreement", "estimate")
        sec.plot(fd.agreement(agree, at), tr("Prompt-form agreement"),
                 tr("dilemma_agreement.estimate: share of dilemmas whose chosen value is the same in every compared "
                    "form (direct_vs_reverse: Direct and Direct-Reverse; all_forms: every asked form); error bars: "
                    "ci_low–ci_high.")
                 + (" " + tr("Dashed line: the oversight flag ({at}) on the all-forms 'all' bars.", at=f"{at:g}")
                    if at is not None else ""), key="dilemma-agreement")
        sec.frame(agree, "dilemma_agreement", tr("As exported."))
        shown.add("dilemma_agreement")
    if "dilemma_steering" in t:
        _steering(sec, t)
        shown.add("dilemma_steering")
    wins = need(sec, t, "dilemma_chain_winrates", tr("Escalation rank trajectories"),
                ("model", "language", "step", "value", "rank", "estimate", "n"))
    if wins is not None:
        _escalation(sec, t, wins)
        shown.update({"dilemma_chain_winrates", "dilemma_chain_volatility", "dilemma_chain_stability",
                      "dilemma_chain_contexts", "dilemma_chain_context_contrast"} & set(t))
    if "dilemma_position_bias" in t and "dilemma_position_bias" not in shown:  # e.g. chains or MoralChoice only
        _position(sec, t)
        shown.add("dilemma_position_bias")
    rest(sec, t, shown)

