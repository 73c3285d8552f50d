"""Prompt templates (English and Chinese) and persona / question rendering.

Persona values come from the WVS-7 microdata; codebook labels (education,
employment, region, …) exist only in English and stay English in Chinese prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from valuelens.layers.mark.theory import FUNCTIONS, POSITIONS

# Which persona fields each method sees (MARK gets the Demo.+Ideo. persona).
# age_group: personas from marginals only (microdata personas have an age); last, so that microdata
# prompts and their stress-stage characteristics are unchanged.
DEMO_IDEO = ("country", "sex", "age", "education", "marital_status", "employment", "income", "ideology", "age_group")
WVB = ("country", "sex", "age", "region", "urban_rural", "education", "age_group")
METHOD_FIELDS = {"mark": DEMO_IDEO, "demo_ideo": DEMO_IDEO, "demo_ideo_opinion": DEMO_IDEO, "worldvaluesbench": WVB}

FIELD_NAMES = {
    "country": {"en": "country", "zh": "国家"}, "sex": {"en": "sex", "zh": "性别"}, "age": {"en": "age", "zh": "年龄"},
    "education": {"en": "education", "zh": "教育程度"}, "marital_status": {"en": "marital status", "zh": "婚姻状况"},
    "employment": {"en": "employment", "zh": "就业状况"}, "income": {"en": "income", "zh": "收入"},
    "urban_rural": {"en": "urban/rural", "zh": "城乡"}, "region": {"en": "region", "zh": "地区"},
    "ideology": {"en": "political ideology", "zh": "政治立场"}, "age_group": {"en": "age group", "zh": "年龄段"},
}
_AGE_GROUPS = {"<=29": ("29 or younger", "29岁及以下"), "30-49": ("30 to 49", "30至49岁"), "50+": ("50 or older", "50岁及以上")}
_ZH_VALUES = {"male": "男", "female": "女", "Urban": "城市", "Rural": "农村"}
POSITION_NAMES = {"en": dict(zip(POSITIONS, POSITIONS)),
                  "zh": dict(zip(POSITIONS, ("主导", "辅助", "第三", "劣势")))}
IMPACT_NAMES = {"en": {"positive": "positive", "negative": "negative"}, "zh": {"positive": "正面", "negative": "负面"}}


def field_value(field: str, value: Any, lang: str, country_names: Mapping[str, Mapping[str, str]] | None = None) -> str:
    if field == "country":
        return (country_names or {}).get(value, {}).get(lang, value)
    if field == "age":
        return f"{int(value)}岁" if lang == "zh" else str(int(value))
    if field == "age_group" and value in _AGE_GROUPS:
        return _AGE_GROUPS[value][lang == "zh"]
    if field == "income":
        return (f"第{int(value)}级（共10级，1为最低收入组）" if lang == "zh"
                else f"step {int(value)} of 10 (1 = lowest income group)")
    if field == "ideology":
        return f"{int(value)}（1为左，10为右）" if lang == "zh" else f"{int(value)} on a scale from 1 (left) to 10 (right)"
    return _ZH_VALUES.get(str(value), str(value)) if lang == "zh" else str(value)


def render_persona(persona: Mapping[str, Any], fields: Sequence[str], lang: str,
                   country_names: Mapping[str, Mapping[str, str]] | None = None) -> str:
    sep = "：" if lang == "zh" else ": "
    return "\n".join(f"- {FIELD_NAMES[f][lang]}{sep}{field_value(f, persona[f], lang, country_names)}"
                     for f in fields if persona.get(f) is not None)


def characteristics(persona: Mapping[str, Any], lang: str) -> dict[str, str]:
    """Display name → field, for the stress stage (every field present except country)."""
    return {FIELD_NAMES[f][lang]: f for f in DEMO_IDEO if f != "country" and persona.get(f) is not None}


def render_options(options: Sequence[str]) -> str:
    return "\n".join(f"{i}. {o}" for i, o in enumerate(options, 1))


def render_stack(stack: Sequence[str], lang: str, impacts: Mapping[str, str] | None = None) -> str:
    """Numbered stack; with ``impacts``, each function's impact and its positive
    or negative description (the impacted stack of the reasoning prompt)."""
    lines = []
    for i, (f, pos) in enumerate(zip(stack, POSITIONS), 1):
        name = FUNCTIONS[f]["name"][lang]
        if impacts is None:
            lines.append(f"{i}. {f} ({name}), {POSITION_NAMES[lang][pos]}" if lang == "en"
                         else f"{i}. {f}（{name}），{POSITION_NAMES[lang][pos]}功能")
        else:
            imp = impacts[f]
            desc = FUNCTIONS[f][imp][lang]
            lines.append(f"{i}. {f} ({name}; {pos}; {imp} impact): {desc}" if lang == "en"
                         else f"{i}. {f}（{name}；{POSITION_NAMES[lang][pos]}功能；{IMPACT_NAMES[lang][imp]}影响）：{desc}")
    return "\n".join(lines)


def prior_text(probs: Mapping[str, float], lang: str) -> str:
    pairs = (("I", "E"), ("S", "N"), ("T", "F"), ("J", "P"))
    sep = "；" if lang == "zh" else "; "
    return sep.join(f"{a} {probs[a]:.2f} / {b} {probs[b]:.2f}" for a, b in pairs)


def json_form(stack: Sequence[str]) -> dict[str, str]:
    """The JSON forms that contain the stack's function names."""
    impacts = ", ".join(f'"{f}": "positive or negative"' for f in stack)
    choices = ", ".join(f'{{"function": "{f}", "option": <number>, "reason": "<short>"}}' for f in stack)
    return {"impacts": f'{{"impacts": {{{impacts}}}, "reason": "<one sentence>"}}',
            "choices": f'{{"choices": [{choices}]}}'}


