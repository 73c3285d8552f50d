"""Issue 8.1: a full audit against an OpenAI-compatible server that injects
faults (429 with and without Retry-After, 408, 500/502/503, 520, 529, connection resets,
timeouts, truncated and malformed JSON, empty choices) gives the results of a
fault-free run, counts every fault in run.json, retries a bounded number of
times with backoff; a permanent failure (a server that keeps failing, or one
that returns no logprobs under option_mode: logprobs — an error then, never a
guess; by default such a server gets sampled estimates, test_openai_sampled.py) ends with a
one-line message and exit 1, and leaves a store that a rerun against a
healthy server completes with nothing lost and nothing counted twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from test_reliability_support import (
    FAULT_KEY,
    LONG,
    cli,
    one_line_error,
    openai_audit,
    record,
    store_counts,
    table_mismatches,
    vl,
)

from valuelens import api
from valuelens.progress import NullTracker

LIMIT = 10 if LONG else 5  # questions: x 2 countries x 2 languages x (ZS, ZS[ctrl], free answer)
OPTS = {"max_retries": 10, "backoff_base": 0.01, "backoff_max": 0.08, "timeout": 1.0, "max_concurrency": 8}
# 33% of requests fail; a request fails 11 times in a row with probability 0.33**11 ≈ 5e-6
RATES = {"http_429": 0.03, "http_429_retry_after": 0.03, "http_500": 0.04, "http_502": 0.03, "http_503": 0.03,
         "connection_reset": 0.03, "timeout": 0.01, "truncated_json": 0.04, "malformed_json": 0.03,
         "empty_choices": 0.03, "http_408": 0.01, "http_520": 0.01, "http_529": 0.01}
TRANSIENT = sorted(RATES)
SEEDS = [1, 2, 3, 4, 5] if LONG else [1]


def run(audit: Path):
    return api.run_full(audit, None, NullTracker())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same audit against a fault-free server."""
    tmp = tmp_path_factory.mktemp("clean")
    with FakeOpenAIServer() as srv:
        run(openai_audit(tmp / "a.yaml", srv.url, tmp / "out", options=OPTS, limit=LIMIT))
        served = len(srv.requests)
    counts = store_counts(tmp / "out")
    assert counts["rows"] == counts["distinct"] == counts["made"] == served
    return tmp / "out", counts


