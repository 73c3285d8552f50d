"""First-token probe: option permutations mapped back, label-prior calibration and
prompt sensitivity (issue 15 items 2, 3, 5). Expected numbers come from the
backends' own definitions (or by hand), never from the code under test."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.layers import first_token as ft
from valuelens.models import CachedModel, OptionResult
from valuelens.progress import NullTracker
from valuelens.report import build_report
from valuelens.store import Store

EN = "How would someone from {} answer the following question:\n\n"
VALUE = {"alpha": 1.0, "beta": 2.0, "gamma": 3.0, "delta": 4.0, "N/A": 1.0}
POSITION = [8.0, 4.0, 2.0, 1.0]  # a strong pull towards the first shown position
QUESTIONS = {"1": ("alpha", "beta", "gamma", "delta"), "2": ("delta", "alpha", "beta")}
HUMAN = {"1": [10, 20, 30, 40], "2": [50, 30, 20]}


def write_data(path, questions=QUESTIONS, human=HUMAN, countries=("United States", "China")):
    items = []
    for qid, opts in questions.items():
        for c in countries:
            labels = "ABCD"[: len(opts)]
            items.append({"id": qid, "instruction": EN.format(c), "input": f"Question {qid}? \nHere are the options: \n",
                          "options": [f"({lab}){o}" for lab, o in zip(labels, opts)],
                          "options_dist": dict(zip(labels, human[qid])), "data_type": "valid"})
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


class TextPositionBackend:
    """P(label at position j) ∝ VALUE[text shown at j] × POSITION[j]; records each call's prompts."""

    supports_beams = False

    def __init__(self):
        self.stats: dict[str, int] = {}
        self.batches: list[list[str]] = []

    def identity(self):
        return {"backend": "test-text-position"}

    def option_distribution(self, requests):
        out = []
        self.batches.append([r.messages[0].content for r in requests])
        for r in requests:
            shown = dict(re.findall(r"^\(([A-Z])\)(.*)$", r.messages[0].content, re.M))
            w = [VALUE[shown[lab]] * POSITION[j] for j, lab in enumerate(r.labels)]
            out.append(OptionResult(tuple(x / sum(w) for x in w), 1.0))
        return out

    def generate(self, items):
        raise AssertionError("not used")

    def close(self):
        pass


def expected(opts, shown_order):
    """Each original option's probability when the options are shown in ``shown_order``
    (a sequence of option texts, position 0 first), straight from the backend's definition."""
    w = {t: VALUE[t] * POSITION[j] for j, t in enumerate(shown_order)}
    z = sum(w.values())
    return np.array([w[t] / z for t in opts])


def run_layer(tmp_path, layer: str, backend=None, store=None):
    data = write_data(tmp_path / "d.json")
    cfg = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: [en]
