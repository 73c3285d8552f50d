"""Survey loaders: Cao et al. 2025 JSON, GlobalOpinionQA CSV, WVS-7 codebook + microdata, load_survey.

Real reference data is read from ../shared/data through the loaders (skipped when absent);
every other fixture here is written by the tests themselves.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthetic_wvs import CELLS, generate, write_csv
from valuelens.data.cao2025 import load_cao2025
from valuelens.data.global_opinions import load_global_opinions
from valuelens.data.sources import load_survey
from valuelens.data.wvs import COUNTRIES, distributions, load_codebook, load_microdata, respondents_to_survey
from valuelens.errors import ValueLensError

# ---------------------------------------------------------------- helpers and tiny fixtures (ours)

EN = "How would someone from {} answer the following question:\n\n"
ZH = "来自{}的人会如何回答以下问题：\n\n"


def cao_item(qid="900", country="United States", dist=None, options=("Yes", "No"), zh=False):
    labels = "ABCDEFGHIJ"[: len(options)]
    return {"id": qid, "instruction": (ZH if zh else EN).format(country),
            "input": ("你同意吗？ \n以下是选项：\n" if zh else "Do you agree? \nHere are the options: \n"),
            "options": [f"({letter}){o}" for letter, o in zip(labels, options)],
            "options_dist": dist if dist is not None else {letter: 100 / len(options) for letter in labels},
            "data_type": "valid"}


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


GOQA_HEADER = ["question", "selections", "options", "source"]
GOQA_ROWS = [
    ["Do you think it is more important for a government to keep order or protect freedoms?",
     "defaultdict(<class 'list'>, {'Belgium': [0.41, 0.59], 'Côte d’Ivoire': [0.7, 0.3]})",
     "['Keep order', 'Protect freedoms']", "GAS"],
    ["How important is religion in your life?",
     "defaultdict(<class 'list'>, {'Türkiye': [0.5, 0.3, 0.15, 0.05], \"Cote d'Ivoire\": [0.25, 0.25, 0.25, 0.2499]})",
     "['Very important', 'Somewhat important', 'Not too important', \"Not at all important\"]", "GAS"],
    ["Is it acceptable to eat meat?", "defaultdict(<class 'list'>, {'Japan': [0.3, 0.3, 0.38]})",
     "['Yes', 'No', \"It depends / Don't know\"]", "WVS"],
    ["On a scale from 0 to 10, how satisfied are you?", "{'Japan': [" + ", ".join(["0.0909"] * 11) + "]}",
     str([str(i) for i in range(11)]), "WVS"],
]


def write_goqa(path: Path, rows, header=GOQA_HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


TINY_CODEBOOK = {
    "Q1": {"question": "Important in life: Family", "question_instruction": "", "type": "multiple_choice",
           "choices": {"1": "Very important", "2": "Rather important", "3": "Not very important",
                       "4": "Not at all important", "-1": "Don't know", "-2": "No answer"}},
    "Q2": {"question": "Trust: most people", "question_instruction": "", "type": "multiple_choice",
           "choices": {"2": "Need to be very careful", "1": "Most people can be trusted", "-1": "Don't know"}},
    "Q260": {"question": "Sex", "question_instruction": "", "type": "multiple_choice",
             "choices": {"1": "Male", "2": "Female", "-2": "No answer"}},
    "Q262": {"question": "Age", "question_instruction": "years", "type": "objective", "choices": {"-1": "Don't know"}},
}
TINY_META = {"Q1": {"question": "How important is family in your life?", "category": "Social Values",
                    "answer_data_type": "ordinal"},
             "Q2": {"question": "Can most people be trusted?", "category": "Social Capital",
                    "answer_data_type": "non_ordinal"}}
TINY_CSV = """B_COUNTRY,Q1,Q2,Q260,Q262,W_WEIGHT
840,1,1,1,25,1.0
840,2,2,2,35,3.0
840,1,-1,2,60,1.0
840,-2,1,1,-1,2.0
156,4,2,1,70,1.0
156,3,1,2,18,1.0
"""


@pytest.fixture
def tiny(tmp_path):
    cb = write(tmp_path / "codebook.json", TINY_CODEBOOK)
    meta = write(tmp_path / "meta.json", TINY_META)
    data = tmp_path / "wvs.csv"
    data.write_text(TINY_CSV, encoding="utf-8")
    return cb, meta, data


def one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(err.value)
    assert isinstance(err.value, ValueLensError) and "\n" not in msg and "Traceback" not in msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def close(a, b, tol=1e-12):
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- Cao et al. 2025

def test_cao2025_real_data(shared_data):
    d = shared_data / "wvs_cao2025"
    s = load_cao2025(d / "sft_wvs_valid.json", d / "sft_wvs_zh_valid.json")
    assert s.source == "cao2025"
    assert len(s.distributions) == 1586 and len(s.countries()) == 46 and len(s.questions) == 35
    assert all(abs(math.fsum(x.probs) - 1) <= 1e-9 and min(x.probs) >= 0 for x in s.distributions)
    assert {"United States", "China"} <= set(s.countries())
    assert all(q.text.get("zh") and len(q.options["zh"]) == len(q.options["en"]) for q in s.questions.values())
    assert any("percent (sums ≈ 100)" in n for n in s.notes)
    q = s.questions["164"]
    assert q.options["en"][0] == "Not at all important" and not q.text["en"].endswith("options:")
    assert len(s.lookup("164", "China").probs) == 10


def test_cao2025_fractions_options_and_zh(tmp_path):
    en = write(tmp_path / "en.json", [
        cao_item(dist={"A": 0.25, "B": 0.7501}),
        cao_item(country="China", dist={"A": 0.5, "B": 0.5}),
        cao_item(country="Germany", options=("Yes!", "No"), dist={"A": 0.5, "B": 0.5}),
        cao_item(country="Japan", options=("Yes", "No", "Maybe"), dist={"A": 0.4, "B": 0.4, "C": 0.2}),
        cao_item(qid=901, country="China", options=("a", "b", "c"), dist={"C": 1, "A": 0, "B": 0}),
    ])
    zh = write(tmp_path / "zh.json", [cao_item(dist={"A": 25, "B": 75}, options=("是", "否"), zh=True),
                                      cao_item(country="Narnia", zh=True)])
    s = load_cao2025(en, zh)
    assert any("fractions (sums ≈ 1)" in n for n in s.notes)
    assert any("Germany" in n and "kept the first" in n for n in s.notes)
    assert any("Japan" in n and "dropped" in n for n in s.notes)
    assert any("no English counterpart" in n for n in s.notes)
    assert s.questions["900"].options == {"en": ("Yes", "No"), "zh": ("是", "否")}
    assert s.questions["900"].text == {"en": "Do you agree?", "zh": "你同意吗？"}
    assert "zh" not in s.questions["901"].text
    assert s.lookup("901", "China").probs == (0.0, 0.0, 1.0)
    assert close(s.lookup("900", "United States").probs, (0.25 / 1.0001, 0.7501 / 1.0001))
    assert s.lookup("900", "Japan") is None and len(s.distributions) == 4


CAO_BAD = [  # (content, substrings the message must contain besides the file name)
    (b"[{\"id\": ", ["invalid JSON at line 1"]),
    (b"\xff\xfe[]", ["not UTF-8"]),
    ({"items": []}, ["non-empty JSON list"]),
    ([cao_item(), {k: v for k, v in cao_item(country="China").items() if k != "options_dist"}],
     ["item 1", "missing field 'options_dist'"]),
    ([{**cao_item(), "options": []}], ["item 0", "United States", "'options'", "non-empty"]),
    ([cao_item(dist={"A": 50, "C": 50})], ["item 0", "'options_dist'", "do not match"]),
    ([cao_item(dist={"A": 110, "B": -10})], ["item 0", "options_dist", "negative"]),
    ([cao_item(), cao_item(country="China", dist={"A": 50, "B": 40})], ["item 1", "China", "sum to 90"]),
    ([{**cao_item(), "instruction": "Answer this:"}], ["item 0", "'instruction'", "no country"]),
    ([cao_item(), cao_item(country="China", dist={"A": 0.5, "B": 0.5})], ["item 1", "percent"]),
    ([{**cao_item(), "options": ["Yes", "(B)No"]}], ["item 0", "'options'[0]", "(A)text"]),
    ([cao_item(), cao_item()], ["item 1", "duplicate of item 0"]),
    ([cao_item(dist={"A": "50", "B": 50})], ["options_dist", "finite number"]),
]


@pytest.mark.parametrize("content,parts", CAO_BAD, ids=[f"cao{i}" for i in range(len(CAO_BAD))])
def test_cao2025_malformed(tmp_path, content, parts):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(ValueLensError) as err:
        load_cao2025(path, strict=True)
    one_line(err, str(path), *parts)


def test_cao2025_off_scale_items_are_skipped_unless_strict(tmp_path):
    """The two sum errors of CAO_BAD (a sum of 90 and a fractions item in a percent
    file) skip that item by default; the file's other items load."""
    for bad in (cao_item(country="China", dist={"A": 50, "B": 40}), cao_item(country="China", dist={"A": 0.5, "B": 0.5})):
        s = load_cao2025(write(tmp_path / "f.json", [cao_item(), bad]))
        assert [d.country for d in s.distributions] == ["United States"]
        assert [(x["item"], x["country"]) for x in s.skipped] == [(1, "China")]
        assert "this file holds percent" in s.skipped[0]["reason"]


