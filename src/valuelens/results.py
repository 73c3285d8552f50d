"""Tidy results tables and the run.json manifest, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_DIR = "results"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8"))


def export_tables(out_dir: Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Each table as ``results/NAME.parquet`` and ``results/NAME.csv``."""
    d = out_dir / RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        for ext, writer in (("parquet", lambda p, df=df: df.to_parquet(p, index=False)),
                            ("csv", lambda p, df=df: df.to_csv(p, index=False))):
            path = d / f"{name}.{ext}"
            _atomic(path, writer)
            written.append(path)
    return written


def read_tables(out_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted((Path(out_dir) / RESULTS_DIR).glob("*.parquet"))}
