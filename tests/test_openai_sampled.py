"""Option distributions without logprobs: sampled answers (issue 20.1)."""

from __future__ import annotations

import logging
import math
from collections import Counter

import pytest
from fake_openai_server import FakeOpenAIServer, prompt_of, sampled_token, token_logprobs
from scipy.stats import binomtest
from test_openai_backend import FAST, backend, serve  # noqa: F401 - serve is a fixture

from valuelens.layers.first_token import parse_letter
from valuelens.models.base import sample_seed
from valuelens.models.cached import CachedModel
from valuelens.models.openai_api import DEFAULT_SAMPLES
from valuelens.models.registry import load_backend
from valuelens.models.requests import Message, OptionRequest, OptionResult, checked
from valuelens.models.sampled import estimate, parse_label, wilson
from valuelens.store import Store

LABELS = ("A", "B", "C", "D", "E")


def opt(text: str, prefill: str = "Answer: (") -> OptionRequest:
    return OptionRequest((Message("user", text),), LABELS, prefill)


def truth(prompt: str) -> tuple[list[float], float]:
    """The fake's exact distribution over the labels (spellings summed, renormalised) and its label mass."""
    lp = token_logprobs(prompt)
    mass = [sum(math.exp(v) for t, v in lp.items() if t.strip() == lab) for lab in LABELS]
    return [m / sum(mass) for m in mass], sum(mass)


# the estimator ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["B", "(B) Agree", "B) because", " C.", "D:", "E, then", "(A)", "The answer",
                                  "F) no", "I think A", "AB", "b", "", "\n) x", "A）", "Answer: (C)"])
def test_parser_agrees_with_the_free_answer_parser(text):
    """One-letter labels: exactly first_token.parse_letter (the layer's free-answer parser)."""
    assert parse_label(text, LABELS) == parse_letter(text, LABELS)


def test_parser_takes_longer_labels_whole():
    assert parse_label("10) strongly", [str(i) for i in range(1, 11)]) == "10"
    assert parse_label("1. yes", [str(i) for i in range(1, 11)]) == "1"
    assert parse_label("11", ["1", "2"]) is None


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 50), (25, 50), (99, 100), (7, 7), (0, 1)])
def test_wilson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)
    assert lo <= k / n <= hi


def test_estimate_counts_shares_and_invalid():
    answers = ["A", "A", "B", None, "A", None, "C", "A"]
    r = estimate(answers, ("A", "B", "C", "D"))
    assert r.estimated and r.samples == 8
    assert r.probs == pytest.approx((4 / 6, 1 / 6, 1 / 6, 0.0))
    assert r.covered_mass == pytest.approx(6 / 8) and r.invalid_share == pytest.approx(2 / 8)
    assert r.interval[0] == pytest.approx(wilson(4, 6)) and r.interval[3] == (0.0, wilson(0, 6)[1])
    assert checked(r, 4) == r
    none = estimate([None, None], ("A", "B"))
    assert none.probs is None and none.covered_mass == 0 and none.estimated and none.samples == 2
    assert checked(none, 2) == none


def test_estimate_survives_json_and_validation():
    r = estimate(["A", "B", "B", None], ("A", "B"))
    back = OptionResult.from_json(r.to_json())
    assert back == r and checked(back, 2) == r
    assert "estimated" not in OptionResult.from_mass([0.2, 0.3]).to_json()  # logprob results keep their old form
    with pytest.raises(ValueError, match="interval"):
        checked(OptionResult((0.5, 0.5), 1.0, estimated=True, samples=4, interval=((0.6, 0.9), (0.1, 0.9))), 2)
    with pytest.raises(ValueError, match="intervals"):
        checked(OptionResult((0.5, 0.5), 1.0, estimated=True, samples=4, interval=None), 2)
    with pytest.raises(ValueError, match="sample count"):
        checked(OptionResult((0.5, 0.5), 1.0, estimated=True, samples=0, interval=((0, 1), (0, 1))), 2)


# the backend --------------------------------------------------------------------------
def test_no_logprobs_server_gives_sampled_distributions(serve, caplog):
    srv = serve(always="missing_logprobs", sample_first_token=True)
    b = backend(srv, samples=40)
    reqs = [opt(f"question {i}") for i in range(3)]
    with caplog.at_level(logging.WARNING):
        res = b.option_distribution(reqs)
        res2 = b.option_distribution([opt("question 9")])
    assert sum("returns no logprobs" in r.message for r in caplog.records) == 1  # announced once
    sampled = [r for r in srv.requests if not r["body"].get("logprobs")]
    assert len(srv.requests) == 3 + 3 * 40 + 40  # one logprob try each for the first call, then samples only
    for s in sampled:
        assert s["body"]["temperature"] == 1.0 and s["body"]["max_tokens"] == 8 and s["body"]["n"] == 1
    for r, req in zip([*res, *res2], [*reqs, opt("question 9")]):
        prompt = prompt_of({"messages": [{"content": req.messages[0].content}, {"content": req.prefill}]})
        # recount from the server's own draws: the token's stripped text equals a label
        draws = [sampled_token(prompt, sample_seed(0, j)).strip() for j in range(40)]
        seeds = sorted(s["body"]["seed"] for s in sampled if prompt_of(s["body"]) == prompt)
        assert seeds == sorted(sample_seed(0, j) for j in range(40))
        c = Counter(d for d in draws if d in LABELS)
        valid = sum(c.values())
        assert r.estimated and r.samples == 40
        assert r.probs == pytest.approx([c[lab] / valid for lab in LABELS], abs=1e-12)
        assert r.covered_mass == pytest.approx(valid / 40) and r.invalid_share == pytest.approx(1 - valid / 40)
        assert all(lo <= p <= hi for p, (lo, hi) in zip(r.probs, r.interval))
    assert b.stats["options_sampled"] == 4


