"""The Python API: the same operations as the CLI, returning DataFrames.

    import valuelens.api as vl
    tables = vl.run("audit.yaml")            # dict of DataFrames
    tables = vl.run()                        # the built-in demo audit
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from valuelens.audit import AuditResult, run_audit
from valuelens.config import AuditConfig, AuditFlags, audit_with_flags, demo_audit, load_audit
from valuelens.progress import Tracker
from valuelens.results import read_tables
from valuelens.store import STORE_NAME, Store


def load(audit: str | Path | AuditConfig | None = None, flags: AuditFlags | None = None) -> AuditConfig:
    """The audit: a file, the built-in demo (None), or with ``flags`` (the CLI's ``--model``, ``--layers``, ...)
    a file or nothing with the flags applied (:func:`valuelens.config.audit_with_flags`)."""
    if flags is not None:
        if isinstance(audit, AuditConfig):
            raise TypeError("flags apply to an audit file or to none, not to an AuditConfig")
        return audit_with_flags(audit, flags)
    if audit is None:
        return demo_audit()
    return audit if isinstance(audit, AuditConfig) else load_audit(audit)


def run_full(audit: str | Path | AuditConfig | None = None, out_dir: str | Path | None = None,
             tracker: Tracker | None = None, force: bool = False, source: str | None = None,
             plan: bool = False) -> AuditResult:
    """``plan``: count each model × layer's calls first (valuelens.plan, a dry run on stand-in answers), so
    run.json and ``valuelens status`` show calls done / expected; a plan that fails is logged and skipped."""
    cfg = load(audit)
    if source is None:
        source = str(audit) if isinstance(audit, (str, Path)) else ("builtin demo" if audit is None else "api")
    return run_audit(cfg, out_dir, tracker, audit_source=source, force=force,
                     expected=_expected(cfg, out_dir) if plan else None)


def _expected(cfg: AuditConfig, out_dir: str | Path | None) -> dict[tuple[str, str], int]:
    """The plan's calls per model × layer. Bad input is the run's error (checked here first, as the run
    does); the plan is advisory, so any other failure of it is logged and the run goes on without it."""
    from valuelens.audit import check_inputs
    from valuelens.errors import ValueLensError
    from valuelens.plan import plan_audit

    check_inputs(cfg, out_dir)
    try:
        return {(r.model, r.layer): r.calls + r.repeats for r in plan_audit(cfg)}
    except ValueLensError:  # e.g. a backend file the run cannot read either: the run says so, once
        return {}
    except Exception as e:  # noqa: BLE001 - see the docstring
        logging.getLogger(__name__).warning("valuelens: no plan of the calls (%s); the run goes on without "
                                            "expected counts", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return {}


def run(audit: str | Path | AuditConfig | None = None, out_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Run (or resume) an audit; returns its results tables."""
    return run_full(audit, out_dir).tables


def results(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read the exported tables of a finished run."""
    return read_tables(Path(out_dir))


def cache_info(out_dir: str | Path) -> dict:
    store = Store(Path(out_dir) / STORE_NAME, readonly=True)
    try:
        return store.info()
    finally:
        store.close()


def cache_clear(out_dir: str | Path, model: str | None = None) -> int:
    store = Store(Path(out_dir) / STORE_NAME)
    try:
        return store.clear(model)
    finally:
        store.close()
