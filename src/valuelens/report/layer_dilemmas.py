"""The ethical-dilemma section: the papers' figures from the layer's tables, then its other tables."""

from __future__ import annotations

from . import figures_dilemmas as fd
from .blocks import Section
from .common import MAX_ROWS, need, rest, threshold
from .load import Layer, ReportData
from .position import THRESHOLD

INTRO = ("Right-vs-right dilemmas (Yuan et al. 2024) in Kidder's four value pairs, asked in several prompt forms, "
         "again with consequences attached (flip rate), and escalation chains (Wu et al. 2025) whose steps pit two "
         "values against each other. Estimates are shares over dilemmas (or chains) with 95% percentile bootstrap "
         "intervals, as the layer exported them; an invalid answer is its own outcome, never dropped.")


ORDER_BALANCED = ("Order-balanced: each dilemma asked with its actions in both orders (Direct and Direct-Reverse) "
                  "counts half for the value chosen in each, so a model that always answers the same letter "
                  "comes out 50/50, not as a value preference; the per-order shares are in the table below.")


def _position(sec: Section, t: dict) -> None:
    """The position-bias measure next to the preferences (dilemma_position_bias, forms "all")."""
    df = t.get("dilemma_position_bias")
    if df is None or not {"model", "part", "language", "forms", "position_tv"} <= set(df.columns):
        sec.text("Position bias: not shown, this run has no table dilemma_position_bias.", "warn")
        return
    rows = df[(df["forms"].astype(str) == "all") & df["position_tv"].notna()]
    if rows.empty:
        sec.text("Position bias: no valid A/B answer to measure it on.", "warn")
        return
    sec.plot(fd.position_bias(rows, THRESHOLD), "Position bias of the same answers",
             "dilemma_position_bias.position_tv (forms all): total variation between the shares of answers at "
             "label A (the option shown first) and B and the no-bias ½ / ½, i.e. |share of A − ½|, per part "
             f"(dilemmas: every prompt form; chains: both orders; moralchoice: six forms). Dashed line: {THRESHOLD:g}, "
             "above it the answers are position-dominated and the preferences beside it are not a value finding.",
             key="position-dilemmas")
    sec.frame(df, "dilemma_position_bias", "As exported: per part, language and form (all = every form); "
              "top_position 1 = label A; position_n = valid answers.", max_rows=MAX_ROWS)


