"""The results store: one SQLite file (WAL) per output directory.

Every model call is recorded under a hash of (model identity, full request,
settings, seed, sample index). Rows are written in a transaction together
with the count of calls the current run made, so a run killed at any moment
resumes with nothing lost and nothing counted twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    calls_made INTEGER NOT NULL DEFAULT 0,
    calls_cached INTEGER NOT NULL DEFAULT 0
);
"""

STORE_NAME = "store.sqlite"


def canonical(obj: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, exact floats."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(model_identity: dict[str, Any], request: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"model": model_identity, "request": request}).encode()).hexdigest()


class Store:
    """One SQLite connection, usable only from the thread that opened it.

    Threads of one run each open their own Store on the same file: one of them
    calls :meth:`begin_run`, the others :meth:`attach_run` with its run id.
    WAL lets them read at once; writes are serialized (``put_many`` takes the
    write lock with BEGIN IMMEDIATE, waiting up to 30 s), so the run's counts
    stay exact whichever connection made the calls.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self.run_id: str | None = None

    # runs -----------------------------------------------------------------
    def begin_run(self) -> str:
        self.run_id = uuid.uuid4().hex
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT INTO runs(run_id, started, status) VALUES (?, ?, 'running')",
                (self.run_id, time.time()),
            )
        return self.run_id

    def attach_run(self, run_id: str) -> None:
        """Count this connection's calls under a run another connection began."""
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is None:
            raise ValueError(f"{self.path}: no run {run_id}")
        self.run_id = run_id

    def end_run(self, status: str = "finished") -> None:
        if self.run_id is None:
            return
        self.conn.execute(
            "UPDATE runs SET finished=?, status=? WHERE run_id=?", (time.time(), status, self.run_id)
        )

    def add_cached(self, n: int) -> None:
        if self.run_id is not None and n:
            self.conn.execute(
                "UPDATE runs SET calls_cached = calls_cached + ? WHERE run_id=?", (n, self.run_id)
            )

    def run_counts(self, run_id: str | None = None) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT calls_made, calls_cached FROM runs WHERE run_id=?", (run_id or self.run_id,)
        ).fetchone()
        return {"calls_made": row[0], "calls_cached": row[1]} if row else {"calls_made": 0, "calls_cached": 0}

    def all_runs(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT run_id, started, finished, status, calls_made, calls_cached FROM runs ORDER BY started")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    # calls ----------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
            for k, resp in self.conn.execute(q, chunk):
                out[k] = json.loads(resp)
        return out

    def put_many(self, model: str, rows: list[tuple[str, dict[str, Any], Any]]) -> None:
        """Insert (key, request, response) rows and count them as made by this
        run, atomically. A key already present (another run raced us) is kept
        and not counted."""
        if not rows:
            return
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO calls(key, model, kind, request, response, run_id, created) VALUES (?,?,?,?,?,?,?)",
                [(k, model, req.get("kind", ""), canonical(req), canonical(resp), self.run_id or "", now) for k, req, resp in rows],
            )
            added = self.conn.total_changes - before
            if self.run_id is not None:
                self.conn.execute(
                    "UPDATE runs SET calls_made = calls_made + ? WHERE run_id=?", (added, self.run_id)
                )

    def info(self) -> dict[str, Any]:
        n = self.conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        per_model = dict(self.conn.execute("SELECT model, COUNT(*) FROM calls GROUP BY model").fetchall())
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "calls": n, "per_model": per_model, "runs": len(self.all_runs()), "bytes": size}

    def clear(self, model: str | None = None) -> int:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if model is None:
                cur = self.conn.execute("DELETE FROM calls")
            else:
                cur = self.conn.execute("DELETE FROM calls WHERE model=?", (model,))
        self.conn.execute("VACUUM")
        return cur.rowcount

    def close(self) -> None:
        self.conn.close()
