"""Respondents for MARK: WVS-7 microdata, persona fields, seeded sampling.

Answers are option numbers 1..k in the codebook's code order (after answer
adjustments). Persona fields are read from their raw WVS-7 columns when
present: education ``Q275``, marital status ``Q273``, employment ``Q279``,
income step ``Q288``, urban/rural ``H_URBRURAL``, region ``N_REGION_ISO``,
ideology (left–right) ``Q240``; negative codes mean missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuelens.data.survey import Question, load_questionnaire, read_json
from valuelens.data.wvs import distributions, load_codebook, load_microdata
from valuelens.errors import ValueLensError
from valuelens.layers.mark.settings import AGE_GROUPS, SEXES, MarkSettings

PERSONA_VARS = {"education": "Q275", "marital_status": "Q273", "employment": "Q279", "income": "Q288",
                "urban_rural": "H_URBRURAL", "region": "N_REGION_ISO", "ideology": "Q240"}
NUMERIC = {"income", "ideology"}  # shown as their step on the 1–10 scale
_REGION_PREFIX = re.compile(r"^[A-Z]{2}-[A-Z0-9]+\s+")


@dataclass
class Respondent:
    id: int  # row number in the microdata file (0-based, header excluded); marginals: a running number
    country: str
    weight: float
    persona: dict[str, Any]  # country, sex, age, then PERSONA_VARS fields (None = missing)
    answers: dict[str, int] = field(default_factory=dict)  # question id -> option number 1..k
    ask: frozenset[str] | None = None  # marginals: the questions to simulate (no real answers); None = answered ones

    def asks(self, qid: str) -> bool:
        return qid in self.answers if self.ask is None else qid in self.ask

    def truth(self, qid: str) -> int | None:
        return self.answers.get(qid)


@dataclass
class Sample:
    questions: dict[str, Question]  # the simulated questions
    context: dict[str, Question]  # context-only questions (prior-opinion baseline)
    respondents: list[Respondent]
    global_human: dict[tuple[str, str], tuple[float, ...]]  # (question, country) -> weighted shares
    aggregate: bool = False  # personas from marginals: no respondent answers (accuracy, κ not computable)
    notes: list[str] = field(default_factory=list)


def _py(v: Any) -> Any:
    """A plain Python value (JSON-ready); NaN -> None."""
    v = v.item() if isinstance(v, np.generic) else v
    return None if v is None or (isinstance(v, float) and v != v) else v


def merge_texts(codebook: dict[str, Question], texts_path: str | None) -> dict[str, Question]:
    """Add the languages of a questionnaire JSON to codebook questions with the same id."""
    if not texts_path:
        return codebook
    out = dict(codebook)
    for t in load_questionnaire(texts_path):
        q = codebook.get(t.id)
        if q is None:
            continue
        if len(t.labels) != len(q.labels):
            raise ValueLensError(f"{texts_path}: {t.id} has {len(t.labels)} options, the codebook {len(q.labels)}")
        out[t.id] = Question(q.id, {**q.text, **t.text}, {**q.options, **t.options}, q.dimension, q.ordinal,
                             q.source, q.extra)
    return out


def _persona_columns(path: Path, raw_codebook: dict[str, Any], n_rows: int) -> pd.DataFrame:
    with path.open(encoding="utf-8") as f:
        head = f.readline(1 << 20)
    sep = ";" if head.count(";") > head.count(",") else ","
    cols = [c.strip().strip('"') for c in head.strip().split(sep)]
    use = [v for v in PERSONA_VARS.values() if v in cols]
    raw = pd.read_csv(path, sep=sep, usecols=use, keep_default_na=False, na_values=[""], low_memory=False) \
        if use else pd.DataFrame(index=range(n_rows))
    out = pd.DataFrame(index=raw.index)
    for name, var in PERSONA_VARS.items():
        if var not in raw:
            out[name] = None
            continue
        codes = pd.to_numeric(raw[var], errors="coerce")
        codes = codes.where(codes >= 0)
        if name in NUMERIC:
            out[name] = codes.map(lambda c: None if pd.isna(c) else int(c))
            continue
        choices = (raw_codebook.get(var) or {}).get("choices") or {}
        labels = {float(k): str(v) for k, v in choices.items() if str(k).lstrip("-").isdigit()}
        lab = codes.map(lambda c: None if pd.isna(c) else labels.get(c, str(int(c))))
        out[name] = lab.map(lambda s: None if s is None else _REGION_PREFIX.sub("", s)) if name == "region" else lab
    return out


def load_sample(s: MarkSettings, countries: list[str], seed: int) -> Sample:
    """Load the microdata, keep the audit's countries, sample respondents per country
    (seeded, uniformly among those who answered at least one simulated question)."""
    d = s.data
    if d.aggregate:
        return _aggregate_sample(s, countries, seed)
    if d.kind == "synthetic":  # the built-in demo respondents and questionnaire (synthetic — not human data)
        from valuelens.data.synthetic import paths

        csv, cb = paths()
        d = d.model_copy(update={"path": csv, "codebook": cb, "texts": "builtin"})
    assert d.path is not None and d.codebook is not None  # MarkData's validator requires both (or kind synthetic)
    codebook = merge_texts(load_codebook(d.codebook, d.metadata, d.adjustments), d.texts)
    targets = list(s.questions)
    context = [q for q in s.opinion_questions if q not in targets]
    for q in targets + context:
        if q not in codebook:
            raise ValueLensError(f"layers.mark: question {q} is not a usable multiple-choice question of {d.codebook}")
    df = load_microdata(d.path, codebook, targets + context)
    persona = _persona_columns(Path(d.path), read_json(Path(d.codebook)), len(df))
    found = sorted(df["country"].unique())
    missing = [c for c in countries if c not in found]
    if missing:
        raise ValueLensError(f"layers.mark: no respondents for {', '.join(missing)} in {d.path} "
                             f"(countries there: {', '.join(found[:20])}); set the audit's countries")
    pos = {q: df[q].map({float(c): i + 1 for i, c in enumerate(codebook[q].extra["codes"])})
           for q in targets + context}
    rng = np.random.default_rng(seed)
    respondents: list[Respondent] = []
    for country in countries:
        pool = np.flatnonzero((df["country"] == country).to_numpy() &
                              np.column_stack([pos[q].notna().to_numpy() for q in targets]).any(axis=1))
        if not len(pool):
            raise ValueLensError(f"layers.mark: no respondent in {country} answered any of {', '.join(targets)}")
        pick = np.sort(rng.choice(pool, size=min(s.respondents_per_country, len(pool)), replace=False))
        for i in pick:
            age = df["age"].iloc[i]
            p = {"country": country, "sex": df["sex"].iloc[i] if isinstance(df["sex"].iloc[i], str) else None,
                 "age": None if pd.isna(age) else int(age),
                 **{k: _py(v) for k, v in persona.iloc[i].items()}}
            answers = {q: int(pos[q].iloc[i]) for q in targets + context if pd.notna(pos[q].iloc[i])}
            respondents.append(Respondent(int(df.index[i]), country, float(df["weight"].iloc[i]), p, answers))
    in_scope = df[df["country"].isin(countries)][["country", "weight", *targets]]
    human = {(h.question_id, h.country): h.probs for h in distributions(in_scope, codebook, ("country",), True)}
    return Sample({q: codebook[q] for q in targets}, {q: codebook[q] for q in context}, respondents, human)


def _find(questions: dict[str, Question], name: str) -> Question | None:
    return questions.get(name) or next((q for q in questions.values() if q.extra.get("wvs") == name), None)


def _draw(r: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(r.choice(len(keys), p=w / w.sum()))]


def marginal_personas(s: MarkSettings, country: str, seed: int) -> list[dict[str, Any]]:
    """``respondents_per_country`` personas, each field drawn independently from the country's
    marginals (else ``default``, else sex and age group uniform), seeded per (seed, country, index)."""
    import hashlib

    fields: dict[str, dict[str, float]] = {"sex": {x: 1.0 for x in SEXES}, "age_group": {x: 1.0 for x in AGE_GROUPS}}
    fields.update(s.marginals.get("default", {}))
    fields.update(s.marginals.get(country, {}))
    out = []
    for i in range(s.respondents_per_country):
        h = hashlib.sha256("\x1f".join(map(str, (seed, "mark-persona", country, i))).encode()).digest()
        r = np.random.default_rng(int.from_bytes(h[:8], "big") >> 1)
        drawn = {name: _draw(r, w) for name, w in fields.items()}
        out.append({"country": country, "sex": drawn.pop("sex", None), "age": None,
                    **{k: drawn.pop(k, None) for k in PERSONA_VARS}, "age_group": drawn.pop("age_group", None)})
    return out


def _aggregate_sample(s: MarkSettings, countries: list[str], seed: int) -> Sample:
    """Country-level distributions (cao2025, GlobalOpinionQA): personas from marginals, every question
    with a human distribution for the country asked, no real answers."""
    from valuelens.data.sources import load_survey

    d = s.data
    survey = load_survey(d.kind, d.path, d.path_zh)
    pool = merge_texts(dict(survey.questions), d.texts)
    questions: dict[str, Question] = {}
    for name in s.questions:
        q = _find(pool, name)
        if q is None:
            raise ValueLensError(f"layers.mark: question {name} is not in {d.path}")
        questions[q.id] = q
    human = {(q.id, c): dist.probs for q in questions.values() for c in countries
             if (dist := survey.lookup(q.id, c)) is not None}
    notes = [*survey.notes, f"{d.kind}: country distributions only, no respondents: personas drawn from marginals; "
             "accuracy, kappa and the paired test against MARK are not computable (no real answers); 1-JSD and EMD "
             "against each country's distribution"]
    respondents: list[Respondent] = []
    for country in countries:
        ask = frozenset(q.id for q in questions.values() if (q.id, country) in human)
        if not ask:
            have = sorted(survey.countries())
            raise ValueLensError(f"layers.mark: {d.path} has no distribution for {country} on any of "
                                 f"{', '.join(s.questions)} (countries there: {', '.join(have[:20])}); set the "
                                 "audit's countries")
        if len(ask) < len(questions):
            notes.append(f"{country}: no human distribution for {sorted(set(questions) - ask)}: not asked")
        for p in marginal_personas(s, country, seed):
            respondents.append(Respondent(len(respondents), country, 1.0, p, {}, ask))
    return Sample(questions, {}, respondents, human, aggregate=True, notes=notes)
