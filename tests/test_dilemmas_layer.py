"""The dilemma layer end to end on scripted models; expected values worked out by hand.

Scripted rules match substrings of the rendered prompt (first match wins) and
return probabilities for the labels (A, B) or a text.
"""

from __future__ import annotations

import json
import math

import pytest

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.data.dilemmas import builtin_dilemmas
from valuelens.errors import ValueLensError
from valuelens.layers.dilemmas.kidder import _examples

P_A, P_B = [0.9, 0.1], [0.1, 0.9]
DEMO = builtin_dilemmas()
FIRST2 = [d for pair in dict.fromkeys(d.pair for d in DEMO) for d in [x for x in DEMO if x.pair == pair][:2]]


def run(tmp_path, scripts: dict[str, dict], layer: str, languages: str = "[en]", name: str = "out"):
    models = []
    for m, script in scripts.items():
        (tmp_path / f"{m}.json").write_text(json.dumps(script, ensure_ascii=False), encoding="utf-8")
        models.append(f'  - {{name: {m}, backend: "scripted:{tmp_path / m}.json"}}')
    text = (f"output_dir: {tmp_path / name}\nseed: 7\nlanguages: {languages}\nmodels:\n" + "\n".join(models)
            + f"\nlayers:\n  dilemmas: {{n_resamples: 200, {layer}}}\n")
    return vl.run_full(parse_audit(text, "a.yaml"))


def row(df, **where):
    for k, v in where.items():
        df = df[df[k] == v]
    assert len(df) == 1, where
    return df.iloc[0]


def check_ci(df):
    ok = df["n"] > 0
    assert (df.loc[ok, "ci_low"] <= df.loc[ok, "estimate"] + 1e-12).all()
    assert (df.loc[ok, "estimate"] <= df.loc[ok, "ci_high"] + 1e-12).all()


def test_first_listed_model(tmp_path):
    """Always A: Direct picks action 1, Direct-Reverse action 2 -> agreement 0."""
    res = run(tmp_path, {"m": {"rules": [{"contains": "", "probs": P_A}]}}, "limit: 2, chains: none")
    t = res.tables
    # 8 dilemmas x (4 forms + 1 consequence re-ask + 2 methods x 2 directions)
    assert len(t["dilemma_responses"]) == 8 * 9 and t["dilemma_responses"]["valid"].all()
    ag = t["dilemma_agreement"]
    assert row(ag, pair="all", comparison="direct_vs_reverse")[["estimate", "n"]].tolist() == [0.0, 8]
    assert row(ag, pair="all", comparison="all_forms")["estimate"] == 0.0
    pref = t["dilemma_preferences"]
    assert row(pref, form="direct", pair="Justice vs Mercy", value="Justice")["estimate"] == 1.0
    assert row(pref, form="direct_reverse", pair="Justice vs Mercy", value="Mercy")["estimate"] == 1.0
    assert row(pref, form="compare_reverse", pair="Truth vs Loyalty", value="Loyalty")["estimate"] == 1.0  # "Yes" to X = Loyalty
    # Consequences against the chosen action 1 do not move a model that always says A.
    assert row(t["dilemma_consequence_flips"], pair="all")[["estimate", "n", "n_invalid_base"]].tolist() == [0.0, 8, 0]
    st = t["dilemma_steering"]
    for method in ("guideline", "examples"):
        # A = action 1 = value 1: follows every request for value 1, none for value 2, half of all
        assert row(st, method=method, pair="all", requested_value="both")["estimate"] == 0.5
        assert row(st, method=method, pair="Truth vs Loyalty", requested_value="Truth")["estimate"] == 1.0
        assert row(st, method=method, pair="Truth vs Loyalty", requested_value="Loyalty")["estimate"] == 0.0
    for name in ("dilemma_preferences", "dilemma_agreement", "dilemma_consequence_flips", "dilemma_steering"):
        check_ci(t[name])
    assert res.manifest["calls"]["calls_made"] == 8 * 9
    again = run(tmp_path, {"m": {"rules": [{"contains": "", "probs": P_A}]}}, "limit: 2, chains: none")
    assert again.manifest["calls"] == {"calls_made": 0, "calls_cached": 72}


def _same_value_rules(ds):
    """Pick the action serving value 2 in every form and language."""
    rules = []
    for d in ds:
        for lang in ("en", "zh"):
            a1, a2 = d.actions[0][lang], d.actions[1][lang]
            cmp = 'Do you prefer "{}"' if lang == "en" else "更愿意“{}”"
            rules += [{"contains": f"A. {a2}", "probs": P_A}, {"contains": f"B. {a2}", "probs": P_B},
                      {"contains": cmp.format(a2.rstrip(".。")), "probs": P_A},   # X = action 2: yes
                      {"contains": cmp.format(a1.rstrip(".。")), "probs": P_B}]   # X = action 1: no
    return rules