models: [{{name: m, backend: embedded}}]
layers:
  first_token:
    data: {{kind: cao2025, path: {data}}}
    control: false
{layer}""", "a.yaml")
    backend = backend or TextPositionBackend()
    model = CachedModel(backend, store or Store(tmp_path / "store.sqlite"), "m", chunk_size=64)
    tables = ft.run(model, cfg.layers.first_token, cfg.layer_context(tmp_path / "out", NullTracker()))
    return tables, backend, model


def human(qid):
    h = np.array(HUMAN[qid], float)
    return h / h.sum()


@pytest.mark.parametrize("spec", ["cyclic", "reverse"])
def test_orders_map_back_to_the_expected_raw_and_averaged_distributions(tmp_path, spec):
    tables, backend, _ = run_layer(tmp_path, f"    permutations: {spec}\n")
    items, options, orders = (tables[k] for k in ("first_token_items", "first_token_options", "first_token_orders"))
    for qid, opts in QUESTIONS.items():
        n = len(opts)
        shown = ([opts[k:] + opts[:k] for k in range(n)] if spec == "cyclic" else [opts, opts[::-1]])
        per_order = [expected(opts, s) for s in shown]
        avg = np.mean(per_order, axis=0)
        for country in ("United States", "China"):
            o = options[(options.question_id == qid) & (options.country == country)]
            assert o["prob"].to_numpy() == pytest.approx(per_order[0], abs=1e-12)  # raw: original order
            assert o["prob_avg"].to_numpy() == pytest.approx(avg, abs=1e-12)
            assert o["prob_order_sd"].to_numpy() == pytest.approx(np.std(per_order, axis=0), abs=1e-12)
            it = items[(items.question_id == qid) & (items.country == country)].iloc[0]
            assert it["n_orders"] == len(shown)
            assert it["one_minus_jsd"] == pytest.approx(1 - jensenshannon(human(qid), per_order[0]), abs=1e-9)
            assert it["one_minus_jsd_avg"] == pytest.approx(1 - jensenshannon(human(qid), avg), abs=1e-9)
            assert it["kl_avg"] == pytest.approx(entropy(human(qid) + 1e-6, avg + 1e-6), abs=1e-6)
            assert it["order_spread_jsd"] == pytest.approx(np.mean([jensenshannon(p, avg) for p in per_order]), abs=1e-9)
            assert it["order_max_range"] == pytest.approx((np.max(per_order, 0) - np.min(per_order, 0)).max(), abs=1e-12)
            rows = orders[(orders.question_id == qid) & (orders.country == country)]
            for k, s in enumerate(shown):
                r = rows[rows.order_index == k]
                assert r["prob"].to_numpy() == pytest.approx(per_order[k], abs=1e-12)
                letters = "".join("ABCD"[opts.index(t)] for t in s)
                assert set(r["order"]) == {letters}
    # Each item's orders reach the backend in one call (so the hf backend can share their prefix).
    for qid, opts in QUESTIONS.items():
        calls = {i for i, b in enumerate(backend.batches) for p in b if f"Question {qid}?" in p}
        assert len(calls) == 1
    t2 = tables["first_token_table2"]
    assert list(t2.distribution) == ["raw", "order-averaged"]
    assert t2.set_index("distribution").loc["order-averaged", "all"] == pytest.approx(items["one_minus_jsd_avg"].mean())
    s = tables["first_token_summary"].iloc[0]
    assert s["mean_one_minus_jsd_avg"] == pytest.approx(items["one_minus_jsd_avg"].mean())


def test_random_orders_are_seeded_distinct_and_mapped_back(tmp_path):
    tables, _, _ = run_layer(tmp_path, "    permutations: 4\n")
    orders = tables["first_token_orders"]
    for qid, opts in QUESTIONS.items():
        n = len(opts)
        per_country = []
        for country in ("United States", "China"):
            rows = orders[(orders.question_id == qid) & (orders.country == country)]
            shown = rows.drop_duplicates("order_index")["order"].tolist()
            assert shown[0] == "ABCD"[:n] and len(set(shown)) == len(shown) == min(4, math.factorial(n) - 1) + 1
            per_order = []
            for k, letters in enumerate(shown):
                p = expected(opts, [opts["ABCD".index(x)] for x in letters])
                assert rows[rows.order_index == k]["prob"].to_numpy() == pytest.approx(p, abs=1e-12)
                per_order.append(p)
            o = tables["first_token_options"]
            o = o[(o.question_id == qid) & (o.country == country)]
            assert o["prob_avg"].to_numpy() == pytest.approx(np.mean(per_order, 0), abs=1e-12)
            per_country.append(shown)
        assert per_country[0] == per_country[1]  # the same orders for every country
    assert ft.option_orders(4, 4, 0, "1") == ft.option_orders(4, 4, 0, "1") != ft.option_orders(4, 4, 1, "1")
    assert len(ft.option_orders(10, 3, 0, "x")) == 6  # every order of 3 options once
    assert sorted(ft.option_orders(10, 3, 0, "x")) == sorted(itertools.permutations(range(3)))


def test_calibration_removes_a_pure_position_prior(tmp_path):
    """The backend's weights are value × position; the content-free prompt gives the
    position factor alone, so the calibrated distribution is the value factor exactly."""
    tables, _, model = run_layer(tmp_path, "    calibrate: true\n")
    options, items = tables["first_token_options"], tables["first_token_items"]
    for qid, opts in QUESTIONS.items():
        v = np.array([VALUE[t] for t in opts])
        prior = np.array(POSITION[: len(opts)]) / sum(POSITION[: len(opts)])
        for country in ("United States", "China"):
            o = options[(options.question_id == qid) & (options.country == country)]
            assert o["label_prior"].to_numpy() == pytest.approx(prior, abs=1e-12)
            assert o["prob_cal"].to_numpy() == pytest.approx(v / v.sum(), abs=1e-12)
            it = items[(items.question_id == qid) & (items.country == country)].iloc[0]
            assert it["one_minus_jsd_cal"] == pytest.approx(1 - jensenshannon(human(qid), v / v.sum()), abs=1e-9)
    # 4 items + one content-free prompt per (language, country, number of options) = 4
    assert model.made == 8
    assert list(tables["first_token_table2"].distribution) == ["raw", "calibrated"]


def test_calibration_by_hand_with_a_scripted_model(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [{"contains": "(A)N/A", "probs": [0.5, 0.25, 0.25]},
                                            {"contains": "", "probs": [0.2, 0.3, 0.5]}]}))
    data = write_data(tmp_path / "d.json", {"9": ("x", "y", "z")}, {"9": [10, 30, 60]}, ("China",))
    cfg = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
countries: [China]
languages: [en]
models: [{{name: m, backend: "scripted:{script}"}}]
layers:
  first_token: {{data: {{kind: cao2025, path: {data}}}, control: false, calibrate: true}}
""", "a.yaml")
    res = vl.run_full(cfg)
    it = res.tables["first_token_items"].iloc[0]
    o = res.tables["first_token_options"]
    # (0.2/0.5, 0.3/0.25, 0.5/0.25) = (0.4, 1.2, 2.0), over 3.6 = (1/9, 1/3, 5/9)
    assert o["prob_cal"].tolist() == pytest.approx([1 / 9, 1 / 3, 5 / 9], abs=1e-12)
    assert o["prob"].tolist() == pytest.approx([0.2, 0.3, 0.5])
    assert it["top_option"] == "C" and it["top_option_cal"] == "C"
    assert it["one_minus_jsd_cal"] == pytest.approx(1 - jensenshannon([0.1, 0.3, 0.6], [1 / 9, 1 / 3, 5 / 9]))
    assert res.manifest["calls"]["calls_made"] == 2


