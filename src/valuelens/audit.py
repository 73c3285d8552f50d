"""Audit orchestration: models × layers, through the cache, into tables."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import stat
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from valuelens import __version__
from valuelens.config import AuditConfig
from valuelens.errors import Terminated, ValueLensError, os_error
from valuelens.layers import registry, samples
from valuelens.layers.samples import SAMPLES_TABLE
from valuelens.models import CachedModel, load_backend
from valuelens.models.usage import Budget, BudgetReached, Meter, cost
from valuelens.lanes import Cancelled, model_failure, plan, run_lanes
from valuelens.locking import exclusive
from valuelens.preflight import preflight
from valuelens.progress import LockedTracker, NullTracker, Tracker
from valuelens.results import RESULTS_DIR, export_tables, retire_stale, write_json, write_json_best_effort
from valuelens.runstate import BUDGET, CANCELLED, DONE, FAILED, INTERRUPTED, PENDING, RUNNING
from valuelens.store import STORE_NAME, Store

# Layer key → spec, in run order: the registry's own dict (valuelens.layers.registry), so a layer
# registered later is in it too.
LAYERS: dict[str, registry.LayerSpec] = registry.REGISTRY
LOCK_NAME = ".lock"


@dataclass
class AuditResult:
    out_dir: Path
    tables: dict[str, pd.DataFrame]
    manifest: dict[str, Any] = field(default_factory=dict)


@contextmanager
def locked(out_dir: Path):
    """Refuse a second concurrent run on the same output directory."""
    check_out_dir(out_dir)
    with exclusive(out_dir, LOCK_NAME, unusable="cannot use as the output directory",
                   busy="another valuelens run is using this output directory"):
        yield


def check_out_dir(out: Path) -> None:
    """Refuse an output directory valuelens cannot use, before anything is
    written: an empty path, a file or device, a path below a file, a symlink
    loop, no write permission or read-only media, or a ``.lock`` / store /
    ``results`` of the wrong kind inside."""
    if not str(out).strip():
        raise ValueLensError("output directory: empty path; give a directory (e.g. --out runs/NAME)")
    p = Path(os.path.abspath(out))
    while True:  # the deepest part of the path that exists
        try:
            st = os.stat(p)
            break
        except FileNotFoundError:
            if p.parent == p:
                raise ValueLensError(f"{out}: cannot use as the output directory (no existing parent)") from None
            p = p.parent
        except NotADirectoryError:
            q = p.parent  # find the part that is a file
            while q.parent != q and not q.exists():
                q = q.parent
            raise ValueLensError(f"{out}: cannot use as the output directory ({q} is a file, not a "
                                 f"directory)") from None
        except OSError as e:
            raise os_error(out, e, "cannot use as the output directory") from None
    if not stat.S_ISDIR(st.st_mode):
        what = _kind(st.st_mode)
        if p == Path(os.path.abspath(out)):
            raise ValueLensError(f"{out}: exists and is {what}, not a directory; choose another output directory")
        raise ValueLensError(f"{out}: cannot use as the output directory ({p} is {what}, not a directory)")
    if not os.access(p, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_fs(p) else "permission denied"
        raise ValueLensError(f"{out}: cannot write to {p} ({why}); choose another output directory")
    if p != Path(os.path.abspath(out)):
        return
    for name, want in ((LOCK_NAME, "file"), (STORE_NAME, "file"), ("run.json", "file"), (RESULTS_DIR, "directory")):
        q = p / name
        try:
            st = os.stat(q)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise os_error(out / name, e, "cannot use") from None
        if (want == "file" and not stat.S_ISREG(st.st_mode)) or (want == "directory" and not stat.S_ISDIR(st.st_mode)):
            raise ValueLensError(f"{out / name}: is {_kind(st.st_mode)}, expected a {'regular ' * (want == 'file')}"
                                 f"{want} (valuelens writes it); move it away")


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _read_only_fs(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def same_audit(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why the audit recorded in an output directory's run.json (``old``) is a
    different audit from ``new`` (both as in run.json's ``audit``), or "" when
    it is the same one: the same name and seed, and every model name both list
    bound to the same backend (for ``openai:MODEL@URL``: the same MODEL, any
    server). Layers, their settings, countries, languages and adding or
    removing models do not make a different audit."""
    if old.get("name") != new.get("name"):
        return f"audit {old.get('name')!r}, not {new.get('name')!r}"
    if old.get("seed") != new.get("seed"):
        return f"seed {old.get('seed')!r}, not {new.get('seed')!r}"
    backends = {m.get("name"): m.get("backend") for m in old.get("models") or [] if isinstance(m, dict)}
    for m in new.get("models") or []:
        if m.get("name") in backends and _model_of(backends[m["name"]]) != _model_of(m.get("backend")):
            return f"model {m['name']!r} with backend {backends[m['name']]!r}, not {m.get('backend')!r}"
    return ""


