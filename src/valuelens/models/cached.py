"""Every model call goes through here: cache lookup, batched misses, store.

Misses are sent to the backend in chunks of ``chunk_size`` and each chunk is
committed before the next starts, so a killed run loses at most one chunk of
work and never records a call twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from valuelens.errors import ValueLensError
from valuelens.models.base import Backend, Trainable
from valuelens.models.requests import (FailedText, GenerateRequest, GenerateResult, OptionRequest, OptionResult,
                                       checked, cut_at_stop)
from valuelens.models.usage import Budget, Meter, Usage, estimate_tokens, prompt_text
from valuelens.store import Store, call_key

Progress = Callable[[int], None]
# What a layer says a call is for: (table, row_id, part) — the layer table the call's row is in, that row's
# ``row_id`` and which of the row's calls it is ("" for a row's only call; e.g. "reply", "stress#repair1").
# A call several rows share (a MARK persona stage, a first-token content-free prompt) takes a list of tags:
# it is logged once per row.
Tag = tuple[str, str, str]
Tags = Tag | list[Tag] | None


def describe(request: OptionRequest) -> str:
    """A short, one-line name for a request in error messages."""
    text = " ".join(request.messages[-1].content.split()) if request.messages else ""
    return f"the prompt {text[:70] + ('…' if len(text) > 70 else '')!r} (options {', '.join(request.labels)})"


class CachedModel:
    """The model interface layers use: ``option_distribution`` and ``generate``.

    ``meter`` counts calls and tokens (:mod:`valuelens.models.usage`; shared with the
    fine-tuned handle); ``budget`` (optional) stops the model at its caps with
    :class:`~valuelens.models.usage.BudgetReached`, checked before each chunk."""

    def __init__(self, backend: Backend, store: Store, name: str, *, chunk_size: int = 32,
                 meter: Meter | None = None, budget: Budget | None = None):
        self.backend = backend
        self.store = store
        self.name = name
        self.chunk_size = max(1, int(chunk_size))
        self.identity = backend.identity()
        self.meter = meter if meter is not None else Meter()
        self.budget = budget
        self.on_chunk: Callable[[], None] | None = None  # called after each chunk of calls is stored (run.json)
        self.made = 0
        self.cached = 0
        self.estimated = 0  # option results estimated from sampled answers (OptionResult.estimated), for run.json
        # The samples log: one record per call a layer made (cache hit or not, failed or not), in call order;
        # the audit sets ``layer`` before each layer runs and turns the log into the ``samples`` table.
        self.layer = ""
        self.samples: list[dict[str, Any]] = []
        self._last: tuple[list[str], list[Any]] = ([], [])

    @property
    def supports_beams(self) -> bool:
        return self.backend.supports_beams

    @property
    def can_finetune(self) -> bool:
        return isinstance(self.backend, Trainable)

    def finetuned(self, train: list[Any], val: list[Any], settings: Any, out_dir: Any,
                  tracker: Any = None) -> tuple[CachedModel, list[dict]]:
        """First-token KL fine-tuning (backends that support it). The tuned
        model has a new identity, so its calls never mix with the base model's
        in the cache. Returns the tuned model and the training log."""
        if not self.can_finetune:
            raise ValueLensError(f"model {self.name}: its backend cannot be fine-tuned")
        assert isinstance(self.backend, Trainable)
        backend, log = self.backend.finetune(train, val, settings, out_dir, tracker)
        if backend is self.backend or backend.identity() == self.identity or self.backend.identity() != self.identity:
            # A tuned handle that shares the base identity, or a base whose weights changed, would
            # store fine-tuned answers under the base model's key.
            raise ValueLensError(f"model {self.name}: fine-tuning did not give a separate model handle")
        tuned = CachedModel(backend, self.store, f"{self.name}+ft", chunk_size=self.chunk_size, meter=self.meter,
                            budget=self.budget)
        tuned.on_chunk = self.on_chunk
        tuned.samples, tuned.layer = self.samples, self.layer  # one log: the tuned model's calls are the layer's
        return tuned, log

    def _run(
        self,
        payloads: list[dict[str, Any]],
        compute: Callable[[list[int]], list[Any]],
        progress: Progress | None,
        to_json: Callable[[Any], Any] = lambda r: r,
        order: Callable[[list[int]], list[int]] | None = None,
        prompts: Callable[[int], tuple[Any, str]] | None = None,
    ) -> list[Any]:
        """Each payload's result: a stored hit as its stored JSON, a fresh one as
        ``compute`` returned it (stored as ``to_json`` of it, with its token
        ``usage``). ``order``: the backend's batch order of the misses, so that
        each chunk holds requests it computes together (prompts sharing a
        prefix), not a slice of the caller's order. ``prompts(i)``: payload i's
        (messages, prefill), for token counts where the backend gives none."""
        keys = [call_key(self.identity, p) for p in payloads]
        found = self.store.get_many(set(keys))
        out: list[Any] = [found.get(k) for k in keys]
        as_json: list[Any] = list(out)  # each result as stored (a failure as it would have been): the samples log
        hits = sum(1 for k in keys if k in found)
        self.cached += hits
        for k in keys:
            if k in found:
                self.meter.add(Usage.from_json(found[k].get("usage")), cached=True)
        self.store.add_cached(hits)
        if progress and hits:
            progress(hits)
        # Identical requests inside one call are computed once.
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in first:
                first[k] = i
        todo = list(first.values())
        if order is not None and len(todo) > self.chunk_size:
            planned = order(todo)
            todo = planned if sorted(planned) == todo else todo
        start = 0
        while start < len(todo):
            size = self.chunk_size if self.budget is None else self.budget.allow(self.chunk_size)
            idx = todo[start : start + size]
            start += len(idx)
            responses = compute(idx)
            stored = [to_json(r) for r in responses]
            usages = self._usages(idx, stored, prompts)
            for d, u in zip(stored, usages):
                if isinstance(d, dict) and u is not None:
                    d["usage"] = u.to_json()
                self.meter.add(u, cached=False)
            if self.budget is not None:
                self.budget.charge(usages)
            # a request the backend could not serve (``failure``) is not an answer: not stored, retried next run
            self.store.put_many(self.name, [(keys[i], payloads[i], d) for i, d in zip(idx, stored)
                                            if not _failed(d)])
            self.made += len(idx)
            for i, r, d in zip(idx, responses, stored):
                out[i], as_json[i] = r, d
            if progress:
                progress(len(idx))
            if self.on_chunk is not None:
                self.on_chunk()
        for i, k in enumerate(keys):
            if out[i] is None:
                out[i], as_json[i] = out[first[k]], as_json[first[k]]
        if progress and len(keys) > hits + len(todo):
            progress(len(keys) - hits - len(todo))
        self._last = (keys, as_json)
        return out

    def _log(self, payloads: list[dict[str, Any]], tags: Sequence[Tags] | None,
             keep: Sequence[bool] | None = None) -> None:
        """One samples-log record per call of the last ``_run`` (same order as ``payloads``). Only what
        is the same on a resumed run goes in: the request, its key, the result as stored; not whether it
        was served from the cache."""
        keys, as_json = self._last
        if tags is not None and len(tags) != len(payloads):
            raise ValueError(f"{len(tags)} sample tags for {len(payloads)} calls")
        for i, (key, payload, result) in enumerate(zip(keys, payloads, as_json)):
            if keep is not None and not keep[i]:
                continue
            tag = tags[i] if tags is not None else None
            for table, row_id, part in (tag if isinstance(tag, list) else [tag or ("", "", "")]):
                self.samples.append({"layer": self.layer, "table": table, "row_id": row_id, "part": part,
                                     "call_key": key, "request": payload, "result": result})

    def _usages(self, idx: list[int], stored: list[Any],
                prompts: Callable[[int], tuple[Any, str]] | None) -> list[Usage | None]:
        """Token counts of the calls just made: the backend's own (``last_usage``, e.g. a server's
        ``usage``), else its tokenizer (``count_tokens``), else :func:`estimate_tokens`. A request the
        backend could not serve counts none."""
        last = getattr(self.backend, "last_usage", None)
        if isinstance(last, list) and len(last) == len(idx):
            self.backend.last_usage = None  # type: ignore[attr-defined]
            return [u if isinstance(u, Usage) and not _failed(d) else None for u, d in zip(last, stored)]
        if prompts is None:
            return [None] * len(idx)
        count = getattr(self.backend, "count_tokens", None)
        out: list[Usage | None] = []
        for i, d in zip(idx, stored):
            if _failed(d):
                out.append(None)
                continue
            messages, prefill = prompts(i)
            text = d.get("text", "") if isinstance(d, dict) else ""
            if count is not None:
                p, c = count(messages, prefill, text)
                out.append(Usage(int(p), int(c), "tokenizer"))
            else:
                out.append(Usage(estimate_tokens(prompt_text(messages, prefill)), estimate_tokens(text), "estimate"))
        return out

    def option_distribution(
        self, requests: Sequence[OptionRequest], progress: Progress | None = None,
        tags: Sequence[Tags] | None = None,
    ) -> list[OptionResult]:
        """Every result is validated (:func:`~valuelens.models.requests.checked`)
        once: a fresh one before it is stored, a stored hit when it is read. A
        violation is an error naming the model and the prompt, never a number.
        ``tags``: one :data:`Tag` per request, for the samples log."""
        requests = list(requests)

        def compute(idx: list[int]) -> list[Any]:
            results = self.backend.option_distribution([requests[i] for i in idx])
            if not isinstance(results, list) or len(results) != len(idx):
                got = len(results) if isinstance(results, list) else type(results).__name__
                raise ValueLensError(f"model {self.name}: the backend returned {got} option results "
                                     f"for {len(idx)} requests")
            return [self._checked(r, requests[i]) for r, i in zip(results, idx)]

        plan = getattr(self.backend, "batch_order", None)
        order = None if plan is None else (lambda idx: [idx[k] for k in plan([requests[i] for i in idx])])
        payloads = [r.to_json() for r in requests]
        raw = self._run(payloads, compute, progress, OptionResult.to_json, order,
                        lambda i: (requests[i].messages, requests[i].prefill))
        self._log(payloads, tags)
        out = []
        for d, req in zip(raw, requests):
            if isinstance(d, OptionResult):  # computed in this call: checked once, in compute
                out.append(d)
                continue
            try:
                result = OptionResult.from_json(d)
            except (KeyError, TypeError, ValueError):
                raise ValueLensError(f"model {self.name}: a stored option result is malformed ({str(d)[:60]}) "
                                     f"for {describe(req)}; delete the store to recompute") from None
            out.append(self._checked(result, req, stored=True))
        self.estimated += sum(1 for r in out if r.estimated)
        return out

    def _checked(self, result: Any, request: OptionRequest, stored: bool = False) -> OptionResult:
        try:
            return checked(result, len(request.labels))
        except ValueError as e:
            where = "a stored answer" if stored else "the backend"
            raise ValueLensError(f"model {self.name}: {where} gave invalid option probabilities for "
                                 f"{describe(request)}: {e}") from None

    def honours(self, request: GenerateRequest) -> bool:
        """Whether the backend constrains this request's reply to its ``response_format``."""
        fmt = request.response_format
        honours = getattr(self.backend, "honours", None)
        return fmt is not None and honours is not None and bool(honours(request))

    def as_asked(self, request: GenerateRequest) -> GenerateRequest:
        """The request as the backend will serve it: without its ``response_format`` when the
        backend cannot honour it (prompt-and-parse; counted in ``stats["unconstrained_replies"]``),
        so the cache key says what was computed and a later constrained run does not reuse it."""
        if request.response_format is None or self.honours(request):
            return request
        stats = getattr(self.backend, "stats", None)
        if isinstance(stats, dict):
            stats["unconstrained_replies"] = stats.get("unconstrained_replies", 0) + request.n
        return replace(request, response_format=None)

    def generate(
        self, requests: Sequence[GenerateRequest], progress: Progress | None = None,
        tags: Sequence[Tags] | None = None, samples: Sequence[int | None] | None = None,
    ) -> list[GenerateResult]:
        """``tags``: one :data:`Tag` per request, for the samples log; each of its ``n`` samples is logged
        under it, or only sample ``samples[i]`` where the layer uses one (the others are earlier rows')."""
        if tags is not None and len(tags) != len(requests):
            raise ValueError(f"{len(tags)} sample tags for {len(requests)} requests")
        requests = [self.as_asked(r) for r in requests]
        items = [(r, j) for r in requests for j in range(r.n)]

        def compute(idx: list[int]) -> list[Any]:
            texts = self.backend.generate([items[i] for i in idx])
            texts = [_cut(t, items[i][0].settings) for i, t in zip(idx, texts)]  # any backend: same cut
            return [{"text": "", "failure": t.failure} if isinstance(t, FailedText) else {"text": t} for t in texts]

        payloads = [r.sample_json(j) for r, j in items]
        raw = self._run(payloads, compute, progress, prompts=lambda i: (items[i][0].messages, items[i][0].prefill))
        keep = None if samples is None else [samples[k] in (None, j) for k, r in enumerate(requests) for j in range(r.n)]
        self._log(payloads, None if tags is None else [tags[k] for k, r in enumerate(requests) for _ in range(r.n)],
                  keep)
        # a sample the backend could not generate comes back as an empty FailedText carrying its reason,
        # so layers can show it (a ``failure`` column) instead of taking it for an empty answer
        texts = [FailedText(d["failure"]) if d.get("failure") else d["text"] for d in raw]
        out, pos = [], 0
        for r in requests:
            out.append(GenerateResult(tuple(texts[pos : pos + r.n])))
            pos += r.n
        return out


def _cut(text: str, st: Any) -> str:
    return cut_at_stop(text, st.stop, st.stop_at)


def _failed(d: Any) -> bool:
    return isinstance(d, dict) and bool(d.get("failure"))
