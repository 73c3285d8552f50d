"""OPENAI_BASE_URL / OPENAI_API_KEY as defaults for openai: backends (issue 20.8)."""

from __future__ import annotations

import pytest
from fake_openai_server import FakeOpenAIServer

from valuelens.errors import ValueLensError
from valuelens.lanes import lane_of, server_of
from valuelens.models.registry import load_backend, parse_spec
from valuelens.models.requests import Message, OptionRequest

REQ = OptionRequest((Message("user", "q"),), ("A", "B"), "Answer: (")


def test_model_without_url_uses_openai_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueLensError, match="or set OPENAI_BASE_URL"):
        parse_spec("openai:gpt-4o")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    spec = parse_spec("openai:gpt-4o")
    assert spec.model == "gpt-4o" and spec.url == "http://127.0.0.1:9999/v1"
    assert lane_of("openai:gpt-4o") == server_of("http://127.0.0.1:9999/v1") == "http://127.0.0.1:9999"
    assert parse_spec("openai:m@http://other:1/v1").url == "http://other:1/v1"  # an explicit URL wins


def test_openai_api_key_goes_only_to_that_server(monkeypatch):
    with FakeOpenAIServer(api_key="sk-test") as srv, FakeOpenAIServer() as other:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        b = load_backend("openai:m", max_retries=0)
        assert b.api_key_env == "OPENAI_API_KEY" and b.option_distribution([REQ])[0].probs is not None
        assert srv.requests[-1]["headers"]["Authorization"] == "Bearer sk-test"
        o = load_backend(f"openai:m@{other.url}", max_retries=0)
        o.option_distribution([REQ])
        assert o.api_key_env is None and "Authorization" not in other.requests[-1]["headers"]
        assert load_backend("openai:m", api_key_env="MY_KEY").api_key_env == "MY_KEY"  # explicit wins
    monkeypatch.delenv("OPENAI_API_KEY")
    assert load_backend("openai:m@https://api.openai.com/v1").api_key_env is None
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    assert load_backend("openai:m@https://api.openai.com/v1").api_key_env == "OPENAI_API_KEY"
