"""The position-bias columns of the first-token, DEF and MARK summaries, on hand-made answers.

Each summary must report metrics.position_bias of where the chosen option was
shown: first-token = the top option's letter, DEF = ``shown_number`` (after
the per-question reshuffle), MARK = the answer number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuelens.layers.def_layer.tables import summary_table
from valuelens.layers.first_token import summarise
from valuelens.layers.mark import evaluate

POS = ["position_tv", "position_js_distance", "top_position", "top_position_share", "position_n",
       "position_dominated"]


def test_first_token_summary_reports_the_top_options_position():
    # 4 items with 4 options all answered C, plus one 2-option item answered B, one unparsed (no top option)
    items = pd.DataFrame({"condition": "ZS", "language": "en", "country": "China", "question_id": list("abcdef"),
                          "top_option": ["C", "C", "C", "C", "B", None], "n_options": [4, 4, 4, 4, 2, 3],
                          "covered_mass": 0.9, "one_minus_jsd": np.nan, "kl": np.nan, "emd": np.nan})
    options = pd.DataFrame(columns=["condition", "language", "question_id", "country", "option", "prob"])
    s = summarise(items, options).iloc[0]
    # baseline over 5 valid items: positions 1, 2: (4/4 + 1/2)/5 = 0.3; 3, 4: (4/4)/5 = 0.2
    # observed: C 0.8, B 0.2 -> TV = ½(0.3 + 0.1 + 0.6 + 0.2) = 0.6
    assert s["position_tv"] == pytest.approx(0.6)
    assert (s["top_position"], s["top_position_share"], s["position_n"]) == (3, 0.8, 5)
    assert "first_option_share" not in s.index  # option A alone said "no bias"
    assert s["position_p"] < 0.05 and bool(s["position_dominated"])  # no human answers: the baseline decides


def test_first_token_position_is_judged_against_the_humans_modal_answers():
    """A model whose top option is the humans' most chosen one is not position-dominated, however skewed."""
    k, n = 4, 12
    human = [0.1, 0.2, 0.6, 0.1]  # humans' mode: C on every item
    rows = [{"condition": "ZS", "language": "en", "country": "China", "question_id": f"q{i}", "top_option": top,
             "n_options": k, "covered_mass": 0.9, "one_minus_jsd": np.nan, "kl": np.nan, "emd": np.nan}
            for i in range(n) for top in ["C"]]
    options = pd.DataFrame([{"condition": "ZS", "language": "en", "country": "China", "question_id": f"q{i}",
                             "option": lab, "prob": 0.25, "human_prob": hp}
                            for i in range(n) for lab, hp in zip("ABCD", human)])
    s = summarise(pd.DataFrame(rows), options).iloc[0]
    assert s["position_tv"] == pytest.approx(0.75) and s["reference_position_tv"] == pytest.approx(0.75)
    assert s["position_tv_vs_reference"] == 0.0 and not bool(s["position_dominated"])
    always_a = summarise(pd.DataFrame(rows).assign(top_option="A"), options).iloc[0]
    assert always_a["position_tv_vs_reference"] == 1.0 and bool(always_a["position_dominated"])


def test_def_summary_reports_the_shown_position():
    keys = {"model": "m", "language": "en", "country": "China"}
    # 3-option questions, shuffled; the model always answers the option shown first (1 invalid answer)
    answers = pd.DataFrame([{**keys, "question_id": f"Q{i}", "final": True, "valid": i != 3, "attempt": 0,
                             "shown_number": pd.NA if i == 3 else 1, "shown_order": ["A,B,C", "C,A,B", "B,C,A"][i % 3]}
                            for i in range(6)]).astype({"shown_number": "Int64"})
    cols = ["n_questions", "mean_kl_def", "mean_kl_eps", "share_close", "share_close_eps", "n_questions_valid",
            "mean_kl_valid", "mean_kl_valid_eps", "share_close_valid"]
    dims = pd.DataFrame([{**keys, "dimension": "(all)", **{c: np.nan for c in cols}}])
    s = summary_table({"def_answers": answers}, dims).iloc[0]
    assert s["position_tv"] == pytest.approx(2 / 3)  # always first of 3: 1 − 1/3
    assert (s["top_position"], s["top_position_share"], s["position_n"]) == (1, 1.0, 5)


def test_mark_summary_reports_the_answer_position():
    recs = [{"method": "mark", "language": "en", "country": "China", "respondent_id": r, "question_id": "Q1",
             "truth": 1 + r % 2, "answer": a, "valid": a is not None} for r, a in enumerate([2, 2, 1, None])]
    resp = evaluate.responses(recs, {r: 1.0 for r in range(4)}, {"Q1": 2})
    s = evaluate.summary(resp, evaluate.items(resp, {}), "sampled", 100, 0).iloc[0]
    assert s["position_tv"] == pytest.approx(2 / 3 - 1 / 2)  # 2 of 3 valid at position 2
    assert (s["top_position"], s["position_n"], bool(s["position_dominated"])) == (2, 3, False)
    # reference = the respondents' real answers (1, 2, 1, 2): TV 0 from the baseline; vs the 3 answered: (1, 2, 1)
    assert s["reference_position_tv"] == 0.0 and s["position_tv_vs_reference"] == pytest.approx(1 / 3)
    assert set(POS) <= set(s.index)
