"""Read what a run wrote (run.json and results/*.parquet) for the report.

A run may be finished, failed or still running: whatever is missing is
reported as missing, never invented. For a comparison, the runs' tables are
concatenated with a ``run`` column, and model names that occur in more than
one run are made unique as ``MODEL@RUN``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from valuelens.errors import ValueLensError
from valuelens.results import RESULTS_DIR, read_tables

from .i18n import tr


@dataclass(frozen=True)
class Layer:
    """A layer as the report knows it: the report record that the audit writes
    into run.json["layers"] (valuelens.layers.registry.LayerSpec.report_record).
    The report never imports the registry (it reads tables only)."""

    key: str  # the audit-file key; the section anchor is layer-KEY
    title: str
    prefix: str  # tables of this layer are named PREFIX*
    config_keys: tuple[str, ...]  # keys under ``layers:`` in the audit (current, deprecated, older)
    section: str = ""  # the report builder (report/layers.py SECTIONS); "" or unknown: tables as exported
    order: int = 100  # place in the report


# The four built-in layers' records as the registry writes them, for run.json files without a "layers"
# record (written before it existed, or by hand). tests/test_registry.py checks this equals the registry.
BUILTIN_LAYERS: tuple[Layer, ...] = (
    Layer("dilemmas", "Ethical dilemmas", "dilemma_", ("dilemmas", "dilemma", "moralchoice", "escalation"),
          "dilemmas", 10),
    Layer("def", "DEF (Diversity-Enhanced Framework)", "def_", ("def", "diversity"), "def", 20),
    Layer("first_token", "First-token alignment", "first_token_", ("first_token",), "first_token", 30),
    Layer("mark", "MARK (personality-driven reasoning)", "mark_", ("mark",), "mark", 40),
)


def layers_of(manifests: list[dict[str, Any]]) -> tuple[Layer, ...]:
    """The layers of some runs, in report order: each run's run.json["layers"]
    (the built-in four for a run.json without it), united by key, first record kept."""
    found: dict[str, Layer] = {}
    for m in manifests:
        records = m.get("layers")
        layers = BUILTIN_LAYERS if records is None else tuple(
            Layer(r["key"], r["title"], r["prefix"], tuple(r["config_keys"]), r.get("section") or "",
                  r.get("order", 100)) for r in records)
        for layer in layers:
            found.setdefault(layer.key, layer)
    if not found:
        found = {x.key: x for x in BUILTIN_LAYERS}
    return tuple(sorted(found.values(), key=lambda x: x.order))  # stable: ties keep the registry's order


HUMAN = "(human)"  # the human populations' points in def_map: not a model

CATALOGUE_COLUMNS = ["name", "display_name", "region", "family", "params_b", "architecture", "alignment",
                     "revision", "backend", "calls_made", "calls_cached"]


@dataclass
class Run:
    name: str
    out_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame]


@dataclass
class ReportData:
    title: str
    runs: list[Run]
    tables: dict[str, pd.DataFrame]
    catalogue: pd.DataFrame
    renamed: dict[str, str] = field(default_factory=dict)  # "MODEL@RUN" -> original name, comparison only
    _ran: dict[str, set[str]] = field(default_factory=dict, repr=False, compare=False)  # layer key -> models

    @property
    def is_comparison(self) -> bool:
        return len(self.runs) > 1

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The audit layers the runs know (run.json["layers"]), in report order."""
        return layers_of([r.manifest for r in self.runs])

    def layer_tables(self, layer: Layer) -> dict[str, pd.DataFrame]:
        return {k: v for k, v in self.tables.items() if k.startswith(layer.prefix)}

    def layer_status(self, layer: Layer) -> tuple[str, str]:
        """("ok" | "no data yet" | "not run", a sentence saying why)."""
        if self.layer_tables(layer):
            return "ok", ""
        configured = [r for r in self.runs if _configured(r.manifest, layer)]
        if not configured:
            return "not run", tr("This layer was not part of the audit.")
        reasons = []
        for r in configured:
            status = r.manifest.get("status", "unknown")
            if status == "running":
                why = tr("the run is still in progress (or was killed; rerun the same command to resume)")
            elif status == "failed":
                why = tr("the run failed: {error}", error=r.manifest.get("error", tr("no error recorded")))
            elif status == "finished":
                why = tr("the run finished without writing tables for this layer")
            else:
                why = tr("run status {status}", status=repr(status))
            reasons.append(f"{r.name}: {why}" if self.is_comparison else why[0].upper() + why[1:])
        return "no data yet", "; ".join(reasons) + tr(".")

    def layer_of_table(self, table: str) -> Layer | None:
        """The layer whose prefix the table name has."""
        return next((x for x in self.layers if table.startswith(x.prefix)), None)

    def model_layers(self) -> dict[str, set[str]]:
        """Model name → the keys of the layers the audit gave it (run.json ``model_layers``, with comparison
        renames); for a run.json without it (written before per-model layers), every configured layer."""
        out: dict[str, set[str]] = {}
        back = {(orig, new.rsplit("@", 1)[1]): new for new, orig in self.renamed.items()}
        for r in self.runs:
            planned = r.manifest.get("model_layers")
            if not isinstance(planned, dict):
                configured = {x.key for x in self.layers if _configured(r.manifest, x)}
                names = [m.get("name") for m in (r.manifest.get("audit") or {}).get("models") or []]
                planned = {n: sorted(configured) for n in names if isinstance(n, str)}
            for name, keys in planned.items():
                out.setdefault(back.get((name, r.name), name), set()).update(keys)
        return out

    def is_uniform(self) -> bool:
        """Whether every model was given every layer the runs configured (no per-model selection in effect)."""
        plan = self.model_layers()
        every = set().union(*plan.values()) if plan else set()
        return all(keys == every for keys in plan.values())

    def cell(self, model: str, layer: Layer) -> str:
        """What one model did with one layer: "ran" (it has rows in the layer's tables), "not run" (the audit
        did not give it the layer), "failed", "cancelled" or "stopped: budget" (the model's run.json status:
        its cap was reached before this layer finished), "pending" (the run
        has not finished), or "no results" (finished with no rows)."""
        plan = self.model_layers()
        if model in plan and layer.key not in plan[model]:
            return "not run"
        if layer.key not in self._ran:  # the models with rows in the layer's tables, found once per layer
            self._ran[layer.key] = {m for df in self.layer_tables(layer).values() if "model" in df.columns
                                    for m in df["model"].dropna().unique()}
        if model in self._ran[layer.key]:
            return "ran"
        status = self._model_status(model)
        if status in ("failed", "cancelled", "stopped: budget"):
            return status
        if any(r.manifest.get("status") != "finished" for r in self.runs):
            return "pending"
        return "no results"

    def _model_status(self, model: str) -> str:
        for r in self.runs:
            for m in r.manifest.get("models") or []:
                if not isinstance(m, dict):
                    continue
                name = m.get("name")
                if name == model or (self.renamed.get(model) == name and model.endswith(f"@{r.name}")):
                    return str(m.get("status") or "finished")
        return ""

    def countries(self) -> list[str]:
        return _union(self, "countries", "country")

    def languages(self) -> list[str]:
        return _union(self, "languages", "language")


