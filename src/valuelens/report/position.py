"""Position-dominated choices: where the report must not present answers as value findings.

Reads the ``position_*`` columns the layers export (metrics.position_bias:
total variation between the positions of the chosen options and the no-bias
baseline of the items' option counts). A row is position-dominated when its
``position_dominated`` column is true: position TV > THRESHOLD and its
p-value under no bias < ALPHA (see RULE).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from valuelens.metrics import POSITION_ALPHA as ALPHA
from valuelens.metrics import POSITION_DRAWS as DRAWS
from valuelens.metrics import POSITION_TV_THRESHOLD as THRESHOLD

from .load import ReportData

RULE = (f"position-dominated = total variation (TV) between the positions of the chosen options and the no-bias "
        f"baseline (each item with k options: 1/k on each of its positions) above {THRESHOLD:g} — with two options, "
        f"one position chosen in more than {50 + 100 * THRESHOLD:.0f}% of the answers — and p < {ALPHA:g} for that "
        f"TV under no bias (Monte Carlo, {DRAWS} seeded draws of uniform choices), so a few answers are not enough; "
        f"where the humans' answers are known (first-token: each item's most chosen option; MARK: the respondents' "
        f"answers), also a TV above {THRESHOLD:g} from the humans' own positions, as survey scales are not "
        f"position-neutral")


@dataclass(frozen=True)
class Source:
    name: str
    layer: str  # LAYERS key
    part: str  # shown to the reader
    table: str
    where: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ("condition", "language", "country")


SOURCES = (
    Source("first_token", "first_token", "first-token probe", "first_token_summary"),
    Source("dilemmas", "dilemmas", "dilemmas (all prompt forms)", "dilemma_position_bias",
           (("part", "dilemmas"), ("forms", "all"))),
    Source("chains", "dilemmas", "escalation chains (both orders)", "dilemma_position_bias",
           (("part", "chains"), ("forms", "all"))),
    Source("moralchoice", "dilemmas", "MoralChoice (six forms)", "dilemma_position_bias",
           (("part", "moralchoice"), ("forms", "all"))),
    Source("def", "def", "DEF answers (shown positions)", "def_summary"),
    Source("mark", "mark", "MARK answers", "mark_summary", (("method", "mark"),)),
)
FIGURE_SOURCE = {"dilemma-trajectories": "chains"}  # a figure's answers; default: its layer's first source
NOT_AFFECTED = ("position",)  # figure keys starting with these show the position measure itself


def figure_hits(found: list[Hit], layer: str, key: str) -> list[Hit]:
    """The hits that concern a figure of ``layer`` with data-figure ``key``."""
    if key.startswith(NOT_AFFECTED):
        return []
    name = FIGURE_SOURCE.get(key) or next(s.name for s in SOURCES if s.layer == layer)
    return [h for h in found if h.source.name == name]


@dataclass(frozen=True)
class Hit:
    source: Source
    model: str
    where: str
    tv: float
    top_position: int
    share: float
    n: int
    human_tv: float = float("nan")  # the reference's own TV, and the TV between the two, where known
    vs_human: float = float("nan")

    def text(self, with_part: bool = True) -> str:
        part = f"{self.source.part}, " if with_part else ""
        where = f"{self.where}: " if self.where else ""
        human = (f" (humans' own positions: TV {self.human_tv:.3f}; from them: {self.vs_human:.3f})"
                 if self.vs_human == self.vs_human else "")
        return (f"{self.model} — {part}{where}position TV {self.tv:.3f}{human}, position {self.top_position} "
                f"chosen in {100 * self.share:.0f}% of {self.n} answers")


def _rows(df: pd.DataFrame, src: Source) -> pd.DataFrame:
    for col, value in src.where:
        df = df[df[col].astype(str) == value] if col in df.columns else df.iloc[0:0]
    return df


def hits(data: ReportData, layer: str | None = None) -> list[Hit]:
    """Every position-dominated row (all conditions), optionally of one layer."""
    out = []
    for src in SOURCES:
        if layer is not None and src.layer != layer:
            continue
        df = data.tables.get(src.table)
        if df is None or not {"model", "position_tv", "position_dominated"} <= set(df.columns):
            continue
        df = _rows(df, src)
        dominated = df["position_dominated"].map(lambda v: bool(v) if pd.notna(v) else False).astype(bool)
        for r in df[dominated].to_dict("records"):
            where = ", ".join(f"{k} {r[k]}" for k in src.keys if k in r and pd.notna(r[k]))
            out.append(Hit(src, str(r["model"]), where, float(r["position_tv"]), int(r["top_position"]),
                           float(r["top_position_share"]), int(r["position_n"]),
                           float(r.get("reference_position_tv", float("nan"))),
                           float(r.get("position_tv_vs_reference", float("nan")))))
    return out


def checked(data: ReportData, layer: str | None = None) -> list[str]:
    """The parts whose tables carry the position columns (optionally of one layer)."""
    parts = []
    for src in SOURCES:
        df = data.tables.get(src.table) if layer in (None, src.layer) else None
        if df is not None and "position_tv" in df.columns and len(_rows(df, src)) and src.part not in parts:
            parts.append(src.part)
    return parts


def banner(found: list[Hit]) -> str:
    models = ", ".join(dict.fromkeys(h.model for h in found))
    return f"Position-dominated ({models}): not a value finding. See the position-bias note of this layer."
