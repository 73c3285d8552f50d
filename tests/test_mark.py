"""MARK layer: theory (prior, stacks, vote), stage parsing, and a hand-worked
scripted run (trace, answers, metrics, bounded repair, invalid marks)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mark_helpers import StageBackend
from valuelens.config import parse_audit
from valuelens.layers.mark import layer
from valuelens.layers.mark.baselines import parse_answer
from valuelens.layers.mark.evaluate import _kappa_arrays, fast_macro_kappa, macro_kappa
from valuelens.layers.mark.prompts import render_stack
from valuelens.layers.mark.settings import MarkSettings, StackWeights
from valuelens.layers.mark.stages import StageError, extract_json, parse_reply
from valuelens.layers.mark.theory import FUNCTIONS, STACKS, keep_stressors, mbti_prior, vote_weights, weighted_vote
from valuelens.metrics import cohen_kappa
from valuelens.models import CachedModel
from valuelens.progress import NullTracker
from valuelens.store import Store

# --- theory -----------------------------------------------------------------


@pytest.mark.parametrize("age,sex,probs,typ", [
    (45, "male", {"E": .2, "I": .8, "S": .5, "N": .5, "T": .8, "F": .2, "J": .3, "P": .7}, "ISTP"),
    (25, "female", {"E": .5, "I": .5, "S": .5, "N": .5, "T": .5, "F": .5, "J": .5, "P": .5}, "ISTJ"),
    (30, "male", {"E": .5, "I": .5, "S": .5, "N": .5, "T": .8, "F": .2, "J": .5, "P": .5}, "ISTJ"),  # 30 is not older
    (31, "female", {"E": .2, "I": .8, "S": .5, "N": .5, "T": .5, "F": .5, "J": .3, "P": .7}, "ISTP"),
    (None, None, {"E": .5, "I": .5, "S": .5, "N": .5, "T": .5, "F": .5, "J": .5, "P": .5}, "ISTJ"),
])
def test_mbti_prior_hand_worked(age, sex, probs, typ):
    prior = mbti_prior(age, sex)
    assert prior.probs == pytest.approx(probs) and prior.type == typ


def _derived_stack(t: str) -> tuple[str, ...]:
    """Independent derivation: J/P says which of the judging (T/F) or perceiving
    (S/N) function is extraverted; E/I says which of the two leads."""
    e, p, j, jp = t[0], t[1], t[2], t[3]
    judging, perceiving = (j + "e", p + "i") if jp == "J" else (j + "i", p + "e")
    dom, aux = (judging, perceiving) if (e == "E") == judging.endswith("e") else (perceiving, judging)
    opp = {"S": "N", "N": "S", "T": "F", "F": "T"}
    flip = {"e": "i", "i": "e"}
    tert = opp[aux[0]] + dom[1]
    inf = opp[dom[0]] + flip[dom[1]]
    return tuple(f[0] + f[1] for f in (dom, aux, tert, inf))


def test_function_stacks_all_16_types():
    assert len(STACKS) == 16
    for t, stack in STACKS.items():
        assert stack == _derived_stack(t), t
        assert {f[0] for f in stack} == {"S", "N", "T", "F"} and len(set(stack)) == 4
    assert STACKS["INFJ"] == ("Ni", "Fe", "Ti", "Se")
    assert STACKS["ESTP"] == ("Se", "Ti", "Fe", "Ni")
    assert STACKS["ENFJ"] == ("Fe", "Ni", "Se", "Ti")
    assert STACKS["ISTJ"] == ("Si", "Te", "Fi", "Ne")
    for f in FUNCTIONS.values():  # positive and negative descriptions, both languages
        assert all(f[k][lang] for k in ("name", "positive", "negative") for lang in ("en", "zh"))


def test_weighted_vote_hand_worked():
    stack = STACKS["INFJ"]
    choices = {"Ni": 1, "Fe": 2, "Ti": 2, "Se": 1}
    pos = {f: "positive" for f in stack}
    v = weighted_vote(stack, choices, pos)  # 1: .4 + .1 = .5, 2: .3 + .2 = .5 -> tie -> dominant's option
    assert v.weights == pytest.approx({"Ni": .4, "Fe": .3, "Ti": .2, "Se": .1})
    assert v.scores == pytest.approx({1: .5, 2: .5}) and v.answer == 1
    v = weighted_vote(stack, choices, {**pos, "Fe": "negative"})  # raw .4 .15 .2 .1, sum .85
    assert v.weights == pytest.approx({"Ni": .4 / .85, "Fe": .15 / .85, "Ti": .2 / .85, "Se": .1 / .85})
    assert v.scores[1] == pytest.approx(.5 / .85) and v.answer == 1
    v = weighted_vote(stack, choices, {**pos, "Ni": "negative"})  # raw .2 .3 .2 .1, sum .8
    assert v.scores == pytest.approx({1: .375, 2: .625}) and v.answer == 2
    w = vote_weights(stack, {"Ni": "negative", "Se": "negative"}, (0.5, 0.3, 0.15, 0.05), 0.2)
    assert w == pytest.approx({"Ni": .1 / .56, "Fe": .3 / .56, "Ti": .15 / .56, "Se": .01 / .56})  # raw sum .56
    assert sum(w.values()) == pytest.approx(1.0)


def test_keep_stressors_at_or_above_mean():
    assert keep_stressors({"a": 10, "b": 40, "c": 80, "d": 70}) == ["c", "d"]  # mean 50
    assert keep_stressors({"a": 50, "b": 50}) == ["a", "b"]


def test_weights_settings_validated():
    with pytest.raises(ValidationError, match="dominant >= auxiliary"):
        StackWeights(dominant=0.1, auxiliary=0.3, tertiary=0.2, inferior=0.1)
    with pytest.raises(ValidationError):
        MarkSettings.model_validate({"data": {"path": "x", "codebook": "y"}, "questions": ["Q1"], "bogus": 1})


# --- parsing ------------------------------------------------------------------


def test_extract_json_handles_think_and_fences():
    assert extract_json('<think>{"no": 1}</think>\n```json\n{"mbti": "INFJ"}\n```') == {"mbti": "INFJ"}
    assert extract_json('reasoning...</think>{"a": 1}') == {"a": 1}
    assert extract_json('{"a": 1} <think> unfinished {"b": 2}') == {"a": 1}
    with pytest.raises(StageError, match="no JSON object"):
        extract_json('<think> unfinished {"a": 1}')  # an unclosed think block is all thinking
    with pytest.raises(StageError, match="invalid JSON"):
        extract_json('```json\n{"scores": {"sex": 5,}\n```')


def test_stage_validation_messages():
    names = {"sex": "sex", "age": "age"}
    ok = parse_reply("stress", '{"scores": {"Sex": 10, "age": 30}, "stress_level": "High", "summary": "s"}',
                     {"names": names})
    assert ok == {"scores": {"sex": 10.0, "age": 30.0}, "stress_level": "high", "summary": "s"}
    with pytest.raises(StageError, match="missing age"):
        parse_reply("stress", '{"scores": {"sex": 1}, "stress_level": "low", "summary": "s"}', {"names": names})
    with pytest.raises(StageError, match="stress_level"):
        parse_reply("stress", '{"scores": {"sex": 1, "age": 2}, "stress_level": "huge", "summary": "s"}',
                    {"names": names})
    with pytest.raises(StageError, match="not one of the 16"):
        parse_reply("type", '{"mbti": "XXXX"}', {})
    assert parse_reply("impact", '{"impacts": {"ni": "正面", "Fe": "Negative", "Ti": "positive", "Se": "negative"}}',
                       {"stack": ["Ni", "Fe", "Ti", "Se"]})["impacts"] == \
        {"Ni": "positive", "Fe": "negative", "Ti": "positive", "Se": "negative"}
    ctx = {"stack": ["Ni", "Fe", "Ti", "Se"], "n_options": 4}
    good = [{"function": f, "option": 1} for f in ctx["stack"]]
    assert parse_reply("reason", json.dumps({"choices": good}), ctx)["choices"]["Se"] == {"option": 1, "reason": ""}
    with pytest.raises(StageError, match="from 1 to 4"):
        parse_reply("reason", json.dumps({"choices": good[:3] + [{"function": "Se", "option": 5}]}), ctx)
    with pytest.raises(StageError, match="missing Se"):
        parse_reply("reason", json.dumps({"choices": good[:3]}), ctx)
    with pytest.raises(StageError, match="twice"):
        parse_reply("reason", json.dumps({"choices": good + good[:1]}), ctx)


@pytest.mark.parametrize("text,k,expected", [
    ("Answer: 3", 4, 3), ("answer:2.", 4, 2), ("<think>Answer: 4</think>Answer: 1", 4, 1), ("答案：2", 4, 2),
    ('Answer: <number>', 4, None), ("Answer: 7", 4, None), ("I pick three", 4, None), ("Answer: (2)", 4, 2),
    ("4. Not very happy", 4, 4), ("(3) Disagree", 4, 3), ("2", 4, 2), ("12 people", 4, None), ("1.5 maybe", 4, None),
    ("I think 2", 4, None),
])
def test_parse_answer(text, k, expected):
    assert parse_answer(text, k) == expected


def test_fast_kappa_matches_metrics():
    rng = np.random.default_rng(0)
    g = pd.DataFrame({"question_id": rng.choice(["Q1", "Q2", "Q3"], 60), "truth": rng.integers(1, 5, 60),
                      "answer": rng.choice([1, 2, 3, 4, np.nan], 60), "n_options": 4})
    ref = np.mean([cohen_kappa(h["truth"].tolist(), h["answer"].fillna(0).astype(int).tolist(), labels=range(5))
                   for _, h in g.groupby("question_id")])
    assert macro_kappa(g) == pytest.approx(ref)
    assert fast_macro_kappa(*_kappa_arrays(g)) == pytest.approx(ref)


def test_zh_impacted_stack():
    text = render_stack(STACKS["INFJ"], "zh", {"Ni": "positive", "Fe": "negative", "Ti": "positive", "Se": "positive"})
    assert "2. Fe（外倾情感；辅助功能；负面影响）：" + FUNCTIONS["Fe"]["negative"]["zh"] in text


# --- a hand-worked scripted run ------------------------------------------------

CSV = """B_COUNTRY,Q260,Q262,W_WEIGHT,Q1,Q46,Q275,Q273,Q279,Q288,H_URBRURAL,N_REGION_ISO,Q240
840,1,45,1.0,1,1,6,1,7,3,1,840005,4
156,2,25,1.2,2,1,3,6,6,5,2,156005,5
"""
STRESS_US = {"scores": {"sex": 10, "age": 40, "education": 20, "marital status": 30, "employment": 80, "income": 70,
                        "political ideology": 10}, "stress_level": "high", "summary": "Out of work and short of money."}
IMPACTS = {"Ni": "positive", "Fe": "negative", "Ti": "positive", "Se": "negative"}


def _choices(opts: dict[str, int]) -> str:
    return json.dumps({"choices": [{"function": f, "option": o, "reason": f"{f} reason"} for f, o in opts.items()]})


def reply(prompt: str) -> str:
    if "Rate how much stress" in prompt:
        if "- country: United States" in prompt:
            return "<think>scoring each one</think>\n```json\n" + json.dumps(STRESS_US) + "\n```"
        return '```json\n{"scores": {"sex": 5,}\n```'  # malformed, every time
    if "Predict this person's MBTI type" in prompt:
        return '{"mbti": "infj", "reason": "Reflective and caring."}'
    if "For each function, decide" in prompt:
        return json.dumps({"impacts": IMPACTS, "reason": "Worry drains the social and sensing sides."})
    if "Simulate how this survey respondent" in prompt:
        if "How important is family" in prompt:
            return _choices({"Ni": 2, "Fe": 1, "Ti": 1, "Se": 1})
        return _choices({"Ni": 1, "Fe": 2, "Ti": 2, "Se": 3})
    if "Explain in one or two sentences" in prompt:
        return '{"explanation": "A hand-written explanation."}'
    if "Your answers to other survey questions" in prompt:
        return "<think>Answer: 4</think>Answer: 2"
    if "- region:" in prompt:  # the WorldValuesBench persona
        return "I pick three"
    return "Answer: 1"


def _setup(tmp_path, shared_data, languages="[en]", extra=""):
    from mark_helpers import write_texts

    cb = shared_data / "wvs_codebook"
    (tmp_path / "wvs.csv").write_text(CSV)
    texts = write_texts(tmp_path / "texts.json")
    text = f"""\