def _configured(manifest: dict[str, Any], layer: Layer) -> bool:
    layers = (manifest.get("audit") or {}).get("layers") or {}
    return any(layers.get(k) is not None for k in layer.config_keys)


def _union(data: ReportData, audit_key: str, column: str) -> list[str]:
    out: list[str] = []
    for r in data.runs:
        out += [c for c in (r.manifest.get("audit") or {}).get(audit_key, []) if c not in out]
    for df in data.tables.values():
        if column in df.columns:
            out += [c for c in df[column].dropna().unique().tolist() if c not in out and c != ""]
    return out


def load_run(out_dir: str | Path, name: str | None = None) -> Run:
    out = Path(out_dir)
    manifest_path = out / "run.json"
    has_results = (out / RESULTS_DIR).is_dir()
    if not manifest_path.is_file() and not has_results:
        raise ValueLensError(f"{out}: no run.json and no {RESULTS_DIR}/ here (not a valuelens output directory)")
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        if not manifest_path.is_file():
            raise ValueLensError(f"{manifest_path}: not a regular file")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueLensError(f"{manifest_path}: not valid JSON ({e})") from None
        except RecursionError:
            raise ValueLensError(f"{manifest_path}: JSON nested too deeply") from None
        except OSError as e:
            raise ValueLensError(f"{manifest_path}: cannot read ({e.strerror or type(e).__name__})") from None
        check_manifest(manifest, manifest_path)
    tables = read_tables(out) if has_results else {}
    return Run(name or out.resolve().name, out, manifest, tables)