def _model_of(spec: Any) -> Any:
    """A backend spec without an OpenAI-compatible server's address: the same model
    behind a server restarted on another port is the same model."""
    if isinstance(spec, str) and spec.startswith("openai:") and "@" in spec:
        return spec.rpartition("@")[0]
    return spec


def check_previous(out: Path, audit: AuditConfig, force: bool = False) -> None:
    """Refuse an output directory whose run.json records a different audit
    (see :func:`same_audit`), or one that cannot be read, unless ``force``."""
    path = out / "run.json"
    if force or not path.is_file():
        return
    hint = "use --force to run here anyway (its tables are moved to results/stale/), or choose another --out"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise ValueLensError(f"{path}: unreadable ({type(e).__name__}), so which audit this directory holds is "
                             f"unknown; {hint}") from None
    if not isinstance(old, dict) or not isinstance(old.get("audit"), dict):
        raise ValueLensError(f"{path}: not a valuelens run.json (no 'audit' object); {hint}")
    why = same_audit(old["audit"], audit.model_dump(mode="json"))
    if why:
        raise ValueLensError(f"{out}: holds a different audit ({why}); {hint}")


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
    """Read every selected layer's input data (its registered ``check``), so bad
    input fails before anything is written."""
    ctx = audit.layer_context(Path(out_dir) if out_dir else None, NullTracker())
    for spec, settings in audit.layers.selected():
        if spec.check is not None:
            spec.check(settings, ctx)


def _owned(spec: registry.LayerSpec, tables: dict[str, pd.DataFrame], step: str) -> dict[str, pd.DataFrame]:
    """A layer's tables, each named with the layer's prefix (else a programming error: it would be exported
    under no layer, or under another layer's name)."""
    bad = sorted(n for n in tables if not spec.owns(n))
    if bad:
        raise RuntimeError(f"layer {spec.key}: {step} returned tables outside its prefix {spec.prefix!r}: "
                           f"{', '.join(bad)}")
    return tables


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

    def init_progress(self, audit: AuditConfig, expected: dict[tuple[str, str], int]) -> None:
        """run.json["progress"]: model → layer → {state, counts}, every pair ``pending`` to start with,
        with ``calls_expected`` where known."""
        def record(model: str, layer: str) -> dict[str, Any]:
            n = expected.get((model, layer))
            return {"state": PENDING} if n is None else {"state": PENDING, "calls_expected": int(n)}

        with self.lock:
            self.data["progress"] = {m.name: {spec.key: record(m.name, spec.key) for spec, _ in layers_of(audit, i)}
                                     for i, m in enumerate(audit.models)}
            self._written = time.monotonic()
            write_json(self.path, self.data)

    def set_layer(self, model: str, layer: str, *, write: bool = True, **fields: Any) -> None:
        """One model × layer's record; ``write=False``: written at most every PROGRESS_EVERY seconds
        (the running layer's call counts after each chunk)."""
        with self.lock:
            rec = self.data.setdefault("progress", {}).setdefault(model, {}).setdefault(layer, {})
            rec.update(fields)
            now = time.monotonic()
            if write or now - getattr(self, "_written", 0.0) >= PROGRESS_EVERY:
                self._written = now
                write_json(self.path, self.data)

    def end_layers(self, model: str, state: str, **fields: Any) -> None:
        """Every layer of the model not yet done (running or pending) → ``state``."""
        with self.lock:
            for rec in self.data.get("progress", {}).get(model, {}).values():
                if rec.get("state") in (PENDING, RUNNING):
                    rec.update(state=state, **fields)
            write_json_best_effort(self.path, self.data)

    def update_best_effort(self, **fields: Any) -> None:
        """The failure record: written even on a full disk if at all possible (in place)."""
        with self.lock:
            self.data.update(fields)
            write_json_best_effort(self.path, self.data)


