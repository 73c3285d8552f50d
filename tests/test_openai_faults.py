"""Issue 16, server faults beyond transient ones: wrong reply shapes, broken
logprobs, another model, a trickling server, prompts rejected as too long,
more transient HTTP codes, base URLs with a query string. Each test fails on
the backend before the fix (see the report of the change)."""

from __future__ import annotations

import json
import logging
import math
import time

import pandas as pd
import pytest
from fake_openai_server import CONTEXT_MESSAGE, FakeOpenAIServer, generation_text
from test_openai_backend import FAST, LABELS, assert_result, backend, expected, opt, serve  # noqa: F401
from test_reliability_support import one_line_error, openai_audit, record, store_counts, vl

from valuelens.errors import BackendError, ValueLensError
from valuelens.models.base import sample_seed
from valuelens.models.cached import CachedModel
from valuelens.models.openai_api import OpenAIBackend, prompt_too_long
from valuelens.models.requests import FailedText, GenerateRequest, GenerateSettings, Message, OptionResult
from valuelens.store import Store

PROMPT = "Answer with a letter.\n\nx"  # the server's prompt for opt("x")


@pytest.fixture
def case(request):
    """For bench/reliability.py: a server-fault case tried now, handled clearly
    when the test calls the returned function at its end."""
    record("server_fault", case=request.node.name, tried=1)
    return lambda: record("server_fault", case=request.node.name, clear=1)


def one_line_naming(e: pytest.ExceptionInfo, srv: FakeOpenAIServer) -> str:
    msg = str(e.value)
    assert "\n" not in msg and f"openai backend fake-model@{srv.url}" in msg, msg
    return msg


# wrong shapes -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault,says", [("choices_number", "'choices' is a number, not a list of objects"),
                                        ("choices_object", "'choices' is an object, not a list of objects"),
                                        ("deep_json", "JSON nested too deeply")])
def test_wrong_reply_shapes_are_one_line_errors(case, serve, fault, says):
    srv = serve(always=fault)
    b = backend(srv)
    for call in (lambda: b.option_distribution([opt("x")]),
                 lambda: b.generate([(GenerateRequest((Message("user", "hi"),)), 0)])):
        with pytest.raises(BackendError) as e:
            call()
        assert says in one_line_naming(e, srv)
    assert len(srv.requests) == 2 and b.stats["retries"] == 0  # a broken schema does not heal: not retried
    case()


# broken logprobs ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["chat", "completions"])
@pytest.mark.parametrize("fault,says", [
    ("string_logprobs", "a logprob that is not a number ('-"),
    ("positive_logprob", "invalid logprob (0.5"),
    ("mass_over_one", "add up to probability 2.4 > 1"),
    ("neg_inf_token", "logprob -inf, probability 0"),
])
def test_broken_logprobs_are_errors_not_numbers(case, serve, mode, fault, says):
    srv = serve(always=fault)
    b = backend(srv, mode=mode)
    with pytest.raises(BackendError) as e:
        b.option_distribution([opt("x")])
    assert says in one_line_naming(e, srv)
    assert len(srv.requests) == 1
    case()


def test_duplicate_tokens_keep_the_largest_logprob(case, serve):
    """The top token listed twice more at half its probability: counted once, at
    its own value (the old code let the last copy win: half the probability)."""
    srv = serve(always="duplicate_tokens")
    b = backend(srv)
    res = b.option_distribution([opt("x")])[0]
    assert_result(res, expected(PROMPT, LABELS, 20))
    assert b.stats["duplicate_tokens"] == 1
    case()


def test_non_string_token_is_an_error(serve):
    srv = serve()
    b = backend(srv)
    choice = {"logprobs": {"content": [{"token": "A", "logprob": -0.1,
                                        "top_logprobs": [{"token": 7, "logprob": -0.1}]}]}}
    with pytest.raises(BackendError, match="a token that is a number, not a string"):
        b._option_result(LABELS, choice)


def test_reply_from_another_model_is_recorded_and_warned_once(case, serve, caplog):
    srv = serve(always="other_model")
    b = backend(srv)
    with caplog.at_level(logging.WARNING, logger="valuelens.models.openai_api"):
        results = b.option_distribution([opt(f"q{i}") for i in range(3)])
        b.generate([(GenerateRequest((Message("user", "hi"),)), 0)])
    assert all(r.probs is not None for r in results)
    assert b.stats["served_as:other-model"] == 4
    warned = [r.getMessage() for r in caplog.records if "other-model" in r.getMessage()]
    assert len(warned) == 1 and "answered as model 'other-model', not 'fake-model'" in warned[0]
    case()


def test_same_model_is_not_recorded(serve):
    b = backend(serve())
    b.option_distribution([opt("x")])
    assert not any(k.startswith("served_as") for k in b.stats)