_STR, _INT, _DICT, _LIST = (str,), (int,), (dict,), (list,)
# run.json's fields the report reads, with the types valuelens writes (None is allowed everywhere).
MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "status": _STR, "error": _STR, "audit_source": _STR, "run_id": _STR, "started": _STR, "ended": _STR,
    "seed": _INT, "audit": _DICT, "models": _LIST, "calls": _DICT, "calls_all_runs": _DICT, "versions": _DICT,
    "tables": _LIST, "lanes": _DICT, "layers": _LIST, "model_layers": _DICT, "progress": _DICT,
}
AUDIT_FIELDS: dict[str, tuple[type, ...]] = {
    "name": _STR, "seed": _INT, "layers": _DICT, "models": _LIST, "countries": _LIST, "languages": _LIST,
}
MODEL_FIELDS: dict[str, tuple[type, ...]] = {
    "name": _STR, "display_name": _STR, "backend": _STR, "region": _STR, "family": _STR, "architecture": _STR,
    "alignment": _STR, "revision": _STR, "params_b": (int, float), "calls_made": _INT, "calls_cached": _INT,
    "faults": _DICT, "status": _STR, "options": _DICT, "toy": (bool,),
}
LAYER_FIELDS: dict[str, tuple[type, ...]] = {  # run.json["layers"][i]; key, title, prefix, config_keys required
    "key": _STR, "title": _STR, "prefix": _STR, "config_keys": _LIST, "section": _STR, "order": _INT,
}


def _type_error(path: Path, where: str, want: tuple[type, ...], got: Any) -> ValueLensError:
    names = " or ".join({"str": "a string", "int": "an integer", "dict": "an object", "list": "a list",
                         "float": "a number"}[t.__name__] for t in want)
    return ValueLensError(f"{path}: {where} must be {names}, not {type(got).__name__}; the file is damaged "
                          f"(rerun the audit to rewrite it)")


def _check_fields(path: Path, obj: dict[str, Any], fields: dict[str, tuple[type, ...]], prefix: str) -> None:
    for key, want in fields.items():
        v = obj.get(key)
        if v is not None and (not isinstance(v, want) or (isinstance(v, bool) and bool not in want)):
            raise _type_error(path, f"{prefix}{key}", want, v)


def check_manifest(m: Any, path: Path) -> None:
    """run.json as valuelens writes it, or a one-line error naming the field."""
    if not isinstance(m, dict):
        raise ValueLensError(f"{path}: expected a JSON object (valuelens' run record), not {type(m).__name__}")
    _check_fields(path, m, MANIFEST_FIELDS, "")
    audit = m.get("audit") or {}
    _check_fields(path, audit, AUDIT_FIELDS, "audit.")
    for key in ("countries", "languages"):
        for i, x in enumerate(audit.get(key) or []):
            if not isinstance(x, str):
                raise _type_error(path, f"audit.{key}[{i}]", _STR, x)
    for prefix, models in (("models", m.get("models") or []), ("audit.models", audit.get("models") or [])):
        for i, x in enumerate(models):
            if not isinstance(x, dict):
                raise _type_error(path, f"{prefix}[{i}]", _DICT, x)
            _check_fields(path, x, MODEL_FIELDS, f"{prefix}[{i}].")
    for key in ("calls", "calls_all_runs"):
        for k, v in (m.get(key) or {}).items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise _type_error(path, f"{key}.{k}", _INT, v)
    for k, v in (m.get("versions") or {}).items():
        if not isinstance(v, str):
            raise _type_error(path, f"versions.{k}", _STR, v)
    for name, keys in (m.get("model_layers") or {}).items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _type_error(path, f"model_layers.{name}", _LIST, keys)
    for i, x in enumerate(m.get("layers") or []):
        if not isinstance(x, dict):
            raise _type_error(path, f"layers[{i}]", _DICT, x)
        _check_fields(path, x, LAYER_FIELDS, f"layers[{i}].")
        for key in ("key", "title", "prefix", "config_keys"):
            if x.get(key) is None:
                raise ValueLensError(f"{path}: layers[{i}].{key} is missing; the file is damaged (rerun the audit "
                                     "to rewrite it)")
        for j, k in enumerate(x["config_keys"]):
            if not isinstance(k, str):
                raise _type_error(path, f"layers[{i}].config_keys[{j}]", _STR, k)


