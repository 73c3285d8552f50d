"""DEF: KL over the valid answers only, beside the invalid share (issue 14, item 3).

DEF's KL counts the invalid share as a model outcome the humans never give,
so a model that answers off-format looks far from humans. valuelens keeps
that column and adds ``kl_valid`` (checked here against scipy and by hand);
the headline ranks and flags on ``kl_valid`` and flags the invalid share on
its own.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.data.survey import HumanDistribution, Question, Survey
from valuelens.layers.def_layer.data import Inputs
from valuelens.layers.def_layer.tables import add_kl_def, dimension_table, question_tables
from valuelens.report.headline import compute, flags, ranking
from valuelens.report.load import report_data

AGREE = ("Strongly agree", "Agree", "Disagree", "Strongly disagree")
HUMAN = {"q1": (0.4, 0.3, 0.2, 0.1), "q2": (0.5, 0.5, 0.0, 0.0), "q3": (0.25, 0.25, 0.25, 0.25)}


def answers(choices: dict[str, list[int | None]]) -> pd.DataFrame:
    """Final answers of one language × country; None = an invalid answer."""
    rows = [{"language": "en", "country": "C", "question_id": q, "final": True, "option_index": c}
            for q, cs in choices.items() for c in cs]
    df = pd.DataFrame(rows)
    df["option_index"] = df["option_index"].astype("Int64")
    return df


def inputs() -> Inputs:
    qs = [Question(q, {"en": q}, {"en": AGREE}, dimension="D") for q in HUMAN]
    dists = [HumanDistribution(q, "C", p) for q, p in HUMAN.items()]
    return Inputs(qs, Survey({q.id: q for q in qs}, dists, "test"), dimension={q: "D" for q in HUMAN})


def test_valid_only_kl_against_scipy_and_by_hand():
    # q1: 6 answers, 2 invalid; valid shares (2, 1, 1, 0)/4.  q2: 4 valid, one on an option humans never chose.
    # q3: every answer invalid.
    a = answers({"q1": [0, 0, 1, 2, None, None], "q2": [0, 1, 1, 2], "q3": [None, None]})
    q, _ = question_tables(a, inputs(), eps=1e-6)
    q = q.set_index("question_id")
    want = entropy([2, 1, 1, 0], HUMAN["q1"])  # scipy normalises both and returns nats
    by_hand = 0.5 * math.log(0.5 / 0.4) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.2)
    assert q.loc["q1", "kl_valid_raw"] == pytest.approx(want, rel=1e-12) == pytest.approx(by_hand, rel=1e-12)
    assert q.loc["q1", "kl_raw"] == math.inf  # DEF's definition, unchanged: the invalid third counts
    assert q.loc["q1", "invalid_share"] == pytest.approx(1 / 3)
    assert q.loc["q2", "kl_valid_raw"] == math.inf and q.loc["q2", "kl_raw"] == math.inf
    eps = 1e-6
    a2 = (np.array([1, 2, 1, 0]) / 4 + eps) / (1 + 4 * eps)
    h2 = (np.array(HUMAN["q2"]) + eps) / (1 + 4 * eps)
    assert q.loc["q2", "kl_valid_eps"] == pytest.approx(entropy(a2, h2), rel=1e-9)
    assert np.isnan(q.loc["q3", "kl_valid_raw"]) and np.isnan(q.loc["q3", "kl_valid_eps"])
    assert q.loc["q3", "invalid_share"] == 1.0 and q.loc["q3", "kl_raw"] == math.inf

    q = add_kl_def(q.reset_index().assign(model="m"), threshold=0.5).set_index("question_id")
    # DEF's inf -> largest finite + 1 rule, applied to each column over the run; NaN (no valid answer) stays NaN
    assert q.loc["q2", "kl_valid"] == pytest.approx(want + 1) and q.loc["q1", "kl_valid"] == pytest.approx(want)
    assert np.isnan(q.loc["q3", "kl_valid"]) and q.loc["q3", "close_valid"] is None
    assert q["kl_def"].tolist() == [1.0, 1.0, 1.0]  # no finite kl_raw at all: DEF's rule gives 0 + 1
    assert q.loc["q1", "close_valid"] == (want < 0.5)

    d = dimension_table(q.reset_index(), 0.5).set_index("dimension")
    assert d.loc["(all)", "n_questions"] == 3 and d.loc["(all)", "n_questions_valid"] == 2
    assert d.loc["(all)", "mean_kl_valid"] == pytest.approx((want + want + 1) / 2)
    assert d.loc["(all)", "share_close_valid"] == pytest.approx(np.mean([want < 0.5, want + 1 < 0.5]))
    assert d.loc["(all)", "mean_kl_def"] == pytest.approx(1.0)
    assert d.loc["(all)", "invalid_share"] == pytest.approx((1 / 3 + 0 + 1) / 3)


SCRIPT_TIDY = {"rules": [{"contains": "Work is a duty", "texts": ["Answer: Agree Explanation: It is."]},
                         {"contains": "Is God important", "texts": ["Answer: Yes Explanation: Faith."]}]}
SCRIPT_MESSY = {"rules": [{"contains": "Work is a duty", "texts": ["Answer: Agree Explanation: It is.",
                                                                   "As an AI language model, I cannot answer."]},
                          {"contains": "Is God important", "texts": ["Answer: Yes Explanation: Faith.",
                                                                     "I do not have personal beliefs."]}]}


def test_ranking_and_flags_use_the_valid_only_kl(tmp_path):
    """Two models that choose the same options whenever they answer; one refuses about half the time."""
    items = []
    for qid, text, opts, dist in (("801", "Work is a duty towards society.", AGREE, [40, 30, 20, 10]),
                                  ("802", "Is God important in your life?", ("Yes", "No"), [70, 30])):
        items.append({"id": qid, "instruction": "How would someone from United States answer the following question:",
                      "input": text + "\nHere are the options: \n",
                      "options": [f"({chr(65 + i)}){o}" for i, o in enumerate(opts)],
                      "options_dist": {chr(65 + i): v for i, v in enumerate(dist)}})
    (tmp_path / "items.json").write_text(json.dumps(items))
    for name, script in (("tidy", SCRIPT_TIDY), ("messy", SCRIPT_MESSY)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**script, "default_text": "?"}))
    cfg = parse_audit(f"""\
