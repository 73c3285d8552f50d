"""A small OpenAI-compatible server for tests, with scripted answers and faults.

Serves ``POST /v1/chat/completions`` and ``POST /v1/completions`` on
127.0.0.1 (a free port) from a background thread::

    with FakeOpenAIServer(faults=["http_500"]) as srv:
        backend = OpenAIBackend(model="m", base_url=srv.url)

Answers are deterministic: the first-token distribution over :data:`VOCAB`
comes from a hash of the prompt (:func:`token_logprobs`), generated text from
the prompt and seed (:func:`generation_text`). The prompt is the request's
``prompt`` (completions) or its message contents joined by blank lines (chat).

Faults (see :data:`FAULTS`) are chosen per request: ``faults[i]`` for the
``i``-th request, then ``fault_rates`` (fault name -> probability) drawn from
an RNG seeded by (seed, prompt, how often this prompt was seen), so the same
requests meet the same faults whatever the concurrency. ``always`` applies a
fault to every request. After ``max_requests`` the server answers 410.
``too_long`` (prompt -> bool) makes the prompts it selects a 400 "maximum
context length" error, as vLLM gives (the same prompts fail on every rerun).

Reply faults beyond HTTP codes and broken transports: ``choices_number`` and
``choices_object`` (``choices`` of the wrong type), ``deep_json`` (nesting
deeper than any JSON parser recurses), ``string_logprobs``,
``positive_logprob`` (a probability above 1), ``mass_over_one`` (top logprobs
whose probabilities add up to 2.4), ``duplicate_tokens`` (the top token listed
twice more, first and last, at half its probability; chat only), ``neg_inf_token`` (the returned token
has logprob -inf), ``other_model`` (the reply names ``other-model``),
``trickle`` (the reply one byte every ``trickle`` seconds, for at most
``hang`` seconds) and ``context_length`` (HTTP 400, prompt too long).
A query string on the URL is ignored for routing and recorded as ``query``.

Issue 20 modes (each off by default): ``sample_first_token`` makes a
generation request with temperature > 0 answer one token drawn from
:func:`token_logprobs` with an RNG seeded by (prompt, seed)
(:func:`sampled_token`), followed by ``) because``; ``reject_fields``
answers HTTP 400 "Unrecognized request argument supplied: FIELD" (as
api.openai.com does) to a request whose body has one of these fields;
``capacity`` answers HTTP 429 (with ``Retry-After: capacity_retry_after``
when that is set) to a request that arrives while ``capacity`` others are in
flight. Replies carry ``usage`` (prompt tokens: the prompt's whitespace-separated
words; completion tokens: the reply's words, at least 1) unless ``usage=False``.

Like vLLM it also serves ``POST /tokenize`` (token ``i`` is ``VOCAB[i]``;
any other text becomes several tokens) and honours ``logprob_token_ids``
(exactly those tokens' log-probabilities) and ``return_tokens_as_token_ids``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import Any

VOCAB = ("A", " A", "B", " B", "C", " C", "D", " D", "E", "F", " G", "The", "\n", "I", "Answer", " X")
FAULTS = ("http_400", "http_401", "http_408", "http_429", "http_429_retry_after", "http_500", "http_502", "http_503",
          "http_504", "http_520", "http_529", "connection_reset", "timeout", "truncated_json", "malformed_json",
          "missing_logprobs", "empty_choices", "choices_number", "choices_object", "deep_json", "string_logprobs",
          "positive_logprob", "mass_over_one", "duplicate_tokens", "neg_inf_token", "other_model", "trickle",
          "context_length")
# what vLLM answers (HTTP 400) when the prompt does not fit
CONTEXT_MESSAGE = ("This model's maximum context length is 64 tokens. However, you requested 90 tokens "
                   "(89 in the messages, 1 in the completion). Please reduce the length of the messages or completion.")


def token_logprobs(prompt: str) -> dict[str, float]:
    """The scripted first-token log-probabilities over VOCAB (sum to 1)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    logits = [digest[i] / 32.0 for i in range(len(VOCAB))]
    z = math.log(sum(math.exp(x) for x in logits))
    return {t: x - z for t, x in zip(VOCAB, logits)}


def top_k(prompt: str, k: int) -> list[tuple[str, float]]:
    """The ``k`` most likely scripted tokens, most likely first."""
    return sorted(token_logprobs(prompt).items(), key=lambda kv: -kv[1])[:k]


def sampled_token(prompt: str, seed: int | None) -> str:
    """The VOCAB token a ``sample_first_token`` server draws for (prompt, seed)."""
    u = random.Random(f"{prompt}|{seed}|sample").random()
    for tok, lp in token_logprobs(prompt).items():
        u -= math.exp(lp)
        if u < 0:
            return tok
    return VOCAB[-1]


def generation_text(prompt: str, seed: int | None) -> str:
    return "gen-" + hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:12]


def tokenize(text: str) -> list[int]:
    """Token ids: a VOCAB entry is one token, anything else one per character (ids from 1000)."""
    return [VOCAB.index(text)] if text in VOCAB else [1000 + ord(c) for c in text]


