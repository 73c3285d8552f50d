"""The ethical-dilemma section: the papers' figures from the layer's tables, then its other tables."""

from __future__ import annotations

from . import figures_dilemmas as fd
from .blocks import Section
from .common import MAX_ROWS, need, rest, threshold
from .load import Layer, ReportData

INTRO = ("Right-vs-right dilemmas (Yuan et al. 2024) in Kidder's four value pairs, asked in several prompt forms, "
         "again with consequences attached (flip rate), and escalation chains (Wu et al. 2025) whose steps pit two "
         "values against each other. Estimates are shares over dilemmas (or chains) with 95% percentile bootstrap "
         "intervals, as the layer exported them; an invalid answer is its own outcome, never dropped.")


def section(sec: Section, data: ReportData, layer: Layer) -> None:
    t = data.layer_tables(layer)
    sec.text(INTRO)
    shown: set[str] = set()
    pref = need(sec, t, "dilemma_preferences", "Value-pair preferences (Figure 8)",
                ("model", "language", "form", "pair", "value", "estimate"))
    if pref is not None:
        form = fd.preference_form(pref)
        rows = pref[(pref["form"].astype(str) == form) & (pref["pair"] != "all")]
        sec.plot(fd.preferences(rows), f"Value-pair preferences ({form} form)",
                 f"dilemma_preferences.estimate (form {form}): per value pair, the share of dilemmas in which the "
                 f"model chose each value, and the share with no valid choice ({fd.NO_CHOICE}); bars per prompt "
                 "language and model.", key="dilemma-preferences")
        sec.frame(pref, "dilemma_preferences", "As exported (all forms).", max_rows=MAX_ROWS)
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
    rest(sec, t, shown)