def catalogue(run: Run) -> pd.DataFrame:
    """The ``models`` table, or for a run that has not exported it yet, the
    models the manifest lists (finished ones with call counts, then the rest
    of the audit's models without)."""
    if "models" in run.tables:
        df = run.tables["models"].copy()
    else:
        finished = {m["name"]: m for m in run.manifest.get("models", []) if "name" in m}
        rows = []
        for m in (run.manifest.get("audit") or {}).get("models", []):
            row = {k: v for k, v in m.items() if k not in {"options", "batch_size"}}
            row["display_name"] = row.get("display_name") or row.get("name")
            row.update({k: v for k, v in finished.get(m.get("name"), {}).items() if k not in {"identity", "faults", "concurrency"}})
            rows.append(row)
        df = pd.DataFrame(rows)
    cols = [c for c in CATALOGUE_COLUMNS if c in df.columns] + [c for c in df.columns if c not in CATALOGUE_COLUMNS]
    return df[cols] if len(df.columns) else pd.DataFrame(columns=CATALOGUE_COLUMNS)


def report_data(out_dir: str | Path) -> ReportData:
    run = load_run(out_dir)
    title = (run.manifest.get("audit") or {}).get("name") or run.name
    tables = {k: v for k, v in run.tables.items() if k != "models"}
    return ReportData(f"valuelens audit: {title}", [run], tables, catalogue(run))


def _unique_run_names(runs: list[Run]) -> list[str]:
    """The audit names if they differ, else the directory names, else parent/directory, else numbered."""
    levels = [[(r.manifest.get("audit") or {}).get("name") or r.out_dir.resolve().name for r in runs],
              [r.out_dir.resolve().name for r in runs],
              [f"{r.out_dir.resolve().parent.name}/{r.out_dir.resolve().name}" for r in runs]]
    for names in levels:
        if len(set(names)) == len(names):
            return names
    return [f"{n}-{i}" for i, n in enumerate(levels[0], start=1)]


def comparison_data(out_dirs: Sequence[str | Path]) -> ReportData:
    """Several runs as one: every row tagged with its run; clashing model names renamed."""
    dirs = [Path(d) for d in out_dirs]
    if len(dirs) < 2:
        raise ValueLensError("a comparison needs at least two run directories")
    runs = [load_run(d) for d in dirs]
    for run, name in zip(runs, _unique_run_names(runs)):
        run.name = name
    cats = [catalogue(r) for r in runs]
    seen: dict[str, int] = {}
    for cat in cats:
        for m in cat.get("name", pd.Series(dtype=object)).dropna().unique():
            seen[m] = seen.get(m, 0) + 1
    clash = {m for m, n in seen.items() if n > 1}
    renamed: dict[str, str] = {}
    merged: dict[str, list[pd.DataFrame]] = {}
    for run, cat in zip(runs, cats):
        def rename(s: pd.Series, run=run) -> pd.Series:
            return s.map(lambda m: f"{m}@{run.name}" if m in clash else m)

        cat = cat.copy()
        for m in clash & set(cat.get("name", pd.Series(dtype=object)).dropna()):
            renamed[f"{m}@{run.name}"] = m
        if "name" in cat.columns:
            if "display_name" in cat.columns:
                same = cat["display_name"].isna() | (cat["display_name"] == cat["name"])
                cat["display_name"] = cat["display_name"].where(~same, rename(cat["name"]))
            cat["name"] = rename(cat["name"])
        cat.insert(0, "run", run.name)
        merged.setdefault("models", []).append(cat)
        for k, df in run.tables.items():
            if k == "models":
                continue
            df = df.copy()
            if "model" in df.columns:
                df["model"] = rename(df["model"])
            df.insert(0, "run", run.name)
            merged.setdefault(k, []).append(df)
    tables = {k: pd.concat(v, ignore_index=True) for k, v in merged.items()}
    cat = tables.pop("models")
    return ReportData(f"valuelens comparison: {', '.join(r.name for r in runs)}", runs, tables, cat, renamed)