CONTEXT_TEXT = {"full": "full context: the chain as a conversation in which the model sees its own earlier answers",
                "none": "no context: each step asked alone",
                "causal": "causal context: a short summary of the earlier situations and the model's choices"}


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
        rules.append(f"value ranking unstable: mean Kendall τ-b between consecutive steps < {tau_at:g}")
    if vol_at is not None:
        rules.append(f"volatile value: mean |rank change| per step > {vol_at:g}")
    sec.text("Escalation chains (Wu et al. 2025): each step pits two values against each other; a value's win rate "
             "is the share of the chains where it was at stake and chosen (both choice orders averaged), ranks per "
             "step follow from it. Stability: Kendall τ-b between consecutive steps' win rates and between the "
             "first and the last step; volatility: mean |rank change| per step. Intervals: bootstrap over chains, "
             "the same resampled chains in every context mode. Flags (MFT labels): " + "; ".join(rules) + ".")
    for key, g in _groups(wins):
        ls, ctx = key.get("label_set", "mft"), key.get("context")
        name = f"{ctx} context" if ctx else "escalation"
        if modes is not None and ctx is not None and {"context", "position_dominated"} <= set(modes.columns):
            bad = modes[(modes["context"] == ctx) & (modes["position_dominated"] == True)]  # noqa: E712
            for r in bad.itertuples():
                sec.text(f"{getattr(r, 'model', '')} ({r.language}, {ctx} context): the chain answers are "
                         f"position-dominated (position TV {r.position_tv:.2f}); the ranks below follow the option "
                         "order, not the values: not a value finding.", "warn")
        what = CONTEXT_TEXT.get(ctx or "", "")
        sec.plot(fd.trajectories(g), f"Escalation: value rank per step ({name}, {ls.upper() if ls == 'mft' else ls})",
                 f"dilemma_chain_winrates.rank ({what}; label set {ls}): per step, each value ranked by its win "
                 "rate over the chains where it was at stake (1 = highest, ties averaged); error bars: the rank's "
                 "95% bootstrap interval over chains (over the resamples where the value was at stake); a value "
                 "not at stake at a step has no point. Hover for the win rate and the number of chains.",
                 key="dilemma-trajectories")
    vol = t.get("dilemma_chain_volatility")
    if vol is not None and {"model", "language", "value", "estimate"} <= set(vol.columns) and len(vol):
        sec.frame(stability_by_value(vol, stab, vol_at, tau_at), "Which values stay put under escalation",
                  "Per value (label set, model, language): volatility (mean |rank change| per step) with its 95% "
                  "interval in each context mode, and the mean rank; the last rows give each mode's mean τ-b. "
                  + (f"'volatile' marks volatility > {vol_at:g}; " if vol_at is not None else "")
                  + (f"'unstable' marks τ-b < {tau_at:g}. " if tau_at is not None else "")
                  + "† the interval lies beside its estimate: resampling chains repeats some and drops others, "
                  "which unbalances the value pairs met at each step and adds noise (τ-b pulled toward 0, "
                  "volatility up); read it as the spread under resampling, not as centred on the estimate.",
                  max_rows=MAX_ROWS)
    for name, caption in (("dilemma_chain_contexts", "Per context mode: chains, invalid share, mean and first-last "
                           "τ-b, the most volatile value, the position bias of the chain answers."),
                          ("dilemma_chain_context_contrast", "Each mode minus the first listed mode (baseline), "
                           "on the same resampled chains: τ-b and volatility per value, 95% interval."),
                          ("dilemma_chain_stability", "As exported: τ-b per transition, first-last and mean."),
                          ("dilemma_chain_volatility", "As exported."), ("dilemma_chain_winrates", "As exported.")):
        if name in t:
            sec.frame(t[name], name, caption, max_rows=MAX_ROWS)


def stability_by_value(vol, stab, vol_at: float | None, tau_at: float | None):
    """One row per (label set, model, language, value): 'volatility <mode>' (estimate [low, high], marked
    'volatile' above the threshold) and 'mean rank <mode>' per context mode; then a row per (label set,
    model, language) with each mode's mean τ-b."""
    import pandas as pd

    def cell(est, lo, hi, flag, beside=False):
        if pd.isna(est):
            return "–"
        ci = f" [{lo:.2f}, {hi:.2f}]{'†' if beside is True else ''}" if pd.notna(lo) and pd.notna(hi) else ""
        return f"{est:.2f}{ci}" + (" volatile" if flag else "")

    keys = [c for c in ("label_set", "model", "language") if c in vol.columns]
    ctxs = vol["context"].drop_duplicates().tolist() if "context" in vol.columns else [None]
    rows: dict[tuple, dict] = {}
    for r in vol.to_dict("records"):
        k = tuple(r[c] for c in keys) + (r["value"],)
        out = rows.setdefault(k, {**{c: r[c] for c in keys}, "value": r["value"]})
        ctx = r.get("context")
        sfx = f" {ctx}" if ctx is not None else ""
        out["volatility" + sfx] = cell(r["estimate"], r.get("ci_low"), r.get("ci_high"),
                                       vol_at is not None and pd.notna(r["estimate"]) and r["estimate"] > vol_at,
                                       r.get("ci_excludes_estimate"))
        if "mean_rank" in r:
            out["mean rank" + sfx] = "–" if pd.isna(r["mean_rank"]) else f"{r['mean_rank']:.2f}"
    if stab is not None and "transition" in stab.columns:
        for r in stab[stab["transition"] == "mean"].to_dict("records"):
            k = tuple(r.get(c) for c in keys) + ("(mean τ-b)",)
            out = rows.setdefault(k, {**{c: r.get(c) for c in keys}, "value": "(mean τ-b)"})
            ctx = r.get("context")
            out["volatility" + (f" {ctx}" if ctx is not None else "")] = cell(
                r["estimate"], r.get("ci_low"), r.get("ci_high"), False, r.get("ci_excludes_estimate")) + (
                " unstable" if tau_at is not None and pd.notna(r["estimate"]) and r["estimate"] < tau_at else "")
    cols = [*keys, "value"] + [f"{m} {c}".strip() if c else m for c in ctxs for m in ("volatility", "mean rank")]
    return pd.DataFrame(list(rows.values())).reindex(columns=[c for c in cols if c])


