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

from valuelens.comparisons.catalogue import POSITION_FLAG, beyond

from .i18n import N_, tr, tr_known
from .load import ReportData

RULE_TEXT = N_("position-dominated = total variation (TV) between the positions of the chosen options and the "
               "no-bias baseline (each item with k options: 1/k on each of its positions) above {at} — with two "
               "options, one position chosen in more than {pct}% of the answers — and p < {alpha} for that TV under "
               "no bias (Monte Carlo, {draws} seeded draws of uniform choices), so a few answers are not enough; "
               "where the humans' answers are known (first-token: each item's most chosen option; MARK: the "
               "respondents' answers), also a TV above {at} from the humans' own positions, as survey scales are "
               "not position-neutral")


def rule() -> str:
    """The position-bias rule in the report's language."""
    return tr(RULE_TEXT, at=f"{THRESHOLD:g}", pct=f"{50 + 100 * THRESHOLD:.0f}", alpha=f"{ALPHA:g}", draws=DRAWS)


RULE = rule()  # English, for code that quotes it


@dataclass(frozen=True)
class Source:
    name: str
    layer: str  # LAYERS key
    part: str  # shown to the reader
    table: str
    where: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ("condition", "language", "country")


SOURCES = (
    Source("first_token", "first_token", N_("first-token probe"), "first_token_summary"),
    Source("dilemmas", "dilemmas", N_("dilemmas (all prompt forms)"), "dilemma_position_bias",
           (("part", "dilemmas"), ("forms", "all"))),
    Source("chains", "dilemmas", N_("escalation chains (both orders)"), "dilemma_position_bias",
           (("part", "chains"), ("forms", "all"))),
    Source("moralchoice", "dilemmas", N_("MoralChoice (six forms)"), "dilemma_position_bias",
           (("part", "moralchoice"), ("forms", "all"))),
    Source("def", "def", N_("DEF answers (shown positions)"), "def_summary"),
    Source("mark", "mark", N_("MARK answers"), "mark_summary", (("method", "mark"),)),
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
        part = f"{tr(self.source.part)}, " if with_part else ""
        where = f"{self.where}: " if self.where else ""
        human = (tr(" (humans' own positions: TV {tv}; from them: {d})", tv=f"{self.human_tv:.3f}",
                    d=f"{self.vs_human:.3f}") if self.vs_human == self.vs_human else "")
        return f"{self.model} — {part}{where}" + tr(
            "position TV {tv}{human}, position {top} chosen in {pct}% of {n} answers", tv=f"{self.tv:.3f}",
            human=human, top=self.top_position, pct=f"{100 * self.share:.0f}", n=self.n)


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
            if not beyond(">", r["position_tv"], POSITION_FLAG):  # as printed: a TV shown as 0.300 is not above 0.3
                continue
            where = ", ".join(f"{tr_known(k)} {r[k]}" for k in src.keys if k in r and pd.notna(r[k]))
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
        if df is not None and "position_tv" in df.columns and len(_rows(df, src)) and tr(src.part) not in parts:
            parts.append(tr(src.part))
    return parts


def banner(found: list[Hit]) -> str:
    models = ", ".join(dict.fromkeys(h.model for h in found))
    return tr("Position-dominated ({models}): not a value finding. See the position-bias note of this layer.",
              models=models)
