"""Issue 8.4: API keys come only from the environment (``api_key_env``) and
appear nowhere in what a run leaves behind — store.sqlite (and its WAL),
results, run.json, report.html — nor in stdout/stderr, also when the server
fails or echoes the key back in an error.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from fake_openai_server import FakeOpenAIServer
from test_reliability_support import cli, one_line_error, openai_audit, record, vl

OPTS = {"api_key_env": "VALUELENS_TEST_KEY", "max_retries": 6, "backoff_base": 0.005, "backoff_max": 0.02,
        "timeout": 10}
RATES = {"http_500": 0.1, "http_429": 0.05, "malformed_json": 0.05, "connection_reset": 0.05}


def fake_key() -> str:
    return "sk-test-" + secrets.token_hex(16)


def leaks(key: str, out: Path, **texts: str) -> list[str]:
    """Where the key (or its random part) shows up: files under out, or the named texts."""
    needles = [key, key.removeprefix("sk-test-")]
    found = [str(p.relative_to(out)) for p in sorted(out.rglob("*"))
             if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]
    return found + [name for name, t in texts.items() if any(n in t for n in needles)]


def test_key_never_written_or_printed(tmp_path):
    key = fake_key()
    out = tmp_path / "out"
    with FakeOpenAIServer(api_key=key, fault_rates=RATES, seed=4) as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options=OPTS, limit=3)
        r = vl("run", str(audit), cwd=tmp_path, env={"VALUELENS_TEST_KEY": key})  # with progress output
        sent = [req["headers"].get("Authorization") for req in srv.requests]
        faults = sum(1 for req in srv.requests if req["fault"])
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").is_file() and (out / "store.sqlite").is_file() and list((out / "results").iterdir())
    assert sent and all(h == f"Bearer {key}" for h in sent)  # the key was used ...
    assert faults > 0
    _, cache_out, cache_err, _ = cli("cache", "info", str(out))
    found = leaks(key, out, stdout=r.stdout, stderr=r.stderr, cache_stdout=cache_out, cache_stderr=cache_err)
    record("secrets", secret_checks=1, secret_leaks=len(found))
    assert not found, f"the API key leaked into {found}"  # ... and written nowhere
    assert json.loads((out / "run.json").read_text())["audit"]["models"][0]["options"]["api_key_env"] == "VALUELENS_TEST_KEY"


def test_key_echoed_by_a_failing_server_is_redacted(tmp_path):
    """A server that rejects the key and echoes it in its error body (as some do)."""
    wrong, right = fake_key(), fake_key()
    out = tmp_path / "out"
    with FakeOpenAIServer(api_key=right) as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options=OPTS, limit=3)
        r = vl("run", str(audit), "-q", cwd=tmp_path, env={"VALUELENS_TEST_KEY": wrong})
        echoed = any(wrong in json.dumps(req["headers"]) for req in srv.requests)
    found = leaks(wrong, out, stdout=r.stdout, stderr=r.stderr) + leaks(right, out, stdout=r.stdout, stderr=r.stderr)
    record("secrets", secret_checks=1, secret_leaks=len(found))
    assert echoed
    assert r.returncode == 1 and one_line_error(r.stderr), r.stderr
    assert "HTTP 401" in r.stderr and "Incorrect API key provided: ***" in r.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not found, f"the API key leaked into {found}"


def test_key_from_environment_only(tmp_path, monkeypatch):
    """No key in the file (refused), and a missing variable is named, not guessed."""
    monkeypatch.delenv("VALUELENS_TEST_KEY", raising=False)
    with FakeOpenAIServer() as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, tmp_path / "out", options=OPTS, limit=1)
        text = audit.read_text()
        code, _, err, _ = cli("run", str(audit), "-q")
        inline = tmp_path / "inline.yaml"
        inline.write_text(text.replace("api_key_env: \"VALUELENS_TEST_KEY\"", "api_key: \"sk-test-inline\""))
        code2, _, err2, _ = cli("validate", str(inline))
    assert code == 2 and one_line_error(err) and "VALUELENS_TEST_KEY" in err and "not set" in err
    assert code2 == 2 and "secrets do not belong in the audit file" in err2 and "sk-test-inline" not in err2
