"""DEF answer parser: a table of real-looking replies (English and Chinese) and a fuzz test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valuelens.layers.def_layer.parsing import STATUSES, first_sentence, parse_answer, parse_verdict

AGREE = ["Strongly agree", "Agree", "Disagree", "Strongly disagree"]
IMPORTANT = ["Very important", "Rather important", "Not very important", "Not at all important"]
SCALE = ["Never justifiable", "2", "3", "4", "5", "6", "7", "8", "9", "Always justifiable"]
ZH_AGREE = ["非常同意", "同意", "不同意", "非常不同意"]
ZH_IMPORTANT = ["非常重要", "比较重要", "不太重要", "一点也不重要"]

# (reply, options, expected status, expected 1-based position or None, expected explanation prefix)
CASES = [
    ("Answer: 2 Explanation: I value hard work above all.", AGREE, "valid", 2, "I value hard work above all."),
    ("Answer: 1\nExplanation: Family comes first for me. It always has.", IMPORTANT, "valid", 1, "Family comes first for me."),
    ("**Answer:** 3\n**Explanation:** I rarely think about it.", IMPORTANT, "valid", 3, "I rarely think about it."),
    ("Answer: 4. Explanation: Rules are rules.", AGREE, "valid", 4, "Rules are rules."),
    ("Answer: (2) Explanation: Mostly agree.", AGREE, "valid", 2, "Mostly agree."),
    ("The answer is 3. Explanation: It depends on the situation, but mostly no.", AGREE, "valid", 3, "It depends"),
    ("Answer: 10 Explanation: People should be free.", SCALE, "valid", 10, "People should be free."),
    ("Answer: 1 Explanation: Cheating the state is wrong.", SCALE, "valid", 1, "Cheating"),
    ("Answer: 7 (leaning justifiable) Explanation: Sometimes it is okay.", SCALE, "valid", 7, "Sometimes"),
    ("Answer: Agree Explanation: Most people I know think this.", AGREE, "valid", 2, "Most people"),
    ("Answer: Strongly disagree. Explanation: Not true at all.", AGREE, "valid", 4, "Not true at all."),
    ("Answer: 2 - Agree Explanation: I see it that way.", AGREE, "valid", 2, "I see it"),
    ("Answer: 2 (Agree), not 3. Explanation: Close call.", AGREE, "valid", 2, "Close call."),
    ("Answer: 2 or 3 Explanation: Hard to say.", AGREE, "ambiguous", None, "Hard to say."),
    ("Answer: 2 or 3, Agree or Disagree", AGREE, "ambiguous", None, ""),
    ("Answer: 7 Explanation: Very much so.", AGREE, "out_of_range", None, "Very much so."),
    ("Answer: 0", AGREE, "out_of_range", None, ""),
    ("Answer: Explanation: I am not sure.", AGREE, "unparsed", None, "I am not sure."),
    ("3. Not very important - I do not think about it much.", IMPORTANT, "valid", 3, "Not very important"),
    ("2", AGREE, "valid", 2, ""),
    ("Option 4 Explanation: Tradition matters less now.", AGREE, "valid", 4, "Tradition"),
    ("I would choose Rather important because friends matter.", IMPORTANT, "valid", 2, ""),
    ("Very important and Rather important both apply to me.", IMPORTANT, "ambiguous", None, ""),
    ("I think about this a lot, there are 2 sides.", AGREE, "unparsed", None, ""),  # no marker: a number must lead
    ("", AGREE, "empty", None, ""),
    ("   \n ", AGREE, "empty", None, ""),
    ("As an AI language model, I do not have personal opinions.", AGREE, "refusal", None, ""),
    ("Answer: 2 Explanation: As an AI, I don't have beliefs, but many agree.", AGREE, "refusal", None, "As an AI"),
    ("I'm an AI assistant and cannot take part in surveys.", AGREE, "refusal", None, ""),
    ("I don't have personal opinions on religion.", IMPORTANT, "refusal", None, ""),
    ("I cannot provide a personal opinion on this matter.", AGREE, "refusal", None, ""),
    ("Answer: 2 Explanation: Some people think so, while others disagree strongly.", AGREE, "hedge", None, "Some people"),
    ("Some may agree and others may not; it is personal.", AGREE, "hedge", None, ""),
    ("Answer: 3 Explanation: Some rules matter more than others.", AGREE, "valid", 3, "Some rules"),
    ("答案：2 解释：我觉得努力工作很重要。", ZH_AGREE, "valid", 2, "我觉得努力工作很重要。"),
    ("答案：1\n解释：家庭永远是第一位的。其他都次要。", ZH_IMPORTANT, "valid", 1, "家庭永远是第一位的。"),
    ("答案:３ 解释:不太重要。", ZH_IMPORTANT, "valid", 3, "不太重要。"),
    ("答案：三 解释：我很少考虑这个。", ZH_IMPORTANT, "valid", 3, "我很少考虑这个。"),
    ("答案：同意 解释：大多数人都这么想。", ZH_AGREE, "valid", 2, "大多数人都这么想。"),
    ("答案：非常不同意。解释：这不符合事实。", ZH_AGREE, "valid", 4, "这不符合事实。"),
    ("我的回答是：4 解释：传统很重要。", ZH_AGREE, "valid", 4, "传统很重要。"),
    ("答案：2或3 解释：很难说。", ZH_AGREE, "ambiguous", None, "很难说。"),
    ("答案：8 解释：非常同意。", ZH_AGREE, "out_of_range", None, "非常同意。"),
    ("作为一个人工智能，我没有个人观点。", ZH_AGREE, "refusal", None, ""),
    ("作为AI语言模型，我无法回答这个问题。", ZH_AGREE, "refusal", None, ""),
    ("答案：2 解释：我没有个人的看法，但大多数人同意。", ZH_AGREE, "refusal", None, "我没有个人的看法"),
    ("答案：2 解释：有些人认为重要，有些人认为不重要。", ZH_IMPORTANT, "hedge", None, "有些人"),
    ("有的人同意，有的人不同意。", ZH_AGREE, "hedge", None, ""),
    ("答案：1 解释：所有人都应该有自由，所有人都平等。", ZH_AGREE, "valid", 1, "所有人"),
    ("2. 同意，我认为这是对的。", ZH_AGREE, "valid", 2, "同意"),
    ("选项3 解释：不同意这种说法。", ZH_AGREE, "valid", 3, "不同意这种说法。"),
    # replies seen from SmolLM2-135M (options as shown)
    ("1. Yes\n2. No\nReply in the format", ["Yes", "No"], "ambiguous", None, ""),
    ("1. 是\n2. 否\n请按以下格式回答：“答案：", ["是", "否"], "unparsed", None, ""),
    ("Answer: 1. Once a year", ["Never", "Once a year", "Once a month"], "ambiguous", None, ""),
    ("Answer: 2. Once a year", ["Never", "Once a year", "Once a month"], "valid", 2, ""),
    ("Answer: No Explanation:", AGREE, "unparsed", None, ""),
    ("答案：1. 1. 2. 3. 4. 5. 6. 7. 8.", ["是", "否"], "ambiguous", None, ""),
]


def test_table_is_large_enough():
    assert len(CASES) >= 40
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in c[0]) for c in CASES) >= 15


@pytest.mark.parametrize("reply, options, status, position, explanation", CASES)
def test_parse_table(reply, options, status, position, explanation):
    p = parse_answer(reply, options)
    assert p.status == status, p
    assert (p.position + 1 if p.position is not None else None) == position
    assert p.valid == (status == "valid")
    assert p.explanation.startswith(explanation), p.explanation


def test_first_sentence():
    assert first_sentence("One. Two.") == "One."
    assert first_sentence("It costs 3.5 dollars. Yes.") == "It costs 3.5 dollars."
    assert first_sentence("第一句。第二句。") == "第一句。"
    assert first_sentence("no end") == "no end"


@pytest.mark.parametrize("reply, verdict", [
    ("Yes", True), ("yes, they contradict", True), ("No.", False), ("**No**", False), ("是", True), ("是的，矛盾", True),
    ("否", False), ("不矛盾", False), ("不是", False), ("Maybe", None), ("", None), ("Nobody knows", None),
])
def test_judge_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.lists(st.text(min_size=1, max_size=30), min_size=2, max_size=10))
def test_parser_never_raises(reply, options):
    p = parse_answer(reply, options)
    assert p.status in STATUSES
    assert (p.position is None) != p.valid
    if p.valid:
        assert 0 <= p.position < len(options)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Answer: ", "答案：", "answer is ", "回答："]), st.integers(-5, 40),
       st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_marker_then_number(marker, n, tail):
    p = parse_answer(f"{marker}{n} Explanation: {tail}", AGREE)
    assert p.status in STATUSES
    if p.valid:
        assert 0 <= p.position < len(AGREE)
