"""Synthetic WVS-7 microdata with a known answer process (a test helper; no real data).

Each country has shares of six sex × age-group cells; each cell answers each question
with probabilities drawn once from a Dirichlet. Design weights depend on sex (mean
``BASE_WEIGHT[sex]``), so weighted and unweighted country shares differ. Some answers,
sexes and ages are replaced by negative WVS missing codes, completely at random. Answers
are written as raw codes: where the codebook recodes (answer adjustments), one of the raw
codes behind the option is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from valuelens.data.survey import Question

SEXES = {"male": 1, "female": 2}
AGE_RANGES = {"<=29": (18, 29), "30-49": (30, 49), "50+": (50, 89)}
CELLS = [(s, a) for s in SEXES for a in AGE_RANGES]
BASE_WEIGHT = {"male": 0.8, "female": 1.25}
MISSING_CODES = (-1, -2, -4, -5)


@dataclass
class Truth:
    """The answer process: cell shares per country and answer probabilities per cell."""

    share: dict[tuple[int, str, str], float] = field(default_factory=dict)            # (country, sex, age)
    probs: dict[tuple[int, str, str, str], np.ndarray] = field(default_factory=dict)  # (+ question)

    def cell(self, country: int, sex: str, age: str, question: str) -> np.ndarray:
        return self.probs[(country, sex, age, question)]

    def country(self, country: int, question: str, weighted: bool = True) -> np.ndarray:
        """Population shares; weighted = what W_WEIGHT-weighted estimates converge to."""
        mix = sum(self.share[(country, s, a)] * (BASE_WEIGHT[s] if weighted else 1.0) * self.cell(country, s, a, question)
                  for s, a in CELLS)
        return mix / mix.sum()


def generate(codebook: dict[str, Question], questions: list[str], countries: list[int], n_per_country: int,
             seed: int = 0, missing_rate: float = 0.05, concentration: float = 1.0) -> tuple[pd.DataFrame, Truth]:
    """Respondent rows in the WVS-7 CSV layout (B_COUNTRY, questions, Q260, Q262, W_WEIGHT) and the truth."""
    rng = np.random.default_rng(seed)
    truth, frames = Truth(), []
    for country in countries:
        shares = rng.dirichlet(np.full(len(CELLS), 5.0))
        for (s, a), p in zip(CELLS, shares):
            truth.share[(country, s, a)] = float(p)
            for q in questions:
                k = len(codebook[q].extra["codes"])
                truth.probs[(country, s, a, q)] = rng.dirichlet(np.full(k, concentration))
        cell = rng.choice(len(CELLS), size=n_per_country, p=shares)
        rows = {"B_COUNTRY": np.full(n_per_country, country)}
        sex = np.array([SEXES[CELLS[c][0]] for c in cell])
        lo = np.array([AGE_RANGES[CELLS[c][1]][0] for c in cell])
        hi = np.array([AGE_RANGES[CELLS[c][1]][1] for c in cell])
        age = rng.integers(lo, hi + 1)
        base = np.array([BASE_WEIGHT[CELLS[c][0]] for c in cell])
        for q in questions:
            codes, recode = codebook[q].extra["codes"], codebook[q].extra["recode"]
            raw = [[r for r, n in recode.items() if n == c] for c in codes]  # raw codes behind each option
            ans = np.empty(n_per_country, dtype=int)
            for j, (s, a) in enumerate(CELLS):
                idx = np.flatnonzero(cell == j)
                opt = rng.choice(len(codes), size=len(idx), p=truth.probs[(country, s, a, q)])
                ans[idx] = [raw[k][rng.integers(len(raw[k]))] for k in opt]
            gone = rng.random(n_per_country) < missing_rate
            ans[gone] = rng.choice(MISSING_CODES, size=int(gone.sum()))
            rows[q] = ans
        sex[rng.random(n_per_country) < missing_rate / 5] = -2
        age[rng.random(n_per_country) < missing_rate / 5] = -1
        rows.update(Q260=sex, Q262=age, W_WEIGHT=np.round(base * rng.uniform(0.5, 1.5, n_per_country), 6))
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True), truth


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path