T: dict[str, dict[str, str]] = {
    "en": {
        "stress": "You are analysing the life situation of a survey respondent.\nRespondent:\n{persona}\n\n"
                  "Rate how much stress each of these characteristics puts on this person, from 0 (none) to 100 "
                  "(severe): {names}.\nThen give the overall stress level (low, medium or high) and a one-sentence "
                  "summary.\nReply with JSON only, in this form:\n"
                  '{{"scores": {{{score_form}}}, "stress_level": "low, medium or high", "summary": "<one sentence>"}}',
        "type": "Respondent:\n{persona}\nStress level: {level}. {summary}\n\nA rule-based prior from demographics "
                "gives these MBTI letter probabilities: {prior} (prior type {prior_type}).\nPredict this person's "
                "MBTI type, using the prior as a starting point.\nReply with JSON only, in this form:\n"
                '{{"mbti": "<one of the 16 types, e.g. {prior_type}>", "reason": "<one sentence>"}}',
        "impact": "Respondent:\n{persona}\nStress level: {level}. Main sources of stress: {stressors}. {summary}\n"
                  "MBTI type: {mbti}. Cognitive-function stack:\n{stack}\n\nFor each function, decide whether this "
                  "person's stress affects it positively (it keeps working in a healthy way) or negatively (it turns "
                  "into its stressed form).\nReply with JSON only, in this form:\n{form}",
        "reason": "Simulate how this survey respondent answers a question.\nRespondent:\n{persona}\nMBTI type: {mbti}. "
                  "Stress level: {level}. {summary}\nCognitive functions after the stress impact, strongest first:\n"
                  "{impacted_stack}\n\nQuestion: {question}\nOptions:\n{options}\n\nFor each function, give the option "
                  "that this function, as described, would lead the respondent to choose, and a short reason.\n"
                  "Reply with JSON only, in this form:\n{form}",
        "explain": "A survey respondent (MBTI {mbti}, stress level {level}) answered this question:\n{question}\n"
                   "Each cognitive function chose an option (its weight after the stress impact in brackets):\n{votes}\n"
                   "The weighted vote gives option {answer}: {answer_text}.\nExplain in one or two sentences, from this "
                   "person's personality and situation, why they give this answer.\nReply with JSON only, in this form:\n"
                   '{{"explanation": "<one or two sentences>"}}',
        "vote": "- {function} [{weight:.2f}]: option {option} — {reason}",
        "repair": "Your reply could not be used: {error}. Reply again with JSON only, in the form asked for.",
        "baseline": "Imagine you are the following person.\n{persona}\n{opinions}\nAnswer this survey question as "
                    "this person would.\nQuestion: {question}\nOptions:\n{options}\n\nReply with the number of one "
                    'option, in the form "Answer: <number>".',
        "opinions": "Your answers to other survey questions:\n{lines}\n",
        "opinion": "- {question}: {answer}",
    },
    "zh": {
        "stress": "你正在分析一位调查受访者的生活状况。\n受访者：\n{persona}\n\n请为以下每个特征给这个人带来的压力打分，"
                  "0（没有压力）到100（压力极大）：{names}。\n然后给出总体压力水平（low、medium 或 high）和一句话总结。\n"
                  "只用 JSON 回复，格式如下：\n"
                  '{{"scores": {{{score_form}}}, "stress_level": "low、medium 或 high", "summary": "<一句话>"}}',
        "type": "受访者：\n{persona}\n压力水平：{level}。{summary}\n\n根据人口特征的规则先验给出的 MBTI 字母概率为：{prior}"
                "（先验类型 {prior_type}）。\n请以该先验为起点，预测这个人的 MBTI 类型。\n只用 JSON 回复，格式如下：\n"
                '{{"mbti": "<16种类型之一，例如 {prior_type}>", "reason": "<一句话>"}}',
        "impact": "受访者：\n{persona}\n压力水平：{level}。主要压力来源：{stressors}。{summary}\nMBTI 类型：{mbti}。"
                  "认知功能栈：\n{stack}\n\n请判断这个人的压力对每个功能的影响是正面的（功能仍健康运作，positive）"
                  "还是负面的（功能变为压力下的形态，negative）。\n只用 JSON 回复，格式如下：\n{form}",
        "reason": "请模拟这位调查受访者如何回答一个问题。\n受访者：\n{persona}\nMBTI 类型：{mbti}。压力水平：{level}。"
                  "{summary}\n受压力影响后的认知功能（由强到弱）：\n{impacted_stack}\n\n问题：{question}\n选项：\n{options}\n\n"
                  "请针对每个功能，给出按其描述会让受访者选择的选项编号和简短理由。\n只用 JSON 回复，格式如下：\n{form}",
        "explain": "一位调查受访者（MBTI {mbti}，压力水平 {level}）回答了这个问题：\n{question}\n"
                   "各认知功能选择的选项（方括号内为受压力影响后的权重）：\n{votes}\n加权投票的结果是选项 {answer}："
                   "{answer_text}。\n请用一两句话，从这个人的性格和处境出发，解释他/她为什么给出这个答案。\n"
                   '只用 JSON 回复，格式如下：\n{{"explanation": "<一两句话>"}}',
        "vote": "- {function} [{weight:.2f}]：选项 {option} — {reason}",
        "repair": "你的回复无法使用：{error}。请只用 JSON 重新回复，格式如上所述。",
        "baseline": "请想象你是下面这个人。\n{persona}\n{opinions}\n请以这个人的身份回答下面的调查问题。\n问题：{question}\n"
                    '选项：\n{options}\n\n请回答一个选项的编号，格式为 "Answer: <编号>"。',
        "opinions": "你对其他调查问题的回答：\n{lines}\n",
        "opinion": "- {question}：{answer}",
    },
}
