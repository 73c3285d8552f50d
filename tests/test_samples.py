"""The ``samples`` table (issue 23): every model call a layer made, with its prompt, reply or option
distribution, parsed answer, validity and cache key; every sample joins a layer table row on
(model, table, row_id) and every row of a complete sample table has its samples; a run killed with
SIGKILL and resumed writes the same samples as an uninterrupted one."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_demo import _script
from test_kill_resume import _stored, kill_at
from valuelens import api as vl
from valuelens.config import demo_audit_text, parse_audit
from valuelens.layers.samples import COLUMNS, SAMPLE_TABLES, unjoined
from valuelens.results import read_tables
from valuelens.store import STORE_NAME, call_key


def _demo_yaml(tmp_path: Path, out: Path, *, generate: bool = False) -> str:
    """The demo audit (all four layers) on two scripted models, the DEF judge on; ``generate``: dilemmas
    answered by 2 sampled replies instead of first-token probabilities."""
    raw = yaml.safe_load(demo_audit_text())
    script = _script(tmp_path / "script.json")
    other = json.loads(script.read_text(encoding="utf-8"))
    other["default_text"] = "B. no, because"
    (tmp_path / "other.json").write_text(json.dumps(other, ensure_ascii=False), encoding="utf-8")
    raw["models"] = [{"name": "s", "backend": f"scripted:{script}"},
                     {"name": "t", "backend": f"scripted:{tmp_path / 'other.json'}"}]
    raw["layers"]["def"]["insensitivity"]["judge"] = {}
    raw["layers"]["dilemmas"]["limit"] = 2
    raw["layers"]["dilemmas"]["escalation"]["limit"] = 2
    if generate:
        raw["layers"]["dilemmas"].update(mode="generate", samples=2, temperature=0.7)
    raw["output_dir"] = str(out)
    return yaml.safe_dump(raw, allow_unicode=True)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("samples")
    out = d / "out"
    vl.run(parse_audit(_demo_yaml(d, out, generate=True), "demo.yaml"))
    return out


@pytest.fixture(scope="module")
def demo(demo_out) -> dict[str, pd.DataFrame]:
    return read_tables(demo_out)


def test_every_sample_joins_a_layer_row_and_every_row_its_samples(demo):
    samples = demo["samples"]
    assert list(samples.columns) == COLUMNS
    assert set(samples["layer"]) == set(SAMPLE_TABLES) and set(samples["model"]) == {"s", "t"}
    orphans, missing = unjoined(samples, demo)
    assert orphans == [] and missing == []
    for spec in (t for ts in SAMPLE_TABLES.values() for t in ts if t.complete and t.table in demo):
        rows = demo[spec.table]
        joined = rows.merge(samples[samples["table"] == spec.table], on=["model", "row_id"], how="left",
                            indicator=True)
        assert (joined["_merge"] == "both").all(), spec.table
        assert not rows.duplicated(["model", "row_id"]).any(), spec.table  # row_id is a key
    # the tables asked in this audit, each with its calls (judge: only where judged)
    for table in ("first_token_items", "dilemma_responses", "dilemma_chain_responses", "def_answers",
                  "def_insensitivity_items", "mark_traces", "mark_responses"):
        assert (samples["table"] == table).any(), table
    assert set(samples.loc[samples["table"] == "first_token_items", "part"]) == {"", "reply"}
    assert samples["part"].str.startswith("reason").any() and samples["part"].str.contains("#repair").sum() == 0


def _v(x):
    return None if x is None or (isinstance(x, float) and pd.isna(x)) else x


def test_samples_say_what_the_layer_tables_say(demo):
    """Independently of the samples code: the layer tables' own reply and probability columns."""
    s = demo["samples"]
    # DEF: one sample per answer row, its reply the row's reply
    d = demo["def_answers"].merge(s[s["table"] == "def_answers"], on=["model", "row_id"], suffixes=("", "_s"))
    assert len(d) == len(demo["def_answers"])
    assert (d["reply"].fillna("") == d["reply_s"].fillna("")).all()
    assert (d["valid"] == d["valid_s"]).all() and (d["option"].fillna("-") == d["parsed"].fillna("-")).all()
    # first-token: each option's probability in first_token_options is the sample's
    opts = demo["first_token_options"]
    ft = s[(s["table"] == "first_token_items") & (s["part"] == "")]
    probs = {(m, r): json.loads(p) for m, r, p in zip(ft["model"], ft["row_id"], ft["probs"])}
    for row in opts.itertuples():
        p = probs[(row.model, f"{row.condition}|{row.language}|{row.country}|{row.question_id}")]
        assert p[row.option] == pytest.approx(row.prob, abs=1e-12)
    replies = s[(s["table"] == "first_token_items") & (s["part"] == "reply")]
    items = demo["first_token_items"].set_index(["model", "row_id"])
    for m, r, reply, parsed in zip(replies["model"], replies["row_id"], replies["reply"], replies["parsed"]):
        assert items.loc[(m, r), "reply"] == reply
        assert _v(items.loc[(m, r), "reply_option"]) == _v(parsed)
    # dilemmas (2 sampled replies per prompt): the row's shares are the shares of its samples' parsed labels
    dil = s[s["table"] == "dilemma_responses"]
    assert (dil.groupby(["model", "row_id"]).size() == 2).all()
    assert set(dil["sample"]) == {0, 1}
    # option calls: the parsed answer is the most probable label
    opt = s[s["kind"] == "option_distribution"]
    assert len(opt) and all(p == max(json.loads(q), key=json.loads(q).get) for p, q in zip(opt["parsed"], opt["probs"]))


