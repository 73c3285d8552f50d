"""Published Cao-2025-layout files with 11-25 options, all-zero items and sums of 1.07
(issue 14 item 4): they load, the degenerate items are skipped and listed, strict:
true makes them errors; 26 option letters work end to end (prompt, tokens, metrics, report).

Every file here is written by the tests themselves.
"""

from __future__ import annotations

import json
import math
import string
from html import unescape
import re

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.data.cao2025 import load_cao2025
from valuelens.errors import ValueLensError
from valuelens.layers.first_token import option_request
from valuelens.report import build_report

EN = "How would someone from {} answer the following question:\n\n"
ZH = "来自{}的人会如何回答以下问题：\n\n"
AZ = string.ascii_uppercase


def item(qid, country, shares, zh=False):
    labels = AZ[: len(shares)]
    return {"id": qid, "instruction": (ZH if zh else EN).format(country),
            "input": ("第{}题？ \n以下是选项：\n" if zh else "Question {}? \nHere are the options: \n").format(qid),
            "options": [f"({lab}){'选项' if zh else 'choice '}{lab}" for lab in labels],
            "options_dist": dict(zip(labels, shares)), "data_type": "valid"}


def shares(n, seed, scale=1.0):
    w = np.random.default_rng(seed).random(n) + 0.05
    return [float(x) for x in w / w.sum() * scale]


def defective_items(zh=False, scale=1.0):
    """Fractions (or percent with scale=100): questions with 4, 11 and 25 options for the
    US and China, plus one all-zero item and one item summing to 1.07 (of the scale)."""
    out = []
    for qid, n in (("1", 4), ("2", 11), ("3", 25)):
        for k, c in enumerate(("United States", "China")):
            out.append(item(qid, c, shares(n, 10 * int(qid) + k, scale), zh))
    out.append(item("4", "United States", shares(5, 1, scale), zh))
    out.append(item("4", "China", [0.0] * 5, zh))  # all zeros
    bad = [x * 1.07 for x in shares(6, 2, scale)]  # sums to 1.07
    out.append(item("5", "United States", bad, zh))
    out.append(item("5", "China", shares(6, 3, scale), zh))
    return out


