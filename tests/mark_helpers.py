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


# --- a scripted-backend file that answers every MARK stage -------------------------------------

# Substrings that mark each kind of MARK prompt, per language (from prompts.T).
MARKERS = {
    "en": {"stress": "Rate how much stress", "type": "Predict this person's MBTI type",
           "impact": "For each function, decide", "reason": "Simulate how this survey respondent",
           "explain": "Explain in one or two sentences", "baseline": "Imagine you are the following person",
           "opinions": "Your answers to other survey questions", "region": "- region: ",
           "mbti": "MBTI type: {}", "country": "- country: {}"},
    "zh": {"stress": "压力打分", "type": "预测这个人的 MBTI 类型", "impact": "请判断这个人的压力对每个功能的影响",
           "reason": "请模拟这位调查受访者", "explain": "请用一两句话", "baseline": "请想象你是下面这个人",
           "opinions": "你对其他调查问题的回答", "region": "- 地区：", "mbti": "MBTI 类型：{}", "country": "- 国家：{}"},
}
COUNTRY = {"United States": {"en": "United States", "zh": "美国"}, "China": {"en": "China", "zh": "中国"}}
# per country: the stress reply, the MBTI type (China's comes after one repair) and the WorldValuesBench reply
SCRIPT_PERSONAS = {
    "United States": {"level": "high", "scores": [10, 40, 20, 30, 80, 70, 10], "mbti": "INFJ", "wvb": "Answer: 3"},
    "China": {"level": "low", "scores": [5, 15, 30, 10, 20, 25, 60], "mbti": "ESTP", "wvb": "I would rather not say"},
}
BAD_TYPE = "ISXJ"  # China's first type reply: not a type, so the stage repairs


def stage_script(path: Path, questions: Sequence[str] = ("Q1", "Q46"), delay: float = 0.0) -> Path:
    """A ``scripted:`` backend file whose rules give a valid reply at every MARK
    stage, in English and Chinese, for the US and China personas of
    :func:`synthetic_microdata` and the :data:`TEXTS` questions: stress scores
    for every characteristic, a type (China's after one repair turn), impacts
    for all eight functions, choices for the type's stack that differ per
    question, an explanation; baselines answer 1, 2 with opinions, and the
    WorldValuesBench persona 3 (US) or nothing usable (China). ``delay``:
    seconds per request."""
    from valuelens.layers.mark.prompts import DEMO_IDEO, FIELD_NAMES
    from valuelens.layers.mark.theory import STACKS

    texts = {q["id"]: q["text"] for q in TEXTS["questions"] if q["id"] in questions}
    rules: list[dict[str, Any]] = [{"contains": f'"mbti": "{BAD_TYPE}"', "text": json.dumps({"mbti": "ESTP"})}]
    for lang, m in MARKERS.items():
        names = [FIELD_NAMES[f][lang] for f in DEMO_IDEO if f != "country"]
        for country, p in SCRIPT_PERSONAS.items():
            who = m["country"].format(COUNTRY[country][lang])
            stress = {"scores": dict(zip(names, p["scores"])), "stress_level": p["level"],
                      "summary": f"{country}: {p['level']} stress."}
            mbti = BAD_TYPE if country == "China" else p["mbti"]
            rules += [{"contains": [m["stress"], who], "text": "```json\n" + json.dumps(stress, ensure_ascii=False)
                       + "\n```"},
                      {"contains": [m["type"], who], "text": json.dumps({"mbti": mbti, "reason": "scripted"})},
                      {"contains": [m["baseline"], m["region"], who], "text": p["wvb"]}]
            stack = STACKS[p["mbti"]]
            for k, (qid, text) in enumerate(texts.items()):
                choices = [{"function": f, "option": (i + k) % 4 + 1, "reason": f"{f} says so"}
                           for i, f in enumerate(stack)]
                rules.append({"contains": [m["reason"], m["mbti"].format(p["mbti"]), text[lang]],
                              "text": json.dumps({"choices": choices})})
        impacts = {f: "negative" if f[1] == "e" and f[0] in "SF" else "positive" for f in ("Ni", "Ne", "Si", "Se",
                                                                                       "Ti", "Te", "Fi", "Fe")}
        rules += [{"contains": m["impact"], "text": json.dumps({"impacts": impacts, "reason": "scripted"})},
                  {"contains": m["explain"], "text": "<think>weighing the votes</think>"
                   + json.dumps({"explanation": "A scripted explanation."})},
                  {"contains": [m["baseline"], m["opinions"]], "text": "Answer: 2"},
                  {"contains": m["baseline"], "text": "Answer: 1"}]
    path.write_text(json.dumps({"name": "mark-stages", "rules": rules, "default_text": "Answer: 1", "delay": delay},
                               ensure_ascii=False), encoding="utf-8")
    return path
