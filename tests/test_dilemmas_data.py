"""Dilemma corpora: the built-in demo corpus, our JSONL schema, MMD, MoralChoice, settings."""

from __future__ import annotations

import csv as _csv
import json
import re
import shutil

import pytest

from valuelens.config import parse_audit
from valuelens.data.dilemmas import (
    KIDDER_PAIRS,
    MFT_VALUES,
    builtin_chains,
    builtin_dilemmas,
    load_chains,
    load_dilemmas,
    load_mmd,
    load_moralchoice,
)
from valuelens.errors import ValueLensError

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_builtin_demo_corpus():
    ds = builtin_dilemmas()
    assert len(ds) == 40 and len({d.id for d in ds}) == 40
    for pair in KIDDER_PAIRS:
        group = [d for d in ds if d.pair == pair]
        assert len(group) == 10 and {d.values for d in group} == {tuple(pair.split(" vs "))}
    for d in ds:
        assert d.languages() == {"en", "zh"} and d.has_consequences("en") and d.has_consequences("zh")
        texts = [d.situation, *d.actions, *d.negative, *d.positive]
        assert all(CJK.search(t["zh"]) and not CJK.search(t["en"]) for t in texts)
        assert d.actions[0]["en"] != d.actions[1]["en"] and d.negative[0] != d.positive[0]
    chains = builtin_chains()
    assert len(chains) >= 12 and all(len(c.steps) == 5 and c.languages() == {"en", "zh"} for c in chains)
    used = {v for c in chains for s in c.steps for v in s.values}
    assert used == set(MFT_VALUES)  # every MFT value appears
    assert all(s.values[0] != s.values[1] for c in chains for s in c.steps)


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD = {"id": "X1", "pair": "Truth vs Loyalty", "values": ["Truth", {"en": "Loyalty", "zh": "忠心"}],
        "situation": "Something happened.", "actions": ["I speak.", {"en": "I stay quiet.", "zh": "我沉默。"}]}


def test_our_jsonl_schema(tmp_path):
    p = _write(tmp_path / "d.jsonl", [GOOD, {**GOOD, "id": "X2", "consequences": {
        "negative": ["bad 1", "bad 2"], "positive": ["good 1", "good 2"]}}])
    a, b = load_dilemmas(p)
    assert a.values == ("Truth", "Loyalty") and a.value_names == {"Loyalty": {"en": "Loyalty", "zh": "忠心"}}
    assert a.situation == {"en": "Something happened."} and a.languages() == {"en"} and not a.has_consequences("en")
    assert b.has_consequences("en") and b.negative[1] == {"en": "bad 2"}


@pytest.mark.parametrize("row,message", [
    ({**GOOD, "actions": ["only one"]}, "row 1: field 'actions': expected a list of two entries"),
    ({**GOOD, "values": ["Truth", "Truth"]}, "row 1: field 'values': the two actions must serve different values"),
    ({k: v for k, v in GOOD.items() if k != "situation"}, "row 1: field 'situation': missing"),
    ({**GOOD, "situation": ""}, "row 1: field 'situation': expected a non-empty text"),
    ({**GOOD, "consequences": {"negative": ["a", "b"]}}, "row 1: field 'consequences'"),
    ({**GOOD, "consequences": {"negative": ["a", "b"], "positive": ["c", 3]}}, "field 'consequences.positive[1]'"),
    ({**GOOD, "colour": "red"}, "row 1: field 'colour': unknown field"),
])
def test_malformed_dilemma_rows(tmp_path, row, message):
    p = _write(tmp_path / "d.jsonl", [row])
    with pytest.raises(ValueLensError) as e:
        load_dilemmas(p)
    assert str(e.value).startswith(str(p)) and message in str(e.value) and "\n" not in str(e.value)


def test_file_level_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(GOOD) + "\n{broken\n")
    with pytest.raises(ValueLensError, match=r"d.jsonl line 2: invalid JSON"):
        load_dilemmas(p)
    _write(p, [GOOD, GOOD])
    with pytest.raises(ValueLensError, match=r"duplicate ids \['X1'\]"):
        load_dilemmas(p)
    with pytest.raises(ValueLensError, match="file not found"):
        load_dilemmas(tmp_path / "none.jsonl")


def _mmd_row(norm, n=2, **extra):
    row = {"norm": norm}
    for i in range(1, n + 1):
        row.update({f"step {i}_situation": f"s{i}", f"step {i}_dilemma": f"d{i}?", f"step {i}_choiceA": f"a{i}",
                    f"step {i}_choiceB": f"b{i}", f"step {i}_choiceA_value": "Care/Harm",
                    f"step {i}_choiceB_value": "authority"})
    row.update(extra)
    return row


