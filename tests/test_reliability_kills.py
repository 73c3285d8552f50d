"""Issue 8.2: SIGKILL a real audit process at random (seeded) points, resume
each time: the store keeps its invariant after every kill (one row per key,
SUM(runs.calls_made) == rows), and the final results equal an uninterrupted
run's with no row lost and none counted twice. Two runs started at once on
the same output directory: one is refused, the other finishes.

The audit covers every layer that has landed in ``config.Layers`` among
first_token (ZS, ZS[ctrl], free answers), dilemmas and diversity, with tiny
settings, against the fake OpenAI-compatible server (with a small delay per
request so kills land mid-run); the long version (VALUELENS_LONG=1) adds a
tiny local hf model and kills 20 times instead of 8.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from test_reliability_support import (
    LONG,
    one_line_error,
    openai_audit,
    record,
    store_counts,
    stored_rows,
    table_mismatches,
)

from valuelens import api
from valuelens.config import Layers
from valuelens.progress import NullTracker

KILLS = 20 if LONG else 8
SEED = 8
OPTS = {"max_concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.1, "timeout": 30}
LIMIT = 10 if LONG else 3  # first_token questions
# Layers other than first_token, if they have landed: tiny settings for the settings fields they have.
OTHER_LAYERS = ("dilemmas", "diversity")
TINY = {"dilemmas": {"limit": 1, "n_resamples": 100},
        "diversity": {"participants": 1, "passes": 1, "limit": 2, "memory_max": 2, "max_tokens": 8}}


def extra_layers() -> str:
    lines = []
    for name in OTHER_LAYERS:
        if name not in Layers.model_fields:
            continue
        ann = Layers.model_fields[name].annotation
        fields = next((a.model_fields for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")), {})
        tiny = {k: v for k, v in TINY[name].items() if k in fields}
        lines.append(f"  {name}: {json.dumps(tiny)}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(delay=0.002, max_requests=100_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def make_audit(server, request):
    extra_models = ""
    if LONG:
        model_dir = request.getfixturevalue("tiny_model_dir")
        extra_models = f'  - {{name: tiny, backend: "hf:{model_dir}", batch_size: 2}}\n'

    def make(path: Path, out: Path, *, small: bool = False) -> Path:
        if small:  # first_token only
            return openai_audit(path, server.url, out, options=OPTS, limit=LIMIT, chunk_size=4, name="lock")
        return openai_audit(path, server.url, out, options=OPTS, limit=LIMIT, chunk_size=4, name="kills",
                            extra_models=extra_models, extra_layers=extra_layers())
    return make


@pytest.fixture(scope="module")
def reference(tmp_path_factory, make_audit):
    tmp = tmp_path_factory.mktemp("ref")
    api.run_full(make_audit(tmp / "a.yaml", tmp / "out"), None, NullTracker())
    counts = store_counts(tmp / "out")
    assert counts["rows"] == counts["distinct"] == counts["made"] > 2 * KILLS
    return tmp / "out", counts


def start(audit: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_points_then_resume(tmp_path, make_audit, reference):
    ref_out, ref_counts = reference
    out = tmp_path / "out"
    audit = make_audit(tmp_path / "a.yaml", out)
    rng = random.Random(SEED)
    points = sorted(rng.sample(range(1, ref_counts["rows"]), KILLS))
    kills, early, broken = 0, 0, []
    for point in points:
        target = max(point, stored_rows(out) + 1)  # at least one new row before the kill
        proc = start(audit)
        deadline = time.time() + 120
        while stored_rows(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.03))  # land anywhere: mid-request, mid-commit
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        else:
            early += 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err
        c = store_counts(out)
        if not c["rows"] == c["distinct"] == c["made"]:
            broken.append((point, c))
    final = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True,
                           text=True, timeout=300)
    counts = store_counts(out)
    mismatches = table_mismatches(ref_out, out)
    record("kills", kills=kills, resumes=kills if final.returncode == 0 else 0, mismatches=len(mismatches) + len(broken),
           lost_rows=ref_counts["rows"] - counts["rows"], finished_before_kill=early)

    assert final.returncode == 0, final.stderr
    assert not broken, f"store invariant broken after a kill: {broken}"
    assert kills >= KILLS - 2, f"only {kills} of {KILLS} kills landed before the run finished"
    # nothing lost, nothing twice: same rows as the reference, each counted once over all runs
    assert counts["rows"] == counts["distinct"] == counts["made"] == ref_counts["rows"]
    assert counts["runs"] == kills + early + 1
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not mismatches, f"tables differ from the uninterrupted run: {mismatches}"


def test_two_runs_started_at_once_one_is_refused(tmp_path, server, make_audit):
    ref, out = tmp_path / "ref", tmp_path / "out"
    api.run_full(make_audit(tmp_path / "ref.yaml", ref, small=True), None, NullTracker())
    audit = make_audit(tmp_path / "a.yaml", out, small=True)
    server.delay = 0.1  # the first run holds the lock for a second or two while the other starts
    try:
        procs = [start(audit), start(audit)]
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        server.delay = 0.002
    codes = [p.returncode for p in procs]
    refused = [e for c, e in zip(codes, errs) if c == 2]
    counts, ref_counts = store_counts(out), store_counts(ref)
    record("lock", concurrent_starts=2, refused=len(refused))

    assert sorted(codes) == [0, 2], (codes, errs)
    assert one_line_error(refused[0]) and "another valuelens run is using this output directory" in refused[0]
    assert counts == ref_counts  # the refused run wrote nothing to the store (not even a runs row)
    assert not table_mismatches(ref, out)
