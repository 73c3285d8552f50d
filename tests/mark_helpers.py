"""Test helpers for the MARK layer: synthetic WVS-7 respondents with the persona
columns MARK's methods read, Chinese question texts, and a stage-aware backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthetic_wvs import generate
from valuelens.data.wvs import load_codebook

PERSONA_QS = ["Q275", "Q273", "Q279", "Q288", "H_URBRURAL", "Q240"]

TEXTS = {"questions": [
    {"id": "Q1", "text": {"en": "How important is family in your life?", "zh": "家庭在你生活中有多重要？"},
     "options": {"en": ["Very important", "Rather important", "Not very important", "Not at all important"],
                 "zh": ["非常重要", "比较重要", "不太重要", "一点也不重要"]}},
    {"id": "Q46", "text": {"en": "Taking all things together, how happy would you say you are?",
                           "zh": "总的来说，你觉得自己有多幸福？"},
     "options": {"en": ["Very happy", "Quite happy", "Not very happy", "Not at all happy"],
                 "zh": ["非常幸福", "比较幸福", "不太幸福", "一点也不幸福"]}},
    {"id": "Q27", "text": {"en": "One of my main goals in life has been to make my parents proud. Do you agree?",
                           "zh": "我人生的主要目标之一是让父母为我骄傲。你是否同意？"},
     "options": {"en": ["Agree strongly", "Agree", "Disagree", "Strongly disagree"],
                 "zh": ["非常同意", "同意", "不同意", "非常不同意"]}},
]}


def write_texts(path: Path) -> Path:
    path.write_text(json.dumps(TEXTS, ensure_ascii=False), encoding="utf-8")
    return path


def synthetic_microdata(codebook_dir: Path, questions: Sequence[str], path: Path, n_per_country: int = 40,
                        seed: int = 3) -> Path:
    """synthetic_wvs respondents (US 840, China 156) plus persona columns and a region per respondent."""
    cb = load_codebook(codebook_dir / "codebook.json", codebook_dir / "question_metadata.json")
    frame, _ = generate(cb, list(questions) + PERSONA_QS, [840, 156], n_per_country, seed=seed)
    raw = json.loads((codebook_dir / "codebook.json").read_text(encoding="utf-8"))["N_REGION_ISO"]["choices"]
    rng = np.random.default_rng(seed)
    regions = {c: [int(k) for k in raw if k.startswith(str(c))] for c in (840, 156)}
    frame["N_REGION_ISO"] = [regions[c][rng.integers(len(regions[c]))] for c in frame["B_COUNTRY"]]
    frame.to_csv(path, index=False)
    return path


class StageBackend:
    """A Backend whose reply is ``reply(prompt)``; records every prompt it sees."""

    supports_beams = False

    def __init__(self, reply: Callable[[str], str], name: str = "stages"):
        self.reply, self.name, self.stats, self.prompts = reply, name, {}, []

    def identity(self) -> dict[str, Any]:
        return {"backend": "test-stages", "name": self.name}

    def option_distribution(self, requests):
        raise NotImplementedError

    def generate(self, items) -> list[str]:
        out = []
        for r, _ in items:
            prompt = "\n\n".join(m.content for m in r.messages)
            self.prompts.append(prompt)
            out.append(self.reply(prompt))
        return out

    def close(self) -> None:
        pass
