"""A failing model does not stop the audit (issue 20.4)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
from fake_openai_server import FakeOpenAIServer

from valuelens import api
from valuelens.errors import BackendError, MissingDependency, ValueLensError
from valuelens.lanes import Cancelled, model_failure, run_lanes
from valuelens.report import build_report
from valuelens.store import STORE_NAME, Store

OPTS = {"max_retries": 1, "backoff_base": 0.001, "backoff_max": 0.05, "timeout": 10}


class OutOfMemoryError(RuntimeError):
    """Named like torch's (torch.cuda.OutOfMemoryError / torch.OutOfMemoryError)."""


@pytest.mark.parametrize("err,isolated", [
    (BackendError("x: HTTP 401 from /chat/completions: bad key"), True),
    (BackendError("x: gave up after 6 attempts (last: HTTP 503)"), True),
    (MissingDependency("the vllm backend needs vllm"), True),
    (MemoryError(), True), (OutOfMemoryError("CUDA out of memory"), True),
    (RuntimeError("CUDA error: out of memory"), True), (RuntimeError("shape mismatch"), False),
    (ValueLensError("layers.first_token: bad input"), False), (ValueError("bug"), False),
    (KeyboardInterrupt(), False), (Cancelled("stopped"), False)])
def test_which_errors_are_one_models_failure(err, isolated):
    assert model_failure(err) is isolated


def _store(tmp_path: Path) -> tuple[Path, str]:
    s = Store(tmp_path / STORE_NAME)
    try:
        return tmp_path / STORE_NAME, s.begin_run()
    finally:
        s.close()


def test_a_failed_model_does_not_stop_its_lane_or_others(tmp_path):
    path, run_id = _store(tmp_path)
    ran: list[int] = []
    lock = threading.Lock()

    def work(i: int, store) -> int:
        with lock:
            ran.append(i)
        if i == 1:
            raise BackendError("model 1: HTTP 401")
        return i * 10

    failed: dict[int, BaseException] = {}
    out = run_lanes({"local": [0, 1, 2], "http://s:80": [3]}, work, store_path=path, run_id=run_id, failed=failed)
    assert out == [0, None, 20, 30] and sorted(ran) == [0, 1, 2, 3]
    assert list(failed) == [1] and "401" in str(failed[1])
    # fail fast (isolate=None), or no failed dict: the old behaviour, the error is raised
    with pytest.raises(BackendError, match="401"):
        run_lanes({"local": [0, 1, 2]}, work, store_path=path, run_id=run_id, isolate=None, failed={})
    with pytest.raises(BackendError, match="401"):
        run_lanes({"local": [0, 1, 2]}, work, store_path=path, run_id=run_id)

    def bug(i: int, store) -> int:
        raise ValueError("a bug stops the audit")
    with pytest.raises(ValueError):
        run_lanes({"local": [0]}, bug, store_path=path, run_id=run_id, failed={})


def _audit(tmp: Path, out: Path, a: str, b: str, *, fail_fast: bool = False) -> Path:
    opts = ", ".join(f"{k}: {json.dumps(v)}" for k, v in OPTS.items())
    path = tmp / "audit.yaml"
    path.write_text(f"""\
name: fleet
output_dir: {out}
countries: [United States, China]
languages: [en]
{"fail_fast: true" if fail_fast else ""}
models:
  - {{name: api-a, backend: "openai:fake-a@{a}", options: {{{opts}}}}}
  - {{name: api-b, backend: "openai:fake-b@{b}", options: {{{opts}, api_key_env: FLEET_B_KEY}}}}
layers:
  first_token: {{limit: 2}}
""", encoding="utf-8")
    return path


def test_401_model_is_marked_failed_the_other_completes_and_rerun_retries_only_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("FLEET_B_KEY", "wrong-key")
    with FakeOpenAIServer() as a, FakeOpenAIServer(api_key="right-key") as b:
        audit = _audit(tmp_path, out, a.url, b.url)
        result = api.run_full(audit)
        manifest = json.loads((out / "run.json").read_text())
        report = build_report(out).read_text(encoding="utf-8")
        cat = pd.read_parquet(out / "results" / "models.parquet")
        sent_a, sent_b = len(a.requests), len(b.requests)
        monkeypatch.setenv("FLEET_B_KEY", "right-key")
        api.run_full(audit)
        again_a, again_b = len(a.requests) - sent_a, len(b.requests) - sent_b
        manifest2 = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "finished"
    models = {m["name"]: m for m in manifest["models"]}
    assert models["api-b"]["status"] == "failed" and "HTTP 401" in models["api-b"]["error"]
    assert "wrong-key" not in json.dumps(manifest)  # the echoed key is redacted
    assert models["api-a"].get("status") is None and models["api-a"]["calls_made"] == sent_a > 0
    assert manifest["failed_models"] == {"api-b": models["api-b"]["error"]}
    items = result.tables["first_token_items"]
    assert set(items["model"]) == {"api-a"} and len(items) > 0
    assert set(cat["name"]) == {"api-a", "api-b"} and cat.set_index("name").at["api-b", "status"] == "failed"
    assert "api-b: failed (" in report and "HTTP 401" in report and "api-a" in report
    # the rerun: api-a entirely from the cache, api-b asked
    assert again_a == 0 and again_b > 0
    assert manifest2["failed_models"] == {} and all(m.get("status") != "failed" for m in manifest2["models"])


def test_fail_fast_keeps_the_old_behaviour(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("FLEET_B_KEY", "wrong-key")
    with FakeOpenAIServer() as a, FakeOpenAIServer(api_key="right-key") as b:
        with pytest.raises(ValueLensError, match="HTTP 401"):
            api.run_full(_audit(tmp_path, out, a.url, b.url, fail_fast=True))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed" and "HTTP 401" in manifest["error"]


def test_every_model_failing_fails_the_audit(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("FLEET_B_KEY", "wrong-key")
    with FakeOpenAIServer(api_key="k") as a, FakeOpenAIServer(api_key="right-key") as b:
        path = _audit(tmp_path, out, a.url, b.url)
        path.write_text(path.read_text().replace("options: {max_retries", "options: {api_key_env: FLEET_B_KEY, "
                                                 "max_retries", 1))
        with pytest.raises(ValueLensError, match="HTTP 401"):
            api.run_full(path)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
