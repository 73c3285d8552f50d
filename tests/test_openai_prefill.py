"""Prefill that every server understands (issue 20.2)."""

from __future__ import annotations

import math

import pytest
from fake_openai_server import prompt_of, top_k
from test_openai_backend import FAST, backend, serve  # noqa: F401 - serve is a fixture

from valuelens.errors import BackendError
from valuelens.models.openai_api import resolve_prefill
from valuelens.models.requests import GenerateRequest, GenerateSettings, Message, OptionRequest

LABELS = ("A", "B", "C", "D", "E")
PREFILL = "If I had to choose, my answer would be ("


def opt(text: str) -> OptionRequest:
    return OptionRequest((Message("system", "Be brief."), Message("user", text)), LABELS, PREFILL)


def expected(prompt: str, k: int = 20) -> tuple[float, ...]:
    mass = [sum(math.exp(v) for t, v in top_k(prompt, k) if t.strip() == lab) for lab in LABELS]
    return tuple(m / sum(mass) for m in mass)


def test_rejecting_server_still_runs_the_probe_with_instruction(serve):
    """A server that refuses continue_final_message: prefill instruction asks in the user turn instead."""
    srv = serve(reject_fields=("continue_final_message", "add_generation_prompt"))
    b = backend(srv, prefill="instruction")
    res = b.option_distribution([opt("Q1"), opt("Q2")])
    for body in (r["body"] for r in srv.requests):
        assert "continue_final_message" not in body and body["messages"][-1]["role"] == "user"
        assert body["messages"][-1]["content"].endswith("\n\nAnswer with the option letter only (A / B / C / D / E).")
        assert all(m["content"] != PREFILL for m in body["messages"])
    for r, q in zip(res, ("Q1", "Q2")):  # the first token of the reply, from the prompt the server saw
        prompt = f"Be brief.\n\n{q}\n\nAnswer with the option letter only (A / B / C / D / E)."
        assert r.probs == pytest.approx(expected(prompt), abs=1e-12)
    assert b.identity()["prefill"] == "instruction"


def test_default_on_a_rejecting_server_says_what_to_set(serve):
    srv = serve(reject_fields=("continue_final_message",))
    b = backend(srv)
    assert b.prefill == "continue_final_message" and "prefill" not in b.identity()  # old cache keys kept
    with pytest.raises(BackendError, match="options.prefill to instruction") as e:
        b.option_distribution([opt("Q")])
    assert "\n" not in str(e.value) and len(srv.requests) == 1  # a 400 is not retried


def test_assistant_and_none_modes(serve):
    srv = serve()
    backend(srv, prefill="assistant").option_distribution([opt("Q")])
    body = srv.requests[-1]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": PREFILL}
    assert "continue_final_message" not in body and "add_generation_prompt" not in body
    r = backend(srv, prefill="none").option_distribution([opt("Q")])[0]
    body = srv.requests[-1]["body"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"] and body["messages"][-1]["content"] == "Q"
    assert r.probs == pytest.approx(expected("Be brief.\n\nQ"), abs=1e-12)
    backend(srv).option_distribution([opt("Q")])  # the default: vLLM's extension, as before
    body = srv.requests[-1]["body"]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_every_mode_has_its_own_identity(serve):
    srv = serve()
    idents = [backend(srv, prefill=m).identity() for m in ("continue_final_message", "assistant", "instruction",
                                                            "none")]
    assert len({str(sorted(i.items())) for i in idents}) == 4
    # completions mode sends the prefill as text on every server: the option changes nothing there
    assert "prefill" not in backend(srv, mode="completions", prefill="instruction").identity()


@pytest.mark.parametrize("host,mode", [("api.openai.com", "instruction"), ("myres.openai.azure.com", "instruction"),
                                       ("api.anthropic.com", "assistant"), ("127.0.0.1", "continue_final_message"),
                                       ("vllm.internal", "continue_final_message"),
                                       ("notapi.openai.com.evil", "continue_final_message")])
def test_auto_by_host(host, mode):
    assert resolve_prefill("auto", host) == mode
    assert resolve_prefill("none", host) == "none"


def test_generation_with_instruction_cuts_the_prefill(serve):
    srv = serve()
    b = backend(srv, prefill="instruction")
    req = GenerateRequest((Message("user", "Say it"),), GenerateSettings(max_tokens=5), prefill="gen-")
    out = b.generate([(req, 0)])
    body = srv.requests[-1]["body"]
    assert body["messages"] == [{"role": "user", "content": 'Say it\n\nBegin your reply with "gen-".'}]
    # the fake's reply is "gen-<hash>": returned as the continuation after the prefill, as a prefill would give
    full = "gen-" + __import__("fake_openai_server").generation_text(prompt_of(body), body["seed"])[4:]
    assert out == [full[len("gen-"):]]


def test_sampling_on_a_rejecting_server(serve):
    """No logprobs and no continue_final_message (a hosted API): sampled with the instruction."""
    srv = serve(reject_fields=("continue_final_message",), always="missing_logprobs", sample_first_token=True)
    r = backend(srv, prefill="instruction", samples=10).option_distribution([opt("Q")])[0]
    assert r.estimated and r.samples == 10
