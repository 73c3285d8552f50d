"""The built-in demo: all four layers selected, the synthetic respondents (file = generator
output, ground truth recovered within sampling error, labelled), and the demo audit's layers
end to end on a scripted model (no SmolLM)."""

from __future__ import annotations

import json
import re
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

import valuelens.api as vl
from valuelens.config import demo_audit, demo_audit_text, parse_audit
from valuelens.data import synthetic
from valuelens.data.sources import load_survey
from valuelens.data.survey import load_questionnaire
from valuelens.data.wvs import distributions, load_codebook, load_microdata
from valuelens.errors import ValueLensError


def test_demo_audit_selects_all_four_layers_on_synthetic_data():
    a = demo_audit()
    layers = a.layers
    assert all(getattr(layers, k) is not None for k in ("first_token", "diversity", "dilemmas", "mark"))
    assert layers.first_token.data.kind == layers.diversity.data.kind == layers.mark.data.kind == "synthetic"
    assert list(a.countries) == list(synthetic.COUNTRIES) and list(a.languages) == ["en", "zh"]
    asked = set(layers.diversity.questions) | {p.a for p in layers.diversity.insensitivity.cv_pairs} \
        | {p.b for p in layers.diversity.insensitivity.cv_pairs} | set(layers.mark.questions)
    assert asked <= {q.id for q in load_questionnaire("builtin")}
    assert "synthetic" in demo_audit_text().lower() and "not human data" in demo_audit_text()


def test_committed_files_are_the_generators_output():
    base = resources.files("valuelens.data")
    assert base.joinpath(synthetic.CSV_NAME).read_text(encoding="utf-8") == synthetic.csv_text(synthetic.generate())
    assert base.joinpath(synthetic.CODEBOOK_NAME).read_text(encoding="utf-8") == synthetic.codebook_text()
    df = pd.read_csv(base.joinpath(synthetic.CSV_NAME))
    qs = load_questionnaire("builtin")
    assert list(df.columns) == ["B_COUNTRY", "Q260", "Q262", *[q.id for q in qs]]
    assert len(df) == len(synthetic.COUNTRIES) * 6 * synthetic.PER_CELL
    # the codebook, read as a WVS codebook, has the questionnaire's English texts and options
    cb = load_codebook(synthetic.paths()[1])
    assert {q.id: (q.text["en"], q.options["en"]) for q in cb.values()} == \
           {q.id: (q.text["en"], q.options["en"]) for q in qs}


def test_cell_formula_by_hand():
    """p_j ∝ exp(-(j - μ)²/(2σ²)) = a normal density at the positions, renormalised (scipy)."""
    p = {"location": {"China": 1.3}, "sex_shift": 0.4, "age_shift": -0.2, "k": 4}
    mu = 1.3 + 0.4 * 0.5 + (-0.2) * 1  # female, 50+
    dens = stats.norm.pdf(np.arange(4), mu, synthetic.SIGMA)
    np.testing.assert_allclose(synthetic.cell_probs(p, "China", "female", "50+"), dens / dens.sum())
    cells = [synthetic.cell_probs(p, "China", s, a) for s in ("male", "female") for a in ("<=29", "30-49", "50+")]
    np.testing.assert_allclose(synthetic.country_probs(p, "China"), np.mean(cells, axis=0))
    # the reverse-keyed twin mirrors its original
    par = synthetic.parameters()
    np.testing.assert_allclose(synthetic.cell_probs(par["D11"], "China", "male", "<=29"),
                               synthetic.cell_probs(par["D01"], "China", "male", "<=29")[::-1])


def _cell_tests(df: pd.DataFrame, params, n_expected: int) -> list[tuple[float, float, float]]:
    """(observed share, true share, binomial p-value) per cell × question × option, cells from the package's loader."""
    out = []
    for d in distributions(df, synthetic.questions(), ("country", "sex", "age_group"), weighted=False):
        parts = dict(x.split("=", 1) for x in d.group.split(";"))
        p = synthetic.cell_probs(params[d.question_id], d.country, parts["sex"], parts["age"])
        assert d.n == n_expected
        for share, truth in zip(d.probs, p):
            out.append((share, truth, stats.binomtest(round(share * d.n), d.n, truth).pvalue))
    return out


def test_ground_truth_is_recovered_within_sampling_error(tmp_path):
    params = synthetic.parameters()
    tests = _cell_tests(synthetic.respondents(), params, synthetic.PER_CELL)
    assert len(tests) == 2 * 6 * 11 * 4
    assert min(t[2] for t in tests) > 0.01 / len(tests)  # no option share rejected (Bonferroni, 1%)
    # a large sample from the same process converges to the truth (country and cell shares)
    big = synthetic.generate(seed=7, per_cell=3000)
    path, cb = tmp_path / "big.csv", tmp_path / "cb.json"
    big.to_csv(path, index=False)
    cb.write_text(synthetic.codebook_text(), encoding="utf-8")
    codebook = load_codebook(cb)
    micro = load_microdata(path, codebook)
    par7 = synthetic.parameters(seed=7)
    for d in distributions(micro, codebook, ("country",), weighted=False):
        np.testing.assert_allclose(d.probs, synthetic.country_probs(par7[d.question_id], d.country), atol=0.01)
    big_tests = _cell_tests(micro, par7, 3000)
    assert max(abs(a - b) for a, b, _ in big_tests) < 0.04  # SE <= 0.009
    assert min(t[2] for t in big_tests) > 0.01 / len(big_tests)
    # and a wrong truth is rejected: the sample does not fit China's parameters swapped for the US's
    wrong = {q: {**v, "location": {"United States": v["location"]["China"], "China": v["location"]["United States"]}}
             for q, v in params.items()}
    assert min(t[2] for t in _cell_tests(synthetic.respondents(), wrong, synthetic.PER_CELL)) < 1e-6


