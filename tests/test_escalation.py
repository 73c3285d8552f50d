"""Escalation chains (issue 22): context modes, the built-in chain set, trajectories, flags.

Expected values are worked out by hand from the built-in set's balanced design
(every step position holds the same twelve value pairs) or from a fake model's
own recorded decisions; Fleiss' κ is checked against a published worked example.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_dilemmas_layer import run as run_dilemmas

from valuelens.config import parse_audit
from valuelens.data.dilemmas import MFT_VALUES, SCHWARTZ_VALUES, builtin_chains, load_chains
from valuelens.errors import ValueLensError
from valuelens.layers.dilemmas import escalation
from valuelens.layers.dilemmas.ask import Outcome
from valuelens.layers.dilemmas.escalation_context import render
from valuelens.layers.dilemmas.measures import fleiss_kappa

CHAINS = builtin_chains()
CJK = re.compile(r"[\u4e00-\u9fff]")
# A fixed value order: Care first, then the rest (the scripted "Care" model's preference).
ORDER = ("Care", "Fairness", "Loyalty", "Authority", "Sanctity", "Liberty")
P_A, P_B = [0.9, 0.1], [0.1, 0.9]


def row(df, **where):
    for k, v in where.items():
        df = df[df[k] == v]
    assert len(df) == 1, where
    return df.iloc[0]


def run(tmp_path, scripts: dict[str, dict], layer: str, languages: str = "[en]", name: str = "out"):
    """test_dilemmas_layer's audit of scripted models, without the dilemma corpus (chains only)."""
    return run_dilemmas(tmp_path, scripts, "corpus: none, " + layer, languages, name)


# ---- settings and data ------------------------------------------------------------------

def test_context_setting():
    def ctx(extra: str):
        return parse_audit(f"models: [{{name: m, backend: embedded}}]\nlayers:\n  dilemmas: {{{extra}}}\n",
                           "a.yaml").layers.dilemmas.escalation.context
    assert ctx("") == ["full", "none"]
    assert ctx("escalation: {context: [causal, none, full]}") == ["full", "none", "causal"]  # canonical order
    for bad, why in (("[full, full]", "listed twice"), ("[]", "at least 1"), ("[summary]", "causal")):
        with pytest.raises(ValueLensError, match=why):
            ctx(f"escalation: {{context: {bad}}}")


def test_builtin_chain_set_is_balanced_bilingual_and_doubly_labelled():
    assert len(CHAINS) >= 12 and len({c.id for c in CHAINS}) == len(CHAINS)
    for c in CHAINS:
        assert len(c.steps) == 5 and c.languages() == {"en", "zh"}
        texts = [c.norm] + [t for s in c.steps for t in (s.situation, s.dilemma, *s.choices)]
        assert all(CJK.search(t["zh"]) and not CJK.search(t["en"]) for t in texts)
        for s in c.steps:
            assert set(s.values) <= set(MFT_VALUES) and s.values[0] != s.values[1]
            assert set(s.schwartz) <= set(SCHWARTZ_VALUES)  # both label sets, every choice
    # every step position holds the same value pairs, each foundation at stake in 4 chains
    columns = [Counter(frozenset(c.steps[t].values) for c in CHAINS) for t in range(5)]
    assert all(col == columns[0] for col in columns) and len(columns[0]) == 12
    assert all(sum(v in p for p in columns[0]) == 4 for v in MFT_VALUES)
    # choice texts are unique, so content rules and the tests below can address each one
    for lang in ("en", "zh"):
        choice_texts = [ch[lang] for c in CHAINS for s in c.steps for ch in s.choices]
        assert len(set(choice_texts)) == len(choice_texts)


def test_our_chain_jsonl_with_both_label_sets(tmp_path):
    step = {"situation": {"en": "S.", "zh": "情形。"}, "dilemma": "Q?", "choices": ["a.", "b."],
            "values": ["Care/Harm", "Liberty"], "schwartz": ["Benevolence", "Self-direction"]}
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"id": "x", "norm": "N.", "steps": [step, {**step, "schwartz": None}]}) + "\n")
    c = load_chains(p)[0]
    assert c.steps[0].values == ("Care", "Liberty") and c.steps[0].schwartz == ("Benevolence", "Self-direction")
    assert c.steps[1].schwartz == (None, None)
    p.write_text(json.dumps({"id": "x", "norm": "N.", "steps": [{**step, "schwartz": ["Benevolence"]}]}) + "\n")
    with pytest.raises(ValueLensError, match=r"row 1: field 'steps\[0\]\.schwartz': expected a list of two"):
        load_chains(p)


