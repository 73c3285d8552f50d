"""Models behind an OpenAI-compatible HTTP server (vLLM, Ollama, llama.cpp
server, hosted APIs), through httpx.

Option distributions ask for one token with ``top_logprobs``: an option's
probability is the summed probability of the returned tokens that equal its
label after stripping whitespace (``A`` and `` A`` both count). Options
outside the server's top-k get 0; ``covered_mass`` says how much was seen.
With ``exact_options: true`` (vLLM servers) nothing is guessed: the label
tokens are looked up once through the server's ``/tokenize`` endpoint and
each request asks for exactly their raw log-probabilities
(``logprob_token_ids``, tokens returned as ids), as the ``vllm`` backend does.

Logprobs are checked, never repaired: a logprob that is not a number, is NaN
or above 0 (a probability above 1), top logprobs whose probabilities add up
to more than 1 (beyond rounding, ``PROB_TOLERANCE``), or ``-inf`` on the token the server
returned (it produced a token of probability 0) make the reply an error.
A token listed twice in ``top_logprobs`` keeps its largest logprob (never
counted twice; ``stats["duplicate_tokens"]`` counts such replies). A reply
naming another model than the one asked for is counted under
``stats["served_as:NAME"]`` and logged once per name.

Prefill (the start of the assistant turn), in chat mode, by ``prefill``:
``continue_final_message`` (vLLM's extension: a final assistant message with
``continue_final_message: true, add_generation_prompt: false``);
``assistant`` (a final assistant message, no extension fields: Anthropic's
API, Ollama and llama.cpp continue it); ``instruction`` (no assistant turn;
the last user turn ends with "Answer with the option letter only (A / B /
...)" for option requests, or 'Begin your reply with "PREFILL"' for
generation, and the prefill is cut from the reply's start); ``none`` (the
prefill is dropped). ``auto`` (the default) is ``instruction`` for
api.openai.com and Azure OpenAI (they reject unknown fields), ``assistant``
for api.anthropic.com, else ``continue_final_message`` (vLLM, the common
self-hosted server; earlier runs' cache keys are kept). A server that rejects
the vLLM fields gets an error saying which option to set. The resolved mode
is in :meth:`identity` (unless it is ``continue_final_message``), so answers
asked another way never share a cache entry. In completions mode the prompt
is the turns joined by blank lines, then the prefill (plain text continues on
every server; ``prefill`` does not apply).

Option distributions without log-probabilities (``option_mode``):
``logprobs`` (an error when the server returns none), ``sample`` (always
estimate), ``auto`` (the default: logprobs, and when a reply has none, this
and every later option request of the backend is estimated instead,
announced once). An estimate asks ``samples`` answers (default
:data:`DEFAULT_SAMPLES`, chosen from bench/sampled_options.py) at temperature
1, ``sample_tokens`` tokens each, sample ``j`` with seed ``sample_seed(0,
j)``, and maps them to options with :func:`valuelens.models.sampled.parse_label`
(:func:`valuelens.models.sampled.estimate`: empirical shares, invalid share,
Wilson intervals, ``estimated: true``). ``option_mode: sample`` and a
non-default ``samples``/``sample_tokens`` are in :meth:`identity`; a cached
estimate of ``auto`` carries ``estimated`` in its stored result.

Concurrency adapts (:class:`AdaptiveLimit`): requests in flight start at
``max_concurrency``; a burst of 429/529 replies halves the limit once (the
requests already in flight when it was halved do not halve it again), every
``limit`` successes in a row raise it by one back up to ``max_concurrency``,
and a ``Retry-After`` holds every new request until it has passed.
:attr:`OpenAIBackend.concurrency` (written to run.json) keeps the history.

Transient faults (HTTP 408/425/429, 500/502/503/504, 509, 520-524, 527,
529, 598/599, connection errors, timeouts, malformed JSON, empty
``choices``) are retried with capped exponential backoff, honouring
``Retry-After``. ``timeout`` bounds each read; ``deadline`` (default twice
``timeout``) bounds a whole request, so a server that trickles bytes cannot
hold a call forever. A prompt the server rejects as too long for the model
(HTTP 400/413/422 saying so) is not an audit-ending error: that one item
comes back as failed (:meth:`OptionResult.failed`, :class:`FailedText`),
is counted in ``stats["failed_items"]``, and is not cached, so a rerun
retries it. Replies of the wrong shape (``choices`` not a list of objects,
JSON nested too deeply) are errors naming the model and URL. A base URL's
query string (``?api-version=...``) is kept on every endpoint. The API key
is read from the environment at call time and never kept in identity,
stats or error messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from valuelens.errors import BackendError, MissingDependency, ValueLensError
from valuelens.models import prompting
from valuelens.models.base import sample_seed
from valuelens.models.requests import PROB_TOLERANCE, FailedText, GenerateRequest, Message, OptionRequest, OptionResult
from valuelens.models.sampled import estimate, parse_label
from valuelens.models.usage import Usage, estimate_tokens, prompt_text

log = logging.getLogger(__name__)

# Retried like 429: timeouts and overload at the server or a gateway in front of it
# (408 Request Timeout, 425 Too Early, 509 bandwidth, Cloudflare 520-524 and 527,
# 529 overloaded, 598/599 proxy timeouts).
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 509, 520, 521, 522, 523, 524, 527, 529, 598, 599})
# Replies that say "slow down": they halve the concurrency (AdaptiveLimit).
THROTTLE_FAULTS = frozenset({"http_429", "http_529"})

# Samples per option request when there are no logprobs: the mean Jensen-Shannon distance to the exact
# distribution falls as 1/sqrt(N); bench/sampled_options.py on the embedded model (README) measured it for
# N = 10, 25, 50, 100 and 50 is where it drops below 0.1 (see README "Option distributions by sampling").
DEFAULT_SAMPLES = 50
DEFAULT_SAMPLE_TOKENS = 8
PREFILL_MODES = ("auto", "continue_final_message", "assistant", "instruction", "none")
OPTION_MODES = ("auto", "logprobs", "sample")
# hosts whose chat API refuses vLLM's continue_final_message, and what they understand instead
_HOSTED_PREFILL = (("api.openai.com", "instruction"), (".openai.azure.com", "instruction"),
                   ("api.anthropic.com", "assistant"))
_NO_LOGPROBS = object()  # a reply without logprobs in option_mode auto: estimated by sampling instead

# Server messages that say the prompt (plus max_tokens) does not fit the model's context:
# OpenAI, vLLM, llama.cpp, TGI, Anthropic-style gateways.
_TOO_LONG = re.compile(
    r"context[ _-]?(length|size|window)|maximum model length|max_model_len|(prompt|input)s? (is |are )?too long"
    r"|too many input tokens|must have less than \d+ tokens|max_new_tokens. must be <=",
    re.IGNORECASE)


def _httpx():
    try:
        import httpx
    except ImportError:  # pragma: no cover - depends on the install
        raise MissingDependency("the openai backend needs httpx: pip install 'valuelens[openai]'") from None
    return httpx


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _logprob(v: Any) -> float | None:
    """A logprob from JSON as a float (huge integers become inf), or None if not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _short(v: Any) -> str:
    try:
        text = repr(v)
    except RecursionError:
        text = f"a deeply nested {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _server_message(response: Any) -> str:
    """The server's own short error message, else the start of the body."""
    try:
        data = response.json()
        err = data.get("error", data.get("detail", data)) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except (ValueError, RecursionError):
        text = response.text
    return " ".join(text.split())[:200] or "(empty body)"


