"""Every audit in examples/ that runs on the embedded model passes `valuelens validate` (the audit file, the layers' data files
in ../shared/data, the output directory) from the repository root, as `make run AUDIT=examples/X.yaml`
runs it; and each says at the top how long it took here. Skips when ../shared/data is absent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALL = sorted((ROOT / "examples").glob("*.yaml"))


def _embedded_only(p: Path) -> bool:
    backends = re.findall(r"^\s*backend:\s*(\S+)", p.read_text(encoding="utf-8"), re.M)
    return bool(backends) and all(b == "embedded" for b in backends)


# The examples that run here, on the embedded model and ../shared/data. The others are templates for real
# models (mixed_fleet.yaml: local weights, a server, an API key), checked by their own tests
# (tests/test_model_layers.py) and not timed here.
EXAMPLES = [p for p in ALL if _embedded_only(p)]


def test_there_are_examples_for_every_layer():
    assert {"first_token_wvs.yaml", "def_wvs.yaml", "mark_wvs.yaml", "dilemmas_moralchoice.yaml",
            "all_layers_wvs.yaml"} <= {p.name for p in EXAMPLES}
    text = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLES}
    for layer in ("first_token", "def", "dilemmas", "mark"):
        assert any(re.search(rf"^  {layer}:", t, re.M) for t in text.values()), layer
    assert any(all(re.search(rf"^  {k}:", t, re.M) for k in ("first_token", "def", "dilemmas", "mark"))
               for t in text.values()), "no all-layers example"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_states_its_measured_time(path):
    head = "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:12])
    # a dated measurement with its wall time and the machine's load
    assert re.search(r"\d{4}-\d{2}-\d{2}", head) and re.search(r"(?i)\bwall\b", head) and \
        re.search(r"(?i)\bload\b", head), f"{path.name}: no measured run time (date, wall, load) in its opening comment"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path, shared_data, tmp_path):
    out = subprocess.run([sys.executable, "-m", "valuelens", "validate", str(path.relative_to(ROOT))], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr or out.stdout
    assert f"{path.relative_to(ROOT)}: ok" in out.stdout