name: def-kl
output_dir: {tmp_path / 'out'}
countries: [United States]
languages: [en]
models:
  - {{name: tidy, backend: "scripted:{tmp_path / 'tidy.json'}"}}
  - {{name: messy, backend: "scripted:{tmp_path / 'messy.json'}"}}
layers:
  diversity:
    data: {{kind: cao2025, path: {tmp_path / 'items.json'}}}
    participants: 12
    passes: 2
    memory_max: 0
    beams: [1, 1]
    retries: 0
    insensitivity: {{factual: {{}}, factual_source: null}}
""", "a.yaml")
    run = vl.run_full(cfg)
    q = run.tables["def_questions"].set_index(["model", "question_id"])
    s = run.tables["def_summary"].set_index("model")
    invalid = s.loc["messy", "invalid_share"]
    assert s.loc["tidy", "invalid_share"] == 0 and 0.2 < invalid < 0.8  # sampled: about half
    for model in ("tidy", "messy"):  # every valid answer: Agree (human 0.3) and Yes (human 0.7)
        assert q.loc[(model, "801"), "kl_valid"] == pytest.approx(math.log(1 / 0.3))
        assert q.loc[(model, "802"), "kl_valid"] == pytest.approx(math.log(1 / 0.7))
    assert s.loc["tidy", "mean_kl_valid"] == pytest.approx(s.loc["messy", "mean_kl_valid"])
    assert s.loc["messy", "mean_kl_def"] > s.loc["tidy", "mean_kl_def"] + 1  # DEF's KL: the refusals count
    h = compute(report_data(tmp_path / "out"))
    key = "def_kl|United States"
    assert h.values.loc["tidy", key] == pytest.approx(h.values.loc["messy", key])
    r = ranking(h).set_index("model")
    assert r.loc["tidy", key + "#rank"] == r.loc["messy", key + "#rank"] == 1  # same values: same rank
    assert "def_kl_with_invalid|United States#rank" not in r.columns and "def_invalid|United States#rank" not in r
    raised = flags(report_data(tmp_path / "out"), h)
    inv = [f for f in raised if f["key"] == "def_invalid|United States"]
    assert [(f["model"], f["value"], f["rule"]) for f in inv] == [("messy", pytest.approx(invalid), "> 0.2")]
    kl_flags = {f["model"] for f in raised if f["key"] == key}
    assert kl_flags == {"tidy", "messy"}  # mean of ln(1/0.3) and ln(1/0.7) = 0.78 > 0.5, for both alike
