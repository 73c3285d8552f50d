"""Tokens per model × layer (issue 20, item 6): a server's ``usage``, a local tokenizer, an estimate;
cached calls keep their original tokens, reported apart from this run's."""

from __future__ import annotations

import json

from fake_openai_server import FakeOpenAIServer

import valuelens.api as vl
from valuelens.config import load_audit
from valuelens.models.cached import CachedModel
from valuelens.models.hf import HFBackend
from valuelens.models.requests import GenerateRequest, GenerateSettings, Message, OptionRequest
from valuelens.plan import plan_audit
from valuelens.report import build_report
from valuelens.store import Store

OPTS = "max_retries: 1, backoff_base: 0.001, backoff_max: 0.05, timeout: 10"


def _served(fake: FakeOpenAIServer) -> tuple[int, int]:
    """The tokens the fake's replies reported (its own formula, recomputed from each request)."""
    p = c = 0
    for r in fake.requests:
        u = fake.reply(r["path"], r["body"])["usage"]
        p, c = p + u["prompt_tokens"], c + u["completion_tokens"]
    return p, c


def test_server_usage_is_counted_and_cached_calls_are_reported_apart(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer() as a, FakeOpenAIServer(usage=False) as b:
        path = tmp_path / "audit.yaml"
        path.write_text(f"""\
name: tokens
output_dir: {out}
countries: [United States, China]
languages: [en]
models:
  - {{name: srv, backend: "openai:m@{a.url}", options: {{{OPTS}}}, price: {{input: 2.5, output: 10}}}}
  - {{name: sampled, backend: "openai:s@{a.url}", options: {{{OPTS}, option_mode: sample, samples: 3}}}}
  - {{name: bare, backend: "openai:b@{b.url}", options: {{{OPTS}}}}}
layers:
  first_token: {{limit: 2, control: false, generate_check: true, max_tokens: 8}}
""", encoding="utf-8")
        plan = {r.model: r for r in plan_audit(load_audit(path))}
        vl.run(path)
        first = json.loads((out / "run.json").read_text())
        served = {"srv": _served_by(a, "m"), "sampled": _served_by(a, "s")}
        n_bare = len(b.requests)
        vl.run(path)  # everything from the cache
        again = json.loads((out / "run.json").read_text())
    got = {m: first["progress"][m]["first_token"] for m in ("srv", "sampled", "bare")}
    for m in ("srv", "sampled"):
        assert (got[m]["prompt_tokens"], got[m]["completion_tokens"]) == served[m] and served[m][0] > 0
        assert got[m]["token_source"] == "server"
    assert got["bare"]["token_source"] == "estimate" and got["bare"]["prompt_tokens"] > 0
    bare_faults = {x["name"]: x for x in first["models"]}["bare"]["faults"]
    assert bare_faults["usage_estimated"] == n_bare
    # 4 items: 4 option calls + 4 free answers; the sampled model's option call is 3 requests, one call
    assert got["srv"]["calls_made"] == got["sampled"]["calls_made"] == 8
    assert plan["srv"].calls == 8 and not plan["srv"].exact
    assert plan["sampled"].completion_tokens == 4 * 3 * 8 + 4 * 8  # samples x sample_tokens, max_tokens
    assert got["srv"]["cost"] == round((2.5 * served["srv"][0] + 10 * served["srv"][1]) / 1e6, 6)
    rec = {x["name"]: x for x in first["models"]}["srv"]
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == served["srv"]
    # the rerun made nothing: no tokens spent, the cached calls' original tokens reported apart
    for m in ("srv", "sampled", "bare"):
        r2 = again["progress"][m]["first_token"]
        assert (r2["calls_made"], r2["prompt_tokens"], r2["completion_tokens"]) == (0, 0, 0)
        assert r2["calls_cached"] == got[m]["calls_made"]
        assert (r2["cached_prompt_tokens"], r2["cached_completion_tokens"]) == (got[m]["prompt_tokens"],
                                                                                 got[m]["completion_tokens"])
        assert r2["cached_untracked"] == 0
    assert again["progress"]["srv"]["first_token"]["cost"] == 0.0
    assert again["progress"]["srv"]["first_token"]["cost_cached"] == got["srv"]["cost"]
    report = build_report(out).read_text(encoding="utf-8")
    assert "tokens and cost per model × layer" in report and "server" in report


def _served_by(fake: FakeOpenAIServer, model: str) -> tuple[int, int]:
    sub = FakeOpenAIServer()
    sub.requests = [r for r in fake.requests if r["body"].get("model") == model]
    return _served(sub)


def test_local_tokenizer_counts_and_the_plan_uses_it_without_weights(tiny_model_dir, tmp_path, monkeypatch):
    backend = HFBackend.from_path(tiny_model_dir, batch_size=2)
    store = Store(tmp_path / "store.sqlite")
    try:
        model = CachedModel(backend, store, "tiny")
        opt = OptionRequest((Message("user", "Pick one: (A) yes (B) no"),), ("A", "B"), "Answer: (")
        gen = GenerateRequest((Message("user", "Say something"),), GenerateSettings(max_tokens=5))
        model.option_distribution([opt])
        text = model.generate([gen])[0].texts[0]
        snap = model.meter.snapshot()
        ids_opt = backend.encode([opt])[0]
        ids_gen = backend._encode([backend.render(gen.messages, gen.prefill)])[0]
        reply = len(backend.tok(text, add_special_tokens=False)["input_ids"]) if text else 0
        assert snap["prompt_tokens"] == len(ids_opt) + len(ids_gen)
        assert snap["completion_tokens"] == reply and snap["token_source"] == "tokenizer"
        rows = store.conn.execute("SELECT response FROM calls").fetchall()
        assert sorted(json.loads(r[0])["usage"]["prompt"] for r in rows) == sorted([len(ids_opt), len(ids_gen)])
    finally:
        store.close()
    path = tmp_path / "audit.yaml"
    path.write_text(f"""\
name: tiny
output_dir: {tmp_path / 'out'}
languages: [en]
models: [{{name: tiny, backend: "hf:{tiny_model_dir}"}}]
layers: {{first_token: {{limit: 2}}}}
""", encoding="utf-8")
    import transformers

    def no_weights(*a, **k):
        raise AssertionError("the plan loaded model weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    (row,) = plan_audit(load_audit(path))
    monkeypatch.undo()
    assert row.token_source == "tokenizer"
    vl.run(path)
    got = json.loads((tmp_path / "out" / "run.json").read_text())["progress"]["tiny"]["first_token"]
    assert (got["calls_made"], got["prompt_tokens"], got["completion_tokens"]) == (row.calls, row.prompt_tokens, 0)


def test_scripted_calls_are_estimated(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [], "default_text": "hello world"}), encoding="utf-8")
    from valuelens.models.registry import load_backend

    store = Store(tmp_path / "store.sqlite")
    try:
        model = CachedModel(load_backend(f"scripted:{script}"), store, "s")
        model.generate([GenerateRequest((Message("user", "中国 abcdefgh"),), GenerateSettings(max_tokens=5))])
        snap = model.meter.snapshot()
    finally:
        store.close()
    assert (snap["prompt_tokens"], snap["completion_tokens"], snap["token_source"]) == (2 + 3, 3, "estimate")