# ---- prompts: what each mode shows of the earlier steps --------------------------------

class FakeAsker:
    """Picks, at every step, the choice whose text hashes higher (the same in both orders, so never a tie)
    and records every prompt it is asked."""

    def __init__(self):
        self.seed, self.s, self.asked = 3, SimpleNamespace(n_resamples=100), []

    def ab(self, prompts, desc, tags=None):
        out = []
        for p in prompts:
            self.asked.append(p)
            last = p.messages[-1].content
            a = re.search(r"^A\. (.*)$", last, re.M).group(1)
            b = re.search(r"^B\. (.*)$", last, re.M).group(1)
            h = lambda s: hashlib.sha256(s.encode()).digest()  # noqa: E731
            out.append(Outcome(*((0.8, 0.2) if h(a) > h(b) else (0.2, 0.8)), 0.0, 1.0, None))
        return out


def test_full_mode_prompt_of_step_k_holds_the_models_own_choices_of_steps_before():
    chains = CHAINS[:4]
    asker = FakeAsker()
    t = escalation.run(asker, chains, ["en", "zh"], ["full", "none", "causal"])
    steps = t["dilemma_chain_steps"]
    chosen = {(r.context, r.chain_id, r.language, r.step): int(r.chosen_choice) for r in steps.itertuples()}
    assert len(chosen) == 3 * 4 * 2 * 5 and Counter(chosen.values()).keys() == {1, 2}  # both choices occur
    by_chain = {c.id: c for c in chains}
    n_full = 0
    for p in asker.asked:
        first = p.messages[0].content
        c = next(c for c in chains if c.norm["en"] in first or c.norm["zh"] in first)
        lang = "zh" if CJK.search(first) else "en"
        k = (len(p.messages) + 1) // 2  # full mode: 2 turns per earlier step, then the current step
        if len(p.messages) > 1:
            n_full += 1
            for j in range(k - 1):
                user, answer = p.messages[2 * j], p.messages[2 * j + 1]
                own = chosen[("full", c.id, lang, j + 1)]
                label = "AB"[own - 1]  # earlier steps are shown in the given order
                assert user.role == "user" and answer.role == "assistant"
                assert answer.content == ("Answer: " if lang == "en" else "答案：") + label
                assert f"{label}. {by_chain[c.id].steps[j].choices[own - 1][lang]}" in user.content
                assert by_chain[c.id].steps[j].situation[lang] in user.content
            assert by_chain[c.id].steps[k - 1].situation[lang] in p.messages[-1].content
    assert n_full == 4 * 2 * 4 * 2  # chains x languages x steps 2-5 x orders
    # causal: one turn summarising every earlier step with the choice made there; none: no earlier step
    for ctx in ("causal", "none"):
        for k in range(2, 6):
            c = chains[1]
            earlier = [chosen[(ctx, c.id, "en", j + 1)] - 1 for j in range(k - 1)]
            p = render(ctx, c, k - 1, "en", False, earlier)
            assert p in asker.asked and len(p.messages) == 1
            text = p.messages[0].content
            for j in range(k - 1):
                shown = f"You chose: {c.steps[j].choices[earlier[j]]['en']}" in text
                assert shown == (ctx == "causal") and (c.steps[j].situation["en"] in text) == (ctx == "causal")
    # step 1 is the same prompt in every mode
    assert render("full", chains[0], 0, "en", True) == render("none", chains[0], 0, "en", True) \
        == render("causal", chains[0], 0, "en", True)


# ---- trajectories on scripted models -----------------------------------------------------

