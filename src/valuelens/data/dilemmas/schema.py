"""Dilemma data model: right-vs-right dilemmas, escalation chains, MoralChoice.

Texts are dicts language → text (``{"en": ..., "zh": ...}``); a corpus that
exists in one language only (MoralChoice, MMD) holds ``{"en": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Text = dict[str, str]

# Display names of known values, used in steering guidelines. Keys are the
# canonical value names used in every table.
VALUE_NAMES: dict[str, dict[str, str]] = {
    "Truth": {"en": "truth", "zh": "真相"},
    "Loyalty": {"en": "loyalty", "zh": "忠诚"},
    "Individual": {"en": "the individual", "zh": "个人"},
    "Community": {"en": "the community", "zh": "集体"},
    "Short-term": {"en": "short-term needs", "zh": "眼前的需要"},
    "Long-term": {"en": "long-term interests", "zh": "长远的利益"},
    "Justice": {"en": "justice", "zh": "正义"},
    "Mercy": {"en": "mercy", "zh": "仁慈"},
    "Care": {"en": "care", "zh": "关爱"},
    "Fairness": {"en": "fairness", "zh": "公平"},
    "Authority": {"en": "authority", "zh": "权威"},
    "Sanctity": {"en": "sanctity", "zh": "圣洁"},
    "Liberty": {"en": "liberty", "zh": "自由"},
}
KIDDER_PAIRS = ("Truth vs Loyalty", "Individual vs Community", "Short-term vs Long-term", "Justice vs Mercy")
MFT_VALUES = ("Care", "Fairness", "Loyalty", "Authority", "Sanctity", "Liberty")
SCHWARTZ_VALUES = ("Self-direction", "Stimulation", "Hedonism", "Achievement", "Power", "Security", "Conformity",
                   "Tradition", "Benevolence", "Universalism")  # Schwartz (1992), the circle's order


def value_name(value: str, lang: str, names: dict[str, Text] | None = None) -> str:
    """How a value is written in a prompt: the corpus's own name, the built-in
    table, else the canonical name itself."""
    for table in (names or {}, VALUE_NAMES):
        if lang in table.get(value, {}):
            return table[value][lang]
    return value


@dataclass(frozen=True)
class Dilemma:
    """Two actions, each serving one value; ``pair`` is the paradigm or norm.

    ``negative[i]`` / ``positive[i]``: a bad / good consequence of action i.
    """

    id: str
    pair: str
    situation: Text
    actions: tuple[Text, Text]
    values: tuple[str, str]
    negative: tuple[Text, Text] | None = None
    positive: tuple[Text, Text] | None = None
    value_names: dict[str, Text] = field(default_factory=dict, compare=False, hash=False)

    def languages(self) -> set[str]:
        return set(self.situation) & set(self.actions[0]) & set(self.actions[1])

    def has_consequences(self, lang: str) -> bool:
        return all(c is not None and lang in c[0] and lang in c[1] for c in (self.negative, self.positive))


@dataclass(frozen=True)
class ChainStep:
    """One step: what happens, the question, two choices and their values
    (None when the corpus gives no label): ``values`` MFT foundations,
    ``schwartz`` Schwartz basic values (a second label set, optional)."""

    situation: Text
    dilemma: Text
    choices: tuple[Text, Text]
    values: tuple[str | None, str | None]
    schwartz: tuple[str | None, str | None] = (None, None)

    def languages(self) -> set[str]:
        return set(self.situation) & set(self.dilemma) & set(self.choices[0]) & set(self.choices[1])


@dataclass(frozen=True)
class Chain:
    """An escalation chain: a norm and ordered steps of rising severity."""

    id: str
    norm: Text
    steps: tuple[ChainStep, ...]
    source: str = "builtin"

    def languages(self) -> set[str]:
        langs = set(self.norm)
        for s in self.steps:
            langs &= s.languages()
        return langs


@dataclass(frozen=True)
class MCScenario:
    """A MoralChoice scenario (English)."""

    id: str
    ambiguity: str
    generation_rule: str
    context: str
    action1: str
    action2: str


@dataclass(frozen=True)
class MCTemplates:
    """MoralChoice question templates (name → header, question), response
    templates (name → side "A"/"B" → patterns) and refusal phrases."""

    questions: dict[str, tuple[str, str]]
    responses: dict[str, dict[str, tuple[str, ...]]]
    refusals: tuple[str, ...]
