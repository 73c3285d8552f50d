"""OpenAIBackend against a real (fake) OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time

import pytest
from fake_openai_server import VOCAB, FakeOpenAIServer, generation_text, prompt_of, token_logprobs, top_k

from valuelens.errors import BackendError, ValueLensError
from valuelens.models.base import Backend, sample_seed
from valuelens.models.openai_api import OpenAIBackend, _retry_after
from valuelens.models.registry import load_backend
from valuelens.models.requests import GenerateRequest, GenerateSettings, Message, OptionRequest

LABELS = ("A", "B", "C", "D", "E")
FAST = dict(backoff_base=0.001, backoff_max=0.05, timeout=5.0)


@pytest.fixture
def serve():
    """Start FakeOpenAIServer(**kw); every server is stopped at teardown."""
    started: list[FakeOpenAIServer] = []

    def start(**kw) -> FakeOpenAIServer:
        started.append(FakeOpenAIServer(**kw).start())
        return started[-1]

    yield start
    for s in started:
        s.stop()


def backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    return OpenAIBackend(model="fake-model", base_url=srv.url, **{**FAST, **kw})


def opt(text: str, labels=LABELS, prefill: str = "") -> OptionRequest:
    return OptionRequest((Message("system", "Answer with a letter."), Message("user", text)), labels, prefill)


def expected(prompt: str, labels, k: int):
    """Probabilities the scripted server implies: summed over spellings, renormalised."""
    mass = [sum(math.exp(v) for t, v in top_k(prompt, k) if t.strip() == lab.strip()) for lab in labels]
    covered = sum(mass)
    return (tuple(m / covered for m in mass) if covered else None), covered


def assert_result(res, exp):
    probs, covered = exp
    assert res.covered_mass == pytest.approx(covered, abs=1e-12)
    if probs is None:
        assert res.probs is None
    else:
        assert res.probs == pytest.approx(probs, abs=1e-12)


# option distributions -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_option_distribution_matches_script(serve, mode):
    srv = serve()
    b = backend(srv, mode=mode, top_logprobs=20)
    reqs = [opt(f"question {i}", prefill="Answer: " if i % 2 else "") for i in range(6)]
    results = b.option_distribution(reqs)
    sent = srv.requests  # arrival order is not input order
    for body in (s["body"] for s in sent):
        assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["model"] == "fake-model"
        if mode == "chat":
            assert body["logprobs"] is True and body["top_logprobs"] == 20
        else:
            assert body["logprobs"] == 20 and "top_logprobs" not in body
    assert {s["path"] for s in sent} == {"/v1/chat/completions" if mode == "chat" else "/v1/completions"}
    # the server's prompt: message contents (and a chat prefill turn) joined by blank lines;
    # in completions mode the prefill follows the last turn directly
    join = "\n\n" if mode == "chat" else ""
    prompts = [f"Answer with a letter.\n\n{r.messages[1].content}" + (join + r.prefill if r.prefill else "")
               for r in reqs]
    if mode == "completions":
        assert sorted(s["body"]["prompt"] for s in sent) == sorted(prompts)
    for prompt, res in zip(prompts, results):
        assert_result(res, expected(prompt, LABELS, 20))
        assert sum(res.probs) == pytest.approx(1.0)
        assert 0 < res.covered_mass < 1  # VOCAB holds non-label tokens too
    assert b.stats["requests"] == 6 and b.stats["retries"] == 0


def test_options_outside_top_k_get_zero(serve):
    srv = serve()
    b = backend(srv, top_logprobs=3)
    reqs = [opt(f"q{i}") for i in range(12)] + [opt("none", labels=("Q", "R"))]
    results = b.option_distribution(reqs)
    zeros = 0
    for r, res in zip(reqs, results):
        prompt = prompt_of({"messages": [{"content": m.content} for m in r.messages]})
        assert_result(res, expected(prompt, r.labels, 3))
        zeros += sum(1 for p in res.probs or () if p == 0.0)
    assert zeros > 0  # some options missed the top 3 and stay at 0
    assert results[-1].probs is None and results[-1].covered_mass == 0.0


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_exact_options_score_every_option(serve, mode):
    """exact_options: label tokens from /tokenize, their logprobs by id: every
    option is scored (none lost outside a top-k), spellings "X"/" X" summed."""
    srv = serve()
    b = backend(srv, top_logprobs=1, exact_options=True, mode=mode)
    reqs = [opt(f"q{i}") for i in range(8)]
    results = b.option_distribution(reqs)
    for r, res in zip(reqs, results):
        body = ({"prompt": "\n\n".join(m.content for m in r.messages)} if mode == "completions"
                else {"messages": [{"content": m.content} for m in r.messages]})
        lp = token_logprobs(prompt_of(body))
        mass = [sum(math.exp(v) for t, v in lp.items() if t.strip() == lab) for lab in r.labels]
        assert res.covered_mass == pytest.approx(sum(mass), abs=1e-12)
        assert res.probs == pytest.approx(tuple(m / sum(mass) for m in mass), abs=1e-12)
        assert min(res.probs) > 0
    tokenize = [q for q in srv.requests if q["path"] == "/tokenize"]
    assert len(tokenize) == 2 * len(LABELS)  # each label's two spellings, looked up once
    sent = next(q["body"] for q in srv.requests if q["path"] != "/tokenize")
    assert sorted(sent["logprob_token_ids"]) == sorted(i for i, t in enumerate(VOCAB) if t.strip() in LABELS)
    assert b.identity()["exact_options"] is True


def test_exact_options_label_not_one_token(serve):
    srv = serve()
    b = backend(srv, exact_options=True)
    with pytest.raises(ValueLensError, match="option label '(No|Yes)' is not a single token"):
        b.option_distribution([opt("q", labels=("Yes", "No"))])


def test_label_spelled_with_space_counts(serve):
    # a prompt whose top-5 holds both "A" and " A"
    prompt = next(f"p{i}" for i in range(10_000) if {"A", " A"} <= {t for t, _ in top_k(f"p{i}", 5)})
    lp = dict(top_k(prompt, 5))
    srv = serve()
    b = backend(srv, top_logprobs=5)
    for labels in [("A", "B"), (" A", " B")]:
        res = b.option_distribution([OptionRequest((Message("user", prompt),), labels)])[0]
        a = math.exp(lp["A"]) + math.exp(lp[" A"])
        bb = sum(math.exp(v) for t, v in lp.items() if t.strip() == "B")
        assert res.covered_mass == pytest.approx(a + bb)
        assert res.probs[0] == pytest.approx(a / (a + bb))


def test_chat_prefill_continues_final_message(serve):
    srv = serve()
    b = backend(srv)
    b.option_distribution([opt("x", prefill="Answer: ("), opt("y")])
    with_prefill, without = sorted(srv.requests, key=lambda r: len(r["body"]["messages"]), reverse=True)
    assert with_prefill["body"]["messages"][-1] == {"role": "assistant", "content": "Answer: ("}
    assert with_prefill["body"]["continue_final_message"] is True
    assert with_prefill["body"]["add_generation_prompt"] is False
    assert "continue_final_message" not in without["body"]


def test_missing_logprobs_is_an_error_not_retried(serve):
    """With option_mode: logprobs (the default, auto, samples instead: test_openai_sampled.py)."""
    srv = serve(always="missing_logprobs")
    b = backend(srv, option_mode="logprobs")
    with pytest.raises(BackendError, match="returned no logprobs") as e:
        b.option_distribution([opt("x")])
    assert "\n" not in str(e.value)
    assert len(srv.requests) == 1 and b.stats["missing_logprobs"] == 1


# generation -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_generate_returns_scripted_texts_with_derived_seeds(serve, mode):
    srv = serve()
    b = backend(srv, mode=mode)
    st = GenerateSettings(temperature=0.7, top_p=0.9, max_tokens=32, seed=7)
    req = GenerateRequest((Message("user", "Tell me a story."),), st, n=4)
    items = [(req, i) for i in range(4)]
    texts = b.generate(items)
    assert texts == [generation_text("Tell me a story.", sample_seed(7, i)) for i in range(4)]
    bodies = sorted((r["body"] for r in srv.requests), key=lambda body: body["seed"])
    assert [body["seed"] for body in bodies] == sorted(sample_seed(7, i) for i in range(4))
    for body in bodies:
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["n"]) == (0.7, 0.9, 32, 1)


def test_generate_rejects_beams_before_sending(serve):
    srv = serve()
    b = backend(srv)
    req = GenerateRequest((Message("user", "hi"),), GenerateSettings(num_beams=3))
    with pytest.raises(ValueLensError, match="does not support beam search"):
        b.generate([(req, 0)])
    assert srv.requests == [] and b.supports_beams is False


# retries -------------------------------------------------------------------------------
def gap(srv: FakeOpenAIServer, i: int) -> float:
    """Seconds between the end of request i and the start of request i + 1."""
    return srv.requests[i + 1]["start"] - srv.requests[i]["end"]


def test_429_retry_after_is_honoured(serve):
    srv = serve(faults=["http_429_retry_after"], retry_after="0.2")
    b = backend(srv, backoff_max=5.0)
    assert b.option_distribution([opt("x")])[0].probs is not None
    assert len(srv.requests) == 2 and gap(srv, 0) >= 0.2
    assert b.stats["http_429"] == 1 and b.stats["retries"] == 1


def test_429_without_retry_after_backs_off(serve):
    srv = serve(faults=["http_429", "http_429"])
    b = backend(srv, backoff_base=0.05, backoff_max=1.0)
    b.option_distribution([opt("x")])
    assert gap(srv, 0) >= 0.05 and gap(srv, 1) >= 0.1  # base * 2**attempt


def test_retry_after_is_capped_by_backoff_max(serve):
    srv = serve(faults=["http_429_retry_after"], retry_after="30")
    b = backend(srv, backoff_max=0.2)
    t0 = time.monotonic()
    b.option_distribution([opt("x")])
    assert time.monotonic() - t0 < 2.0


def test_retry_after_parsing():
    assert _retry_after("1.5") == 1.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    date = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 < _retry_after(date) <= 10
    assert _retry_after(email.utils.formatdate(time.time() - 100, usegmt=True)) == 0.0


def test_transient_faults_give_fault_free_results(serve):
    rates = {"http_500": 0.1, "http_502": 0.05, "http_503": 0.05, "http_504": 0.05, "connection_reset": 0.05,
             "malformed_json": 0.05, "truncated_json": 0.05, "empty_choices": 0.05}  # 40% in all
    reqs = [opt(f"question {i}") for i in range(16)]
    gen = GenerateRequest((Message("user", "write"),), GenerateSettings(temperature=1.0, seed=3), n=6)
    items = [(gen, i) for i in range(6)]
    clean = backend(serve())
    faulty_srv = serve(fault_rates=rates, seed=1)
    faulty = backend(faulty_srv, max_retries=10, max_concurrency=4)
    assert faulty.option_distribution(reqs) == clean.option_distribution(reqs)
    assert faulty.generate(items) == clean.generate(items)
    met = [r["fault"] for r in faulty_srv.requests if r["fault"]]
    assert len(met) >= 5  # the seed does inject faults
    assert faulty.stats["retries"] == len(met)
    assert faulty.stats["requests"] == len(faulty_srv.requests) == 22 + len(met)
    for kind in ("http_500", "http_502", "http_503", "http_504"):
        assert faulty.stats.get(kind, 0) == met.count(kind)
    assert faulty.stats.get("connection_error", 0) == met.count("connection_reset")
    assert faulty.stats.get("malformed_json", 0) == met.count("malformed_json") + met.count("truncated_json")
    assert faulty.stats.get("empty_choices", 0) == met.count("empty_choices")


def test_timeout_is_retried(serve):
    srv = serve(faults=["timeout"], hang=3.0)
    b = backend(srv, timeout=0.5)
    t0 = time.monotonic()
    res = b.option_distribution([opt("x")])[0]
    assert time.monotonic() - t0 >= 0.5
    assert_result(res, expected("Answer with a letter.\n\nx", LABELS, 20))
    assert b.stats["timeout"] == 1 and len(srv.requests) == 2


def test_each_fault_kind_is_counted(serve):
    schedule = ["http_500", "http_502", "http_503", "http_429", "connection_reset", "malformed_json",
                "truncated_json", "empty_choices"]
    srv = serve(faults=schedule)
    b = backend(srv, max_retries=10, max_concurrency=1)
    b.generate([(GenerateRequest((Message("user", "hi"),)), 0)])
    assert b.stats == {"requests": 9, "retries": 8, "http_500": 1, "http_502": 1, "http_503": 1, "http_429": 1,
                       "connection_error": 1, "malformed_json": 2, "empty_choices": 1}


def test_permanent_failure_gives_up_after_max_retries(serve):
    srv = serve(always="http_500")
    b = backend(srv, max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as e:
        b.option_distribution([opt("x")])
    assert time.monotonic() - t0 < 2.0
    assert len(srv.requests) == 4 and b.stats["http_500"] == 4 and b.stats["retries"] == 3
    msg = str(e.value)
    assert msg == f"openai backend fake-model@{srv.url}: gave up after 4 attempts (last: HTTP 500)"


@pytest.mark.parametrize("fault,status", [("http_400", 400), ("http_401", 401)])
def test_client_errors_are_not_retried(serve, fault, status):
    srv = serve(always=fault)
    b = backend(srv)
    with pytest.raises(BackendError, match=f"HTTP {status} from /chat/completions: fake {fault}"):
        b.option_distribution([opt("x")])
    assert len(srv.requests) == 1 and b.stats["retries"] == 0


def test_request_bound_of_the_fake_server(serve):
    srv = serve(max_requests=2)
    b = backend(srv, max_concurrency=1)
    with pytest.raises(BackendError, match="HTTP 410"):
        b.option_distribution([opt(f"q{i}") for i in range(3)])


# API key, concurrency, wiring ------------------------------------------------------------
def test_api_key_is_sent_but_never_exposed(serve, monkeypatch):
    secret = "sk-test-Zq81secret"
    monkeypatch.setenv("FAKE_OPENAI_KEY", secret)
    srv = serve(api_key=secret)
    b = backend(srv, api_key_env="FAKE_OPENAI_KEY")
    b.option_distribution([opt("x")])
    assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    assert secret not in json.dumps(b.identity()) and secret not in json.dumps(b.stats)
    assert secret not in repr(vars(b))
    # a server that echoes a wrong key back: 401, not retried, key redacted
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-wrong-Yy72secret")
    with pytest.raises(BackendError, match="HTTP 401") as e:
        b.option_distribution([opt("x")])
    assert "sk-wrong-Yy72secret" not in str(e.value) and "Incorrect API key" in str(e.value)
    assert len(srv.requests) == 2
    # exhausted retries do not mention it either
    srv500 = serve(always="http_500")
    with pytest.raises(BackendError) as e:
        backend(srv500, api_key_env="FAKE_OPENAI_KEY", max_retries=1).option_distribution([opt("x")])
    assert "secret" not in str(e.value)


def test_missing_key_variable_is_named(serve, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    b = backend(serve(), api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(ValueLensError, match="NO_SUCH_KEY_VAR"):
        b.option_distribution([opt("x")])


def test_concurrency_limit_is_respected(serve):
    srv = serve(delay=0.05)
    b = backend(srv, max_concurrency=3)
    results = b.option_distribution([opt(f"q{i}") for i in range(24)])
    assert len(results) == 24 and srv.max_in_flight == 3
    # results come back in input order
    for i, res in enumerate(results):
        assert_result(res, expected(f"Answer with a letter.\n\nq{i}", LABELS, 20))


def test_identity_and_protocol(serve):
    b = backend(serve(), revision="2024-06 snapshot", mode="completions")
    assert isinstance(b, Backend)
    ident = b.identity()
    assert ident["backend"] == "openai" and ident["model"] == "fake-model" and ident["mode"] == "completions"
    assert ident["revision"] == "2024-06 snapshot" and ident["base_url"].endswith("/v1")


def test_registry_builds_the_backend(serve):
    srv = serve()
    b = load_backend(f"openai:fake-model@{srv.url}", max_retries=2, batch_size=8, top_logprobs=7)
    assert isinstance(b, OpenAIBackend) and b.max_retries == 2 and b.top_logprobs == 7
    with pytest.raises(ValueLensError, match="mode"):
        OpenAIBackend(model="m", base_url=srv.url, mode="embeddings")
    with pytest.raises(ValueLensError, match="http"):
        OpenAIBackend(model="m", base_url="ftp://x")


def test_works_when_called_inside_an_event_loop(serve):
    srv = serve()
    b = backend(srv)

    async def inner():
        return b.generate([(GenerateRequest((Message("user", "hi"),)), 0)])

    assert asyncio.run(inner()) == [generation_text("hi", sample_seed(0, 0))]
