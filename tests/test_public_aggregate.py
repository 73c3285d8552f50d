"""DEF and MARK on public country-level data: files in the Cao et al. 2025 layout
(en + zh JSON) and the GlobalOpinionQA layout (CSV), written by the tests, run end
to end through the layers with a backend whose replies are a function of the
prompt. Checked against hand counts and scipy: DEF's KL, the built-in WVS-7
dimension map, the default CV pairs (combos rule); MARK from marginals: personas,
1 − JSD and EMD against the country distributions, accuracy / κ / the paired test
flagged not computable (never a value), and the report saying so."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from mark_helpers import StageBackend
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.layers.def_layer import layer as def_layer
from valuelens.layers.mark import layer as mark_layer
from valuelens.layers.mark.theory import STACKS
from valuelens.models import CachedModel
from valuelens.progress import NullTracker
from valuelens.store import Store

SCALE = ["Not at all important", *map(str, range(2, 10)), "Very important"]
SCALE_ZH = ["一点也不重要", *map(str, range(2, 10)), "非常重要"]
JUST = ["Never justifiable", *map(str, range(2, 10)), "Always justifiable"]
JUST_ZH = ["从不合理", *map(str, range(2, 10)), "总是合理"]
# id -> (en text, en options, zh text, zh options)
ITEMS = {
    "164": ("How important is God in your life?", SCALE, "上帝在您的生活中有多重要？", SCALE_ZH),
    "165": ("Do you believe in God?", ["Yes", "No"], "您是否信仰上帝？", ["是", "否"]),
    "173": ("Would you say you are...", ["A religious person", "Not a religious person", "An atheist"],
            "您觉得自己是……", ["有宗教信仰的人", "没有宗教信仰的人", "无神论者"]),
    "177": ("Justifiable: claiming government benefits to which you are not entitled", JUST,
            "申领您无权享受的政府福利是否合理？", JUST_ZH),
}
HUMAN = {  # percent, per country (the file's scale)
    ("164", "United States"): [10, 4, 4, 4, 8, 6, 8, 10, 10, 36], ("164", "China"): [50, 8, 8, 6, 10, 4, 4, 4, 2, 4],
    ("165", "United States"): [80, 20], ("165", "China"): [15, 85],
    ("173", "United States"): [60, 35, 5], ("173", "China"): [15, 55, 30],
    ("177", "United States"): [60, 10, 8, 6, 6, 4, 2, 2, 1, 1], ("177", "China"): [70, 8, 6, 4, 4, 3, 2, 1, 1, 1],
}


def write_cao(d: Path) -> tuple[Path, Path]:
    en, zh = [], []
    for (qid, country), dist in HUMAN.items():
        text, opts, text_zh, opts_zh = ITEMS[qid]
        letters = "ABCDEFGHIJ"[: len(opts)]
        for out, instr, t, o in (
                (en, f"How would someone from {country} answer the following question:\n\n", text, opts),
                (zh, f"来自{country}的人会如何回答以下问题：\n\n", text_zh, opts_zh)):
            out.append({"id": qid, "instruction": instr, "input": f"{t} \nHere are the options: \n" if out is en
                        else f"{t} \n以下是选项：\n", "options": [f"({a}){x}" for a, x in zip(letters, o)],
                        "options_dist": dict(zip(letters, dist)), "data_type": "valid"})
    (d / "cao_en.json").write_text(json.dumps(en), encoding="utf-8")
    (d / "cao_zh.json").write_text(json.dumps(zh, ensure_ascii=False), encoding="utf-8")
    return d / "cao_en.json", d / "cao_zh.json"


GOQA = [  # question, options, {country: fractions}
    ("Is it important that women have the same rights as men?", ["Very important", "Somewhat important",
                                                                   "Not too important", "Not at all important"],
     {"United States": [0.70, 0.20, 0.06, 0.04], "China": [0.45, 0.40, 0.10, 0.05], "Japan": [0.5, 0.3, 0.1, 0.1]}),
    ("Do you favor or oppose more trade with other countries?", ["Favor", "Oppose"],
     {"United States": [0.55, 0.45], "China": [0.80, 0.20]}),
]


def write_goqa(d: Path) -> Path:
    rows = [{"question": q, "selections": "defaultdict(<class 'list'>, " + repr(sel) + ")", "options": repr(opts),
             "source": "GAS"} for q, opts, sel in GOQA]
    pd.DataFrame(rows).to_csv(d / "goqa.csv", index=False)
    return d / "goqa.csv"


# ---- a backend that picks an option by its text -------------------------------------------------

def pick(prompt: str, wanted: dict[str, str], letters: bool = False) -> str | None:
    """The label shown for the first option line (in the last question turn) whose text is in ``wanted``."""
    block = prompt.rsplit("Options:\n", 1)[-1] if "Options:\n" in prompt else prompt.rsplit("选项：\n", 1)[-1]
    for line in block.splitlines():
        m = re.match(r"^([0-9]+|[A-Z])\. (.*)$", line)
        if m and m.group(2) in wanted:
            return m.group(1)
    return None


# DEF: every participant answers these option texts (en, zh); other questions: the first shown option.
DEF_CHOICES = {"Yes", "是", "An atheist", "无神论者", "Very important", "非常重要", "Never justifiable", "从不合理",
               "Very important", "Favor"}


def def_reply(prompt: str) -> str:
    label = pick(prompt, DEF_CHOICES) or ("A" if "<letter>" in prompt or "<选项字母>" in prompt else "1")
    return f"Answer: {label} Explanation: Scripted." if "Question:" in prompt.rsplit("\n\n", 1)[-1] \
        else f"答案：{label} 解释：脚本。"


def audit(tmp_path: Path, layers: str, languages: str = "[en, zh]"):
    return parse_audit(f"""\
