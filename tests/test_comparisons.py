"""Issue 19: comparisons in the paper's design (unit of analysis, ``comparisons:`` in the audit file, Table 1
from data, intervals on headline numbers, effect sizes). Numbers are checked against hand computations and
scipy, never against valuelens' own output."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from valuelens import api
from valuelens.comparisons.catalogue import BY_METRIC, Entry
from valuelens.comparisons.compute import item_frame, item_matrix, observations
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.report import build_report
from valuelens.report.compare import compare
from valuelens.report.headline import Headline, compute, ranking, separation
from valuelens.report.load import report_data
from valuelens.stats import BootstrapCI, bootstrap_ci_strata

FAMILIES = ("Mistral", "Mistral", "Llama-3", "Llama-3")
SPEC = "{by: family, groups: [Mistral, Llama-3], metric: def_kl, unit: item, test: [student, welch, wilcoxon]}"


def audit_text(root: Path, families=FAMILIES, comparisons: str = f"\n  - {SPEC}") -> str:
    models = ""
    for i, fam in enumerate(families):
        (root / f"m{i}.json").write_text(json.dumps({"rules": [], "default_text": f"Answer: {1 + i % 3}"}))
        models += f"  - name: m{i}\n    backend: scripted:{root / f'm{i}.json'}\n    family: {fam}\n"
    return f"""name: fam
seed: 3
countries: [United States, China]
languages: [en]
models:
{models}comparisons:{comparisons}
layers:
  first_token: {{data: {{kind: synthetic}}}}
  diversity: {{data: {{kind: synthetic}}, questions: [D01, D02, D04, D07], participants: 3, passes: 1, beams: [1, 1],
               memory_max: 2, retries: 0}}
