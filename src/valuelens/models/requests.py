"""Typed requests and results: the only way layers talk to models.

A layer builds :class:`OptionRequest` or :class:`GenerateRequest` objects and
sends them through :class:`valuelens.models.cached.CachedModel`; it never sees
a backend's internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# How far a sum of probabilities may stray from 1 (or exceed it) by rounding.
PROB_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


def as_messages(prompt: str | tuple[Message, ...] | list[Message]) -> tuple[Message, ...]:
    """A bare string is one user turn."""
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(prompt)


@dataclass(frozen=True)
class OptionRequest:
    """Probability of each option label as the first token of the answer.

    ``prefill`` is the start of the assistant turn (chat models) or the text
    appended after the prompt (models without a chat template); the option
    label is scored as the token right after it.
    """

    messages: tuple[Message, ...]
    labels: tuple[str, ...]
    prefill: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "option_distribution",
            "messages": [asdict(m) for m in self.messages],
            "labels": list(self.labels),
            "prefill": self.prefill,
        }


@dataclass(frozen=True)
class OptionResult:
    """``probs`` renormalised over the labels (same order); ``covered_mass`` is
    the probability the labels had before renormalisation (1.0 = all mass).
    ``probs`` is None when no label was observed at all (e.g. none in a
    server's top-k logprobs). ``failure`` (with probs None) says why the
    backend could not answer this one request (e.g. the prompt is too long for
    the model); such results are never cached, so a rerun retries them."""

    probs: tuple[float, ...] | None
    covered_mass: float
    failure: str | None = None

    @classmethod
    def failed(cls, reason: str) -> OptionResult:
        return cls(None, 0.0, reason)

    @classmethod
    def from_mass(cls, mass: Sequence[float]) -> OptionResult:
        """From each option's raw probability (summed over its spellings):
        renormalised, with the covered mass recorded (a sum above 1 by more
        than rounding is kept as is, so :func:`checked` rejects it)."""
        covered = sum(mass)
        if covered <= 0:
            return cls(None, 0.0)
        if 1.0 < covered <= 1.0 + PROB_TOLERANCE:
            covered = 1.0
        return cls(tuple(m / covered for m in mass), covered)

    def to_json(self) -> dict[str, Any]:
        d = {"probs": None if self.probs is None else list(self.probs), "covered_mass": self.covered_mass}
        return {**d, "failure": self.failure} if self.failure else d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OptionResult:
        p = d["probs"]
        return cls(None if p is None else tuple(p), float(d["covered_mass"]), d.get("failure"))


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checked(result: Any, n_labels: int) -> OptionResult:
    """``result`` as a valid :class:`OptionResult` for ``n_labels`` options, or
    a ValueError saying what is wrong. Rules: probabilities are real numbers,
    finite and non-negative, one per label; a sum above 1 (beyond rounding) is
    not a distribution and is refused; a sum below 1 is taken as raw label
    masses and renormalised, the covered mass becoming at most that sum; the
    covered mass is a number in [0, 1]; no probabilities means no covered mass."""
    if not isinstance(result, OptionResult):
        raise ValueError(f"expected an OptionResult, got {type(result).__name__}")
    c = result.covered_mass
    if not _real(c) or not math.isfinite(c) or not 0 <= c <= 1 + PROB_TOLERANCE:
        raise ValueError(f"covered mass {c!r} is not a number in [0, 1]")
    c = min(float(c), 1.0)
    if result.probs is None:
        if c > PROB_TOLERANCE:
            raise ValueError(f"no probabilities but a covered mass of {c:.4g}")
        return OptionResult(None, 0.0, result.failure if isinstance(result.failure, str) else None)
    probs = result.probs
    if not isinstance(probs, (tuple, list)) or len(probs) != n_labels:
        size = len(probs) if isinstance(probs, (tuple, list)) else type(probs).__name__
        raise ValueError(f"expected {n_labels} probabilities, got {size}")
    for p in probs:
        if not _real(p) or not math.isfinite(p) or p < 0:
            raise ValueError(f"probability {p!r} is not a finite non-negative number")
    total = math.fsum(probs)
    if total <= 0:
        raise ValueError("the probabilities are all zero")
    if total > 1 + PROB_TOLERANCE:
        raise ValueError(f"the probabilities sum to {total:.4g}, more than 1")
    if abs(total - 1) <= 1e-9 and all(isinstance(p, float) for p in probs) and isinstance(probs, tuple):
        return result if c == result.covered_mass else OptionResult(probs, c)
    return OptionResult(tuple(float(p) / total for p in probs), min(c, total) if total < 1 - PROB_TOLERANCE else c)


@dataclass(frozen=True)
class GenerateSettings:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_beams: int = 1
    max_tokens: int = 64
    seed: int = 0
    # Stop strings: the text ends before the first one (it is not included). Empty: not part of the cache key.
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.num_beams < 1 or self.max_tokens < 1:
            raise ValueError(f"invalid generation settings: {self}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"invalid generation settings: stop must be a tuple of non-empty strings, got {self.stop!r}")

    def to_json(self) -> dict[str, Any]:
        """As in cache keys: ``stop`` only when set, so keys made before it existed still match."""
        d = asdict(self)
        if not self.stop:
            del d["stop"]
        else:
            d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class GenerateRequest:
    """Generate ``n`` samples; each sample is cached on its own (sample index
    is part of the key), so ``n`` can grow later without redoing work."""

    messages: tuple[Message, ...]
    settings: GenerateSettings = field(default_factory=GenerateSettings)
    n: int = 1
    prefill: str = ""

    def sample_json(self, index: int) -> dict[str, Any]:
        return {
            "kind": "generate",
            "messages": [asdict(m) for m in self.messages],
            "settings": self.settings.to_json(),
            "prefill": self.prefill,
            "sample_index": index,
        }


class FailedText(str):
    """The empty text a backend returns for a sample it could not generate
    (``failure`` says why); never cached, so a rerun retries it."""

    failure: str

    def __new__(cls, failure: str) -> FailedText:
        text = super().__new__(cls, "")
        text.failure = failure
        return text


@dataclass(frozen=True)
class GenerateResult:
    texts: tuple[str, ...]  # one per sample, in sample-index order


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string
    (a :class:`FailedText` is returned as it is)."""
    if not stop or isinstance(text, FailedText):
        return text
    cuts = [k for k in (text.find(s) for s in stop) if k >= 0]
    return text[: min(cuts)] if cuts else text
