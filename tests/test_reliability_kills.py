"""Issue 8.2: SIGKILL a real audit process at random (seeded) points, resume
each time: the store keeps its invariant after every kill (one row per key,
SUM(runs.calls_made) == rows), and the final results equal an uninterrupted
run's with no row lost and none counted twice. Two runs started at once on
the same output directory: one is refused, the other finishes.

The audit covers every layer that has landed in ``config.Layers`` among
first_token (ZS, ZS[ctrl], free answers), def (DEF), dilemmas and mark, with
tiny settings, for two models: one behind the fake OpenAI-compatible server
(with a small delay per request so kills land mid-run) and a ``scripted:``
model whose rules give a valid reply at every MARK stage (stress, type with a
repair turn, impact, reasoning, explanation; baselines), so the whole MARK
pipeline runs and is interrupted; the server's free text leaves the other
model's MARK personas invalid after their repairs. MARK needs the WVS-7
codebook in ../shared/data and is left out without it.

The two models run side by side (one lane each), each through its layers in
turn, so a kill point is a model and a count of that model's rows: one drawn
at random within each model × layer segment of the uninterrupted run, the
rest anywhere. Where each kill struck (per lane: model and layer) is recorded;
every layer must have been interrupted at least once, MARK also in the
scripted model. The long version (VALUELENS_LONG=1) adds a tiny local hf
model (in the scripted model's lane, after it) and kills 20 times instead of 8.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from mark_helpers import stage_script, synthetic_microdata, write_texts
from test_reliability_support import (
    LONG,
    one_line_error,
    openai_audit,
    record,
    store_counts,
    table_mismatches,
    tree_digest,
)

from valuelens import api
from valuelens.audit import LAYERS
from valuelens.config import Layers
from valuelens.errors import ValueLensError
from valuelens.models import GenerateRequest, Message
from valuelens.models.scripted import ScriptedBackend
from valuelens.progress import NullTracker
from valuelens.store import STORE_NAME

KILLS = 20 if LONG else 8
WAIT = 3600  # seconds: a bound only for a hung process; nothing here waits on the clock to be correct
SEED = 8
OPTS = {"max_concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.1, "timeout": 30}
LIMIT = 10 if LONG else 3  # first_token questions
CHUNK = 4  # calls committed per transaction
SCRIPT_DELAY = 0.008  # seconds per request of the scripted model, so kills land inside its layers too
# Layers other than first_token, if they have landed: tiny settings for the settings fields they have.
OTHER_LAYERS = ("dilemmas", "def", "mark")
TINY = {"dilemmas": {"limit": 1, "n_resamples": 100},
        "def": {"participants": 1, "passes": 1, "limit": 2, "memory_max": 2, "max_tokens": 8},
        "mark": {"questions": ["Q1", "Q46"], "respondents_per_country": 2, "max_retries": 1, "max_tokens": 16,
                 "baseline_max_tokens": 8, "bootstrap": 100}}
CODEBOOK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wvs_codebook"
# progress-task label (after "model: ") -> layer; anything else is first_token's
LABEL_LAYER = (("mark", "mark"), ("dilemmas", "dilemmas"), ("DEF", "def"))


def mark_data(d: Path) -> dict | None:
    """MARK's inputs (synthetic microdata, en/zh question texts), or None without the codebook."""
    if not (CODEBOOK / "codebook.json").is_file():
        return None
    cb = CODEBOOK.resolve()
    return {"path": str(synthetic_microdata(cb, TINY["mark"]["questions"], d / "wvs.csv", n_per_country=20)),
            "codebook": str(cb / "codebook.json"), "metadata": str(cb / "question_metadata.json"),
            "texts": str(write_texts(d / "texts.json"))}