def write(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    return (write(tmp_path / "en.json", defective_items()), write(tmp_path / "zh.json", defective_items(zh=True)))


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_loader_keeps_up_to_26_options_and_skips_degenerate_items(tmp_path, scale):
    en = write(tmp_path / "en.json", defective_items(scale=scale))
    zh = write(tmp_path / "zh.json", defective_items(zh=True, scale=scale))
    s = load_cao2025(en, zh)
    assert s.questions["3"].labels == tuple(AZ[:25]) and s.questions["2"].labels == tuple(AZ[:11])
    assert s.questions["3"].options["zh"][24] == "选项Y"
    raw = defective_items(scale=scale)
    want = raw[5]["options_dist"]  # question 3, China: each share over the item's own sum
    total = math.fsum(want.values())
    assert s.lookup("3", "China").probs == pytest.approx([want[k] / total for k in AZ[:25]], abs=1e-15)
    assert s.lookup("4", "China") is None and s.lookup("5", "United States") is None
    assert s.lookup("4", "United States") is not None and s.lookup("5", "China") is not None
    assert len(s.distributions) == 8
    assert [(d["item"], d["question_id"], d["country"]) for d in s.skipped] == [
        (7, "4", "China"), (8, "5", "United States")]
    assert s.skipped[0]["reason"] == "all option shares are 0" and s.skipped[0]["file"] == "en.json"
    assert "sum to 1.07" in s.skipped[1]["reason"] if scale == 1 else "sum to 107" in s.skipped[1]["reason"]
    assert any("2 degenerate items skipped" in n for n in s.notes)
    assert any("zh.json" in n and "2 items with a degenerate distribution" in n for n in s.notes)


def test_strict_makes_each_defect_an_error(tmp_path):
    items = defective_items()
    for drop, parts in ((None, ["item 7", "China", "all option shares are 0"]),
                        (7, ["item 7", "United States", "sum to 1.07", "fractions"])):
        content = [x for i, x in enumerate(items) if i != drop]
        path = write(tmp_path / "en.json", content)
        with pytest.raises(ValueLensError) as err:
            load_cao2025(path, strict=True)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and "strict" in msg
        assert all(p in msg for p in parts), msg


def test_only_degenerate_items_is_one_clear_error(tmp_path):
    path = write(tmp_path / "en.json", [item("1", "China", [0, 0, 0])])
    with pytest.raises(ValueLensError, match=r"no item has a usable distribution .*all option shares are 0"):
        load_cao2025(path)


def test_27_options_are_still_refused(tmp_path):
    bad = item("1", "China", shares(26, 0))
    bad["options"].append("(a)one more")
    path = write(tmp_path / "en.json", [bad])
    with pytest.raises(ValueLensError, match=r"27 options; expected 2 to 26"):
        load_cao2025(path)


def test_prompt_lists_all_25_letters(files):
    s = load_cao2025(*files)
    req = option_request(s.questions["3"], "China", "en")
    assert req.labels == tuple(AZ[:25])
    text = req.messages[0].content
    assert "(K)choice K\n" in text and "(Y)choice Y\n" in text and "(Z)" not in text


def _audit(tmp_path, en, zh, backend, extra=""):
    return f"""\
name: big
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: [en, zh]
models:
  - {{name: m, backend: "{backend}"}}
layers:
  first_token:
    data: {{kind: cao2025, path: {en}, path_zh: {zh}{extra}}}
    control: false
"""


def _check_metrics(items: pd.DataFrame, options: pd.DataFrame) -> None:
    keys = ["model", "condition", "language", "country", "question_id"]
    for k, g in options.groupby(keys):
        row = items.set_index(keys).loc[k]
        p, h = g["prob"].to_numpy(float), g["human_prob"].to_numpy(float)
        assert len(g) == row["n_options"] and list(g["option"]) == list(AZ[: len(g)])
        assert row["one_minus_jsd"] == pytest.approx(1 - jensenshannon(h, p), abs=1e-9)
        assert row["kl"] == pytest.approx(entropy(h + 1e-6, p + 1e-6), abs=1e-6)
        cdf = np.abs(np.cumsum(h) - np.cumsum(p))[:-1].sum() / (len(h) - 1)
        assert row["emd"] == pytest.approx(cdf, abs=1e-9)


def test_run_and_report_with_defective_file(tmp_path, files):
    script = write(tmp_path / "s.json", {})  # hash-based distributions
    res = vl.run_full(parse_audit(_audit(tmp_path, *files, f"scripted:{script}"), "a.yaml"))
    items, options = res.tables["first_token_items"], res.tables["first_token_options"]
    # 5 questions x 2 countries x 2 languages, less the two skipped (question, country) pairs in both languages
    assert len(items) == 16
    assert sorted(items["n_options"].unique()) == [4, 5, 6, 11, 25]
    assert set(options.loc[options["question_id"] == "3", "option"]) == set(AZ[:25])
    _check_metrics(items, options)
    skipped = res.tables["first_token_skipped"]
    assert skipped[["item", "question_id", "country"]].values.tolist() == [[7, "4", "China"], [8, "5", "United States"]]
    html = build_report(tmp_path / "out").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))
    assert "2 item(s) of the data file(s) skipped as degenerate" in text
    assert "all option shares are 0" in text


def test_strict_in_the_audit_file_stops_before_running(tmp_path, files):
    script = write(tmp_path / "s.json", {})
    cfg = parse_audit(_audit(tmp_path, *files, f"scripted:{script}", ", strict: true"), "a.yaml")
    with pytest.raises(ValueLensError, match=r"item 7 \(id 4, China\).*all option shares are 0 \(strict: true\)"):
        vl.run(cfg)
    assert not (tmp_path / "out" / "results").exists()


def test_strict_is_only_for_cao2025(tmp_path):
    text = """\
models: [{name: m, backend: embedded}]
layers:
  first_token: {data: {kind: builtin, strict: true}}
"""
    with pytest.raises(ValueLensError, match="strict applies only to data kind 'cao2025'"):
        parse_audit(text, "a.yaml")


def test_25_option_tokens_on_a_tiny_hf_model(tmp_path, files, tiny_model_dir):
    """The hf backend finds a token for every letter A-Y and renormalises over all 25."""
    res = vl.run_full(parse_audit(_audit(tmp_path, *files, f"hf:{tiny_model_dir}"), "a.yaml"))
    items, options = res.tables["first_token_items"], res.tables["first_token_options"]
    big = options[options["question_id"] == "3"]
    assert len(big) == 25 * 4 and big["prob"].gt(0).all()
    for _, g in big.groupby(["language", "country"]):
        assert g["prob"].sum() == pytest.approx(1, abs=1e-9)
    assert items["covered_mass"].between(0, 1).all()
    _check_metrics(items, options)
