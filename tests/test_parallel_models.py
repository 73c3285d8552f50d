"""Issue 9.3: many models per audit. Models on different servers run at once
(seen in the store's ``calls.created`` timestamps), local models one after
another; the tables equal a sequential run's; with fail_fast: true a failing lane
stops the others; a run SIGKILLed while two lanes are writing resumes to the same tables with no
call stored or counted twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_openai_server import FakeOpenAIServer
from test_reliability_support import result_tables, store_counts, table_mismatches

from valuelens import api
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.lanes import LOCAL, lane_of, plan, server_of
from valuelens.models.scripted import ScriptedBackend
from valuelens.store import STORE_NAME

OPTS = {"max_concurrency": 2, "backoff_base": 0.01, "backoff_max": 0.1, "timeout": 30}
# the audit's order interleaves lanes, so the tables' order is not the lanes' order
MODELS = ("api-a", "local-a", "api-b", "local-b")
SERVERS = ("api-a", "api-b")
LOCALS = ("local-a", "local-b")


def write_audit(scripts: Path, out: Path, urls: tuple[str, str], *, max_parallel: int | None = None, limit: int = 3,
                name: str = "many", lane_a: str | None = None, fail_fast: bool = False) -> Path:
    """The audit, written next to ``out``. The local models' scripts are shared
    by every run, so the ``models`` tables name the same backends."""
    opts = ", ".join(f"{k}: {json.dumps(v)}" for k, v in OPTS.items())
    lane = f", lane: {lane_a}" if lane_a else ""
    cap = f"max_parallel_models: {max_parallel}\n" if max_parallel else ""
    cap += "fail_fast: true\n" if fail_fast else ""
    path = out.with_name(f"{out.name}.yaml")
    path.write_text(f"""\
name: {name}
output_dir: {out}
chunk_size: 4
{cap}models:
  - {{name: api-a, backend: "openai:fake-a@{urls[0]}", options: {{{opts}{lane}}}}}
  - {{name: local-a, backend: "scripted:{scripts / 'local-a.json'}"}}
  - {{name: api-b, backend: "openai:fake-b@{urls[1]}", options: {{{opts}}}}}
  - {{name: local-b, backend: "scripted:{scripts / 'local-b.json'}"}}
layers:
  first_token: {{limit: {limit}, control: true, generate_check: true, max_tokens: 8}}
""", encoding="utf-8")
    return path


def intervals(out: Path) -> dict[str, tuple[float, float]]:
    """Model → (first, last) commit time of its calls in the store."""
    with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=30) as c:
        return {m: (lo, hi) for m, lo, hi in c.execute("SELECT model, MIN(created), MAX(created) FROM calls GROUP BY model")}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1])


class CheckingTracker:
    """Records every bar's advances and fails if two threads call it at once."""

    def __init__(self):
        self.busy = False
        self.clashes = 0
        self.bars: dict[str, list[int]] = {}

    def _enter(self) -> None:
        if self.busy:
            self.clashes += 1
        self.busy = True
        time.sleep(0.0005)  # widen the window a clash would need

    def track(self, description: str, total: int):
        self._enter()
        self.bars[description] = [total, 0]
        self.busy = False

        def advance(n: int) -> None:
            self._enter()
            self.bars[description][1] += n
            self.busy = False

        return advance


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scripts")
    for m in LOCALS:
        (d / f"{m}.json").write_text(json.dumps({"name": m, "rules": [], "default_text": f"Answer: {len(m) % 4 + 1}"}))
    return d


@pytest.fixture(scope="module")
def servers():
    with FakeOpenAIServer(delay=0.02, max_requests=100_000) as a, FakeOpenAIServer(delay=0.02, max_requests=100_000) as b:
        yield a, b


@pytest.fixture
def slow_local(monkeypatch):
    """Scripted calls take a while, so two local models run at once would overlap
    in time. Yields the threads they ran in."""
    threads: set[threading.Thread] = set()
    for meth in ("option_distribution", "generate"):
        orig = getattr(ScriptedBackend, meth)

        def slow(self, requests, _orig=orig):
            threads.add(threading.current_thread())
            time.sleep(0.01)
            return _orig(self, requests)

        monkeypatch.setattr(ScriptedBackend, meth, slow)
    return threads