def test_cao2025_zh_mismatch_and_missing_file(tmp_path):
    en = write(tmp_path / "en.json", [cao_item()])
    zh = write(tmp_path / "zh.json", [cao_item(options=("是", "否", "不知道"), dist={"A": 50, "B": 50, "C": 0}, zh=True)])
    with pytest.raises(ValueLensError) as err:
        load_cao2025(en, zh)
    one_line(err, str(zh), "item 0", "3 options")
    with pytest.raises(ValueLensError) as err:
        load_cao2025(tmp_path / "nope.json")
    one_line(err, "nope.json", "not found")
    with pytest.raises(ValueLensError) as err:
        load_cao2025(tmp_path)
    one_line(err, str(tmp_path), "is a directory")


# ---------------------------------------------------------------- GlobalOpinionQA

def test_global_opinions_csv(tmp_path):
    s = load_global_opinions(write_goqa(tmp_path / "goqa.csv", GOQA_ROWS))
    assert s.source == "global_opinions" and set(s.questions) == {"goqa-0", "goqa-1", "goqa-2"}
    q = s.questions["goqa-1"]
    assert q.options["en"][-1] == "Not at all important" and q.extra["survey"] == "GAS" and not q.ordinal
    assert s.questions["goqa-2"].options["en"][2] == "It depends / Don't know"
    assert {"Belgium", "Côte d’Ivoire", "Türkiye", "Cote d'Ivoire", "Japan"} == set(s.countries())
    assert s.lookup("goqa-0", "Belgium").probs == (0.41, 0.59)
    assert all(abs(math.fsum(d.probs) - 1) <= 1e-12 for d in s.distributions)
    assert close(s.lookup("goqa-2", "Japan").probs, (0.3 / 0.98, 0.3 / 0.98, 0.38 / 0.98))
    assert any("renormalised" in n and "goqa-2/Japan" in n for n in s.notes)
    assert not any("goqa-1/" in n for n in s.notes)  # 0.9999 is within 1e-3: divided, not noted
    assert any("more than 10 options skipped" in n for n in s.notes)


