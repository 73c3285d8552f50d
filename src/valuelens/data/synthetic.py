"""Synthetic demo respondents for the built-in questionnaire: synthetic — not human data.

They give the demo's DEF and MARK layers (and the first-token probe) a
reference to score against, with a ground truth known exactly. The process
(:func:`generate`, seed :data:`SEED`):

- Countries United States (WVS code 840) and China (156); six cells sex
  (male, female) × age group (<=29, 30-49, 50+); :data:`PER_CELL` respondents
  per cell (a stratified design, no weights), ages uniform in the cell's range
  (18-29, 30-49, 50-79).
- Question ``q`` with ``k`` ordered options (positions ``j = 0..k-1``): a cell
  answers independently with ``p_j ∝ exp(-(j - μ)² / (2 σ²))``, σ = :data:`SIGMA`,
  ``μ = location[q][country] + sex_shift[q] · s + age_shift[q] · a`` with
  ``s = -½`` (male) / ``+½`` (female) and ``a = -1, 0, +1`` by age group
  (:func:`cell_probs`). ``location`` is uniform in ``[0.3, k-1.3]`` for the US,
  the US value plus uniform ``[-1.5, 1.5]`` (clipped to ``[0, k-1]``) for China;
  the shifts are uniform in ``[-0.5, 0.5]`` and ``[-0.6, 0.6]``; all drawn
  from ``numpy.random.default_rng(SEED)`` question by question
  (:func:`parameters`). A reverse-keyed twin (D11 of D01) has
  ``μ' = k-1-μ`` of its original, so the population holds both consistently;
  each answer is still drawn on its own.
- A country's true shares are the mean of its six cells (equal cell sizes).

Files: ``synthetic_respondents.csv`` (WVS-7 microdata layout: ``B_COUNTRY``,
sex ``Q260``, age ``Q262``, one column per question with codes 1..k) and
``synthetic_codebook.json`` (WVS codebook layout, English texts; Chinese from
``demo_survey.json``). Regenerate with ``python -m valuelens.data.synthetic``;
a test checks the committed files equal :func:`generate`'s output.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuelens.data.survey import Question, Survey, load_questionnaire

SOURCE = "synthetic"
LABEL = "synthetic — not human data"
SEED = 20261202
PER_CELL = 40
SIGMA = 0.9
COUNTRIES = {"United States": 840, "China": 156}
SEXES = {"male": (1, -0.5), "female": (2, 0.5)}  # WVS code, s
AGE_GROUPS = {"<=29": ((18, 29), -1), "30-49": ((30, 49), 0), "50+": ((50, 79), 1)}  # age range, a
REVERSED = {"D11": "D01"}  # reverse-keyed twin -> original
CSV_NAME, CODEBOOK_NAME = "synthetic_respondents.csv", "synthetic_codebook.json"


def _questions() -> list[Question]:
    return load_questionnaire("builtin")


def parameters(questions: list[Question] | None = None, seed: int = SEED) -> dict[str, dict[str, Any]]:
    """Per question: ``location`` (country -> μ before shifts), ``sex_shift``, ``age_shift``."""
    qs = questions if questions is not None else _questions()
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for q in qs:
        k = len(q.labels)
        us = float(rng.uniform(0.3, k - 1.3))
        cn = float(np.clip(us + rng.uniform(-1.5, 1.5), 0, k - 1))
        out[q.id] = {"location": {"United States": us, "China": cn},
                     "sex_shift": float(rng.uniform(-0.5, 0.5)), "age_shift": float(rng.uniform(-0.6, 0.6)), "k": k}
    for twin, orig in REVERSED.items():
        if twin in out and orig in out:
            o, k = out[orig], out[twin]["k"]
            out[twin] = {"location": {c: k - 1 - v for c, v in o["location"].items()},
                         "sex_shift": -o["sex_shift"], "age_shift": -o["age_shift"], "k": k}
    return out


def cell_probs(param: dict[str, Any], country: str, sex: str, age_group: str) -> np.ndarray:
    """The true answer distribution of one cell (the module docstring's formula)."""
    mu = param["location"][country] + param["sex_shift"] * SEXES[sex][1] + param["age_shift"] * AGE_GROUPS[age_group][1]
    w = np.exp(-((np.arange(param["k"]) - mu) ** 2) / (2 * SIGMA**2))
    return w / w.sum()


def country_probs(param: dict[str, Any], country: str) -> np.ndarray:
    """The true country shares: the mean over its six equal-sized cells."""
    return np.mean([cell_probs(param, country, s, a) for s in SEXES for a in AGE_GROUPS], axis=0)


def generate(seed: int = SEED, per_cell: int = PER_CELL) -> pd.DataFrame:
    """Respondent rows in the WVS-7 CSV layout, drawn from the ground truth (seeded)."""
    qs = _questions()
    params = parameters(qs, seed)
    rng = np.random.default_rng([seed, 1])
    rows: dict[str, list[int]] = {"B_COUNTRY": [], "Q260": [], "Q262": [], **{q.id: [] for q in qs}}
    for country, code in COUNTRIES.items():
        for sex, (sex_code, _) in SEXES.items():
            for age_group, ((lo, hi), _) in AGE_GROUPS.items():
                rows["B_COUNTRY"] += [code] * per_cell
                rows["Q260"] += [sex_code] * per_cell
                rows["Q262"] += rng.integers(lo, hi + 1, size=per_cell).tolist()
                for q in qs:
                    p = cell_probs(params[q.id], country, sex, age_group)
                    rows[q.id] += (rng.choice(len(p), size=per_cell, p=p) + 1).tolist()
    return pd.DataFrame(rows)


def codebook_json() -> dict[str, Any]:
    """The questionnaire as a WVS codebook (English text, codes 1..k)."""
    return {q.id: {"question": q.text["en"], "type": "multiple_choice",
                   "choices": {str(i + 1): o for i, o in enumerate(q.options["en"])}} for q in _questions()}


def csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def codebook_text() -> str:
    return json.dumps(codebook_json(), ensure_ascii=False, indent=1) + "\n"


def write(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CSV_NAME).write_text(csv_text(generate()), encoding="utf-8")
    (directory / CODEBOOK_NAME).write_text(codebook_text(), encoding="utf-8")
    return directory / CSV_NAME, directory / CODEBOOK_NAME


def paths() -> tuple[str, str]:
    """The committed respondents CSV and codebook JSON."""
    base = resources.files("valuelens.data")
    return str(base.joinpath(CSV_NAME)), str(base.joinpath(CODEBOOK_NAME))


def questions() -> dict[str, Question]:
    """The built-in questionnaire (en + zh) as codebook questions (codes 1..k), source 'synthetic'."""
    out = {}
    for q in _questions():
        k = len(q.labels)
        out[q.id] = Question(q.id, q.text, q.options, q.dimension, q.ordinal, SOURCE,
                             {"codes": tuple(range(1, k + 1)), "recode": {c: c for c in range(1, k + 1)}})
    return out


@lru_cache(maxsize=1)
def _respondents() -> pd.DataFrame:
    from valuelens.data.wvs import load_microdata

    return load_microdata(paths()[0], questions())


def respondents() -> pd.DataFrame:
    """The synthetic respondents as :func:`valuelens.data.wvs.load_microdata` returns them (a copy)."""
    df = _respondents()
    out = df.copy()
    out.attrs.update(df.attrs, source=f"{CSV_NAME} ({LABEL})")
    return out


def survey(demographics: bool = False) -> Survey:
    """Questions with the respondents' country shares (and, if ``demographics``, sex × age cells)."""
    from valuelens.data.wvs import distributions

    qs, df = questions(), respondents()
    dists = distributions(df, qs, ("country",), weighted=False)
    if demographics:
        dists += distributions(df, qs, ("country", "sex", "age_group"), weighted=False)
    return Survey(qs, dists, SOURCE, [f"{LABEL}: {CSV_NAME}, {len(df)} generated respondents "
                                      f"({PER_CELL} per country × sex × age cell, seed {SEED}; "
                                      "see valuelens.data.synthetic)"])


if __name__ == "__main__":  # pragma: no cover - regenerates the committed files
    for p in write(Path(__file__).parent):
        print(p)
