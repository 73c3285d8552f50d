"""The results store: one SQLite file (WAL) per output directory.

Every model call is recorded under a hash of (model identity, full request,
settings, seed, sample index). Rows are written in a transaction together
with the count of calls the current run made, so a run killed at any moment
resumes with nothing lost and nothing counted twice.

Each row carries a checksum (:func:`row_checksum`, BLAKE2b over its key,
model, kind, request and response) verified whenever it is read, so a row
edited outside valuelens (``sqlite3 store.sqlite "UPDATE calls ..."``) is an
error naming the store and the row, never a silently changed number. It
guards against edits and damage, not against someone who recomputes it.

Stores written before the checksum existed (no ``checksum`` column) are
migrated in place on the first writable open: the column is added and every
row sealed with its checksum in one transaction (a kill during it rolls back
to the old store, and the next open migrates again). Why seal rather than
keep them "unverified": an unverified row would be a hole anyone could use
(clear a checksum and the edit passes), and after migration every row of every
store is held to the same rule: no checksum, or a wrong one, is an error. What
migration cannot know is whether an old row was already edited before it was
sealed; those rows still get the structural check (:meth:`Store._checked`). A
store opened read-only (``cache info``, ``report``) is never changed; its old
rows, if any, are read with the structural check only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

from valuelens.errors import ValueLensError, os_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created REAL NOT NULL,
    checksum TEXT
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
EXPECTED = {"calls": {"key", "model", "kind", "request", "response", "run_id", "created", "checksum"},
            "runs": {"run_id", "started", "finished", "status", "calls_made", "calls_cached"}}
# The schema before row checksums: still opened (migrated in place when writable, see the module docstring).
UNSEALED = {**EXPECTED, "calls": EXPECTED["calls"] - {"checksum"}}


def _sql(method):
    """A Store method whose SQLite errors become one line naming the store."""
    @wraps(method)
    def wrapped(self, *args, **kwargs):
        with self._translated():
            return method(self, *args, **kwargs)
    return wrapped


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing anything, not even SQLite's -shm file: ``immutable=1``
    when the WAL is empty (the file holds everything), else ``mode=ro`` (a run
    is writing, or was killed: its WAL has rows), falling back to immutable on
    read-only media where the -shm file cannot be made."""
    uri = path.resolve().as_uri()
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _nearly_full(path: Path) -> bool:
    """Whether the store's file system is (about) full: SQLite reports some writes
    on a full disk (its shared-memory file) as an I/O error."""
    try:
        return shutil.disk_usage(path.parent).free < 256 << 10
    except OSError:
        return False


def store_error(path: Path, e: sqlite3.Error) -> ValueLensError:
    name = getattr(e, "sqlite_errorname", "") or ""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if name.startswith("SQLITE_FULL") or "disk is full" in msg or (name.startswith("SQLITE_IOERR")
                                                                   and _nearly_full(path)):
        return ValueLensError(f"{path}: no space left on the device while writing the store ({msg}); free some "
                              f"space and rerun the same command (it resumes from the store)", exit_code=1)
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in msg or "malformed" in msg:
        return ValueLensError(f"{path}: damaged or not an SQLite store ({msg}); move it away to start afresh "
                              f"(its cached calls are lost) or restore it")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ValueLensError(f"{path}: the store is busy ({msg}); another process holds it", exit_code=1)
    if name.startswith("SQLITE_READONLY"):
        return ValueLensError(f"{path}: the store is read-only ({msg})")
    if name.startswith("SQLITE_CANTOPEN"):
        return ValueLensError(f"{path}: cannot open the store ({msg}); check the path and its permissions")
    return ValueLensError(f"{path}: store error ({msg})", exit_code=1)