def mark_failed(out_dir: Path, error: BaseException) -> None:
    """After a finished audit, a later step of the command failed (the report):
    run.json must not say ``finished``."""
    path = Path(out_dir) / "run.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict):
        data.update(status=_status(error), error=_error_line(error))
        write_json_best_effort(path, data)
        if isinstance(data.get("run_id"), str):  # the store's record of the run too
            try:
                store = Store(Path(out_dir) / STORE_NAME)
                try:
                    store.run_id = data["run_id"]
                    store.end_run(_status(error))
                finally:
                    store.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass


def _status(e: BaseException) -> str:
    return "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"


def _error_line(e: BaseException) -> str:
    if isinstance(e, Terminated):
        return "interrupted (SIGTERM)"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


PROGRESS_EVERY = 2.0  # seconds between run.json rewrites for a running layer's call counts


def layers_of(audit: AuditConfig, index: int) -> list[tuple[registry.LayerSpec, Any]]:
    """The layers model ``index`` runs, in run order (its per-model selection: ``AuditConfig.layers_for``)."""
    return audit.layers_for(audit.models[index].name)


def _budget(entry: Any, store: Store) -> Budget | None:
    """The model's caps with what earlier runs in this directory spent (its stored calls, ``+ft`` included)."""
    if entry.max_calls is None and entry.max_cost is None:
        return None
    calls, prompt, completion = store.model_spend([entry.name, f"{entry.name}+ft"])
    return Budget(entry.name, entry.max_calls, entry.max_cost, entry.price, calls, prompt, completion)


def _tokens(counts: dict[str, Any], price: Any) -> dict[str, Any]:
    """A meter's counts with their cost (this run's calls; and what the cached calls cost when made)."""
    out = {k: v for k, v in counts.items() if k != "by_source"}
    if price is not None:
        out["cost"] = round(cost(counts["prompt_tokens"], counts["completion_tokens"], price) or 0.0, 6)
        out["cost_cached"] = round(cost(counts["cached_prompt_tokens"], counts["cached_completion_tokens"],
                                        price) or 0.0, 6)
    return out