def test_permuted_calls_are_cached(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    first, b1, m1 = run_layer(tmp_path, "    permutations: cyclic\n    calibrate: true\n", store=store)
    again, b2, m2 = run_layer(tmp_path, "    permutations: cyclic\n    calibrate: true\n", store=store)
    assert m1.made == (4 + 3) * 2 + 2 * 2 and m2.made == 0 and not b2.batches
    for k in first:
        pd.testing.assert_frame_equal(first[k], again[k])


def test_settings_are_checked_with_the_key():
    base = "models: [{name: m, backend: embedded}]\nlayers:\n  first_token:\n"
    for bad, parts in (("    permutations: 0\n", ["line 4", "permutations", "1 to 100"]),
                       ("    permutations: shuffle\n", ["line 4", "permutations"]),
                       ("    templates: {t: {en: {user: 'no fields'}}}\n", ["templates.t.en.user", "placeholders"]),
                       ("    templates: {t: {}}\n", ["templates.t", "en and/or zh"]),
                       ("    templates: {paper: {en: {user: '{country}{question}{options}'}}}\n", ["built-in name"])):
        with pytest.raises(ValueLensError) as err:
            parse_audit(base + bad, "a.yaml")
        assert all(p in str(err.value) for p in parts), str(err.value)


def test_builtin_wordings_are_complete():
    q = ft.Question("1", {"en": "Q?", "zh": "问？"}, {"en": ("a", "b"), "zh": ("甲", "乙")})
    assert len(ft.WORDINGS) >= 4
    for name, w in ft.WORDINGS.items():
        assert set(w) == {"en", "zh"}
        for lang in ("en", "zh"):
            text = ft.user_prompt(q, "Peru", lang, w[lang])
            assert "Peru" in text and q.text[lang] in text and f"(B){q.options[lang][1]}" in text
            assert w[lang]["prefill"].endswith("(")
    assert len({w["en"]["user"] for w in ft.WORDINGS.values()}) == len(ft.WORDINGS)


WORDING_PROBS = {"report": [0.6, 0.2, 0.2], "survey": [0.2, 0.6, 0.2], "plain": [0.2, 0.2, 0.6],
                 "mine": [0.4, 0.4, 0.2], "paper": [1 / 3, 1 / 3, 1 / 3]}


def test_prompt_sensitivity_ranges(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [
        {"contains": "most common answer was (", "probs": WORDING_PROBS["report"]},
        {"contains": "My answer: (", "probs": WORDING_PROBS["survey"]},
        {"contains": "Answer: (", "probs": WORDING_PROBS["plain"]},
        {"contains": "Custom wording", "probs": WORDING_PROBS["mine"]},
        {"contains": "", "probs": WORDING_PROBS["paper"]}]}))
    hum = {"7": [20, 30, 50], "8": [60, 30, 10]}
    data = write_data(tmp_path / "d.json", {"7": ("x", "y", "z"), "8": ("u", "v", "w")}, hum)
    cfg = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: [en]
