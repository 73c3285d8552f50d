"""`valuelens view`: the report and result files on 127.0.0.1, nothing else, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from valuelens.report.serve import make_server, resolve


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("view")
    (root / "script.json").write_text('{"rules": [], "default_text": "A. yes"}')
    audit = root / "audit.yaml"
    audit.write_text(f"""\
name: viewtest
output_dir: {root / 'out'}
models:
  - name: m
    backend: scripted:{root / 'script.json'}
layers:
  first_token: {{limit: 2}}
""")
    r = subprocess.run([sys.executable, "-m", "valuelens", "run", "-q", str(audit)], capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    (root / "secret.txt").write_text("not served")
    return root / "out"


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_serves_report_and_results_only(run_dir):
    server = make_server(run_dir, 0)
    assert server.server_address[0] == "127.0.0.1"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
        status, body, ctype = get(base + "/")
        assert status == 200 and ctype.startswith("text/html") and b"<html" in body.lower()
        csv = next((run_dir / "results").glob("*.csv"))
        status, body, _ = get(f"{base}/results/{csv.name}")
        assert status == 200 and body == csv.read_bytes()
        assert get(base + "/run.json")[0] == 200
        for bad in ("/../secret.txt", "/results/../../secret.txt", "/results/%2e%2e/%2e%2e/secret.txt",
                    "/store.sqlite", "/results/", "/nope"):
            assert get(base + bad)[0] == 404, bad
        assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
    finally:
        server.shutdown()
        server.server_close()


def test_resolve_refuses_symlinks_out_of_results(run_dir, tmp_path):
    link = run_dir / "results" / "escape.csv"
    link.symlink_to(run_dir.parent / "secret.txt")
    try:
        assert resolve(run_dir, "/results/escape.csv") is None
    finally:
        link.unlink()


def test_cli_view_bad_dir_and_port(tmp_path):
    r = subprocess.run([sys.executable, "-m", "valuelens", "view", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "valuelens", "view", str(tmp_path), "--port", "70000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--port" in r.stderr


def test_cli_view_serves_until_interrupted(run_dir):
    p = subprocess.Popen([sys.executable, "-m", "valuelens", "view", str(run_dir), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, line + p.stderr.read()
        url = line.split("http://", 1)[1].split("/", 1)[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(f"http://{url}/")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        p.send_signal(2)
        p.wait(timeout=30)
