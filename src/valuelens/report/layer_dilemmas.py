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
        sec.plot(fd.trajectories(wins), "Escalation: value rank per step",
                 "dilemma_chain_winrates.rank: per step, each value ranked by its win rate over the chains where it "
                 "was at stake (1 = highest, ties averaged); a value not at stake at a step has no point. Hover for "
                 "the win rate (estimate) and the number of chains (n).", key="dilemma-trajectories")
        sec.frame(wins, "dilemma_chain_winrates", "As exported.", max_rows=MAX_ROWS)
        shown.add("dilemma_chain_winrates")
    if "dilemma_position_bias" in t and "dilemma_position_bias" not in shown:  # e.g. chains or MoralChoice only
        _position(sec, t)
        shown.add("dilemma_position_bias")
    rest(sec, t, shown)

