"""DEF generation in waves: question k for every session in one batch call.

A session is one pass of one participant in one language. Its prompt for
question k depends on its valid answers to questions < k (the memory), so
wave k is built only after wave k − 1 is parsed. Within a wave all sessions
go to the model together (cached, batched by the backend), and invalid
answers are retried together: retry r takes sample index r of the same
request (greedy participants: sample r − 1 of the request with
``retry_temperature``, since a greedy retry would repeat itself). Same seeds →
same texts, so a resumed run rebuilds exactly the same memories from the cache.

Every request carries the reply form the prompt asks for as a regex
(:func:`answer_format`: "Answer: <label> Explanation: <one line>", the label
one of the shown options' numbers or letters; Chinese "答案：… 解释：…"); a
backend that honours it can write nothing else, and :func:`parse_answer`
still judges every reply (refusals and hedges inside the explanation count).
With ``stop_early`` (default) each request carries the stop rule
``def_answer``: the reply ends after the explanation's first sentence, the
one the parser keeps (``models.stopping``), instead of running on to
``max_tokens``; a refusal or hedge written after that sentence is then not
generated, so not seen.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace
from typing import Any

from valuelens.layers.def_layer.data import Inputs, option_codes
from valuelens.layers.def_layer.participants import Participant, rng, session_seed
from valuelens.layers.def_layer.parsing import Parsed, parse_answer
from valuelens.layers.def_layer.prompts import Layout, Turn, layout, messages
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings
from valuelens.models.requests import ResponseFormat
from valuelens.progress import Tracker


@dataclass
class Session:
    language: str
    participant: Participant
    pass_index: int
    seed: int
    country_name: str  # in the session's language
    memory: list[Turn] = field(default_factory=list)


@dataclass
class Ask:
    session: Session
    question_id: str
    perm: list[int]  # shown position -> original option index
    shown: list[str]
    remembered: list[Turn]
    base: GenerateRequest
    layout: Layout
    texts: list[str] = field(default_factory=list)
    parsed: list[Parsed] = field(default_factory=list)
    used: list[tuple[GenerateSettings, int]] = field(default_factory=list)  # settings, sample index per attempt


# The explanation's length cap (characters): parse_answer keeps its first sentence, at most 240 characters.
EXPLANATION_LIMIT = 240
_FORM = {"en": ("Answer: ", " Explanation: "), "zh": ("答案：", " 解释：")}


def answer_format(n_options: int, lang: str, letters: bool = False, limit: int = EXPLANATION_LIMIT) -> ResponseFormat:
    """The DEF reply form as a regex: the marker, one shown label (1..k or A..), the explanation marker and
    one line of at most ``limit`` characters (the templates' wording, per language)."""
    labels = string.ascii_uppercase[:n_options] if letters else [str(i) for i in range(1, n_options + 1)]
    answer, explanation = _FORM.get(lang, _FORM["en"])
    return ResponseFormat.regex(f"{answer}(?:{'|'.join(labels)}){explanation}[^\\n]{{1,{int(limit)}}}",
                                name="def_answer")


def make_sessions(participants: list[Participant], languages: list[str], passes: int, seed: int,
                  country_names: dict[str, dict[str, str]]) -> list[Session]:
    return [Session(lang, p, r, session_seed(seed, p.pid, r), country_names.get(p.country, {}).get(lang, p.country))
            for lang in languages for p in participants for r in range(passes)]


def _remembered(s: Session, k: int, seed: int) -> list[Turn]:
    m = s.participant.memory_size
    if len(s.memory) <= m:
        return list(s.memory)
    pick = sorted(rng(seed, "def-memory", s.participant.pid, s.pass_index, s.language, k)
                  .choice(len(s.memory), size=m, replace=False).tolist())
    return [s.memory[i] for i in pick]


def _ask(s: Session, q, k: int, st: DEFSettings, seed: int) -> Ask:
    n = len(q.labels)
    shuffled = (rng(seed, "def-shuffle", s.participant.pid, s.pass_index, q.id).permutation(n).tolist()
                if st.shuffle_options else None)
    lay = layout(q, s.language, shuffled)  # numeric scales keep their order (see prompts)
    perm = list(lay.perm)
    shown = [q.options[s.language][i] for i in perm]
    memory = _remembered(s, k, seed)
    p = s.participant
    gs = GenerateSettings(temperature=p.temperature, top_p=p.top_p, num_beams=p.num_beams,
                          max_tokens=st.max_tokens, seed=s.seed, stop_at="def_answer" if st.stop_early else None)
    msgs = messages(p, s.country_name, s.language, memory, q.text[s.language], shown, lay)
    fmt = answer_format(len(shown), s.language, lay.letters)
    return Ask(s, q.id, perm, shown, memory, GenerateRequest(msgs, gs, response_format=fmt), lay)


def _attempt(a: Ask, r: int, st: DEFSettings) -> tuple[GenerateRequest, int]:
    """Request and sample index of attempt ``r`` (0 = first)."""
    if r == 0:
        return a.base, 0
    if a.base.settings.temperature == 0:
        gs = replace(a.base.settings, temperature=st.retry_temperature)
        return replace(a.base, settings=gs, n=r), r - 1
    return replace(a.base, n=r + 1), r


def answer_row_id(a: Ask, attempt: int) -> str:
    """``def_answers.row_id``: the row's keys, joined (the samples table's join key)."""
    s = a.session
    return f"{s.language}|{s.participant.pid}|{s.pass_index}|{a.question_id}|{attempt}"


def run_waves(model: CachedModel, inputs: Inputs, sessions: list[Session], st: DEFSettings, seed: int,
              tracker: Tracker) -> list[dict[str, Any]]:
    """All answers (one row per attempt) for every session and question."""
    per_lang = {lang: [q for q in inputs.questions if lang in q.languages()] for lang in {s.language for s in sessions}}
    advance = tracker.track(f"{model.name}: DEF answers", sum(len(per_lang[s.language]) for s in sessions))
    rows: list[dict[str, Any]] = []
    for k in range(max((len(v) for v in per_lang.values()), default=0)):
        asks = [_ask(s, per_lang[s.language][k], k, st, seed) for s in sessions if k < len(per_lang[s.language])]
        pending, r = list(range(len(asks))), 0
        while pending:
            reqs = [_attempt(asks[i], r, st) for i in pending]
            out = model.generate([req for req, _ in reqs], tags=[("def_answers", answer_row_id(asks[i], r), "")
                                                                 for i in pending],
                                 samples=[j for _, j in reqs])  # the earlier samples are earlier attempts' rows
            retry = []
            for i, (req, j), g in zip(pending, reqs, out):
                a = asks[i]
                a.texts.append(g.texts[j])
                a.parsed.append(parse_answer(g.texts[j], a.shown, a.layout.letters, a.layout.values))
                a.used.append((req.settings, j))
                if not a.parsed[-1].valid and r < st.retries and not getattr(g.texts[j], "failure", None):
                    retry.append(i)
            pending, r = retry, r + 1
        advance(len(asks))
        questions = {q.id: q for q in inputs.questions}
        for a in asks:
            q = questions[a.question_id]
            rows += _rows(a, q, inputs)
            last = a.parsed[-1]
            if last.valid:
                lang = a.session.language
                idx = a.perm[last.position]  # type: ignore[index]
                a.session.memory.append(Turn(q.id, q.text[lang], q.options[lang][idx], last.explanation))
    return rows


def _rows(a: Ask, q, inputs: Inputs) -> list[dict[str, Any]]:
    s, p = a.session, a.session.participant
    codes = option_codes(q)
    out = []
    for r, (text, parsed, (gs, j)) in enumerate(zip(a.texts, a.parsed, a.used)):
        idx = a.perm[parsed.position] if parsed.valid and parsed.position is not None else None
        out.append({
            "row_id": answer_row_id(a, r), "language": s.language, "country": p.country, "participant": p.pid, "pass": s.pass_index,
            "question_id": q.id, "dimension": inputs.dimension.get(q.id, ""), "factual": q.id in inputs.factual,
            "attempt": r, "final": r == len(a.texts) - 1, "status": parsed.status, "valid": parsed.valid,
            "option": q.labels[idx] if idx is not None else None, "option_index": idx,
            "code": codes[idx] if idx is not None else None,
            "option_text": q.options[s.language][idx] if idx is not None else None,
            "shown_number": parsed.position + 1 if parsed.valid and parsed.position is not None else None,
            "shown_label": a.layout.label(parsed.position) if parsed.valid and parsed.position is not None else None,
            "labels": a.layout.kind, "shuffled": a.layout.shuffled,
            "shown_order": ",".join(q.labels[i] for i in a.perm),
            "memory_size": p.memory_size, "memory_used": len(a.remembered),
            "memory_ids": ",".join(t.question_id for t in a.remembered),
            "num_beams": gs.num_beams, "temperature": gs.temperature, "top_p": gs.top_p,
            "max_tokens": gs.max_tokens, "seed": gs.seed, "sample_index": j,
            "reply": text, "explanation": parsed.explanation,
            "failure": getattr(text, "failure", ""),  # the backend could not answer (the attempt is invalid)
        })
    return out
