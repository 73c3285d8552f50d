"""Results while it runs (issue 20, item 5): tables after each model × layer, ``valuelens status``
during a run (a slow scripted model in another process), after it, and after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import valuelens.api as vl
from valuelens.cli import app
from valuelens.runstate import read_state

RUNNER = CliRunner()


def _audit(tmp_path: Path, delay: float) -> Path:
    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"rules": [], "default_text": "A", "delay": delay}), encoding="utf-8")
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps({"rules": [], "default_text": "B"}), encoding="utf-8")
    path = tmp_path / "audit.yaml"
    path.write_text(f"""\
name: status
output_dir: {tmp_path / 'out'}
languages: [en]
chunk_size: 4
models:
  - {{name: slow, backend: "scripted:{script}"}}
  - {{name: fast, backend: "scripted:{fast}"}}
layers:
  first_token: {{limit: 2, control: false}}
  dilemmas: {{limit: 2, forms: [direct, direct_reverse], consequences: false, steering: false}}
""", encoding="utf-8")
    return path


def _wait(out: Path, ok, proc: subprocess.Popen, limit: float = 90.0):
    end = time.time() + limit
    while time.time() < end:
        if (out / "run.json").is_file():
            try:
                st = read_state(out)
            except Exception:  # noqa: BLE001 - run.json between two writes is never half-written, but retry
                st = None
            if st is not None and ok(st):
                return st
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the run ended"
        time.sleep(0.05)
    raise AssertionError("the run did not get there in time")


def _states(st) -> dict[tuple[str, str], str]:
    return {(r.model, r.layer): r.state for r in st.rows}


def test_status_during_a_run_after_a_kill_and_after_it_finishes(tmp_path):
    audit, out = _audit(tmp_path, 0.3), tmp_path / "out"  # dilemmas: 52 calls, about 16 s
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        st = _wait(out, lambda s: _states(s).get(("slow", "first_token")) == "done"
                   and _states(s).get(("slow", "dilemmas")) == "running"
                   and next(r for r in s.rows if r.layer == "dilemmas").record.get("calls_made", 0) > 0, proc)
        assert st.live is True and st.status == "running"
        # `valuelens run` planned the calls first: done / expected, and the plan is exact on scripted models
        rows = {(r.model, r.layer): r for r in st.rows}
        assert all(r.record.get("calls_expected", 0) > 0 for r in st.rows)
        ft = rows[("slow", "first_token")].record
        assert ft["calls_made"] + ft["calls_cached"] == ft["calls_expected"]
        assert rows[("slow", "first_token")].calls() == f"{ft['calls_expected']}/{ft['calls_expected']}"
        states = _states(st)
        assert states[("fast", "first_token")] == states[("fast", "dilemmas")] == "pending"
        # the finished layer's tables are there and readable, for the finished model only
        items = pd.read_parquet(out / "results" / "first_token_items.parquet")
        assert set(items["model"]) == {"slow"} and len(items) > 0
        assert not (out / "results" / "dilemma_responses.parquet").exists()
        res = RUNNER.invoke(app, ["status", str(out)], env={"COLUMNS": "160"})
        assert res.exit_code == 0, res.output
        assert "running (a process is running it)" in res.output and "pending" in res.output
        assert "done" in res.output
        # the report rebuilds from what is there while the run holds its lock
        rep = RUNNER.invoke(app, ["report", str(out), "--out", str(tmp_path / "partial.html")])
        assert rep.exit_code == 0, rep.output
        assert "slow" in (tmp_path / "partial.html").read_text(encoding="utf-8")
        assert proc.poll() is None, "the run finished before the kill: make the script slower"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    st = read_state(out)
    assert st.live is False and st.status == "interrupted"
    assert _states(st)[("slow", "dilemmas")] == "interrupted" and _states(st)[("slow", "first_token")] == "done"
    res = RUNNER.invoke(app, ["status", str(out)], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "interrupted" in res.output

    # resumed in-process, quickly (the script's delay does not change the answers)
    (tmp_path / "slow.json").write_text(json.dumps({"rules": [], "default_text": "A", "delay": 0}), encoding="utf-8")
    vl.run(audit)
    st = read_state(out)
    assert st.status == "finished" and set(_states(st).values()) == {"done"}
    for r in st.rows:  # the plan was exact (and the resumed run kept the expected counts of the finished layer)
        if "calls_expected" in r.record:
            assert r.record["calls_made"] + r.record["calls_cached"] == r.record["calls_expected"], r
    expected = {r.layer: r for r in st.rows if r.model == "slow"}
    manifest = json.loads((out / "run.json").read_text())
    assert sum(r.record["calls_made"] + r.record["calls_cached"] for r in expected.values()) \
        == manifest["calls"]["calls_made"] + manifest["calls"]["calls_cached"] - sum(
            r.record["calls_made"] + r.record["calls_cached"] for r in st.rows if r.model == "fast")


def test_status_of_a_directory_that_is_not_a_run(tmp_path):
    for target in (tmp_path, tmp_path / "missing"):
        res = RUNNER.invoke(app, ["status", str(target)])
        assert res.exit_code == 2
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in res.output
    (tmp_path / "run.json").write_text("[1, 2]", encoding="utf-8")
    res = RUNNER.invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 2 and "not a valuelens run.json" in res.output


def test_interim_tables_equal_the_final_ones(tmp_path, monkeypatch):
    """Each model × layer's export (with the layer's combine over the models so far) ends as the final tables."""
    from valuelens import audit as audit_mod

    seen: list[tuple[str, tuple[str, ...]]] = []
    real = audit_mod.export_tables

    def spy(out, tables, **kw):
        seen.append(("retire" if kw.get("retire", True) else "interim", tuple(sorted(tables))))
        return real(out, tables, **kw)

    monkeypatch.setattr(audit_mod, "export_tables", spy)
    t = vl.run(_audit(tmp_path, 0.0))
    interim = [names for kind, names in seen if kind == "interim"]
    assert len(interim) == 4 and seen[-1][0] == "retire"  # 2 models x 2 layers, then the final export
    assert all(all(n.startswith("first_token_") for n in names) or all(n.startswith("dilemma_") for n in names)
               for names in interim)
    for name in ("first_token_items", "dilemma_responses"):
        assert set(t[name]["model"]) == {"slow", "fast"}
