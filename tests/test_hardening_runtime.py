"""Issue 16, at run time (everything outside the model servers): each failure
is one line on stderr with an exit code by cause, no traceback, and nothing
written or left behind; stale tables never pass for a run's results; SIGTERM
is handled like Ctrl-C.

Every case goes through the real command line in a subprocess. Disk-full
cases run twice where possible: with the fault injected in the process
(``INJECT``: a table or the report write fails with ENOSPC, or SQLite's page
limit makes the store full) and on a real tiny tmpfs; read-only media are a
read-only bind mount. Both need a private mount namespace (``unshare``) and
are skipped without one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability_support import one_line_error, record, tree_digest, vl

from valuelens.store import STORE_NAME

SCRIPT = {"rules": [{"contains": "China", "text": "(B) because"}, {"contains": "中国", "text": "(B) 因为"}],
          "default_text": "A. yes"}
FT = "  first_token: {limit: 2, generate_check: true}\n"
DILEMMAS = "  dilemmas: {limit: 1, n_resamples: 100}\n"


def write_audit(path: Path, out: Path, *, name: str = "hard", layers: str = FT + DILEMMAS, delay: float = 0,
                script: Path | None = None, chunk_size: int = 32) -> Path:
    """An audit of one scripted model (its rules written beside the audit unless ``script`` is given)."""
    if script is None:
        script = path.with_suffix(".script.json")
        script.write_text(json.dumps({**SCRIPT, **({"delay": delay} if delay else {})}), encoding="utf-8")
    path.write_text(f"name: {name}\nseed: 0\noutput_dir: '{out}'\nchunk_size: {chunk_size}\nmodels:\n"
                    f"  - {{name: m, backend: 'scripted:{script}'}}\nlayers:\n{layers}", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished run of a two-layer audit (first_token, dilemmas): its output directory and audit file."""
    d = tmp_path_factory.mktemp("finished")
    audit = write_audit(d / "a.yaml", d / "out")
    r = vl("run", str(audit), "-q", cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "out", audit


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    return out


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


def expect(r: subprocess.CompletedProcess, code: int, *parts: str, case: str) -> None:
    """Exit ``code``, exactly one stderr line holding every part, no traceback."""
    ok = r.returncode == code and one_line_error(r.stderr) and all(p in r.stderr for p in parts)
    record("runtime", case=case, runtime_cases=1, runtime_clear=int(ok))
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert one_line_error(r.stderr), r.stderr[-3000:]
    for p in parts:
        assert p in r.stderr, (p, r.stderr)


def status_of(out: Path) -> str | None:
    p = out / "run.json"
    return json.loads(p.read_text("utf-8")).get("status") if p.is_file() else None


# ------------------------------------------------------------------ private mount namespaces

def _ns_prefix() -> list[str] | None:
    if not shutil.which("unshare"):
        return None
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    probe = subprocess.run([*prefix, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d"],
                           capture_output=True, timeout=60)
    return prefix if probe.returncode == 0 else None


NS = _ns_prefix()
needs_ns = pytest.mark.skipif(NS is None, reason="no private mount namespace (unshare -m) here")
VL = f"'{sys.executable}' -m valuelens"


def in_namespace(script: str, cwd: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run a shell script in its own mount namespace; its valuelens command's stderr is returned as
    ``stderr`` and what it prints after ``@@NAME`` markers as sections."""
    r = subprocess.run([*NS, "sh", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "COLUMNS": "200"})
    sections, name = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("@@"):
            name = line[2:].strip()
            sections[name] = ""
        elif name:
            sections[name] += line + "\n"
    rc = int(sections.get("RC", "-1").strip() or -1)
    return subprocess.CompletedProcess(r.args, rc, r.stdout, r.stderr), sections


# ================================================================== output directories

@pytest.mark.parametrize("case", ["file", "below-a-file", "dev-null", "symlink-loop", "lock-is-a-directory",
                                  "store-is-a-directory", "empty"])
def test_unusable_output_directory(case, tmp_path):
    audit = write_audit(tmp_path / "a.yaml", tmp_path / "yaml_out")
    (tmp_path / "file").write_text("x")
    out, parts = {
        "file": (tmp_path / "file", ["file", "not a directory"]),
        "below-a-file": (tmp_path / "file" / "below", ["file is a file, not a directory"]),
        "dev-null": (Path("/dev/null"), ["/dev/null", "character device"]),
        "symlink-loop": (tmp_path / "loop", ["loop", "symbolic links"]),
        "lock-is-a-directory": (tmp_path / "lk", [".lock", "is a directory"]),
        "store-is-a-directory": (tmp_path / "sd", [STORE_NAME, "is a directory"]),
        "empty": ("", ["--out", "empty path"]),
    }[case]
    if case == "symlink-loop":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
    if case == "lock-is-a-directory":
        (tmp_path / "lk" / ".lock").mkdir(parents=True)
    if case == "store-is-a-directory":
        (tmp_path / "sd" / STORE_NAME).mkdir(parents=True)
    before = tree_digest(tmp_path), sorted(p.name for p in tmp_path.rglob("*"))
    expect(vl("run", str(audit), "-q", "--out", str(out), cwd=tmp_path), 2, *parts, case=f"out-{case}")
    assert (tree_digest(tmp_path), sorted(p.name for p in tmp_path.rglob("*"))) == before  # nothing written
    if case != "empty":  # validate knows it before a run (the output_dir of the audit file)
        audit = write_audit(tmp_path / "a.yaml", out)
        expect(vl("validate", str(audit), cwd=tmp_path), 2, *parts, case=f"validate-out-{case}")


@needs_ns
def test_read_only_media(finished, tmp_path):
    """On a read-only mount: `run` refuses (exit 2, one line), `cache info` and `report --out ELSEWHERE` work,
    `report` without --out says where the report could not go, and nothing in the run changes."""
    ro = tmp_path / "ro"
    shutil.copytree(finished[0], ro)
    before = tree_digest(ro)
    audit = finished[1]
    script = (f"mount --bind '{ro}' '{ro}' && mount -o remount,bind,ro '{ro}' || exit 99\n"
              f"{VL} run '{audit}' -q --out '{ro}' >/dev/null 2>run.err; rc=$?; echo @@RC_RUN; echo $rc\n"
              f"{VL} run '{audit}' -q --out '{ro}/new' >/dev/null 2>new.err; rc=$?; echo @@RC_NEW; echo $rc\n"
              f"{VL} cache info '{ro}' >/dev/null 2>info.err; rc=$?; echo @@RC_INFO; echo $rc\n"
              f"{VL} report '{ro}' >/dev/null 2>report.err; rc=$?; echo @@RC_REPORT; echo $rc\n"
              f"{VL} report '{ro}' --out '{tmp_path}/r.html' >/dev/null 2>elsewhere.err; rc=$?; echo @@RC_ELSEWHERE; echo $rc\n"
              f"echo @@FILES; ls -a '{ro}'\n")
    r, s = in_namespace(script, tmp_path)
    assert r.returncode == -1 and "RC_RUN" in s, (r.stdout, r.stderr)
    err = {k: (tmp_path / f"{k}.err").read_text() for k in ("run", "new", "info", "report", "elsewhere")}
    for key, code, parts in (("RUN", 2, ["read-only file system"]), ("NEW", 2, ["read-only file system"]),
                             ("REPORT", 2, ["report.html", "read-only file system", "--out"])):
        rc = int(s[f"RC_{key}"])
        expect(subprocess.CompletedProcess([], rc, "", err[key.lower()]), code, *parts, case=f"readonly-{key.lower()}")
    assert int(s["RC_INFO"]) == 0, err["info"]
    assert int(s["RC_ELSEWHERE"]) == 0, err["elsewhere"]
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert tree_digest(ro) == before and not leftovers(ro)
    assert "store.sqlite-wal" not in s["FILES"]


def test_cache_info_and_report_open_read_only(run_copy, tmp_path):
    """`cache info` and `report --out` open the store and the run read-only: not a byte of the run changes
    (the store's mode and its WAL files included) even when the store file cannot be written."""
    store = run_copy / STORE_NAME
    store.chmod(0o444)
    before = tree_digest(run_copy), sorted(p.name for p in run_copy.iterdir())
    r = vl("cache", "info", str(run_copy), cwd=tmp_path)
    assert r.returncode == 0 and "calls" in r.stdout, r.stderr
    r = vl("report", str(run_copy), "--out", str(tmp_path / "r.html"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tree_digest(run_copy), sorted(p.name for p in run_copy.iterdir())) == before


# ================================================================== the store

def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


def _foreign(p: Path) -> None:
    p.unlink()
    with sqlite3.connect(p) as c:
        c.execute("CREATE TABLE calls (id INTEGER, payload TEXT)")
        c.execute("INSERT INTO calls VALUES (1, 'x')")


def _edited(p: Path) -> None:
    with sqlite3.connect(p) as c:
        c.execute("UPDATE calls SET response = '{\"probs\": [\"a\", -1], \"covered_mass\": 1}' "
                  "WHERE kind = 'option_distribution' AND rowid = (SELECT MIN(rowid) FROM calls "
                  "WHERE kind = 'option_distribution')")
    with sqlite3.connect(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _not_json(p: Path) -> None:
    with sqlite3.connect(p) as c:
        c.execute("UPDATE calls SET response = 'oops{' WHERE rowid = (SELECT MIN(rowid) FROM calls)")
    with sqlite3.connect(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


STORE_CASES = {
    "not-sqlite": (lambda p: p.write_bytes(b"this is not a database\n" * 400), ["not an SQLite store"]),
    "truncated": (_truncate, ["damaged"]),
    "foreign-schema": (_foreign, ["another schema", "calls"]),
    "edited-row": (_edited, ["row", "model 'm'", "not a valid option_distribution result"]),
    "row-not-json": (_not_json, ["row", "not valid JSON"]),
}


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_damaged_store(case, run_copy, tmp_path, finished):
    damage, parts = STORE_CASES[case]
    store = run_copy / STORE_NAME
    damage(store)
    for p in run_copy.glob(f"{STORE_NAME}-*"):
        p.unlink()
    before = {k: v for k, v in tree_digest(run_copy).items() if not k.startswith(STORE_NAME)}
    status = status_of(run_copy)
    if case not in ("edited-row", "row-not-json"):  # an edited row is found when it is read, by a run
        expect(vl("cache", "info", str(run_copy), cwd=tmp_path), 2, str(store), *parts, case=f"store-info-{case}")
    r = vl("run", str(finished[1]), "-q", "--out", str(run_copy), cwd=tmp_path)
    expect(r, 2, STORE_NAME, *parts, case=f"store-run-{case}")
    after = {k: v for k, v in tree_digest(run_copy).items() if not k.startswith(STORE_NAME)}
    if case in ("edited-row", "row-not-json"):
        # the run began (its tables of the last run went to results/stale/) and failed: run.json says so
        assert status_of(run_copy) == "failed"
        assert not any(k.startswith("results/") and "/stale/" not in k and k.endswith(".parquet") for k in after)
    else:
        assert after == before and status_of(run_copy) == status  # nothing written
    assert not leftovers(run_copy)


# ================================================================== run.json and the results tables

@pytest.mark.parametrize("case,content,parts", [
    ("list", "[1, 2]", ["run.json", "expected a JSON object"]),
    ("string", '"finished"', ["run.json", "expected a JSON object"]),
    ("status-number", None, ["run.json", "status must be a string"]),
    ("models-object", None, ["run.json", "models must be a list"]),
    ("faults-list", None, ["run.json", "models[0].faults must be an object"]),
    ("countries-number", None, ["run.json", "audit.countries must be a list"]),
])
def test_bad_run_json(case, content, parts, run_copy, tmp_path):
    m = json.loads((run_copy / "run.json").read_text("utf-8"))
    if content is None:
        {"status-number": lambda: m.update(status=3), "models-object": lambda: m.update(models={"a": 1}),
         "faults-list": lambda: m["models"][0].update(faults=[1]),
         "countries-number": lambda: m["audit"].update(countries=7)}[case]()
        content = json.dumps(m)
    (run_copy / "run.json").write_text(content, encoding="utf-8")
    before = tree_digest(run_copy)
    expect(vl("report", str(run_copy), cwd=tmp_path), 2, *parts, case=f"runjson-{case}")
    assert tree_digest(run_copy) == before and not leftovers(run_copy)


def test_run_json_of_unknown_audit_needs_force(run_copy, tmp_path, finished):
    (run_copy / "run.json").write_text("[1]", encoding="utf-8")
    before = tree_digest(run_copy)
    expect(vl("run", str(finished[1]), "-q", "--out", str(run_copy), cwd=tmp_path), 2, "run.json", "--force",
           case="runjson-run")
    assert tree_digest(run_copy) == before


def test_corrupt_results_parquet(run_copy, tmp_path):
    p = run_copy / "results" / "first_token_summary.parquet"
    p.write_bytes(p.read_bytes()[:200])
    before = tree_digest(run_copy)
    expect(vl("report", str(run_copy), cwd=tmp_path), 2, "first_token_summary.parquet", "not a readable Parquet",
           case="parquet-corrupt")
    assert tree_digest(run_copy) == before and not leftovers(run_copy)


# ================================================================== the audit file: non-regular files

@pytest.mark.parametrize("case", ["fifo", "dev-zero", "directory"])
def test_non_regular_audit_file(case, tmp_path):
    if case == "fifo":
        path = tmp_path / "audit.yaml"
        os.mkfifo(path)
        parts = ["FIFO"]
    elif case == "dev-zero":
        path, parts = Path("/dev/zero"), ["/dev/zero", "character device"]
    else:
        path, parts = tmp_path / "dir.yaml", ["is a directory"]
        path.mkdir()
    for cmd in ("validate", "run"):
        t0 = time.monotonic()
        r = vl(cmd, str(path), cwd=tmp_path, timeout=120)  # a hang would end in TimeoutExpired
        expect(r, 2, str(path), *parts, case=f"audit-{case}-{cmd}")
        assert time.monotonic() - t0 < 120
    assert not (tmp_path / "runs").exists()
    assert stat.S_ISFIFO(path.stat().st_mode) if case == "fifo" else True


# ================================================================== disk full

INJECT = r'''
import errno, os, sys
where = sys.argv.pop(1)

def enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

if where == "tables":  # the third Parquet table finds the disk full halfway
    import pandas as pd
    orig, n = pd.DataFrame.to_parquet, [0]
    def to_parquet(self, path, *a, **k):
        n[0] += 1
        if n[0] == 3:
            f = open(path, "wb") if isinstance(path, (str, os.PathLike)) else path
            f.write(b"PAR1" + b"\0" * 100)
            f.flush()
            raise enospc()
        return orig(self, path, *a, **k)
    pd.DataFrame.to_parquet = to_parquet
elif where == "report":  # the report's text finds the disk full halfway
    import pathlib
    orig = pathlib.Path.write_text
    def write_text(self, data, *a, **k):
        if "report.html" in self.name:
            with open(self, "w", encoding="utf-8") as f:
                f.write(data[: len(data) // 2])
            raise enospc()
        return orig(self, data, *a, **k)
    pathlib.Path.write_text = write_text
elif where == "store":  # SQLite's own "database or disk is full" after a few pages
    import sqlite3
    orig = sqlite3.connect
    def connect(*a, **k):
        c = orig(*a, **k)
        c.execute("PRAGMA max_page_count = 6")
        return c
    sqlite3.connect = connect
sys.argv[0] = "valuelens"
from valuelens.cli import main
main()
'''


@pytest.mark.parametrize("where", ["store", "tables", "report"])
def test_disk_full_injected(where, tmp_path):
    out = tmp_path / "out"
    audit = write_audit(tmp_path / "a.yaml", out, layers=FT)
    r = subprocess.run([sys.executable, "-c", INJECT, where, "run", str(audit), "-q"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    expect(r, 1, "no space left on the device", "rerun", case=f"diskfull-injected-{where}")
    assert not leftovers(tmp_path), leftovers(tmp_path)
    assert status_of(out) == "failed"  # never "finished" when the command failed
    with sqlite3.connect(out / STORE_NAME) as c:
        assert c.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    if where == "report":
        assert not (out / "report.html").exists()
    # with space again, the same command finishes from the store
    r = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert status_of(out) == "finished" and (out / "report.html").is_file()


@needs_ns
@pytest.mark.parametrize("size,where", [("48k", "store"), ("2m", "report")])
def test_disk_full_real_tmpfs(size, where, tmp_path):
    """A tmpfs of SIZE: the store (48 KiB) or the report (2 MiB, plotly.js is ~4.5 MB) does not fit."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / "out"
    audit = write_audit(tmp_path / "a.yaml", out, layers=FT)
    script = (f"mount -t tmpfs -o size={size} tmpfs '{mnt}' || exit 99\n"
              f"{VL} run '{audit}' -q > /dev/null; rc=$?; echo @@RC; echo $rc\n"
              f"echo @@TMP; find '{mnt}' -name '*.tmp'\n"
              f"echo @@STATUS; cat '{out}/run.json' 2>/dev/null | grep -m1 '\"status\"'\n")
    r, s = in_namespace(script, tmp_path)
    expect(r, 1, "no space left on the device", case=f"diskfull-tmpfs-{where}")
    assert s["TMP"].strip() == ""
    assert '"finished"' not in s["STATUS"]


# ================================================================== stale output, another audit

def test_rerun_without_a_layer_leaves_no_stale_tables(run_copy, tmp_path, finished):
    """The same audit rerun with first_token only: no dilemma_* table is left in results/ (they are in
    results/stale/), and the report calls the dilemmas layer "not run", not "included"."""
    assert any(p.name.startswith("dilemma_") for p in (run_copy / "results").iterdir())
    audit = write_audit(tmp_path / "ft.yaml", run_copy, layers=FT, script=finished[1].with_suffix(".script.json"))
    r = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in (run_copy / "results").iterdir() if p.is_file()}
    assert names and not any(n.startswith("dilemma_") for n in names)
    assert {p.name for p in (run_copy / "results" / "stale").iterdir()} == {
        p.name for p in (finished[0] / "results").iterdir() if p.name.startswith("dilemma_")}
    assert set(json.loads((run_copy / "run.json").read_text())["tables"]) == {n.split(".")[0] for n in names}
    html = (run_copy / "report.html").read_text("utf-8")
    assert "Ethical dilemmas: not run" in html and "Ethical dilemmas: included" not in html
    assert "First-token alignment: included" in html
    record("runtime", case="stale-layer-removed", runtime_cases=1, runtime_clear=1)


def test_another_audit_is_refused_unless_force(run_copy, tmp_path):
    before = tree_digest(run_copy)
    other = write_audit(tmp_path / "other.yaml", run_copy, name="other", layers=FT)
    expect(vl("run", str(other), "-q", cwd=tmp_path), 2, str(run_copy), "different audit", "'hard'", "--force",
           case="another-audit")
    assert tree_digest(run_copy) == before
    # another backend under the same model name is another audit too
    swapped = write_audit(tmp_path / "swapped.yaml", run_copy, layers=FT, script=tmp_path / "other.script.json")
    expect(vl("run", str(swapped), "-q", cwd=tmp_path), 2, "model 'm'", "--force", case="another-backend")
    assert tree_digest(run_copy) == before
    r = vl("run", str(other), "-q", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((run_copy / "run.json").read_text())
    assert m["audit"]["name"] == "other" and m["status"] == "finished"
    assert not any(p.name.startswith("dilemma_") for p in (run_copy / "results").iterdir())
    assert any(p.name.startswith("dilemma_") for p in (run_copy / "results" / "stale").iterdir())


# ================================================================== signals

def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "out"
    audit = write_audit(tmp_path / "a.yaml", out, layers=FT, delay=0.2, chunk_size=2)
    proc = subprocess.Popen([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        while proc.poll() is None:  # until the run has stored some calls (however long it takes to start)
            if (out / STORE_NAME).is_file():
                with sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=30) as c:
                    try:
                        if c.execute("SELECT COUNT(*) FROM calls").fetchone()[0] >= 4:
                            break
                    except sqlite3.Error:
                        pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    ok = r.returncode == 143 and one_line_error(err) and "interrupted" in err
    record("runtime", case="sigterm", runtime_cases=1, runtime_clear=int(ok), sigterms=1)
    assert r.returncode == 143, (r.returncode, err)
    assert one_line_error(err) and "SIGTERM" in err, err
    m = json.loads((out / "run.json").read_text())
    assert m["status"] == "interrupted" and m["ended"] and "SIGTERM" in m["error"]
    with sqlite3.connect(out / STORE_NAME) as c:
        (status, finished), = c.execute("SELECT status, finished FROM runs").fetchall()
    assert status == "interrupted" and finished is not None
    assert not leftovers(tmp_path)


def test_enospc_message_helper():
    """The one-line message for each OSError cause (the CLI's last resort for an OSError no caller named)."""
    from valuelens.errors import os_error

    full = os_error("/x/y", OSError(errno.ENOSPC, "No space left on device"))
    assert full.exit_code == 1 and "no space left" in str(full) and "/x/y" in str(full)
    ro = os_error("/x", OSError(errno.EROFS, "Read-only file system"))
    assert ro.exit_code == 2 and "read-only file system" in str(ro)
