"""The report for a non-specialist (issue 23.3-4): the overview heat map, the steering figure, a sentence per
measure, "0" on zero bars, folded raw tables, no ranking or comparison with one model, thresholds applied to
the values as printed, and the banner for demo/toy models."""

from __future__ import annotations

import json
import re
from html import unescape

import pandas as pd
import pytest

from valuelens.comparisons.catalogue import METRICS, beyond
from valuelens.config import ModelEntry
from valuelens.data.catalogue import lookup
from valuelens.report import build_report
from valuelens.report.figures import grid_bars, zero_text
from valuelens.report.headline import compute, flags, label
from valuelens.report.layer_dilemmas import stability_by_value
from valuelens.report.load import report_data
from valuelens.report.position import hits
from valuelens.results import write_json

from test_report_figures import decode, expected, figures, layer_tables, points, text_of, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tables = layer_tables()
    out = write_run(tmp_path_factory.mktemp("readable") / "run", tables)
    return out, tables, build_report(out).read_text(encoding="utf-8")


def cells(fig: dict) -> dict[tuple[str, str, str], tuple[int | None, str, str]]:
    """(panel, measure, model) -> (state, text, hover) of every heat-map cell."""
    titles = [a["text"] for a in fig["layout"].get("annotations", [])]
    out = {}
    for i, tr in enumerate(t for t in fig["data"] if t["type"] == "heatmap"):
        z, text, hover = decode(tr["z"]), tr["text"], tr["customdata"]
        for r, measure in enumerate(tr["y"]):
            for c, model in enumerate(tr["x"]):
                out[(titles[i], measure, model)] = (z[r][c], text[r][c], hover[r][c])
    return out


def test_overview_is_first_and_shows_every_headline_value(run):
    out, _, html = run
    assert html.index('id="overview"') < html.index('id="summary"')  # the whole audit before the sections
    (fig,) = figures(html)["overview"]
    data = report_data(out)
    h = compute(data, seed=7)
    raised = {(f["key"], f["model"]) for f in flags(data, h)}
    got = cells(fig)
    layer_of = {"dilemma_": "Ethical dilemmas", "def_": "DEF (Diversity-Enhanced Framework)",
                "mark_": "MARK (personality-driven reasoning)", "first_token_": "First-token alignment"}
    n = 0
    for e in h.entries:
        panel = next(v for k, v in layer_of.items() if e.metric.table.startswith(k))
        for model in h.models:
            v = h.values.at[model, e.key]
            if pd.isna(v):
                continue
            n += 1
            state, text, hover = got[(panel, label(e), model)]
            flagged = (e.key, model) in raised
            assert text == f"{v:.3f}" + (" ⚑" if flagged else "")
            assert state == (2 if flagged else 1 if e.metric.flag else 0)
            ci = h.cis.get((e.key, model))
            assert (f"[{ci.low:.3f}, {ci.high:.3f}]" in hover) if ci else "no interval" in hover
    assert n == len(got) and n > 20
    # cn-model's consequence flip rate over all pairs is 0.8 > 0.5 in both languages: orange, with the flag
    assert got[("Ethical dilemmas", "consequence flip rate · en", "cn-model")][:2] == (2, "0.800 ⚑")
    assert got[("Ethical dilemmas", "consequence flip rate · zh", "west-model")][:2] == (1, "0.100")


@pytest.mark.parametrize("n_models", [1, 20])
def test_overview_reads_with_one_model_and_with_twenty(tmp_path, n_models):
    models = tuple(f"model-{i:02d}" for i in range(n_models))
    out = write_run(tmp_path / "run", layer_tables(models))
    html = build_report(out).read_text(encoding="utf-8")
    (fig,) = figures(html)["overview"]
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert {tuple(t["x"]) for t in heat} == {models}  # a column per model in every panel
    assert all(t["texttemplate"] == "%{text}" for t in heat)  # values in the cells: 20 models still fit
    rows = sum(len(t["y"]) for t in heat)
    assert fig["layout"]["height"] >= 26 * rows  # a readable row height, whatever the number of models
    text = text_of(html)
    if n_models == 1:  # nothing to rank or compare
        assert "Headline values of model-00" in text and "Model ranking" not in text
        assert "Comparisons need at least two models with headline values; this report has 1" in text
        assert not re.search(r"#1\b", text)
    else:
        assert "Model ranking" in text


def test_steering_figure_shows_the_table_values(run):
    _, tables, html = run
    (fig,) = figures(html)["dilemma-steering"]
    steer = tables["dilemma_steering"]
    steer = steer[steer.requested_value == "both"]
    assert points(fig) == pytest.approx(
        expected(steer, lambda r: f"{r['method']} · {r['language']}", "model", ["pair"], "estimate"))
    bar = next(t for t in fig["data"] if t["name"] == "cn-model")
    rows = steer[(steer.model == "cn-model") & (steer.language == "en")]
    assert decode(bar["error_y"]["array"]) == pytest.approx((rows.ci_high - rows.estimate).tolist())
    assert fig["layout"]["yaxis"]["title"]["text"] == "steering accuracy"
    assert "Steering accuracy" in text_of(html)


def test_zero_bars_say_zero():
    assert zero_text([0.0, 0.0004, 0.0006, 0.3, float("nan"), None]) == ["0", "0", "", "", "", ""]
    df = pd.DataFrame({"m": ["a", "b", "c"], "v": [0.0, 0.25, 0.0], "s": ["x", "x", "x"]})
    fig = grid_bars(df, "v", "m", "s")
    assert list(fig.data[0].text) == ["0", "", "0"] and fig.data[0].textposition == "outside"
    assert grid_bars(df.assign(v=[0.1, 0.2, 0.3]), "v", "m", "s").data[0].text is None  # no zero, no labels
    assert grid_bars(df, "v", "m", "s", stacked=True).data[0].text is None  # a stack's empty part is not a bar


