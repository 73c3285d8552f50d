"""The audit report: one self-contained HTML file per run, or per comparison.

    from valuelens.report import build_report, build_comparison
    build_report(Path("runs/demo"))                      # -> runs/demo/report.html
    build_comparison([Path("runs/a"), Path("runs/b")], Path("cmp"))  # -> cmp/report.html

Works on finished and partial runs: a layer without tables says it was not
run or has no data yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .load import comparison_data, report_data
from .render import REPORT_NAME, render, write_html

__all__ = ["build_report", "build_comparison", "REPORT_NAME"]


def build_report(out_dir: str | Path, language: str | None = None) -> Path:
    """Write ``OUT_DIR/report.html`` from the run's run.json and results tables; returns its path.
    ``language``: en | zh for the fixed texts (default: the audit's ``report.language``, else en)."""
    out = Path(out_dir)
    return write_html(out / REPORT_NAME, render(report_data(out), language))


def build_comparison(out_dirs: Sequence[str | Path], dest: str | Path, language: str | None = None) -> Path:
    """One report over several runs (rows tagged with their run; clashing model names become MODEL@RUN).

    ``dest`` ending in ``.html`` is the file to write; otherwise it is a
    directory and the report is ``DEST/report.html``.
    """
    path = Path(dest)
    if path.suffix.lower() not in {".html", ".htm"} or path.is_dir():
        path = path / REPORT_NAME
    return write_html(path, render(comparison_data(list(out_dirs)), language))