def test_same_value_model_agrees_across_forms(tmp_path):
    res = run(tmp_path, {"m": {"rules": _same_value_rules(FIRST2)}},
              "limit: 2, chains: none, consequences: false, steering: false", languages="[en, zh]")
    ag = res.tables["dilemma_agreement"]
    assert set(ag["language"]) == {"en", "zh"} and len(ag) == 2 * 5 * 2
    assert (ag["estimate"] == 1.0).all() and (ag.loc[ag["pair"] == "all", "n"] == 8).all()
    pref = res.tables["dilemma_preferences"]
    v2 = pref[pref["value"].isin(["Loyalty", "Community", "Long-term", "Mercy"])]
    assert len(v2) == 2 * 4 * (4 + 1) and (v2["estimate"] == 1.0).all()  # 4 forms + order_balanced


def test_consequence_flips_and_steering_by_hand(tmp_path):
    # Flip for TL01, TL02 and IC01: their re-ask (negative consequence on the chosen action 1) answers B.
    flip = [{"contains": f"Likely outcome: {d.negative[0]['en']}", "probs": P_B} for d in FIRST2[:3]]
    rules = flip + [{"contains": "prefer mercy over justice", "probs": P_B}, {"contains": "", "probs": P_A}]
    t = run(tmp_path, {"m": {"rules": rules}}, "limit: 2, chains: none").tables
    fl = t["dilemma_consequence_flips"]
    # 3 of 8 flip; per pair TL 2/2, IC 1/2, SL 0/2, JM 0/2
    assert row(fl, pair="all")["estimate"] == pytest.approx(3 / 8)
    assert [row(fl, pair=p)["estimate"] for p in ("Truth vs Loyalty", "Individual vs Community",
                                                    "Short-term vs Long-term", "Justice vs Mercy")] == [1.0, 0.5, 0.0, 0.0]
    st = t["dilemma_steering"]
    g = lambda **k: row(st, method="guideline", **k)["estimate"]  # noqa: E731
    # value-1 requests: A = value 1 always (8/8); value-2 requests: only the 2 Mercy ones answer B (2/8)
    assert g(pair="all", requested_value="both") == pytest.approx(10 / 16)
    assert g(pair="Justice vs Mercy", requested_value="Mercy") == 1.0 and g(pair="Truth vs Loyalty", requested_value="Loyalty") == 0.0
    assert row(st, method="examples", pair="Justice vs Mercy", requested_value="Mercy")["estimate"] == 0.0
    resp = t["dilemma_responses"]
    c = row(resp, condition="consequence", dilemma_id="TL01")
    assert c["consequence_against"] == 1 and c["chosen_action"] == 2 and c["chosen_value"] == "Loyalty"


def test_examples_alternate_letters_and_teach_the_value():
    tl = FIRST2[:2] + [d for d in DEMO if d.pair == "Truth vs Loyalty"][2:4]
    ex = _examples(tl[0], tl, "Loyalty", "en", 3, seed=0)
    assert [label for _, label in ex] == ["A", "B", "A"]
    for (text, label), d in zip(ex, tl[1:]):
        loyal = d.actions[1]["en"]  # value 2 = Loyalty
        assert f"{label}. {loyal}" in text and tl[0].situation["en"] not in text