def _run_model(audit: AuditConfig, out: Path, tracker: Tracker, manifest: _Manifest, interim: _Interim,
               index: int, store: Store) -> None:
    """Every selected layer on one model (in its lane's thread, with the lane's store). Each finished
    layer's tables go to :class:`_Interim` (exported at once; the final tables are merged from it) and its
    state into run.json["progress"]. A budget cap reached (:class:`BudgetReached`) stops the model cleanly:
    ``stopped: budget``, the layers done so far kept. The samples of the layers it finished are kept however
    the model ends (a failed model's finished layers are in the tables too)."""
    entry = audit.models[index]
    options = {k: v for k, v in entry.options.items() if k != "lane"}  # scheduling only, not the backend's
    meter, budget = Meter(), _budget(entry, store)
    try:
        backend = load_backend(entry.backend, batch_size=entry.batch_size, **options)
    except BaseException as e:
        manifest.end_layers(entry.name, _layer_state(e), error=_error_line(e))
        raise
    model: CachedModel | None = None
    finished: list[str] = []
    try:
        model = CachedModel(backend, store, entry.name, chunk_size=audit.chunk_size, meter=meter, budget=budget)
        ctx = audit.layer_context(out, tracker)
        stopped = ""
        for spec, settings in layers_of(audit, index):
            key, before = spec.key, meter.snapshot()
            model.layer = key  # the samples log: which layer made each call
            manifest.set_layer(entry.name, key, state=RUNNING, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               calls_made=0, calls_cached=0)
            model.on_chunk = lambda key=key, before=before: manifest.set_layer(
                entry.name, key, write=False, **_counts(Meter.difference(meter.snapshot(), before)))
            try:
                done = _owned(spec, spec.run(model, settings, ctx), "run")
            except BudgetReached as e:
                stopped = e.why
                manifest.set_layer(entry.name, key, state=BUDGET, why=e.why,
                                   **_tokens(Meter.difference(meter.snapshot(), before), entry.price))
                manifest.end_layers(entry.name, BUDGET, why=f"not started: {e.why}")
                break
            for df in done.values():
                df.insert(0, "model", entry.name)
            interim.add(index, spec, settings, list(done.items()))
            finished.append(key)
            manifest.set_layer(entry.name, key, state=DONE, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               **_tokens(Meter.difference(meter.snapshot(), before), entry.price))
        model.on_chunk = None
        record = {**entry.catalogue(), "identity": model.identity, "calls_made": model.made,
                  "calls_cached": model.cached, **_tokens(meter.snapshot(), entry.price),
                  "faults": dict(backend.stats), **_backend_facts(backend, model)}
        if budget is not None:
            record["budget"] = budget.record()
        if stopped:
            record.update(status=BUDGET, stopped=stopped)
        manifest.add_model(index, record)
    except BaseException as e:  # the failing model's faults go on the record too
        status = "cancelled" if isinstance(e, Cancelled) else _status(e)
        manifest.add_model(index, {**entry.catalogue(), "status": status, "faults": dict(backend.stats),
                                   **_tokens(meter.snapshot(), entry.price)})
        manifest.end_layers(entry.name, _layer_state(e), error=_error_line(e))
        raise
    finally:
        if model is not None:
            interim.add_samples(index, entry.name, model.samples, finished)
        backend.close()


def _expected_from(out: Path) -> dict[tuple[str, str], int]:
    """Calls of each model × layer an earlier run in ``out`` finished (made + cached): a rerun asks as many."""
    try:
        old = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    progress = old.get("progress") if isinstance(old, dict) else None
    out_map: dict[tuple[str, str], int] = {}
    for model, layers in (progress.items() if isinstance(progress, dict) else ()):
        for layer, r in (layers.items() if isinstance(layers, dict) else ()):
            if isinstance(r, dict) and r.get("state") == DONE:
                n = r.get("calls_made", 0) + r.get("calls_cached", 0)
                if isinstance(n, int):
                    out_map[(str(model), str(layer))] = n
    return out_map


def _layer_state(e: BaseException) -> str:
    """A model × layer's state after its run ended with ``e``."""
    if isinstance(e, Cancelled):
        return CANCELLED
    return INTERRUPTED if isinstance(e, KeyboardInterrupt) else FAILED


def _counts(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("calls_made", "calls_cached", "prompt_tokens", "completion_tokens")}


