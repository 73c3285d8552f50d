"""Cost and tokens, plan, budget caps (issue 20, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import valuelens.api as vl
from valuelens.cli import app
from valuelens.config import demo_audit_text, parse_audit
from valuelens.errors import ValueLensError
from valuelens.models.usage import Budget, BudgetReached, Meter, Usage, estimate_tokens
from valuelens.plan import plan_audit

RUNNER = CliRunner()


def _demo(tmp_path: Path, models: list[dict], *, retries: int = 1, out: str = "out",
          layers: tuple[str, ...] = ("first_token", "def", "dilemmas", "mark")) -> Path:
    """The demo audit's four layers, sized down, with retries on so call counts depend on the answers."""
    raw = yaml.safe_load(demo_audit_text())
    raw["models"] = models
    raw["output_dir"] = str(tmp_path / out)
    raw["chunk_size"] = 8
    lay = raw["layers"]
    lay["first_token"]["generate_check"] = True
    lay["def"].update(questions=["D01", "D04"], retries=retries)
    lay["dilemmas"].update(limit=1, escalation={"context": ["full", "none"], "limit": 1})
    lay["mark"].update(questions=["D01"], max_retries=retries, bootstrap=100, respondents_per_country=1)
    raw["layers"] = {k: v for k, v in lay.items() if k in layers}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _scripts(tmp_path: Path) -> tuple[Path, Path]:
    from test_demo import _script  # valid MARK stages for the US persona, invalid for China (retried)

    a = _script(tmp_path / "a.json")
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"rules": [], "default_text": "Answer: 9 no"}), encoding="utf-8")  # always invalid
    return a, b


def test_estimate_tokens_by_hand():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("中国人") == 3 and estimate_tokens("中国 ab") == 2 + 1  # 2 CJK + ceil(3/4)


def test_budget_caps_by_hand():
    b = Budget("m", max_calls=5, spent_calls=2)
    assert b.allow(8) == 3  # the chunk is cut to what is left
    b.charge([None, None, None])
    with pytest.raises(BudgetReached, match="max_calls 5"):
        b.allow(1)
    price = type("P", (), {"input": 2.0, "output": 10.0})()
    c = Budget("m", max_cost=0.001, price=price)
    assert c.allow(4) == 4
    c.charge([Usage(250, 50, "server")])  # 250 * 2 / 1e6 + 50 * 10 / 1e6 = 0.001
    assert c.spent_cost == pytest.approx(0.001)
    with pytest.raises(BudgetReached, match="max_cost"):
        c.allow(1)
    m = Meter()
    m.add(Usage(3, 1, "server"), cached=False)
    m.add(Usage(5, 2, "server"), cached=True)
    m.add(None, cached=True)
    snap = m.snapshot()
    assert (snap["calls_made"], snap["calls_cached"], snap["prompt_tokens"], snap["cached_prompt_tokens"],
            snap["cached_untracked"], snap["token_source"]) == (1, 2, 3, 5, 1, "server")
    m.add(Usage(7, 0, "estimate"), cached=False)
    d = Meter.difference(m.snapshot(), snap)  # one layer's counts: its own token source only
    assert (d["calls_made"], d["prompt_tokens"], d["token_source"]) == (1, 7, "estimate")
    assert m.snapshot()["token_source"] == "server+estimate"


def test_plan_counts_equal_the_calls_a_run_makes_on_scripted_models(tmp_path):
    a, b = _scripts(tmp_path)
    path = _demo(tmp_path, [{"name": "a", "backend": f"scripted:{a}", "price": {"input": 3, "output": 15}},
                            {"name": "b", "backend": f"scripted:{b}"}])
    audit = parse_audit(path.read_text(encoding="utf-8"), str(path))
    plan = plan_audit(audit)
    assert [(r.model, r.layer) for r in plan] == [(m, k) for m in ("a", "b")
                                                  for k in ("first_token", "def", "dilemmas", "mark")]
    assert all(r.exact for r in plan) and all(r.calls > 0 for r in plan)
    res = RUNNER.invoke(app, ["plan", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "out").exists()  # the plan writes nothing into the output directory
    vl.run(audit)
    progress = json.loads((tmp_path / "out" / "run.json").read_text())["progress"]
    for r in plan:
        got = progress[r.model][r.layer]
        assert got["state"] == "done"
        assert (got["calls_made"], got["calls_cached"]) == (r.calls, r.repeats), (r.model, r.layer)
        assert (got["prompt_tokens"], got["completion_tokens"]) == (r.prompt_tokens, r.completion_tokens)
        assert got["token_source"] == "estimate"
        if r.model == "a":  # the cost by hand: 3 and 15 per 1M tokens
            assert r.cost == pytest.approx((3 * r.prompt_tokens + 15 * r.completion_tokens) / 1e6)
            assert got["cost"] == pytest.approx(r.cost, abs=1e-6)
    # the retries are counted: model b's replies are all invalid, so DEF and MARK ask more than model a
    calls = {(r.model, r.layer): r.calls for r in plan}
    assert calls["b", "def"] > calls["a", "def"] and calls["b", "mark"] != calls["a", "mark"]
    for r in plan:
        assert f"{r.calls}" in res.output and r.layer in res.output
    assert "cost" in res.output


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted((out / "results").glob("*.parquet")) if p.stem != "models"}


