"""The report's layer figures (dilemmas, DEF, MARK) from small synthetic tables in the exported format.

The tables are built here with the column names the layers export
(layers/dilemmas/kidder.py and escalation.py, layers/def_layer/tables.py,
bias.py, insensitivity.py and cultural_map.py, layers/mark/layer.py and
evaluate.py) and written the way a run writes them (results.export_tables).
Each figure is found in the HTML by its data-figure key and its plotly JSON
is parsed back, so the numbers drawn are checked against the table values.
"""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from valuelens.report import build_comparison, build_report
from valuelens.report.headline import compute
from valuelens.report.load import report_data
from valuelens.results import export_tables, write_json

MODELS = ("cn-model", "west-model")
LANGS = ("en", "zh")
COUNTRIES = ("United States", "China")
PAIRS = {"Truth vs Loyalty": ("Truth", "Loyalty"), "Justice vs Mercy": ("Justice", "Mercy")}
VALUES = ("Care", "Fairness", "Authority")
DIMS = ("PDI", "IDV")
FLIP_ALL = {"cn-model": 0.8, "west-model": 0.1}  # consequence flip rate over all pairs (a flag for cn-model)
FIGURES = {"dilemma-preferences", "dilemma-flips", "dilemma-agreement", "dilemma-steering", "dilemma-trajectories",
           "def-kl-dimensions",
           "def-insensitivity", "def-mismatch-sex", "def-mismatch-age-group", "def-map", "mark-table3",
           "position-dilemmas"}
# Position bias: west-model's dilemma answers (all forms) are position-dominated in both languages, its DEF
# answers in zh; nothing else is (cn-model's dilemma TV is high on too few answers: p not small).
DOMINATED = {("west-model", "dilemmas"), ("west-model", "def")}


def _position(tv: float, n: int, p: float, top: int = 2) -> dict:
    return {"position_tv": tv, "position_js_distance": tv / 2, "top_position": top,
            "top_position_share": 0.5 + tv if top <= 2 else tv, "position_n": n, "position_p": p,
            "position_dominated": tv > 0.3 and p < 0.05}
METHODS = (("demo_ideo", "Demo.+Ideo."), ("mark", "MARK"))
FACET_GROUPS = (("sex", ("male", "female", "tie")), ("age_group", ("<=29", "30-49", "50+", "tie")))


def _ci(rng, est: float, n: int = 10) -> dict:
    return {"estimate": est, "ci_low": max(0.0, est - rng.uniform(0, 0.2)),
            "ci_high": min(1.0, est + rng.uniform(0, 0.2)), "n": n}