class _Interim:
    """Tables exported while the audit runs: after each model × layer, that layer's tables over the models
    that have finished it (in the audit's order, its ``combine`` applied), atomically (results.export_tables),
    so a long audit can be read — and its report rebuilt — after its first layer. The other layers' files are
    left alone. The final export at the end of the run writes the same tables from the same records."""

    def __init__(self, audit: AuditConfig, out: Path, tracker: Tracker):
        self.audit, self.out, self.tracker = audit, out, tracker
        self.done: dict[str, dict[int, list[tuple[str, pd.DataFrame]]]] = {}
        self.samples: dict[int, pd.DataFrame] = {}  # per model: its samples log (exported at the end only)
        self.lock = threading.Lock()

    def add_samples(self, index: int, name: str, log: list[dict[str, Any]], layers: list[str]) -> None:
        """Model ``index``'s samples log, for the layers it finished (a budget stop's partial layer has no
        table rows to join; its calls stay in the store)."""
        frame = samples.log_frame(name, log)
        with self.lock:
            self.samples[index] = frame[frame["layer"].isin(layers)].reset_index(drop=True)

    def add(self, index: int, spec: registry.LayerSpec, settings: Any, tables: list[tuple[str, pd.DataFrame]]) -> None:
        with self.lock:
            self.done.setdefault(spec.key, {})[index] = tables
            merged = _merge(self.done[spec.key][i] for i in sorted(self.done[spec.key]))
            if spec.combine is not None:
                merged.update(_owned(spec, spec.combine(merged, settings, self.audit.layer_context(
                    self.out, self.tracker)), "combine"))
            export_tables(self.out, merged, retire=False)


def _merge(per_model: Any) -> dict[str, pd.DataFrame]:
    tables: dict[str, list[pd.DataFrame]] = {}
    for model_tables in per_model:
        for name, df in model_tables or []:
            tables.setdefault(name, []).append(df)
    return {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}


def _backend_facts(backend: Any, model: CachedModel) -> dict[str, Any]:
    """run.json facts beyond the counters (issue 20): a server backend's adaptive concurrency, and how many
    option results were estimated from sampled answers rather than read from log-probabilities."""
    out: dict[str, Any] = {}
    if isinstance(getattr(backend, "concurrency", None), dict):
        out["concurrency"] = backend.concurrency
    if getattr(model, "estimated", 0):
        out["options_estimated"] = model.estimated
    return out


def _record_failures(audit: AuditConfig, manifest: _Manifest, failed: dict[int, BaseException]) -> None:
    """Models that failed on their own (lanes.model_failure) go on the record with their error; when every
    model failed there is nothing to report and the first error is the audit's."""
    if failed and len(failed) == len(audit.models):
        raise failed[min(failed)]
    for i, e in sorted(failed.items()):
        rec = manifest.models.get(i) or audit.models[i].catalogue()
        manifest.add_model(i, {**rec, "status": "failed", "error": _error_line(e)})
    manifest.update(failed_models={audit.models[i].name: _error_line(e) for i, e in sorted(failed.items())})