GOQA_BAD = [  # (rows, header, substrings)
    ([GOQA_ROWS[0]], ["question", "choices", "options", "source"], ["header lacks column(s) selections"]),
    ([GOQA_ROWS[0], ["Q?", "defaultdict(<class 'list'>, {'X': [0.5, 0.5]", "['a', 'b']", "GAS"]], None,
     ["line 3 (goqa-1)", "'selections'", "not a Python dict literal"]),
    ([["Q?", "defaultdict(<class 'list'>, {'Peru': [0.5, 0.3, 0.2]})", "['a', 'b']", "GAS"]], None,
     ["goqa-0", "'Peru'", "3 values for 2 options"]),
    ([GOQA_ROWS[0], GOQA_ROWS[1], ["Q?", "defaultdict(<class 'list'>, {'Perú': [0.5, 0.4]})", "['a', 'b']", "GAS"]],
     None, ["line 4 (goqa-2)", "'Perú'", "sum to 0.9"]),
    ([["Q?", "{'X': []}", "[]", "GAS"]], None, ["goqa-0", "'options'", "empty list"]),
    ([["Q?", "{'X': [1.2, -0.2]}", "['a', 'b']", "GAS"]], None, ["goqa-0", "'X'", "negative"]),
    ([["Q?", "__import__('os').system('touch PWNED')", "['a', 'b']", "GAS"]], None,
     ["goqa-0", "'selections'", "not a Python dict literal"]),
    ([["Q?", "{'X': [0.5, 0.5]}", "'a', 'b'", "GAS"]], None, ["goqa-0", "'options'", "expected a list, got tuple"]),
    ([["", "{'X': [0.5, 0.5]}", "['a', 'b']", "GAS"]], None, ["goqa-0", "missing field 'question'"]),
    ([["Q?", "{'X': [0.5, 0.5]}", "['a', 'b']", "GAS", "extra"]], None, ["line 2", "more fields than the header"]),
]


