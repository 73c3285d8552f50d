"""Row checksums in the store (issue 16): an edited row is one clear error
naming the store and the row; untouched stores read as before; stores from
before the checksum column are migrated in place (transactionally) and keep
their cached calls; read-only opens change nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_reliability_support import one_line_error, record, vl

from valuelens.errors import ValueLensError
from valuelens.models import CachedModel, Message, OptionRequest
from valuelens.models.scripted import ScriptedBackend
from valuelens.store import STORE_NAME, Store, row_checksum

# The schema valuelens wrote before row checksums (copied from store.py at 3dc98b7).
OLD_SCHEMA = """
CREATE TABLE calls (key TEXT PRIMARY KEY, model TEXT NOT NULL, kind TEXT NOT NULL, request TEXT NOT NULL,
                    response TEXT NOT NULL, run_id TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
                   calls_made INTEGER NOT NULL DEFAULT 0, calls_cached INTEGER NOT NULL DEFAULT 0);
"""


def _reqs(n: int) -> list[OptionRequest]:
    return [OptionRequest((Message("user", f"question {i}"),), ("A", "B", "C")) for i in range(n)]


def _filled(path: Path, n: int = 5) -> tuple[Store, CachedModel, list]:
    store = Store(path)
    store.begin_run()
    model = CachedModel(ScriptedBackend(), store, "m")
    return store, model, model.option_distribution(_reqs(n))


def _sql(path: Path, *statements: str) -> None:
    """Edit the file the way a user would, with sqlite3 directly, and fold the WAL back."""
    with sqlite3.connect(path) as c:
        for s in statements:
            c.execute(s)
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_is_over_every_stored_field():
    base = ("k", "m", "option_distribution", '{"a":1}', '{"b":2}')
    sums = {row_checksum(*base)}
    for i in range(5):
        changed = list(base)
        changed[i] += "x"
        sums.add(row_checksum(*changed))
    assert len(sums) == 6
    # fields cannot run into each other: moving a character across a boundary changes the sum
    assert row_checksum("ab", "c", "k", "q", "r") != row_checksum("a", "bc", "k", "q", "r")
    assert row_checksum("a", "b", "k", "q", 'r"') != row_checksum("a", "b", "k", 'q"', "r")


def test_untouched_store_reads_the_same(tmp_path):
    path = tmp_path / STORE_NAME
    store, _, first = _filled(path)
    store.close()
    store = Store(path)
    backend = ScriptedBackend()
    again = CachedModel(backend, store, "m").option_distribution(_reqs(5))
    assert again == first and backend.calls == 0
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*) FROM calls WHERE checksum IS NULL").fetchone()[0] == 0


@pytest.mark.parametrize("column,new", [
    # a structurally valid edit: the old checks (JSON, kind, probabilities) cannot see it
    ("response", "json_set(response, '$.probs', json('[0.0, 0.0, 1.0]'))"),
    ("request", "json_set(request, '$.prefill', 'Answer:')"),
    ("model", "'other'"),
    ("checksum", "NULL"),
    ("checksum", "'0123'"),
])
def test_edited_row_is_a_clear_error(column, new, tmp_path):
    path = tmp_path / STORE_NAME
    store, _, _ = _filled(path)
    store.close()
    key = sqlite3.connect(path).execute("SELECT key FROM calls ORDER BY rowid LIMIT 1").fetchone()[0]
    _sql(path, f"UPDATE calls SET {column} = {new} WHERE key = '{key}'")
    store = Store(path)
    with pytest.raises(ValueLensError) as e:
        CachedModel(ScriptedBackend(), store, "m").option_distribution(_reqs(5))
    msg = str(e.value)
    assert str(path) in msg and key[:16] in msg and "\n" not in msg
    assert "checksum" in msg and f"valuelens cache clear {tmp_path}" in msg and e.value.exit_code == 2
    # the other rows are fine
    assert len(store.get_many(sqlite3.connect(path).execute(
        "SELECT key FROM calls WHERE key != ?", (key,)).fetchall()[0])) == 1


def _old_store(path: Path, rows: list[tuple]) -> None:
    with sqlite3.connect(path) as c:
        c.executescript(OLD_SCHEMA)
        c.execute("INSERT INTO runs VALUES ('r0', 1.0, 2.0, 'finished', ?, 0)", (len(rows),))
        c.executemany("INSERT INTO calls VALUES (?,?,?,?,?,'r0',1.0)", rows)


def _rows_of(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT key, model, kind, request, response FROM calls ORDER BY key").fetchall()


def test_store_from_before_checksums_is_migrated_and_keeps_its_calls(tmp_path):
    new = tmp_path / "new.sqlite"
    store, _, first = _filled(new)
    store.close()
    rows = _rows_of(new)
    old = tmp_path / "old" / STORE_NAME
    old.parent.mkdir()
    _old_store(old, rows)

    # read-only (cache info, report): opens, reads, writes nothing
    before = _digest(old)
    ro = Store(old, readonly=True)
    assert ro.info()["calls"] == 5 and len(ro.get_many([r[0] for r in rows])) == 5
    ro.close()
    assert _digest(old) == before and not Path(f"{old}-wal").exists()

    # writable: sealed in place, every cached call still served, none recomputed
    store = Store(old)
    backend = ScriptedBackend()
    again = CachedModel(backend, store, "m").option_distribution(_reqs(5))
    assert again == first and backend.calls == 0
    store.close()
    with sqlite3.connect(old) as c:
        sums = c.execute("SELECT key, model, kind, request, response, checksum FROM calls").fetchall()
    assert len(sums) == 5 and all(r[5] == row_checksum(*r[:5]) for r in sums)
    assert [r for r in _rows_of(old)] == rows  # the payloads themselves are untouched

    # and after that an edit is caught like in a new store
    _sql(old, "UPDATE calls SET response = json_set(response, '$.covered_mass', 0.5) "
              "WHERE rowid = (SELECT MIN(rowid) FROM calls)")
    store = Store(old)
    with pytest.raises(ValueLensError, match="does not match its checksum"):
        CachedModel(ScriptedBackend(), store, "m").option_distribution(_reqs(5))


def test_migration_killed_midway_leaves_the_old_store(tmp_path, monkeypatch):
    """The column and the checksums land in one transaction: a failure (or a kill) during it rolls back."""
    src = tmp_path / "src.sqlite"
    store, _, _ = _filled(src)
    store.close()
    old = tmp_path / STORE_NAME
    _old_store(old, _rows_of(src))
    before = _rows_of(old)

    import valuelens.store as store_mod

    calls = {"n": 0}
    real = store_mod.row_checksum

    def dying(*a):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a kill would, in the middle of sealing
        return real(*a)

    monkeypatch.setattr(store_mod, "row_checksum", dying)
    with pytest.raises(KeyboardInterrupt):
        Store(old)
    monkeypatch.setattr(store_mod, "row_checksum", real)
    with sqlite3.connect(old) as c:
        assert "checksum" not in {r[1] for r in c.execute("PRAGMA table_info(calls)")}
    assert _rows_of(old) == before
    Store(old).close()  # the next open migrates
    with sqlite3.connect(old) as c:
        assert c.execute("SELECT COUNT(*) FROM calls WHERE checksum IS NOT NULL").fetchone()[0] == len(before)


# ------------------------------------------------------------------ through the real command line

SCRIPT = {"rules": [{"contains": "China", "text": "(B) because"}], "default_text": "A. yes"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ck")
    script = d / "s.json"
    script.write_text(json.dumps(SCRIPT), encoding="utf-8")
    audit = d / "a.yaml"
    audit.write_text(f"name: ck\nseed: 0\noutput_dir: '{d / 'out'}'\nmodels:\n  - {{name: m, backend: "
                     f"'scripted:{script}'}}\nlayers:\n  first_token: {{limit: 2}}\n", encoding="utf-8")
    r = vl("run", str(audit), "-q", cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "out", audit


def _made(out: Path) -> int:
    runs = json.loads((out / "run.json").read_text("utf-8"))
    assert runs["models"], runs
    return sum(m["calls_made"] for m in runs["models"])


def test_cli_edited_row_then_the_advice_works(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    store = out / STORE_NAME
    for p in out.glob(f"{STORE_NAME}-*"):
        p.unlink()
    # swap a stored distribution's probabilities: still a valid result, a different number
    _sql(store, "UPDATE calls SET response = json_set(response, '$.probs', json(printf('[%s]', "
                "(SELECT group_concat(value, ',') FROM (SELECT value FROM json_each(response, '$.probs') "
                "ORDER BY key DESC))))) WHERE kind = 'option_distribution' "
                "AND rowid = (SELECT MIN(rowid) FROM calls WHERE kind = 'option_distribution')")
    r = vl("run", str(finished[1]), "-q", "--out", str(out), cwd=tmp_path)
    ok = r.returncode == 2 and one_line_error(r.stderr) and "does not match its checksum" in r.stderr
    record("store_checksum", case="edited-value", checksum_cases=1, checksum_clear=int(ok))
    assert r.returncode == 2, r.stderr
    assert one_line_error(r.stderr), r.stderr
    flat = " ".join(r.stderr.split())
    assert str(store) in flat and "model 'm'" in flat and "does not match its checksum" in flat
    assert f"valuelens cache clear {out} --model m --yes" in flat
    # doing what it says: the model's calls are dropped and recomputed, the run finishes
    c = vl("cache", "clear", str(out), "--model", "m", "--yes", cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    r = vl("run", str(finished[1]), "-q", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_cli_store_from_before_checksums_still_works(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    store = out / STORE_NAME
    for p in out.glob(f"{STORE_NAME}-*"):
        p.unlink()
    n = len(_rows_of(store))
    with sqlite3.connect(store) as c:  # as an older valuelens left it
        c.execute("ALTER TABLE calls DROP COLUMN checksum")
    info = vl("cache", "info", str(out), cwd=tmp_path)  # read-only: nothing changed
    assert info.returncode == 0 and f"{n} calls" in info.stdout, info.stderr
    with sqlite3.connect(store) as c:
        assert "checksum" not in {r[1] for r in c.execute("PRAGMA table_info(calls)")}
    r = vl("run", str(finished[1]), "-q", "--out", str(out), cwd=tmp_path)
    record("store_checksum", case="pre-checksum-store", checksum_cases=1,
           checksum_clear=int(r.returncode == 0 and _made(out) == 0))
    assert r.returncode == 0, r.stderr
    assert _made(out) == 0  # every call served from the migrated store
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT COUNT(*) FROM calls WHERE checksum IS NULL").fetchone()[0] == 0