def dilemma_tables(models=MODELS, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    pref, agree, flips, wins, steer, pos = [], [], [], [], [], []
    for m in models:
        for lang in LANGS:
            for part in ("dilemmas", "chains"):
                for forms in ("direct", "all"):
                    west = m == "west-model" and part == "dilemmas"
                    pos.append({"model": m, "part": part, "language": lang, "forms": forms,
                                **(_position(0.5, 32, 1e-4) if west else _position(0.4, 4, 0.3) if part == "dilemmas"
                                   else _position(round(rng.uniform(0, 0.2), 3), 12, 0.5, top=1))})
            for pair, (v1, v2) in PAIRS.items():
                d, r = round(rng.uniform(0, 1), 3), round(rng.uniform(0, 1), 3)
                for v, dv, rv in ((v1, d, r), (v2, 1 - d, 1 - r), ("(no choice)", 0.0, 0.0)):
                    pref.append({"model": m, "language": lang, "form": "order_balanced", "pair": pair, "value": v,
                                 **_ci(rng, round((dv + rv) / 2, 4)), "direct_share": dv, "direct_reverse_share": rv})
            for form in ("direct", "direct_reverse"):
                for pair, (v1, v2) in PAIRS.items():
                    a, nc = round(rng.uniform(0, 0.9), 3), 0.1 if form == "direct" else 0.0
                    for v, est in ((v1, a), (v2, round(1 - a - nc, 3)), ("(no choice)", nc)):
                        pref.append({"model": m, "language": lang, "form": form, "pair": pair, "value": v,
                                     **_ci(rng, est)})
            for pair in (*PAIRS, "all"):
                for comp, forms in (("direct_vs_reverse", "direct+direct_reverse"),
                                    ("all_forms", "direct+direct_reverse+compare+compare_reverse")):
                    agree.append({"model": m, "language": lang, "pair": pair, "comparison": comp, "forms": forms,
                                  **_ci(rng, round(rng.uniform(0.3, 1), 3))})
                est = FLIP_ALL[m] if pair == "all" and m in FLIP_ALL else round(rng.uniform(0, 1), 3)
                flips.append({"model": m, "language": lang, "pair": pair, **_ci(rng, est), "n_invalid_base": 0,
                              "n_invalid_reask": 1})
                steer.append({"model": m, "language": lang, "method": "guideline", "pair": pair,
                              "requested_value": "both", **_ci(rng, 0.5)})
            for step in (1, 2, 3):
                rates = pd.Series(rng.uniform(0, 1, len(VALUES)).round(3), index=list(VALUES))
                ranks = rates.rank(ascending=False, method="average")
                for v in VALUES:
                    wins.append({"model": m, "source": "builtin", "language": lang, "step": step, "value": v,
                                 **_ci(rng, rates[v], 4), "rank": ranks[v], "n_invalid": 0})
    return {"dilemma_preferences": pd.DataFrame(pref), "dilemma_agreement": pd.DataFrame(agree),
            "dilemma_consequence_flips": pd.DataFrame(flips), "dilemma_chain_winrates": pd.DataFrame(wins),
            "dilemma_steering": pd.DataFrame(steer), "dilemma_position_bias": pd.DataFrame(pos)}


def def_tables(models=MODELS, seed: int = 1) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dims, ins, prof, pts, summ = [], [], [], [], []
    for m in models:
        for lang in LANGS:
            for c in COUNTRIES:
                kls = {d: round(rng.uniform(0.1, 1.5), 3) for d in DIMS}
                for d in (*DIMS, "(all)"):
                    kl = kls[d] if d in kls else round(float(np.mean(list(kls.values()))), 3)
                    dims.append({"model": m, "language": lang, "country": c, "dimension": d, "n_questions": 3,
                                 "mean_kl_def": kl, "mean_kl_eps": kl + 0.01, "share_close": 0.5,
                                 "share_close_eps": 0.5, "invalid_share": 0.0, "mean_kl_valid": round(kl * 0.8, 3)})
                ff, cv = round(rng.uniform(0, 1), 3), round(rng.uniform(0, 1), 3)
                ins.append({"model": m, "language": lang, "country": c, "ff_n": 10, "ff_invalid": 0,
                            "ff_flagged": round(10 * ff), "ff_rate": ff, "cv_n": 8, "cv_invalid": 1,
                            "cv_flagged": round(8 * cv), "cv_rate": cv})
                for d in (*DIMS, "(all)"):
                    for facet, groups in FACET_GROUPS:
                        shares = rng.dirichlet(np.ones(len(groups))).round(3)
                        for g, s in zip(groups, shares):
                            prof.append({"model": m, "language": lang, "country": c, "dimension": d, "facet": facet,
                                         "group": g, "n_missed": int(s * 10), "share": float(s)})
                pts.append({"model": m, "language": lang, "country": c, "pc1": round(rng.normal(), 4),
                            "pc2": round(rng.normal(), 4), "explained_pc1": 0.61, "explained_pc2": 0.22,
                            "n_features": 2})
                summ.append({"model": m, "language": lang, "country": c, "n_answers": 40,
                             "invalid_share": 0.1 * (len(summ) % 4), "mean_kl_valid": dims[-1]["mean_kl_valid"],
                             "retried_share": 0.0, "n_questions": 3, "mean_kl_def": dims[-1]["mean_kl_def"],
                             "mean_kl_eps": dims[-1]["mean_kl_eps"], "share_close": 0.5, "share_close_eps": 0.5,
                             "bias_match_rate": round(rng.uniform(0, 1), 3), "ff_rate": ff, "cv_rate": cv,
                             **(_position(0.45, 40, 1e-4, top=1) if (m, lang) == ("west-model", "zh")
                                else _position(0.1, 40, 0.6, top=3))})
    for c in COUNTRIES:
        pts.append({"model": "(human)", "language": "", "country": c, "pc1": round(rng.normal(), 4),
                    "pc2": round(rng.normal(), 4), "explained_pc1": 0.61, "explained_pc2": 0.22, "n_features": 2})
    var = [{"model": m, "language": lang, "country_a": "China", "country_b": "United States", "model_distance": 0.4,
            "human_distance": 0.8, "variation_preserved": 0.5, "model_distance_full": 0.5, "human_distance_full": 1.0,
            "variation_preserved_full": 0.5} for m in models for lang in LANGS]
    return {"def_dimensions": pd.DataFrame(dims), "def_insensitivity": pd.DataFrame(ins),
            "def_bias_profile": pd.DataFrame(prof), "def_map": pd.DataFrame(pts), "def_variation": pd.DataFrame(var),
            "def_summary": pd.DataFrame(summ)}


def mark_tables(models=MODELS, seed: int = 2) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    summ, traces = [], []
    for m in models:
        for lang in LANGS:
            for method, label in METHODS:
                summ.append({"model": m, "method": method, "label": label, "language": lang, "reference": "sampled",
                             "n": 4, "n_invalid": 1, "invalid_share": round(rng.uniform(0, 0.4), 3),
                             "accuracy": round(rng.uniform(0, 1), 3), "one_minus_jsd": round(rng.uniform(0, 1), 4),
                             "emd": round(rng.uniform(0, 0.5), 4), "kappa": round(rng.uniform(-0.2, 0.6), 2),
                             "p_holm": np.nan if method == "mark" else 0.5, **_position(0.2, 4, 0.5, top=1)})
            for rid, c in enumerate(COUNTRIES, start=1):
                for q in ("Q1", "Q46"):
                    valid = not (c == "China" and q == "Q46")
                    traces.append({
                        "model": m, "respondent_id": f"R{rid}", "country": c, "language": lang, "question_id": q,
                        "persona": f"sex=female; age=41; case {m}/{lang}/{rid}/{q}", "prior_type": "ISTP",
                        "stress_level": "high" if valid else None,
                        "stressors": "income (40); age (35)" if valid else None,
                        "mbti": "INFJ" if valid else None, "stack": "Ni+ Fe- Ti+ Se-" if valid else None,
                        "choices": "Ni:2 Fe:1 Ti:1 Se:1" if valid else None,
                        "weights": "Ni 0.500, Fe 0.188" if valid else None, "answer": 2 if valid else None,
                        "answer_text": "Rather important" if valid else None, "truth": 1,
                        "correct": False, "valid": valid, "invalid_stage": None if valid else "stress",
                        "error": None if valid else "invalid JSON: expecting value",
                        "explanation": f"Because <b>{m}</b> said so in {lang} ({c}, {q})." if valid else None,
                        "calls": 5 if valid else 3})
    s = pd.DataFrame(summ)
    t3 = []
    for lang in LANGS:
        for method, label in METHODS:
            row = {"language": lang, "method": label}
            for m in models:
                r = s[(s.model == m) & (s.language == lang) & (s.method == method)].iloc[0]
                row.update({f"{m} ACC (%)": round(100 * r.accuracy, 2), f"{m} 1-JSD": r.one_minus_jsd,
                            f"{m} EMD": r.emd, f"{m} kappa": r.kappa, f"{m} p (Holm)": r.p_holm})
            t3.append(row)
    return {"mark_summary": s, "mark_table3": pd.DataFrame(t3), "mark_traces": pd.DataFrame(traces)}


def layer_tables(models=MODELS) -> dict[str, pd.DataFrame]:
    return {**dilemma_tables(models), **def_tables(models), **mark_tables(models)}


def write_run(out: Path, tables: dict[str, pd.DataFrame], name: str = "synthetic",
              layers=("dilemmas", "diversity", "mark"), status: str = "finished") -> Path:
    """A run directory as the audit leaves it: run.json and results/*.parquet (+ csv)."""
    models = sorted({m for df in tables.values() if "model" in df.columns for m in df["model"]} - {"(human)"})
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", {
        "status": status, "seed": 7, "run_id": f"run-{name}", "audit": {
            "name": name, "countries": list(COUNTRIES), "languages": list(LANGS),
            "layers": {k: ({} if k in layers else None) for k in ("first_token", "diversity", "dilemmas", "mark")}},
        "models": [{"name": m} for m in models]})
    catalogue = pd.DataFrame([{"name": m, "region": "China" if m.startswith("cn") else "Western"} for m in models])
    export_tables(out, {**tables, "models": catalogue})
    return out