def run_audit(audit: AuditConfig, out_dir: str | Path | None = None, tracker: Tracker | None = None,
              audit_source: str = "", force: bool = False,
              expected: dict[tuple[str, str], int] | None = None) -> AuditResult:
    """Run (or resume) an audit. Models run in lanes (see :mod:`valuelens.lanes`);
    the tables come out in the audit's model order whichever lane finishes first.

    An output directory holding a different audit is refused unless ``force``
    (:func:`check_previous`). Tables of an earlier run are moved to
    ``results/stale/`` when the run starts; ``results/`` then holds only what
    this run writes (a stale copy of a table it rewrites is deleted).

    ``expected``: (model, layer) → calls (made + served from the cache) the
    layer will ask for (valuelens.plan), shown by ``valuelens status``; a layer
    an earlier run here finished gets its count from that run's record."""
    out = Path(out_dir) if out_dir is not None else audit.out_dir()
    check_out_dir(out)
    tracker = LockedTracker(tracker or NullTracker())
    preflight(audit)  # API key variables, devices: before anything is written
    check_inputs(audit, out)
    check_previous(out, audit, force)
    expected = {**_expected_from(out), **(expected or {})}
    lanes = plan((m.backend, m.options) for m in audit.models)
    with locked(out):
        store = Store(out / STORE_NAME)
        try:
            run_id = store.begin_run()
        except BaseException:
            store.close()
            raise
        record = {
            "versions": _versions(), "audit_source": audit_source, "audit": audit.model_dump(mode="json"),
            "seed": audit.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running",
            "run_id": run_id, "lanes": {k: [audit.models[i].name for i in v] for k, v in lanes.items()},
            # which model runs which layer (per-model layers:, per-layer models:); the report reads it
            "model_layers": audit.model_layers(),
            # every registered layer's report record (report/load.py reads it; the report imports no layer code)
            "layers": [spec.report_record() for spec in registry.layers()],
            "models": [],
        }
        from valuelens.data.fetch import run_records  # fetched:NAME data: licence, revision, checksums

        record["datasets"] = run_records(record["audit"])
        try:
            manifest = _Manifest(out / "run.json", record)
        except BaseException as e:  # e.g. a full disk: an earlier run's "finished" must not stay
            _end_quietly(store, _status(e))
            store.close()
            write_json_best_effort(out / "run.json", {**record, "status": _status(e), "error": _error_line(e)})
            raise
        try:
            retire_stale(out, set())  # results/ holds only what this run writes
            manifest.init_progress(audit, expected)
            interim = _Interim(audit, out, tracker)
            failed: dict[int, BaseException] = {}  # models that failed on their own; the others go on
            run_lanes(lanes, partial(_run_model, audit, out, tracker, manifest, interim),
                      store_path=out / STORE_NAME, run_id=run_id, max_parallel=audit.max_parallel_models,
                      isolate=None if audit.fail_fast else model_failure, failed=failed)
            _record_failures(audit, manifest, failed)
            # every model × layer that finished, a failed or budget-stopped model's finished layers included
            merged = _merge(tables for key in LAYERS if key in interim.done
                            for _, tables in sorted(interim.done[key].items()))
            if interim.samples:  # every model's calls for the layers it finished, in the audit's model order
                merged[SAMPLES_TABLE] = samples.finish(
                    pd.concat([interim.samples[i] for i in sorted(interim.samples)], ignore_index=True), merged)
            ctx = audit.layer_context(out, tracker)
            for spec, settings in audit.layers.selected():
                if spec.combine is not None:
                    merged.update(_owned(spec, spec.combine(merged, settings, ctx), "combine"))
            catalogue = pd.DataFrame([{k: v for k, v in m.items() if k not in {"identity", "faults"}}
                                      for m in manifest.data["models"]])
            catalogue = catalogue.drop(columns=[c for c in ("concurrency", "budget") if c in catalogue.columns])
            if "name" in catalogue.columns:  # the layers each model was given, whether or not it finished them
                plan_of = audit.model_layers()
                catalogue["layers"] = [", ".join(plan_of.get(n, [])) for n in catalogue["name"]]
            merged["models"] = catalogue
            export_tables(out, merged)
            _drop_stale_copies(out, set(merged))
            store.end_run()
            stopped = {m["name"]: m["stopped"] for m in manifest.data["models"] if m.get("status") == BUDGET}
            manifest.update(status="finished", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), calls=store.run_counts(),
                            calls_all_runs=_totals(store), tables=sorted(merged), stopped_models=stopped)
        except BaseException as e:
            _end_quietly(store, _status(e))
            try:
                calls = store.run_counts()
            except Exception:  # noqa: BLE001 - a damaged store: the record goes without counts
                calls = {}
            manifest.update_best_effort(status=_status(e), error=_error_line(e),
                                        ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), calls=calls)
            raise
        finally:
            store.close()
    return AuditResult(out, merged, manifest.data)


def _end_quietly(store: Store, status: str) -> None:
    try:
        store.end_run(status)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _drop_stale_copies(out: Path, names: set[str]) -> None:
    """Delete ``results/stale/NAME.*`` for tables this run has just rewritten; the folder goes when empty."""
    stale = out / RESULTS_DIR / "stale"
    if not stale.is_dir():
        return
    for p in stale.iterdir():
        if p.is_file() and p.stem in names:
            p.unlink(missing_ok=True)
    try:
        stale.rmdir()
    except OSError:
        pass


def _totals(store: Store) -> dict[str, int]:
    runs = store.all_runs()
    return {"runs": len(runs), "calls_made": sum(r["calls_made"] for r in runs),
            "calls_stored": store.info()["calls"]}