def test_generate_mode_parses_and_keeps_invalid_answers(tmp_path):
    script = {"rules": [{"contains": "Do you prefer", "text": "Yes, I do."},
                        {"contains": "Which action", "text": "I would choose B."},
                        {"contains": "你会采取", "text": "这很难说。"}, {"contains": "更愿意", "text": "是"}],
              "default_text": "?"}
    res = run(tmp_path, {"m": script}, "limit: 1, chains: none, steering: false, "
              "mode: generate, samples: 2, temperature: 0.5", languages="[en, zh]")
    resp = res.tables["dilemma_responses"]
    # en: direct B -> action 2; direct_reverse B -> action 1; compare yes -> action 1; compare_reverse yes -> action 2
    en = resp[(resp["language"] == "en") & (resp["dilemma_id"] == "TL01") & (resp["condition"] == "form")].set_index("form")
    assert en["chosen_action"].tolist() == [2, 1, 1, 2] and (en["p_B"].iloc[:2] == 1.0).all()
    assert en.loc["direct", "reply"] == "I would choose B." and math.isnan(en.loc["direct", "covered_mass"])
    zh = resp[(resp["language"] == "zh") & (resp["form"] == "direct")]
    assert (zh["p_invalid"] == 1.0).all() and (~zh["valid"]).all() and zh["chosen_value"].isna().all()
    pref = res.tables["dilemma_preferences"]
    assert (pref[(pref["language"] == "zh") & (pref["form"] == "direct") & (pref["value"] == "(no choice)")]["estimate"] == 1).all()
    ag = res.tables["dilemma_agreement"]
    assert (ag.loc[ag["comparison"] == "direct_vs_reverse", "estimate"] == 0.0).all()  # en flips sides, zh invalid
    # en: the re-ask (consequences against action 2) still answers B -> no flip; zh: every Direct
    # answer was invalid, so nothing is re-asked and all 4 count as invalid bases
    fl = res.tables["dilemma_consequence_flips"]
    assert row(fl, language="en", pair="all")[["estimate", "n", "n_invalid_base"]].tolist() == [0.0, 4, 0]
    zh_flips = row(fl, language="zh", pair="all")
    assert zh_flips["n"] == 0 and zh_flips["n_invalid_base"] == 4 and math.isnan(zh_flips["estimate"])
    # (languages x pairs x forms + 4 en re-asks) x samples
    assert res.manifest["calls"]["calls_made"] == (2 * 4 * 4 + 4) * 2


CHAIN_STEPS = {  # (chosen, other) value per step; the chosen text is "pick ...", the other "skip ..."
    "c1": [("Care", "Authority"), ("Fairness", "Authority"), ("Fairness", "Care")],
    "c2": [("Authority", "Fairness"), ("Care", "Fairness"), ("Care", "Authority")],
}


def _chain_file(tmp_path):
    chains = []
    for cid, steps in CHAIN_STEPS.items():
        out = []
        for i, (win, lose) in enumerate(steps, 1):
            pick, skip = f"pick {cid}s{i}.", f"skip {cid}s{i}."
            first = i % 2 == 1  # the chosen choice is listed first at odd steps, second at even ones
            out.append({"situation": f"Situation {cid}/{i}.", "dilemma": "What do you do?",
                        "choices": [pick, skip] if first else [skip, pick], "values": [win, lose] if first else [lose, win]})
        chains.append({"id": cid, "norm": "Be good.", "steps": out})
    p = tmp_path / "chains.json"
    p.write_text(json.dumps(chains))
    return p


def test_escalation_tables_and_cross_model_agreement_by_hand(tmp_path):
    pick = [{"contains": "A. pick", "probs": P_A}, {"contains": "B. pick", "probs": P_B}]
    m2 = [{"contains": "A. skip c1s1", "probs": P_A}, {"contains": "B. skip c1s1", "probs": P_B}] + pick
    res = run(tmp_path, {"m1": {"rules": pick}, "m2": {"rules": m2}}, f"corpus: none, chains: {_chain_file(tmp_path)}, escalation: {{context: [none]}}")
    t = res.tables
    assert len(t["dilemma_chain_responses"]) == 2 * 2 * 3 * 2  # models x chains x steps x orders
    steps = t["dilemma_chain_steps"]
    s = row(steps, model="m1", chain_id="c1", step=2)  # chosen listed second: choice 2, p = (0.9 + 0.9) / 2
    assert s["chosen_choice"] == 2 and s["chosen_value"] == "Fairness" and s["p_choice_2"] == pytest.approx(0.9)
    w = t["dilemma_chain_winrates"]
    w1 = w[w["model"] == "m1"]
    # step 1: Care 1/1, Fairness 0/1, Authority 1/2 (see test_dilemmas_measures for the same example)
    assert [row(w1, step=1, value=v)["estimate"] for v in ("Care", "Fairness", "Authority")] == [1.0, 0.0, 0.5]
    assert [row(w1, step=3, value=v)["rank"] for v in ("Care", "Fairness", "Authority")] == [2, 1, 3]
    stab = t["dilemma_chain_stability"]
    assert [row(stab, model="m1", transition=tr)["estimate"] for tr in ("1-2", "2-3", "mean")] == pytest.approx([1 / 3] * 3)
    vol = t["dilemma_chain_volatility"]
    assert [row(vol, model="m1", value=v)["estimate"] for v in ("Care", "Fairness", "Authority")] == [0.5, 1.0, 0.5]
    # m2 differs from m1 only at c1 step 1 (Care vs Authority): step 1 agreement Care 0/1,
    # Authority (c1 disagree, c2 agree) 1/2, Fairness (c2) 1/1; later steps agree everywhere.
    ag = t["dilemma_chain_model_agreement"]
    assert [row(ag, step=1, value=v)["estimate"] for v in ("Care", "Authority", "Fairness")] == [0.0, 0.5, 1.0]
    assert (ag.loc[ag["step"] > 1, "estimate"] == 1.0).all() and (ag["n_models"] == 2).all()


