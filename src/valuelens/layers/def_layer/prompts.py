"""DEF prompts (English and Chinese): persona system turn, memory turns, the question.

Messages: a system turn with the persona ("Imagine you are a woman aged 30
to 49, living in Ohio, United States"), then one (user, assistant) pair per
remembered turn — the question text and "Answer: <option text> Explanation:
<first sentence>" — then the question with its options numbered in the
shuffled order and the answer format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from valuelens.layers.def_layer.participants import Participant
from valuelens.models import Message

TEMPLATES = {
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


def question_text(question: str, options: Sequence[str], lang: str) -> str:
    opts = "\n".join(f"{i}. {o}" for i, o in enumerate(options, start=1))
    return TEMPLATES[lang]["question"].format(question=question, options=opts)


def messages(p: Participant, country: str, lang: str, memory: Sequence[Turn], question: str,
             shown: Sequence[str]) -> tuple[Message, ...]:
    t = TEMPLATES[lang]
    out = [Message("system", t["system"].format(persona=describe(p, country, lang)))]
    for turn in memory:
        out.append(Message("user", turn.question))
        out.append(Message("assistant", t["memory"].format(answer=turn.answer, explanation=turn.explanation).strip()))
    out.append(Message("user", question_text(question, shown, lang)))
    return tuple(out)
