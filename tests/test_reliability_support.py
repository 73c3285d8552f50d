"""Shared helpers of the reliability tests (faults, kills, bad input, secrets, fuzzing).

Not a test module itself (it holds no tests); the name keeps it with the
files it serves. ``VALUELENS_LONG=1`` selects the long versions (more kill
points, more faults, more fuzz examples, every bad input also through a real
subprocess); ``VALUELENS_RELIABILITY_OUT=FILE`` makes the tests append one
JSON line per measurement to FILE, which ``bench/reliability.py`` sums up.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from valuelens.store import STORE_NAME

LONG = os.environ.get("VALUELENS_LONG") == "1"
OUT_ENV = "VALUELENS_RELIABILITY_OUT"
_lock = threading.Lock()

# server fault -> the key OpenAIBackend counts it under in run.json's models[i].faults
FAULT_KEY = {"http_429": "http_429", "http_429_retry_after": "http_429", "http_500": "http_500",
             "http_502": "http_502", "http_503": "http_503", "http_504": "http_504",
             "connection_reset": "connection_error", "timeout": "timeout", "truncated_json": "malformed_json",
             "malformed_json": "malformed_json", "empty_choices": "empty_choices",
             "missing_logprobs": "missing_logprobs", "http_408": "http_408", "http_520": "http_520",
             "http_529": "http_529"}


def record(test: str, **counts: Any) -> None:
    """Append one measurement (a JSON line) for bench/reliability.py, if asked to."""
    path = os.environ.get(OUT_ENV)
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, "long": LONG, **counts}) + "\n")


def vl(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "valuelens", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})


def cli(*args: str):
    """The command line in this process (typer's runner): exit code, stdout, stderr, exception."""
    from typer.testing import CliRunner

    from valuelens.cli import app

    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr, r.exception


def one_line_error(stderr: str) -> bool:
    """A single non-empty line, no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


def store_counts(out: Path) -> dict[str, int]:
    """Rows in the store, distinct keys, SUM(runs.calls_made) and runs (zeros when there is no store)."""
    path = out / STORE_NAME
    if not path.exists():
        return {"rows": 0, "distinct": 0, "made": 0, "runs": 0}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as c:
        rows, distinct = c.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
        made, runs = c.execute("SELECT COALESCE(SUM(calls_made), 0), COUNT(*) FROM runs").fetchone()
    return {"rows": rows, "distinct": distinct, "made": made, "runs": runs}


def stored_rows(out: Path) -> int:
    """Rows in the store while another process may be writing it (0 if unreadable yet)."""
    try:
        with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.Error:
        return 0


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under root ({} if root is absent)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def result_tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted((out / "results").glob("*.parquet"))}


# Columns that name the environment, not the result: a call's cache key holds the model's identity, and
# an openai: model's identity holds its server's URL (each fake server has its own port).
ENVIRONMENT_COLUMNS = {"samples": ("call_key",)}


def table_mismatches(ref: Path, out: Path, *, rtol: float = 1e-5, atol: float = 1e-7,
                     skip: tuple[str, ...] = ("models",)) -> list[str]:
    """Names of result tables that differ between two runs (floats within rtol/atol; the
    ENVIRONMENT_COLUMNS left out)."""
    a, b = result_tables(ref), result_tables(out)
    bad = sorted(set(a) ^ set(b))
    for name in sorted(set(a) & set(b)):
        if name in skip:
            continue
        drop = [c for c in ENVIRONMENT_COLUMNS.get(name, ()) if c in a[name].columns]
        try:
            pd.testing.assert_frame_equal(a[name].drop(columns=drop), b[name].drop(columns=drop), check_exact=False,
                                          rtol=rtol, atol=atol)
        except AssertionError:
            bad.append(name)
    return bad


def openai_audit(path: Path, url: str, out: Path, *, options: dict[str, Any], limit: int = 5,
                 extra_models: str = "", extra_layers: str = "", chunk_size: int = 8, name: str = "rel") -> Path:
    """An audit of one model behind an OpenAI-compatible server: first_token with [ctrl] and generate_check."""
    opts = ", ".join(f"{k}: {json.dumps(v)}" for k, v in options.items())
    path.write_text(f"""\
name: {name}
seed: 0
output_dir: {out}
chunk_size: {chunk_size}
models:
  - name: api
    backend: "openai:fake-model@{url}"
    options: {{{opts}}}
{extra_models}layers:
  first_token: {{limit: {limit}, control: true, generate_check: true, max_tokens: 8}}
{extra_layers}""", encoding="utf-8")
    return path
