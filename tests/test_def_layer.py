"""DEF layer: synthetic WVS-7 microdata (bias recovers the planted groups), FF/CV
hand counts on scripted answers, KL columns by hand, participants, memory,
the cultural map, settings errors and resume from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.data.wvs import distributions, load_codebook, load_microdata
from valuelens.errors import ValueLensError
from valuelens.layers.def_layer import bias
from valuelens.layers.def_layer.cultural_map import HUMAN, cultural_map, pca2
from valuelens.layers.def_layer.insensitivity import contradicts
from valuelens.layers.def_layer.tables import add_kl_def

from synthetic_wvs import CELLS, generate, write_csv

SCALE10 = {"1": "Never justifiable", **{str(i): str(i) for i in range(2, 10)}, "10": "Always justifiable"}
MISSING = {"-1": "Don't know", "-2": "No answer"}
IMPORTANCE = {"1": "Very important", "2": "Rather important", "3": "Not very important", "4": "Not at all important"}
CODEBOOK = {
    "Q1": ("Important in life: Family", IMPORTANCE),
    "Q2": ("Important in life: Friends", IMPORTANCE),
    "Q27": ("One of my main goals in life has been to make my parents proud",
            {"1": "Strongly agree", "2": "Agree", "3": "Disagree", "4": "Strongly disagree"}),
    "Q91": ("Which of these countries is not a permanent member of the UN Security Council?",
            {"1": "France", "2": "China", "3": "India"}),
    "Q92": ("Where are the headquarters of the International Monetary Fund (IMF)?",
            {"1": "Washington DC", "2": "London", "3": "Geneva"}),
    "Q93": ("Which problems does Amnesty International deal with?",
            {"1": "Climate change", "2": "Human rights", "3": "Destruction of historic monuments"}),
    "Q177": ("Justifiable: Claiming government benefits to which you are not entitled", SCALE10),
    "Q178": ("Justifiable: Avoiding a fare on public transport", SCALE10),
    "Q260": ("Sex", {"1": "Male", "2": "Female"}),
}
QUESTIONS = ["Q1", "Q2", "Q27", "Q91", "Q92", "Q93", "Q177", "Q178"]
METADATA = {"Q1": "Social Values", "Q2": "Social Values", "Q27": "Social Values", "Q177": "Ethical Values",
            "Q178": "Ethical Values"}


def write_codebook(d: Path) -> tuple[Path, Path]:
    cb = {q: {"question": text, "question_instruction": "", "type": "multiple_choice", "choices": {**c, **MISSING}}
          for q, (text, c) in CODEBOOK.items()}
    meta = {q: {"question": CODEBOOK[q][0], "category": cat, "answer_data_type": "ordinal"} for q, cat in METADATA.items()}
    (d / "codebook.json").write_text(json.dumps(cb))
    (d / "meta.json").write_text(json.dumps(meta))
    return d / "codebook.json", d / "meta.json"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("wvs")
    cb_path, meta = write_codebook(d)
    codebook = load_codebook(cb_path, meta)
    df, truth = generate(codebook, QUESTIONS, [840, 156], 6000, seed=3, concentration=0.5)
    return {"dir": d, "codebook": cb_path, "meta": meta, "csv": write_csv(df, d / "wvs.csv"), "truth": truth,
            "book": codebook}


def test_bias_recovers_planted_groups(synthetic):
    book, truth = synthetic["book"], synthetic["truth"]
    resp = load_microdata(synthetic["csv"], book)
    cells = distributions(resp, book, ("country", "sex", "age_group"))
    groups = bias.human_groups(cells, distributions(resp, book, ("country",)), {q: q for q in QUESTIONS})
    checked = 0
    for (code, country) in ((840, "United States"), (156, "China")):
        for q in QUESTIONS:
            shares = np.array([truth.cell(code, s, a, q) for s, a in CELLS])  # cells x options
            for j in range(shares.shape[1]):
                order = np.argsort(shares[:, j])[::-1]
                if shares[order[0], j] - shares[order[1], j] < 0.08:
                    continue  # too close for 6000 respondents
                s, a = CELLS[order[0]]
                row = groups[(groups.country == country) & (groups.question_id == q) & (groups.option_index == j)].iloc[0]
                assert (row["group"], row["sex"], row["age_group"], row["tie"]) == (f"{s}/{a}", s, a, False)
                checked += 1
            pop = truth.country(code, q)
            top2 = np.sort(pop)[-2:]
            if top2[1] - top2[0] > 0.05:
                maj = groups[(groups.country == country) & (groups.question_id == q) & groups.majority]
                assert maj["option_index"].tolist() == [int(np.argmax(pop))]
    assert checked >= 40


def test_ties_stay_explicit():
    cells = {"sex=male;age=<=29": [0.5, 0.5], "sex=female;age=<=29": [0.5, 0.3], "sex=female;age=50+": [0.2, 0.5]}
    assert bias.top_groups(cells) == [["sex=female;age=<=29", "sex=male;age=<=29"],
                                      ["sex=female;age=50+", "sex=male;age=<=29"]]
    assert bias.describe_groups(["sex=female;age=<=29", "sex=male;age=<=29"]) == {
        "group": "female/<=29|male/<=29", "sex": "tie", "age_group": "<=29", "tie": True}
    assert bias.describe_groups(["sex=female;age=50+", "sex=male;age=<=29"])["age_group"] == "tie"


def test_bias_match_and_mismatch_profile_by_hand():
    groups = pd.DataFrame([
        # country, question, option, group, sex, age, tie, majority
        ("C", "q1", 0, "male/<=29", "male", "<=29", False, True), ("C", "q1", 1, "female/50+", "female", "50+", False, False),
        ("C", "q2", 0, "female/<=29", "female", "<=29", False, False), ("C", "q2", 1, "female/30-49", "female", "30-49", False, True),
        ("C", "q3", 0, "male/50+|female/50+", "tie", "50+", True, True), ("C", "q3", 1, "male/50+", "male", "50+", False, False),
        ("C", "q4", 0, "male/<=29", "male", "<=29", False, True), ("C", "q4", 1, "male/50+", "male", "50+", False, False),
    ], columns=["country", "question_id", "option_index", "group", "sex", "age_group", "tie", "majority"])
    questions = pd.DataFrame({"language": "en", "country": "C", "question_id": ["q1", "q2", "q3", "q4"],
                              "dimension": ["A", "A", "B", "B"], "factual": False,
                              "model_top": ["A", "A", "B", None]})
    t = bias.bias_table(questions, groups, {q: ("A", "B") for q in ["q1", "q2", "q3", "q4"]})
    assert t["match"].tolist() == [True, False, False, None]
    prof = bias.mismatch_profile(t).set_index(["dimension", "facet", "group"])
    # missed: q2 (female, 30-49) and q3 (tie on sex, 50+); q4 has no valid model answer
    assert prof.loc[("(all)", "sex", "female"), "n_missed"] == 1 and prof.loc[("(all)", "sex", "tie"), "share"] == 0.5
    assert prof.loc[("(all)", "age_group", "30-49"), "share"] == 0.5 and prof.loc[("(all)", "age_group", "50+"), "n_missed"] == 1
    assert prof.loc[("A", "sex", "female"), "share"] == 1.0 and prof.loc[("B", "age_group", "50+"), "share"] == 1.0


def test_contradiction_rules():
    assert contradicts(2, 2, 4, "same") and not contradicts(1, 2, 4, "same")
    assert contradicts(2, 3, 10, "same_side") and contradicts(6, 10, 10, "same_side")
    assert not contradicts(5, 6, 10, "same_side") and not contradicts(1, 10, 10, "same_side")
    assert not contradicts(3, 1, 5, "same_side")  # 3 is the midpoint of a 5-point scale


def test_kl_columns_by_hand():
    q = pd.DataFrame({"kl_raw": [0.2, np.inf, 1.3, np.nan], "kl_eps": [0.2, 9.0, 1.3, np.nan],
                      "factual": [False, False, False, False]})
    out = add_kl_def(q, 0.5)
    assert out["kl_def"].tolist()[:3] == [0.2, 2.3, 1.3] and np.isnan(out["kl_def"].iloc[3])
    assert out["close"].tolist() == [True, False, False, None]


def test_pca_and_variation_preserved():
    rows = []
    for model, shift in (("copy", 1.0), ("flat", 0.0)):
        for country, base in (("US", 0.2), ("CN", 0.8)):
            for dim, w in (("IDV", 1.0), ("PDI", -0.5), ("UAI", 0.3)):
                h = 0.5 + (base - 0.5) * w
                m = 0.5 + (h - 0.5) * shift
                rows.append({"model": model, "language": "en", "country": country, "question_id": dim + country,
                             "dimension": dim, "ordinal": True, "factual": False,
                             "model_expected": m, "human_expected": h})
    values, points, var = cultural_map(pd.DataFrame(rows))
    assert set(points["model"]) == {"copy", "flat", HUMAN} and len(points) == 6
    v = var.set_index("model")
    assert v.loc["copy", "variation_preserved"] == pytest.approx(1.0)
    assert v.loc["flat", "variation_preserved"] == pytest.approx(0.0, abs=1e-9)
    assert v.loc["copy", "variation_preserved_full"] == pytest.approx(1.0)
    coords, ratio = pca2(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    assert ratio[0] == pytest.approx(1.0) and coords[2, 0] > coords[0, 0]


SCRIPT = {"rules": [  # later questions first: a prompt also holds remembered question texts (not their options)
    {"contains": "factually wrong", "text": "Yes."},  # judge prompts
    {"contains": "contradict each other", "text": "No"},
    {"contains": "Avoiding a fare", "text": "Answer: 3 Explanation: Rarely."},
    {"contains": "benefits to which", "text": "Answer: 2 Explanation: Hardly ever."},
    {"contains": "1. Climate change", "text": "As an AI language model, I cannot answer this."},
    {"contains": "1. Washington DC", "text": "Answer: London Explanation: The City is the centre of finance."},
    {"contains": "1. France", "text": "Answer: India Explanation: It has no permanent seat."},
    {"contains": "Friends", "text": "Answer: 2 Explanation: Friends matter."},
    {"contains": "Family", "text": "Answer: 1 Explanation: Family first."},
], "default_text": "Answer: 1 Explanation: Fine."}


def _audit(tmp, synthetic, extra: str = "", participants: int = 4, passes: int = 2) -> str:
    (tmp / "script.json").write_text(json.dumps(SCRIPT))
    return f"""\
