"""Structured stages: JSON extraction, pydantic schemas, bounded repair.

A stage sends one request per job (batched through the cache), parses the
reply (``<think>…</think>`` blocks and ```json fences removed, first JSON
object taken), validates it with the stage's pydantic schema and its check,
and on failure sends a repair request (the conversation plus the reply and the
validation error) — at most ``max_retries`` times; then the job is marked invalid.

Constrained generation: each request carries the JSON schema of its stage's
reply (:func:`response_format`: the exact keys the job expects — the
persona's characteristics, the type's function stack, options 1..k — enums
for levels, types and impacts, integer scores, and a length cap on every
free-text field so a reply fits in ``max_tokens``). A backend that honours it
(hf with llguidance, vllm, openai servers with json_schema) can only write
such JSON; the parser and checks below stay the judge of validity, so a reply
cut by ``max_tokens`` or from a backend that ignores the schema is still
caught, repaired or marked invalid. ``Outcome.constrained`` records which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from valuelens.layers.mark.prompts import T
from valuelens.layers.mark.theory import TYPES
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message
from valuelens.models.requests import ResponseFormat

_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"```(?:json|JSON)?")
_LEVELS = {"低": "low", "中": "medium", "中等": "medium", "高": "high"}
_IMPACTS = {"正面": "positive", "负面": "negative", "积极": "positive", "消极": "negative"}


class StageError(ValueError):
    """A reply that cannot be used; the message goes into the repair prompt."""


def strip_think(text: str) -> str:
    """Drop reasoning blocks: closed ``<think>…</think>``, a stray closing tag
    (text before it), an unclosed opening tag (text after it)."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in the reply (after removing think blocks and fences)."""
    t = _FENCE.sub("", strip_think(text))
    dec, first_error = json.JSONDecoder(), None
    for n, m in enumerate(re.finditer(r"\{", t)):
        if n >= 50:
            break
        try:
            obj, _ = dec.raw_decode(t, m.start())
        except json.JSONDecodeError as e:
            first_error = first_error or e
            continue
        except (RecursionError, ValueError):  # nested too deeply; an integer over Python's digit limit
            raise StageError("invalid JSON: nested too deeply or a number too long") from None
        if isinstance(obj, dict):
            return obj
    if first_error is None:
        raise StageError("no JSON object found in the reply")
    raise StageError(f"invalid JSON: {first_error.msg} (char {first_error.pos})")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StressOut(_Out):
    scores: dict[str, float]
    stress_level: Literal["low", "medium", "high"]
    summary: str = Field(min_length=1)

    @field_validator("stress_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        return _LEVELS.get(str(v).strip(), str(v).strip().lower()) if isinstance(v, str) else v


class TypeOut(_Out):
    mbti: str
    reason: str = ""

    @field_validator("mbti")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.strip().upper()
        if v not in TYPES:
            raise ValueError(f"{v!r} is not one of the 16 MBTI types")
        return v


class ImpactOut(_Out):
    impacts: dict[str, str]
    reason: str = ""


class Choice(_Out):
    function: str
    option: int
    reason: str = ""


class ChoicesOut(_Out):
    choices: list[Choice]


class ExplainOut(_Out):
    explanation: str = Field(min_length=1)


def _by_name(names: Sequence[str], got: dict[str, Any], what: str) -> dict[str, Any]:
    """Match reply keys to expected names case-insensitively; all must be present."""
    low = {k.strip().lower(): v for k, v in got.items()}
    missing = [n for n in names if n.lower() not in low]
    if missing:
        raise StageError(f"{what} must include {', '.join(names)}; missing {', '.join(missing)}")
    return {n: low[n.lower()] for n in names}


def check_stress(o: StressOut, ctx: dict[str, Any]) -> dict[str, Any]:
    names: dict[str, str] = ctx["names"]  # display name -> field
    scores = _by_name(list(names), o.scores, "scores")
    bad = [k for k, s in scores.items() if not 0 <= s <= 100]
    if bad:
        raise StageError(f"scores must lie in 0..100 ({', '.join(bad)})")
    return {"scores": {names[k]: float(s) for k, s in scores.items()}, "stress_level": o.stress_level,
            "summary": o.summary.strip()}


def check_type(o: TypeOut, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"mbti": o.mbti, "reason": o.reason.strip()}


def check_impact(o: ImpactOut, ctx: dict[str, Any]) -> dict[str, Any]:
    got = _by_name(ctx["stack"], o.impacts, "impacts")
    out = {}
    for f, v in got.items():
        v = _IMPACTS.get(str(v).strip(), str(v).strip().lower())
        if v not in ("positive", "negative"):
            raise StageError(f"impact of {f} must be 'positive' or 'negative', got {v!r}")
        out[f] = v
    return {"impacts": out, "reason": o.reason.strip()}


def check_choices(o: ChoicesOut, ctx: dict[str, Any]) -> dict[str, Any]:
    k, stack = ctx["n_options"], ctx["stack"]
    got = {}
    for c in o.choices:
        name = next((f for f in stack if f.lower() == c.function.strip().lower()), None)
        if name is None:
            raise StageError(f"unknown function {c.function!r}; expected {', '.join(stack)}")
        if name in got:
            raise StageError(f"function {name} appears twice")
        if not 1 <= c.option <= k:
            raise StageError(f"option of {name} must be a number from 1 to {k}, got {c.option}")
        got[name] = {"option": c.option, "reason": c.reason.strip()}
    missing = [f for f in stack if f not in got]
    if missing:
        raise StageError(f"choices must include every function; missing {', '.join(missing)}")
    return {"choices": {f: got[f] for f in stack}}


def check_explain(o: ExplainOut, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"explanation": o.explanation.strip()}


SCHEMAS: dict[str, tuple[type[_Out], Callable[[Any, dict[str, Any]], dict[str, Any]]]] = {
    "stress": (StressOut, check_stress), "type": (TypeOut, check_type), "impact": (ImpactOut, check_impact),
    "reason": (ChoicesOut, check_choices), "explain": (ExplainOut, check_explain),
}


# Length caps (characters) of the free-text fields in the constrained schemas, at most; :func:`text_limits`
# lowers them so that the whole reply fits in the stage's ``max_tokens``.
TEXT_LIMITS = {"summary": 160, "reason": 160, "choice": 80, "explanation": 240}
# Tokens per character assumed for the budget (SmolLM2-135M measured: English prose 0.17, Chinese 1.73, JSON
# punctuation and keys ~0.4): ASCII 0.5, other characters 2 — on the safe side for most tokenizers.
_RATE = {"ascii": 0.5, "other": 2.0}
_ASCII_TEXT = "^[ -~]*$"  # English replies' free text: printable ASCII (no stray scripts or control characters)


def _text(limit: int, ascii_only: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": limit}
    if ascii_only:
        d["pattern"] = _ASCII_TEXT
    return d


def _tokens(text: str) -> float:
    return sum(_RATE["ascii"] if ord(c) < 128 else _RATE["other"] for c in text)


def text_limits(stage: str, ctx: dict[str, Any], lang: str, max_tokens: int) -> dict[str, int]:
    """Caps of the free-text fields such that the reply's fixed part (keys, enums, numbers at their longest)
    plus every free-text field at its cap stays within ``max_tokens`` by the rates above (a reply in
    ``lang``; at least 8 characters each, at most :data:`TEXT_LIMITS`)."""
    skeleton = json.dumps(_skeleton(reply_schema(stage, ctx, {k: 0 for k in TEXT_LIMITS})), ensure_ascii=False,
                          separators=(",", ":"))
    fields = _free_fields(stage, ctx)
    budget = max_tokens - _tokens(skeleton) - 8
    per_char = _RATE["other"] if lang == "zh" else _RATE["ascii"]
    cap = int(budget / max(1, fields) / per_char)
    return {k: max(8, min(v, cap)) for k, v in TEXT_LIMITS.items()}


def _free_fields(stage: str, ctx: dict[str, Any]) -> int:
    return len(ctx["stack"]) if stage == "reason" else 1


def _skeleton(schema: dict[str, Any]) -> Any:
    """The longest instance of ``schema``'s fixed parts (strings empty)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(str(v)))
    t = schema.get("type")
    if t == "object":
        return {k: _skeleton(v) for k, v in schema["properties"].items()}
    if t == "array":
        return [_skeleton(v) for v in schema.get("prefixItems", [])]
    if t == "integer":
        return schema.get("maximum", 100)
    return ""


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def reply_schema(stage: str, ctx: dict[str, Any], limits: dict[str, int] | None = None,
                 ascii_text: bool = False) -> dict[str, Any]:
    """The JSON schema of a valid reply of ``stage`` for a job with ``ctx`` (the same
    keys and ranges the checks demand; free-text fields capped by ``limits``, and
    printable ASCII only with ``ascii_text``)."""
    lim = {**TEXT_LIMITS, **(limits or {})}

    def text(key: str) -> dict[str, Any]:
        return _text(lim[key], ascii_text)

    if stage == "stress":
        scores = {n: {"type": "integer", "minimum": 0, "maximum": 100} for n in ctx["names"]}
        return _object({"scores": _object(scores), "stress_level": {"enum": ["low", "medium", "high"]},
                        "summary": text("summary")})
    if stage == "type":
        return _object({"mbti": {"enum": list(TYPES)}, "reason": text("reason")})
    if stage == "impact":
        return _object({"impacts": _object({f: {"enum": ["positive", "negative"]} for f in ctx["stack"]}),
                        "reason": text("reason")})
    if stage == "reason":
        k, stack = int(ctx["n_options"]), list(ctx["stack"])
        items = [_object({"function": {"const": f}, "option": {"type": "integer", "minimum": 1, "maximum": k},
                          "reason": text("choice")}) for f in stack]
        return _object({"choices": {"type": "array", "prefixItems": items, "items": False,
                                    "minItems": len(stack), "maxItems": len(stack)}})
    if stage == "explain":
        return _object({"explanation": text("explanation")})
    raise KeyError(stage)


def response_format(stage: str, ctx: dict[str, Any], limits: dict[str, int] | None = None, *,
                    lang: str = "zh", max_tokens: int | None = None) -> ResponseFormat:
    """:func:`reply_schema` as a request's response format (named ``mark_<stage>``): with
    ``max_tokens``, text caps from :func:`text_limits` (``limits`` lowers them further);
    English (``lang`` "en") free text in printable ASCII."""
    lim = dict(limits or {})
    if max_tokens is not None:
        lim = {k: min(v, lim.get(k, v)) for k, v in text_limits(stage, ctx, lang, max_tokens).items()}
    return ResponseFormat.json_schema(reply_schema(stage, ctx, lim, ascii_text=lang == "en"), name=f"mark_{stage}")


def parse_reply(stage: str, text: str, ctx: dict[str, Any]) -> dict[str, Any]:
    schema, check = SCHEMAS[stage]
    obj = extract_json(text)
    try:
        out = schema.model_validate(obj)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(p) for p in er['loc']) or 'reply'}: {er['msg']}" for er in e.errors()[:3])
        raise StageError(errs) from None
    return check(out, ctx)


@dataclass
class Job:
    prompt: str
    lang: str
    ctx: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """One job's stage record: the prompt, every attempt, the parsed result."""

    prompt: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    parsed: dict[str, Any] | None = None
    failure: str = ""  # the backend could not answer (not repaired: the same request would fail again)
    constrained: bool = False  # the backend held the replies to the stage's schema

    @property
    def valid(self) -> bool:
        return self.parsed is not None

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "attempts": self.attempts, "parsed": self.parsed, "valid": self.valid, "failure": self.failure,
                "constrained": self.constrained}


def run_stage(model: CachedModel, stage: str, jobs: Sequence[Job], settings: GenerateSettings, max_retries: int,
              tracker: Any = None, constrained: bool = True,
              rows: Sequence[Sequence[tuple[str, str]]] | None = None) -> list[Outcome]:
    """All jobs of one stage, batched; failed ones retried with a repair turn.
    ``constrained``: send each job's :func:`response_format` (False: prompt-and-parse only).
    ``rows``: per job, the (table, row_id) rows its calls are for (the samples log; part STAGE or
    STAGE#repairN)."""
    outcomes = [Outcome(j.prompt) for j in jobs]
    convo = [[Message("user", j.prompt)] for j in jobs]
    formats = [response_format(stage, j.ctx, lang=j.lang, max_tokens=settings.max_tokens) if constrained else None
               for j in jobs]
    pending = list(range(len(jobs)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        label = f"{model.name}: mark {stage}" + (f" (repair {attempt})" if attempt else "")
        progress = tracker.track(label, len(pending)) if tracker else None
        reqs = [GenerateRequest(tuple(convo[i]), settings, response_format=formats[i]) for i in pending]
        for i, r in zip(pending, reqs):
            outcomes[i].constrained = model.honours(r)
        part = stage + (f"#repair{attempt}" if attempt else "")
        tags = None if rows is None else [[(t, rid, part) for t, rid in rows[i]] for i in pending]
        replies = model.generate(reqs, progress, tags=tags)
        still = []
        for i, reply in zip(pending, replies):
            text = reply.texts[0]
            failure = getattr(text, "failure", None)  # a FailedText (models.requests): the backend gave no reply
            if failure:
                outcomes[i].failure = failure
                outcomes[i].attempts.append({"raw": "", "error": f"the backend could not answer: {failure}"})
                continue
            try:
                outcomes[i].parsed = parse_reply(stage, text, jobs[i].ctx)
                outcomes[i].attempts.append({"raw": text, "error": None})
            except StageError as e:
                outcomes[i].attempts.append({"raw": text, "error": str(e)})
                convo[i] += [Message("assistant", strip_think(text)[:1000] or "(empty)"),
                             Message("user", T[jobs[i].lang]["repair"].format(error=e))]
                still.append(i)
        pending = still
    return outcomes
