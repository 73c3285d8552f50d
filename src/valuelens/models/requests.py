"""Typed requests and results: the only way layers talk to models.

A layer builds :class:`OptionRequest` or :class:`GenerateRequest` objects and
sends them through :class:`valuelens.models.cached.CachedModel`; it never sees
a backend's internals.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from valuelens.models.stopping import STOP_RULES, stop_point

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
    the model); such results are never cached, so a rerun retries them.

    ``estimated`` results come from ``samples`` sampled answers, not from
    log-probabilities (valuelens.models.sampled): ``probs`` is the empirical
    share of each option among the valid answers, ``covered_mass`` the share
    of answers that named an option (1 - the invalid share) and ``interval``
    each option's 95% Wilson interval (None when no answer was valid)."""

    probs: tuple[float, ...] | None
    covered_mass: float
    failure: str | None = None
    estimated: bool = False
    samples: int = 0
    interval: tuple[tuple[float, float], ...] | None = None

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

    @property
    def invalid_share(self) -> float | None:
        """Share of sampled answers that named no option (estimated results only)."""
        return 1.0 - self.covered_mass if self.estimated else None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"probs": None if self.probs is None else list(self.probs),
                             "covered_mass": self.covered_mass}
        if self.failure:
            d["failure"] = self.failure
        if self.estimated:  # only then: results from log-probabilities keep their old stored form
            d.update(estimated=True, samples=self.samples,
                     interval=None if self.interval is None else [list(x) for x in self.interval])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OptionResult:
        p = d["probs"]
        iv = d.get("interval")
        return cls(None if p is None else tuple(p), float(d["covered_mass"]), d.get("failure"),
                   bool(d.get("estimated", False)), int(d.get("samples", 0)),
                   None if iv is None else tuple((float(lo), float(hi)) for lo, hi in iv))


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checked(result: Any, n_labels: int) -> OptionResult:
    """``result`` as a valid :class:`OptionResult` for ``n_labels`` options, or
    a ValueError saying what is wrong. Rules: probabilities are real numbers,
    finite and non-negative, one per label; a sum above 1 (beyond rounding) is
    not a distribution and is refused; a sum below 1 is taken as raw label
    masses and renormalised, the covered mass becoming at most that sum; the
    covered mass is a number in [0, 1]; no probabilities means no covered mass.
    An estimated result also needs a positive sample count and, with
    probabilities, one interval [lo, hi] per label with 0 <= lo <= p <= hi <= 1
    (the estimate fields are kept)."""
    if not isinstance(result, OptionResult):
        raise ValueError(f"expected an OptionResult, got {type(result).__name__}")
    c = result.covered_mass
    if not _real(c) or not math.isfinite(c) or not 0 <= c <= 1 + PROB_TOLERANCE:
        raise ValueError(f"covered mass {c!r} is not a number in [0, 1]")
    c = min(float(c), 1.0)
    if result.probs is None:
        if c > PROB_TOLERANCE:
            raise ValueError(f"no probabilities but a covered mass of {c:.4g}")
        _check_estimate(result, None, n_labels)
        failure = result.failure if isinstance(result.failure, str) else None
        return replace(result, probs=None, covered_mass=0.0, failure=failure, interval=None)
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
        out = result if c == result.covered_mass else replace(result, covered_mass=c)
    else:
        out = replace(result, probs=tuple(float(p) / total for p in probs),
                      covered_mass=min(c, total) if total < 1 - PROB_TOLERANCE else c)
    _check_estimate(out, out.probs, n_labels)
    return out


def _check_estimate(result: OptionResult, probs: tuple[float, ...] | None, n_labels: int) -> None:
    if not result.estimated:
        return
    n = result.samples
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"an estimated result needs a positive sample count, got {n!r}")
    if probs is None:
        return
    iv = result.interval
    if not isinstance(iv, (tuple, list)) or len(iv) != n_labels:
        raise ValueError(f"an estimated result needs {n_labels} intervals, got "
                         f"{len(iv) if isinstance(iv, (tuple, list)) else type(iv).__name__}")
    for p, pair in zip(probs, iv):
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_real(x) and math.isfinite(x) for x in pair)
        if not ok or not 0 <= pair[0] <= p + 1e-9 or not p - 1e-9 <= pair[1] <= 1:
            raise ValueError(f"interval {pair!r} does not hold the estimate {p!r} inside [0, 1]")


