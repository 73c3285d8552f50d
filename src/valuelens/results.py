"""Tidy results tables and the run.json manifest, written atomically.

Every file is written to a hidden ``.NAME.tmp`` beside it and renamed into
place; a failed write (disk full, ...) removes its temporary file, so a
reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from valuelens.errors import ValueLensError, os_error

RESULTS_DIR = "results"
TABLE_EXTS = ("parquet", "csv")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise os_error(path, e) from None
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8"))


def write_text_atomic(path: Path, text: str) -> Path:
    """``path`` with ``text`` (UTF-8), atomically; its directory is created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(path.parent, e, "cannot create the directory") from None
    _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def write_json_best_effort(path: Path, obj: Any) -> bool:
    """Atomically if possible; on a full disk, rewrite the file in place (its
    own blocks are freed first, so a record of similar size fits). Never raises
    an OSError; returns whether it was written."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode("utf-8")
    try:
        _atomic(path, lambda p: p.write_bytes(text))
        return True
    except (ValueLensError, OSError):
        pass
    try:
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(text)
        return True
    except OSError:
        return False


def _write_parquet(df: pd.DataFrame, p: Path) -> None:
    with open(p, "wb") as f:  # a Python file: its write errors (disk full) are ordinary OSErrors
        df.to_parquet(f, index=False)


def _write_csv(df: pd.DataFrame, p: Path) -> None:
    with open(p, "w", encoding="utf-8", newline="") as f:
        df.to_csv(f, index=False)


def export_tables(out_dir: Path, tables: dict[str, pd.DataFrame], *, retire: bool = True) -> list[Path]:
    """Each table as ``results/NAME.parquet`` and ``results/NAME.csv``. Tables
    of an earlier run that this run did not produce (a layer removed from the
    audit) are moved to ``results/stale/``, so they are never read as this
    run's results (``retire=False``: the others are left alone, for the tables
    a running audit exports after each model × layer)."""
    d = out_dir / RESULTS_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(d, e, "cannot create the results directory") from None
    written = []
    for name, df in tables.items():
        for ext, writer in (("parquet", _write_parquet), ("csv", _write_csv)):
            path = d / f"{name}.{ext}"
            _atomic(path, lambda p, df=df, writer=writer: writer(df, p))
            written.append(path)
    if retire:
        retire_stale(out_dir, set(tables))
    return written


def table_files(out_dir: Path) -> list[Path]:
    d = Path(out_dir) / RESULTS_DIR
    return sorted(p for ext in TABLE_EXTS for p in d.glob(f"*.{ext}")) if d.is_dir() else []


def retire_stale(out_dir: Path, keep: set[str]) -> list[Path]:
    """Move ``results/NAME.*`` whose NAME is not in ``keep`` to ``results/stale/``
    (replacing an older stale copy); returns the new paths."""
    stale = Path(out_dir) / RESULTS_DIR / "stale"
    moved = []
    for p in table_files(out_dir):
        if p.stem in keep:
            continue
        try:
            stale.mkdir(exist_ok=True)
            os.replace(p, stale / p.name)
        except OSError as e:
            raise os_error(p, e, "cannot move a stale table away") from None
        moved.append(stale / p.name)
    return moved


def read_tables(out_dir: Path) -> dict[str, pd.DataFrame]:
    """Every ``results/*.parquet`` (not ``results/stale/``); a damaged file is a one-line error naming it."""
    out = {}
    for p in sorted((Path(out_dir) / RESULTS_DIR).glob("*.parquet")):
        try:
            if not p.is_file():
                raise ValueLensError(f"{p}: not a regular file (expected a Parquet table)")
            out[p.stem] = pd.read_parquet(p)
        except ValueLensError:
            raise
        except (OSError, ValueError, RecursionError, MemoryError) as e:  # pyarrow's errors are OSError/ValueError
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise ValueLensError(f"{p}: not a readable Parquet table ({msg}); rerun the audit to rewrite it") from None
    return out
