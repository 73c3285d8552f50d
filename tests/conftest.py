from __future__ import annotations

import os
from pathlib import Path

# Before torch is imported (here and in subprocesses): idle OpenMP threads sleep
# instead of spinning, so torch's 2 threads do not stall each other for minutes
# when other jobs hold the cores (seen on the shared 2-core machines). Arithmetic
# is unchanged; only how waiting threads wait.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (make test: one worker per core) each worker's torch, and
# the CLI subprocesses it starts, get cores/workers threads instead of all cores
# each, so two workers do not fight over the same two cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // max(1, int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
# The CLI's rich console reads COLUMNS once, when valuelens.cli is first imported (in whichever test
# comes first under xdist): in-process CLI tests (CliRunner) then all see 200 columns, whatever
# env= they pass. Tests of narrow output set the width themselves (test_terminal, test_catalogue).
os.environ["COLUMNS"] = "200"

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "chat")


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", chat=False, seed=1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (reference data lives outside the repository)")
    return SHARED_DATA.resolve()
