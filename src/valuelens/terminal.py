"""Tables that fit the terminal: value columns split over several tables, or
low-priority columns left out (and named), never cells squeezed to "…".

Rich shrinks every column of a table that is wider than the console until the
text wraps letter by letter or ends in an ellipsis; at 80 columns the run
summary of a 4-model, 2-language audit and the built-in catalogue were
unreadable. Decision: a transposed table (one row per measure, one column per
model/condition) is split into several tables that each fit; a wide record
table (one row per model) drops its lowest-priority columns first and says
which ones it dropped, so nothing is hidden without a word.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

# Rich draws a border and one space of padding on each side of every cell:
# a table of n columns needs sum(widths) + 3n + 1 characters.
_PAD = 3


def _width(cells: Sequence[str]) -> int:
    return max((max((len(line) for line in c.splitlines()), default=0) for c in cells), default=0)


def table_width(widths: Sequence[int]) -> int:
    """Characters a rich table with these content widths takes (box, padding)."""
    return sum(widths) + _PAD * len(widths) + 1


HEADER_FOLD = 14


def column_width(header: str, cells: Sequence[str]) -> int:
    """The width a value column is given: its widest cell, its header folded at ``HEADER_FOLD``."""
    return max(min(_width([header]), HEADER_FOLD), _width(cells), 1)


def split_columns(label: str, row_names: Sequence[str], columns: Sequence[tuple[str, Sequence[str]]],
                  width: int) -> list[list[int]]:
    """Groups of value-column indices such that the label column plus each group fits ``width``.

    ``columns`` is (header, cells) per value column. A header counts at most
    ``HEADER_FOLD`` characters (longer ones fold onto more lines: model names
    are long, the values under them short); a column wider than the room left
    on its own still gets a table of its own.
    """
    first = max(_width([label]), _width(row_names))
    groups: list[list[int]] = []
    used = table_width([first])
    for i, (header, cells) in enumerate(columns):
        w = column_width(header, cells) + _PAD
        if groups and used + w <= width:
            groups[-1].append(i)
            used += w
        else:
            groups.append([i])
            used = table_width([first]) + w
    return groups


def transposed_tables(title: str, label: str, row_names: Sequence[str],
                      columns: Sequence[tuple[str, Sequence[str]]], width: int) -> list[Table]:
    """One row per measure, one column per value column, split so each table fits ``width``."""
    groups = split_columns(label, row_names, columns, width) if columns else []
    tables = []
    for g, idx in enumerate(groups):
        part = f" ({g + 1}/{len(groups)})" if len(groups) > 1 else ""
        t = Table(title=escape(title + part))
        t.add_column(escape(label), no_wrap=True)
        for i in idx:
            t.add_column(escape(columns[i][0]), justify="right", overflow="fold",
                         max_width=column_width(*columns[i]))
        for r, name in enumerate(row_names):
            t.add_row(escape(name), *[escape(columns[i][1][r]) for i in idx])
        tables.append(t)
    return tables


def fitted_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int,
                 priority: Sequence[int] | None = None) -> tuple[Table, list[str]]:
    """A table of ``rows`` that fits ``width``: columns are left out, lowest priority
    first (a larger number = left out sooner; default: from the right), until the
    natural widths (widest cell) fit, or until one column is left; what is kept
    folds rather than ends in "…". Returns the table and the headers left out.
    """
    n = len(headers)
    prio = list(priority) if priority is not None else list(range(n))
    natural = [max(_width([headers[j]]), _width([r[j] for r in rows])) for j in range(n)]
    keep = list(range(n))
    for j in sorted(range(n), key=lambda j: (-prio[j], -j)):
        if table_width([natural[k] for k in keep]) <= width or len(keep) == 1:
            break
        keep.remove(j)
    dropped = [headers[j] for j in range(n) if j not in keep]
    caption = f"left out at {width} columns: {', '.join(dropped)} (a wider terminal shows them)" if dropped else None
    t = Table(title=escape(title), caption=escape(caption) if caption else None)
    for j in keep:
        t.add_column(escape(headers[j]), overflow="fold")
    for r in rows:
        t.add_row(*[escape(r[j]) for j in keep])
    return t, dropped