name: def
output_dir: {tmp / 'out'}
languages: [en]
models:
  - {{name: s, backend: "scripted:{tmp / 'script.json'}"}}
layers:
  diversity:
    data: {{kind: wvs7, path: {synthetic['csv']}, codebook: {synthetic['codebook']}, metadata: {synthetic['meta']}}}
    participants: {participants}
    passes: {passes}
    memory_max: 0
    shuffle_options: false
    retries: 2
    insensitivity:
      cv_pairs: [{{a: Q177, b: Q178}}, {{a: Q1, b: Q2, rule: same}}]
{extra}"""


def test_ff_cv_hand_counts_and_resume(tmp_path, synthetic):
    cfg = parse_audit(_audit(tmp_path, synthetic), "a.yaml")
    first = vl.run_full(cfg)
    t = first.tables
    sessions = 2 * 4 * 2  # countries x participants x passes
    n_q = len(QUESTIONS)
    assert first.manifest["calls"]["calls_made"] == sessions * n_q + sessions * 2  # Q93 retried twice
    ins = t["def_insensitivity"].set_index("country")
    for country in ("United States", "China"):
        r = ins.loc[country]
        # per session: Q91 right, Q92 wrong, Q93 refused (invalid, not wrong)
        assert (r["ff_n"], r["ff_flagged"], r["ff_invalid"], r["ff_rate"]) == (8 * 2, 8, 8, 0.5)
        # Q177=2 and Q178=3 on the same side of 5.5: contradiction; Q1=1 vs Q2=2 under "same": none
        assert (r["cv_n"], r["cv_flagged"], r["cv_rate"]) == (16, 8, 0.5)
    a = t["def_answers"]
    q93 = a[a.question_id == "Q93"]
    assert sorted(q93.groupby(["participant", "pass"]).size().unique()) == [3]
    assert q93.sample_index.tolist().count(2) == sessions and not q93.valid.any()
    assert set(q93.status) == {"refusal"} and q93.final.sum() == sessions
    q = t["def_questions"]
    q1 = q[(q.question_id == "Q1") & (q.country == "China")].iloc[0]
    assert q1["model_top"] == "A" and q1["invalid_share"] == 0 and np.isfinite(q1["kl_raw"])
    assert t["def_summary"].set_index("country").loc["China", "ff_rate"] == 0.5
    assert {"def_bias", "def_bias_profile", "def_bias_groups", "def_map", "def_variation"} <= set(t)
    p = t["def_participants"]
    assert set(p.persona_source) == {"microdata"} and p.sex.isin(["male", "female"]).all()
    assert p.location.notna().all() and set(p.num_beams) <= {1, 2, 3, 4}
    again = vl.run_full(cfg)
    assert again.manifest["calls"]["calls_made"] == 0
    pd.testing.assert_frame_equal(first.tables["def_answers"], again.tables["def_answers"])


def test_memory_holds_only_valid_turns(tmp_path, synthetic):
    text = _audit(tmp_path, synthetic, participants=3, passes=1).replace("    memory_max: 0\n", "    memory_max: 6\n")
    t = vl.run(parse_audit(text, "a.yaml"))
    a = t["def_answers"]
    p = t["def_participants"].set_index("participant")
    assert (a.memory_used <= a.participant.map(p.memory_size)).all()
    assert a.memory_used.max() > 0
    assert not a.memory_ids.str.contains("Q93").any()  # refusals never enter the memory
    last = a[(a.question_id == "Q178") & a.final].set_index("participant")
    for pid, r in last.iterrows():  # 6 valid turns before Q178 (Q93 refused): min(m, 6) remembered
        assert r.memory_used == min(p.loc[pid, "memory_size"], 6)


@pytest.mark.parametrize("yaml_extra, message", [
    ("    beams: [3, 2]\n", "beams"),
    ("    temperature: [0.5, 3.0]\n", "temperature"),
    ("    nonsense: 1\n", "unknown key"),
    ("    marginals: {default: {sex: {other: 1}}}\n", "unknown value"),
    ("    insensitivity: {cv_pairs: [{a: Q1, b: Q999}]}\n", "Q999"),
    ("    insensitivity: {factual: {Q91: 7}}\n", "code 7"),
])
def test_settings_errors(tmp_path, synthetic, yaml_extra, message):
    text = _audit(tmp_path, synthetic) + yaml_extra
    text = text.replace("    insensitivity:\n      cv_pairs: [{a: Q177, b: Q178}, {a: Q1, b: Q2, rule: same}]\n", "")
    with pytest.raises(ValueLensError, match=message):
        vl.run(parse_audit(text, "a.yaml"))


def test_judge_mode(tmp_path, synthetic):
    text = _audit(tmp_path, synthetic, participants=2, passes=1) + "      judge: {}\n"
    ins = vl.run(parse_audit(text, "a.yaml"))["def_insensitivity"].set_index("country")
    # judged: the valid FF answers (Q91, Q92) -> "Yes"; the valid CV pairs -> "No"
    assert ins.loc["China", "judge_ff_rate"] == 1.0 and ins.loc["China", "judge_cv_rate"] == 0.0
    assert ins.loc["China", "ff_rate"] == 0.5


def test_participants_are_seeded_and_backend_independent():
    from valuelens.layers.def_layer.participants import draw_participants, location_table, personas_from_marginals
    from valuelens.layers.def_layer.settings import DEFSettings

    st = DEFSettings(participants=30, marginals={"China": {"sex": {"female": 1, "male": 0}}, "default": {
        "education": {"primary": 1, "tertiary": 1}}})
    locs = location_table(st)
    pers = personas_from_marginals(7, "China", 30, st)
    a = draw_participants(7, "China", st, True, pers, "marginals", locs)
    b = draw_participants(7, "China", st, False, pers, "marginals", locs)
    assert a == draw_participants(7, "China", st, True, personas_from_marginals(7, "China", 30, st), "marginals", locs)
    assert all(p.num_beams == 1 for p in b) and len({p.num_beams for p in a}) > 1
    assert [(p.location, p.temperature, p.top_p, p.memory_size) for p in a] == \
           [(p.location, p.temperature, p.top_p, p.memory_size) for p in b]
    assert {p.persona["sex"] for p in a} == {"female"} and {p.persona["education"] for p in a} == {"primary", "tertiary"}
    assert all(p.location["zh"].endswith("省") for p in a) and len(locs["United States"]) == 50 and len(locs["China"]) == 23
    assert all(0 <= p.memory_size <= 15 and 0.7 <= p.temperature <= 1.0 for p in a)


def test_bad_data_fails_before_anything_is_written(tmp_path):
    text = f"""\
