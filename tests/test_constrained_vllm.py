"""Response formats on the vllm and openai backends: the keywords our code builds
(always run, with stand-ins for vLLM's parameter classes and the HTTP layer), and
vLLM's structured outputs on the embedded model (marked vllm: .venv-vllm only)."""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass

import pytest

from valuelens.layers.def_layer.generation import answer_format
from valuelens.layers.mark import stages
from valuelens.layers.mark.theory import STACKS
from valuelens.models.requests import GenerateRequest, GenerateSettings, Message, ResponseFormat
from valuelens.models.vllm_engine import VLLMBackend, structured_outputs

SCHEMA = stages.response_format("impact", {"stack": list(STACKS["ISTP"])})
REGEX = answer_format(4, "en")


@dataclass
class _New:  # vLLM >= 0.11's StructuredOutputsParams, reduced to the fields we use
    json: object = None
    regex: str | None = None
    disable_any_whitespace: bool = False


@dataclass
class _Old:  # GuidedDecodingParams of older vLLM, without the whitespace switch
    json: object = None
    regex: str | None = None


def _fake(**classes) -> types.SimpleNamespace:
    return types.SimpleNamespace(sampling_params=types.SimpleNamespace(**classes))


def test_structured_outputs_keywords():
    new = _fake(StructuredOutputsParams=_New, GuidedDecodingParams=_Old)
    assert structured_outputs(new, SCHEMA) == {"structured_outputs": _New(json=SCHEMA.schema,
                                                                         disable_any_whitespace=True)}
    assert structured_outputs(new, REGEX) == {"structured_outputs": _New(regex=REGEX.spec)}
    assert structured_outputs(_fake(GuidedDecodingParams=_Old), SCHEMA) == {"guided_decoding": _Old(json=SCHEMA.schema)}


def _req(fmt: ResponseFormat | None, **kw) -> GenerateRequest:
    return GenerateRequest((Message("user", "hi"),), GenerateSettings(**kw), response_format=fmt)


def test_vllm_honours_formats_except_in_beam_search():
    b = object.__new__(VLLMBackend)  # no engine: only the decision is tested
    assert b.honours(_req(SCHEMA)) and b.honours(_req(REGEX, temperature=1.0))
    assert not b.honours(_req(SCHEMA, num_beams=2)) and not b.honours(_req(None))


def test_openai_sends_json_schema_only_when_the_server_is_said_to_support_it(monkeypatch):
    pytest.importorskip("httpx")
    from valuelens.models.openai_api import OpenAIBackend

    bodies = []
    for flag in (False, True):
        b = OpenAIBackend("m", "http://127.0.0.1:9/v1", json_schema=flag)
        monkeypatch.setattr(b, "_run_all", lambda jobs: [bodies.append(j[1]) or "" for j in jobs])
        items = [(_req(SCHEMA), 0), (_req(REGEX), 0), (_req(None), 0)]
        assert [b.honours(r) for r, _ in items] == [flag, False, False]
        b.generate(items)
    assert not any("response_format" in body for body in bodies[:3] + bodies[4:])
    assert bodies[3]["response_format"] == {"type": "json_schema",
                                            "json_schema": {"name": "mark_impact", "schema": SCHEMA.schema}}


# the real engine --------------------------------------------------------------------------------------------
@pytest.mark.vllm
def test_vllm_structured_outputs_on_the_embedded_model():
    from vllm_support import require_vllm

    require_vllm()
    from valuelens.models import embedded
    from valuelens.models.registry import load_backend

    vl = load_backend(f"vllm:{embedded.dequantized_dir()}", batch_size=8, dtype="float32", max_model_len=1024,
                      enforce_eager=True, kv_cache_space=1, tensor_parallel_size=1)
    try:
        ctx = {"stack": list(STACKS["ISTP"])}
        short = answer_format(4, "en", limit=40)  # at most ~60 tokens: complete within max_tokens
        items = [(GenerateRequest((Message("user", "Reply with JSON only: how does stress affect each function?"),),
                                  GenerateSettings(max_tokens=200), response_format=SCHEMA), 0),
                 (GenerateRequest((Message("user", "Pick an option 1-4 and explain."),),
                                  GenerateSettings(temperature=1.0, max_tokens=120, seed=3), response_format=short), 0)]
        text, answer = vl.generate(items)
        stages.parse_reply("impact", text, ctx)
        assert json.loads(text).keys() == {"impacts", "reason"}
        assert re.fullmatch(short.spec, answer), answer
    finally:
        vl.close()
