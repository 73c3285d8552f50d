"""DEF prompts (English and Chinese): persona system turn, memory turns, the question.

Messages: a system turn with the persona ("Imagine you are a woman aged 30
to 49, living in Ohio, United States"), then one (user, assistant) pair per
remembered turn — the question text and "Answer: <option text> Explanation:
<first sentence>" — then the question with its options labelled in the
shown order (:func:`layout`) and the answer format.

Labels (a deviation from DEF, which shuffles every question and numbers the
options): on a numeric scale (an option text that is a bare number, e.g. the
WVS 1–10 scales "Never justifiable, 2, …, 9, Always justifiable") shuffled
numbers collide with the option texts ("1. 2 / 2. 4 / 3. 9 …": is "Answer: 2"
the 1st option or the option "2"?). So a numeric scale is shown in its own
order; numbered 1..k when each numeric text equals its position (then the
number a model gives is both position and scale value), else labelled with
letters A, B, … (a bare number in the reply is then read as a scale value:
the WVS code when the codes agree with the numeric texts, else the text).
Other questions are shuffled and numbered as in DEF.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

from valuelens.data.survey import Question
from valuelens.layers.def_layer.participants import Participant
from valuelens.models import Message

TEMPLATES: dict[str, dict[str, Any]] = {  # per language: format strings, and label maps (sex, age, fields)
    "en": {
        "system": "You are taking part in a survey. Imagine you are {persona}. Answer every question as this "
                  "person would, choosing exactly one option.",
        "persona": "a {sex} aged {age}, living in {place}",
        "place": "{location}, {country}",
        "sex": {"male": "man", "female": "woman"},
        "age": {"<=29": "29 or younger", "30-49": "30 to 49", "50+": "50 or older"},
        "fields": {"education": "education", "urban_rural": "area", "income": "income level", "religion": "religion"},
        "extras": " ({items})", "sep": "; ", "kv": "{key}: {value}",
        "question": "Question: {question}\nOptions:\n{options}\n"
                    "Reply in the format \"Answer: <number> Explanation: <one sentence>\".",
        "question_letters": "Question: {question}\nOptions:\n{options}\n"
                            "Reply in the format \"Answer: <letter> Explanation: <one sentence>\".",
        "memory": "Answer: {answer} Explanation: {explanation}",
    },
    "zh": {
        "system": "你正在参加一项问卷调查。请想象你是{persona}。请以这个人的身份回答每一个问题，只选择一个选项。",
        "persona": "一位{age}的{sex}，住在{place}",
        "place": "{country}{location}",
        "sex": {"male": "男性", "female": "女性"},
        "age": {"<=29": "29岁及以下", "30-49": "30至49岁", "50+": "50岁及以上"},
        "fields": {"education": "教育程度", "urban_rural": "居住地区", "income": "收入水平", "religion": "宗教信仰"},
        "extras": "（{items}）", "sep": "；", "kv": "{key}：{value}",
        "question": "问题：{question}\n选项：\n{options}\n请按以下格式回答：“答案：<选项编号> 解释：<一句话>”。",
        "question_letters": "问题：{question}\n选项：\n{options}\n请按以下格式回答：“答案：<选项字母> 解释：<一句话>”。",
        "memory": "答案：{answer} 解释：{explanation}",
    },
}


@dataclass(frozen=True)
class Turn:
    """One remembered valid answer, already trimmed."""

    question_id: str
    question: str
    answer: str  # the chosen option's text
    explanation: str  # first sentence


def describe(p: Participant, country: str, lang: str) -> str:
    t = TEMPLATES[lang]
    loc = p.location.get(lang) or p.location.get("en")
    place = t["place"].format(location=loc, country=country) if loc else country
    sex = t["sex"].get(p.persona.get("sex", ""), p.persona.get("sex", "person"))
    age = t["age"].get(p.persona.get("age_group", ""), p.persona.get("age_group", "?"))
    text = t["persona"].format(sex=sex, age=age, place=place)
    extras = [t["kv"].format(key=t["fields"].get(k, k.replace("_", " ")), value=v)
              for k, v in p.persona.items() if k not in ("sex", "age_group")]
    return text + (t["extras"].format(items=t["sep"].join(extras)) if extras else "")


_NUMBER = re.compile(r"[+-]?\d{1,6}")
LETTERS = string.ascii_uppercase


def numeric_text(text: str) -> int | None:
    """The integer an option text is (" 7 ", "７" → 7), else None."""
    t = unicodedata.normalize("NFKC", text).strip()
    return int(t) if _NUMBER.fullmatch(t) else None


@dataclass(frozen=True)
class Layout:
    """How one question is shown: order, label kind and what a bare number in a reply means."""

    perm: tuple[int, ...]  # shown position -> original option index
    letters: bool = False  # labels A, B, … instead of 1, 2, …
    values: tuple[int | None, ...] | None = None  # letters only: per shown option, its scale value
    shuffled: bool = False  # the order is the participant's shuffle (position and value are then apart)

    def label(self, position: int) -> str:
        return LETTERS[position] if self.letters else str(position + 1)

    @property
    def kind(self) -> str:
        return "letters" if self.letters else "numbers"


def is_numeric_scale(q: Question) -> bool:
    """Some option text, in some language, is a bare number."""
    return any(numeric_text(t) is not None for opts in q.options.values() for t in opts)


def layout(q: Question, lang: str, shuffled: Sequence[int] | None) -> Layout:
    """The layout of ``q`` in ``lang``; ``shuffled``: the permutation to use when the question may be shuffled
    (None: shuffling is off)."""
    opts = q.options[lang]
    order = tuple(range(len(opts)))
    if not is_numeric_scale(q):
        return Layout(tuple(int(i) for i in shuffled), shuffled=True) if shuffled is not None else Layout(order)
    nums = [numeric_text(t) for t in opts]
    if all(v is None or v == i + 1 for i, v in enumerate(nums)):
        return Layout(order)
    codes = q.extra.get("codes")
    if codes and len(codes) == len(opts) and all(v is None or v == int(c) for v, c in zip(nums, codes)):
        values: tuple[int | None, ...] = tuple(int(c) for c in codes)
    else:
        values = tuple(nums)
    return Layout(order, letters=True, values=values)


def question_text(question: str, options: Sequence[str], lang: str, shown: Layout | None = None) -> str:
    """The question turn; ``options`` in the shown order (numbered 1..k unless ``shown`` says letters)."""
    lay = shown or Layout(tuple(range(len(options))))
    opts = "\n".join(f"{lay.label(i)}. {o}" for i, o in enumerate(options))
    key = "question_letters" if lay.letters else "question"
    return TEMPLATES[lang][key].format(question=question, options=opts)


def messages(p: Participant, country: str, lang: str, memory: Sequence[Turn], question: str,
             shown: Sequence[str], lay: Layout | None = None) -> tuple[Message, ...]:
    t = TEMPLATES[lang]
    out = [Message("system", t["system"].format(persona=describe(p, country, lang)))]
    for turn in memory:
        out.append(Message("user", turn.question))
        out.append(Message("assistant", t["memory"].format(answer=turn.answer, explanation=turn.explanation).strip()))
    out.append(Message("user", question_text(question, shown, lang, lay)))
    return tuple(out)
