"""The HTML report: self-contained, honest about missing layers, numbers from
the tables, comparisons in the Table 1 layout, and it renders in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from valuelens import api
from valuelens.errors import ValueLensError
from valuelens.report import build_comparison, build_report
from valuelens.report.compare import compare
from valuelens.report.headline import compute, label
from valuelens.report.load import comparison_data, report_data
from valuelens.results import export_tables, read_tables
from valuelens.stats import ttest

from test_report_figures import FIGURES, layer_tables

ARTIFACTS = Path(os.environ.get("VALUELENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
SCRIPTS = {
    # Probabilities from a hash of the prompt; free answers pick A (US) or B (China).
    "cn": {"rules": [{"contains": "China", "text": "(B) because"}], "default_text": "A. yes"},
    # Always the first option, whatever the country: position bias, ignores the country.
    "west": {"rules": [{"contains": "", "probs": [0.7, 0.1, 0.1, 0.1], "text": "(A) sure"}]},
}
NOT_RUN = ("Ethical dilemmas", "DEF (Diversity-Enhanced Framework)", "MARK (personality-driven reasoning)")


def make_run(root: Path, name: str, limit: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, script in SCRIPTS.items():
        (root / f"{key}.json").write_text(json.dumps(script))
    audit = root / "audit.yaml"
    audit.write_text(f"""\
name: {name}
seed: 7
countries: [United States, China]
languages: [en, zh]
models:
  - name: cn-model
    backend: scripted:{root / 'cn.json'}
    display_name: "CN <b>model</b> & co"
    region: China
    family: Qwen
  - name: west-model
    backend: scripted:{root / 'west.json'}
    region: Western
    family: Llama-3
layers:
  first_token: {{limit: {limit}, generate_check: true}}
