"""Constrained generation (GenerateRequest.response_format): cache identity, the
fallback when a backend cannot honour a format, and the hf backend's grammar
mask (llguidance) on the tiny random model — every constrained reply is
checked by an independent validator (below, written from the JSON-schema
keywords we use) and by the layers' own parsers."""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valuelens.errors import MissingDependency, ValueLensError
from valuelens.layers.def_layer.generation import answer_format
from valuelens.layers.def_layer.parsing import parse_answer as def_parse
from valuelens.layers.mark import stages
from valuelens.layers.mark.baselines import answer_format as baseline_format
from valuelens.layers.mark.baselines import parse_answer as baseline_parse
from valuelens.layers.mark.prompts import FIELD_NAMES
from valuelens.layers.mark.theory import STACKS
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message
from valuelens.models import grammar as grammar_mod
from valuelens.models.requests import ResponseFormat
from valuelens.store import Store, call_key

needs_engine = pytest.mark.skipif(not grammar_mod.available(), reason="llguidance (valuelens[grammar]) not installed")
SMALL = {"summary": 6, "reason": 6, "choice": 4, "explanation": 6}  # short free text: fast tests


# an independent validator for the schema keywords the layers use ------------------------------------------
def conforms(value, schema) -> bool:
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    t = schema.get("type")
    if t == "object":
        if not isinstance(value, dict):
            return False
        props = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and any(k not in props for k in value):
            return False
        return all(conforms(value[k], s) for k, s in props.items() if k in value)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)
                and schema.get("minimum", value) <= value <= schema.get("maximum", value))
    if t == "string":
        return (isinstance(value, str) and schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
                and re.search(schema.get("pattern", ""), value) is not None)
    if t == "array":
        if not isinstance(value, list) or not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9):
            return False
        pre = schema.get("prefixItems", [])
        if schema.get("items") is False and len(value) > len(pre):
            return False
        return all(conforms(v, s) for v, s in zip(value, pre))
    return t is None


def test_the_validator_rejects_what_it_should():
    assert not conforms({"explanation": "中文"}, stages.response_format("explain", {}, lang="en").schema)
    schema = stages.reply_schema("reason", {"stack": ["Ni", "Te"], "n_options": 3}, SMALL)
    ok = {"choices": [{"function": "Ni", "option": 3, "reason": "a"}, {"function": "Te", "option": 1, "reason": "b"}]}
    assert conforms(ok, schema)
    bad = [{"choices": ok["choices"][::-1]}, {"choices": ok["choices"][:1]},
           {"choices": [{**ok["choices"][0], "option": 4}, ok["choices"][1]]},
           {"choices": [{**ok["choices"][0], "reason": "toolong"}, ok["choices"][1]]}, {**ok, "x": 1}]
    assert not any(conforms(b, schema) for b in bad)


# identity -------------------------------------------------------------------------------------------------
def _req(text="hi", fmt=None, n=1, **kw) -> GenerateRequest:
    return GenerateRequest((Message("user", text),), GenerateSettings(**kw), n=n, response_format=fmt)