def section(sec: Section, data: ReportData, layer: Layer) -> None:
    t = data.layer_tables(layer)
    sec.text(INTRO)
    shown: set[str] = set()
    pref = need(sec, t, "dilemma_preferences", "Value-pair preferences (Figure 8)",
                ("model", "language", "form", "pair", "value", "estimate"))
    if pref is not None:
        form = fd.preference_form(pref)
        rows = pref[(pref["form"].astype(str) == form) & (pref["pair"] != "all")]
        how = (ORDER_BALANCED if form == fd.BALANCED else
               f"Only one action order is shown ({form}): a model that always picks the same letter looks here like "
               "it prefers whichever value is listed there; ask both direct and direct_reverse for the "
               "order-balanced estimate.")
        sec.plot(fd.preferences(rows), f"Value-pair preferences ({form.replace('_', '-')})",
                 f"dilemma_preferences.estimate (form {form}): per value pair, the share of dilemmas in which the "
                 f"model chose each value, and the share with no valid choice ({fd.NO_CHOICE}); bars per prompt "
                 f"language and model. {how}", key="dilemma-preferences")
        _position(sec, t)
        shown.add("dilemma_position_bias")
        sec.frame(pref, "dilemma_preferences", "As exported (all forms; order_balanced rows carry direct_share and "
                  "direct_reverse_share, each order's share of the same dilemmas).", max_rows=MAX_ROWS)
        shown.add("dilemma_preferences")
    flips = need(sec, t, "dilemma_consequence_flips", "Consequence flip rates (Figure 9)",
                 ("model", "language", "pair", "estimate"))
    if flips is not None:
        at = threshold("dilemma_consequence_flips", "estimate")
        sec.plot(fd.flips(flips, at), "Consequence flip rates",
                 "dilemma_consequence_flips.estimate: share of dilemmas whose choice switched when a negative "
                 "consequence was attached to it (low = deontological adherence); error bars: ci_low–ci_high."
                 + (f" Dashed line: the oversight flag ({at:g}) on the 'all' bars." if at is not None else ""),
                 key="dilemma-flips")
        sec.frame(flips, "dilemma_consequence_flips", "As exported.")
        shown.add("dilemma_consequence_flips")
    agree = need(sec, t, "dilemma_agreement", "Prompt-form agreement (Figure 10)",
                 ("model", "language", "pair", "comparison", "estimate"))
    if agree is not None:
        at = threshold("dilemma_agreement", "estimate")
        sec.plot(fd.agreement(agree, at), "Prompt-form agreement",
                 "dilemma_agreement.estimate: share of dilemmas whose chosen value is the same in every compared "
                 "form (direct_vs_reverse: Direct and Direct-Reverse; all_forms: every asked form); error bars: "
                 "ci_low–ci_high." + (f" Dashed line: the oversight flag ({at:g}) on the all-forms 'all' bars."
                                      if at is not None else ""), key="dilemma-agreement")
        sec.frame(agree, "dilemma_agreement", "As exported.")
        shown.add("dilemma_agreement")
    wins = need(sec, t, "dilemma_chain_winrates", "Escalation rank trajectories",
                ("model", "language", "step", "value", "rank", "estimate", "n"))
    if wins is not None:
        _escalation(sec, t, wins)
        shown.update({"dilemma_chain_winrates", "dilemma_chain_volatility", "dilemma_chain_stability",
                      "dilemma_chain_contexts", "dilemma_chain_context_contrast"} & set(t))
    if "dilemma_position_bias" in t and "dilemma_position_bias" not in shown:  # e.g. chains or MoralChoice only
        _position(sec, t)
        shown.add("dilemma_position_bias")
    rest(sec, t, shown)