def test_budget_cap_stops_a_model_and_a_rerun_resumes_without_loss(tmp_path):
    a, b = _scripts(tmp_path)
    models = [{"name": "a", "backend": f"scripted:{a}"}, {"name": "b", "backend": f"scripted:{b}"}]
    layers = ("first_token", "def", "mark")
    ref = _demo(tmp_path, models, out="ref", layers=layers)
    vl.run(ref)
    ref_progress = json.loads((tmp_path / "ref" / "run.json").read_text())["progress"]
    first = ref_progress["a"]["first_token"]["calls_made"]
    cap = first + 5  # first_token done, DEF stopped part-way
    capped = _demo(tmp_path, [{**models[0], "max_calls": cap}, models[1]], out="cut", layers=layers)
    vl.run(capped)
    run = json.loads((tmp_path / "cut" / "run.json").read_text())
    pa = run["progress"]["a"]
    assert pa["first_token"]["state"] == "done" and pa["def"]["state"] == "stopped: budget"
    assert pa["def"]["calls_made"] == 5 and pa["mark"]["state"] == "stopped: budget"
    assert {k: v["state"] for k, v in run["progress"]["b"].items()} == dict.fromkeys(pa, "done")
    rec = {m["name"]: m for m in run["models"]}["a"]
    assert rec["status"] == "stopped: budget" and rec["calls_made"] == cap and rec["budget"]["calls"] == cap
    assert run["status"] == "finished" and "a" in run["stopped_models"]
    cut = _tables(tmp_path / "cut")
    assert set(cut["first_token_items"]["model"]) == {"a", "b"} and set(cut["def_answers"]["model"]) == {"b"}
    res = RUNNER.invoke(app, ["status", str(tmp_path / "cut")], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "stopped: budget" in res.output and "max_calls" in res.output
    from valuelens.report import build_report

    report = build_report(tmp_path / "cut").read_text(encoding="utf-8")
    assert "a: stopped: budget (max_calls" in report and "first_token) are in the tables" in report
    # the same cap again: nothing more is made
    vl.run(capped)
    again = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert again["calls"]["calls_made"] == 0 and again["progress"]["a"]["def"]["state"] == "stopped: budget"
    # the cap raised: the rest is made, nothing twice, and the tables equal the uncapped run's
    raised = _demo(tmp_path, [{**models[0], "max_calls": 100000}, models[1]], out="cut", layers=layers)
    vl.run(raised)
    final = json.loads((tmp_path / "cut" / "run.json").read_text())
    total_ref = sum(v["calls_made"] for m in ref_progress.values() for v in m.values())
    assert run["calls"]["calls_made"] + final["calls"]["calls_made"] == total_ref
    assert {k: v["state"] for k, v in final["progress"]["a"].items()} == dict.fromkeys(pa, "done")
    got, want = _tables(tmp_path / "cut"), _tables(tmp_path / "ref")
    assert set(got) == set(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_like=False, obj=name)


def test_max_cost_needs_a_price(tmp_path):
    with pytest.raises(ValueLensError, match="max_cost needs price"):
        parse_audit("models: [{name: m, backend: embedded, max_cost: 1.0}]\nlayers: {first_token: {}}\n", "a.yaml")
    cfg = parse_audit("models: [{name: m, backend: embedded, max_cost: 1.0, max_calls: 3, price: {input: 1, "
                      "output: 2}}]\nlayers: {first_token: {}}\n", "a.yaml")
    assert "price" not in cfg.models[0].catalogue() and cfg.models[0].max_calls == 3


def test_max_cost_stops_after_the_chunk_that_reaches_it(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [], "default_text": "A"}), encoding="utf-8")
    path = tmp_path / "audit.yaml"
    # price 1e6 per 1M prompt tokens: the cost is the prompt tokens; chunks of 2 calls
    path.write_text(f"""\
name: cost
output_dir: {tmp_path / 'out'}
languages: [en]
chunk_size: 2
models:
  - {{name: m, backend: "scripted:{script}", price: {{input: 1000000, output: 0}}, max_cost: 150}}
layers:
  first_token: {{limit: 3, control: false}}
""", encoding="utf-8")
    vl.run(path)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    rec = run["progress"]["m"]["first_token"]
    assert rec["state"] == "stopped: budget" and "max_cost 150" in rec["why"]
    spent = rec["prompt_tokens"]
    assert rec["cost"] == spent >= 150
    import sqlite3

    with sqlite3.connect(tmp_path / "out" / "store.sqlite") as c:
        prompts = [json.loads(r[0])["usage"]["prompt"] for r in c.execute("SELECT response FROM calls ORDER BY rowid")]
    assert sum(prompts) == spent and len(prompts) == rec["calls_made"] and len(prompts) % 2 == 0
    assert sum(prompts[:-2]) < 150  # under the cap before the last chunk: it stopped after the chunk that reached it
    assert {m["name"]: m for m in run["models"]}["m"]["budget"]["cost"] == spent


def test_status_of_a_run_json_without_progress(tmp_path):
    """A run.json written before per-layer progress: each model's state for every configured layer."""
    (tmp_path / "run.json").write_text(json.dumps({
        "status": "finished", "audit": {"layers": {"first_token": {}, "mark": None, "def": {}},
                                        "models": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
        "models": [{"name": "a", "calls_made": 3}, {"name": "b", "status": "failed"}]}), encoding="utf-8")
    res = RUNNER.invoke(app, ["status", str(tmp_path)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    from valuelens.runstate import read_state

    st = read_state(tmp_path)
    assert {(r.model, r.layer): r.state for r in st.rows} == {
        ("a", "first_token"): "done", ("a", "def"): "done", ("b", "first_token"): "failed",
        ("b", "def"): "failed", ("c", "first_token"): "pending", ("c", "def"): "pending"}
    assert st.live is False and "finished" in res.output
