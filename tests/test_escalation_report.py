"""Escalation in the report (issue 22.4): a rank-trajectory figure per context mode, the stability-by-value
table, and the flags "value ranking unstable" / "volatile value" with their thresholds; scripted models."""

from __future__ import annotations

import re
from html import unescape

from test_escalation import ORDER, _prefer, run
from valuelens.comparisons.catalogue import CHAIN_TAU_FLAG, CHAIN_VOLATILE_FLAG
from valuelens.data.dilemmas import builtin_chains
from valuelens.report import build_report
from valuelens.report.headline import compute, flags
from valuelens.report.load import report_data


def _flip_flop():
    """ORDER at odd steps, its reverse at even ones: on the balanced chain set the ranking turns over at
    every step (τ-b = −1, Care between rank 1 and 6: volatility 5)."""
    chains = builtin_chains()
    rules = []
    for t in reversed(range(5)):
        order = ORDER if t % 2 == 0 else tuple(reversed(ORDER))
        rules += [r for r in _prefer(order, chains) if any(c.steps[t].choices[k][lang] in r["contains"]
                                                           for c in chains for k in (0, 1) for lang in ("en",))]
    return rules


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_flags_and_figures_per_mode(tmp_path):
    res = run(tmp_path, {"steady": {"rules": _prefer()}, "flipper": {"rules": _flip_flop()}},
              "escalation: {context: [full, none]}")
    t = res.tables
    st = t["dilemma_chain_stability"]
    mean = st[(st.transition == "mean") & (st.label_set == "mft")]
    assert (mean.loc[mean.model == "flipper", "estimate"] == -1).all()
    assert (mean.loc[mean.model == "steady", "estimate"] == 1).all()
    data = report_data(res.out_dir)
    raised = flags(data, compute(data))
    unstable = [f for f in raised if f["metric"].startswith("escalation ranking stability")]
    volatile = [f for f in raised if f["metric"].startswith("escalation value volatility")]
    assert {f["model"] for f in unstable} == {"flipper"} and len(unstable) == 2  # one per context mode
    assert {f["where"] for f in unstable} == {"language en, context full", "language en, context none"}
    assert all(f["rule"] == f"< {CHAIN_TAU_FLAG:g}" for f in unstable)
    assert {f["model"] for f in volatile} == {"flipper"} and all(f["value"] > CHAIN_VOLATILE_FLAG for f in volatile)
    assert any(f["where"] == "language en, context full, value Care" and f["value"] == 5 for f in volatile)
    html = build_report(res.out_dir).read_text(encoding="utf-8")
    keys = re.findall(r'data-figure="(dilemma-trajectories)"', html)
    assert len(keys) == 2 * 2  # contexts x label sets (MFT, Schwartz)
    text = text_of(html)
    assert "Which values stay put under escalation" in text and "volatile" in text and "unstable" in text
    assert f"value ranking unstable: mean Kendall τ-b between consecutive steps < {CHAIN_TAU_FLAG:g}" in text
    assert f"volatile value: mean |rank change| per step > {CHAIN_VOLATILE_FLAG:g}" in text


def test_position_dominated_chains_say_so_above_the_figure(tmp_path):
    res = run(tmp_path, {"m": {"rules": [{"contains": "", "probs": [0.9, 0.1]}]}},
              "limit: 4, escalation: {context: [full, none]}")
    text = text_of(build_report(res.out_dir).read_text(encoding="utf-8"))
    for ctx in ("full", "none"):
        assert f"m (en, {ctx} context): the chain answers are position-dominated (position TV 0.50)" in text
    raised = flags(*(lambda d: (d, compute(d)))(report_data(res.out_dir)))
    assert any(f["metric"] == "escalation position bias (TV)" for f in raised)
    assert not any(f["metric"].startswith("escalation ranking stability") for f in raised)  # τ undefined: no claim
