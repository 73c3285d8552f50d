"""Position bias of the layer's A/B answers (``dilemma_position_bias``).

Every question of the layer offers two options, so the no-bias baseline is
½ / ½ over positions 1 (label A, the option shown first) and 2 (label B);
metrics.position_bias gives the total variation from it (= |share of A − ½|),
the JS distance, the most chosen position and its share, n and
``position_dominated`` (TV > metrics.POSITION_TV_THRESHOLD). Rows per part
(``dilemmas``: the Kidder prompt forms, condition ``form`` only; ``chains``:
escalation steps in both orders; ``moralchoice``: the six forms), language
and forms (each form, then ``all``). Invalid answers and ties are left out
(``position_n`` counts the rest). Compare forms put Yes at A, so a yes-bias
shows as position 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from valuelens.metrics import position_bias

COLUMNS = ["part", "language", "forms", "position_tv", "position_js_distance", "top_position",
           "top_position_share", "position_n", "position_p", "position_dominated"]
LABEL_POSITION = {"A": 1, "B": 2}


def _rows(part: str, df: pd.DataFrame, form_col: str, positions: Sequence) -> list[dict]:
    df = df.assign(_pos=list(positions))
    out = []
    for lang, g in df.groupby("language", sort=False):
        groups = [(str(f), h) for f, h in g.groupby(form_col, sort=False)] + [("all", g)]
        for forms, h in groups:
            out.append({"part": part, "language": lang, "forms": forms,
                        **position_bias(h["_pos"].tolist(), [2] * len(h))})
    return out


def table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The position-bias rows of every part that has a response table."""
    rows: list[dict] = []
    resp = tables.get("dilemma_responses")
    if resp is not None and len(resp):
        base = resp[resp["condition"] == "form"]
        rows += _rows("dilemmas", base, "form", [LABEL_POSITION.get(x) for x in base["chosen_label"]])
    chains = tables.get("dilemma_chain_responses")
    if chains is not None and len(chains):
        rows += _rows("chains", chains, "order", [LABEL_POSITION.get(x) for x in chains["chosen_label"]])
    mc = tables.get("dilemma_moralchoice_responses")
    if mc is not None and len(mc):
        # order 0 shows action 1 first; a decision for the action shown first is position 1
        pos = [None if d not in ("action1", "action2") else 1 + ((d == "action1") != (o == 0))
               for d, o in zip(mc["decision"], mc["order"])]
        rows += _rows("moralchoice", mc.assign(language="en"), "form", pos)
    return pd.DataFrame(rows, columns=COLUMNS)