@dataclass(frozen=True)
class GenerateSettings:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_beams: int = 1
    max_tokens: int = 64
    seed: int = 0
    # Stop strings: the text ends before the first one (it is not included). Empty: not part of the cache key.
    stop: tuple[str, ...] = ()
    # A stop rule (models.stopping.STOP_RULES): the text ends after its first complete answer. None: not in the key.
    stop_at: str | None = None

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.num_beams < 1 or self.max_tokens < 1:
            raise ValueError(f"invalid generation settings: {self}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"invalid generation settings: stop must be a tuple of non-empty strings, got {self.stop!r}")
        if self.stop_at is not None and self.stop_at not in STOP_RULES:
            raise ValueError(f"invalid generation settings: stop_at must be one of {', '.join(STOP_RULES)}, "
                             f"got {self.stop_at!r}")

    def to_json(self) -> dict[str, Any]:
        """As in cache keys: ``stop`` and ``stop_at`` only when set, so keys made before they existed still match."""
        d = asdict(self)
        if not self.stop:
            del d["stop"]
        else:
            d["stop"] = list(self.stop)
        if self.stop_at is None:
            del d["stop_at"]
        return d


RESPONSE_FORMATS = ("json_schema", "regex")


@dataclass(frozen=True)
class ResponseFormat:
    """What a generated reply must be: a JSON document valid under a JSON
    schema (``json_schema``; written compactly, no whitespace between tokens)
    or a full match of a regular expression (``regex``, Rust/`regex` syntax:
    no look-around, no back-references). It constrains the generated text
    (after any prefill). ``spec`` is the schema as JSON text (key order kept:
    it is the order the properties are written in) or the pattern; ``name``
    is a label servers may ask for (OpenAI's ``json_schema.name``).

    Build one with :meth:`json_schema` or :meth:`regex`. Backends that honour
    it say so (``honours``); :class:`~valuelens.models.cached.CachedModel`
    drops it from a request a backend cannot honour, so such a request is
    asked and cached as the plain prompt it then is."""

    kind: str
    spec: str
    name: str = "reply"

    def __post_init__(self):
        if self.kind not in RESPONSE_FORMATS:
            raise ValueError(f"response format kind must be one of {', '.join(RESPONSE_FORMATS)}, got {self.kind!r}")
        if not isinstance(self.spec, str) or not self.spec:
            raise ValueError("response format: spec must be a non-empty string")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name or ""):
            raise ValueError(f"response format name {self.name!r}: letters, digits, _ or -, at most 64")
        if self.kind == "json_schema":
            try:
                ok = isinstance(json.loads(self.spec), dict)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("response format: a json_schema spec must be a JSON object")

    @classmethod
    def json_schema(cls, schema: dict[str, Any], name: str = "reply") -> ResponseFormat:
        return cls("json_schema", json.dumps(schema, ensure_ascii=False, separators=(",", ":")), name)

    @classmethod
    def regex(cls, pattern: str, name: str = "reply") -> ResponseFormat:
        return cls("regex", pattern, name)

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema (``json_schema`` only)."""
        if self.kind != "json_schema":
            raise ValueError("response format: not a JSON schema")
        return json.loads(self.spec)

    def to_json(self) -> dict[str, Any]:
        """As in cache keys: the schema as its JSON text, since key order (the order properties are
        written in) matters and cache keys are canonical JSON with sorted keys."""
        return {"type": self.kind, "name": self.name, "spec": self.spec}


@dataclass(frozen=True)
class GenerateRequest:
    """Generate ``n`` samples; each sample is cached on its own (sample index
    is part of the key), so ``n`` can grow later without redoing work.
    ``response_format`` (optional) constrains each sample's text; it is in the
    key only when set, so keys made before it existed still match."""

    messages: tuple[Message, ...]
    settings: GenerateSettings = field(default_factory=GenerateSettings)
    n: int = 1
    prefill: str = ""
    response_format: ResponseFormat | None = None

    def sample_json(self, index: int) -> dict[str, Any]:
        d = {
            "kind": "generate",
            "messages": [asdict(m) for m in self.messages],
            "settings": self.settings.to_json(),
            "prefill": self.prefill,
            "sample_index": index,
        }
        if self.response_format is not None:
            d["response_format"] = self.response_format.to_json()
        return d


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


def stop_index(text: str, stop: Sequence[str], stop_at: str | None = None) -> int | None:
    """Where ``text`` ends under the stop strings (before the earliest one) and
    the stop rule (after its first complete answer, :mod:`.stopping`); None
    when neither applies yet."""
    cuts = [k for k in (text.find(s) for s in stop) if k >= 0]
    if stop_at is not None:
        k = stop_point(stop_at, text)
        if k is not None:
            cuts.append(k)
    return min(cuts) if cuts else None


def cut_at_stop(text: str, stop: Sequence[str], stop_at: str | None = None) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string,
    and up to the end of the first complete answer under ``stop_at`` (a
    :class:`FailedText` is returned as it is)."""
    if (not stop and stop_at is None) or isinstance(text, FailedText):
        return text
    k = stop_index(text, stop, stop_at)
    return text if k is None else text[:k]
