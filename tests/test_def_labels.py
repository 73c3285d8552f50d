"""DEF option labels (issue 14, item 2): which questions keep their order, which get letters, how a reply
to a letter-labelled scale is read (letter, scale value, option text must agree), and that DEF's position
bias only counts the questions that were shuffled."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valuelens.data.survey import Question
from valuelens.layers.def_layer.parsing import STATUSES, parse_answer
from valuelens.layers.def_layer.prompts import is_numeric_scale, layout, numeric_text, question_text
from valuelens.layers.def_layer.tables import summary_table
from valuelens.metrics import position_bias

WVS_10 = ("Never justifiable", *map(str, range(2, 10)), "Always justifiable")


def test_numeric_text_and_scale_detection():
    assert [numeric_text(t) for t in ("7", " 10 ", "７", "-1", "7a", "Seven", "2.5", "")] == [7, 10, 7, -1, None, None,
                                                                                           None, None]
    assert is_numeric_scale(Question("q", {"en": "?"}, {"en": WVS_10}))
    assert not is_numeric_scale(Question("q", {"en": "?"}, {"en": ("Agree", "Disagree")}))
    # numeric in one language only (zh writes the top of the scale as "10"): kept in order in every language
    both = Question("q", {"en": "?", "zh": "？"}, {"en": ("Low", "High"), "zh": ("低", "2")})
    assert is_numeric_scale(both) and layout(both, "en", [1, 0]).perm == (0, 1)


def test_layouts():
    shuffled = [3, 1, 0, 2]
    words = Question("q", {"en": "?"}, {"en": ("Strongly agree", "Agree", "Disagree", "Strongly disagree")})
    assert layout(words, "en", shuffled).perm == (3, 1, 0, 2) and not layout(words, "en", shuffled).letters
    wvs = Question("q", {"en": "?"}, {"en": WVS_10})
    lay = layout(wvs, "en", list(range(9, -1, -1)))
    assert lay.perm == tuple(range(10)) and not lay.letters  # numbers equal positions: numbered, in order
    text = question_text("How justifiable?", wvs.options["en"], "en", lay)
    assert "\n1. Never justifiable\n2. 2\n" in text and "\n10. Always justifiable\n" in text
    assert "Answer: <number>" in text
    zero = Question("q", {"en": "?", "zh": "？"}, {"en": tuple(map(str, range(5))), "zh": tuple(map(str, range(5)))})
    lay = layout(zero, "zh", [4, 3, 2, 1, 0])
    assert lay.letters and lay.perm == tuple(range(5)) and lay.values == (0, 1, 2, 3, 4)
    text = question_text("？", zero.options["zh"], "zh", lay)
    assert "\nA. 0\nB. 1\n" in text and "<选项字母>" in text


def test_letter_scale_reads_numbers_as_wvs_codes():
    """WVS-7 Q241-style: codes 0..10, words at codes 0, 1 and 10, so the numbers 2..9 sit at positions 3..10."""
    opts = ("It is against democracy", "Not an essential characteristic of democracy", *map(str, range(2, 10)),
            "An essential characteristic of democracy")
    q = Question("Q241", {"en": "Democracy: people choose their leaders."}, {"en": opts},
                 extra={"codes": list(range(11))})
    lay = layout(q, "en", [3, 1, 0, 2, 4, 5, 6, 7, 8, 9, 10])
    assert lay.letters and lay.perm == tuple(range(11)) and lay.values == tuple(range(11))
    cases = {"Answer: B": 1, "Answer: 1": 1, "Answer: 0": 0, "Answer: 10": 10, "Answer: 7": 7, "Answer: H": 7,
             "Answer: H (7)": 7, "答案：Ｋ 解释：很重要。": 10, "C.": 2, "Answer: An essential characteristic of democracy": 10,
             "Answer: I think 5": 5}
    for reply, want in cases.items():
        p = parse_answer(reply, opts, lay.letters, lay.values)
        assert p.valid and p.position == want, (reply, p)
    for reply, status in {"Answer: H 5": "ambiguous", "Answer: L": "out_of_range", "Answer: 11": "out_of_range",
                          "Answer: I think so": "unparsed", "A. x\nB. y": "ambiguous", "": "empty"}.items():
        assert parse_answer(reply, opts, lay.letters, lay.values).status == status, reply
    mismatch = Question("x", {"en": "?"}, {"en": ("Low", "5", "High")})  # no codes: only the written number counts
    lay2 = layout(mismatch, "en", [2, 0, 1])
    assert lay2.letters and lay2.values == (None, 5, None)
    assert parse_answer("Answer: 5", mismatch.options["en"], True, lay2.values).position == 1
    assert parse_answer("Answer: 2", mismatch.options["en"], True, lay2.values).status == "out_of_range"


def test_zh_option_marker_on_an_ordered_scale():
    zh = ("表示一点儿也不重要", *map(str, range(2, 11)))
    for reply in ("选项：10", "答案：10 解释：很重要。", "10"):
        p = parse_answer(reply, zh)
        assert p.valid and p.position == 9, (reply, p)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200), st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=26),
       st.booleans(), st.data())
def test_letter_parser_never_raises(reply, options, with_values, data):
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(-3, 30)), min_size=len(options),
                                max_size=len(options))) if with_values else None
    p = parse_answer(reply, options, True, values)
    assert p.status in STATUSES and (p.position is None) != p.valid
    if p.valid:
        assert 0 <= p.position < len(options)


def test_shuffled_flag_and_position_bias_over_shuffled_questions_only():
    words = Question("q", {"en": "?"}, {"en": ("Agree", "Neutral", "Disagree")})
    wvs = Question("s", {"en": "?"}, {"en": WVS_10})
    assert layout(words, "en", [2, 0, 1]).shuffled and not layout(words, "en", None).shuffled
    assert layout(words, "en", None).perm == (0, 1, 2) and not layout(wvs, "en", [1, 0, *range(2, 10)]).shuffled
    keys = {"model": "m", "language": "en", "country": "China", "final": True, "attempt": 0, "valid": True}
    # a model that likes the low end of the 1-10 scale (shown in order: position 1 = value 1) and answers the
    # shuffled 3-option questions at positions 1, 2, 3, 1, 2, 3
    rows = [{**keys, "question_id": f"s{i}", "shown_number": 1, "shown_order": "A,B,C,D,E,F,G,H,I,J",
             "shuffled": False} for i in range(6)]
    rows += [{**keys, "question_id": f"q{i}", "shown_number": 1 + i % 3, "shown_order": "C,A,B", "shuffled": True}
             for i in range(6)]
    answers = pd.DataFrame(rows)
    cols = ["n_questions", "mean_kl_def", "mean_kl_eps", "share_close", "share_close_eps", "n_questions_valid",
            "mean_kl_valid", "mean_kl_valid_eps", "share_close_valid"]
    dims = pd.DataFrame([{**{k: keys[k] for k in ("model", "language", "country")}, "dimension": "(all)",
                          **dict.fromkeys(cols, float("nan"))}])
    s = summary_table({"def_answers": answers}, dims).iloc[0]
    want = position_bias([1, 2, 3, 1, 2, 3], [3] * 6)
    assert s["position_tv"] == pytest.approx(want["position_tv"]) == pytest.approx(0.0)
    assert s["position_n"] == 6
    assert position_bias([1] * 6 + [1, 2, 3, 1, 2, 3], [10] * 6 + [3] * 6)["position_tv"] > 0.2  # what mixing gave