def test_mmd_loader(tmp_path):
    p = tmp_path / "mmd.json"
    # two concatenated JSON lists (as MMD's generator appends them), "Step" capitalised in one row
    row2 = {k.replace("step", "Step"): v for k, v in _mmd_row("Be fair.", 3).items()}
    p.write_text(json.dumps([_mmd_row("Be kind.")]) + "\n" + json.dumps([row2]))
    a, b = load_mmd(p)
    assert a.source == "mmd" and a.norm == {"en": "Be kind."} and len(a.steps) == 2 and len(b.steps) == 3
    assert a.steps[1].values == ("Care", "Authority") and a.steps[0].choices[1] == {"en": "b1"}
    bad = _mmd_row("Be kind.")
    del bad["step 2_choiceB"]
    p.write_text(json.dumps([_mmd_row("x"), bad]))
    with pytest.raises(ValueLensError, match=r"mmd.json row 2: field 'step 2_choiceB': missing or empty"):
        load_mmd(p)
    p.write_text(json.dumps([_mmd_row("x", **{"step 1_choiceA_value": 7})]))
    with pytest.raises(ValueLensError, match=r"row 1: field 'step 1_choiceA_value'"):
        load_mmd(p)
    p.write_text(json.dumps([{"step 1_situation": "s"}]))
    with pytest.raises(ValueLensError, match=r"row 1: field 'norm': missing"):
        load_mmd(p)


def test_our_chain_schema_errors(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps([{"id": "c", "norm": "n", "steps": [
        {"situation": "s", "dilemma": "d", "choices": ["a", "b"], "values": ["Care", None]}]}]))
    assert load_chains(p)[0].steps[0].values == ("Care", None)
    p.write_text(json.dumps([{"id": "c", "norm": "n", "steps": [{"situation": "s", "dilemma": "d", "choices": ["a"]}]}]))
    with pytest.raises(ValueLensError, match=r"row 1: field 'steps\[0\].choices': expected a list of two"):
        load_chains(p)


def test_moralchoice_loader(shared_data, tmp_path):
    root = shared_data / "moralchoice"
    low, templates = load_moralchoice(root, "low")
    both, _ = load_moralchoice(root, "both")
    assert len(low) == 687 and len(both) == 687 + 680
    assert [s.ambiguity for s in both] == ["low"] * 687 + ["high"] * 680
    assert set(templates.questions) == {"ab", "compare", "repeat"} and len(templates.refusals) > 30
    assert templates.questions["ab"][1].count("{}") == 3 and "{optionA}" in templates.responses["repeat"]["A"]
    # a malformed copy: one empty action, named by file, row and field
    bad = tmp_path / "mc"
    shutil.copytree(root, bad)
    csv = bad / "scenarios" / "moralchoice_low_ambiguity.csv"
    csv.chmod(0o644)
    with csv.open(encoding="utf-8", newline="") as f:
        rows = list(_csv.DictReader(f))
    rows[2]["action2"] = ""
    with csv.open("w", encoding="utf-8", newline="") as f:
        w = _csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueLensError, match=r"moralchoice_low_ambiguity.csv row 3: field 'action2': empty"):
        load_moralchoice(bad, "low")


AUDIT = """\
models: [{name: m, backend: "scripted:x.json"}]
layers:
  dilemmas: {%s}
"""


@pytest.mark.parametrize("body,message", [
    ("colour: red", "layers.dilemmas.colour: unknown key"),
    ("forms: [compare]", "add 'direct' to forms"),
    ("mode: generate, samples: 3", "samples > 1 needs temperature > 0"),
    ("corpus: none, chains: none", "nothing to ask"),
    ("forms: [direct, direct]", "forms are listed twice"),
    ("moralchoice: {path: x, ambiguity: medium}", "layers.dilemmas.moralchoice.ambiguity"),
])
def test_settings_errors(body, message):
    with pytest.raises(ValueLensError, match=re.escape(message)):
        parse_audit(AUDIT % body, "a.yaml")


def test_settings_defaults():
    s = parse_audit(AUDIT % "forms: [compare_reverse, direct], chains: none", "a.yaml").layers.dilemmas
    assert s.forms == ["direct", "compare_reverse"] and s.chains is None and s.corpus == "builtin"
    assert s.mode == "probs" and s.consequences and s.steering and s.moralchoice is None
