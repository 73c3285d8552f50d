"""Helpers the layer sections share: find a table or say it is missing; show the rest as exported."""

from __future__ import annotations

import pandas as pd

from .blocks import Section
from .headline import METRICS
from .i18n import plural, tr


def threshold(table: str, column: str) -> float | None:
    """The oversight threshold of the headline metric on ``table.column``, if there is one."""
    m = next((m for m in METRICS if m.table == table and m.column == column and m.flag), None)
    return m.flag[1] if m and m.flag else None


def need(sec: Section, tables: dict[str, pd.DataFrame], name: str, what: str,
         columns: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """The table, or None after a line in the section saying why ``what`` (already translated) is not shown."""
    df = tables.get(name)
    if df is None:
        sec.text(tr("{what}: not shown, this run has no table {name} (that part of the layer was not configured or "
                    "has not finished).", what=what, name=name), "warn")
        return None
    missing = [c for c in columns if c not in df.columns]
    if missing and not df.empty:
        sec.text(plural(len(missing), "{what}: not shown, table {name} lacks the column {columns}.",
                        "{what}: not shown, table {name} lacks the columns {columns}.", what=what, name=name,
                        columns=", ".join(missing)), "warn")
        return None
    if df.empty or not df[list(columns)].notna().any().all():
        sec.text(tr("{what}: not shown, table {name} has no rows with values.", what=what, name=name), "warn")
        return None
    return df


def rest(sec: Section, tables: dict[str, pd.DataFrame], shown: set[str], title: str = "") -> None:
    """The layer's tables not shown above, as exported (folded; long ones cut to their first rows)."""
    others = sorted(k for k in tables if k not in shown)
    if others:
        sec.text(tr("{title}: {names} (as exported, in results/).", title=title or tr("Other tables"),
                    names=", ".join(others)), "muted")
    for name in others:
        df = tables[name]
        sec.frame(df, name, tr("results/{name}.csv: {n} rows.", name=name, n=len(df)))