def test_cache_key_without_a_format_is_unchanged_and_with_one_it_differs():
    plain = _req(max_tokens=10)
    # the payload as it was before response_format existed: stored samples keep their keys
    assert plain.sample_json(0) == {"kind": "generate", "messages": [{"role": "user", "content": "hi"}],
                                    "settings": {"temperature": 0.0, "top_p": 1.0, "num_beams": 1, "max_tokens": 10,
                                                 "seed": 0}, "prefill": "", "sample_index": 0}
    a = ResponseFormat.json_schema({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    b = ResponseFormat.json_schema({"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}})
    keys = {call_key({"m": 1}, r.sample_json(0)) for r in (plain, replace(plain, response_format=a),
                                                           replace(plain, response_format=b),
                                                           replace(plain, response_format=ResponseFormat.regex("a+")))}
    assert len(keys) == 4  # property order is part of the format (it is the order they are written in)


@pytest.mark.parametrize("make", [lambda: ResponseFormat("xml", "x"), lambda: ResponseFormat("regex", ""),
                                  lambda: ResponseFormat("json_schema", "[1]"),
                                  lambda: ResponseFormat("regex", "a", name="has space")])
def test_bad_formats_are_refused(make):
    with pytest.raises(ValueError, match="response format"):
        make()


class _Echo:
    """A backend that records what it was asked and answers with the request's format kind."""

    supports_beams = False

    def __init__(self, honours: bool):
        self._honours, self.stats, self.seen = honours, {}, []

    def identity(self):
        return {"backend": "echo"}

    def honours(self, request):
        return self._honours

    def generate(self, items):
        self.seen += [r for r, _ in items]
        return [r.response_format.kind if r.response_format else "free" for r, _ in items]

    def close(self):
        pass


def test_a_format_the_backend_cannot_honour_is_asked_and_cached_as_the_plain_prompt(tmp_path):
    fmt = ResponseFormat.regex("Answer: [12]")
    store = Store(tmp_path / "s.sqlite")
    deaf = CachedModel(_Echo(False), store, "m")
    assert deaf.generate([_req(fmt=fmt, n=2)])[0].texts == ("free", "free")
    assert all(r.response_format is None for r in deaf.backend.seen)
    assert deaf.backend.stats["unconstrained_replies"] == 2
    # same identity, a backend that honours it: not served the unconstrained texts from the cache
    able = CachedModel(_Echo(True), store, "m")
    assert able.generate([_req(fmt=fmt, n=2)])[0].texts == ("regex", "regex")
    assert able.made == 2 and able.cached == 0
    # and the plain request is a hit on the entry the deaf backend made
    assert able.generate([_req(n=2)])[0].texts == ("free", "free") and able.cached == 2


# the hf backend ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    from valuelens.models.hf import HFBackend

    b = HFBackend.from_path(tiny_model_dir, batch_size=8)
    common = b.tok.convert_tokens_to_ids(list("aeiostn")) + [b.tok.eos_token_id]
    b.model.generation_config.eos_token_id = sorted(set(common))  # unconstrained rows end at different steps
    return b


def _mixed_items():
    fmts = [stages.response_format("type", {}, SMALL),
            stages.response_format("impact", {"stack": list(STACKS["INTJ"])}, SMALL),
            answer_format(3, "en", limit=8), answer_format(4, "zh", letters=True, limit=8), None]
    items = []
    for k in range(14):
        s = GenerateSettings(temperature=(0.0, 0.7, 1.0, 1.3)[k % 4], top_p=(1.0, 0.9)[k % 2], max_tokens=120,
                             seed=10 + k)
        prompt = ("Reply with JSON only.", "来自中国的人会如何回答", "Answer: A the a an of to in is it")[k % 3]
        items.append((GenerateRequest((Message("user", prompt),), s, response_format=fmts[k % 5]), k % 2))
    return items


def _check_reply(fmt: ResponseFormat, text: str) -> None:
    if fmt.kind == "regex":
        assert re.fullmatch(fmt.spec, text), (fmt.spec, text)
    else:
        assert conforms(json.loads(text), fmt.schema), text


@needs_engine
def test_constrained_texts_do_not_depend_on_the_batch(hf):
    items = _mixed_items()
    runs = []
    for size, seed in ((1, 0), (3, 1), (8, 2)):
        hf.batch_size = size
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        got = hf.generate([items[i] for i in order])
        out = [None] * len(items)
        for k, i in enumerate(order):
            out[i] = got[k]
        runs.append(out)
    assert runs[0] == runs[1] == runs[2]
    for (r, _), text in zip(items, runs[0]):
        if r.response_format is not None:
            _check_reply(r.response_format, text)
    # the free rows are the texts they have without any constrained row beside them
    free = [it for it in items if it[0].response_format is None]
    assert hf.generate(free) == [t for it, t in zip(items, runs[0]) if it[0].response_format is None]
    hf.batch_size = 8


@needs_engine
def test_a_sampled_constrained_row_depends_on_its_seed(hf):
    fmt = answer_format(9, "en", limit=8)
    texts = {hf.generate([(_req("Answer", fmt, temperature=1.0, max_tokens=60, seed=s), 0)])[0] for s in range(6)}
    assert len(texts) > 1


ZH_NAMES = [FIELD_NAMES[f]["zh"] for f in ("sex", "age", "education", "marital_status", "employment", "income",
                                          "ideology")]
EN_NAMES = [FIELD_NAMES[f]["en"] for f in ("sex", "age", "education", "marital_status", "employment", "income",
                                          "ideology")]
mark_jobs = st.one_of(
    st.tuples(st.just("stress"), st.lists(st.sampled_from(EN_NAMES + ZH_NAMES), min_size=1, max_size=7, unique=True)
              .map(lambda ns: {"names": {n: n for n in ns}})),
    st.tuples(st.just("type"), st.just({})),
    st.tuples(st.just("impact"), st.sampled_from(sorted(STACKS)).map(lambda t: {"stack": list(STACKS[t])})),
    st.tuples(st.just("reason"), st.builds(lambda t, k: {"stack": list(STACKS[t]), "n_options": k},
                                           st.sampled_from(sorted(STACKS)), st.integers(2, 11))),
    st.tuples(st.just("explain"), st.just({})),
)


@needs_engine
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.lists(mark_jobs, min_size=1, max_size=5), temp=st.sampled_from([0.0, 0.8, 1.5]),
       seed=st.integers(0, 10**6), lang=st.sampled_from(["en", "zh"]))
def test_constrained_mark_replies_always_parse(hf, jobs, temp, seed, lang):
    before = hf.stats.get("constrained_truncated", 0)
    fmts = [stages.response_format(stage, ctx, SMALL, lang=lang) for stage, ctx in jobs]
    gs = GenerateSettings(temperature=temp, max_tokens=400, seed=seed)  # 400 tokens > any reply's bytes here
    texts = hf.generate([(GenerateRequest((Message("user", "Reply with JSON only."),), gs, response_format=f), 0)
                         for f in fmts])
    for (stage, ctx), f, text in zip(jobs, fmts, texts):
        _check_reply(f, text)
        stages.parse_reply(stage, text, ctx)  # the layer's judge accepts it (raises StageError if not)
    assert hf.stats.get("constrained_truncated", 0) == before


@needs_engine
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asks=st.lists(st.tuples(st.integers(2, 12), st.sampled_from(["en", "zh"]), st.booleans()), min_size=1,
                     max_size=5),
       temp=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 10**6))
def test_constrained_def_and_baseline_replies_always_parse(hf, asks, temp, seed):
    gs = GenerateSettings(temperature=temp, max_tokens=80, seed=seed)  # > the bytes of any reply here
    fmts = [answer_format(k, lang, letters, limit=8) for k, lang, letters in asks]
    fmts += [baseline_format(k) for k, _, _ in asks]
    texts = hf.generate([(GenerateRequest((Message("user", "Answer:"),), gs, response_format=f), 0) for f in fmts])
    n = len(asks)
    for (k, _, letters), f, text in zip(asks, fmts[:n], texts[:n]):
        _check_reply(f, text)
        options = [f"option text {string.ascii_lowercase[i]}" for i in range(k)]
        label = re.match(r"(?:Answer: |答案：)(\w+)", text).group(1)
        parsed = def_parse(text, options, letters=letters)
        if parsed.status in ("refusal", "hedge"):  # the parser may judge the explanation; never "unparsed"
            continue
        assert parsed.valid, (text, parsed)
        assert parsed.position == (ord(label) - ord("A") if label.isalpha() else int(label) - 1)
    for (k, _, _), f, text in zip(asks, fmts[n:], texts[n:]):
        _check_reply(f, text)
        assert baseline_parse(text, k) == int(text.removeprefix("Answer: "))


@needs_engine
def test_beam_search_and_beam_sampling_are_constrained(hf):
    fmt = stages.response_format("type", {}, SMALL)
    rx = answer_format(5, "en", limit=8)
    items = [(_req("Reply with JSON only.", fmt, num_beams=3, max_tokens=60), 0),
             (_req("Answer:", rx, num_beams=2, max_tokens=60), 0),
             (_req("Answer:", None, num_beams=2, max_tokens=10), 0),
             (_req("Reply with JSON only.", fmt, num_beams=2, temperature=1.0, max_tokens=60, seed=3), 0)]
    out = hf.generate(items)
    for (r, _), text in zip(items, out):
        if r.response_format is not None:
            _check_reply(r.response_format, text)


@needs_engine
def test_an_invalid_format_is_an_error_naming_it(hf):
    with pytest.raises(ValueLensError, match="'broken'"):
        hf.generate([(_req(fmt=ResponseFormat.regex("(unclosed", name="broken"), max_tokens=4), 0)])


def test_without_the_engine_the_hf_backend_falls_back_to_prompt_and_parse(tiny_model_dir, tmp_path, monkeypatch):
    from valuelens.models.hf import HFBackend

    def missing():
        raise MissingDependency(f"constrained generation needs {grammar_mod.INSTALL}")

    monkeypatch.setattr(grammar_mod, "available", lambda: False)
    monkeypatch.setattr(grammar_mod, "_llg", missing)
    b = HFBackend.from_path(tiny_model_dir)
    fmt = answer_format(3, "en")
    model = CachedModel(b, Store(tmp_path / "s.sqlite"), "m")
    assert not model.honours(_req(fmt=fmt))
    free = model.generate([_req("Answer:", max_tokens=6)])[0].texts
    assert model.generate([_req("Answer:", fmt, max_tokens=6)])[0].texts == free  # the plain prompt's cache entry
    assert b.stats["unconstrained_replies"] == 1
    with pytest.raises(MissingDependency, match=r"valuelens\[grammar\]"):  # asked directly: a clear error
        b.generate([(_req(fmt=fmt, max_tokens=4), 0)])


def test_a_slow_tokenizer_is_not_constrained():
    import types

    from valuelens.models.hf import HFBackend

    b = object.__new__(HFBackend)  # only the decision is tested
    b.tok = types.SimpleNamespace(is_fast=False)
    assert not b.honours(_req(fmt=answer_format(3, "en")))
    b.tok = types.SimpleNamespace(is_fast=True)
    assert b.honours(_req(fmt=answer_format(3, "en"))) == grammar_mod.available()


# MARK stages -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [64, 128, 512])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_text_limits_keep_the_longest_reply_within_max_tokens(max_tokens, lang):
    names = {FIELD_NAMES[f][lang]: f for f in FIELD_NAMES if f not in ("country", "region", "urban_rural")}
    for stage, ctx in (("stress", {"names": names}), ("type", {}), ("impact", {"stack": list(STACKS["ESTJ"])}),
                       ("reason", {"stack": list(STACKS["ESTJ"]), "n_options": 10}), ("explain", {})):
        lim = stages.text_limits(stage, ctx, lang, max_tokens)
        schema = stages.response_format(stage, ctx, lang=lang, max_tokens=max_tokens).schema
        longest = _longest(schema, "中" if lang == "zh" else "x")
        assert conforms(longest, schema)
        # by the budget's own rates; where the 8-character floor binds, only the floor is over
        tokens = sum(0.5 if ord(c) < 128 else 2 for c in json.dumps(longest, ensure_ascii=False, separators=(",", ":")))
        assert tokens <= max_tokens - 8 or min(lim.values()) == 8, (stage, tokens)
        assert all(8 <= v <= stages.TEXT_LIMITS[k] for k, v in lim.items())


def _longest(schema, char):
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return max(schema["enum"], key=len)
    t = schema["type"]
    if t == "object":
        return {k: _longest(v, char) for k, v in schema["properties"].items()}
    if t == "array":
        return [_longest(v, char) for v in schema["prefixItems"]]
    if t == "integer":
        return schema["maximum"]
    return char * schema["maxLength"]


@needs_engine
def test_run_stage_sends_the_schema_and_records_that_it_was_honoured(hf, tmp_path):
    from mark_helpers import StageBackend

    model = CachedModel(hf, Store(tmp_path / "s.sqlite"), "tiny")
    jobs = [stages.Job("Reply with JSON only.", "en", {"stack": list(STACKS["ENFP"]), "n_options": 4})] * 2
    # a random model fills every text field to its cap: 600 tokens > the ~500 bytes of the longest reply
    out = stages.run_stage(model, "reason", jobs, GenerateSettings(max_tokens=600), max_retries=0)
    assert all(o.valid and o.constrained for o in out), [o.attempts for o in out]  # even a random model's
    free = stages.run_stage(model, "reason", jobs, GenerateSettings(max_tokens=20), max_retries=0, constrained=False)
    assert not any(o.constrained for o in free)
    deaf = CachedModel(StageBackend(lambda p: "{}"), Store(tmp_path / "t.sqlite"), "stages")
    assert not any(o.constrained for o in stages.run_stage(deaf, "type", jobs[:1], GenerateSettings(), 0))
