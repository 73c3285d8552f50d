"""Audit orchestration: models × layers, through the cache, into tables."""

from __future__ import annotations

import fcntl
import importlib.metadata
import platform
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from valuelens import __version__
from valuelens.config import AuditConfig
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext, def_layer, dilemmas, first_token, mark
from valuelens.models import CachedModel, load_backend
from valuelens.lanes import Cancelled, plan, run_lanes
from valuelens.progress import LockedTracker, NullTracker, Tracker
from valuelens.results import export_tables, write_json
from valuelens.store import STORE_NAME, Store

# Layer name → module, in the order layers run. A layer module has
# ``run(model, settings, ctx) -> tables`` (one model) and may have
# ``combine(tables, settings) -> tables`` (after all models: cross-model measures).
LAYERS: dict[str, ModuleType] = {
    "first_token": first_token,
    "diversity": def_layer,
    "dilemmas": dilemmas,
    "mark": mark,
}


@dataclass
class AuditResult:
    out_dir: Path
    tables: dict[str, pd.DataFrame]
    manifest: dict[str, Any] = field(default_factory=dict)


@contextmanager
def locked(out_dir: Path):
    """Refuse a second concurrent run on the same output directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueLensError(f"{out_dir}: another valuelens run is using this output directory") from None
        yield


def _versions() -> dict[str, str]:
    out = {"valuelens": __version__, "python": platform.python_version()}
    for mod in ("torch", "transformers"):
        # The installed version, without importing torch (seconds) for audits that do not use it.
        try:
            out[mod] = sys.modules[mod].__version__ if mod in sys.modules else importlib.metadata.version(mod)
        except (AttributeError, importlib.metadata.PackageNotFoundError):
            pass
    return out


def check_inputs(audit: AuditConfig, out_dir: str | Path | None = None) -> None:
    """Read every selected layer's input data (layers may define
    ``check(settings, ctx)``), so bad input fails before anything is written."""
    ctx = LayerContext(audit, Path(out_dir) if out_dir else audit.out_dir(), NullTracker())
    for layer, module in LAYERS.items():
        settings = getattr(audit.layers, layer, None)
        if settings is not None and hasattr(module, "check"):
            module.check(settings, ctx)


class _Manifest:
    """run.json, rewritten atomically under a lock: lanes record their models from several threads."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data, self.lock = path, data, threading.Lock()
        self.models: dict[int, dict[str, Any]] = {}
        write_json(path, data)

    def add_model(self, index: int, record: dict[str, Any]) -> None:
        with self.lock:
            self.models[index] = record
            self.data["models"] = [self.models[i] for i in sorted(self.models)]  # the audit's order
            write_json(self.path, self.data)

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.data.update(fields)
            write_json(self.path, self.data)


def _run_model(audit: AuditConfig, out: Path, tracker: Tracker, manifest: _Manifest, index: int,
               store: Store) -> list[tuple[str, pd.DataFrame]]:
    """Every selected layer on one model (in its lane's thread, with the lane's store)."""
    entry = audit.models[index]
    options = {k: v for k, v in entry.options.items() if k != "lane"}  # scheduling only, not the backend's
    backend = load_backend(entry.backend, batch_size=entry.batch_size, **options)
    try:
        model = CachedModel(backend, store, entry.name, chunk_size=audit.chunk_size)
        tables = []
        for layer, module in LAYERS.items():
            settings = getattr(audit.layers, layer)
            if settings is None:
                continue
            for name, df in module.run(model, settings, LayerContext(audit, out, tracker)).items():
                df.insert(0, "model", entry.name)
                tables.append((name, df))
        manifest.add_model(index, {**entry.catalogue(), "identity": model.identity, "calls_made": model.made,
                                   "calls_cached": model.cached, "faults": dict(backend.stats)})
        return tables
    except BaseException as e:  # the failing model's faults go on the record too
        status = "cancelled" if isinstance(e, Cancelled) else "failed"
        manifest.add_model(index, {**entry.catalogue(), "status": status, "faults": dict(backend.stats)})
        raise
    finally:
        backend.close()


def run_audit(audit: AuditConfig, out_dir: str | Path | None = None, tracker: Tracker | None = None,
              audit_source: str = "") -> AuditResult:
    """Run (or resume) an audit. Models run in lanes (see :mod:`valuelens.lanes`);
    the tables come out in the audit's model order whichever lane finishes first."""
    out = Path(out_dir) if out_dir else audit.out_dir()
    tracker = LockedTracker(tracker or NullTracker())
    check_inputs(audit, out)
    lanes = plan((m.backend, m.options) for m in audit.models)
    with locked(out):
        store = Store(out / STORE_NAME)
        run_id = store.begin_run()
        manifest = _Manifest(out / "run.json", {
            "versions": _versions(), "audit_source": audit_source, "audit": audit.model_dump(mode="json"),
            "seed": audit.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running",
            "run_id": run_id, "lanes": {k: [audit.models[i].name for i in v] for k, v in lanes.items()},
            "models": [],
        })
        try:
            per_model = run_lanes(lanes, partial(_run_model, audit, out, tracker, manifest),
                                  store_path=out / STORE_NAME, run_id=run_id, max_parallel=audit.max_parallel_models)
            tables: dict[str, list[pd.DataFrame]] = {}
            for model_tables in per_model:
                for name, df in model_tables or []:
                    tables.setdefault(name, []).append(df)
            merged = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
            for layer, module in LAYERS.items():
                settings = getattr(audit.layers, layer)
                if settings is not None and hasattr(module, "combine"):
                    merged.update(module.combine(merged, settings))
            catalogue = pd.DataFrame([{k: v for k, v in m.items() if k not in {"identity", "faults"}}
                                      for m in manifest.data["models"]])
            merged["models"] = catalogue
            export_tables(out, merged)
        except BaseException as e:
            store.end_run("failed" if isinstance(e, Exception) else "interrupted")
            manifest.update(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__,
                            ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), calls=store.run_counts())
            store.close()
            raise
        store.end_run()
        manifest.update(status="finished", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), calls=store.run_counts(),
                        calls_all_runs=_totals(store), tables=sorted(merged))
        store.close()
    return AuditResult(out, merged, manifest.data)


def _totals(store: Store) -> dict[str, int]:
    runs = store.all_runs()
    return {"runs": len(runs), "calls_made": sum(r["calls_made"] for r in runs),
            "calls_stored": store.info()["calls"]}
