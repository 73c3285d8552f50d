"""The command line: runs, resumes, errors (exit 2, one line), cache, lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from valuelens.audit import locked

SCRIPT = {"rules": [{"contains": "China", "text": "(B) because"}, {"contains": "中国", "text": "(B) 因为"}],
          "default_text": "A. yes"}


def vl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valuelens", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def audit(tmp_path) -> Path:
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    p = tmp_path / "audit.yaml"
    p.write_text(f"""\
name: clitest
output_dir: {tmp_path / 'out'}
models:
  - name: fake
    backend: scripted:{tmp_path / 'script.json'}
    region: China
    family: Test
layers:
  first_token: {{limit: 3, generate_check: true}}
""")
    return p


def test_run_writes_tables_manifest_and_resumes_from_cache(audit, tmp_path):
    r = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for name in ("first_token_items", "first_token_options", "first_token_summary", "models"):
        assert (out / "results" / f"{name}.parquet").is_file() and (out / "results" / f"{name}.csv").is_file()
    manifest = json.loads((out / "run.json").read_text())
    # 3 questions x 2 countries x 2 languages, asked as ZS, ZS[ctrl] and for a free answer
    assert manifest["status"] == "finished" and manifest["calls"] == {"calls_made": 36, "calls_cached": 0}
    assert manifest["models"][0]["region"] == "China" and manifest["versions"]["valuelens"]
    items = pd.read_parquet(out / "results" / "first_token_items.parquet")
    assert len(items) == 3 * 2 * 2 * 2 and set(items.condition) == {"ZS", "ZS[ctrl]"}
    zs = items[items.condition == "ZS"]
    assert set(zs.loc[zs.country == "United States", "reply_option"]) == {"A"}
    assert set(zs.loc[zs.country == "China", "reply_option"]) == {"B"}
    ctrl = items[items.condition == "ZS[ctrl]"]
    assert (ctrl.prompt_country != ctrl.country).all() and (zs.prompt_country == zs.country).all()
    r2 = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r2.returncode == 0
    assert json.loads((out / "run.json").read_text())["calls"] == {"calls_made": 0, "calls_cached": 36}
    info = vl("cache", "info", str(out), cwd=tmp_path)
    assert "36 calls" in info.stdout and "fake: 36" in info.stdout
    assert "deleted 36 calls" in vl("cache", "clear", str(out), "--yes", cwd=tmp_path).stdout


def test_bad_input_exit_2_one_line_nothing_written(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\noutput_dir: {tmp_path / 'never'}\nmodels: []\nlayers: {{first_token: {{}}}}\n")
    r = vl("run", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "bad.yaml line 3: models" in r.stderr
    assert not (tmp_path / "never").exists()
    assert vl("run", str(tmp_path / "missing.yaml"), cwd=tmp_path).returncode == 2
    r = vl("cache", "info", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "not a valuelens output directory" in r.stderr


def test_missing_backend_file_is_a_clear_error(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text(f"output_dir: {tmp_path / 'o'}\nmodels: [{{name: m, backend: 'scripted:{tmp_path}/none.json'}}]\n"
                 "layers: {first_token: {}}\n")
    r = vl("run", str(p), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "none.json: file not found" in r.stderr and "Traceback" not in r.stderr
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "failed"


def test_concurrent_run_on_same_output_is_refused(audit, tmp_path):
    with locked(tmp_path / "out"):
        r = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "another valuelens run is using" in r.stderr


def test_models_validate_and_help(audit, tmp_path):
    r = vl("models", str(audit), cwd=tmp_path)
    assert r.returncode == 0 and "openai" in r.stdout and "fake" in r.stdout and "China" in r.stdout
    assert "ok (1 models" in vl("validate", str(audit), cwd=tmp_path).stdout
    for cmd in ([], ["run"], ["cache"], ["cache", "clear"], ["models"], ["validate"]):
        h = vl(*cmd, "--help", cwd=tmp_path)
        assert h.returncode == 0 and "Usage" in h.stdout