def test_cache_keys_and_prompts_are_the_stores(demo, demo_out):
    """Every answered sample's call_key is a stored call with the same messages; the key is the store's hash
    of the model identity (run.json) and the request."""
    out = demo_out
    s = demo["samples"]
    ident = {m["name"]: m["identity"] for m in json.loads((out / "run.json").read_text())["models"]}
    with sqlite3.connect(out / STORE_NAME) as c:
        stored = {k: json.loads(r) for k, r in c.execute("SELECT key, request FROM calls")}
    answered = s[s["failure"] == ""]
    assert set(answered["call_key"]) <= set(stored)
    for row in answered.drop_duplicates("call_key").itertuples():
        req = stored[row.call_key]
        assert req["messages"] == json.loads(row.messages)
        assert call_key(ident[row.model], req) == row.call_key
    # every stored call is some sample's (nothing the layers asked is missing from the table)
    assert set(stored) == set(answered["call_key"])


# --- SIGKILL and resume ------------------------------------------------------------------------------

def _resume_audit(tmp_path: Path, out: Path) -> Path:
    text = _demo_yaml(tmp_path, out)
    raw = yaml.safe_load(text)
    raw["chunk_size"] = 2
    raw["models"] = raw["models"][:1]
    for m in raw["models"]:
        script = Path(m["backend"].split(":", 1)[1])
        data = json.loads(script.read_text(encoding="utf-8"))
        data["delay"] = 0.004  # a kill lands mid-layer
        script.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    p = tmp_path / f"{out.name}.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return p