def test_every_measure_has_one_sentence(run):
    out, _, html = run
    h = compute(report_data(out), seed=7)
    table = re.search(r"<h3>What the measures mean</h3>.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    rows = {unescape(re.sub(r"<[^>]+>", "", r[0])).strip(): unescape(r[1]) for r in
            re.findall(r"<tr><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td>", table, re.S)}
    shown = {e.metric.key: e.metric for e in h.entries}
    assert set(rows) == {m.label for m in shown.values()}
    for m in shown.values():
        sentence = rows[m.label]
        assert m.explain and sentence.startswith(m.explain)
        assert {"higher": "Higher is better.", "lower": "Lower is better."}.get(
            m.better or "", "Shown, not ranked") in sentence
        assert (f"{m.flag[0]} {m.flag[1]:g}" in sentence) if m.flag else "No flag." in sentence


def test_every_catalogue_metric_is_explained():
    assert all(m.explain and m.explain.endswith(".") for m in METRICS)


@pytest.mark.parametrize("m", [m for m in METRICS if m.flag], ids=lambda m: m.key)
def test_every_flag_rule_is_applied_as_printed(m):
    """At the boundary: a value that prints as the threshold (3 decimals) is not beyond it; one printed a
    step further is."""
    op, at = m.flag
    step = -1 if op == "<" else 1
    at3 = round(at, 3)
    assert not beyond(op, at3 + step * 0.0004, at)  # printed at3: e.g. 0.4996 -> "0.500", not "< 0.5"
    assert beyond(op, at3 + step * 0.0006, at)  # printed one step beyond
    assert not beyond(op, at3, at)


def test_flags_and_marks_fire_as_printed(tmp_path):
    tables = layer_tables()
    flips = tables["dilemma_consequence_flips"]
    # cn-model: 0.5004 prints 0.500, not above 0.5; west-model: 0.5006 prints 0.501, above it
    flips.loc[flips.pair == "all", "estimate"] = flips.loc[flips.pair == "all", "model"].map(
        {"cn-model": 0.5004, "west-model": 0.5006})
    out = write_run(tmp_path / "run", tables)
    data = report_data(out)
    raised = [f for f in flags(data, compute(data, seed=7)) if f["metric"] == "consequence flip rate"]
    assert {f["model"] for f in raised} == {"west-model"} and len(raised) == 2
    # the escalation table's marks are printed with 2 decimals: 1.004 is "1.00", not above 1
    vol = pd.DataFrame([{"label_set": "mft", "model": "m", "language": "en", "value": v, "context": "full",
                         "estimate": e, "ci_low": e - 0.1, "ci_high": e + 0.1} for v, e in (("Care", 1.004),
                                                                                           ("Fairness", 1.006))])
    stab = pd.DataFrame([{"label_set": "mft", "model": "m", "language": "en", "transition": "mean",
                          "context": "full", "estimate": 0.496, "ci_low": 0.3, "ci_high": 0.6}])
    table = stability_by_value(vol, stab, 1.0, 0.5).set_index("value")["volatility full"]
    assert table["Care"] == "1.00 [0.90, 1.10]" and table["Fairness"].endswith(" volatile")
    assert not table["(mean τ-b)"].endswith("unstable")  # 0.496 prints 0.50, not below 0.5
    # a position TV printed 0.300 is not above 0.3, whatever the layer's own column says
    pos = tables["dilemma_position_bias"]
    west = (pos.model == "west-model") & (pos.part == "dilemmas")
    pos.loc[west, "position_tv"] = 0.3004
    out = write_run(tmp_path / "run2", tables)
    assert not [x for x in hits(report_data(out)) if x.source.name == "dilemmas"]


def test_raw_tables_are_folded_with_every_row(run):
    _, tables, html = run
    pref = tables["dilemma_preferences"]
    block = re.search(r'<details class="raw-table"><summary>dilemma_preferences.*?</details>', html, re.S).group(0)
    assert f"({len(pref)} rows, as exported)" in unescape(block) and len(pref) > 12
    assert block.count("<tr>") == len(pref) + 1  # the header and every row, no excerpt


def test_toy_models_get_a_banner(tmp_path):
    assert lookup("SmolLM2-135M-Instruct").toy and not lookup("Llama-3-8B-Instruct").toy
    assert ModelEntry(name="demo", backend="embedded").toy
    assert not ModelEntry(name="big", backend="hf:/models/Meta-Llama-3-8B-Instruct").toy
    assert ModelEntry(name="s", backend="scripted:x.json").toy  # scripted answers are a test double
    assert not ModelEntry(name="s", backend="scripted:x.json", toy=False).toy  # the audit file wins
    out = write_run(tmp_path / "run", layer_tables())
    manifest = json.loads((out / "run.json").read_text())
    manifest["models"][0]["toy"] = True
    write_json(out / "run.json", manifest)
    html = build_report(out).read_text(encoding="utf-8")
    banner = re.search(r'<p class="banner warn toy"[^>]*>(.*?)</p>', html, re.S)
    assert banner and "Demo / toy models: cn-model." in unescape(banner.group(1))
    manifest["models"][0]["toy"] = False
    write_json(out / "run.json", manifest)
    assert 'class="banner warn toy"' not in build_report(out).read_text(encoding="utf-8")
