"""Stop rules: where a generated reply holds its first complete answer.

A request may name a rule (``GenerateSettings.stop_at``); the reply is cut at
the rule's stop point, like a stop string, and a backend that generates token
by token (hf's own loop) ends the row there instead of running to
``max_tokens``. The cut text is always a prefix of the uncut one: a rule only
decides how much of the text is kept, never what is written before it. The
rule is part of the request, so of the cache key (only when set).

Rules (:data:`STOP_RULES`):

``def_answer``
    DEF's form "Answer: <n> Explanation: <one sentence>" (Chinese
    "答案：… 解释：…"): an answer marker, then an explanation marker, then the
    first sentence after that is complete — a ``.``, ``!`` or ``?`` followed by
    white space, or a ``。`` (read after NFKC normalisation, as DEF's parser
    reads it, so a full-width ``！`` counts as ``!``). The cut keeps the
    sentence's final mark. DEF's parser (``layers.def_layer.parsing``, which
    takes its markers from here) reads from the cut text the same answer
    segment and the same first sentence as from the whole reply; what it can
    no longer see is text after that sentence (a refusal or hedge written
    after the one sentence the form asks for). A reply without both markers
    is never cut.
``json``
    The first JSON object, found where MARK's parser looks for it (after any
    closed ``<think>…</think>`` block; ```json fences ignored): once the first
    ``{`` opens an object that closes, the reply is cut after its ``}``. A
    reply whose first object is malformed, or that is inside an unclosed
    ``<think>`` block, is never cut.
"""

from __future__ import annotations

import json
import re
import unicodedata

STOP_RULES = ("def_answer", "json")

# DEF's markers (the parser in layers.def_layer.parsing uses these same patterns).
ANSWER = re.compile(r"(?:\banswer\b|答案|回答)\s*\**\s*(?:is\b|would be\b|为|是)?\s*[:]?\s*\**", re.I)
EXPLANATION = re.compile(r"\bexplanation\b\s*\**\s*[:]?|解释\s*[:]?|理由\s*[:]|原因\s*[:]", re.I)
_LEAD = "*:-–— "  # what DEF's first_sentence strips before the sentence
_SPACED_END = ".!?"  # a sentence end when white space follows
_END = "。"  # a sentence end at once

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_FENCE = re.compile(r"```(?:json|JSON)?")


def stop_point(rule: str, text: str) -> int | None:
    """Length of the prefix of ``text`` that holds the first complete answer
    under ``rule``, or None when there is none yet."""
    if rule == "def_answer":
        return _def_answer(text)
    if rule == "json":
        return _json_object(text)
    raise ValueError(f"unknown stop rule {rule!r} (one of {', '.join(STOP_RULES)})")


def _def_answer(raw: str) -> int | None:
    t = unicodedata.normalize("NFKC", raw)
    marker = ANSWER.search(t)
    if marker is None:
        return None
    # The first explanation marker after the answer marker ends the answer segment; the sentence after it
    # completes the answer. (The parser's explanation follows the first marker in the reply; when that one
    # comes earlier, its sentence ends at or before this cut, which is a sentence end too.)
    after = EXPLANATION.search(t, marker.end())
    if after is None:
        return None
    k = after.end()
    while k < len(t) and (t[k] in _LEAD or t[k].isspace()):
        k += 1
    k += 1  # the sentence has at least one character of its own
    while k < len(t):
        c = t[k]
        if c in _END:
            return _raw_length(raw, k + 1)
        if c in _SPACED_END and k + 1 < len(t) and t[k + 1].isspace():
            return _raw_length(raw, k + 1)
        k += 1
    return None


def _raw_length(raw: str, n: int) -> int:
    """The shortest prefix of ``raw`` whose NFKC form has ``n`` characters."""
    if len(unicodedata.normalize("NFKC", raw[:n])) == n:
        return n  # nothing before it changed length (the usual case)
    for p in range(1, len(raw) + 1):
        if len(unicodedata.normalize("NFKC", raw[:p])) >= n:
            return p
    return len(raw)


def _json_object(raw: str) -> int | None:
    body, start = raw, 0
    close = raw.rfind(_THINK_CLOSE)
    if close >= 0:
        body, start = raw[close + len(_THINK_CLOSE):], close + len(_THINK_CLOSE)
    if _THINK_OPEN in body:
        return None  # reasoning not finished: the answer comes after it
    # fences hold no braces: blank them out, keeping positions
    t = _FENCE.sub(lambda m: " " * len(m.group(0)), body)
    first = t.find("{")
    if first < 0:
        return None
    try:
        obj, end = json.JSONDecoder().raw_decode(t, first)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return None
    return start + end if isinstance(obj, dict) else None