def _prefer(order=ORDER, chains=CHAINS):
    """Rules picking, at every step, the choice whose value comes first in ``order`` (by the option
    line of the current step: "A. text\\nB." in the given order, "\\nB. text\\n\\n" reversed)."""
    rules = []
    # later steps first: in full mode a prompt also holds the option lines of the earlier steps
    for s in [c.steps[t] for t in reversed(range(5)) for c in chains]:
        k = min((0, 1), key=lambda i: order.index(s.values[i]))
        for lang in ("en", "zh"):
            text = s.choices[k][lang]
            rules += [{"contains": f"A. {text}\nB. ", "probs": P_A}, {"contains": f"\nB. {text}\n\n", "probs": P_B}]
    return rules


def test_care_first_model_ranks_care_first_at_every_step_with_tau_1_in_every_mode(tmp_path):
    res = run(tmp_path, {"m": {"rules": _prefer()}}, "escalation: {context: [full, none, causal]}", "[en, zh]")
    t = res.tables
    w = t["dilemma_chain_winrates"]
    w = w[w["label_set"] == "mft"]
    # by hand, per step (the same twelve pairs): Care 4/4; Fairness loses only to Care, 3/4; Loyalty
    # (never meets Care) loses only to Fairness, 3/4; Authority beats only Liberty, 1/4; Sanctity
    # (never meets Authority) beats only Liberty, 1/4; Liberty 0/4.
    rates = {"Care": 1, "Fairness": .75, "Loyalty": .75, "Authority": .25, "Sanctity": .25, "Liberty": 0}
    want_rank = {"Care": 1, "Fairness": 2.5, "Loyalty": 2.5, "Authority": 4.5, "Sanctity": 4.5, "Liberty": 6}
    for ctx in ("full", "none", "causal"):
        for lang in ("en", "zh"):
            for step in range(1, 6):
                for v in MFT_VALUES:
                    r = row(w, context=ctx, language=lang, step=step, value=v)
                    assert (r["estimate"], r["rank"], r["n"]) == (rates[v], want_rank[v], 4)
                assert row(w, context=ctx, language=lang, step=step, value="Care")["rank_ci_low"] == 1
            s = t["dilemma_chain_stability"]
            s = s[(s["context"] == ctx) & (s["language"] == lang) & (s["label_set"] == "mft")]
            assert s["transition"].tolist() == ["1-2", "2-3", "3-4", "4-5", "first-last", "mean"]
            assert (s["estimate"] == 1).all()
            v = t["dilemma_chain_volatility"]
            assert (v.loc[(v["context"] == ctx) & (v["label_set"] == "mft"), "estimate"] == 0).all()
    cx = t["dilemma_chain_contexts"]
    assert set(cx["context"]) == {"full", "none", "causal"} and (cx.loc[cx.label_set == "mft", "tau_mean"] == 1).all()
    assert (cx.loc[cx.label_set == "mft", "position_dominated"] == False).all()  # noqa: E712
    contrast = t["dilemma_chain_context_contrast"]
    assert set(contrast["context"]) == {"none", "causal"} and (contrast["baseline"] == "full").all()
    assert np.allclose(contrast.loc[contrast.label_set == "mft", "estimate"], 0)
    # the Schwartz label set is computed too, from the same choices
    assert (w.shape[0] > 0) and (t["dilemma_chain_winrates"]["label_set"] == "schwartz").any()


def test_position_model_is_flagged_by_the_position_measure(tmp_path):
    """Always label A: in both orders, so the order-balanced choice is a tie (no valid choice) at every step;
    every value has win rate 0 and the same rank, and the position measure flags the answers."""
    res = run(tmp_path, {"m": {"rules": [{"contains": "", "probs": P_A}]}}, "limit: 4, escalation: {context: [full, none]}")
    t = res.tables
    cx = t["dilemma_chain_contexts"]
    mft = cx[cx["label_set"] == "mft"]
    assert mft["context"].tolist() == ["full", "none"]
    assert (mft["position_tv"] == 0.5).all() and (mft["position_dominated"] == True).all()  # noqa: E712
    assert (mft["invalid_share"] == 1).all()
    w = t["dilemma_chain_winrates"]
    w = w[w["label_set"] == "mft"]
    at_stake = w["n"] > 0
    assert at_stake.sum() > 30 and (w.loc[at_stake, "estimate"] == 0).all() and w.loc[~at_stake, "rank"].isna().all()
    for (_ctx, _step), g in w[at_stake].groupby(["context", "step"]):
        assert g["rank"].nunique() == 1  # all tied: no value finding
    pos = t["dilemma_position_bias"]
    assert bool(row(pos, part="chains", language="en", forms="all")["position_dominated"]) is True