name: agg
output_dir: {tmp_path / 'out'}
languages: {languages}
models: [{{name: m, backend: embedded}}]
layers:
{layers}""", "a.yaml")


def run_def(tmp_path: Path, layers: str, languages: str = "[en, zh]") -> dict[str, pd.DataFrame]:
    a = audit(tmp_path, layers, languages)
    ctx = a.layer_context(tmp_path / "out", NullTracker())
    model = CachedModel(StageBackend(def_reply), Store(tmp_path / "store.sqlite"), "m")
    tables = def_layer.run(model, a.layers.get("def"), ctx)
    merged = {k: v.assign(model="m") for k, v in tables.items()}
    return {**merged, **def_layer.combine(merged, a.layers.get("def"), ctx)}


def test_def_on_cao_layout_dimensions_and_default_cv_pairs(tmp_path):
    en, zh = write_cao(tmp_path)
    t = run_def(tmp_path, f"""\
  def:
    data: {{kind: cao2025, path: {en}, path_zh: {zh}}}
    participants: 2
    passes: 2
    memory_max: 0
    beams: [1, 1]
    retries: 0
""")
    q = t["def_questions"]
    # the built-in map: valuelens' WVS-7 assignment by questionnaire section
    assert dict(zip(q.question_id, q.dimension)) == {"164": "TDI", "165": "TDI", "173": "TDI", "177": "EVI",
                                                    "Q91": "FACT", "Q92": "FACT", "Q93": "FACT"}
    assert set(t["def_participants"]["persona_source"]) == {"marginals"}
    # every session answered Yes / atheist / 10 on Q164: KL(model || human) of a point mass = -log(human share)
    for (lang, country), p_yes in {("en", "United States"): .80, ("zh", "China"): .15}.items():
        row = q[(q.language == lang) & (q.country == country) & (q.question_id == "165")].iloc[0]
        assert row.invalid_share == 0 and row.kl_valid_raw == pytest.approx(-math.log(p_yes))
        atheist = q[(q.language == lang) & (q.country == country) & (q.question_id == "173")].iloc[0]
        assert atheist.kl_valid_raw == pytest.approx(-math.log({"United States": .05, "China": .30}[country]))
    # default CV pairs of the map whose items are asked: Q165|Q173 (Yes & atheist: contradiction),
    # Q164|Q165 (10 & No: not this one), Q164|Q173 (10 & atheist: contradiction) -> 2 of 3 per session
    items = t["def_insensitivity_items"]
    cv = items[items.kind == "CV"]
    assert sorted(set(cv["item"])) == ["164|165", "164|173", "165|173"]
    flagged = cv.groupby("item")["flagged"].all().to_dict()
    assert flagged == {"164|165": False, "164|173": True, "165|173": True}
    rates = t["def_insensitivity"]
    assert (rates["cv_n"] == 3 * 2 * 2).all() and rates["cv_rate"].tolist() == pytest.approx([2 / 3] * 4)
    notes = " | ".join(t["def_notes"]["note"])
    assert "3 of the 5 default pairs" in notes and "valuelens' own WVS-7 assignment" in notes
    assert "demographic-bias analysis" in notes and "def_bias" not in t
    dims = t["def_dimensions"]
    assert {"TDI", "EVI", "(all)"} <= set(dims["dimension"])
    # Chinese texts from the zh file were used
    zh_rows = t["def_answers"][t["def_answers"].language == "zh"]
    assert len(zh_rows) and zh_rows["valid"].all()


def test_def_dimension_map_off_and_explicit_pairs(tmp_path):
    en, zh = write_cao(tmp_path)
    t = run_def(tmp_path, f"""\
  def:
    data: {{kind: cao2025, path: {en}}}
    participants: 1
    passes: 1
    memory_max: 0
    beams: [1, 1]
    dimension_map: null
    dimensions: {{Q177: MAS}}
    insensitivity: {{cv_pairs: [{{a: Q165, b: Q173, rule: combos, combos: [[2, 1]]}}]}}