def test_sampled_estimate_converges_to_the_exact_distribution(serve):
    """400 samples: every option within 4 standard errors of the fake's exact renormalised probability."""
    srv = serve(sample_first_token=True)
    b = backend(srv, option_mode="sample", samples=400, max_concurrency=16)
    req = opt("a long question")
    r = b.option_distribution([req])[0]
    p, mass = truth("a long question\n\nAnswer: (")
    n_valid = round(r.covered_mass * 400)
    assert abs(r.covered_mass - mass) < 4 * math.sqrt(mass * (1 - mass) / 400)
    for est, true in zip(r.probs, p):
        assert abs(est - true) < 4 * math.sqrt(max(true * (1 - true), 1e-4) / n_valid) + 1e-9


def test_sample_mode_is_in_the_identity_and_the_cache_key(serve, tmp_path):
    srv = serve(sample_first_token=True)
    plain, sampled = backend(srv), backend(srv, option_mode="sample", samples=10)
    assert "option_mode" not in plain.identity() and "samples" not in plain.identity()
    assert sampled.identity()["option_mode"] == "sample" and sampled.identity()["samples"] == 10
    assert backend(srv, samples=20).identity()["samples"] == 20  # auto with another N: another key
    assert backend(srv, option_mode="sample").identity()["samples"] == DEFAULT_SAMPLES
    store = Store(tmp_path / "s.sqlite")
    try:
        store.begin_run()
        a = CachedModel(plain, store, "m").option_distribution([opt("q")])[0]
        s = CachedModel(sampled, store, "m").option_distribution([opt("q")])[0]
        assert not a.estimated and s.estimated  # a logprob answer is never served for a sampled request
        n = len(srv.requests)
        again = CachedModel(backend(srv, option_mode="sample", samples=10), store, "m").option_distribution([opt("q")])
        assert again[0] == s and len(srv.requests) == n  # estimated survives the cache
    finally:
        store.close()


def test_option_mode_logprobs_and_options_are_checked(serve):
    srv = serve()
    with pytest.raises(Exception, match="option_mode"):
        backend(srv, option_mode="verbalized")
    with pytest.raises(Exception, match="samples"):
        backend(srv, samples=0)
    b = load_backend(f"openai:m@{srv.url}", option_mode="sample", samples=5, sample_tokens=4)
    assert b.samples == 5 and b.sample_tokens == 4 and b.option_mode == "sample"


def test_failed_sample_fails_that_item_only(serve):
    srv = serve(sample_first_token=True, too_long=lambda p: "too long" in p)
    b = backend(srv, option_mode="sample", samples=5)
    ok, bad = b.option_distribution([opt("fine"), opt("too long")])
    assert ok.estimated and ok.failure is None
    assert bad.probs is None and bad.failure and "maximum context length" in bad.failure


def test_registry_defaults_are_the_backend_defaults():
    from valuelens.models.openai_api import DEFAULT_SAMPLE_TOKENS
    from valuelens.models.registry import OpenAIOptions

    assert OpenAIOptions.model_fields["samples"].default == DEFAULT_SAMPLES
    assert OpenAIOptions.model_fields["sample_tokens"].default == DEFAULT_SAMPLE_TOKENS


def test_audit_on_a_no_logprobs_server_is_flagged_estimated(tmp_path, caplog):
    """Through an audit: the estimates are counted in run.json and the models table, and the report says so."""
    import json

    import pandas as pd

    from valuelens import api
    from valuelens.report import build_report

    out = tmp_path / "out"
    with FakeOpenAIServer(always="missing_logprobs", sample_first_token=True) as srv:
        path = tmp_path / "a.yaml"
        path.write_text(f"""\
name: nolp
output_dir: {out}
languages: [en]
models:
  - {{name: hosted, backend: "openai:m@{srv.url}", options: {{samples: 12, max_concurrency: 16}}}}
layers:
  first_token: {{limit: 2}}
""", encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            result = api.run_full(path)
    rec = json.loads((out / "run.json").read_text())["models"][0]
    items = result.tables["first_token_items"]
    assert rec["options_estimated"] == len(items) > 0 and rec["faults"]["options_sampled"] == len(items)
    assert pd.read_parquet(out / "results" / "models.parquet")["options_estimated"].tolist() == [len(items)]
    assert items["top_option"].notna().any()  # a prompt whose 12 answers name no option has none, covered 0
    assert (items.loc[items["top_option"].isna(), "covered_mass"] == 0).all()
    report = build_report(out).read_text(encoding="utf-8")
    assert f"hosted: {len(items)} option distributions estimated from sampled answers" in report
    assert sum("returns no logprobs" in r.message for r in caplog.records) == 1