@pytest.mark.parametrize("rows,header,parts", GOQA_BAD, ids=[f"goqa{i}" for i in range(len(GOQA_BAD))])
def test_global_opinions_malformed(tmp_path, monkeypatch, rows, header, parts):
    monkeypatch.chdir(tmp_path)
    path = write_goqa(tmp_path / "bad.csv", rows, header or GOQA_HEADER)
    with pytest.raises(ValueLensError) as err:
        load_global_opinions(path)
    one_line(err, str(path), *parts)
    assert not (tmp_path / "PWNED").exists()


def test_global_opinions_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,selections,options,source\nQ?,\"{'Perú': [1.0, 0.0]}\",\"['a','b']\",GAS\n".encode("latin-1"))
    with pytest.raises(ValueLensError) as err:
        load_global_opinions(path)
    one_line(err, str(path), "not UTF-8")


def test_global_opinions_without_path_offline(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ValueLensError) as err:
        load_global_opinions()
    one_line(err, "'datasets' library is not installed", "download the CSV", "pass its path")

    def unreachable(*a, **k):
        raise ConnectionError("Couldn't reach 'Anthropic/llm_global_opinions' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    with pytest.raises(ValueLensError) as err:
        load_global_opinions()
    one_line(err, "could not be loaded", "ConnectionError", "download the CSV")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueLensError) as err:
        load_global_opinions()
    one_line(err, "offline", "download the CSV")


def test_global_opinions_from_hub_rows(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    rows = [dict(zip(GOQA_HEADER, r)) for r in GOQA_ROWS[:2]]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda name, split: rows))
    s = load_global_opinions()
    assert set(s.questions) == {"goqa-0", "goqa-1"} and "Türkiye" in s.countries()