# ---- cross-model consistency ---------------------------------------------------------------

def test_fleiss_kappa_worked_example():
    """Fleiss (1971) as worked in the Wikipedia article: 10 subjects, 14 raters, 5 categories, κ = 0.210."""
    m = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                  [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(m) == pytest.approx(0.20993, abs=5e-5)
    # two raters, hand-worked: agree on 4 of 5 subjects (P̄ = 4/5); margins 5/10, 5/10 -> P_e = 1/2; κ = 0.6
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0], [0, 2], [1, 1]])) == pytest.approx(0.6)
    # margins 5/8, 3/8 -> P_e = 34/64; P̄ = 3/4; κ = (3/4 − 34/64) / (30/64) = 7/15
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0], [1, 1]])) == pytest.approx(7 / 15)
    assert math.isnan(fleiss_kappa(np.array([[2, 0], [2, 0]])))  # P_e = 1: undefined
    assert math.isnan(fleiss_kappa(np.zeros((0, 2))))


def test_cross_model_consistency_per_value_and_mode(tmp_path):
    """m1 prefers the values in ORDER, m2 in the reverse order: they disagree on every step, so the
    pairwise agreement is 0 and Fleiss' κ is −P_e / (1 − P_e), P_e from the two choices' shares."""
    chains = CHAINS[:4]
    rev = tuple(reversed(ORDER))
    res = run(tmp_path, {"m1": {"rules": _prefer(ORDER, chains)}, "m2": {"rules": _prefer(rev, chains)}},
              "limit: 4, escalation: {context: [none]}")
    ag = res.tables["dilemma_chain_model_agreement"]
    ag = ag[ag["label_set"] == "mft"]
    # opposite strict orders disagree on every pair: agreement 0, κ = (0 − P_e)/(1 − P_e) < 0
    assert (ag["estimate"] == 0).all() and (ag["n_models"] == 2).all()
    s1 = [set(c.steps[0].values) for c in chains]
    at_stake = [v for v in MFT_VALUES if any(v in s for s in s1)]
    assert set(ag.loc[ag.step == 1, "value"]) == set(at_stake)
    for v in at_stake:
        r = row(ag, context="none", step=1, value=v)
        n = sum(v in s for s in s1)
        assert r["n"] == n
        if n:  # every subject split 1/1 over the two choices -> P̄ = 0; P_e from the choice margins
            steps = res.tables["dilemma_chain_steps"]
            st = steps[(steps.step == 1) & steps.chain_id.isin([c.id for c, s in zip(chains, s1) if v in s])]
            p = st["chosen_choice"].value_counts(normalize=True).reindex([1, 2], fill_value=0).to_numpy()
            pe = float((p ** 2).sum())
            assert r["kappa"] == pytest.approx((0 - pe) / (1 - pe)) if pe < 1 else math.isnan(r["kappa"])


def test_tables_carry_the_mode_everywhere(tmp_path):
    res = run(tmp_path, {"m": {"rules": []}}, "limit: 1, escalation: {context: [none, causal], limit: 3}")
    assert res.tables["dilemma_chain_steps"]["chain_id"].nunique() == 3  # escalation.limit wins for chains
    for name in ("dilemma_chain_responses", "dilemma_chain_steps", "dilemma_chain_winrates",
                 "dilemma_chain_stability", "dilemma_chain_volatility", "dilemma_chain_contexts"):
        df = res.tables[name]
        assert set(df["context"]) == {"none", "causal"}, name
    assert set(pd.unique(res.tables["dilemma_chain_context_contrast"]["baseline"])) == {"none"}