def extra_layers(mark: dict | None) -> str:
    lines = []
    for name in OTHER_LAYERS:
        if name not in Layers.model_fields or (name == "mark" and mark is None):
            continue
        ann = Layers.model_fields[name].annotation
        fields = next((a.model_fields for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")), {})
        tiny = {k: v for k, v in TINY[name].items() if k in fields}
        if name == "mark":
            tiny["data"] = mark
        lines.append(f"  {name}: {json.dumps(tiny)}\n")
    return "".join(lines)


def model_rows(out: Path) -> dict[str, int]:
    """Rows in the store per model while another process may be writing it ({} if unreadable yet)."""
    try:
        with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=5) as c:
            return dict(c.execute("SELECT model, COUNT(*) FROM calls GROUP BY model").fetchall())
    except sqlite3.Error:
        return {}


class Segments:
    """A progress tracker for the uninterrupted run. Models run in lanes, side
    by side, but each model's layers run one after another: at the start of
    every progress task it notes the model, the layer and that model's rows so
    far, which splits each model's rows, in the order stored, into layer segments."""

    def __init__(self, out: Path):
        self.out, self.starts = out, {}

    def track(self, description: str, total: int):
        model, _, task = description.partition(": ")
        layer = next((lay for prefix, lay in LABEL_LAYER if task.startswith(prefix)), "first_token")
        starts = self.starts.setdefault(model, [])
        if not starts or starts[-1][1] != layer:
            starts.append((model_rows(self.out).get(model, 0), layer))
        return lambda n: None

    def spans(self, totals: dict[str, int]) -> dict[str, list[tuple[int, int, str]]]:
        """Per model: (first row, last row, layer), the model's rows numbered from 1 in the order stored."""
        out = {}
        for model, starts in self.starts.items():
            ends = [s for s, _ in starts[1:]] + [totals.get(model, 0)]
            out[model] = [(s + 1, e, lay) for (s, lay), e in zip(starts, ends) if e > s]
        return out


def kill_plan(spans: dict[str, list[tuple[int, int, str]]], created: dict[str, list[float]], k: int,
              rng: random.Random) -> list[tuple[str, int]]:
    """(model, rows of that model) to kill at: one at random within each model × layer
    segment (the model then works on that segment's next row; the segment's last
    two chunks are left out, as a kill strikes a little after its point), the
    rest anywhere; in the order the uninterrupted run reached them."""
    points = set()
    for m, segs in spans.items():
        for first, last, _ in segs:
            lo = max(first - 1, 1)
            if last > 1:
                points.add((m, rng.randint(lo, max(lo, last - 1 - 2 * CHUNK))))
    points = set(rng.sample(sorted(points), k)) if len(points) > k else points
    rest = [(m, p) for m, t in created.items() for p in range(1, len(t)) if (m, p) not in points]
    points |= set(rng.sample(rest, k - len(points)))
    return sorted(points, key=lambda mp: (created[mp[0]][mp[1] - 1], mp))


def landed_in(spans: dict[str, list[tuple[int, int, str]]], lanes: dict[str, list[str]],
              rows: dict[str, int]) -> list[str]:
    """Where a kill struck, from the rows stored then: per lane, its first model
    with rows to go and the layer of that model's next row."""
    out = []
    for models in lanes.values():
        m = next((m for m in models if rows.get(m, 0) < spans[m][-1][1]), None)
        if m is not None:
            out += [f"{m}/{lay}" for first, last, lay in spans[m] if first <= rows.get(m, 0) + 1 <= last]
    return out or ["after the last call"]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(delay=0.002, max_requests=100_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def make_audit(server, request, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inputs")
    mark = mark_data(inputs)
    script = stage_script(inputs / "stages.json", delay=SCRIPT_DELAY)
    extra_models = f'  - {{name: scripted, backend: "scripted:{script}"}}\n'
    if LONG:
        model_dir = request.getfixturevalue("tiny_model_dir")
        extra_models += f'  - {{name: tiny, backend: "hf:{model_dir}", batch_size: 2}}\n'

    def make(path: Path, out: Path, *, small: bool = False) -> Path:
        if small:  # first_token only; requests may wait at the test's gate for as long as the machine needs
            return openai_audit(path, server.url, out, options={**OPTS, "timeout": WAIT}, limit=LIMIT,
                                chunk_size=CHUNK, name="lock")
        return openai_audit(path, server.url, out, options=OPTS, limit=LIMIT, chunk_size=CHUNK, name="kills",
                            extra_models=extra_models, extra_layers=extra_layers(mark))
    return make


@pytest.fixture(scope="module")
def reference(tmp_path_factory, make_audit):
    tmp = tmp_path_factory.mktemp("ref")
    segments = Segments(tmp / "out")
    api.run_full(make_audit(tmp / "a.yaml", tmp / "out"), None, segments)
    counts = store_counts(tmp / "out")
    assert counts["rows"] == counts["distinct"] == counts["made"] > 2 * KILLS
    with sqlite3.connect(tmp / "out" / STORE_NAME) as c:
        created: dict[str, list[float]] = {}
        for model, t in c.execute("SELECT model, created FROM calls ORDER BY rowid"):
            created.setdefault(model, []).append(t)
    spans = segments.spans({m: len(t) for m, t in created.items()})
    assert sorted(spans) == sorted(created)
    return tmp / "out", counts, spans, created


def start(audit: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_points_then_resume(tmp_path, make_audit, reference):
    ref_out, ref_counts, spans, created = reference
    totals = {m: len(t) for m, t in created.items()}
    layers = [lay for lay in LAYERS if any(lay == x for segs in spans.values() for *_, x in segs)]  # audit's order
    if CODEBOOK.is_dir():
        assert "mark" in layers
        traces = [json.loads(x) for x in (ref_out / "mark_traces" / "scripted.jsonl").read_text("utf-8").splitlines()]
        # the scripted model went through every MARK stage with usable replies (China's type after a repair)
        assert traces and all(t["valid"] and t["explanation"] for t in traces)
        assert any(len(t["stages"]["type"]["attempts"]) == 2 for t in traces)
    out = tmp_path / "out"
    audit = make_audit(tmp_path / "a.yaml", out)
    rng = random.Random(SEED)
    plan = kill_plan(spans, created, KILLS, rng)
    kills, early, broken, unexpected = 0, 0, [], []
    landed: dict[str, int] = {}
    for model, point in plan:
        rows = model_rows(out)
        if rows.get(model, 0) >= totals[model]:  # that model is done: wait for one that is not
            model = next((m for m in totals if rows.get(m, 0) < totals[m]), model)
        target = max(point, rows.get(model, 0) + 1)  # at least one new row of that model before the kill
        proc = start(audit)
        # Wait for the rows, not for a time: a slow or busy machine only takes longer.
        deadline = time.monotonic() + WAIT
        while model_rows(out).get(model, 0) < target and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the run stored no row {target} of {model} in {WAIT} s (hung?)")
            time.sleep(0.002)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.03))  # land anywhere: mid-request, mid-commit
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        else:
            early += 1
        _, err = proc.communicate(timeout=WAIT)
        if proc.returncode not in (0, -signal.SIGKILL):
            unexpected.append((proc.returncode, err.strip().splitlines()[-1:] if err.strip() else ""))
            break
        c = store_counts(out)
        if proc.returncode == -signal.SIGKILL:
            lanes = json.loads((out / "run.json").read_text())["lanes"]
            for where in landed_in(spans, lanes, model_rows(out)):
                landed[where] = landed.get(where, 0) + 1
        if not c["rows"] == c["distinct"] == c["made"]:
            broken.append(((model, point), c))
    final = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True,
                           text=True, timeout=WAIT)
    counts = store_counts(out)
    mismatches = table_mismatches(ref_out, out)
    if tree_digest(ref_out / "mark_traces") != tree_digest(out / "mark_traces"):
        mismatches.append("mark_traces/*.jsonl")
    by_layer = {lay: sum(n for w, n in landed.items() if w.endswith("/" + lay)) for lay in layers}
    record("kills", kills=kills, resumes=kills if final.returncode == 0 else 0, mismatches=len(mismatches) + len(broken),
           lost_rows=ref_counts["rows"] - counts["rows"], finished_before_kill=early, landed=landed,
           landed_by_layer=by_layer)

    assert not unexpected, f"a run ended neither by the kill nor finished: {unexpected}"
    assert final.returncode == 0, final.stderr
    assert not broken, f"store invariant broken after a kill: {broken}"
    assert kills >= KILLS - 2, f"only {kills} of {KILLS} kills landed before the run finished"
    # every layer was interrupted at least once, MARK also in the model that answers every stage
    assert all(by_layer.values()), f"a layer took no kill: {landed}"
    assert not CODEBOOK.is_dir() or landed.get("scripted/mark"), f"no kill inside the scripted MARK run: {landed}"
    # nothing lost, nothing twice: same rows as the reference, each counted once over all runs
    assert counts["rows"] == counts["distinct"] == counts["made"] == ref_counts["rows"]
    assert counts["runs"] == kills + early + 1
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not mismatches, f"tables differ from the uninterrupted run: {mismatches}"


def test_two_runs_started_at_once_one_is_refused(tmp_path, server, make_audit):
    ref, out = tmp_path / "ref", tmp_path / "out"
    api.run_full(make_audit(tmp_path / "ref.yaml", ref, small=True), None, NullTracker())
    audit = make_audit(tmp_path / "a.yaml", out, small=True)
    # The first run's requests wait at a gate, so it holds the lock until the second has been refused,
    # however long either takes to start on this machine.
    gate, reply = threading.Event(), server.reply

    def held(*args, **kwargs):
        gate.wait(WAIT)
        return reply(*args, **kwargs)

    server.reply = held
    procs = []
    try:
        procs.append(start(audit))
        deadline = time.monotonic() + WAIT
        while procs[0].poll() is None and not (out / "run.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.01)  # run.json is written under the lock
        procs.append(start(audit))
        errs = [procs[1].communicate(timeout=WAIT)[1]]
    finally:
        gate.set()
        del server.reply  # the class's method again
    errs.insert(0, procs[0].communicate(timeout=WAIT)[1])
    codes = [p.returncode for p in procs]
    refused = [e for c, e in zip(codes, errs) if c == 2]
    counts, ref_counts = store_counts(out), store_counts(ref)
    record("lock", concurrent_starts=2, refused=len(refused))

    assert sorted(codes) == [0, 2], (codes, errs)
    assert one_line_error(refused[0]) and "another valuelens run is using this output directory" in refused[0]
    assert counts == ref_counts  # the refused run wrote nothing to the store (not even a runs row)
    assert not table_mismatches(ref, out)


def test_scripted_rules_with_several_substrings_and_a_delay(tmp_path):
    """What the kill audit's scripted model relies on: a rule's ``contains`` may
    list substrings that must all occur; ``delay`` slows every request and changes
    neither answers nor the identity (so not the store's keys)."""
    rules = [{"contains": ["Predict", "China"], "text": "both"}, {"contains": "Predict", "text": "one"},
             {"contains": [], "text": "empty list: every prompt"}]
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"rules": rules, "delay": 0.05}), encoding="utf-8")
    b = ScriptedBackend.from_file(str(f))
    t0 = time.monotonic()
    got = b.generate([(GenerateRequest((Message("user", p),)), 0) for p in ("Predict China", "Predict Chile", "x")])
    assert got == ["both", "one", "empty list: every prompt"]
    assert time.monotonic() - t0 >= 0.15 and b.delay == 0.05
    assert b.identity() == ScriptedBackend(rules, name="s").identity()
    for bad, what in [({"rules": [{"contains": 3}]}, "rules[0]"), ({"rules": [{"contains": ["a", 1]}]}, "rules[0]"),
                      ({"rules": ["a"]}, "rules[0]"), ({"rules": [], "delay": -1}, "delay"),
                      ({"rules": [], "delay": "1"}, "delay"), ({"rules": [], "delay": True}, "delay"),
                      ({"rules": [], "delay": 1e9}, "delay")]:
        f.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(ValueLensError, match=rf"s\.json: .*{what.replace('[', '.').replace(']', '.')}"):
            ScriptedBackend.from_file(str(f))