output_dir: {tmp_path / 'never'}
models: [{{name: s, backend: "scripted:{tmp_path / 'x.json'}"}}]
layers:
  diversity: {{data: {{kind: cao2025, path: {tmp_path / 'missing.json'}}}}}
"""
    with pytest.raises(ValueLensError, match="missing.json"):
        vl.run(parse_audit(text, "a.yaml"))
    assert not (tmp_path / "never").exists()


def test_insensitivity_items_are_always_asked(tmp_path, synthetic):
    text = _audit(tmp_path, synthetic, participants=1, passes=1) + "    questions: [Q27]\n"
    a = vl.run(parse_audit(text, "a.yaml"))["def_answers"]
    assert list(dict.fromkeys(a.question_id)) == ["Q27", "Q91", "Q92", "Q93", "Q177", "Q178", "Q1", "Q2"]


def test_stop_early_ends_replies_after_the_first_sentence_of_the_explanation(tmp_path, synthetic):
    """stop_early (default): each reply is cut after its explanation's first sentence (the one DEF keeps), so a
    hedge written after it is not seen; stop_early: false keeps the whole reply (and its hedge)."""
    script = {"rules": [{"contains": "Family", "text": "Answer: 1 Explanation: Family first. Some people "
                                                       "disagree, others do not."}],
              "default_text": "Answer: 1 Explanation: Fine. More text here."}
    got = {}
    for stop in (True, False):
        d = tmp_path / str(stop)
        d.mkdir()
        text = _audit(d, synthetic, extra=f"    stop_early: {str(stop).lower()}\n", participants=1, passes=1)
        (d / "script.json").write_text(json.dumps(script))
        got[stop] = vl.run(parse_audit(text, "a.yaml"))["def_answers"].set_index(["country", "question_id"])
    on, off = got[True], got[False]
    q1 = on.xs("Q1", level="question_id")
    assert set(q1.reply) == {"Answer: 1 Explanation: Family first."} and q1.valid.all()
    assert set(off.xs("Q1", level="question_id").status) == {"hedge"}
    q2_on, q2_off = on.xs("Q2", level="question_id"), off.xs("Q2", level="question_id")
    assert set(q2_on.reply) == {"Answer: 1 Explanation: Fine."} and set(q2_off.reply) == {script["default_text"]}
    assert set(q2_on.explanation) == set(q2_off.explanation) == {"Fine."}
