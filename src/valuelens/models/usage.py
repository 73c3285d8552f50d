"""Tokens and calls per model, and budget caps (issue 20, item 6).

Every call a :class:`~valuelens.models.cached.CachedModel` makes gets a token
count, stored with its response (``usage: {prompt, completion, source}``), so
a call served from the cache later counts its original tokens. Where the
count comes from (``source``):

* ``server``: the ``usage`` object of an OpenAI-compatible server's reply
  (summed over the samples of a sampled option estimate, and over the
  logprob attempt that found no logprobs);
* ``tokenizer``: the backend's own tokenizer (``hf``, ``embedded``,
  ``vllm``): the rendered prompt's tokens, and the reply re-tokenized (an
  option request generates nothing: 0 completion tokens);
* ``estimate``: :func:`estimate_tokens` of the text (a backend without a
  tokenizer: ``scripted``; a server reply without ``usage``).

A :class:`Meter` adds calls and tokens up; one is shared by a model and its
fine-tuned handle. A :class:`Budget` (the audit file's ``max_calls`` /
``max_cost`` of a model) is checked before each chunk of calls:
:class:`BudgetReached` stops the model when the calls made in this output
directory (earlier runs' stored calls included) reach ``max_calls``, or
their cost reaches ``max_cost``. The calls cap is exact (a chunk is cut to
what is left); the cost of a chunk is known only once it is made, so the
spend can pass ``max_cost`` by at most one chunk's cost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("server", "tokenizer", "estimate")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count: one token per CJK character (and full-width
    form), one per 4 other characters, rounded up. BPE tokenizers give about 4
    characters of English per token and 1 to 1.5 tokens per Chinese character, so
    this is a rough figure; it is used only where ``source`` says ``estimate``."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def prompt_text(messages: Any, prefill: str) -> str:
    """The prompt as plain text (turns joined by blank lines, then the prefill), for estimates."""
    return "\n\n".join(m.content for m in messages) + prefill


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


@dataclass
class Usage:
    prompt: int
    completion: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"prompt": int(self.prompt), "completion": int(self.completion), "source": self.source}

    @classmethod
    def from_json(cls, d: Any) -> Usage | None:
        """A stored usage record, or None when there is none (a call stored before tokens were counted)."""
        if not isinstance(d, dict):
            return None
        p, c, s = d.get("prompt"), d.get("completion"), d.get("source")
        if isinstance(p, int) and isinstance(c, int) and _count(p) and _count(c) and s in SOURCES:
            return cls(p, c, str(s))
        return None


@dataclass
class Meter:
    """Calls and tokens: made this run, and served from the cache (their original tokens)."""

    made: int = 0
    cached: int = 0
    prompt: int = 0
    completion: int = 0
    cached_prompt: int = 0
    cached_completion: int = 0
    untracked: int = 0  # cached calls stored before tokens were counted: their tokens are unknown
    sources: dict[str, int] = field(default_factory=dict)  # calls counted per token source

    def add(self, usage: Usage | None, cached: bool) -> None:
        if cached:
            self.cached += 1
            if usage is None:
                self.untracked += 1
                return
            self.cached_prompt += usage.prompt
            self.cached_completion += usage.completion
        else:
            self.made += 1
            if usage is None:
                return
            self.prompt += usage.prompt
            self.completion += usage.completion
        self.sources[usage.source] = self.sources.get(usage.source, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counts as run.json records them; ``token_source``: the sources of the counted tokens
        (``server``, ``tokenizer``, ``estimate``, joined by ``+`` when mixed)."""
        return {"calls_made": self.made, "calls_cached": self.cached, "prompt_tokens": self.prompt,
                "completion_tokens": self.completion, "cached_prompt_tokens": self.cached_prompt,
                "cached_completion_tokens": self.cached_completion, "cached_untracked": self.untracked,
                "token_source": _joined(self.sources), "by_source": dict(self.sources)}

    @staticmethod
    def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
        """What was counted between two snapshots."""
        out = {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, int)}
        out["by_source"] = {s: n - before.get("by_source", {}).get(s, 0) for s, n in after["by_source"].items()}
        out["token_source"] = _joined(out["by_source"])
        return out


def _joined(counts: dict[str, int]) -> str:
    return "+".join(s for s in SOURCES if counts.get(s, 0) > 0)


def cost(prompt: int, completion: int, price: Any) -> float | None:
    """Dollars (or whatever unit the prices are in) for tokens at ``price``
    (``input``/``output`` per 1M tokens), or None without prices."""
    if price is None:
        return None
    return (prompt * float(price.input) + completion * float(price.output)) / 1e6


class BudgetReached(Exception):
    """A model's ``max_calls`` or ``max_cost`` is reached: the model stops (``stopped: budget``)."""

    def __init__(self, model: str, why: str):
        super().__init__(f"model {model}: budget reached ({why})")
        self.model = model
        self.why = why


@dataclass
class Budget:
    """One model's caps. ``spent_calls`` / ``spent_prompt`` / ``spent_completion``: what
    earlier runs in this output directory made (the store's rows of the model); this
    run's calls are added through :meth:`charge`."""

    model: str
    max_calls: int | None = None
    max_cost: float | None = None
    price: Any = None
    spent_calls: int = 0
    spent_prompt: int = 0
    spent_completion: int = 0

    @property
    def spent_cost(self) -> float:
        return cost(self.spent_prompt, self.spent_completion, self.price) or 0.0

    def allow(self, n: int) -> int:
        """How many of the next ``n`` calls may be made (at least 1), or :class:`BudgetReached`."""
        if self.max_calls is not None and self.spent_calls >= self.max_calls:
            raise BudgetReached(self.model, f"max_calls {self.max_calls}: {self.spent_calls} calls made")
        if self.max_cost is not None and self.spent_cost >= self.max_cost:
            raise BudgetReached(self.model, f"max_cost {self.max_cost:g}: spent {self.spent_cost:.4g}")
        return n if self.max_calls is None else min(n, self.max_calls - self.spent_calls)

    def charge(self, usages: list[Usage | None]) -> None:
        self.spent_calls += len(usages)
        for u in usages:
            if u is not None:
                self.spent_prompt += u.prompt
                self.spent_completion += u.completion

    def record(self) -> dict[str, Any]:
        """For run.json: the caps and what has been spent against them (all runs in this directory)."""
        out: dict[str, Any] = {"max_calls": self.max_calls, "max_cost": self.max_cost, "calls": self.spent_calls,
                               "prompt_tokens": self.spent_prompt, "completion_tokens": self.spent_completion}
        if self.price is not None:
            out["cost"] = round(self.spent_cost, 6)
        return out
