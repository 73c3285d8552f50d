"""valuelens --version and -h (issue 20.8, the field's conventions)."""

from __future__ import annotations

import subprocess
import sys

from valuelens import __version__


def vl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valuelens", *args], capture_output=True, text=True, timeout=120)


def test_version():
    r = vl("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"valuelens {__version__}" and not r.stderr


def test_short_help_on_the_app_and_a_command():
    top, run = vl("-h"), vl("run", "-h")
    assert top.returncode == 0 and "Usage:" in top.stdout and "run" in top.stdout
    assert run.returncode == 0 and "--out" in run.stdout and "--force" in run.stdout