# a server that trickles ------------------------------------------------------------------------
def test_trickling_server_meets_the_deadline(case, serve):
    """A byte every 0.05 s never trips the 0.5 s read timeout; the 1 s deadline
    ends each attempt (the old backend waited for the whole 3 s trickle and
    then took the reply as a connection error)."""
    srv = serve(always="trickle", trickle=0.05, hang=3.0)
    b = backend(srv, timeout=0.5, deadline=1.0, max_retries=1)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as e:
        b.option_distribution([opt("x")])
    elapsed = time.monotonic() - t0
    assert "gave up after 2 attempts (last: no complete reply within the 1s deadline)" in one_line_naming(e, srv)
    assert 2.0 <= elapsed < 4.5 and b.stats["deadline"] == 2  # the old code: 3 s per attempt
    case()


def test_slow_but_complete_reply_within_the_deadline(serve):
    srv = serve(faults=["trickle"], trickle=0.0, hang=60.0)  # a byte per write, as fast as it goes
    b = backend(srv, timeout=5.0, deadline=30.0)
    assert_result(b.option_distribution([opt("x")])[0], expected(PROMPT, LABELS, 20))
    assert "deadline" not in b.stats and len(srv.requests) == 1


def test_deadline_default_and_checks(serve):
    srv = serve()
    assert backend(srv, timeout=7.0).deadline == 14.0
    for bad in (dict(deadline=0), dict(deadline=math.nan), dict(deadline="soon"), dict(timeout="x")):
        with pytest.raises(ValueLensError, match="deadline"):
            backend(srv, **bad)


def test_deadline_is_an_audit_option(serve):
    from valuelens.models.registry import load_backend

    srv = serve()
    assert load_backend(f"openai:fake-model@{srv.url}", deadline=3, timeout=1.0).deadline == 3.0
    with pytest.raises(ValueLensError, match="deadline"):
        load_backend(f"openai:fake-model@{srv.url}", deadline=-1)


# prompts too long for the model --------------------------------------------------------------------
def test_prompt_too_long_recognised():
    assert prompt_too_long(400, CONTEXT_MESSAGE)
    for msg in ["This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
                "the request exceeds the available context size, try increasing it",
                "prompt is too long: 210000 tokens > 200000 maximum",
                "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
                "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` "
                "tokens and 200 `max_new_tokens`",
                "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000"]:
        assert prompt_too_long(400, msg) and prompt_too_long(422, msg), msg
    assert prompt_too_long(413, "Payload Too Large")
    # settings wrong for every request end the run: they are not one item's fault
    for status, msg in [(400, "continue_final_message is not supported"), (401, CONTEXT_MESSAGE),
                        (400, "Invalid value for 'top_logprobs'"), (404, "model not found"),
                        (400, "top_logprobs exceeds the maximum value 20"),
                        (400, "max_tokens is too large: 100000. This model supports at most 4096 completion tokens"),
                        (400, "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20")]:
        assert not prompt_too_long(status, msg)


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_prompt_too_long_fails_that_item_only(case, serve, mode, caplog):
    srv = serve(too_long=lambda p: "long" in p)
    b = backend(srv, mode=mode)
    with caplog.at_level(logging.WARNING, logger="valuelens.models.openai_api"):
        res = b.option_distribution([opt("short"), opt("long one"), opt("also long")])
        gen = GenerateRequest((Message("user", "a long story"),), GenerateSettings(seed=1), n=1)
        texts = b.generate([(GenerateRequest((Message("user", "hi"),)), 0), (gen, 0)])
    assert res[0].probs is not None and res[0].failure is None
    for r in res[1:]:
        assert r.probs is None and r.covered_mass == 0.0 and r.failure == f"HTTP 400: {CONTEXT_MESSAGE}"
    assert texts[0] == generation_text("hi", sample_seed(0, 0)) and not isinstance(texts[0], FailedText)
    assert isinstance(texts[1], FailedText) and texts[1] == "" and "maximum context length" in texts[1].failure
    assert b.stats["failed_items"] == 3 and b.stats["retries"] == 0 and len(srv.requests) == 5
    assert len(b.failures) == 3
    assert len([r for r in caplog.records if "rejected as too long" in r.getMessage()]) == 1
    case()


def test_other_client_errors_still_end_the_call(serve):
    srv = serve(always="http_400")
    with pytest.raises(BackendError, match="HTTP 400 from /chat/completions: fake http_400"):
        backend(srv).option_distribution([opt("x")])


def test_failed_items_are_not_cached_and_retried_next_run(case, serve, tmp_path):
    """Through CachedModel: the failed item comes back failed, is not stored,
    and a rerun (the server now accepting it) asks for it again, only it."""
    srv = serve(too_long=lambda p: "long" in p)
    store = Store(tmp_path / "store.sqlite")
    reqs = [opt("short"), opt("long one")]
    gens = [GenerateRequest((Message("user", "hi"),)), GenerateRequest((Message("user", "long"),))]
    model = CachedModel(backend(srv), store, "api")
    first = model.option_distribution(reqs)
    first_gen = model.generate(gens)
    assert first[0].probs is not None and first[1].failure and first[1].probs is None
    assert first_gen[0].texts[0] and first_gen[1].texts == ("",)
    assert store.info()["calls"] == 2  # the two answers only
    srv.too_long = None
    seen = len(srv.requests)
    again = CachedModel(backend(srv), store, "api")
    second = again.option_distribution(reqs)
    second_gen = again.generate(gens)
    assert len(srv.requests) == seen + 2 and again.cached == 2  # only the two failed ones are asked again
    assert second[0] == first[0] and second[1].failure is None
    assert_result(second[1], expected("Answer with a letter.\n\nlong one", LABELS, 20))
    assert second_gen[1].texts == (generation_text("long", sample_seed(0, 0)),)
    assert store.info()["calls"] == 4
    store.close()
    case()