def canonical(obj: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, exact floats."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(model_identity: dict[str, Any], request: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"model": model_identity, "request": request}).encode()).hexdigest()


def row_checksum(key: str, model: str, kind: str, request: str, response: str) -> str:
    """BLAKE2b-128 (hex) of a row's stored text: key, model, kind, request and
    response as a JSON list (unambiguous: no field can run into the next)."""
    text = json.dumps([key, model, kind, request, response], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16, person=b"valuelens-row-v1").hexdigest()


class Store:
    """One SQLite connection, usable only from the thread that opened it.

    Threads of one run each open their own Store on the same file: one of them
    calls :meth:`begin_run`, the others :meth:`attach_run` with its run id.
    WAL lets them read at once; writes are serialized (``put_many`` takes the
    write lock with BEGIN IMMEDIATE, waiting up to 30 s), so the run's counts
    stay exact whichever connection made the calls.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.run_id: str | None = None
        self.sealed = True  # rows carry checksums (False: an old store opened read-only, see the module docstring)
        if self.path.exists() and not self.path.is_file():
            raise ValueLensError(f"{self.path}: not a regular file (expected valuelens' SQLite store); move it "
                                 f"away or choose another output directory")
        if readonly and not self.path.is_file():
            raise ValueLensError(f"{self.path}: no store here")
        with self._translated():
            if readonly:
                self.conn = _connect_readonly(self.path)
            else:
                if self.path.is_file() and not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)):
                    raise ValueLensError(f"{self.path}: the store cannot be written (read-only file system or no "
                                         f"permission)")
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise os_error(self.path.parent, e, "cannot create the output directory") from None
                self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._check_schema()
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")

    def _check_schema(self) -> None:
        """A new (empty) file gets the schema; anything else must be exactly a valuelens store."""
        tables = {name: {r[1] for r in self.conn.execute(f"PRAGMA table_info({name})")}
                  for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                  if not name.startswith("sqlite_")}
        if not tables and not self.readonly:
            self.conn.execute("BEGIN IMMEDIATE")  # one connection creates it; another one waits, then sees it
            try:
                if self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0] == 0:
                    for stmt in SCHEMA.split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return
        if tables == UNSEALED:
            self._check_length()
            if not self.readonly:
                self._seal()
            self.sealed = not self.readonly
            return
        if tables != EXPECTED:
            found = ", ".join(sorted(tables)) or "no tables"
            raise ValueLensError(f"{self.path}: an SQLite database of another schema ({found}), not a valuelens "
                                 f"store; move it away or choose another output directory")
        self._check_length()

    def _seal(self) -> None:
        """Migrate a store from before row checksums: add the column and seal every row, in one
        transaction (another connection doing the same waits on the write lock, then finds it done)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(calls)")}
            if "checksum" not in cols:
                self.conn.execute("ALTER TABLE calls ADD COLUMN checksum TEXT")
                rows = self.conn.execute("SELECT key, model, kind, request, response FROM calls").fetchall()
                self.conn.executemany("UPDATE calls SET checksum=? WHERE key=?",
                                      [(row_checksum(*r), r[0]) for r in rows])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _check_length(self) -> None:
        """A file shorter than the pages its header counts was truncated (unless the WAL holds the rest)."""
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        if self.path.stat().st_size < pages * size:
            raise ValueLensError(f"{self.path}: damaged: truncated ({self.path.stat().st_size} of {pages * size} "
                                 f"bytes); move it away to start afresh (its cached calls are lost) or restore it")

    @contextmanager
    def _translated(self):
        """SQLite's errors as one line naming the store (disk full: exit 1, damaged file: exit 2)."""
        try:
            yield
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None

    # runs -----------------------------------------------------------------
    @_sql
    def begin_run(self) -> str:
        self.run_id = uuid.uuid4().hex
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT INTO runs(run_id, started, status) VALUES (?, ?, 'running')",
                (self.run_id, time.time()),
            )
        return self.run_id

    @_sql
    def attach_run(self, run_id: str) -> None:
        """Count this connection's calls under a run another connection began."""
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is None:
            raise ValueError(f"{self.path}: no run {run_id}")
        self.run_id = run_id

    @_sql
    def end_run(self, status: str = "finished") -> None:
        if self.run_id is None:
            return
        self.conn.execute(
            "UPDATE runs SET finished=?, status=? WHERE run_id=?", (time.time(), status, self.run_id)
        )

    @_sql
    def add_cached(self, n: int) -> None:
        if self.run_id is not None and n:
            self.conn.execute(
                "UPDATE runs SET calls_cached = calls_cached + ? WHERE run_id=?", (n, self.run_id)
            )

    @_sql
    def run_counts(self, run_id: str | None = None) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT calls_made, calls_cached FROM runs WHERE run_id=?", (run_id or self.run_id,)
        ).fetchone()
        return {"calls_made": row[0], "calls_cached": row[1]} if row else {"calls_made": 0, "calls_cached": 0}

    @_sql
    def all_runs(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT run_id, started, finished, status, calls_made, calls_cached FROM runs ORDER BY started")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    # calls ----------------------------------------------------------------
    @_sql
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            cols = "key, model, kind, request, response, " + ("checksum" if self.sealed else "NULL")
            q = f"SELECT {cols} FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
            for k, model, kind, req, resp, checksum in self.conn.execute(q, chunk):
                out[k] = self._checked(k, model, kind, req, resp, checksum)
        return out

    def _checked(self, key: str, model: str, kind: str, request: str, response: str,
                 checksum: str | None = None) -> Any:
        """A stored response, refused (one line naming the store and the row) when
        it is not what valuelens writes for its kind, or (sealed stores) its
        checksum is missing or does not match: an edited or damaged row."""
        where = f"{self.path}: row {key[:16]}… (model {model!r}, {kind or 'unknown kind'})"
        fix = (f"; drop that model's cached calls with `valuelens cache clear {self.path.parent} --model {model} "
               f"--yes` and rerun (they are recomputed), or restore the store")
        try:
            resp = json.loads(response)
            req = json.loads(request)
        except (TypeError, ValueError, RecursionError):
            raise ValueLensError(f"{where}: not valid JSON{fix}") from None
        ok = isinstance(resp, dict) and isinstance(req, dict) and req.get("kind", "") == kind
        if ok and kind == "generate":
            ok = isinstance(resp.get("text"), str)
        elif ok and kind == "option_distribution":
            probs, mass = resp.get("probs"), resp.get("covered_mass")
            ok = (_number(mass) and 0 <= mass <= 1 + 1e-9
                  and (probs is None or (isinstance(probs, list) and len(probs) == len(req.get("labels") or [])
                                         and all(_number(p) and p >= 0 for p in probs))))
        if not ok:
            raise ValueLensError(f"{where}: the stored response is not a valid {kind or 'call'} result "
                                 f"(edited?){fix}")
        if self.sealed and checksum != row_checksum(key, model, kind, request, response):
            what = "has no checksum" if checksum is None else "does not match its checksum"
            raise ValueLensError(f"{where}: the stored row {what}: it was changed outside valuelens or "
                                 f"damaged{fix}")
        return resp

    @_sql
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
            texts = [(k, model, req.get("kind", ""), canonical(req), canonical(resp)) for k, req, resp in rows]
            self.conn.executemany(
                "INSERT OR IGNORE INTO calls(key, model, kind, request, response, run_id, created, checksum) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [(*t, self.run_id or "", now, row_checksum(*t)) for t in texts],
            )
            added = self.conn.total_changes - before
            if self.run_id is not None:
                self.conn.execute(
                    "UPDATE runs SET calls_made = calls_made + ? WHERE run_id=?", (added, self.run_id)
                )

    @_sql
    def model_spend(self, models: Sequence[str]) -> tuple[int, int, int]:
        """Stored calls of these models and their recorded tokens (prompt, completion): what earlier runs
        spent, for budget caps (valuelens.models.usage.Budget). Calls stored before tokens were counted add
        to the calls only."""
        names = list(models)
        if not names:
            return 0, 0, 0
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(response, '$.usage.prompt')), 0), "
            "COALESCE(SUM(json_extract(response, '$.usage.completion')), 0) FROM calls "
            f"WHERE model IN ({','.join('?' * len(names))})", names).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    @_sql
    def info(self) -> dict[str, Any]:
        n = self.conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        per_model = dict(self.conn.execute("SELECT model, COUNT(*) FROM calls GROUP BY model").fetchall())
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "calls": n, "per_model": per_model, "runs": len(self.all_runs()), "bytes": size}

    @_sql
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