""", languages="[en]")
    q = t["def_questions"]
    assert dict(zip(q.question_id, q.dimension))["177"] == "MAS" and dict(zip(q.question_id, q.dimension))["164"] == ""
    cv = t["def_insensitivity_items"].query("kind == 'CV'")
    assert cv["item"].tolist() == ["165|173"] * 2 and not cv["flagged"].any()  # Yes & atheist is not (No, religious)


def test_def_on_global_opinions_layout(tmp_path):
    path = write_goqa(tmp_path)
    t = run_def(tmp_path, f"""\
  def:
    data: {{kind: global_opinions, path: {path}}}
    participants: 3
    passes: 1
    memory_max: 0
    beams: [1, 1]
""")
    q = t["def_questions"].set_index(["language", "country", "question_id"])
    assert not any(lang == "zh" and qid.startswith("goqa") for lang, _, qid in q.index)  # English-only data
    us = q.loc[("en", "United States", "goqa-0")]
    assert us.n_answers == 3 and us.kl_valid_raw == pytest.approx(-math.log(.70))
    cn = q.loc[("en", "China", "goqa-1")]
    assert cn.kl_valid_raw == pytest.approx(-math.log(.80)) and cn.dimension == ""
    notes = " | ".join(t["def_notes"]["note"])
    assert "no text in that language" in notes and "no value dimension" in notes


def test_def_settings_errors(tmp_path):
    en, _ = write_cao(tmp_path)
    with pytest.raises(ValueLensError, match="combos"):
        audit(tmp_path, f"  def:\n    data: {{kind: cao2025, path: {en}}}\n"
                        "    insensitivity: {cv_pairs: [{a: Q165, b: Q173, combos: [[1, 3]]}]}\n")
    a = audit(tmp_path, f"  def:\n    data: {{kind: cao2025, path: {en}}}\n"
                        "    insensitivity: {cv_pairs: [{a: Q165, b: Q173, rule: combos, combos: [[1, 7]]}]}\n")
    with pytest.raises(ValueLensError, match=r"code\(s\) \[7\] are not answer codes of Q173"):
        def_layer.check(a.layers.get("def"), a.layer_context(tmp_path / "out", NullTracker()))
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"items": {"Q1": {"dimension": "XYZ"}}}))
    a = audit(tmp_path, f"  def:\n    data: {{kind: cao2025, path: {en}}}\n    dimension_map: {bad}\n")
    with pytest.raises(ValueLensError, match=r"map.json: items\['Q1'\], field 'dimension': 'XYZ' is not one of"):
        def_layer.check(a.layers.get("def"), a.layer_context(tmp_path / "out", NullTracker()))


def test_builtin_map_is_complete_and_cited():
    from valuelens.data.dimension_map import DIMENSIONS, load_dimension_map

    m = load_dimension_map("builtin")
    raw = json.loads((Path(__file__).parents[1] / "src/valuelens/data/wvs7_dimensions.json").read_text("utf-8"))
    assert set(m.dimension.values()) == set(DIMENSIONS)  # all nine used
    for qid, e in raw["items"].items():
        n = int(qid[1:])
        lo, hi = map(int, re.search(r"\(Q(\d+)-Q(\d+)\)", e["section"]).groups())
        assert lo <= n <= hi, qid  # each item cites the section it lies in
        assert e["why"]
    for p in m.cv_pairs:
        assert p["a"] in raw["items"] and p["b"] in raw["items"] and p["why"]


# ---- MARK from marginals -----------------------------------------------------------------------

def stage_reply(prompt: str) -> str:
    """A valid reply at every MARK stage for any persona: scores for the listed characteristics, INFJ,
    impacts, choices (option 1 for the United States, 2 elsewhere), an explanation; baselines answer 1."""
    us = "country: United States" in prompt or "国家：美国" in prompt
    if "Rate how much stress" in prompt or "压力打分" in prompt:
        names = re.findall(r'"([^"]+)": <0-100>', prompt)
        assert names, prompt
        return json.dumps({"scores": {n: 10 * (i + 1) for i, n in enumerate(names)}, "stress_level": "medium",
                           "summary": "Scripted."}, ensure_ascii=False)
    if "Predict this person's MBTI type" in prompt or "预测这个人的 MBTI 类型" in prompt:
        return json.dumps({"mbti": "INFJ", "reason": "scripted"})
    if "For each function, decide" in prompt or "请判断这个人的压力对每个功能的影响" in prompt:
        return json.dumps({"impacts": {f: "positive" for f in STACKS["INFJ"]}, "reason": "scripted"})
    if "Simulate how this survey respondent" in prompt or "请模拟这位调查受访者" in prompt:
        return json.dumps({"choices": [{"function": f, "option": 1 if us else 2, "reason": "r"}
                                       for f in STACKS["INFJ"]]})
    if "Explain in one or two sentences" in prompt or "请用一两句话" in prompt:
        return json.dumps({"explanation": "Scripted."})
    return "Answer: 1"


def run_mark(tmp_path: Path, data: str, questions: str, languages: str = "[en, zh]", extra: str = ""):
    a = audit(tmp_path, f"""\
  mark:
    data: {data}
    questions: {questions}
    respondents_per_country: 3
    max_retries: 0
    bootstrap: 200
{extra}""", languages)
    ctx = a.layer_context(tmp_path / "out", NullTracker())
    mark_layer.check(a.layers.mark, ctx)
    backend = StageBackend(stage_reply)
    tables = mark_layer.run(CachedModel(backend, Store(tmp_path / "store.sqlite"), "m"), a.layers.mark, ctx)
    summ = tables["mark_summary"].assign(model="m")
    return tables, mark_layer.combine({"mark_summary": summ}, a.layers.mark)["mark_table3"], backend


def test_mark_on_cao_layout_from_marginals(tmp_path):
    en, zh = write_cao(tmp_path)
    tables, t3, backend = run_mark(tmp_path, f"{{kind: cao2025, path: {en}, path_zh: {zh}}}", "[Q165, Q173]",
                                   extra="    marginals: {China: {sex: {female: 1}}}\n")
    s = tables["mark_summary"]
    assert set(s["method"]) == {"mark", "demo_ideo", "worldvaluesbench"}  # demo_ideo_opinion: no real answers
    assert (s["reference"] == "global").all() and (s["not_computable"] == "accuracy, kappa, p_vs_mark").all()
    for col in ("accuracy", "accuracy_low", "kappa", "kappa_low", "p_vs_mark", "p_holm"):
        assert s[col].isna().all(), col  # empty, never 0
    resp = tables["mark_responses"]
    assert resp["truth"].isna().all() and resp["correct"].isna().all()
    assert len(resp[resp.method == "mark"]) == 2 * 2 * 3 * 2  # languages x countries x personas x questions
    # 1 - JSD and EMD of the simulated answers (US all option 1, China all 2) against each country's shares
    expect_jsd, expect_emd = [], []
    for qid in ("165", "173"):
        for country, opt in (("United States", 0), ("China", 1)):
            h = np.array(HUMAN[(qid, country)], float)
            h /= h.sum()
            sim = np.eye(len(h))[opt]
            expect_jsd.append(1 - jensenshannon(h, sim))
            pos = np.arange(len(h))
            expect_emd.append(wasserstein_distance(pos, pos, h, sim) / (len(h) - 1))
    for lang in ("en", "zh"):
        row = s[(s.method == "mark") & (s.language == lang)].iloc[0]
        assert row.invalid_share == 0
        assert row.one_minus_jsd == pytest.approx(np.mean(expect_jsd))
        assert row.emd == pytest.approx(np.mean(expect_emd))
    # position bias against each country's modal human answer (US 1, 1; China 2, 2 on Q165, Q173), which the
    # scripted answers equal: by hand, obs [.5, .5, 0] vs the baseline mean of uniform k=2 and k=3, TV 1/6
    mk = s[(s.method == "mark") & (s.language == "en")].iloc[0]
    assert mk.position_tv == pytest.approx(1 / 6) and mk.reference_position_tv == pytest.approx(1 / 6)
    assert mk.position_tv_vs_reference == pytest.approx(0) and not mk.position_dominated
    # personas from marginals: an age group, no age; China's all female (its marginal), seeded
    traces = tables["mark_traces"]
    assert traces["persona"].str.contains("age_group=").all() and not traces["persona"].str.contains("age=").any()
    assert traces[traces.country == "China"]["persona"].str.contains("sex=female").all()
    assert any("年龄段：" in p and "无神论者" in p for p in backend.prompts)  # Chinese question texts
    assert "accuracy, kappa, p_vs_mark" in t3["not_computable"].iloc[0] and t3["m ACC (%)"].isna().all()
    notes = " | ".join(tables["mark_notes"]["note"])
    assert "personas drawn from marginals" in notes and "demo_ideo_opinion not run" in notes

    # the report shows them as not computable, never as a number
    from valuelens.report.layer_mark import not_computable_cells, summary_display

    shown, named = not_computable_cells(t3)
    assert named == "Cohen's κ, accuracy, the paired test"
    assert (shown["m ACC (%)"] == "not computable").all() and (shown["m kappa"] == "not computable").all()
    assert shown["m 1-JSD"].tolist() == t3["m 1-JSD"].tolist()
    disp = summary_display(s)
    assert (disp["accuracy"] == "not computable").all() and (disp["one_minus_jsd"] == s["one_minus_jsd"]).all()

    # same seed, same personas; rerun from the cache
    again, _, b2 = run_mark(tmp_path, f"{{kind: cao2025, path: {en}, path_zh: {zh}}}", "[Q165, Q173]",
                            extra="    marginals: {China: {sex: {female: 1}}}\n")
    assert not b2.prompts
    pd.testing.assert_frame_equal(again["mark_traces"], traces)


def test_mark_on_global_opinions_layout(tmp_path):
    path = write_goqa(tmp_path)
    tables, t3, _ = run_mark(tmp_path, f"{{kind: global_opinions, path: {path}}}", "[goqa-0, goqa-1]", "[en]")
    s = tables["mark_summary"].set_index("method")
    h0 = {c: np.array(v) for c, v in GOQA[0][2].items()}
    h1 = {c: np.array(v) for c, v in GOQA[1][2].items()}
    expect = np.mean([1 - jensenshannon(h0["United States"], np.eye(4)[0]), 1 - jensenshannon(h0["China"], np.eye(4)[1]),
                      1 - jensenshannon(h1["United States"], np.eye(2)[0]), 1 - jensenshannon(h1["China"], np.eye(2)[1])])
    assert s.loc["mark", "one_minus_jsd"] == pytest.approx(expect)
    assert np.isnan(s.loc["mark", "accuracy"]) and s.loc["mark", "not_computable"]


def test_mark_aggregate_settings_errors(tmp_path):
    en, _ = write_cao(tmp_path)
    with pytest.raises(ValueLensError, match="reference 'sampled' needs respondents"):
        audit(tmp_path, f"  mark:\n    data: {{kind: cao2025, path: {en}}}\n    questions: [Q165]\n"
                        "    reference: sampled\n")
    with pytest.raises(ValueLensError, match="unknown persona field 'height'"):
        audit(tmp_path, f"  mark:\n    data: {{kind: cao2025, path: {en}}}\n    questions: [Q165]\n"
                        "    marginals: {default: {height: {tall: 1}}}\n")
    with pytest.raises(ValueLensError, match="marginals apply only to country-level data"):
        audit(tmp_path, "  mark:\n    data: {path: x.csv, codebook: c.json}\n    questions: [Q1]\n"
                        "    marginals: {default: {sex: {male: 1}}}\n")
    with pytest.raises(ValueLensError, match="takes no codebook"):
        audit(tmp_path, f"  mark:\n    data: {{kind: cao2025, path: {en}, codebook: c.json}}\n    questions: [Q1]\n")
    a = audit(tmp_path, f"  mark:\n    data: {{kind: cao2025, path: {en}}}\n    questions: [Q999]\n", "[en]")
    with pytest.raises(ValueLensError, match="question Q999 is not in"):
        mark_layer.check(a.layers.mark, a.layer_context(tmp_path / "out", NullTracker()))
    a = audit(tmp_path, f"  mark:\n    data: {{kind: cao2025, path: {en}}}\n    questions: [Q165]\n")
    with pytest.raises(ValueLensError, match="no text in zh"):  # English file only, zh asked
        mark_layer.check(a.layers.mark, a.layer_context(tmp_path / "out", NullTracker()))


def test_mark_from_marginals_through_the_audit_and_report(tmp_path):
    """The whole audit (config → run → export → report) on a scripted backend: personas from marginals have
    only sex and an age group, so fixed stage replies are valid; the report shows "not computable"."""
    import valuelens.api as vl
    from valuelens.report import build_report

    en, zh = write_cao(tmp_path)
    stack = STACKS["INFJ"]
    rules = []
    for names, stress, typ, impact, reason, explain in (
            (("sex", "age group"), "Rate how much stress", "Predict this person's MBTI type", "For each function, decide",
             "Simulate how this survey respondent", "Explain in one or two sentences"),
            (("性别", "年龄段"), "压力打分", "预测这个人的 MBTI 类型", "请判断这个人的压力对每个功能的影响", "请模拟这位调查受访者",
             "请用一两句话")):
        rules += [{"contains": stress, "text": json.dumps({"scores": dict(zip(names, (20, 60))), "stress_level": "low",
                                                           "summary": "s"}, ensure_ascii=False)},
                  {"contains": typ, "text": json.dumps({"mbti": "INFJ", "reason": "r"})},
                  {"contains": impact, "text": json.dumps({"impacts": {f: "negative" for f in stack}, "reason": "r"})},
                  {"contains": reason, "text": json.dumps({"choices": [{"function": f, "option": 1, "reason": "r"}
                                                                       for f in stack]})},
                  {"contains": explain, "text": json.dumps({"explanation": "e"})}]
    (tmp_path / "script.json").write_text(json.dumps({"rules": rules, "default_text": "Answer: 2"}, ensure_ascii=False),
                                          encoding="utf-8")
    a = parse_audit(f"""\
name: agg-report
output_dir: {tmp_path / 'out'}
models: [{{name: m, backend: "scripted:{tmp_path / 'script.json'}"}}]
layers:
  mark:
    data: {{kind: cao2025, path: {en}, path_zh: {zh}}}
    questions: [Q165, Q173]
    respondents_per_country: 2
    max_retries: 0
    bootstrap: 200
""", "a.yaml")
    tables = vl.run(a)
    s = tables["mark_summary"]
    assert (s[s.method == "mark"]["invalid_share"] == 0).all() and s["accuracy"].isna().all()
    assert (tmp_path / "out" / "results" / "mark_notes.csv").is_file()
    from valuelens.layers.samples import unjoined

    assert unjoined(tables["samples"], tables) == ([], [])  # every call joins its row, every row has its calls
    html = build_report(tmp_path / "out").read_text(encoding="utf-8")
    assert html.count("not computable") >= 8 and "Not computable here: Cohen" in html