def _run(audit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_samples_are_the_same_after_sigkill_and_resume(tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r = _run(_resume_audit(tmp_path / "a", ref_out))
    assert r.returncode == 0, r.stderr
    total = _stored(ref_out)
    audit = _resume_audit(tmp_path / "b", out)
    kills = kill_at(audit, out, (total // 5, total // 2, (4 * total) // 5))
    assert kills >= 2
    r = _run(audit)
    assert r.returncode == 0, r.stderr
    a = pd.read_parquet(ref_out / "results" / "samples.parquet")
    b = pd.read_parquet(out / "results" / "samples.parquet")
    assert len(a) > 100
    pd.testing.assert_frame_equal(a, b)  # the scripted identity is the script's content, not its path


# --- the report's sample browser ---------------------------------------------------------------------

# Click the first flag's link as a person would; then read what the browser shows.
CLICK_FLAG_JS = """
const a = document.querySelector('ul.flag-links a');
if (!a) return null;
a.click();
"""
CLICK_FIGURE_JS = """
document.querySelector('[data-figure="dilemma-trajectories"]').closest('figure').querySelector('a.samples-link').click();
"""
READ_BROWSER_JS = """
const root = document.getElementById('sample-browser');
const items = Array.from(root.querySelectorAll('.sample-list > li'));
items.slice(0, 3).forEach(li => li.querySelector('details').open = true);
const f = {};
root.querySelectorAll('[data-filter]').forEach(i => f[i.getAttribute('data-filter')] = i.value);
const r = root.getBoundingClientRect();
return {hash: location.hash, filters: f, matches: Number(root.getAttribute('data-matches')), shown: items.length,
        texts: items.slice(0, 3).map(li => li.innerText), visible: r.top < window.innerHeight && r.bottom > 0};
"""


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_report_flag_opens_the_samples_behind_it(demo, demo_out, tmp_path, lang):
    """In both report languages: a flag's link opens the sample browser on exactly its samples, a figure's
    link on its table's; the browser is drawn (its element's screenshot) with its fixed texts in the language."""
    import os

    import browser
    from valuelens.report import build_report
    from valuelens.report.samples import CAP, embedded

    why = browser.unavailable()
    if why and os.environ.get("VALUELENS_REQUIRE_BROWSER"):
        pytest.fail(f"VALUELENS_REQUIRE_BROWSER is set but {why}")
    if why:
        pytest.skip(f"browser check skipped: {why}")
    from valuelens.report.i18n_zh import ZH

    html = build_report(demo_out, lang)

    def act(driver):
        driver.execute_script(CLICK_FLAG_JS)
        time.sleep(0.3)
        flag = driver.execute_script(READ_BROWSER_JS)
        driver.execute_script(CLICK_FIGURE_JS)
        time.sleep(0.3)
        return flag, driver.execute_script(READ_BROWSER_JS)

    artifacts = Path(os.environ.get("VALUELENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
    page = browser.open_page(html, artifacts / f"report-samples-{lang}.png", timeout=120, act=act,
                             shots={"#samples": artifacts / f"sample-browser-{lang}.png"})
    assert page.errors == [], page.errors
    assert page.foreign_requests == []
    shot = page.elements["#samples"]
    assert shot["width"] > 300 and shot["height"] > 100 and Path(shot["path"]).stat().st_size > 5_000
    word = "search" if lang == "en" else ZH["search"]  # the browser's fixed texts are in the report's language
    assert word in shot["text"], shot["text"][:300]
    got, fig = page.acted
    assert got is not None, "no flag link in the report"
    # a figure's link: its layer's samples of the table it is drawn from
    trajectories = embedded(demo["samples"], CAP)
    trajectories = trajectories[trajectories["table"] == "dilemma_chain_responses"]
    assert fig["filters"]["table"] == "dilemma_chain_responses" and fig["filters"]["model"] == ""
    assert fig["matches"] == len(trajectories) > 0
    f = got["filters"]
    assert got["hash"].startswith("#samples?") and f["model"] and f["layer"] and got["visible"]
    # the samples the page shows are exactly the embedded ones of that model, layer (and language)
    s = embedded(demo["samples"], CAP)
    want = s[(s["model"] == f["model"]) & (s["layer"] == f["layer"])
             & ((s["language"] == f["language"]) if f["language"] else True)]
    assert got["matches"] == len(want) > 0 and got["shown"] == min(len(want), 200)
    # and each opened one shows its prompt and its reply (or its probabilities)
    for text, row in zip(got["texts"], want.itertuples()):
        first = json.loads(row.messages)[0]["content"].split("\n")[0].strip()
        assert first[:40] in text
        if row.kind == "generate":
            assert (row.reply or "—").split("\n")[0].strip()[:30] in text
        else:
            assert ("Option probabilities" if lang == "en" else ZH["Option probabilities"]) in text


def test_first_token_orders_content_free_prompts_and_wordings_have_their_samples(tmp_path):
    """permutations, calibrate and prompt_variants: one sample per order (part order:LETTERS), the shared
    content-free prompt once per item it calibrates, the other wordings under first_token_templates."""
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [], "default_text": "(B) yes"}))
    out = tmp_path / "out"
    vl.run(parse_audit(f"""\
name: ft
countries: [United States, China]
languages: [en, zh]
output_dir: {out}
models: [{{name: s, backend: "scripted:{script}"}}]
layers:
  first_token: {{limit: 3, permutations: cyclic, calibrate: true, prompt_variants: true}}
""", "ft.yaml"))
    t = read_tables(out)
    s, items = t["samples"], t["first_token_items"]
    assert unjoined(s, t) == ([], [])
    main = s[s["table"] == "first_token_items"]
    orders = main[main["part"].str.startswith("order:")]
    per_row = orders.groupby("row_id").size()
    assert (per_row.reindex(items["row_id"]).to_numpy() == items["n_options"].to_numpy()).all()  # cyclic: k orders
    assert set(orders["part"].str.len()) == {len("order:") + n for n in items["n_options"]}
    free = main[main["part"] == "content-free"]
    assert sorted(free["row_id"]) == sorted(items["row_id"])  # every item: its calibration prompt's sample
    assert free["call_key"].nunique() < len(free)  # shared prompts, one call each
    tpl = s[s["table"] == "first_token_templates"]
    assert len(tpl) and set(tpl["row_id"]) <= set(t["first_token_templates"]["row_id"])
    assert not tpl["row_id"].str.startswith("paper|").any()  # the paper's wording is the main run's rows