# ---------------------------------------------------------------- fuzz: only ValueLensError escapes

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)
_cao_items = st.fixed_dictionaries({
    "id": st.sampled_from(["164", "165", 7, True, ""]) | _json_values,
    "instruction": st.sampled_from([EN.format("China"), ZH.format("Peru"), EN.format(""), "x"]) | _json_values,
    "input": st.sampled_from(["Q? \nHere are the options: \n", "Here are the options:", "问？以下是选项："]) | _json_values,
    "options": st.lists(st.sampled_from(["(A)Yes", "(B)No", "(C)Maybe", "(A)", "B"]) | _json_values, max_size=4),
    "options_dist": st.dictionaries(st.sampled_from("ABCD"),
                                    st.floats(allow_nan=True) | st.integers(-5, 200) | st.integers() | _json_values, max_size=4),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.lists(_cao_items, max_size=4).map(
    lambda x: json.dumps(x, allow_nan=True).encode()) | _json_values.map(lambda x: json.dumps(x).encode()))
def test_fuzz_cao2025(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        s = load_cao2025(path, path)
    except ValueLensError as e:
        assert "\n" not in str(e)
    else:
        assert all(abs(math.fsum(d.probs) - 1) <= 1e-9 for d in s.distributions)


_goqa_field = (st.text(max_size=40) | st.sampled_from(GOQA_ROWS[1] + GOQA_ROWS[2])
               | st.text(max_size=30).map(lambda t: "defaultdict(<class 'list'>, " + t + ")")
               | st.builds(lambda c, v: repr({c: v}), st.text(max_size=6), st.lists(st.floats(allow_nan=True) | st.integers(), max_size=4)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.lists(st.lists(_goqa_field, min_size=3, max_size=5), max_size=4).map(
    lambda rows: ["question,selections,options,source"] + rows))
def test_fuzz_global_opinions(tmp_path, data):
    path = tmp_path / "fuzz.csv"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write(data[0] + "\n")
            csv.writer(f).writerows(data[1:])
    try:
        s = load_global_opinions(path)
    except ValueLensError as e:
        assert "\n" not in str(e)
    else:
        assert all(abs(math.fsum(d.probs) - 1) <= 1e-9 for d in s.distributions)


# ---------------------------------------------------------------- WVS-7 codebook and microdata

_codebook_entries = st.dictionaries(
    st.sampled_from(["Q1", "Q2", "Q260", "B_COUNTRY"]) | st.text(max_size=4),
    st.fixed_dictionaries({"type": st.sampled_from(["multiple_choice", "objective"]) | _json_values,
                           "choices": st.dictionaries(st.sampled_from(["1", "2", "3", "-1", "x", "0"]) | st.text(max_size=3),
                                                      st.text(max_size=8) | _json_values, max_size=5) | _json_values,
                           "question": _json_values}) | _json_values, max_size=4)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(book=_codebook_entries | _json_values, adjust=st.dictionaries(st.sampled_from(["Q1", "Q2"]), _json_values, max_size=2))
def test_fuzz_codebook(tmp_path, book, adjust):
    cb, adj = write(tmp_path / "cb.json", book), write(tmp_path / "adj.json", adjust)
    try:
        load_codebook(cb, cb, adj)
    except ValueLensError as e:
        assert "\n" not in str(e)


def test_wvs_tiny_exact(tiny):
    cb_path, meta, data = tiny
    cb = load_codebook(cb_path, meta)
    assert cb["Q2"].options["en"] == ("Most people can be trusted", "Need to be very careful")
    assert cb["Q2"].extra["codes"] == (1, 2) and not cb["Q2"].ordinal and cb["Q1"].ordinal
    assert cb["Q1"].text["en"] == "How important is family in your life?" and cb["Q1"].dimension == "Social Values"
    assert "Q262" not in cb
    df = load_microdata(data, cb)
    assert list(df.columns[:5]) == ["country", "sex", "age", "age_group", "weight"] and {"Q1", "Q2"} <= set(df)
    assert df["age_group"].tolist()[:3] == ["<=29", "30-49", "50+"] and pd.isna(df["age_group"][3])
    by_c = {(d.question_id, d.country): d for d in distributions(df, cb)}
    assert close(by_c["Q1", "United States"].probs, (0.4, 0.6, 0, 0)) and by_c["Q1", "United States"].n == 3
    assert close(by_c["Q2", "United States"].probs, (0.5, 0.5)) and by_c["Q2", "United States"].n == 3
    assert close(by_c["Q1", "China"].probs, (0, 0, 0.5, 0.5))
    unw = {(d.question_id, d.country): d for d in distributions(df, cb, weighted=False)}
    assert close(unw["Q1", "United States"].probs, (2 / 3, 1 / 3, 0, 0))
    cells = {(d.question_id, d.country, d.group): d for d in distributions(df, cb, ("country", "sex", "age_group"))}
    assert cells["Q1", "United States", "sex=female;age=30-49"].probs == (0.0, 1.0, 0.0, 0.0)
    assert cells["Q1", "United States", "sex=male;age=<=29"].n == 1
    assert ("Q2", "United States", "sex=male;age=50+") not in cells  # row 4 has no age
    sexes = {d.group for d in distributions(df, cb, ("country", "sex"))}
    assert sexes == {"sex=male", "sex=female"}
    only = load_microdata(data, cb, questions=["Q2"], countries=["CHN"])
    assert set(only["country"]) == {"China"} and "Q1" not in only


def test_wvs_alpha_codes_and_semicolons(tiny, tmp_path):
    cb_path, meta, _ = tiny
    cb = load_codebook(cb_path, meta)
    text = TINY_CSV.replace("B_COUNTRY", "B_COUNTRY_ALPHA").replace("840", "usa").replace("156", "CHN").replace(",", ";")
    (tmp_path / "alpha.csv").write_text(text, encoding="utf-8")
    by_c = {(d.question_id, d.country): d for d in distributions(load_microdata(tmp_path / "alpha.csv", cb), cb)}
    assert close(by_c["Q1", "United States"].probs, (0.4, 0.6, 0, 0))


WVS_BAD = [  # (csv text, substrings)
    (TINY_CSV.replace("840,2,2,2,35", "840,7,2,2,35"), ["row 2 (line 3)", "column Q1", "code 7 is not in the codebook"]),
    (TINY_CSV.replace("156,4,2", "999,4,2"), ["row 5 (line 6)", "column B_COUNTRY", "unknown country code 999"]),
    (TINY_CSV.replace("156,3,1", "156,three,1"), ["row 6 (line 7)", "column Q1", "'three' is not a number"]),
    (TINY_CSV.replace("B_COUNTRY", "COUNTRY"), ["no B_COUNTRY"]),
    (TINY_CSV.replace("25,1.0", "25,-1.0"), ["row 1 (line 2)", "column W_WEIGHT", ">= 0"]),
    (TINY_CSV.replace("840,2,2,2,35", "840,2,2,3,35"), ["row 2 (line 3)", "column Q260", "not 1 or 2"]),
    ("", ["invalid CSV"]),
]


@pytest.mark.parametrize("text,parts", WVS_BAD, ids=[f"wvs{i}" for i in range(len(WVS_BAD))])
def test_wvs_malformed(tiny, tmp_path, text, parts):
    cb = load_codebook(tiny[0])
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueLensError) as err:
        load_microdata(path, cb)
    one_line(err, str(path), *parts)


def test_wvs_malformed_codebook_and_requests(tiny, tmp_path):
    cb_path, _, data = tiny
    cb = load_codebook(cb_path)
    with pytest.raises(ValueLensError) as err:
        load_microdata(data, cb, questions=["Q3"])
    one_line(err, str(data), "Q3", "not a usable codebook question")
    bad = tmp_path / "cb.json"
    bad.write_text('{"Q1": {"question": "x", "choices": ', encoding="utf-8")
    with pytest.raises(ValueLensError) as err:
        load_codebook(bad)
    one_line(err, str(bad), "invalid JSON")
    write(bad, {"Q1": {"question": "x", "type": "multiple_choice", "choices": ["1", "2"]}})
    with pytest.raises(ValueLensError) as err:
        load_codebook(bad)
    one_line(err, str(bad), "Q1", "'choices'")
    with pytest.raises(ValueLensError) as err:
        load_microdata(data, cb, countries=["Atlantis"])
    one_line(err, "Atlantis", "unknown country")


def test_wvs_synthetic_recovers_truth(tmp_path, shared_data):
    d = shared_data / "wvs_codebook"
    cb = load_codebook(d / "codebook.json", d / "question_metadata.json", d / "answer_adjustment.json")
    questions = ["Q1", "Q46", "Q56", "Q164", "Q241"]
    frame, truth = generate(cb, questions, [840, 156], n_per_country=3000, seed=7)
    path = write_csv(frame, tmp_path / "synthetic.csv")
    survey = respondents_to_survey(path, d / "codebook.json", d / "question_metadata.json",
                                   adjustments_path=d / "answer_adjustment.json")
    df = load_microdata(path, cb)
    assert set(survey.questions) == set(questions) and survey.countries() == ["China", "United States"]
    assert any("lack sex or age" in n for n in survey.notes) and any("weighted by W_WEIGHT" in n for n in survey.notes)
    zs, better = [], 0
    code = {"United States": 840, "China": 156}
    for dist in survey.distributions:
        c = code[dist.country]
        mask = (df["country"] == dist.country) & df[dist.question_id].notna()
        if dist.group:
            sex, age = (part.split("=", 1)[1] for part in dist.group.split(";"))
            mask &= (df["sex"] == sex) & (df["age_group"] == age)
            p = truth.cell(c, sex, age, dist.question_id)
        else:
            p = truth.country(c, dist.question_id)
            unweighted = truth.country(c, dist.question_id, weighted=False)
            better += np.abs(np.array(dist.probs) - p).sum() < np.abs(np.array(dist.probs) - unweighted).sum()
        w = df.loc[mask, "weight"]
        assert dist.n == int(mask.sum())
        n_eff = w.sum() ** 2 / (w ** 2).sum()
        se = np.sqrt(np.clip(p * (1 - p), 1e-12, None) / n_eff)
        zs.extend(((np.array(dist.probs) - p) / se)[p > 0.01])
    zs = np.abs(np.array(zs))
    assert len(survey.distributions) == 2 * 5 * (1 + len(CELLS))
    assert zs.max() < 4.5 and 0.5 < zs.mean() < 1.1, (zs.max(), zs.mean())
    assert better >= 8  # weighting matters and is applied
    # recode from the answer-adjustment file: raw code 0 on Q241 counts as option code 1
    assert cb["Q241"].extra["recode"][0] == 1 and len(cb["Q241"].options["en"]) == 10


def test_wvs_codebook_real(shared_data):
    d = shared_data / "wvs_codebook"
    cb = load_codebook(d / "codebook.json", d / "question_metadata.json")
    q = cb["Q164"]
    assert q.extra["codes"] == tuple(range(1, 11)) and q.options["en"][-1] == "Very important"
    assert q.ordinal and q.dimension == "Religious Values" and q.source == "wvs7"
    assert cb["Q15"].options["en"] == ("Important", "Not mentioned")
    assert "Q241" not in cb  # 11 codes: usable only with the answer-adjustment file
    raw = json.loads((d / "codebook.json").read_text(encoding="utf-8"))["B_COUNTRY"]["choices"]
    assert all(COUNTRIES[int(k)] == v for k, v in raw.items())  # our table covers every WVS-7 country code


# ---------------------------------------------------------------- load_survey

def test_load_survey_dispatch(tiny, tmp_path, shared_data):
    s = load_survey("builtin")
    assert s.source == "builtin" and s.questions and not s.distributions
    g = load_survey("global_opinions", write_goqa(tmp_path / "g.csv", GOQA_ROWS[:1]))
    assert set(g.questions) == {"goqa-0"}
    cb, meta, data = tiny
    w = load_survey("wvs7", data, codebook=cb, metadata=meta, demographics=False)
    assert w.source == "wvs7" and all(d.group == "" for d in w.distributions) and len(w.distributions) == 4
    c = load_survey("cao2025", shared_data / "wvs_cao2025" / "sft_wvs_valid.json")
    assert len(c.questions) == 35 and all(set(q.text) == {"en"} for q in c.questions.values())
    for args, kw, part in [(("nope", "x"), {}, "unknown survey kind 'nope'"),
                           (("wvs7", data), {}, "codebook="),
                           (("wvs7", data), {"codebook": cb, "colour": 1}, "unexpected option(s) colour"),
                           (("global_opinions", "x.csv", "zh.json"), {}, "path_zh applies only")]:
        with pytest.raises(ValueLensError) as err:
            load_survey(*args, **kw)
        one_line(err, part)
