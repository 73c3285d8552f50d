"""The MARK pipeline: stress → type → impact (per respondent and language),
reasoning → vote → explanation (per question). Returns one trace per
respondent-question.

A persona stage that stays invalid after its repairs ends the pipeline for that
respondent (every question gets ``invalid_stage``). An invalid explanation
does not: the answer is the code's weighted vote, and the explanation is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from valuelens.data.survey import Question
from valuelens.layers.mark.data import Respondent
from valuelens.layers.mark.prompts import (DEMO_IDEO, FIELD_NAMES, T, characteristics, json_form, prior_text,
                                           render_options, render_persona, render_stack)
from valuelens.layers.mark.settings import MarkSettings
from valuelens.layers.mark.stages import Job, Outcome, run_stage
from valuelens.layers.mark.theory import POSITIONS, STACKS, Prior, keep_stressors, mbti_prior, weighted_vote
from valuelens.models import CachedModel, GenerateSettings


@dataclass
class Unit:
    """One respondent simulated in one language."""

    r: Respondent
    lang: str
    persona_text: str
    prior: Prior
    stages: dict[str, Outcome] = field(default_factory=dict)

    def failed(self) -> str | None:
        return next((k for k, o in self.stages.items() if not o.valid), None)


def prior_of(persona: Mapping[str, Any]) -> Prior:
    """The demographic MBTI prior; a persona from marginals has an age group instead of an age:
    30-49 and 50+ count as older than 30 (the rule's threshold; a 30-year-old is 1 in 20 of its group)."""
    group = persona.get("age_group")
    older = None if group is None else group != "<=29"
    return mbti_prior(persona.get("age"), persona.get("sex"), older=older)


def _sep(lang: str) -> str:
    return "、" if lang == "zh" else ", "


def _stress_jobs(units: Sequence[Unit]) -> list[Job]:
    jobs = []
    for u in units:
        names = characteristics(u.r.persona, u.lang)
        form = ", ".join(f'"{n}": <0-100>' for n in names)
        prompt = T[u.lang]["stress"].format(persona=u.persona_text, names=_sep(u.lang).join(names), score_form=form)
        jobs.append(Job(prompt, u.lang, {"names": names}))
    return jobs


def _type_job(u: Unit) -> Job:
    st = u.stages["stress"].parsed or {}
    prompt = T[u.lang]["type"].format(persona=u.persona_text, level=st["stress_level"], summary=st["summary"],
                                      prior=prior_text(u.prior.probs, u.lang), prior_type=u.prior.type)
    return Job(prompt, u.lang)


def stressors_text(scores: Mapping[str, float], lang: str) -> str:
    kept = keep_stressors(scores)
    return _sep(lang).join(f"{FIELD_NAMES[f][lang]} ({scores[f]:g})" for f in kept) or "-"


def _impact_job(u: Unit) -> Job:
    st, ty = u.stages["stress"].parsed or {}, u.stages["type"].parsed or {}
    stack = STACKS[ty["mbti"]]
    prompt = T[u.lang]["impact"].format(persona=u.persona_text, level=st["stress_level"], summary=st["summary"],
                                        stressors=stressors_text(st["scores"], u.lang), mbti=ty["mbti"],
                                        stack=render_stack(stack, u.lang), form=json_form(stack)["impacts"])
    return Job(prompt, u.lang, {"stack": list(stack)})


def _reason_job(u: Unit, q: Question) -> Job:
    st, ty, im = (u.stages[k].parsed or {} for k in ("stress", "type", "impact"))
    stack = STACKS[ty["mbti"]]
    prompt = T[u.lang]["reason"].format(
        persona=u.persona_text, mbti=ty["mbti"], level=st["stress_level"], summary=st["summary"],
        impacted_stack=render_stack(stack, u.lang, im["impacts"]), question=q.text[u.lang],
        options=render_options(q.options[u.lang]), form=json_form(stack)["choices"])
    return Job(prompt, u.lang, {"stack": list(stack), "n_options": len(q.labels)})


def _explain_job(u: Unit, q: Question, choices: Mapping[str, Any], vote: Any) -> Job:
    ty = u.stages["type"].parsed or {}
    st = u.stages["stress"].parsed or {}
    votes = "\n".join(T[u.lang]["vote"].format(function=f, weight=vote.weights[f], option=c["option"],
                                               reason=c["reason"] or "-") for f, c in choices.items())
    prompt = T[u.lang]["explain"].format(mbti=ty["mbti"], level=st["stress_level"], question=q.text[u.lang],
                                         votes=votes, answer=vote.answer,
                                         answer_text=q.options[u.lang][vote.answer - 1])
    return Job(prompt, u.lang)


def trace_row_id(lang: str, respondent_id: Any, question_id: str) -> str:
    """``mark_traces.row_id`` (and its ``mark_responses`` row's): the keys, joined (the samples' join key)."""
    return f"mark|{lang}|{respondent_id}|{question_id}"


def _rows_of(owner: Any, plan: Mapping[str, list[Question]]) -> list[tuple[str, str]]:
    """The rows a stage call is for: a persona stage (owner a Unit) every trace of that unit, a question
    stage (owner (unit, question)) its own; each in mark_traces and mark_responses."""
    u, qs = (owner[0], [owner[1]]) if isinstance(owner, tuple) else (owner, [q for q in plan[owner.lang]
                                                                               if owner.r.asks(q.id)])
    ids = [trace_row_id(u.lang, u.r.id, q.id) for q in qs]
    return [(t, rid) for rid in ids for t in ("mark_traces", "mark_responses")]


def _stage(model: CachedModel, name: str, pairs: list[tuple[Any, Job]], s: MarkSettings, gen: GenerateSettings,
           tracker: Any, plan: Mapping[str, list[Question]]) -> list[tuple[Any, Outcome]]:
    if not pairs:
        return []
    outs = run_stage(model, name, [j for _, j in pairs], gen, s.max_retries, tracker,
                     rows=[_rows_of(owner, plan) for owner, _ in pairs])
    return [(owner, o) for (owner, _), o in zip(pairs, outs)]


def run_mark(model: CachedModel, s: MarkSettings, respondents: Sequence[Respondent], questions: Mapping[str, Question],
             languages: Sequence[str], country_names: Mapping[str, Mapping[str, str]], seed: int,
             tracker: Any = None) -> list[dict[str, Any]]:
    """Trace records (JSON-ready), one per respondent × language × question with a real answer."""
    # stop_early: a stage reply ends at its first complete JSON object, the one the stage parser reads
    gen = GenerateSettings(temperature=s.temperature, max_tokens=s.max_tokens, seed=seed,
                           stop_at="json" if s.stop_early else None)
    plan = {lang: [q for q in questions.values() if lang in q.languages()] for lang in languages}
    units = [Unit(r, lang, render_persona(r.persona, DEMO_IDEO, lang, country_names), prior_of(r.persona))
             for lang in languages for r in respondents if any(r.asks(q.id) for q in plan[lang])]
    for u, o in _stage(model, "stress", list(zip(units, _stress_jobs(units))), s, gen, tracker, plan):
        u.stages["stress"] = o
    for name, make in (("type", _type_job), ("impact", _impact_job)):
        alive = [u for u in units if u.failed() is None]
        for u, o in _stage(model, name, [(u, make(u)) for u in alive], s, gen, tracker, plan):
            u.stages[name] = o
    work = [(u, q) for u in units for q in plan[u.lang] if u.r.asks(q.id)]
    per_q: dict[tuple[int, str], dict[str, Any]] = {(id(u), q.id): {} for u, q in work}
    ok = [(u, q) for u, q in work if u.failed() is None]
    for (u, q), o in _stage(model, "reason", [((u, q), _reason_job(u, q)) for u, q in ok], s, gen, tracker, plan):
        rec = per_q[(id(u), q.id)]
        rec["reason"] = o
        if o.valid:
            impacts = (u.stages["impact"].parsed or {})["impacts"]
            stack = STACKS[(u.stages["type"].parsed or {})["mbti"]]
            choices = (o.parsed or {})["choices"]
            rec["vote"] = weighted_vote(stack, {f: c["option"] for f, c in choices.items()}, impacts,
                                        s.weights.as_tuple(), s.negative_factor)
    if s.explain:
        voted = [(u, q, per_q[(id(u), q.id)]) for u, q in ok if "vote" in per_q[(id(u), q.id)]]
        todo = [((u, q), _explain_job(u, q, rec["reason"].parsed["choices"], rec["vote"])) for u, q, rec in voted]
        for (u, q), o in _stage(model, "explain", todo, s, gen, tracker, plan):
            per_q[(id(u), q.id)]["explain"] = o
    return [trace(u, q, per_q[(id(u), q.id)], s) for u, q in work]


def trace(u: Unit, q: Question, rec: Mapping[str, Any], s: MarkSettings) -> dict[str, Any]:
    """The full, JSON-ready record of one simulated answer."""
    stages = {k: o.to_json() for k, o in u.stages.items()}
    for k in ("reason", "explain"):
        if k in rec:
            stages[k] = rec[k].to_json()
    st = u.stages["stress"].parsed
    if st is not None:
        stages["stress"]["stressors"] = keep_stressors(st["scores"])
    ty = u.stages.get("type")
    mbti = ty.parsed["mbti"] if ty is not None and ty.parsed else None
    im = u.stages.get("impact")
    vote = rec.get("vote")
    invalid = u.failed() or (None if "reason" in rec and rec["reason"].valid else "reason")
    answer = vote.answer if vote is not None else None
    ex = rec.get("explain")
    return {
        "method": "mark", "respondent_id": u.r.id, "country": u.r.country, "language": u.lang, "question_id": q.id,
        "inputs": {"persona": u.r.persona, "question": q.text[u.lang], "options": list(q.options[u.lang])},
        "prior": {"probs": u.prior.probs, "type": u.prior.type},
        "stages": stages,
        "mbti": mbti, "stack": list(zip(POSITIONS, STACKS[mbti])) if mbti else None,
        "impacts": im.parsed["impacts"] if im is not None and im.parsed else None,
        "vote": None if vote is None else {
            "base_weights": dict(zip(POSITIONS, s.weights.as_tuple())), "negative_factor": s.negative_factor,
            "weights": vote.weights, "scores": {str(k): v for k, v in vote.scores.items()}},
        "answer": answer, "answer_text": q.options[u.lang][answer - 1] if answer else None,
        "truth": u.r.truth(q.id), "valid": answer is not None, "invalid_stage": invalid,
        "explanation": ex.parsed["explanation"] if ex is not None and ex.parsed else None,
        "calls": sum(len(v["attempts"]) for v in stages.values()),
    }