""")
    out = root / "out"
    api.run_full(audit, out)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report") / "a", "run-a")


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report") / "b", "run-b", limit=4)


def add_future_tables(out: Path) -> None:
    """Columns and tables the other layers export: conditions, distances vs human, Table 2; dilemma, DEF and
    MARK tables (synthetic, in their exported format)."""
    res = out / "results"
    items = pd.read_parquet(res / "first_token_items.parquet")
    if "condition" in items.columns:
        items = items[items["condition"] == "ZS"].drop(columns="condition")
    rng = np.random.default_rng(0)
    parts = []
    for cond in ("ZS", "ZS[ctrl]", "FT", "FT[ctrl]"):
        d = items.copy()
        d.insert(1, "condition", cond)
        d["one_minus_jsd"] = rng.uniform(0.5, 0.95, len(d))
        d["kl"] = rng.uniform(0.2, 1.2, len(d))
        d["emd"] = rng.uniform(0.0, 0.4, len(d))
        parts.append(d)
    pd.concat(parts, ignore_index=True).to_parquet(res / "first_token_items.parquet", index=False)
    options = pd.read_parquet(res / "first_token_options.parquet")
    if "condition" not in options.columns:
        options.insert(1, "condition", "ZS")
    options["human_prob"] = 0.25
    options.to_parquet(res / "first_token_options.parquet", index=False)
    pd.DataFrame([{"model": m, "condition": c, "language": "en", "C1-Q1": 0.7 + 0.01 * i, "C2-Q2": 0.6 + 0.01 * i,
                   "average": 0.65}
                  for m in ("cn-model", "west-model") for i, c in enumerate(("ZS", "ZS[ctrl]", "FT", "FT[ctrl]"))]
                 ).to_parquet(res / "first_token_table2.parquet", index=False)
    # dilemma, DEF and MARK tables; the first-token ones are passed again (export retires tables it is not given)
    export_tables(out, {**read_tables(out), **layer_tables(("cn-model", "west-model"))})


@pytest.fixture(scope="module")
def rich_dir(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rich") / "rich-run"
    shutil.copytree(run_dir, out)
    add_future_tables(out)
    return out


def text_of(html: str) -> str:
    """Visible text, roughly: tags and the inline scripts removed."""
    html = re.sub(r"<script\b.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_report_is_self_contained(run_dir):
    path = build_report(run_dir)
    assert path == run_dir / "report.html" and path.is_file()
    html = path.read_text(encoding="utf-8")
    # No external script, stylesheet, font or image: no src/href to the network, no CSS url()/@import.
    assert not re.search(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text_of(html.split("<script>", 1)[0]), re.I)
    # The plotly library itself is inline, and the page forbids fetching anything.
    assert "plotly.js v" in html and "Plotly.newPlot" in html and len(html) > 2_000_000
    assert "default-src 'none'" in html


def test_report_shows_catalogue_layers_and_run_facts(run_dir):
    html = build_report(run_dir).read_text(encoding="utf-8")
    text = text_of(html)
    for title in NOT_RUN:  # a one-layer run says which layers were not run
        assert f"{title}: not run. This layer was not part of the audit." in text
    assert "First-token alignment: included" in text
    assert "Model catalogue" in text and "Qwen" in text and "Llama-3" in text and "Western" in text
    # autoescape: catalogue text is shown, never interpreted as HTML
    assert "CN &lt;b&gt;model&lt;/b&gt; &amp; co" in html and "<b>model</b>" not in html
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["run_id"] in text and "calls made (this run)" in text and "version: valuelens" in text
    # Comparisons need two models per group: with one China and one Western model it says so.
    assert "origin region (region): not compared" in text and "China: 1 model, Western: 1 model" in text


def test_numbers_are_read_from_the_tables(run_dir):
    text = text_of(build_report(run_dir).read_text(encoding="utf-8"))
    summary = pd.read_parquet(run_dir / "results" / "first_token_summary.parquet")
    for v in summary["mean_country_gap_jsd"]:
        assert f"{v:.3f}" in text
    if "condition" in summary.columns:  # headlines read the zero-shot rows
        summary = summary[summary["condition"] == "ZS"]
    per_model = summary.groupby("model")["position_tv"].mean()  # the stated aggregation
    h = compute(report_data(run_dir))
    assert h.values["position_tv"].to_dict() == pytest.approx(per_model.to_dict())
    # west-model always puts 0.7 on option A: position-dominated (TV = 1 − mean 1/k) and an ignored country.
    items = pd.read_parquet(run_dir / "results" / "first_token_items.parquet")
    west = items[(items.model == "west-model") & (items.condition == "ZS")] if "condition" in items else items
    assert per_model["west-model"] == pytest.approx(1 - (1 / west["n_options"]).mean())
    assert (summary.loc[summary.model == "west-model", "top_position"] == 1).all()
    tv = f"{per_model['west-model']:.3f}"
    assert re.search(rf"west-model [\w ,]*language en[\w ,]* position bias \(TV\) {tv} > 0\.3", text)
    assert re.search(r"west-model [\w ,]*language zh[\w ,]* country gap \(JSD\) 0\.000 < 0\.02", text)
    assert f"position-dominated (position bias (TV) {tv})" in text
    # the summary says so at the top, with the rule, and the first-token figures carry the banner
    top = text[text.index("Summary"):text.index("Layers")]
    assert "Position-dominated choices" in top and "west-model — first-token probe" in top and "above 0.3" in top
    assert "cn-model — first-token probe" not in top
    layer = text[text.index("Zero-shot first-token probe"):]
    assert "Position-dominated (west-model): not a value finding" in layer
    ranking = text[text.index("Model ranking for United States, China"):text.index("Bias profile")]
    assert ranking.index("cn-model") < ranking.index("west-model")


def test_partial_runs_say_no_data_yet(run_dir, tmp_path):
    out = tmp_path / "partial"
    out.mkdir()
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest.update(status="running", models=[])
    (out / "run.json").write_text(json.dumps(manifest))
    text = text_of(build_report(out).read_text(encoding="utf-8"))
    assert "First-token alignment: no data yet. The run is still in progress" in text
    assert "Ethical dilemmas: not run." in text
    assert "cn-model" in text and "Qwen" in text  # catalogue from the audit in run.json
    manifest.update(status="failed", error="backend exploded")
    (out / "run.json").write_text(json.dumps(manifest))
    assert "First-token alignment: no data yet. The run failed: backend exploded." in text_of(
        build_report(out).read_text(encoding="utf-8"))
    with pytest.raises(ValueLensError, match="not a valuelens output directory"):
        build_report(tmp_path / "nothing-here")


def test_future_tables_are_rendered(rich_dir):
    text = text_of(build_report(rich_dir).read_text(encoding="utf-8"))
    assert "Table 2 layout" in text and "C1-Q1" in text and "1−JSD vs human (higher is closer)" in text
    assert "Ethical dilemmas: included" in text and "Consequence flip rates" in text
    assert re.search(r"cn-model language en consequence flip rate 0\.800 > 0\.5", text)
    assert "DEF (Diversity-Enhanced Framework): included" in text and "Trace viewer" in text
    items = pd.read_parquet(rich_dir / "results" / "first_token_items.parquet")
    zs = items[(items.condition == "ZS") & (items.country == "China")]
    for model, v in zs.groupby("model")["one_minus_jsd"].mean().items():  # headline: ZS rows, per country
        assert f"{v:.3f}" in text
    assert "1−JSD vs human · China" in text and "with condition ZS" in text


def test_comparison_of_two_runs(run_dir, other_run, tmp_path):
    other = other_run
    dest = build_comparison([run_dir, other], tmp_path / "cmp")
    assert dest == tmp_path / "cmp" / "report.html" and dest.is_file()
    text = text_of(dest.read_text(encoding="utf-8"))
    run_a, run_b = "run-a", "run-b"  # the audits' names
    for m in ("cn-model", "west-model"):
        assert f"{m}@{run_a}" in text and f"{m}@{run_b}" in text
    assert "origin region: China vs Western" in text and "Student t" in text and "Welch t" in text
    assert "p (Holm)" in text
    data = comparison_data([run_dir, other])
    assert set(data.tables["first_token_items"]["run"]) == {run_a, run_b}
    h = compute(data)
    comp = compare(data, h)
    region = next(c for c in comp.done if c.by == "region")
    row = next(r for r in region.rows if r.unit == "model" and r.outcome("student"))  # one value per model
    x = h.values.loc[region.models_a, row.entry.key]
    y = h.values.loc[region.models_b, row.entry.key]
    student, welch = ttest(x, y, equal_var=True), ttest(x, y, equal_var=False)
    assert (row.outcome("student").statistic, row.outcome("student").p) == (student.t, student.p)
    assert (row.outcome("welch").df, row.outcome("welch").p) == (welch.df, welch.p)
    assert f"{student.t:.3f}" in text and f"{welch.df:.3f}" in text
    with pytest.raises(ValueLensError, match="at least two"):
        build_comparison([run_dir], tmp_path / "one.html")


def _section_of(figure: str) -> str:
    """The layer section a figure belongs in: "dilemma-flips" -> layer-dilemmas, "position-def" -> layer-def."""
    kind, _, rest = figure.partition("-")
    layer = rest if kind == "position" else kind
    return "layer-" + {"dilemma": "dilemmas"}.get(layer, layer)


def test_report_renders_in_a_browser(rich_dir, other_run, tmp_path):
    import browser

    why = browser.unavailable()
    if why and os.environ.get("VALUELENS_REQUIRE_BROWSER"):
        pytest.fail(f"VALUELENS_REQUIRE_BROWSER is set but {why}")
    if why:
        pytest.skip(f"browser check skipped: {why}")
    dest = build_comparison([rich_dir, other_run], tmp_path / "cmp.html")
    page = browser.open_page(dest, ARTIFACTS / "report-comparison.png", timeout=60)
    assert page.errors == [], page.errors
    assert page.foreign_requests == [] and page.url in page.page_requests
    expected = {"layer-first_token", "layer-dilemmas", "layer-def", "layer-mark", "comparisons"}
    assert expected <= {p["section"] for p in page.plots}
    html = dest.read_text(encoding="utf-8")
    assert len(page.plots) == html.count('<div class="plot"')
    assert all(p["rendered"] and p["svg"] for p in page.plots), page.plots
    # every layer figure type is drawn, in its layer's section
    drawn = {p["figure"]: p["section"] for p in page.plots if p["figure"]}
    assert FIGURES <= set(drawn), FIGURES - set(drawn)
    assert all(drawn[f] == _section_of(f) for f in FIGURES), {f: drawn[f] for f in FIGURES}
    # the MARK trace viewer shows one trace, and another when one is picked
    (viewer,) = page.traces
    assert viewer["id"] == "mark-traces" and viewer["options"] == html.count("<option ") > 1
    assert len(viewer["before"]) == 1 and viewer["after"] == [viewer["chosen"]] != viewer["before"]
    assert "6. Explanation" in viewer["text"] or "invalid" in viewer["text"]
    assert {"summary", "layer-def", "layer-mark", "run", "catalogue"} <= set(page.sections)
    assert page.screenshot and page.screenshot.stat().st_size > 10_000
    assert page.load_seconds < 60  # under load 17 on the shared 2-core machine a 25 s limit timed out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_overview_and_steering_render_in_a_browser(rich_dir, tmp_path, lang):
    """Screenshot-level: the overview heat map and the steering figure as Chromium draws them, in English and
    in Chinese: every model a column, every headline measure a row, the values in the cells; the steering bars
    with the table's pairs; titles in the report's language."""
    import browser
    from valuelens.report import i18n
    from valuelens.report.i18n_zh import ZH

    why = browser.unavailable()
    if why and os.environ.get("VALUELENS_REQUIRE_BROWSER"):
        pytest.fail(f"VALUELENS_REQUIRE_BROWSER is set but {why}")
    if why:
        pytest.skip(f"browser check skipped: {why}")
    dest = tmp_path / "report.html"
    shutil.copy(build_report(rich_dir, lang), dest)
    t = (lambda s: ZH[s]) if lang == "zh" else (lambda s: s)
    shots = {"overview": ARTIFACTS / f"overview-{lang}.png", "steering": ARTIFACTS / f"steering-{lang}.png"}
    page = browser.open_page(dest, None, timeout=40, shots={
        "figure:has(div[data-figure=overview])": shots["overview"],
        "figure:has(div[data-figure=dilemma-steering])": shots["steering"]})
    assert page.errors == [] and page.foreign_requests == []
    assert page.lang == ("zh-CN" if lang == "zh" else "en")
    data = report_data(rich_dir)
    with i18n.language(lang):
        h = compute(data, seed=7)
        labels = [label(e) for e in h.entries if h.values[e.key].notna().any()]
    ov = page.drawn["overview"]
    assert set(ov["xticks"]) == set(h.models)  # a column per model
    assert set(ov["yticks"]) == set(labels)  # a row per headline measure (per culture, language, context)
    assert ov["heat"] >= 1  # the heat map itself is drawn
    flips = h.values.at["cn-model", "flip_rate|en"]
    assert f"{flips:.3f} ⚑" in ov["celltext"]  # values in the cells, the flag beside them
    el = page.elements["figure:has(div[data-figure=overview])"]
    assert t("Every model on every headline measure") in el["text"] and el["height"] > 26 * len(labels)
    st = page.drawn["dilemma-steering"]
    steer = pd.read_parquet(rich_dir / "results" / "dilemma_steering.parquet")
    both = steer[steer.requested_value == "both"]
    assert st["bars"] == len(both)  # one bar per model × language × method × pair
    assert set(st["xticks"]) >= set(both["pair"].astype(str))
    el = page.elements["figure:has(div[data-figure=dilemma-steering])"]
    assert t("Steering accuracy") in el["text"] and el["height"] > 300
    for path in shots.values():
        assert path.stat().st_size > 10_000  # a real picture, not a blank element
    assert page.load_seconds < 60  # a 5 MB page; on the shared 2-core machine under load it took up to 31 s
