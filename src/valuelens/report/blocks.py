"""The pieces a report section is made of: text, tables and plots.

Sections are plain data; the templates decide how they look. Numbers stay
numbers until the template formats them (3 decimals; p-values below 0.001
as "<0.001").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .figures import to_json
from .i18n import tr

MAX_EMBED = 200  # rows of a raw table embedded in the report (folded); all rows are in results/


@dataclass
class Cell:
    v: Any
    rowspan: int = 1
    note: str = ""  # small text after the value, e.g. a rank
    kind: str = ""  # "p": a p-value; "flag": highlighted


@dataclass
class Section:
    id: str
    title: str
    blocks: list[dict] = field(default_factory=list)
    status: str = "ok"  # "ok" | "not run" | "no data yet"
    reason: str = ""

    def text(self, text: str, cls: str = "") -> None:
        self.blocks.append({"kind": "text", "text": text, "cls": cls})

    def items(self, items: list, title: str = "") -> None:
        self.blocks.append({"kind": "list", "items": items, "title": title})

    def table(self, columns: list[str], rows: list[list], title: str = "", caption: str = "",
              collapse: bool = False) -> None:
        """``collapse``: shown folded (a ``<details>`` the reader opens), with the row count beside the title."""
        self.blocks.append({"kind": "table", "columns": columns, "rows": rows, "title": title, "caption": caption,
                            "collapse": collapse, "n_rows": len(rows)})

    def frame(self, df: pd.DataFrame, title: str = "", caption: str = "", max_rows: int | None = None,
              collapse: bool = True) -> None:
        """A table as exported: folded by default, every row up to ``max_rows`` (default :data:`MAX_EMBED`; the
        rest are in results/, and the caption says so)."""
        cap = MAX_EMBED if max_rows is None else max_rows
        shown = df.head(cap)
        if len(df) > cap:
            more = tr("First {n} of {total} rows; all rows are in the results files.", n=cap, total=len(df))
            caption = f"{caption} {more}".strip()
        rows = [[_plain(v) for v in r] for r in shown.itertuples(index=False, name=None)]
        self.table([str(c) for c in df.columns], rows, title, caption, collapse=collapse)
        self.blocks[-1]["n_rows"] = len(df)

    def plot(self, fig: go.Figure, title: str = "", caption: str = "", key: str = "") -> None:
        """``key`` names the figure type (the div's data-figure), so tests and readers can find it."""
        height = int(fig.layout.height or 450)  # the div gets it too, so resizing keeps the height
        self.blocks.append({"kind": "plot", "json": to_json(fig), "title": title, "caption": caption, "height": height,
                            "key": key})

    def traces(self, key: str, title: str, groups: list[tuple[str, list[dict]]], caption: str = "") -> None:
        """A trace viewer: a select over the traces, grouped ((group label, [trace])); a trace is {"id", "label",
        "facts": [(name, value)], "stages": [(stage, text)]}. The chosen trace is shown, the others are hidden."""
        self.blocks.append({"kind": "traces", "key": key, "title": title, "groups": groups, "caption": caption,
                            "traces": [t for _, ts in groups for t in ts]})

    @property
    def n_plots(self) -> int:
        return sum(b["kind"] == "plot" for b in self.blocks)


def _plain(v: Any) -> Any:
    """numpy scalars → Python; containers → short text."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, (list, tuple, dict)) or (hasattr(v, "tolist") and not isinstance(v, str)):
        return str(v.tolist() if hasattr(v, "tolist") else v)
    return v