models: [{{name: m, backend: "scripted:{script}"}}]
layers:
  first_token:
    data: {{kind: cao2025, path: {data}}}
    control: false
    prompt_variants: true
    templates:
      mine:
        en: {{user: "Custom wording. {{country}}: {{question}}\\n{{options}}", prefill: "("}}
        zh: {{user: "自定义 {{country}} {{question}} {{options}}", prefill: "("}}
""", "a.yaml")
    res = vl.run_full(cfg)
    t = res.tables["first_token_templates"]
    assert t["template"].tolist() == ["paper", "plain", "survey", "report", "mine"]
    means = {}
    for name, p in WORDING_PROBS.items():
        want = np.mean([1 - jensenshannon(np.array(h) / 100, p) for h in hum.values() for _ in range(2)])
        got = t.set_index("template").loc[name, "mean_one_minus_jsd"]
        assert got == pytest.approx(want, abs=1e-9)
        means[name] = want
    spread = res.tables["first_token_template_spread"].set_index("metric")
    v = np.array(list(means.values()))
    row = spread.loc["mean_one_minus_jsd"]
    assert row["n_templates"] == 5 and row["language"] == "en"
    assert [row["min"], row["max"], row["range"]] == pytest.approx([v.min(), v.max(), v.max() - v.min()])
    assert row["sd"] == pytest.approx(np.std(v, ddof=1))
    # the paper's wording is the main run's ZS
    zs = res.tables["first_token_summary"]
    assert zs.loc[zs.condition == "ZS", "mean_one_minus_jsd"].iloc[0] == pytest.approx(means["paper"])
    # 4 items x (1 + 3 ours + 1 user) wordings
    assert res.manifest["calls"]["calls_made"] == 4 * 5


def test_user_template_without_an_audit_language(tmp_path):
    data = write_data(tmp_path / "d.json")
    script = tmp_path / "s.json"
    script.write_text("{}")
    cfg = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
languages: [en]
models: [{{name: m, backend: "scripted:{script}"}}]
layers:
  first_token:
    data: {{kind: cao2025, path: {data}}}
    templates: {{only_zh: {{zh: {{user: "{{country}}{{question}}{{options}}", prefill: "("}}}}}}
""", "a.yaml")
    with pytest.raises(ValueLensError, match=r"templates.only_zh: no wording for the audit languages \['en'\]"):
        vl.run(cfg)


def test_report_says_reversal_flips_ordinal_scales(tmp_path):
    data = write_data(tmp_path / "d.json")
    script = tmp_path / "s.json"
    script.write_text("{}")
    cfg = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: [en]
models: [{{name: m, backend: "scripted:{script}"}}]
layers:
  first_token: {{data: {{kind: cao2025, path: {data}}}, control: false, permutations: reverse, calibrate: true,
                 prompt_variants: true}}
""", "a.yaml")
    vl.run(cfg)
    html = build_report(tmp_path / "out").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "2 of the questions are ordinal scales: a reversed order lists such a scale from its other end" in text
    assert "Label-prior calibration" in text and "Range across wordings" in text
    assert "order-averaged" in text
