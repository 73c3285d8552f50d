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

Prefill (the start of the assistant turn) is sent in chat mode as a final
assistant message with ``continue_final_message`` (a vLLM extension); hosted
APIs may reject or ignore it. In completions mode the prompt is the turns
joined by blank lines, then the prefill.

Transient faults (HTTP 429/500/502/503/504, connection errors, timeouts,
malformed JSON, empty ``choices``) are retried with capped exponential
backoff, honouring ``Retry-After``. The API key is read from the environment
at call time and never kept in identity, stats or error messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from valuelens.errors import BackendError, MissingDependency, ValueLensError
from valuelens.models import prompting
from valuelens.models.base import sample_seed
from valuelens.models.requests import GenerateRequest, Message, OptionRequest, OptionResult

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


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


def _server_message(response: Any) -> str:
    """The server's own short error message, else the start of the body."""
    try:
        data = response.json()
        err = data.get("error", data.get("detail", data)) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:200] or "(empty body)"


class OpenAIBackend:
    """An OpenAI-compatible server; see the module docstring."""

    OPTIONS = frozenset({"api_key_env", "max_concurrency", "max_retries", "timeout", "backoff_base",
                         "backoff_max", "top_logprobs", "mode", "revision", "exact_options"})
    supports_beams = False

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 5, timeout: float = 60.0, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 top_logprobs: int = 20, mode: str = "chat", revision: str = "", exact_options: bool = False):
        self.httpx = _httpx()
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"openai backend {model}@{self.base_url}"
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueLensError(f"{self.name}: the URL must start with http:// or https://")
        if mode not in ("chat", "completions"):
            raise ValueLensError(f"{self.name}: mode must be 'chat' or 'completions', not {mode!r}")
        if int(max_concurrency) < 1 or int(max_retries) < 0 or float(timeout) <= 0 or int(top_logprobs) < 1:
            raise ValueLensError(f"{self.name}: need max_concurrency >= 1, max_retries >= 0, timeout > 0, top_logprobs >= 1")
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.top_logprobs = int(top_logprobs)
        self.mode = mode
        self.revision = str(revision)
        self.exact_options = bool(exact_options)
        self._label_ids: dict[str, list[int]] = {}
        self.stats: dict[str, int] = {"requests": 0, "retries": 0}

    def identity(self) -> dict[str, Any]:
        # top_logprobs is included: a smaller top-k can change the distributions.
        ident = {"backend": "openai", "model": self.model, "base_url": self.base_url, "mode": self.mode,
                 "revision": self.revision, "top_logprobs": self.top_logprobs}
        if self.exact_options:  # other numbers than top-k: another cache key
            ident["exact_options"] = True
        return ident

    def close(self) -> None:
        pass  # each call opens and closes its own client

    # requests ----------------------------------------------------------------
    def _body(self, messages: Sequence[Message], prefill: str) -> tuple[str, dict[str, Any]]:
        """URL path and the prompt part of the request body."""
        if self.mode == "completions":
            return "/completions", {"model": self.model, "prompt": "\n\n".join(m.content for m in messages) + prefill}
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        body: dict[str, Any] = {"model": self.model, "messages": msgs}
        if prefill:
            msgs.append({"role": "assistant", "content": prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        return "/chat/completions", body

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = retry_after if retry_after is not None else self.backoff_base * 2**attempt
        return min(self.backoff_max, base) + random.uniform(0, 0.05 * min(self.backoff_max, base) + 0.01)

    async def _call(self, client: Any, sem: asyncio.Semaphore, path: str, body: dict[str, Any],
                    parse: Callable[[dict[str, Any]], Any], redact: Callable[[str], str], whole: bool = False) -> Any:
        """POST with retries; ``parse`` turns the first choice (``whole``: the
        whole JSON object) into the result. A path may also be a full URL."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        httpx = self.httpx
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            async with sem:
                self._count("requests")
                try:
                    r = await client.post(url, json=body)
                except httpx.TimeoutException:
                    fault, last = "timeout", f"timeout after {self.timeout:g}s"
                except httpx.RequestError as e:
                    fault, last = "connection_error", f"connection error ({type(e).__name__})"
                else:
                    if r.status_code in RETRY_STATUS:
                        fault, last = f"http_{r.status_code}", f"HTTP {r.status_code}"
                        retry_after = _retry_after(r.headers.get("retry-after"))
                    elif r.status_code >= 400:
                        raise BackendError(f"{self.name}: HTTP {r.status_code} from {path}: "
                                           f"{redact(_server_message(r))}")
                    else:
                        try:
                            data = r.json()
                        except ValueError:
                            data = None
                        choices = data.get("choices") if isinstance(data, dict) else None
                        if data is None:
                            fault, last = "malformed_json", "malformed JSON"
                        elif whole and isinstance(data, dict):
                            try:
                                return parse(data)
                            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
                                raise BackendError(f"{self.name}: unexpected response shape from {path} "
                                                   f"({type(e).__name__}: {e})") from None
                        elif not choices or not isinstance(choices[0], dict):
                            fault, last = "empty_choices", "no choices in the response"
                        else:
                            try:
                                return parse(choices[0])
                            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
                                raise BackendError(f"{self.name}: unexpected response shape from {path} "
                                                   f"({type(e).__name__}: {e})") from None
            self._count(fault)
            if attempt < self.max_retries:
                self._count("retries")
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise BackendError(f"{self.name}: gave up after {self.max_retries + 1} attempts (last: {last})")

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
            sem = asyncio.Semaphore(self.max_concurrency)
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            async with httpx.AsyncClient(headers=headers, timeout=self.timeout, limits=limits) as client:
                tasks = [asyncio.ensure_future(self._call(client, sem, p, b, f, redact, *rest)) for p, b, f, *rest in jobs]
                try:
                    return await asyncio.gather(*tasks)
                finally:
                    for t in tasks:
                        t.cancel()

        if not jobs:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        with ThreadPoolExecutor(1) as pool:  # called from inside an event loop (e.g. a notebook)
            return pool.submit(asyncio.run, main()).result()

    # the two request kinds -----------------------------------------------------
    def _top_tokens(self, choice: dict[str, Any]) -> dict[str, float]:
        """Token text -> logprob for the first generated token."""
        lp = choice.get("logprobs")
        top: dict[str, float] = {}
        if isinstance(lp, dict) and self.mode == "chat" and lp.get("content"):
            first = lp["content"][0]
            top = {t["token"]: t["logprob"] for t in first.get("top_logprobs") or []}
            top.setdefault(first.get("token"), first.get("logprob"))
        elif isinstance(lp, dict) and self.mode == "completions" and lp.get("tokens"):
            top = dict((lp.get("top_logprobs") or [{}])[0] or {})
            top.setdefault(lp["tokens"][0], (lp.get("token_logprobs") or [None])[0])
        top = {t: _logprob(v) for t, v in top.items() if isinstance(t, str) and _logprob(v) is not None}
        bad = [v for v in top.values() if math.isnan(v) or v > 1e-3]
        if bad:  # a probability above 1 (or NaN): the response is broken, not a distribution
            raise BackendError(f"{self.name}: the server returned an invalid logprob ({bad[0]!r})")
        top = {t: min(v, 0.0) for t, v in top.items()}
        if not top:
            self._count("missing_logprobs")
            raise BackendError(f"{self.name}: the server returned no logprobs; option distributions need "
                               "logprobs/top_logprobs support (e.g. vLLM)")
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
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        spellings = [sp for lab in todo for sp in prompting.label_spellings(lab)]
        jobs = [(root + "/tokenize", {"model": self.model, "prompt": sp, "add_special_tokens": False},
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

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        if self.exact_options:
            self._tokenize_labels({lab for r in requests for lab in r.labels})
        jobs = []
        for r in requests:
            path, body = self._body(r.messages, r.prefill)
            body.update(max_tokens=1, temperature=0, logprobs=True, top_logprobs=self.top_logprobs)
            if self.mode == "completions":
                body.pop("top_logprobs")
                body["logprobs"] = self.top_logprobs
            if self.exact_options:
                ids = sorted({i for lab in r.labels for i in self._label_ids[lab]})
                body.update(logprob_token_ids=ids, return_tokens_as_token_ids=True)
                jobs.append((path, body, lambda c, labels=r.labels: self._exact_result(labels, c)))
                continue
            jobs.append((path, body, lambda c, labels=r.labels: self._option_result(labels, c)))
        return self._run_all(jobs)

    def _text(self, choice: dict[str, Any]) -> str:
        text = choice.get("text") if self.mode == "completions" else (choice.get("message") or {}).get("content")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"the reply text is a {type(text).__name__}, not a string")
        return text or ""

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        """One request per sample (``n=1``) with seed ``sample_seed(seed, index)``."""
        jobs = []
        for r, index in items:
            st = r.settings
            if st.num_beams > 1:
                raise ValueLensError(f"{self.name} does not support beam search (num_beams={st.num_beams}); "
                                     "use num_beams: 1 or an hf backend")
            path, body = self._body(r.messages, r.prefill)
            body.update(temperature=st.temperature, top_p=st.top_p, max_tokens=st.max_tokens,
                        seed=sample_seed(st.seed, index), n=1)
            jobs.append((path, body, self._text))
        return self._run_all(jobs)