def prompt_of(body: dict[str, Any]) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    return "\n\n".join(m.get("content", "") for m in body.get("messages", []))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass  # the socket was closed on purpose

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        path, _, query = self.path.partition("?")
        fault, index = fake._begin(path, dict(self.headers), body, query)
        try:
            self._respond(fake, fault, index, body, path)
        finally:
            fake._end(index)

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"error": {"message": message, "code": status}}).encode(), headers)

    def _trickle(self, fake: FakeOpenAIServer, payload: bytes) -> None:
        """The reply a byte at a time, every ``fake.trickle`` seconds, for at most ``fake.hang`` seconds."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.flush()
        end = time.monotonic() + fake.hang
        for i in range(len(payload)):
            if time.monotonic() > end or fake._stop.wait(fake.trickle):
                break
            try:
                self.wfile.write(payload[i : i + 1])
                self.wfile.flush()
            except OSError:
                break
        self.close_connection = True

    def _respond(self, fake: FakeOpenAIServer, fault: str | None, index: int, body: Any, path: str) -> None:
        if index >= fake.max_requests:
            return self._error(410, f"fake server: max_requests ({fake.max_requests}) reached")
        if path == "/tokenize" and isinstance(body, dict) and fault is None:
            toks = tokenize(str(body.get("prompt", "")))
            return self._send(200, json.dumps({"tokens": toks, "count": len(toks), "max_model_len": 4096}).encode())
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self._error(404, f"no route {path}")
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            got = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self._error(401, f"Incorrect API key provided: {got}")  # echoes the key, as some servers do
        bad = next((f for f in fake.reject_fields if isinstance(body, dict) and f in body), None)
        if bad is not None:
            return self._error(400, f"Unrecognized request argument supplied: {bad}")
        if fake.capacity is not None and fake._over_capacity(index):
            headers = {"Retry-After": fake.capacity_retry_after} if fake.capacity_retry_after else None
            return self._error(429, "fake: rate limit reached (too many requests in flight)", headers)
        if fault == "connection_reset":
            self.close_connection = True
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.request.close()
            return None
        if fault == "timeout":
            fake._stop.wait(fake.hang)
            self.close_connection = True
            return None
        if fault and fault.startswith("http_"):
            status = int(fault.split("_")[1])
            headers = {"Retry-After": fake.retry_after} if fault == "http_429_retry_after" else None
            return self._error(status, f"fake {fault}", headers)
        if fault == "malformed_json":
            return self._send(200, b'{"choices": [oops')
        if fault == "deep_json":
            depth = 100_000
            return self._send(200, b'{"choices": ' + b"[" * depth + b"]" * depth + b"}")
        if not isinstance(body, dict):
            return self._error(400, "body is not JSON")
        if fault == "context_length" or (fake.too_long is not None and fake.too_long(prompt_of(body))):
            return self._error(400, CONTEXT_MESSAGE)
        if fake.delay:
            time.sleep(fake.delay)
        if fault == "empty_choices":
            return self._send(200, json.dumps({"object": "chat.completion", "choices": []}).encode())
        reply = fake.reply(path, body, with_logprobs=fault != "missing_logprobs")
        if fault is not None:
            _spoil(reply, fault)
        payload = json.dumps(reply).encode()
        if fault == "trickle":
            return self._trickle(fake, payload)
        if fault == "truncated_json":
            payload = payload[: len(payload) // 2]
        self._send(200, payload)
        return None


def _spoil(reply: dict[str, Any], fault: str) -> None:
    """Apply a reply fault (see the module docstring) to a scripted reply, in place."""
    choice = reply["choices"][0]
    if fault == "choices_number":
        reply["choices"] = 5
    elif fault == "choices_object":
        reply["choices"] = {"0": choice}
    elif fault == "other_model":
        reply["model"] = "other-model"
    lp = choice.get("logprobs")
    if not lp or fault not in ("string_logprobs", "positive_logprob", "mass_over_one", "duplicate_tokens",
                               "neg_inf_token"):
        return
    if "content" in lp:  # chat: a list of {token, logprob}
        first = lp["content"][0]
        top = first["top_logprobs"]
        if fault == "string_logprobs":
            for t in top:
                t["logprob"] = str(t["logprob"])
        elif fault == "positive_logprob":
            top[-1]["logprob"] = 0.5
        elif fault == "mass_over_one":  # every entry log(0.6): four of them add up to 2.4
            del top[4:]
            for t in top:
                t["logprob"] = math.log(0.6)
        elif fault == "duplicate_tokens":  # the top token twice more, first and last, at half its probability
            copy = {**top[0], "logprob": top[0]["logprob"] - math.log(2)}
            top.insert(0, copy)
            top.append(dict(copy))
        elif fault == "neg_inf_token":
            first["logprob"] = -math.inf
    else:  # completions: {token: logprob} dicts (duplicates cannot occur in a JSON object)
        top = lp["top_logprobs"][0]
        if fault == "string_logprobs":
            lp["top_logprobs"][0] = {t: str(v) for t, v in top.items()}
        elif fault == "positive_logprob":
            top[next(iter(top))] = 0.5
        elif fault == "mass_over_one":
            lp["top_logprobs"][0] = {t: math.log(0.6) for t in list(top)[:4]}
        elif fault == "neg_inf_token":
            lp["token_logprobs"][0] = -math.inf


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FakeOpenAIServer:
    """See the module docstring. ``requests`` records every request received
    (path, headers, body, fault, start and end times); ``max_in_flight`` is
    the most requests handled at once."""

    def __init__(self, *, faults: list[str | None] | None = None, fault_rates: dict[str, float] | None = None,
                 always: str | None = None, seed: int = 0, retry_after: str = "0.2", hang: float = 5.0,
                 delay: float = 0.0, api_key: str | None = None, max_requests: int = 1000, trickle: float = 0.2,
                 too_long: Callable[[str], bool] | None = None, sample_first_token: bool = False,
                 reject_fields: tuple[str, ...] = (), capacity: int | None = None,
                 capacity_retry_after: str | None = None, usage: bool = True):
        for f in [*(faults or []), *(fault_rates or {}), always]:
            if f is not None and f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; known: {FAULTS}")
        self.faults = list(faults or [])
        self.fault_rates = dict(fault_rates or {})
        self.always = always
        self.seed = seed
        self.retry_after = retry_after
        self.hang = hang
        self.delay = delay
        self.api_key = api_key
        self.max_requests = max_requests
        self.trickle = trickle
        self.too_long = too_long
        self.sample_first_token = sample_first_token
        self.reject_fields = tuple(reject_fields)
        self.capacity = capacity
        self.capacity_retry_after = capacity_retry_after
        self.usage = usage
        self.throttled = 0  # requests answered 429 for capacity
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None

    # lifecycle ---------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # bookkeeping ---------------------------------------------------------------
    def _begin(self, path: str, headers: dict[str, str], body: Any, query: str = "") -> tuple[str | None, int]:
        with self._lock:
            index = len(self.requests)
            prompt = prompt_of(body) if isinstance(body, dict) else ""
            seen = self._seen.get(prompt, 0)
            self._seen[prompt] = seen + 1
            fault = self.faults[index] if index < len(self.faults) else self.always
            if fault is None and self.fault_rates:
                u = random.Random(f"{self.seed}|{prompt}|{seen}").random()
                for name, rate in self.fault_rates.items():
                    if u < rate:
                        fault = name
                        break
                    u -= rate
            self.requests.append({"path": path, "query": query, "headers": headers, "body": body, "fault": fault,
                                  "start": time.monotonic(), "end": None})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return fault, index

    def _over_capacity(self, index: int) -> bool:
        """Whether this request arrived with ``capacity`` others in flight (it is counted in in_flight)."""
        with self._lock:
            over = self.in_flight > self.capacity
            if over:
                self.throttled += 1
                self.requests[index]["fault"] = "capacity_429"
        return over

    def _end(self, index: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests[index]["end"] = time.monotonic()

    # scripted replies ------------------------------------------------------------
    def reply(self, path: str, body: dict[str, Any], *, with_logprobs: bool = True) -> dict[str, Any]:
        prompt = prompt_of(body)
        chat = path.endswith("/chat/completions")
        if body.get("logprobs") and body.get("logprob_token_ids"):
            ids = [int(i) for i in body["logprob_token_ids"]]
            k, lps = len(ids), token_logprobs(prompt)
            top = [(VOCAB[i], lps[VOCAB[i]]) for i in ids if 0 <= i < len(VOCAB)]
            text = top[0][0] if top else "The"
        elif body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0) if chat else int(body["logprobs"])
            top = top_k(prompt, max(k, 1))
            text = top[0][0]
        elif self.sample_first_token and float(body.get("temperature") or 0) > 0:
            top, text = [], sampled_token(prompt, body.get("seed")) + ") because"
        else:
            top, text = [], generation_text(prompt, body.get("seed"))
        lp = None
        if body.get("return_tokens_as_token_ids"):
            top = [(f"token_id:{VOCAB.index(t)}", v) for t, v in top]
            text_tok = f"token_id:{VOCAB.index(text)}"
        else:
            text_tok = text
        if top and with_logprobs and chat:
            lp = {"content": [{"token": text_tok, "logprob": top[0][1], "bytes": list(text.encode()),
                               "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                                for t, v in top[:k]]}]}
        elif top and with_logprobs:
            lp = {"tokens": [text_tok], "token_logprobs": [top[0][1]], "top_logprobs": [dict(top)], "text_offset": [0]}
        choice: dict[str, Any] = {"index": 0, "logprobs": lp, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        reply = {"id": "fake-1", "object": "chat.completion" if chat else "text_completion",
                 "model": body.get("model"), "choices": [choice]}
        if self.usage:  # tokens: the prompt's whitespace-separated words, the reply's words (at least 1)
            p, c = len(prompt.split()), max(1, len(text.split()))
            reply["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        return reply