name: mk
output_dir: {tmp_path / 'out'}
languages: {languages}
models: [{{name: m, backend: "scripted:{tmp_path / 'script.json'}"}}]
layers:
  mark:
    data: {{path: {tmp_path / 'wvs.csv'}, codebook: {cb / 'codebook.json'}, metadata: {cb / 'question_metadata.json'},
           texts: {texts}}}
    questions: [Q1, Q46]
    respondents_per_country: 3
    max_retries: 2
    bootstrap: 200
{extra}"""
    return parse_audit(text, "a.yaml")


def test_scripted_run_hand_worked(tmp_path, shared_data):
    audit = _setup(tmp_path, shared_data)
    backend = StageBackend(reply)
    model = CachedModel(backend, Store(tmp_path / "store.sqlite"), "m")
    tables = layer.run(model, audit.layers.mark, audit.layer_context(tmp_path / "out", NullTracker()))

    traces = [json.loads(line) for line in (tmp_path / "out" / "mark_traces" / "m.jsonl").read_text().splitlines()]
    by = {(t["country"], t["question_id"]): t for t in traces}
    assert len(traces) == 4
    us1, us46, cn1 = by[("United States", "Q1")], by[("United States", "Q46")], by[("China", "Q1")]
    assert us1["prior"] == {"probs": {"E": .2, "I": .8, "S": .5, "N": .5, "T": .8, "F": .2, "J": .3, "P": .7},
                            "type": "ISTP"}
    assert us1["stages"]["stress"]["stressors"] == ["employment", "income", "age"]  # mean 37.1
    assert us1["stages"]["stress"]["attempts"][0]["raw"].startswith("<think>")
    # stop_early (default): the reply ends at its first complete JSON object, the closing fence is not kept
    assert us1["stages"]["stress"]["attempts"][0]["raw"].endswith('"summary": "Out of work and short of money."}')
    assert us1["mbti"] == "INFJ" and us1["stack"] == [["dominant", "Ni"], ["auxiliary", "Fe"], ["tertiary", "Ti"],
                                                      ["inferior", "Se"]]
    assert us1["impacts"] == IMPACTS
    # raw .4 .15 .2 .05 (Fe, Se negative, factor .5), sum .8
    assert us1["vote"]["weights"] == pytest.approx({"Ni": .5, "Fe": .1875, "Ti": .25, "Se": .0625})
    assert us1["vote"]["scores"] == pytest.approx({"1": .5, "2": .5})
    assert (us1["answer"], us1["answer_text"], us1["truth"]) == (2, "Rather important", 1)  # tie -> dominant's
    assert us46["vote"]["scores"] == pytest.approx({"1": .5, "2": .4375, "3": .0625}) and us46["answer"] == 1
    assert us1["explanation"] == "A hand-written explanation." and us1["valid"] and us1["calls"] == 5
    # the impacted stack, with negative descriptions where impacted, is in the reasoning prompt
    prompt = us1["stages"]["reason"]["prompt"]
    assert "2. Fe (Extraverted Feeling; auxiliary; negative impact): " + FUNCTIONS["Fe"]["negative"]["en"] in prompt
    assert "1. Ni (Introverted Intuition; dominant; positive impact): " + FUNCTIONS["Ni"]["positive"]["en"] in prompt
    # malformed JSON: 1 + max_retries attempts with repair turns, then an invalid mark
    st = cn1["stages"]["stress"]
    assert len(st["attempts"]) == 3 and not st["valid"] and all("invalid JSON" in a["error"] for a in st["attempts"])
    assert cn1["invalid_stage"] == "stress" and cn1["answer"] is None and set(cn1["stages"]) == {"stress"}
    assert sum("Your reply could not be used: invalid JSON" in p for p in backend.prompts) == 2
    assert cn1["prior"]["type"] == "ISTJ"

    rows = tables["mark_traces"].set_index(["country", "question_id"])
    assert rows.loc[("United States", "Q1"), "stack"] == "Ni+ Fe- Ti+ Se-"
    assert rows.loc[("United States", "Q1"), "choices"] == "Ni:2 Fe:1 Ti:1 Se:1"
    assert rows.loc[("China", "Q46"), "invalid_stage"] == "stress"
    stages = tables["mark_stages"].set_index("stage")
    assert stages.loc["stress", ["jobs", "valid", "invalid", "calls"]].tolist() == [2, 1, 1, 4]

    assert "mark_responses" in tables
    opinion = [p for p in backend.prompts if "Your answers to other survey questions" in p and "United States" in p]
    assert any("- Taking all things together, how happy would you say you are?: Very happy" in p for p in opinion)
    s = tables["mark_summary"].set_index("method")
    assert s.loc["mark", ["n", "n_invalid", "accuracy"]].tolist() == [4, 2, .25]
    assert s.loc["demo_ideo", "accuracy"] == .75 and s.loc["demo_ideo_opinion", "accuracy"] == .25
    assert s.loc["worldvaluesbench", ["accuracy", "invalid_share"]].tolist() == [0, 1]
    # 1-JSD over items with a valid answer: US Q1 (point masses apart) and US Q46 (identical)
    assert s.loc["mark", "one_minus_jsd"] == pytest.approx((1 - np.sqrt(np.log(2)) + 1) / 2)
    assert s.loc["mark", "emd"] == pytest.approx((1 / 3 + 0) / 2)
    assert s.loc["mark", "kappa"] == pytest.approx((-1 / 3 + 0) / 2)  # Q1: po 0, pe .25; Q46: po .5, pe .5
    assert s.loc["demo_ideo", ["mark_only_correct", "baseline_only_correct", "p_vs_mark"]].tolist() == [0, 2, .5]
    assert s.loc["demo_ideo_opinion", ["mark_only_correct", "baseline_only_correct", "p_vs_mark"]].tolist() == [1, 1, 1]
    assert s.loc[["demo_ideo", "demo_ideo_opinion", "worldvaluesbench"], "p_holm"].tolist() == [1, 1, 1]
    assert np.isnan(s.loc["mark", "p_vs_mark"])
    items = tables["mark_items"]
    cn = items[(items.method == "mark") & (items.country == "China")]
    assert (cn.n_valid == 0).all() and cn.one_minus_jsd_sampled.isna().all()

    summ = tables["mark_summary"].assign(model="m")
    t3 = layer.combine({"mark_summary": summ}, audit.layers.mark)["mark_table3"]
    assert t3["method"].tolist() == ["Demo.+Ideo.", "Demo.+Ideo.+Opinion", "Zhao et al. (2024)", "MARK"]
    assert list(t3.columns) == ["language", "method", "m ACC (%)", "m 1-JSD", "m EMD", "m kappa", "m p (Holm)"]
    assert t3.iloc[3]["m ACC (%)"] == 25.0

    # rerun: everything comes from the cache, same traces
    again = layer.run(CachedModel(StageBackend(lambda p: "never called"), Store(tmp_path / "store.sqlite"), "m"),
                      audit.layers.mark, audit.layer_context(tmp_path / "out", NullTracker()))
    pd.testing.assert_frame_equal(again["mark_traces"], tables["mark_traces"])


def test_audit_wiring_and_export(tmp_path, shared_data):
    import valuelens.api as vl

    (tmp_path / "script.json").write_text(json.dumps(
        {"rules": [{"contains": "Rate how much stress", "text": "no json here"},
                   {"contains": "压力打分", "text": "{}"}], "default_text": "Answer: 1"}))
    audit = _setup(tmp_path, shared_data, languages="[en, zh]")
    tables = vl.run(audit)
    t3 = tables["mark_table3"]
    assert t3["language"].tolist() == ["en"] * 4 + ["zh"] * 4
    assert (tmp_path / "out" / "results" / "mark_table3.csv").is_file()
    assert (tmp_path / "out" / "mark_traces" / "m.jsonl").is_file()
    s = tables["mark_summary"]
    assert (s[s.method == "mark"].invalid_share == 1).all() and (s[s.method == "demo_ideo"].invalid_share == 0).all()
    zh = [json.loads(x) for x in (tmp_path / "out" / "mark_traces" / "m.jsonl").read_text().splitlines()
          if '"language": "zh"' in x]
    assert zh and "你正在分析一位调查受访者" in zh[0]["stages"]["stress"]["prompt"]
    assert "国家：中国" in zh[-1]["stages"]["stress"]["prompt"] or "国家：美国" in zh[-1]["stages"]["stress"]["prompt"]


def test_load_sample_from_synthetic_microdata(tmp_path, shared_data):
    from mark_helpers import synthetic_microdata
    from valuelens.errors import ValueLensError
    from valuelens.layers.mark.data import load_sample

    cb = shared_data / "wvs_codebook"
    csv = synthetic_microdata(cb, ["Q1", "Q46"], tmp_path / "wvs.csv", n_per_country=30)
    s = MarkSettings.model_validate({"data": {"path": str(csv), "codebook": str(cb / "codebook.json")},
                                     "questions": ["Q1", "Q46"], "respondents_per_country": 4})
    a = load_sample(s, ["United States", "China"], seed=1)
    assert [r.country for r in a.respondents] == ["United States"] * 4 + ["China"] * 4
    assert [r.id for r in a.respondents] == [r.id for r in load_sample(s, ["United States", "China"], seed=1).respondents]
    raw = pd.read_csv(csv)
    for r in a.respondents:
        row = raw.iloc[r.id]
        assert set(r.persona) == {"country", "sex", "age", "education", "marital_status", "employment", "income",
                                  "urban_rural", "region", "ideology"}
        assert r.persona["income"] == (row.Q288 if row.Q288 > 0 else None)
        assert r.persona["region"] is None or not r.persona["region"][:3].endswith("-")  # "US-CA " prefix removed
        assert all(1 <= v <= 4 for v in r.answers.values()) and r.answers
        if row.Q1 > 0:
            assert r.answers["Q1"] == row.Q1  # Q1 codes 1..4 are option numbers 1..4
    assert sum(a.global_human[("Q1", "China")]) == pytest.approx(1)
    with pytest.raises(ValueLensError, match="no respondents for Japan"):
        load_sample(s, ["Japan"], seed=1)
    with pytest.raises(ValueLensError, match="Q262 is not a usable"):
        load_sample(s.model_copy(update={"questions": ["Q262"]}), ["China"], seed=1)