def _attempts(srv: FakeOpenAIServer) -> dict[str, list[dict]]:
    """The server's requests grouped by logical request (same path and body), in order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in srv.requests:
        groups[r["path"] + json.dumps(r["body"], sort_keys=True)].append(r)
    return {k: sorted(v, key=lambda r: r["start"]) for k, v in groups.items()}


@pytest.mark.parametrize("seed", SEEDS)
def test_faults_at_rates_give_fault_free_results(tmp_path, reference, seed):
    ref_out, ref_counts = reference
    out = tmp_path / "out"
    # one of each kind first (so every kind is met), then faults at the rates above
    with FakeOpenAIServer(faults=TRANSIENT, fault_rates=RATES, seed=seed, retry_after="0.05", hang=3.0) as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options=OPTS, limit=LIMIT)
        t0 = time.monotonic()
        run(audit)
        elapsed = time.monotonic() - t0
        requests = list(srv.requests)
        attempts = _attempts(srv)
    injected = [r["fault"] for r in requests if r["fault"]]
    manifest = json.loads((out / "run.json").read_text())
    faults = manifest["models"][0]["faults"]
    counts = store_counts(out)
    mismatches = table_mismatches(ref_out, out, rtol=0, atol=0)
    lost = ref_counts["rows"] - counts["rows"]
    ok = manifest["status"] == "finished" and not mismatches and lost == 0
    record("faults_at_rates", seed=seed, faults_injected=len(injected), faults_survived=len(injected) if ok else 0,
           lost_rows=lost, requests=len(requests), seconds=round(elapsed, 2))

    assert manifest["status"] == "finished"
    assert not mismatches, f"tables differ from the fault-free run: {mismatches}"
    assert counts == {**ref_counts, "runs": 1}  # nothing lost, nothing twice
    assert set(injected) >= set(TRANSIENT) and len(injected) >= len(TRANSIENT)
    # every fault is counted in run.json under its kind (a slow machine may add timeouts of its own)
    want = Counter(FAULT_KEY[f] for f in injected)
    extra = faults.get("timeout", 0) - want.get("timeout", 0)  # the client's own timeouts, if any
    assert extra >= 0 and all(faults.get(k, 0) == n for k, n in want.items() if k != "timeout"), (faults, want)
    assert faults["retries"] == len(injected) + extra
    assert faults["retries"] == sum(v for k, v in faults.items() if k not in ("requests", "retries"))
    assert faults["requests"] == ref_counts["rows"] + faults["retries"]
    assert len(requests) <= faults["requests"] <= len(requests) + extra  # timed out before the server saw it
    # bounded retries, and they back off: attempt k waits >= min(backoff_max, Retry-After or base * 2**k)
    for group in attempts.values():
        assert len(group) <= OPTS["max_retries"] + 1
        for k, (prev, nxt) in enumerate(zip(group, group[1:])):
            assert prev["fault"] or extra > 0
            if prev["fault"] in (None, "timeout"):  # a timeout's server-side end is after the client gave up
                continue
            delay = 0.05 if prev["fault"] == "http_429_retry_after" else OPTS["backoff_base"] * 2 ** k
            assert nxt["start"] - prev["end"] >= min(OPTS["backoff_max"], delay) - 0.005, (k, prev["fault"])


def test_permanent_failure_is_one_line_exit_1_and_resumable(tmp_path, reference):
    ref_out, ref_counts = reference
    out = tmp_path / "out"
    opts = {**OPTS, "max_retries": 3}
    with FakeOpenAIServer(faults=[None] * 25, always="http_503") as srv:  # healthy for 25 requests, then down
        url = srv.url
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options=opts, limit=LIMIT)
        t0 = time.monotonic()
        code, stdout, stderr, exc = cli("run", str(audit), "-q")
        elapsed = time.monotonic() - t0
        failed = store_counts(out)
        manifest = json.loads((out / "run.json").read_text())
        down = [g for g in _attempts(srv).values() if all(r["fault"] for r in g)]
        srv.always = None  # the server recovers
        run(audit)
    counts = store_counts(out)
    mismatches = table_mismatches(ref_out, out, rtol=0, atol=0)
    clear = code == 1 and one_line_error(stderr) and "gave up after 4 attempts (last: HTTP 503)" in stderr
    record("permanent_failure", permanent_failures=1, clear_failures=int(clear),
           lost_rows=ref_counts["rows"] - counts["rows"], mismatches=len(mismatches))

    assert code == 1, (stdout, stderr, exc)
    assert one_line_error(stderr) and "gave up after 4 attempts (last: HTTP 503)" in stderr
    assert f"openai backend fake-model@{url}" in stderr
    assert elapsed < 30
    # 1 + max_retries attempts and no more (the others are cancelled when the first one gives up)
    assert max(len(g) for g in down) == 4 and all(len(g) <= 4 for g in down)
    assert manifest["status"] == "failed" and "gave up after 4 attempts" in manifest["error"]
    assert manifest["models"][0]["faults"]["http_503"] >= 4  # faults of a failed run are on the record too
    assert 0 < failed["rows"] < ref_counts["rows"] and failed["rows"] == failed["distinct"] == failed["made"]
    # resumed against the healthy server: complete, equal, nothing twice
    assert counts == {**ref_counts, "runs": 2} and not mismatches
    final = json.loads((out / "run.json").read_text())
    assert final["status"] == "finished"
    ref_cached = json.loads((ref_out / "run.json").read_text())["calls"]["calls_cached"]  # repeated prompts
    assert final["calls"] == {"calls_made": ref_counts["rows"] - failed["rows"],
                              "calls_cached": failed["rows"] + ref_cached}


def test_missing_logprobs_fails_clearly_then_resumes(tmp_path, reference):
    """With option_mode: logprobs a server without logprobs cannot give option
    distributions: exit 1 with a message saying so (through the real command
    line), and no guessed rows (the default, auto, estimates them by sampling)."""
    ref_out, ref_counts = reference
    out = tmp_path / "out"
    with FakeOpenAIServer(faults=[None] * 12, always="missing_logprobs") as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options={**OPTS, "option_mode": "logprobs"},
                             limit=LIMIT)
        r = vl("run", str(audit), "-q", cwd=tmp_path)
        failed = store_counts(out)
        manifest = json.loads((out / "run.json").read_text())
        srv.always = None
        run(audit)
    counts = store_counts(out)
    mismatches = table_mismatches(ref_out, out, rtol=0, atol=0)
    clear = r.returncode == 1 and one_line_error(r.stderr) and "returned no logprobs" in r.stderr
    record("missing_logprobs", permanent_failures=1, clear_failures=int(clear),
           lost_rows=ref_counts["rows"] - counts["rows"], mismatches=len(mismatches))

    assert r.returncode == 1, r.stderr
    assert one_line_error(r.stderr) and "returned no logprobs" in r.stderr and "top_logprobs" in r.stderr
    assert manifest["status"] == "failed" and "no logprobs" in manifest["error"]
    assert manifest["models"][0]["faults"]["missing_logprobs"] >= 1
    assert failed["rows"] == failed["distinct"] == failed["made"] <= 12
    assert counts == {**ref_counts, "runs": 2} and not mismatches