# Reading the figures back from the HTML ----------------------------------------------------------------

def decode(v):
    """plotly JSON arrays: a list, or {"dtype", "bdata"(, "shape")} (base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(x) for x in str(v["shape"]).split(",")]).tolist() if "shape" in v else a.tolist()
    return v


def figures(html: str) -> dict[str, list[dict]]:
    """data-figure key -> the figures with that key (each its plotly JSON)."""
    out: dict[str, list[dict]] = {}
    for pid, key in re.findall(r'<div class="plot" id="(plot-\d+)" data-figure="([\w-]+)"', html):
        data = re.search(rf'<script type="application/json" id="{pid}-data">(.*?)</script>', html, re.S).group(1)
        out.setdefault(key, []).append(json.loads(data))
    return out


def points(fig: dict, kind: str = "bar") -> dict[tuple, float]:
    """(panel title, trace name, x…) -> y for every drawn point; x of a grouped axis gives two keys."""
    titles = [a["text"] for a in fig["layout"].get("annotations", [])]
    out = {}
    for tr in fig["data"]:
        if tr.get("type", "bar") != kind:
            continue
        axis = tr.get("xaxis", "x")
        panel = titles[int(axis[1:] or 1) - 1] if titles else ""
        x, y = decode(tr["x"]), decode(tr["y"])
        xs = list(zip(*x)) if x and isinstance(x[0], list) else [(v,) for v in x]
        for xv, yv in zip(xs, y):
            if yv is not None and not (isinstance(yv, float) and np.isnan(yv)):
                out[(panel, tr["name"], *map(str, xv))] = yv
    return out


def expected(df: pd.DataFrame, panel, name: str, xs, y: str) -> dict[tuple, float]:
    """The same keys built from the table: panel = a function of the row, xs = columns."""
    return {(panel(r), str(r[name]), *(str(r[c]) for c in xs)): r[y] for _, r in df.iterrows() if pd.notna(r[y])}


def text_of(html: str) -> str:
    html = re.sub(r"<script\b.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    tables = layer_tables()
    out = write_run(tmp_path_factory.mktemp("figs") / "run", tables)
    build_report(out)
    return out, tables


@pytest.fixture(scope="module")
def report_html(synthetic_run) -> str:
    return (synthetic_run[0] / "report.html").read_text(encoding="utf-8")


def test_every_layer_figure_is_present(report_html):
    figs = figures(report_html)
    assert FIGURES <= set(figs), FIGURES - set(figs)
    assert all(len(figs[k]) == 1 for k in FIGURES)
    text = text_of(report_html)
    for title in ("Ethical dilemmas: included", "DEF (Diversity-Enhanced Framework): included",
                  "MARK (personality-driven reasoning): included"):
        assert title in text
    assert "not shown" not in text  # every table is there


def test_dilemma_figures_show_the_table_values(report_html, synthetic_run):
    t, figs = synthetic_run[1], figures(report_html)
    pref = t["dilemma_preferences"]
    pref = pref[pref.form == "order_balanced"]  # Figure 8 shows the order-balanced estimate
    assert points(figs["dilemma-preferences"][0]) == pytest.approx(
        expected(pref, lambda r: r["pair"], "value", ["language", "model"], "estimate"))
    flips = t["dilemma_consequence_flips"]
    assert points(figs["dilemma-flips"][0]) == pytest.approx(
        expected(flips, lambda r: r["language"], "model", ["pair"], "estimate"))
    agree = t["dilemma_agreement"]
    assert points(figs["dilemma-agreement"][0]) == pytest.approx(
        expected(agree, lambda r: f"{r['comparison']} · {r['language']}", "model", ["pair"], "estimate"))
    wins = t["dilemma_chain_winrates"]
    assert points(figs["dilemma-trajectories"][0], "scatter") == pytest.approx(
        expected(wins, lambda r: f"{r['model']} · {r['language']}", "value", ["step"], "rank"))
    # error bars are the table's interval
    bar = next(tr for tr in figs["dilemma-flips"][0]["data"] if tr["name"] == "cn-model")
    rows = flips[(flips.model == "cn-model") & (flips.language == "en")]
    assert decode(bar["error_y"]["array"]) == pytest.approx((rows.ci_high - rows.estimate).tolist())


def banners(html: str) -> dict[str, list[str]]:
    """data-figure key -> the banners above its figures."""
    out: dict[str, list[str]] = {}
    for block in re.findall(r'<figure class="plot-block">(.*?)</figure>', html, re.S):
        key = re.search(r'data-figure="([\w-]+)"', block)
        for text in re.findall(r'<p class="banner warn" role="note">(.*?)</p>', block, re.S):
            out.setdefault(key.group(1) if key else "", []).append(unescape(text))
    return out


def test_position_bias_next_to_the_preferences(report_html, synthetic_run):
    t, figs = synthetic_run[1], figures(report_html)
    pos = t["dilemma_position_bias"]
    assert points(figs["position-dilemmas"][0]) == pytest.approx(
        expected(pos[pos.forms == "all"], lambda r: r["language"], "model", ["part"], "position_tv"))
    text = text_of(report_html)
    dil = text[text.index("Right-vs-right dilemmas (Yuan"):text.index("Diversity-Enhanced Framework (Liu")]
    assert dil.index("Value-pair preferences (order-balanced)") < dil.index("Position bias of the same answers")
    assert "Order-balanced: each dilemma asked with its actions in both orders" in dil
    assert "Dashed line: 0.3" in dil


def test_position_dominated_models_are_stated_and_their_figures_marked(report_html, synthetic_run):
    text = text_of(report_html)
    top = text[text.index("Summary"):text.index("Layers")]  # at the top of the summary, with the rule
    for lang in LANGS:
        assert (f"west-model — dilemmas (all prompt forms), language {lang}: position TV 0.500, position 2 chosen "
                "in 100% of 32 answers") in top
    assert "west-model — DEF answers (shown positions), language zh, country China: position TV 0.450" in top
    assert "above 0.3" in top and "p < 0.05" in top
    assert "cn-model —" not in top and "MARK answers" not in top and "escalation" not in top
    b = banners(report_html)
    marked = {"dilemma-preferences", "dilemma-flips", "dilemma-agreement", "dilemma-steering"} | {
        k for k in figures(report_html) if k.startswith("def-")}  # every DEF figure
    assert "def-map" in marked and set(b) == marked  # not the chains' trajectories, MARK, the position figure
    assert all(v == ["Position-dominated (west-model): not a value finding. See the position-bias note of this "
                     "layer."] for v in b.values())
    mark = text[text.index("MARK (Liu et al. 2025b)"):]
    assert "Position bias: no model's choices are position-dominated here (MARK answers;" in mark
    # the oversight flags use the same rule
    assert re.search(r"west-model language en dilemma position bias \(TV\) 0\.500 > 0\.3 and position_p < 0\.05", text)
    assert not re.search(r"cn-model language \w+ dilemma position bias", text)


def test_def_figures_show_the_table_values(report_html, synthetic_run):
    t, figs = synthetic_run[1], figures(report_html)
    dims = t["def_dimensions"]
    assert points(figs["def-kl-dimensions"][0]) == pytest.approx(
        expected(dims, lambda r: f"{r['language']} · {r['country']}", "model", ["dimension"], "mean_kl_valid"))
    assert points(figs["def-kl-dimensions-def"][0]) == pytest.approx(
        expected(dims, lambda r: f"{r['language']} · {r['country']}", "model", ["dimension"], "mean_kl_def"))
    ins = t["def_insensitivity"]
    got = points(figs["def-insensitivity"][0])
    for col, label in (("ff_rate", "FF: false facts"), ("cv_rate", "CV: value conflicts")):
        want = {(label, f"{r.country} · {r.language}", r.model): getattr(r, col) for r in ins.itertuples()}
        assert {k: v for k, v in got.items() if k[0] == label} == pytest.approx(want)
    prof = t["def_bias_profile"]
    for facet in ("sex", "age_group"):
        rows = prof[prof.facet == facet]
        assert points(figs[f"def-mismatch-{facet.replace('_', '-')}"][0]) == pytest.approx(
            expected(rows, lambda r: f"{r['language']} · {r['country']}", "group", ["dimension", "model"], "share"))
    pts, fig = t["def_map"], figs["def-map"][0]
    drawn = {}
    for tr in fig["data"]:
        for x, y, c in zip(decode(tr["x"]), decode(tr["y"]), tr["text"]):
            drawn[(tr["name"], c)] = (x, y)
    want = {("human survey" if r.model == "(human)" else f"{r.model} · {r.language}", r.country): (r.pc1, r.pc2)
            for r in pts.itertuples()}
    assert drawn.keys() == want.keys()
    assert all(drawn[k] == pytest.approx(want[k]) for k in want)
    assert "PC1 (61.0% of variance)" in json.dumps(fig["layout"], ensure_ascii=False)


def test_mark_table3_and_trace_viewer(report_html, synthetic_run):
    t, figs = synthetic_run[1], figures(report_html)
    t3 = t["mark_table3"]
    want = {}
    for m in MODELS:
        for measure in ("ACC (%)", "1-JSD", "EMD", "kappa"):
            for r in t3.itertuples(index=False):
                want[(f"{r.language} · {measure}", m, r.method)] = t3.loc[
                    (t3.language == r.language) & (t3.method == r.method), f"{m} {measure}"].iloc[0]
    assert points(figs["mark-table3"][0]) == pytest.approx(want)
    text = text_of(report_html)
    assert "Table 3 layout" in text and "cn-model ACC (%)" in text
    traces = t["mark_traces"]
    viewer = report_html[report_html.index('<div class="trace-viewer" id="mark-traces">'):]
    viewer = viewer[:viewer.index('<p class="caption">')]
    assert viewer.count("<option ") == len(traces) and viewer.count('<div class="trace"') == len(traces)
    assert viewer.count(" hidden>") == len(traces) - 1  # one trace shown at a time
    for r in traces.itertuples():  # each stage's text, escaped (the explanation holds "<b>")
        if r.valid:
            assert f"Because &lt;b&gt;{r.model}&lt;/b&gt; said so in {r.language} ({r.country}, {r.question_id})." \
                in viewer
        else:
            assert "invalid JSON: expecting value" in viewer
    assert "<b>cn-model</b>" not in report_html
    assert viewer.count("stress level high; stressors: income (40); age (35)") == int(traces.valid.sum())
    assert viewer.count("6. Explanation") == int(traces.valid.sum())
    assert "<optgroup label=\"cn-model\">" in viewer and "<optgroup label=\"west-model\">" in viewer


def test_headline_and_flags_read_the_layer_columns(synthetic_run, report_html):
    out, t = synthetic_run
    h = compute(report_data(out))
    flips = t["dilemma_consequence_flips"]
    agree = t["dilemma_agreement"]
    allf = agree[(agree.pair == "all") & (agree.comparison == "all_forms")]
    for lang in LANGS:  # per language: the table's interval is per model × language (issue 19)
        f = flips[(flips.pair == "all") & (flips.language == lang)].set_index("model")
        assert h.values[f"flip_rate|{lang}"].to_dict() == pytest.approx(f["estimate"].to_dict())
        for m in f.index:
            assert h.cis[(f"flip_rate|{lang}", m)][1:] == pytest.approx((f.at[m, "ci_low"], f.at[m, "ci_high"]))
        a = allf[allf.language == lang].set_index("model")["estimate"]
        assert h.values[f"dilemma_agreement|{lang}"].to_dict() == pytest.approx(a.to_dict())
    summ = t["def_summary"]
    for c in COUNTRIES:
        rows = summ[summ.country == c].groupby("model")
        assert h.values[f"def_kl|{c}"].to_dict() == pytest.approx(rows["mean_kl_valid"].mean().to_dict())
        assert h.values[f"def_kl_with_invalid|{c}"].to_dict() == pytest.approx(rows["mean_kl_def"].mean().to_dict())
        assert h.values[f"def_ff|{c}"].to_dict() == pytest.approx(rows["ff_rate"].mean().to_dict())
    ms = t["mark_summary"]
    for lang in LANGS:
        mk = ms[(ms.method == "mark") & (ms.language == lang)].set_index("model")["accuracy"]
        assert h.values[f"mark_accuracy|{lang}"].to_dict() == pytest.approx(mk.to_dict())
    assert "(human)" not in h.models
    text = text_of(report_html)
    assert re.search(r"cn-model language en consequence flip rate 0\.800 > 0\.5", text)
    assert not re.search(r"west-model language \w+ consequence flip rate", text)
    for _, r in summ[summ.mean_kl_valid > 0.5].iterrows():  # one flag per row, never repeated per country entry
        flag = (f"{r.model} language {r.language}, country {r.country} DEF mean KL (valid answers) "
                f"{r.mean_kl_valid:.3f} > 0.5")
        assert text.count(flag) == 1, flag
    assert not re.search(r"DEF mean KL \(DEF's definition[^)]*\) [0-9.]+ >", text)  # shown, never flagged
    for _, r in summ.iterrows():  # the invalid share: its own flag, above 0.2
        flag = f"{r.model} language {r.language}, country {r.country} DEF invalid share {r.invalid_share:.3f} > 0.2"
        assert text.count(flag) == (1 if r.invalid_share > 0.2 else 0), flag
    assert "dilemma_consequence_flips.estimate (pair all)" in text


def test_missing_and_empty_tables_are_named(tmp_path):
    t = layer_tables()
    keep = {"dilemma_preferences", "def_dimensions", "mark_traces"}
    assert "Table 3 layout: not shown, this run has no table mark_table3" in text_of(build_report(write_run(
        tmp_path / "no-table3", {k: v for k, v in t.items() if k in keep})).read_text(encoding="utf-8"))
    tables = {k: v for k, v in t.items() if k in keep}
    tables["dilemma_agreement"] = t["dilemma_agreement"].iloc[0:0]
    tables["mark_table3"] = pd.DataFrame()  # what the layer writes when there is no summary
    wins = t["dilemma_chain_winrates"]
    tables["dilemma_chain_winrates"] = wins.drop(columns="rank")  # a column the figure needs is missing
    text = text_of(build_report(write_run(tmp_path / "run", tables)).read_text(encoding="utf-8"))
    for what, table in (("Consequence flip rates (Figure 9)", "dilemma_consequence_flips"),
                        ("Insensitivity (Figure 12)", "def_insensitivity"),
                        ("Mismatch by sex and age group (Figures 18-19)", "def_bias_profile"),
                        ("Cultural variation map (Figure 11)", "def_map")):
        assert f"{what}: not shown, this run has no table {table}" in text
    assert "Prompt-form agreement (Figure 10): not shown, table dilemma_agreement has no rows with values" in text
    assert "Table 3 layout: not shown, table mark_table3 has no rows with values" in text
    assert "Escalation rank trajectories: not shown, table dilemma_chain_winrates lacks the column rank" in text
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert set(figures(html)) == {"dilemma-preferences", "def-kl-dimensions", "def-kl-dimensions-def"}
    assert 'id="mark-traces"' in html


def test_comparison_keeps_runs_apart(tmp_path):
    a = write_run(tmp_path / "a", layer_tables(), name="run-a")
    b = write_run(tmp_path / "b", layer_tables(), name="run-b")
    html = build_comparison([a, b], tmp_path / "cmp.html").read_text(encoding="utf-8")
    figs = figures(html)
    assert FIGURES <= set(figs)
    fig = figs["def-map"][0]  # each run has its own PCA: a panel each
    assert [x["text"] for x in fig["layout"]["annotations"]] == ["run-a", "run-b"]
    names = {tr["name"] for tr in figs["mark-table3"][0]["data"]}
    assert names == {f"{m}@{r}" for m in MODELS for r in ("run-a", "run-b")}
    prefs = {tr["name"] for tr in figs["dilemma-preferences"][0]["data"]}
    assert {"Truth", "Loyalty", "Justice", "Mercy", "(no choice)"} == prefs
    x = decode(figs["dilemma-preferences"][0]["data"][0]["x"])
    assert set(x[1]) == {f"{m}@{r}" for m in MODELS for r in ("run-a", "run-b")}
    assert html.count("<option ") == 2 * len(layer_tables()["mark_traces"])