def test_vectorised_bootstrap_equals_the_scalar_measures_and_scipy():
    """boot_stats on resample counts = _stats (scipy's kendalltau, measures.ranks/volatility) on the
    resampled chains themselves; kendall_tau_b_rows = scipy.stats.kendalltau, ties included."""
    from scipy.stats import kendalltau

    from valuelens.layers.dilemmas.measures import kendall_tau_b_rows

    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 4, (300, 7)).astype(float), rng.integers(0, 4, (300, 7)).astype(float)
    x[rng.random(x.shape) < 0.15] = np.nan
    mine = kendall_tau_b_rows(x, y)
    for b in range(300):
        ok = np.isfinite(x[b]) & np.isfinite(y[b])
        ref = kendalltau(x[b, ok], y[b, ok]).statistic if ok.sum() >= 2 else np.nan
        assert (np.isnan(ref) and np.isnan(mine[b])) or mine[b] == pytest.approx(ref), b
    W = rng.integers(0, 2, (9, 5, 6)).astype(float)
    W[rng.random(W.shape) < 0.4] = np.nan
    counts = escalation.resample_counts(9, 11, 50)
    assert (counts.sum(1) == 9).all()
    boots = escalation.boot_stats(W, counts)
    for b in range(50):
        resampled = np.repeat(W, counts[b].astype(int), axis=0)
        ref = escalation._stats(resampled)
        for k in ("rates", "ranks", "tau", "tau_mean", "tau_first_last", "volatility"):
            np.testing.assert_allclose(boots[k][b], ref[k], atol=1e-12, equal_nan=True, err_msg=f"{k} resample {b}")


def test_interval_beside_its_estimate_is_marked():
    b = np.linspace(0.6, 0.9, 101)
    beside = escalation._ci(0.5, b, 12)
    assert (beside["ci_low"], beside["ci_high"]) == pytest.approx((0.6075, 0.8925)) and beside["ci_excludes_estimate"]
    assert not escalation._ci(0.7, b, 12)["ci_excludes_estimate"]
    undefined = escalation._ci(0.7, np.append(b, np.nan), 12)  # one resample undefined: no interval, no mark
    assert math.isnan(undefined["ci_low"]) and not undefined["ci_excludes_estimate"]
    ranked = escalation._ci(2.0, np.append(np.full(100, 2.0), np.nan), 12, skip_undefined=True)
    assert (ranked["ci_low"], ranked["ci_high"]) == (2.0, 2.0)


def test_mmd_chains_in_every_mode(tmp_path):
    """MMD's JSON (English, MFT labels, an unlabelled choice, chains of different length) in all three modes;
    asked in English in a [en, zh] audit; a missing label is at stake for no value."""
    def step(i, a, b):
        return {f"step {i}_situation": f"Situation {i}.", f"step {i}_dilemma": "What now?",
                f"step {i}_choiceA": f"do a{i}.", f"step {i}_choiceB": f"do b{i}.",
                f"step {i}_choiceA_value": a, f"step {i}_choiceB_value": b}
    rows = [{"norm": "Be kind.", **step(1, "Care/Harm", "Authority"), **step(2, "Fairness", "None"),
             **step(3, "Care", "Liberty")},
            {"norm": "Obey.", **step(1, "Authority", "Care"), **step(2, "Loyalty", "Care")}]
    p = tmp_path / "mmd.json"
    p.write_text(json.dumps(rows))
    res = run(tmp_path, {"m": {"rules": [{"contains": "A. do a", "probs": P_A}]}},
              f"chains: none, mmd: {p}, escalation: {{context: [full, none, causal]}}", "[en, zh]")
    steps = res.tables["dilemma_chain_steps"]
    assert set(steps["language"]) == {"en"} and len(steps) == 3 * (3 + 2)
    assert steps.loc[(steps.step == 2) & (steps.chain_id == "mmd00001"), "value_2"].isna().all()
    w = res.tables["dilemma_chain_winrates"]
    assert set(w["context"]) == {"full", "none", "causal"} and set(w["label_set"]) == {"mft"}
    # step 3 exists in one chain only: Care vs Liberty
    assert set(w.loc[(w.step == 3) & (w.n > 0), "value"]) == {"Care", "Liberty"}
