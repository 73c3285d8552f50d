"""SIGKILL an audit at several points, resume each time: the results equal an
uninterrupted run's and no call is made twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from valuelens.data.survey import load_questionnaire
from valuelens.store import STORE_NAME

# questions of the built-in questionnaire x countries x languages x (ZS,
# ZS[ctrl], free answer); a few [ctrl] prompts equal another country's ZS
# prompt and are served once.
N_QUESTIONS = len(load_questionnaire("builtin"))
ASKED = N_QUESTIONS * 2 * 2 * 3


def _audit(tmp_path: Path, model_dir: Path, out: Path) -> Path:
    p = tmp_path / f"{out.name}.yaml"
    p.write_text(f"""\
name: kill
output_dir: {out}
chunk_size: 2
models:
  - {{name: tiny, backend: "hf:{model_dir}", batch_size: 2}}
layers:
  first_token: {{max_tokens: 6, generate_check: true}}
""")
    return p


def _start(audit: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stored(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_at(audit: Path, out: Path, targets, wait: float = 600) -> int:
    """Start the audit once per target and SIGKILL it once ``out``'s store holds that many calls (a run that
    ends first is left to end); the number of kills. ``wait`` only guards against a hung run: the target,
    or the run's end, decides, not the clock."""
    kills = 0
    for target in targets:
        proc = _start(audit)
        deadline = time.time() + wait
        while _stored(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    return kills


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume(tmp_path, tiny_model_dir):
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.run([sys.executable, "-m", "valuelens", "run", str(_audit(tmp_path, tiny_model_dir, ref_out)), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    total = json.loads((ref_out / "run.json").read_text())["calls"]["calls_made"]
    assert ASKED - N_QUESTIONS <= total <= ASKED

    audit = _audit(tmp_path, tiny_model_dir, out)
    kills = kill_at(audit, out, (1, 9, 23, 40, 57, 71, 88, 103, 115))
    assert kills >= 6, "the audit finished before most kill points: make it longer"
    final = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr

    with sqlite3.connect(out / STORE_NAME) as c:
        made = c.execute("SELECT SUM(calls_made) FROM runs").fetchone()[0]
        stored = c.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
    assert stored == (total, total) and made == total  # nothing lost, nothing twice

    for name in ("first_token_items", "first_token_options", "first_token_summary", "first_token_table2"):
        a = pd.read_parquet(ref_out / "results" / f"{name}.parquet")
        b = pd.read_parquet(out / "results" / f"{name}.parquet")
        # Floats may differ in the last bits when a resumed batch pads differently.
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-7)
    # the samples table (issue 23): the same calls, prompts, replies and keys; probabilities to the same bits
    a, b = (pd.read_parquet(d / "results" / "samples.parquet") for d in (ref_out, out))
    pd.testing.assert_frame_equal(a.drop(columns="probs"), b.drop(columns="probs"), check_exact=False, rtol=1e-5,
                                  atol=1e-7)
    for pa, pb in zip(a["probs"], b["probs"]):
        assert isinstance(pa, str) == isinstance(pb, str)  # JSON text, or missing (a reply)
        if isinstance(pa, str):
            x, y = json.loads(pa), json.loads(pb)
            assert list(x) == list(y) and all(abs(x[k] - y[k]) <= 1e-7 + 1e-5 * abs(y[k]) for k in x)


def _def_audit(tmp_path: Path, model_dir: Path, out: Path) -> Path:
    """A sampled DEF run on the tiny model: temperatures drawn per participant, beam sampling for some
    (num_beams 1-2), retries, the reply form and stop rule as DEF asks; the built-in questionnaire."""
    p = tmp_path / f"{out.name}.yaml"
    p.write_text(f"""\
name: kill-def
output_dir: {out}
chunk_size: 3
languages: [en, zh]
models:
  - {{name: tiny, backend: "hf:{model_dir}", batch_size: 4}}
layers:
  def:
    participants: 2
    passes: 2
    limit: 2
    memory_max: 2
    beams: [1, 2]
    retries: 1
    max_tokens: 6
    insensitivity: {{factual: {{}}}}
""")
    return p


@pytest.mark.slow
@pytest.mark.timeout(3600)  # five CLI starts: ~15 s of CPU, but 15 min of wall on a 2-core machine at load 15
def test_sigkill_a_sampled_def_run_then_resume(tmp_path, tiny_model_dir):
    """Sampled DEF answers (own loop and batched beam sampling) after kills and resumes: the uninterrupted
    run's tables exactly (every reply the same text), nothing computed twice."""
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.run([sys.executable, "-m", "valuelens", "run", str(_def_audit(tmp_path, tiny_model_dir, ref_out)),
                          "-q"], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    total = json.loads((ref_out / "run.json").read_text())["calls"]["calls_made"]
    answers = pd.read_parquet(ref_out / "results" / "def_answers.parquet")
    assert total >= 32 and answers.temperature.gt(0).all() and set(answers.num_beams) == {1, 2}

    audit = _def_audit(tmp_path, tiny_model_dir, out)
    kills = kill_at(audit, out, (1, 12, 24))
    assert kills >= 2, "the run finished before most kill points: make it longer"
    final = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr
    with sqlite3.connect(out / STORE_NAME) as c:
        made = c.execute("SELECT SUM(calls_made) FROM runs").fetchone()[0]
        stored = c.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
    assert stored == (total, total) and made == total
    for name in ("def_answers", "def_questions", "def_options", "def_summary"):
        pd.testing.assert_frame_equal(pd.read_parquet(ref_out / "results" / f"{name}.parquet"),
                                      pd.read_parquet(out / "results" / f"{name}.parquet"), check_exact=True)
