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
from valuelens.layers.mark.settings import MarkSettings

PERSONA_VARS = {"education": "Q275", "marital_status": "Q273", "employment": "Q279", "income": "Q288",
                "urban_rural": "H_URBRURAL", "region": "N_REGION_ISO", "ideology": "Q240"}
NUMERIC = {"income", "ideology"}  # shown as their step on the 1–10 scale
_REGION_PREFIX = re.compile(r"^[A-Z]{2}-[A-Z0-9]+\s+")


@dataclass
class Respondent:
    id: int  # row number in the microdata file (0-based, header excluded)
    country: str
    weight: float
    persona: dict[str, Any]  # country, sex, age, then PERSONA_VARS fields (None = missing)
    answers: dict[str, int] = field(default_factory=dict)  # question id -> option number 1..k


@dataclass
class Sample:
    questions: dict[str, Question]  # the simulated questions
    context: dict[str, Question]  # context-only questions (prior-opinion baseline)
    respondents: list[Respondent]
    global_human: dict[tuple[str, str], tuple[float, ...]]  # (question, country) -> weighted shares


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