"""


@pytest.fixture(scope="module")
def family_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("families")
    (root / "audit.yaml").write_text(audit_text(root))
    api.run_full(root / "audit.yaml", root / "out")
    build_report(root / "out")
    return root / "out"


def text_of(html: str) -> str:
    from html import unescape

    html = re.sub(r"<script\b.*?</script>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# the audit file ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, line, message", [
    ("{by: family, groups: [Mistral, Llama3], metric: def_kl}", 12,
     r"comparisons\.0\.groups\.1: 'Llama3' is not the family of any audited model \(family values: Llama-3, Mistral\)"),
    ("{by: family, metric: def_kll}", 12, r"comparisons\.0\.metric: unknown metric 'def_kll' \(one of covered_mass,"),
    ("{by: colour}", 12, r"comparisons\.0\.by: unknown field 'colour' to group models by \(one of region, family"),
    ("{by: family, metric: def_kl, unit: model, test: [wilcoxon]}", 12,
     r"test wilcoxon does not fit unit 'model'.*signed-rank test pairs items"),
    ("{by: family, metric: country_gap, unit: item}", 12, r"metric 'country_gap' has no per-item values"),
    ("{by: family, groups: [Mistral, Mistral]}", 12, r"the two groups are the same"),
    ("{by: family, unit: items}", 12, r"comparisons\.0\.unit: Input should be 'model', 'item' or 'paired'"),
])
def test_bad_comparisons_are_one_line_errors_with_file_and_line(tmp_path, spec, line, message):
    text = audit_text(tmp_path, comparisons=f"\n  - {SPEC}\n  - {spec}")
    text = text.replace(f"\n  - {SPEC}\n", "\n", 1)  # the bad one is the first
    line = text.splitlines().index(f"  - {spec}") + 1
    with pytest.raises(ValueLensError) as e:
        parse_audit(text, "a.yaml")
    msg = str(e.value)
    assert msg.startswith(f"a.yaml line {line}: ") and "\n" not in msg, msg
    assert re.search(message, msg), msg


def test_good_comparisons_parse_with_defaults(tmp_path):
    cfg = parse_audit(audit_text(tmp_path, comparisons=f"\n  - {SPEC}\n  - {{by: family}}"), "a.yaml")
    first, second = cfg.comparisons
    assert first.groups == ["Mistral", "Llama-3"] and first.tests_of("def_kl") == ("student", "welch", "wilcoxon")
    assert second.unit_of("def_kl") == "item" and second.unit_of("country_gap") == "model"  # item where possible
    assert second.tests_of("country_gap") == ("student", "welch") and second.correction == "holm"
    assert parse_audit(audit_text(tmp_path, comparisons=" []"), "a.yaml").comparisons == []


# Table 1 from data: item-level, by hand -----------------------------------------------------------------------

def _hand_student(x: np.ndarray, y: np.ndarray) -> dict:
    n1, n2 = len(x), len(y)
    s1, s2 = x.std(ddof=1), y.std(ddof=1)
    sp2 = ((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2)
    sed = math.sqrt(sp2 * (1 / n1 + 1 / n2))
    t = (x.mean() - y.mean()) / sed
    df = n1 + n2 - 2
    return {"t": t, "df": df, "sed": sed, "p": 2 * sps.t.sf(abs(t), df), "d": (x.mean() - y.mean()) / math.sqrt(sp2),
            "sem1": s1 / math.sqrt(n1), "sem2": s2 / math.sqrt(n2)}


def test_item_level_table_1_matches_a_hand_computation(family_run):
    q = pd.read_parquet(family_run / "results" / "def_questions.parquet")
    q = q[q["kl_valid"].notna()]
    data = report_data(family_run)
    h = compute(data, seed=3)
    comp = compare(data, h)
    c = next(c for c in comp.done if c.origin == "audit file comparisons[0]")
    assert (c.a, c.b, c.models_a, c.models_b) == ("Mistral", "Llama-3", ["m0", "m1"], ["m2", "m3"])
    text = text_of((family_run / "report.html").read_text(encoding="utf-8"))
    for country in ("United States", "China"):
        sub = q[q["country"] == country]
        # an item = question × culture × language; its value = the mean over the family's models
        per_item = sub.pivot_table(index=["language", "question_id"], columns="model", values="kl_valid")
        x = per_item[["m0", "m1"]].mean(axis=1).to_numpy()
        y = per_item[["m2", "m3"]].mean(axis=1).to_numpy()
        hand = _hand_student(x, y)
        assert hand["df"] == len(x) + len(y) - 2
        row = next(r for r in c.rows if r.entry.by_value == country)
        assert row.unit == "item" and row.t_test == "student"
        st = row.outcome("student")
        assert (st.statistic, st.df, st.sed, st.p, st.effect) == pytest.approx(
            (hand["t"], hand["df"], hand["sed"], hand["p"], hand["d"]))
        assert row.desc[0][:2] == (len(x), pytest.approx(x.mean())) and row.desc[1][3] == pytest.approx(hand["sem2"])
        w = row.outcome("wilcoxon")
        ref = sps.wilcoxon(x, y)
        assert (w.statistic, w.p) == pytest.approx((ref.statistic, ref.pvalue))
        we = row.outcome("welch")
        ref = sps.ttest_ind(x, y, equal_var=False)
        assert (we.statistic, we.df, we.p) == pytest.approx((ref.statistic, ref.df, ref.pvalue))
        # and the report shows the same numbers, Table 1 layout with the test, n and unit
        shown = (f"DEF mean KL (valid answers) · {country} Mistral {len(x)} {x.mean():.3f} {x.std(ddof=1):.3f} "
                 f"{hand['sem1']:.3f} {hand['t']:.3f} {hand['df']} {hand['sed']:.3f}")
        assert shown in text
    holm = sorted(o.p for r in c.rows for o in r.outcomes if o.test == "student")
    assert sorted(o.p_adj for r in c.rows for o in r.outcomes if o.test == "student") == pytest.approx(
        [min(1, 2 * holm[0]), max(min(1, 2 * holm[0]), holm[1])])  # Holm over the two Student tests
    assert "model family: Mistral vs Llama-3 (unit: item)" in text and "p (Holm)" in text
    assert "Unit: item. Mistral: m0, m1. Llama-3: m2, m3. From: audit file comparisons[0]." in text


def test_paired_unit_and_bh(tmp_path):
    spec = "{by: family, groups: [Mistral, Llama-3], metric: def_kl, unit: paired, correction: bh}"
    (tmp_path / "audit.yaml").write_text(audit_text(tmp_path, comparisons=f"\n  - {spec}"))
    api.run_full(tmp_path / "audit.yaml", tmp_path / "out")
    data = report_data(tmp_path / "out")
    h = compute(data, seed=3)
    comp = compare(data, h)
    c = next(c for c in comp.done if c.origin.startswith("audit file"))
    q = pd.read_parquet(tmp_path / "out" / "results" / "def_questions.parquet")
    ps = []
    for row in c.rows:
        sub = q[(q["country"] == row.entry.by_value) & q["kl_valid"].notna()]
        per_item = sub.pivot_table(index=["language", "question_id"], columns="model", values="kl_valid")
        x, y = per_item[["m0", "m1"]].mean(axis=1), per_item[["m2", "m3"]].mean(axis=1)
        ref = sps.ttest_rel(x, y)
        pt = row.outcome("paired_t")
        assert (pt.statistic, pt.df, pt.p) == pytest.approx((ref.statistic, ref.df, ref.pvalue))
        assert pt.effect == pytest.approx((x - y).mean() / (x - y).std(ddof=1))  # d_z
        boot = row.outcome("bootstrap")
        assert boot.effect == pytest.approx((x - y).mean()) and boot.low <= boot.effect <= boot.high
        ps.append((pt.p, pt.p_adj))
    raw = [p for p, _ in ps]
    assert [a for _, a in ps] == pytest.approx(list(sps.false_discovery_control(raw)))


def test_observations_average_the_groups_models_per_item():
    m = BY_METRIC["kl"]
    df = pd.DataFrame({
        "model": ["a1", "a1", "a2", "b1", "b1", "b1"], "condition": "ZS", "language": "en", "country": "China",
        "prompt_country": "China", "question_id": ["q1", "q2", "q1", "q1", "q2", "q3"],
        "kl": [1.0, 2.0, 3.0, 0.5, np.nan, 0.25]})
    frame = item_frame({"first_token_items": df}, m, "China")
    items = item_matrix(frame, ["language", "prompt_country", "question_id"])
    e = Entry(m, "China")
    x, y, (pa, pb), n_models = observations("item", e, pd.DataFrame(), items, ["a1", "a2"], ["b1"])
    # a: q1 = (1 + 3)/2 = 2, q2 = 2; b: q1 = 0.5, q3 = 0.25 (q2 is NaN: no value)
    assert sorted(x) == [2.0, 2.0] and sorted(y) == [0.25, 0.5] and n_models == (2, 1)
    assert list(pa) == [2.0] and list(pb) == [0.5]  # paired: only q1 is in both
    x2, y2, _, _ = observations("paired", e, pd.DataFrame(), items, ["a1", "a2"], ["b1"])
    assert list(x2) == [2.0] and list(y2) == [0.5]


# intervals on headline numbers and the ranking ----------------------------------------------------------------

def test_every_ranked_headline_number_has_an_interval_or_a_reason(family_run):
    data = report_data(family_run)
    h = compute(data, seed=3, n_resamples=500)
    q = pd.read_parquet(family_run / "results" / "def_questions.parquet")
    for e in h.entries:
        for model in h.values[e.key].dropna().index:
            assert (e.key, model) in h.cis or (e.key, model) in h.no_ci
    # DEF KL: the bootstrap over the questions of each language, by hand
    sub = q[(q["model"] == "m0") & (q["country"] == "China") & q["kl_valid"].notna()]
    parts = [g["kl_valid"].to_numpy() for _, g in sub.groupby("language")]
    assert h.cis[("def_kl|China", "m0")] == bootstrap_ci_strata(parts, n_resamples=500, seed=3)
    assert h.cis[("def_kl|China", "m0")].estimate == pytest.approx(h.values.at["m0", "def_kl|China"])
    assert h.no_ci[("country_gap", "m0")] == "no per-item values"
    ins = pd.read_parquet(family_run / "results" / "def_insensitivity_items.parquet")
    ff = ins[(ins["model"] == "m0") & (ins["country"] == "China") & (ins["kind"] == "FF") & ins["valid"]]
    parts = [g["flagged"].to_numpy(float) for _, g in ff.groupby("language")]
    assert h.cis[("def_ff|China", "m0")] == bootstrap_ci_strata(parts, n_resamples=500, seed=3)
    assert {e.label for e in h.entries if (e.key, "m0") in h.no_ci} == {"country gap (JSD)"}  # all others have one
    note = h.describe()
    assert "500 resamples, seed 3" in note
    assert re.search(r"No interval \(no per-item values\): [^.]*country gap \(JSD\)", note), note


def test_ranking_says_not_distinguishable_when_intervals_overlap():
    m = BY_METRIC["kl"]
    e = Entry(m, None)
    h = Headline(["a", "b", "c"], [e], pd.DataFrame({e.key: [0.1, 0.2, 0.9]}, index=["a", "b", "c"]))
    h.cis = {(e.key, "a"): BootstrapCI(0.1, 0.0, 0.25), (e.key, "b"): BootstrapCI(0.2, 0.15, 0.3),
             (e.key, "c"): BootstrapCI(0.9, 0.8, 1.0)}
    sep = separation(h, e, ["a", "b", "c"])
    assert sep == {"a": "not distinguishable from b", "b": "not distinguishable from a", "c": ""}
    r = ranking(h)
    assert r["model"].tolist() == ["a", "b", "c"] and r[e.key + "#sep"].tolist() == [sep["a"], sep["b"], ""]
    del h.cis[(e.key, "c")]
    assert separation(h, e, ["a", "b", "c"])["c"] == "no interval"
    one = Headline(["a"], [e], pd.DataFrame({e.key: [0.1]}, index=["a"]))
    assert ranking(one).empty  # one model: no rank


def test_one_model_audit_shows_no_rank(tmp_path):
    (tmp_path / "audit.yaml").write_text(audit_text(tmp_path, families=("Mistral",), comparisons=" []"))
    api.run_full(tmp_path / "audit.yaml", tmp_path / "out")
    text = text_of(build_report(tmp_path / "out").read_text(encoding="utf-8"))
    summary = text[text.index("Summary"):text.index("Bias profile")]
    assert "#1" not in summary and "Model ranking" not in summary
    assert "Headline values of m0" in summary and "One model with headline values: nothing to rank" in summary
    assert re.search(r"DEF mean KL \(valid answers\) · China \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] lower", summary)


def test_cross_run_paired_differences(tmp_path):
    """`valuelens compare`: the same model × item in two runs, later − first, paired (vs scipy)."""
    from valuelens.report import build_comparison
    from valuelens.report.compare import cross_run
    from valuelens.report.load import comparison_data

    outs = []
    for run, shift in (("before", 0), ("after", 1)):
        root = tmp_path / run
        root.mkdir()
        text = audit_text(root, families=("Mistral", "Llama-3"), comparisons=" []").replace("name: fam", f"name: {run}")
        (root / "audit.yaml").write_text(text)
        (root / "m0.json").write_text(json.dumps({"rules": [], "default_text": f"Answer: {1 + shift}"}))
        api.run_full(root / "audit.yaml", root / "out")
        outs.append(root / "out")
    data = comparison_data(outs)
    h = compute(data, seed=3, n_resamples=500)
    rows = cross_run(data, h)
    row = next(r for r in rows if r.model == "m0" and r.label == "DEF mean KL (valid answers) · China")
    q = [pd.read_parquet(o / "results" / "def_questions.parquet") for o in outs]
    a, b = (d[(d["model"] == "m0") & (d["country"] == "China")].set_index(["language", "question_id"])["kl_valid"]
            for d in q)
    both = pd.concat([a, b], axis=1, keys=["a", "b"]).dropna()
    ref = sps.ttest_rel(both["b"], both["a"])
    assert row.n == len(both) and (row.run_a, row.run_b) == ("before", "after")
    assert (row.paired_t.statistic, row.paired_t.p) == pytest.approx((ref.statistic, ref.pvalue))
    assert row.bootstrap.effect == pytest.approx((both["b"] - both["a"]).mean())
    assert row.wilcoxon.p == pytest.approx(sps.wilcoxon(both["b"], both["a"]).pvalue)
    m1 = [r for r in rows if r.model == "m1"]  # unchanged model: every difference 0, no test has a p
    assert m1 and all(r.paired_t is None and r.wilcoxon is None for r in m1)
    text = text_of(build_comparison(outs, tmp_path / "cmp").read_text(encoding="utf-8"))
    assert "Paired differences across runs" in text and "m0 DEF mean KL (valid answers) · China before → after" in text


def test_interval_sources_and_reasons():
    from valuelens.comparisons.compute import interval

    rng = np.random.default_rng(1)
    valid = rng.random(40) < 0.7
    resp = pd.DataFrame({"model": "m", "method": "mark", "language": "en", "respondent_id": np.repeat(range(20), 2),
                         "question_id": ["D01", "D04"] * 20, "valid": valid})
    summ = pd.DataFrame([{"model": "m", "method": "mark", "language": "en", "invalid_share": 1 - valid.mean(),
                          "accuracy": 0.4, "accuracy_low": 0.3, "accuracy_high": 0.5, "position_tv": 0.2}])
    tables = {"mark_responses": resp, "mark_summary": summ}
    ci, how = interval(tables, BY_METRIC["mark_invalid"], "en", "m", 1 - valid.mean(), 300, 5)
    assert how == "items" and ci == bootstrap_ci_strata([1.0 - valid.astype(float)], n_resamples=300, seed=5)
    ci, how = interval(tables, BY_METRIC["mark_accuracy"], "en", "m", 0.4, 300, 5)
    assert (how, tuple(ci)) == ("table", (0.4, 0.3, 0.5))
    ci, how = interval(tables, BY_METRIC["mark_position_tv"], None, "m", 0.2, 300, 5)
    assert ci is None and "position_p" in how
    # a headline value its items do not give: no interval rather than one around another number
    ci, how = interval(tables, BY_METRIC["mark_invalid"], "en", "m", 0.99, 300, 5)
    assert ci is None and how == "its per-item values do not reproduce the headline value"


def test_position_tv_interval_resamples_the_answers(family_run):
    from valuelens.data.survey import ALL_LABELS
    from valuelens.stats import bootstrap_ci_position_tv

    h = compute(report_data(family_run), seed=3, n_resamples=300)
    items = pd.read_parquet(family_run / "results" / "first_token_items.parquet")
    items = items[(items["model"] == "m1") & (items["condition"] == "ZS")]
    parts = [([ALL_LABELS.index(x) + 1 for x in g["top_option"]], g["n_options"].to_numpy())
             for _, g in items.groupby("language")]
    ci = h.cis[("position_tv", "m1")]
    assert ci == bootstrap_ci_position_tv(parts, n_resamples=300, seed=3)
    assert ci.estimate == pytest.approx(h.values.at["m1", "position_tv"])  # = first_token_summary's TV
    for country in ("United States", "China"):  # DEF: the final, reshuffled answers
        assert h.cis[(f"def_position_tv|{country}", "m1")].estimate == pytest.approx(
            h.values.at["m1", f"def_position_tv|{country}"])


def test_dilemma_position_interval_from_the_responses():
    from valuelens.comparisons.compute import interval
    from valuelens.metrics import position_bias
    from valuelens.stats import bootstrap_ci_position_tv

    rng = np.random.default_rng(4)
    rows, tvs, parts = [], [], []
    for lang in ("en", "zh"):
        labels = rng.choice(["A", "A", "B", None], 24)
        rows += [{"model": "m", "condition": "form", "language": lang, "chosen_label": x} for x in labels]
        rows += [{"model": "m", "condition": "consequence", "language": lang, "chosen_label": "A"}] * 5  # not asked
        pos = [{"A": 1, "B": 2}[x] for x in labels if x is not None]
        tvs.append(position_bias(pos, [2] * len(pos))["position_tv"])
        parts.append((pos, [2] * len(pos)))
    tables = {"dilemma_responses": pd.DataFrame(rows)}
    ci, how = interval(tables, BY_METRIC["dilemma_position_tv"], None, "m", float(np.mean(tvs)), 200, 1)
    assert how == "answers" and ci == bootstrap_ci_position_tv(parts, n_resamples=200, seed=1)