def test_failed_result_json_round_trip():
    r = OptionResult.failed("HTTP 400: too long")
    assert r.to_json() == {"probs": None, "covered_mass": 0.0, "failure": "HTTP 400: too long"}
    assert OptionResult.from_json(r.to_json()) == r
    assert "failure" not in OptionResult((0.5, 0.5), 1.0).to_json()  # answers keep their old cache form


# more transient codes -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["http_408", "http_520", "http_529"])
def test_more_transient_codes_are_retried(case, serve, fault):
    srv = serve(faults=[fault, fault])
    b = backend(srv)
    assert_result(b.option_distribution([opt("x")])[0], expected(PROMPT, LABELS, 20))
    assert b.stats[fault] == 2 and b.stats["retries"] == 2 and len(srv.requests) == 3
    case()


# base URL with a query string ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_query_string_is_kept_on_every_endpoint(case, serve, mode):
    srv = serve()
    url = srv.url + "/?api-version=2024-06-01"
    b = OpenAIBackend(model="fake-model", base_url=url, exact_options=True, mode=mode, **FAST)
    assert b.base_url == srv.url + "?api-version=2024-06-01" and b.identity()["base_url"] == b.base_url
    res = b.option_distribution([opt("x")])[0]
    b.generate([(GenerateRequest((Message("user", "hi"),)), 0)])
    assert res.probs is not None
    paths = {(r["path"], r["query"]) for r in srv.requests}
    want = "/v1/completions" if mode == "completions" else "/v1/chat/completions"
    assert paths == {("/tokenize", "api-version=2024-06-01"), (want, "api-version=2024-06-01")}
    case()


def test_plain_base_url_keeps_its_identity(serve):
    srv = serve()
    for url in (srv.url, srv.url + "/"):
        assert OpenAIBackend(model="m", base_url=url).base_url == srv.url


# through the real command line ------------------------------------------------------------------------
def test_prompt_too_long_audit_finishes_through_the_cli(case, tmp_path):
    """One question's English prompts are too long for the model (HTTP 400,
    vLLM's message): `valuelens run` still exits 0, writes every table and the
    report, counts the failed requests in run.json and the report, and a rerun
    asks for exactly those again (they are not cached)."""
    out = tmp_path / "out"
    with FakeOpenAIServer(too_long=lambda p: "leisure time" in p) as srv:
        audit = openai_audit(tmp_path / "a.yaml", srv.url, out, options={**FAST, "max_retries": 2}, limit=5)
        r = vl("run", str(audit), "-q", cwd=tmp_path)
        rejected = [q for q in srv.requests if "leisure time" in json.dumps(q["body"])]
        served = len(srv.requests)
        counts = store_counts(out)
        r2 = vl("run", str(audit), "-q", cwd=tmp_path)
        again = srv.requests[served:]
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "rejected as too long" in r.stderr and "maximum context length" in r.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "finished"
    n = len(rejected)
    assert n >= 3 and manifest["models"][0]["faults"]["failed_items"] == n
    assert counts["rows"] == served - n  # the failed requests are not in the store
    items = pd.read_parquet(out / "results" / "first_token_items.parquet")
    assert len(items) and (out / "results" / "first_token_summary.parquet").is_file()
    assert items["top_option"].isna().sum() >= 1 and items["top_option"].notna().sum() > len(items) // 2
    report = (out / "report.html").read_text(encoding="utf-8")
    assert f"api: {n} requests failed" in report
    # the rerun: only the failed requests are sent again, and fail again
    assert r2.returncode == 0 and "Traceback" not in r2.stderr, r2.stderr
    assert len(again) == n and all("leisure time" in json.dumps(q["body"]) for q in again)
    assert json.loads((out / "run.json").read_text())["models"][0]["faults"]["failed_items"] == n
    case()


@pytest.mark.parametrize("fault", ["choices_number", "deep_json"])  # tracebacks before
def test_broken_replies_are_one_line_through_the_cli(case, tmp_path, fault):
    out = tmp_path / "out"
    with FakeOpenAIServer(always=fault) as srv:
        url = srv.url
        audit = openai_audit(tmp_path / "a.yaml", url, out, options=FAST, limit=2)
        r = vl("run", str(audit), "-q", cwd=tmp_path)
    assert r.returncode == 1 and one_line_error(r.stderr), r.stderr
    assert f"openai backend fake-model@{url}" in r.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    case()