class _NoLogprobs(BackendError):
    """The server returned no logprobs for an option request."""


def resolve_prefill(mode: str, host: str) -> str:
    """The prefill mode ``auto`` means for a server host (see the module docstring)."""
    if mode != "auto":
        return mode
    host = host.lower()
    return next((m for h, m in _HOSTED_PREFILL if host == h.lstrip(".") or host.endswith(h)),
                "continue_final_message")


class AdaptiveLimit:
    """Requests in flight, adapted to the server (see the module docstring).

    State lives across event loops (each backend call runs its own);
    :meth:`bind` makes the loop-bound condition. ``history``: one entry per
    change, ``{"t": seconds since the first request, "limit": n, "why":
    "start" | "throttled" | "recovered"}`` (the first 1000)."""

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic):
        self.maximum = self.limit = self.lowest = int(maximum)
        self.clock = clock
        self.epoch = 0  # bumped at each decrease: requests started before it do not decrease again
        self.successes = 0
        self.not_before = 0.0  # Retry-After: no request starts before this (clock time)
        self.in_flight = 0
        self.t0: float | None = None
        self.history: list[dict[str, Any]] = [{"t": 0.0, "limit": self.limit, "why": "start"}]
        self.changes = 0
        self._cond: asyncio.Condition | None = None

    def bind(self) -> None:
        self._cond = asyncio.Condition()
        self.in_flight = 0

    def _record(self, why: str) -> None:
        self.changes += 1
        self.lowest = min(self.lowest, self.limit)
        if len(self.history) < 1000:
            t = 0.0 if self.t0 is None else self.clock() - self.t0
            self.history.append({"t": round(t, 3), "limit": self.limit, "why": why})

    async def acquire(self) -> int:
        """Wait for a free slot (and any Retry-After); returns the epoch to hand to :meth:`release`."""
        assert self._cond is not None, "bind() first"
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            epoch = self.epoch
        if self.t0 is None:
            self.t0 = self.clock()
        while (wait := self.not_before - self.clock()) > 0:
            await asyncio.sleep(wait)
        return epoch

    def outcome(self, epoch: int, kind: str, retry_after: float | None = None) -> None:
        """Account one finished attempt: ``ok``, ``throttled`` (429/529) or ``other``."""
        if kind == "ok":
            self.successes += 1
            if self.successes >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self.successes = 0
                self._record("recovered")
        elif kind == "throttled":
            self.successes = 0
            if retry_after is not None:
                self.not_before = max(self.not_before, self.clock() + retry_after)
            if epoch == self.epoch:  # one halving per burst
                self.epoch += 1
                if self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self._record("throttled")

    async def release(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def summary(self) -> dict[str, Any]:
        return {"max": self.maximum, "final": self.limit, "lowest": self.lowest, "changes": self.changes,
                "history": list(self.history)}


def _server_usage(u: Any) -> tuple[int, int] | None:
    """A reply's ``usage`` as (prompt_tokens, completion_tokens), or None when absent or not two counts."""
    if not isinstance(u, dict):
        return None
    p, c = u.get("prompt_tokens"), u.get("completion_tokens")
    if isinstance(p, int) and isinstance(c, int) and not isinstance(p, bool) and not isinstance(c, bool) \
            and p >= 0 and c >= 0:
        return p, c
    return None


def prompt_too_long(status: int, message: str) -> bool:
    """Whether an HTTP error says that this one prompt does not fit the model."""
    return status == 413 or (status in (400, 422) and _TOO_LONG.search(message) is not None)


class OpenAIBackend:
    """An OpenAI-compatible server; see the module docstring."""

    OPTIONS = frozenset({"api_key_env", "max_concurrency", "max_retries", "timeout", "deadline", "backoff_base",
                         "backoff_max", "top_logprobs", "mode", "revision", "exact_options", "prefill",
                         "option_mode", "samples", "sample_tokens", "json_schema"})
    supports_beams = False

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 5, timeout: float = 60.0, deadline: float | None = None,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, top_logprobs: int = 20, mode: str = "chat",
                 revision: str = "", exact_options: bool = False, prefill: str = "auto",
                 option_mode: str = "auto", samples: int = DEFAULT_SAMPLES,
                 sample_tokens: int = DEFAULT_SAMPLE_TOKENS, json_schema: bool = False):
        self.httpx = _httpx()
        self.model = model
        self.name = f"openai backend {model}@{base_url}"
        try:
            parts = urlsplit(str(base_url).strip())
        except ValueError:
            raise ValueLensError(f"{self.name}: not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueLensError(f"{self.name}: the URL must start with http:// or https://")
        # the base path without a trailing slash; the query string goes on every endpoint
        self._origin, self._path, self._query = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"), parts.query
        self.base_url = urlunsplit((parts.scheme, parts.netloc, self._path, parts.query, ""))
        self.name = f"openai backend {model}@{self.base_url}"
        if mode not in ("chat", "completions"):
            raise ValueLensError(f"{self.name}: mode must be 'chat' or 'completions', not {mode!r}")
        try:
            self.max_concurrency, self.max_retries = int(max_concurrency), int(max_retries)
            self.top_logprobs = int(top_logprobs)
            self.timeout, self.backoff_base, self.backoff_max = float(timeout), float(backoff_base), float(backoff_max)
            self.deadline = 2 * self.timeout if deadline is None else float(deadline)
        except (TypeError, ValueError):
            raise ValueLensError(f"{self.name}: max_concurrency, max_retries and top_logprobs must be integers; "
                                 "timeout, deadline, backoff_base and backoff_max numbers (seconds)") from None
        if (self.max_concurrency < 1 or self.max_retries < 0 or self.top_logprobs < 1
                or not all(math.isfinite(x) and x > 0 for x in (self.timeout, self.deadline))):
            raise ValueLensError(f"{self.name}: need max_concurrency >= 1, max_retries >= 0, timeout > 0, "
                                 "deadline > 0, top_logprobs >= 1")
        if prefill not in PREFILL_MODES:
            raise ValueLensError(f"{self.name}: prefill must be one of {', '.join(PREFILL_MODES)}, not {prefill!r}")
        if option_mode not in OPTION_MODES:
            raise ValueLensError(f"{self.name}: option_mode must be one of {', '.join(OPTION_MODES)}, "
                                 f"not {option_mode!r}")
        try:
            self.samples, self.sample_tokens = int(samples), int(sample_tokens)
        except (TypeError, ValueError):
            raise ValueLensError(f"{self.name}: samples and sample_tokens must be integers") from None
        if self.samples < 1 or self.sample_tokens < 1:
            raise ValueLensError(f"{self.name}: need samples >= 1 and sample_tokens >= 1")
        self.prefill = resolve_prefill(prefill, parts.hostname or "")
        self.option_mode = option_mode
        self._sampling = option_mode == "sample"  # auto switches it on at the first reply without logprobs
        self.limit = AdaptiveLimit(self.max_concurrency)
        self.api_key_env = api_key_env
        self.mode = mode
        self.revision = str(revision)
        self.exact_options = bool(exact_options)
        # The server constrains chat replies to ``response_format: {type: json_schema}`` (vLLM, SGLang, llama.cpp
        # server, OpenAI). Off by default: other servers may ignore or reject it; then prompt-and-parse as before.
        self.json_schema = bool(json_schema)
        self._label_ids: dict[str, list[int]] = {}
        self.stats: dict[str, int] = {"requests": 0, "retries": 0}
        self.failures: list[str] = []  # reasons of the items that came back failed (first 1000)
        self._warned: set[str] = set()
        self._usage: list[tuple[int, int] | None] = []  # the last _run_all's replies' token counts
        self.last_usage: list[Usage | None] | None = None  # per item of the last option/generate call (CachedModel)

    def identity(self) -> dict[str, Any]:
        # top_logprobs is included: a smaller top-k can change the distributions.
        ident = {"backend": "openai", "model": self.model, "base_url": self.base_url, "mode": self.mode,
                 "revision": self.revision, "top_logprobs": self.top_logprobs}
        if self.exact_options:  # other numbers than top-k: another cache key
            ident["exact_options"] = True
        # Each only when it differs from what earlier versions did, so their cache keys still match.
        if self.mode == "chat" and self.prefill != "continue_final_message":
            ident["prefill"] = self.prefill
        if self.option_mode == "sample":
            ident["option_mode"] = "sample"
        if self.option_mode == "sample" or self.samples != DEFAULT_SAMPLES:
            ident["samples"] = self.samples
        if self.option_mode == "sample" or self.sample_tokens != DEFAULT_SAMPLE_TOKENS:
            ident["sample_tokens"] = self.sample_tokens
        return ident

    @property
    def concurrency(self) -> dict[str, Any]:
        """The adaptive concurrency's limits and history (for run.json)."""
        return self.limit.summary()

    def close(self) -> None:
        pass  # each call opens and closes its own client

    # requests ----------------------------------------------------------------
    def _url(self, endpoint: str, *, root: bool = False) -> str:
        """The URL of ``endpoint`` below the base URL (``root``: beside its ``/v1``), query string kept."""
        path = self._path[: -len("/v1")] if root and self._path.endswith("/v1") else self._path
        return f"{self._origin}{path}{endpoint}" + (f"?{self._query}" if self._query else "")

    def _body(self, messages: Sequence[Message], prefill: str,
              labels: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
        """URL path and the prompt part of the request body (``labels``: an
        option request's, for the ``instruction`` prefill mode)."""
        if self.mode == "completions":
            return "/completions", {"model": self.model, "prompt": "\n\n".join(m.content for m in messages) + prefill}
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        body: dict[str, Any] = {"model": self.model, "messages": msgs}
        if self.prefill == "instruction" and (prefill or labels):
            line = (f"Answer with the option letter only ({' / '.join(labels)})." if labels is not None
                    else f"Begin your reply with \"{prefill}\".")
            if msgs and msgs[-1]["role"] == "user":
                msgs[-1] = {"role": "user", "content": f"{msgs[-1]['content']}\n\n{line}"}
            else:
                msgs.append({"role": "user", "content": line})
        elif prefill and self.prefill in ("continue_final_message", "assistant"):
            msgs.append({"role": "assistant", "content": prefill})
            if self.prefill == "continue_final_message":
                body.update(continue_final_message=True, add_generation_prompt=False)
        return "/chat/completions", body

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = retry_after if retry_after is not None else self.backoff_base * 2**attempt
        return min(self.backoff_max, base) + random.uniform(0, 0.05 * min(self.backoff_max, base) + 0.01)

    async def _call(self, client: Any, path: str, body: dict[str, Any],
                    parse: Callable[[dict[str, Any]], Any], redact: Callable[[str], str], whole: bool = False,
                    fail: Callable[[str], Any] | None = None, usage_at: int | None = None) -> Any:
        """POST with retries; ``parse`` turns the first choice (``whole``: the
        whole JSON object) into the result; ``fail`` turns the reason of a
        prompt rejected as too long into a failed result (None: an error).
        A path may also be a full URL. ``usage_at``: where in :attr:`_usage` the
        reply's ``usage`` (prompt_tokens, completion_tokens) goes."""
        url = path if path.startswith(("http://", "https://")) else self._url(path)
        httpx = self.httpx
        last = ""
        limit = self.limit
        for attempt in range(self.max_retries + 1):
            epoch = await limit.acquire()
            kind, retry_after = "other", None
            try:
                self._count("requests")
                try:
                    r = await asyncio.wait_for(client.post(url, json=body), self.deadline)
                except httpx.TimeoutException:
                    fault, last, retry_after = "timeout", f"timeout after {self.timeout:g}s", None
                except asyncio.TimeoutError:
                    fault, last, retry_after = "deadline", f"no complete reply within the {self.deadline:g}s deadline", None
                except httpx.RequestError as e:
                    fault, last, retry_after = "connection_error", f"connection error ({type(e).__name__})", None
                else:
                    done, outcome = self._reply(r, path, parse, redact, whole, fail, usage_at)
                    if done:
                        kind = "ok"
                        return outcome
                    fault, last, retry_after = outcome
                if fault in THROTTLE_FAULTS:
                    kind = "throttled"
            finally:
                limit.outcome(epoch, kind, None if retry_after is None else min(retry_after, self.backoff_max))
                await limit.release()
            self._count(fault)
            if attempt < self.max_retries:
                self._count("retries")
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise BackendError(f"{self.name}: gave up after {self.max_retries + 1} attempts (last: {last})")

    def _reply(self, r: Any, path: str, parse: Callable[[dict[str, Any]], Any], redact: Callable[[str], str],
               whole: bool, fail: Callable[[str], Any] | None, usage_at: int | None = None) -> tuple[bool, Any]:
        """One HTTP response: ``(True, result)``, or ``(False, (fault, message,
        retry_after))`` to retry; a permanent fault raises."""
        status = r.status_code
        if status in RETRY_STATUS:
            return False, (f"http_{status}", f"HTTP {status}", _retry_after(r.headers.get("retry-after")))
        if status >= 400:
            message = redact(_server_message(r))
            if fail is not None and prompt_too_long(status, message):
                return True, self._failed(f"HTTP {status}: {message}", fail)
            hint = ""
            if "continue_final_message" in message or "add_generation_prompt" in message:
                hint = ("; this server does not take vLLM's continue_final_message: set the model's "
                        "options.prefill to instruction (or assistant)")
            raise BackendError(f"{self.name}: HTTP {status} from {path}: {message}{hint}")
        try:
            data = r.json()
        except RecursionError:
            raise BackendError(f"{self.name}: the reply from {path} is JSON nested too deeply to read") from None
        except ValueError:
            return False, ("malformed_json", "malformed JSON", None)
        if not isinstance(data, dict):
            raise BackendError(f"{self.name}: unexpected response shape from {path}: "
                               f"the reply is {_kind(data)}, not a JSON object")
        if whole:
            return True, self._parse(parse, data, path)
        choices = data.get("choices")
        if choices is None or choices == []:
            return False, ("empty_choices", "no choices in the response", None)
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            what = _kind(choices) if not isinstance(choices, list) else f"a list starting with {_kind(choices[0])}"
            raise BackendError(f"{self.name}: unexpected response shape from {path}: "
                               f"'choices' is {what}, not a list of objects")
        result = self._parse(parse, choices[0], path)
        self._served(data.get("model"), redact)
        if usage_at is not None and usage_at < len(self._usage):
            self._usage[usage_at] = _server_usage(data.get("usage"))
        return True, result

    def _parse(self, parse: Callable[[dict[str, Any]], Any], obj: dict[str, Any], path: str) -> Any:
        try:
            return parse(obj)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError) as e:
            raise BackendError(f"{self.name}: unexpected response shape from {path} "
                               f"({type(e).__name__}: {str(e)[:120]})") from None

    def _served(self, served: Any, redact: Callable[[str], str]) -> None:
        """Record a reply that names another model than the one asked for."""
        if not isinstance(served, str) or not served or served == self.model:
            return
        name = redact(served)[:100]
        self._count(f"served_as:{name}")
        self._warn_once(f"served_as:{name}", f"{self.name}: the server answered as model {name!r}, not "
                        f"{self.model!r} (counted in run.json under faults 'served_as:{name}')")

    def _failed(self, reason: str, fail: Callable[[str], Any]) -> Any:
        self._count("failed_items")
        if len(self.failures) < 1000:
            self.failures.append(reason)
        self._warn_once("failed", f"{self.name}: a prompt was rejected as too long ({reason}); such items are "
                        "recorded as failed (run.json faults 'failed_items', the report's run facts), not "
                        "cached, and the audit goes on")
        return fail(reason)

    def _run_all(self, jobs: list[tuple[Any, ...]]) -> list[Any]:
        """Send every job concurrently (bounded) and return results in order."""
        httpx = self.httpx
        headers = {}
        key = None
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueLensError(f"{self.name}: environment variable {self.api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"

        def redact(text: str) -> str:
            return text.replace(key, "***") if key else text

        async def main() -> list[Any]:
            self.limit.bind()  # the adaptive limit bounds the requests in flight
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            async with httpx.AsyncClient(headers=headers, timeout=self.timeout, limits=limits) as client:
                tasks = [asyncio.ensure_future(self._call(client, j[0], j[1], j[2], redact,
                                                          bool(j[3]) if len(j) > 3 else False,
                                                          j[4] if len(j) > 4 else None, usage_at=k))
                         for k, j in enumerate(jobs)]
                try:
                    return await asyncio.gather(*tasks)
                finally:
                    for t in tasks:
                        t.cancel()

        if not jobs:
            self._usage = []
            return []
        self._usage = [None] * len(jobs)  # each job's (prompt_tokens, completion_tokens) from its reply
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        with ThreadPoolExecutor(1) as pool:  # called from inside an event loop (e.g. a notebook)
            return pool.submit(asyncio.run, main()).result()

    def _job_usage(self, k: int, messages: Sequence[Message], prefill: str, text: str, completion: int) -> Usage:
        """Job k's tokens: the server's ``usage``, else an estimate from the text (prompt) and the reply
        (``text``, or ``completion`` tokens when there is no text: a one-token logprob request)."""
        got = self._usage[k] if k < len(self._usage) else None
        if got is not None:
            return Usage(got[0], got[1], "server")
        self._count("usage_estimated")
        return Usage(estimate_tokens(prompt_text(messages, prefill)), estimate_tokens(text) if text else completion,
                     "estimate")

    # the two request kinds -----------------------------------------------------
    def _check(self, token: Any, value: Any) -> float:
        """A (token, logprob) pair of a reply as a logprob <= 0, or an error."""
        if not isinstance(token, str):
            raise BackendError(f"{self.name}: the server returned a token that is {_kind(token)}, not a string")
        lp = _logprob(value)
        if lp is None:
            raise BackendError(f"{self.name}: the server returned a logprob that is not a number "
                               f"({_short(value)} for token {_short(token)})")
        if math.isnan(lp) or lp > 1e-3:  # a probability above 1 (or NaN): not a distribution
            raise BackendError(f"{self.name}: the server returned an invalid logprob ({lp!r} for token {_short(token)})")
        return min(lp, 0.0)

    def _top_tokens(self, choice: dict[str, Any]) -> dict[str, float]:
        """Token text -> logprob for the first generated token (checked, see the module docstring)."""
        lp = choice.get("logprobs")
        returned: tuple[Any, Any] | None = None
        pairs: list[tuple[Any, Any]] = []
        if isinstance(lp, dict) and self.mode == "chat" and lp.get("content"):
            first = lp["content"][0]
            pairs = [(t["token"], t["logprob"]) for t in first.get("top_logprobs") or []]
            returned = (first.get("token"), first.get("logprob"))
        elif isinstance(lp, dict) and self.mode == "completions" and lp.get("tokens"):
            pairs = list(((lp.get("top_logprobs") or [{}])[0] or {}).items())
            returned = (lp["tokens"][0], (lp.get("token_logprobs") or [None])[0])
        top: dict[str, float] = {}
        duplicated = False
        for tok, value in pairs:
            v = self._check(tok, value)
            duplicated = duplicated or tok in top
            top[tok] = max(top.get(tok, -math.inf), v)  # listed twice: the larger value, never both
        if duplicated:
            self._count("duplicate_tokens")
        if returned is not None and (returned[0] is not None or returned[1] is not None):
            tok, v = returned[0], self._check(*returned)
            if v == -math.inf:
                raise BackendError(f"{self.name}: the server gave the token it returned ({_short(tok)}) logprob "
                                   "-inf, probability 0: its logprobs cannot be trusted")
            top.setdefault(tok, v)
        if not top:
            self._count("missing_logprobs")
            raise _NoLogprobs(f"{self.name}: the server returned no logprobs; option distributions need "
                               "logprobs/top_logprobs support (e.g. vLLM)")
        total = math.fsum(math.exp(v) for v in top.values())
        if total > 1 + PROB_TOLERANCE:
            raise BackendError(f"{self.name}: the server's top logprobs add up to probability {total:.4g} > 1 "
                               "(not a distribution; nothing is clipped)")
        return top

    def _option_result(self, labels: Sequence[str], choice: dict[str, Any]) -> OptionResult:
        top = self._top_tokens(choice)
        mass = [sum(math.exp(v) for t, v in top.items() if t.strip() == lab.strip()) for lab in labels]
        return OptionResult.from_mass(mass)

    def _tokenize_labels(self, labels: set[str]) -> None:
        """Token ids of each label's single-token spellings (``A``, `` A``),
        from the server's ``/tokenize`` (at the server root, beside ``/v1``)."""
        todo = sorted(labels - set(self._label_ids))
        if not todo:
            return
        url = self._url("/tokenize", root=True)
        spellings = [sp for lab in todo for sp in prompting.label_spellings(lab)]
        jobs = [(url, {"model": self.model, "prompt": sp, "add_special_tokens": False},
                 lambda d: [int(t) for t in d["tokens"]], True) for sp in spellings]
        encodings = self._run_all(jobs)
        per_label = len(spellings) // len(todo)
        for k, lab in enumerate(todo):
            self._label_ids[lab] = prompting.single_token_ids(
                lab, encodings[k * per_label : (k + 1) * per_label], self.name)

    def _exact_result(self, labels: Sequence[str], choice: dict[str, Any]) -> OptionResult:
        scored: dict[int, float] = {}
        for tok, lp in self._top_tokens(choice).items():
            if tok.startswith("token_id:"):
                scored[int(tok.partition(":")[2])] = lp
        missing = [i for lab in labels for i in self._label_ids[lab] if i not in scored]
        if missing:
            raise BackendError(f"{self.name}: exact_options: the server did not score token ids {missing[:5]} "
                               "(does it support logprob_token_ids? vLLM >= 0.30 does)")
        mass = [sum(math.exp(scored[i]) for i in self._label_ids[lab]) for lab in labels]
        return OptionResult.from_mass(mass)

    def _or_sample(self, parse: Callable[[dict[str, Any]], OptionResult]) -> Callable[[dict[str, Any]], Any]:
        """``parse``, but in option_mode auto a reply without logprobs gives the marker to sample instead."""
        if self.option_mode != "auto":
            return parse

        def wrapped(choice: dict[str, Any]) -> Any:
            try:
                return parse(choice)
            except _NoLogprobs:
                return _NO_LOGPROBS
        return wrapped

    def _sampled(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """Option distributions estimated from ``samples`` answers each (see the module docstring)."""
        jobs = []
        for r in requests:
            for j in range(self.samples):
                path, body = self._body(r.messages, r.prefill, r.labels)
                body.update(temperature=1.0, top_p=1.0, max_tokens=self.sample_tokens, seed=sample_seed(0, j), n=1)
                jobs.append((path, body, self._text, False, FailedText))
        texts = self._run_all(jobs)
        out = []
        usage: list[Usage | None] = []
        for k, r in enumerate(requests):
            mine = texts[k * self.samples : (k + 1) * self.samples]
            parts = [self._job_usage(k * self.samples + j, r.messages, r.prefill, str(t), 0)
                     for j, t in enumerate(mine)]
            usage.append(Usage(sum(u.prompt for u in parts), sum(u.completion for u in parts),
                               "server" if all(u.source == "server" for u in parts) else "estimate"))
            failed = next((t for t in mine if isinstance(t, FailedText)), None)
            if failed is not None:
                out.append(OptionResult.failed(failed.failure))
                continue
            out.append(estimate([parse_label(t, r.labels) for t in mine], r.labels))
            self._count("options_sampled")
        self.last_usage = usage
        return out

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        """One result per request; a prompt rejected as too long gives
        :meth:`OptionResult.failed` (see the module docstring)."""
        if self._sampling:
            return self._sampled(requests)
        if self.exact_options:
            self._tokenize_labels({lab for r in requests for lab in r.labels})
        jobs = []
        for r in requests:
            path, body = self._body(r.messages, r.prefill, r.labels)
            body.update(max_tokens=1, temperature=0, logprobs=True, top_logprobs=self.top_logprobs)
            if self.mode == "completions":
                body.pop("top_logprobs")
                body["logprobs"] = self.top_logprobs
            if self.exact_options:
                ids = sorted({i for lab in r.labels for i in self._label_ids[lab]})
                body.update(logprob_token_ids=ids, return_tokens_as_token_ids=True)
                parse = lambda c, labels=r.labels: self._exact_result(labels, c)  # noqa: E731
            else:
                parse = lambda c, labels=r.labels: self._option_result(labels, c)  # noqa: E731
            jobs.append((path, body, self._or_sample(parse), False, OptionResult.failed))
        results = self._run_all(jobs)
        usage: list[Usage | None] = [self._job_usage(k, r.messages, r.prefill, "", 1) for k, r in enumerate(requests)]
        todo = [i for i, x in enumerate(results) if x is _NO_LOGPROBS]
        if todo:
            self._sampling = True
            self._warn_once("sampling", f"{self.name}: the server returns no logprobs; option distributions are "
                            f"estimated from {self.samples} sampled answers per prompt from now on (estimated: "
                            "true in the tables and the report; options.option_mode: sample makes this explicit, "
                            "logprobs makes it an error)")
            for i, x in zip(todo, self._sampled([requests[i] for i in todo])):
                results[i] = x
            for i, u in zip(todo, self.last_usage or []):  # the logprob attempt's tokens, then the samples'
                first = usage[i]
                usage[i] = u if first is None or u is None else Usage(
                    first.prompt + u.prompt, first.completion + u.completion,
                    "server" if first.source == u.source == "server" else "estimate")
        self.last_usage = usage
        return results

    def _text(self, choice: dict[str, Any]) -> str:
        text = choice.get("text") if self.mode == "completions" else (choice.get("message") or {}).get("content")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"the reply text is a {type(text).__name__}, not a string")
        return text or ""

    def honours(self, request: GenerateRequest) -> bool:
        """JSON-schema response formats in chat mode, when the ``json_schema`` option says the server has them."""
        fmt = request.response_format
        return self.json_schema and self.mode == "chat" and fmt is not None and fmt.kind == "json_schema"

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        """One request per sample (``n=1``) with seed ``sample_seed(seed, index)``;
        a prompt rejected as too long gives an empty :class:`FailedText`. A response
        format it honours goes as ``response_format: {type: json_schema, ...}``."""
        jobs = []
        for r, index in items:
            st = r.settings
            if st.num_beams > 1:
                raise ValueLensError(f"{self.name} does not support beam search (num_beams={st.num_beams}); "
                                     "use num_beams: 1 or an hf backend")
            path, body = self._body(r.messages, r.prefill)
            body.update(temperature=st.temperature, top_p=st.top_p, max_tokens=st.max_tokens,
                        seed=sample_seed(st.seed, index), n=1)
            if self.honours(r):
                fmt = r.response_format
                assert fmt is not None  # honours() is true only for a request with a response format
                body["response_format"] = {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema}}
            parse: Callable[[dict[str, Any]], str] = self._text
            if self.mode == "chat" and self.prefill == "instruction" and r.prefill:
                parse = lambda c, pre=r.prefill: self._cut_prefill(self._text(c), pre)  # type: ignore[misc]  # noqa: E731
            jobs.append((path, body, parse, False, FailedText))
        texts = self._run_all(jobs)
        self.last_usage = [self._job_usage(k, r.messages, r.prefill, str(t), 0) for k, ((r, _), t) in
                           enumerate(zip(items, texts))]
        return texts

    @staticmethod
    def _cut_prefill(text: str, prefill: str) -> str:
        """A reply asked to begin with the prefill, as its continuation (as if the prefill had been sent)."""
        stripped = text.lstrip()
        return stripped[len(prefill.strip()):].lstrip() if prefill.strip() and stripped.startswith(
            prefill.strip()) else text
