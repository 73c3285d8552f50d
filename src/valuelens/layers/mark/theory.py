"""MBTI type dynamics for MARK: the demographic prior, the function stacks,
the function descriptions, and the weighted vote — all in code, no LLM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

AXES = (("E", "I"), ("S", "N"), ("T", "F"), ("J", "P"))
TIE = {"EI": "I", "SN": "S", "TF": "T", "JP": "J"}
POSITIONS = ("dominant", "auxiliary", "tertiary", "inferior")

# Dominant, auxiliary, tertiary, inferior (Myers/Beebe ordering; tertiary takes
# the dominant's attitude, as in the spec's INFJ -> Ni, Fe, Ti, Se).
STACKS: dict[str, tuple[str, str, str, str]] = {
    "ISTJ": ("Si", "Te", "Fi", "Ne"), "ISFJ": ("Si", "Fe", "Ti", "Ne"),
    "INFJ": ("Ni", "Fe", "Ti", "Se"), "INTJ": ("Ni", "Te", "Fi", "Se"),
    "ISTP": ("Ti", "Se", "Ni", "Fe"), "ISFP": ("Fi", "Se", "Ni", "Te"),
    "INFP": ("Fi", "Ne", "Si", "Te"), "INTP": ("Ti", "Ne", "Si", "Fe"),
    "ESTP": ("Se", "Ti", "Fe", "Ni"), "ESFP": ("Se", "Fi", "Te", "Ni"),
    "ENFP": ("Ne", "Fi", "Te", "Si"), "ENTP": ("Ne", "Ti", "Fe", "Si"),
    "ESTJ": ("Te", "Si", "Ne", "Fi"), "ESFJ": ("Fe", "Si", "Ne", "Ti"),
    "ENFJ": ("Fe", "Ni", "Se", "Ti"), "ENTJ": ("Te", "Ni", "Se", "Fi"),
}
TYPES = tuple(STACKS)

# name, healthy (positive) description, description under negative stress impact.
FUNCTIONS: dict[str, dict[str, dict[str, str]]] = {
    "Se": {"name": {"en": "Extraverted Sensing", "zh": "外倾感觉"},
           "positive": {"en": "notices concrete facts in the present moment and acts on them with realism",
                        "zh": "关注当下的具体事实，并据此务实地行动"},
           "negative": {"en": "seeks immediate relief or thrills, reacts impulsively to what is in front of them",
                        "zh": "追求即时的放松或刺激，对眼前的事冲动反应"}},
    "Si": {"name": {"en": "Introverted Sensing", "zh": "内倾感觉"},
           "positive": {"en": "relies on past experience, tradition and proven routines",
                        "zh": "依靠过往经验、传统和行之有效的惯例"},
           "negative": {"en": "clings rigidly to the familiar and dwells on past hardships",
                        "zh": "固守熟悉的事物，反复回想过去的困难"}},
    "Ne": {"name": {"en": "Extraverted Intuition", "zh": "外倾直觉"},
           "positive": {"en": "explores possibilities and new ideas with curiosity and openness",
                        "zh": "以好奇和开放的态度探索可能性和新想法"},
           "negative": {"en": "jumps between worst-case scenarios and cannot settle on anything",
                        "zh": "在各种最坏情形之间跳跃，无法定下心来"}},
    "Ni": {"name": {"en": "Introverted Intuition", "zh": "内倾直觉"},
           "positive": {"en": "sees long-term patterns and meaning and follows an inner vision",
                        "zh": "看到长远的规律和意义，遵循内心的愿景"},
           "negative": {"en": "becomes fixated on a single gloomy interpretation of the future",
                        "zh": "执着于对未来的单一悲观解读"}},
    "Te": {"name": {"en": "Extraverted Thinking", "zh": "外倾思维"},
           "positive": {"en": "organises the world by objective criteria, efficiency and clear rules",
                        "zh": "用客观标准、效率和明确规则来组织世界"},
           "negative": {"en": "turns controlling and harsh, imposing order without regard for people",
                        "zh": "变得控制欲强且严厉，不顾他人地强加秩序"}},
    "Ti": {"name": {"en": "Introverted Thinking", "zh": "内倾思维"},
           "positive": {"en": "analyses ideas for internal logical consistency and precision",
                        "zh": "分析观点的内在逻辑一致性与精确性"},
           "negative": {"en": "becomes cynical and over-critical, detached from others",
                        "zh": "变得愤世嫉俗、过度挑剔，与他人疏离"}},
    "Fe": {"name": {"en": "Extraverted Feeling", "zh": "外倾情感"},
           "positive": {"en": "attends to group harmony, shared values and others' needs",
                        "zh": "关注群体和谐、共同价值观和他人的需要"},
           "negative": {"en": "over-conforms to others' expectations or becomes emotionally volatile",
                        "zh": "过度迎合他人期望，或情绪起伏不定"}},
    "Fi": {"name": {"en": "Introverted Feeling", "zh": "内倾情感"},
           "positive": {"en": "judges by deeply held personal values and authenticity",
                        "zh": "依据内心坚守的个人价值观和真实性作判断"},
           "negative": {"en": "withdraws into hurt feelings and rejects views that clash with their own",
                        "zh": "沉浸于受伤的情绪，排斥与自己相冲突的观点"}},
}


@dataclass(frozen=True)
class Prior:
    """Letter probabilities (each pair sums to 1) and the type they imply."""

    probs: dict[str, float]
    type: str


def mbti_prior(age: float | None, sex: str | None, older: bool | None = None) -> Prior:
    """Each letter starts at 0.5; older than 30 → I +0.3 and P +0.2; male → T +0.3;
    ties go to I, S, T, J. Missing age or sex adds nothing. ``older``: whether the person is
    older than 30 when only an age group is known (used when ``age`` is missing)."""
    first = {"I": 0.5, "S": 0.5, "T": 0.5, "P": 0.5}
    known = age is not None and age == age
    if (known and age > 30) or (not known and older):  # type: ignore[operator]
        first["I"] += 0.3
        first["P"] += 0.2
    if sex == "male":
        first["T"] += 0.3
    probs = {"E": round(1 - first["I"], 6), "I": round(first["I"], 6), "S": round(first["S"], 6),
             "N": round(1 - first["S"], 6), "T": round(first["T"], 6), "F": round(1 - first["T"], 6),
             "J": round(1 - first["P"], 6), "P": round(first["P"], 6)}
    letters = []
    for a, b in AXES:
        letters.append(a if probs[a] > probs[b] else b if probs[b] > probs[a] else TIE[a + b])
    return Prior(probs, "".join(letters))


@dataclass(frozen=True)
class Vote:
    """Normalised weights per function, summed weight per option, the answer."""

    weights: dict[str, float]
    scores: dict[int, float]
    answer: int


def vote_weights(stack: Sequence[str], impacts: Mapping[str, str], base: Sequence[float],
                 negative_factor: float) -> dict[str, float]:
    """Base weight per stack position, × ``negative_factor`` when the function's
    impact is "negative", normalised to sum 1."""
    raw = [w * (negative_factor if impacts.get(f) == "negative" else 1.0) for f, w in zip(stack, base)]
    total = sum(raw)
    return {f: w / total for f, w in zip(stack, raw)}


def weighted_vote(stack: Sequence[str], choices: Mapping[str, int], impacts: Mapping[str, str],
                  base: Sequence[float] = (0.4, 0.3, 0.2, 0.1), negative_factor: float = 0.5) -> Vote:
    """The option with the largest summed weight. A tie goes to the tied option
    chosen by the highest-ranked function (dominant first)."""
    weights = vote_weights(stack, impacts, base, negative_factor)
    scores: dict[int, float] = {}
    for f in stack:
        scores[choices[f]] = scores.get(choices[f], 0.0) + weights[f]
    top = max(scores.values())
    tied = {o for o, s in scores.items() if abs(s - top) <= 1e-12}
    answer = next(choices[f] for f in stack if choices[f] in tied)
    return Vote(weights, dict(sorted(scores.items())), answer)


def keep_stressors(scores: Mapping[str, float]) -> list[str]:
    """Characteristics scored at or above the mean score, highest first."""
    if not scores:
        return []
    mean = sum(scores.values()) / len(scores)
    return sorted((k for k, s in scores.items() if s >= mean - 1e-9), key=lambda k: -scores[k])
