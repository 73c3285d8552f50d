"""`run` checks what `validate` checks about the machine (API key variables)
before anything is written: one line, exit 2, no output directory."""

from __future__ import annotations

import os
import subprocess
import sys


def test_run_refuses_an_unset_api_key_variable_before_writing(tmp_path):
    out = tmp_path / "out"
    audit = tmp_path / "a.yaml"
    audit.write_text(f"""\
name: pre
output_dir: {out}
languages: [en]
models:
  - {{name: api, backend: "openai:gpt-x@http://127.0.0.1:9/v1", options: {{api_key_env: VALUELENS_TEST_UNSET_KEY}}}}
layers:
  dilemmas: {{mode: generate}}
""")
    env = {k: v for k, v in os.environ.items() if k != "VALUELENS_TEST_UNSET_KEY"}
    r = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True, text=True,
                       env=env, timeout=120)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and "VALUELENS_TEST_UNSET_KEY" in lines[0] and "is not set" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