@pytest.fixture(scope="module")
def reference(servers, scripts, tmp_path_factory):
    """An uninterrupted parallel run, and a sequential one (max_parallel_models: 1)."""
    tmp = tmp_path_factory.mktemp("ref")
    urls = (servers[0].url, servers[1].url)
    par = api.run_full(write_audit(scripts, tmp / "par", urls), None)
    seq = api.run_full(write_audit(scripts, tmp / "seq", urls, max_parallel=1), None)
    return tmp / "par", par, tmp / "seq", seq


# scheduling -------------------------------------------------------------------

def test_lanes_group_by_server_and_local():
    assert server_of("http://127.0.0.1:8000/v1") == server_of("HTTP://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert server_of("https://api.example.com/v1") == "https://api.example.com:443"
    assert server_of("http://[::1]:9000/v1") == "http://[::1]:9000"
    assert lane_of("openai:m@http://127.0.0.1:8000/v1") != lane_of("openai:m@http://127.0.0.1:8001/v1")
    for spec in ("embedded", "hf:/m", "scripted:/s.json", "vllm:/models/x"):
        assert lane_of(spec) == LOCAL
    assert lane_of("vllm:/models/x", {"lane": "gpu-0-3"}) == "gpu-0-3"
    assert lane_of("openai:m@http://h:1/v1", {"lane": "local"}) == LOCAL
    specs = [("openai:a@http://h:1/v1", {}), ("hf:/x", {}), ("openai:b@http://h:2/v1", {}), ("openai:c@http://h:1/v1/", {}),
             ("scripted:/s", {}), ("vllm:/y", {"lane": "gpus"})]
    assert plan(specs) == {"http://h:1": [0, 3], LOCAL: [1, 4], "http://h:2": [2], "gpus": [5]}


def test_config_lane_and_max_parallel(tmp_path):
    def audit(top: str = "", opts: str = "") -> str:
        return f"{top}models: [{{name: m, backend: 'scripted:{tmp_path}/s.json'{opts}}}]\nlayers: {{first_token: {{}}}}\n"

    assert parse_audit(audit(), "a.yaml").max_parallel_models is None
    assert parse_audit(audit("max_parallel_models: 2\n"), "a.yaml").max_parallel_models == 2
    with pytest.raises(ValueLensError, match="line 1: max_parallel_models"):
        parse_audit(audit("max_parallel_models: 0\n"), "a.yaml")
    with pytest.raises(ValueLensError, match="models: model m: options.lane must be a non-empty name"):
        parse_audit(audit(opts=", options: {lane: ''}"), "a.yaml")
    assert parse_audit(audit(opts=", options: {lane: gpus}"), "a.yaml").models[0].options == {"lane": "gpus"}


# concurrency, determinism ---------------------------------------------------------

def test_server_models_overlap_local_models_do_not(servers, scripts, tmp_path, slow_local, reference):
    _, ref, _, seq = reference
    out = tmp_path / "out"
    tracker = CheckingTracker()
    result = api.run_full(write_audit(scripts, out, (servers[0].url, servers[1].url)), None, tracker)
    span = intervals(out)
    assert set(span) == set(MODELS)
    assert overlap(span["api-a"], span["api-b"]), span  # two servers at once
    assert not overlap(span["local-a"], span["local-b"]), span  # local models one after another
    assert span["local-a"][1] <= span["local-b"][0], span  # in the audit's order
    assert slow_local == {threading.main_thread()}  # the local lane runs in the calling thread
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "finished" and [m["name"] for m in manifest["models"]] == list(MODELS)
    assert manifest["lanes"] == {server_of(servers[0].url): ["api-a"], LOCAL: ["local-a", "local-b"],
                                 server_of(servers[1].url): ["api-b"]}
    # the progress tracker was never called from two threads at once, and every bar completed
    assert tracker.clashes == 0 and tracker.bars and all(t == n for t, n in tracker.bars.values())
    # identical tables (exactly, in the audit's model order) to the reference and the sequential run
    for name in ref.tables:
        pd.testing.assert_frame_equal(result.tables[name], ref.tables[name], check_exact=True)
        pd.testing.assert_frame_equal(result.tables[name], seq.tables[name], check_exact=True)
    assert set(result.tables) == set(ref.tables) == set(seq.tables)
    assert list(result.tables["first_token_items"]["model"].unique()) == list(MODELS)


def test_max_parallel_one_runs_one_model_at_a_time(reference):
    _, par, seq_out, seq = reference
    span = sorted(intervals(seq_out).items(), key=lambda kv: kv[1][0])
    assert [m for m, _ in span] == list(MODELS)  # the audit's order
    assert all(a[1] <= b[0] for (_, a), (_, b) in zip(span, span[1:])), span
    c = store_counts(seq_out)
    assert c["rows"] == c["distinct"] == c["made"] == par.manifest["calls"]["calls_made"]


def test_lane_option_is_scheduling_only(servers, scripts, tmp_path, reference):
    """Moving a model to another lane keeps its identity: the rerun is all cache hits."""
    ref_out = reference[0]
    out = tmp_path / "out"
    urls = (servers[0].url, servers[1].url)
    api.run_full(write_audit(scripts, out, urls, lane_a="mine"), None)
    assert json.loads((out / "run.json").read_text())["lanes"]["mine"] == ["api-a"]
    rerun = api.run_full(write_audit(scripts, out, urls), None)
    assert rerun.manifest["calls"]["calls_made"] == 0
    assert not table_mismatches(ref_out, out, rtol=0, atol=0)


# failure, kill ------------------------------------------------------------------

def test_one_lane_fails_the_others_stop_and_resume(scripts, tmp_path, reference):
    """With fail_fast: true (by default a failing model no longer stops the others: test_lanes_failures.py)."""
    ref_out = reference[0]
    out = tmp_path / "out"
    with FakeOpenAIServer(delay=0.05, max_requests=100_000) as a, \
            FakeOpenAIServer(delay=0.01, faults=[None] * 8, always="http_400", max_requests=100_000) as b:
        audit = write_audit(scripts, out, (a.url, b.url), fail_fast=True)
        with pytest.raises(ValueLensError, match="HTTP 400"):
            api.run_full(audit, None)
        manifest = json.loads((out / "run.json").read_text())
        failed = store_counts(out)
        sent_a = len(a.requests)
        time.sleep(0.3)
        assert len(a.requests) == sent_a  # lane a stopped: no request after the run returned
        b.always = None
        api.run_full(audit, None)
    assert manifest["status"] == "failed" and "HTTP 400" in manifest["error"]
    status = {m["name"]: m.get("status", "finished") for m in manifest["models"]}
    assert status["api-b"] == "failed" and status["api-a"] == "cancelled", status
    assert failed["rows"] == failed["distinct"] == failed["made"] > 0
    counts = store_counts(out)
    assert counts["rows"] == counts["distinct"] == counts["made"] == store_counts(ref_out)["rows"]
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not table_mismatches(ref_out, out, rtol=0, atol=0)


def _rows_per_model(out: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=5) as c:
            return dict(c.execute("SELECT model, COUNT(*) FROM calls GROUP BY model").fetchall())
    except sqlite3.Error:
        return {}


def test_sigkill_while_two_lanes_write_then_resume(tmp_path, scripts, servers, reference):
    ref_out, ref, _, _ = reference
    out = tmp_path / "out"
    audit = write_audit(scripts, out, (servers[0].url, servers[1].url))
    for s in servers:
        s.delay = 0.05  # long enough that the kill lands mid-run
    try:
        proc = subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            rows = _rows_per_model(out)
            if all(rows.get(m, 0) > 0 for m in SERVERS):
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the audit ended before both server lanes had written: {proc.communicate()[1]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        killed = store_counts(out)
        at_kill = _rows_per_model(out)
        final = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True,
                               text=True, timeout=300)
    finally:
        for s in servers:
            s.delay = 0.02
    assert final.returncode == 0, final.stderr
    total = ref.manifest["calls"]["calls_made"]
    assert all(at_kill.get(m, 0) > 0 for m in SERVERS) and killed["rows"] < total, at_kill
    assert killed["rows"] == killed["distinct"] == killed["made"]  # the store's invariant held at the kill
    counts = store_counts(out)
    assert counts["rows"] == counts["distinct"] == counts["made"] == total and counts["runs"] == 2
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["calls"]["calls_made"] == total - killed["rows"]
    assert not table_mismatches(ref_out, out, rtol=0, atol=0)
    assert set(result_tables(out)) == set(result_tables(ref_out))


def test_locked_tracker_serialises_threads():
    from valuelens.progress import LockedTracker

    inner = CheckingTracker()
    tracker = LockedTracker(inner)
    advances = [tracker.track(f"bar {k}", 50) for k in range(4)]
    threads = [threading.Thread(target=lambda a=a: [a(1) for _ in range(50)]) for a in advances]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inner.clashes == 0 and all(v == [50, 50] for v in inner.bars.values())
