"""The baselines: one generate call per respondent-question, "Answer: <n>" parsed.

- ``demo_ideo``: demographics + political ideology (the persona MARK sees);
- ``demo_ideo_opinion``: the same + the respondent's real answers to the other
  questions (simulated and context-only ones, at most ``max_opinions``);
- ``worldvaluesbench``: Zhao et al. (2024) style persona — country, sex, age,
  region, urban/rural, education.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from valuelens.data.survey import Question
from valuelens.layers.mark.data import Respondent
from valuelens.layers.mark.prompts import METHOD_FIELDS, T, render_options, render_persona
from valuelens.layers.mark.settings import MarkSettings
from valuelens.layers.mark.stages import strip_think
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message
from valuelens.models.requests import ResponseFormat

_ANSWER = re.compile(r"(?:answer|答案)\s*(?:is)?\s*[:：]?\s*[(（]?\s*(\d+)", re.I)
_LEADING = re.compile(r"^[(（]?(\d+)(?:\.(?!\d)|[)）:：、,，]|\s|$)")


def parse_answer(text: str, n_options: int) -> int | None:
    """The first "Answer: <n>" (or "答案：<n>") with 1 <= n <= n_options; failing
    that, an option number that opens the reply ("4. Not very happy")."""
    body = strip_think(text)
    for m in _ANSWER.finditer(body):
        n = int(m.group(1))
        if 1 <= n <= n_options:
            return n
    lead = _LEADING.match(body)
    return int(lead.group(1)) if lead and 1 <= int(lead.group(1)) <= n_options else None


def answer_format(n_options: int) -> ResponseFormat:
    """The reply the baseline prompt asks for, as a regex: "Answer: <n>" with 1 <= n <= n_options
    (in both languages: the Chinese prompt asks for the same form)."""
    return ResponseFormat.regex("Answer: (?:" + "|".join(str(i) for i in range(1, n_options + 1)) + ")",
                                name="mark_baseline")


def opinions(r: Respondent, q: Question, others: Sequence[Question], lang: str, limit: int) -> str:
    lines = [T[lang]["opinion"].format(question=o.text[lang], answer=o.options[lang][r.answers[o.id] - 1])
             for o in others if o.id != q.id and o.id in r.answers and lang in o.languages()][:limit]
    return T[lang]["opinions"].format(lines="\n".join(lines)) if lines else ""


def prompt(method: str, r: Respondent, q: Question, lang: str, others: Sequence[Question], limit: int,
           country_names: Mapping[str, Mapping[str, str]]) -> str:
    ops = opinions(r, q, others, lang, limit) if method == "demo_ideo_opinion" else ""
    return T[lang]["baseline"].format(persona=render_persona(r.persona, METHOD_FIELDS[method], lang, country_names),
                                      opinions=ops, question=q.text[lang], options=render_options(q.options[lang]))


def run_baselines(model: CachedModel, s: MarkSettings, respondents: Sequence[Respondent],
                  questions: Mapping[str, Question], context: Mapping[str, Question], languages: Sequence[str],
                  country_names: Mapping[str, Mapping[str, str]], seed: int,
                  tracker: Any = None) -> list[dict[str, Any]]:
    """One record per method × language × respondent × question with a real answer."""
    gen = GenerateSettings(temperature=s.temperature, max_tokens=s.baseline_max_tokens, seed=seed)
    others = [*questions.values(), *context.values()]
    jobs = [(m, lang, r, q) for m in s.baselines for lang in languages for r in respondents
            for q in questions.values() if lang in q.languages() and r.asks(q.id)]
    texts = [prompt(m, r, q, lang, others, s.max_opinions, country_names) for m, lang, r, q in jobs]
    progress = tracker.track(f"{model.name}: mark baselines", len(jobs)) if tracker and jobs else None
    reqs = [GenerateRequest((Message("user", t),), gen, response_format=answer_format(len(q.labels)))
            for t, (_, _, _, q) in zip(texts, jobs)]
    tags = [("mark_responses", f"{m}|{lang}|{r.id}|{q.id}", "") for m, lang, r, q in jobs]
    replies = model.generate(reqs, progress, tags=tags) if jobs else []
    out = []
    for (m, lang, r, q), text, reply in zip(jobs, texts, replies):
        raw = reply.texts[0]
        answer = parse_answer(raw, len(q.labels))
        out.append({"method": m, "respondent_id": r.id, "country": r.country, "language": lang, "question_id": q.id,
                    "prompt": text, "reply": raw, "answer": answer, "truth": r.truth(q.id),
                    "valid": answer is not None})
    return out