def test_synthetic_source_is_labelled_and_loads_in_every_layer():
    from valuelens.layers.def_layer.data import load
    from valuelens.layers.mark.data import load_sample

    s = load_survey("synthetic")
    assert s.source == "synthetic" and any(synthetic.LABEL in n for n in s.notes)
    assert {d.country for d in s.distributions} == set(synthetic.COUNTRIES)
    assert all(q.source == "synthetic" and q.languages() == {"en", "zh"} for q in s.questions.values())
    with pytest.raises(ValueLensError, match="takes no path"):
        load_survey("synthetic", "x.json")
    a = demo_audit()
    inputs = load(a.layers.diversity, list(a.countries))
    assert inputs.survey.source == "synthetic" and any(synthetic.LABEL in n for n in inputs.notes)
    asked = set(a.layers.diversity.questions) | {"D11"}
    assert inputs.respondents is not None and set(inputs.micro_column) == asked
    assert {q.id for q in inputs.questions} == asked | {"Q91", "Q92", "Q93"}
    assert {"Q91", "Q92", "Q93"} <= set(inputs.factual)
    sample = load_sample(a.layers.mark, list(a.countries), a.seed)
    assert len(sample.respondents) == 2 * a.layers.mark.respondents_per_country
    assert all(q.languages() >= {"en", "zh"} for q in sample.questions.values())
    assert {r.persona["sex"] for r in sample.respondents} <= {"male", "female"}


@pytest.mark.parametrize("layer, data, message", [
    ("mark", {"kind": "synthetic", "path": "x.csv"}, "takes no files"),
    ("mark", {"path": "x.csv"}, "needs path"),
    ("def", {"kind": "synthetic", "path": "x.csv"}, "takes no path"),
    ("first_token", {"kind": "synthetic", "path": "x.csv"}, "takes no path"),
])
def test_synthetic_settings_errors(layer, data, message):
    raw = yaml.safe_load(demo_audit_text())
    raw["layers"][layer]["data"] = data
    with pytest.raises(ValueLensError, match=message):
        parse_audit(yaml.safe_dump(raw), "a.yaml")


def _script(path):
    """Scripted replies: DEF answers by rule, MARK stages valid for the US persona (type INFJ),
    China's type reply is not a type (the demo allows no repair), so China's traces are invalid."""
    from mark_helpers import MARKERS, stage_script
    from valuelens.layers.mark.theory import STACKS

    stage_script(path, questions=())
    raw = json.loads(path.read_text(encoding="utf-8"))
    texts = {q.id: q.text for q in load_questionnaire("builtin")}
    extra = []
    for lang, m in MARKERS.items():
        for k, qid in enumerate(("D01", "D04")):
            choices = [{"function": f, "option": (i + k) % 4 + 1, "reason": "scripted"}
                       for i, f in enumerate(STACKS["INFJ"])]
            extra.append({"contains": [m["reason"], m["mbti"].format("INFJ"), texts[qid][lang]],
                          "text": json.dumps({"choices": choices})})
    raw["rules"] = extra + raw["rules"]
    raw["default_text"] = "Answer: 2 Explanation: scripted."
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return path


def test_demo_layers_end_to_end_on_a_scripted_model(tmp_path):
    raw = yaml.safe_load(demo_audit_text())
    raw["models"] = [{"name": "s", "backend": f"scripted:{_script(tmp_path / 'script.json')}"}]
    raw["output_dir"] = str(tmp_path / "out")
    audit = parse_audit(yaml.safe_dump(raw, allow_unicode=True), "demo.yaml")
    t = vl.run(audit)
    ft = t["first_token_items"]
    assert ft["one_minus_jsd"].notna().any()
    q = t["def_questions"]
    assert np.isfinite(q["kl_raw"]).any() and t["def_dimensions"]["dimension"].nunique() >= 4
    assert {"def_bias", "def_bias_profile", "def_map", "def_variation"} <= set(t)
    ins = t["def_insensitivity"]
    assert (ins["ff_n"] > 0).all() and (ins["cv_n"] > 0).all()
    assert any(synthetic.LABEL in n for n in t["def_notes"]["note"])
    s = t["mark_summary"].set_index(["method", "language"])
    mark = s.loc["mark"]
    assert (mark["invalid_share"] > 0).all() and (mark["invalid_share"] < 1).all()  # China invalid, US valid
    assert mark[["accuracy", "one_minus_jsd", "emd", "kappa"]].notna().all().all()
    assert len(t["mark_table3"]) == 8
    assert any(k.startswith("dilemma") for k in t)
    from valuelens.report import build_report

    text = build_report(tmp_path / "out").read_text(encoding="utf-8")
    header = text[text.index("<header>"):text.index("</header>")]
    assert synthetic.LABEL in header and "first_token, def, mark" in header
    for sid, labelled in (("layer-first_token", True), ("layer-def", True), ("layer-mark", True),
                          ("layer-dilemmas", False)):
        body = text[text.index(f'<section id="{sid}"'):]
        body = body[:body.index("</section>")]
        titles = re.findall(r"<figcaption><h3>(.*?)</h3>", body)
        assert titles, sid
        assert all((synthetic.LABEL in t) == labelled for t in titles), (sid, titles)
        assert (f"Reference data: {synthetic.LABEL}" in body) == labelled