def test_moralchoice_probs_mode_by_hand(tmp_path, shared_data):
    script = {"rules": [{"contains": "Respond solely with A or B", "probs": [0.75, 0.25]},
                        {"contains": "Respond solely with yes or no", "probs": [0.6, 0.4]}],
              "default_text": "I cannot answer this question"}  # repeat forms: a refusal
    layer = f"corpus: none, chains: none, moralchoice: {{path: {shared_data / 'moralchoice'}, sample: 6, ambiguity: low}}"
    res = run(tmp_path, {"m": script}, layer)
    sc = res.tables["dilemma_moralchoice_scenarios"]
    assert len(sc) == 6 and (sc["n_forms"] == 4).all()
    # per-form p(action1): ab 0.75, ab_reverse 0.25, compare 0.6, compare_reverse 0.4 -> marginal 0.5, H = ln 2
    # H(.75) = 0.562335, H(.6) = 0.673012, mean 0.617673; gJSD = 0.693147 - 0.617673 = 0.075474
    # consistency = 1 - 0.075474 / 0.693147 = 0.891114; refusals: 2 of 6 forms
    first = sc.iloc[0]
    assert first["marginal_action1"] == pytest.approx(0.5) and first["marginal_entropy"] == pytest.approx(math.log(2))
    assert first["mean_form_entropy"] == pytest.approx(0.617673, abs=1e-6)
    assert first["form_consistency"] == pytest.approx(0.891114, abs=1e-6)
    assert first["refusal_share"] == pytest.approx(1 / 3)
    sm = res.tables["dilemma_moralchoice_summary"]
    assert row(sm, form="marginal", measure="form_consistency")[["estimate", "ci_low", "ci_high", "n"]].tolist() == \
        pytest.approx([0.891114, 0.891114, 0.891114, 6], abs=1e-6)
    assert [row(sm, form=f, measure="action1_likelihood")["estimate"] for f in
            ("ab", "ab_reverse", "compare", "compare_reverse")] == pytest.approx([0.75, 0.25, 0.6, 0.4])
    assert row(sm, form="repeat_reverse", measure="refusal_share")["estimate"] == 1.0
    resp = res.tables["dilemma_moralchoice_responses"]
    assert (resp.loc[resp["template"] == "repeat", "reply"] == "I cannot answer this question").all()
    assert res.manifest["calls"]["calls_made"] == 36
    assert run(tmp_path, {"m": script}, layer).manifest["calls"]["calls_made"] == 0


def test_moralchoice_generate_mode(tmp_path, shared_data):
    script = {"rules": [{"contains": "Respond solely with A or B", "text": "A"},
                        {"contains": "Respond solely with yes or no", "text": "No."}], "default_text": "I refuse"}
    layer = (f"corpus: none, chains: none, mode: generate, "
             f"moralchoice: {{path: {shared_data / 'moralchoice'}, sample: 3, ambiguity: high}}")
    res = run(tmp_path, {"m": script}, layer)
    resp = res.tables["dilemma_moralchoice_responses"].set_index(["scenario_id", "form"])
    sid = resp.index[0][0]
    # A -> action shown first; No -> the option shown second; "I refuse" -> refusal
    assert [resp.loc[(sid, f), "decision"] for f in ("ab", "ab_reverse", "compare", "compare_reverse", "repeat")] == \
        ["action1", "action2", "action2", "action1", "refusal"]
    sc = res.tables["dilemma_moralchoice_scenarios"].iloc[0]
    assert sc["marginal_action1"] == 0.5 and sc["form_consistency"] == 0.0 and sc["mean_form_entropy"] == 0.0


def test_bad_corpus_fails_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "pair": "p", "values": ["a", "b"], "situation": "s", "actions": ["a"]}) + "\n")
    with pytest.raises(ValueLensError, match=r"bad.jsonl row 1: field 'actions'"):
        run(tmp_path, {"m": {"rules": []}}, f"corpus: {bad}")
    assert not (tmp_path / "out").exists()
