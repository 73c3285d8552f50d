"""Group comparisons for the report: the audit file's ``comparisons:`` and the automatic ones.

Automatic: origin region (China vs Western) and every pair of values of family, architecture, alignment and
size bucket, on every headline metric, each metric with its default unit (item-level where it has per-item
values, as the paper's Table 1; else one value per model) and tests. Automatic comparisons need at least
two models with a known value in each group; a pair an audit-file comparison covers is not repeated. The
computation is valuelens.comparisons.compute; corrections run over all tests of one kind in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from pydantic import ValidationError

from valuelens.comparisons.catalogue import item_keys
from valuelens.comparisons.compute import (
    Comparison,
    Outcome,
    adjust_all,
    family_sizes,
    item_frame,
    item_matrix,
    model_groups,
    run_spec,
    run_test,
)
from valuelens.comparisons.settings import ComparisonSpec
from valuelens.errors import ValueLensError
from valuelens.stats import holm

from .headline import Headline, label
from .i18n import N_, plural, tr, tr_known
from .load import ReportData

GROUPINGS = (("region", N_("origin region")), ("family", N_("model family")), ("architecture", N_("architecture")),
             ("alignment", N_("alignment method")),
             ("size", N_("size (params_b: small < 10 B ≤ medium < 50 B ≤ large)")))
LABELS = dict(GROUPINGS)
REGION_PAIR = ("China", "Western")
MIN_MODELS = 2  # automatic comparisons: a group of one model is a model, not a group


@dataclass
class Comparisons:
    done: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    n_tests: int = 0
    families: dict[tuple[str, str], int] = field(default_factory=dict)  # (test, correction) -> tests adjusted


def specs_of(data: ReportData) -> list[tuple[str, ComparisonSpec]]:
    """The runs' ``comparisons:`` (run.json audit), each with where it came from (duplicates once)."""
    out: list[tuple[str, ComparisonSpec]] = []
    seen = set()
    for run in data.runs:
        raw = (run.manifest.get("audit") or {}).get("comparisons") or []
        if not isinstance(raw, list):
            raise ValueLensError(f"{run.out_dir / 'run.json'}: audit.comparisons must be a list")
        for i, item in enumerate(raw):
            try:
                spec = ComparisonSpec.model_validate(item)
            except ValidationError as e:
                err = e.errors()[0]
                raise ValueLensError(f"{run.out_dir / 'run.json'}: audit.comparisons[{i}]: "
                                     f"{err['msg'].removeprefix('Value error, ')}") from None
            key = spec.model_dump_json()
            if key not in seen:
                seen.add(key)
                out.append((tr("audit file comparisons[{i}]", i=i) + (f" ({run.name})" if data.is_comparison else ""),
                            spec))
    return out


def _describe(groups: dict[str, list[str]], names: tuple[str, ...]) -> str:
    return ", ".join(f"{g}: " + plural(len(groups.get(g, [])), "{n} model", "{n} models") for g in names)


def compare(data: ReportData, h: Headline) -> Comparisons:
    out = Comparisons()
    if h.values.empty or not h.entries:
        out.skipped.append(tr("No headline metric is available yet, so there is nothing to compare."))
        return out
    covered: set[tuple[str, frozenset[str]]] = set()
    for origin, spec in specs_of(data):
        groups = model_groups(data.catalogue, spec.by, h.models)
        pairs = [tuple(spec.groups)] if spec.groups else list(combinations(sorted(groups), 2))
        label = tr(LABELS[spec.by]) if spec.by in LABELS else spec.by
        for a, b in pairs:
            covered.add((spec.by, frozenset((a, b))))
            missing = [g for g in (a, b) if not groups.get(g)]
            if missing:
                out.skipped.append(tr("{origin}: {label} {a} vs {b} not compared: no model with a known {by} "
                                      "{missing} in this report ({groups}).", origin=origin, label=label, a=a, b=b,
                                      by=spec.by, missing=tr(" or ").join(missing), groups=_describe(groups, (a, b))))
                continue
            c = run_spec(spec, origin, label, a, b, groups, h.entries, h.values, data.tables, h.n_resamples, h.seed)
            if min(len(c.models_a), len(c.models_b)) < 2:
                c.warnings.append(tr("A group of one model: this compares two models (over items), not two groups."))
            out.done.append(c)
    for column, label in GROUPINGS:
        label = tr(label)
        groups = model_groups(data.catalogue, column, h.models)
        pairs = [REGION_PAIR] if column == "region" else list(combinations(sorted(groups), 2))
        pairs = [p for p in pairs if (column, frozenset(p)) not in covered]
        ok = [(a, b) for a, b in pairs if len(groups.get(a, [])) >= MIN_MODELS and len(groups.get(b, [])) >= MIN_MODELS]
        if not ok:
            if not pairs and groups:
                continue  # every pair is an audit-file comparison
            shown = tuple(REGION_PAIR) if column == "region" else tuple(sorted(groups))
            if not groups:
                detail = tr("no model has a known value")
            elif len(shown) < 2:
                detail = tr("only one group: {groups}", groups=_describe(groups, shown))
            else:
                detail = _describe(groups, shown)
            out.skipped.append(tr("{label} ({column}): not compared; a group comparison needs at least {n} models in "
                                  "each of two groups ({detail}).", label=label, column=column, n=MIN_MODELS,
                                  detail=detail))
            continue
        auto = ComparisonSpec(by=column)
        for a, b in ok:
            out.done.append(run_spec(auto, tr("automatic"), label, a, b, groups, h.entries, h.values, data.tables,
                                     h.n_resamples, h.seed))
    out.n_tests = adjust_all(out.done)
    out.families = family_sizes(out.done)
    if not data.is_uniform():
        for c in out.done:
            _not_run_note(data, c)
    return out


def _not_run_note(data: ReportData, c: Comparison) -> None:
    """Group members that were not given a compared metric's layer: left out of it (the observations are the
    models that ran it), never counted as 0."""
    parts = []
    for layer in data.layers:
        if any(data.layer_of_table(r.entry.metric.table) == layer for r in c.rows):
            missing = [m for m in [*c.models_a, *c.models_b] if data.cell(m, layer) == "not run"]
            if missing:
                parts.append(f"{tr_known(layer.title)}: {', '.join(missing)}")
    if parts:
        c.warnings.append(tr("Not run (left out of that layer's metrics, not counted as 0): ") + tr("; ").join(parts)
                          + tr("."))


@dataclass
class CrossRun:
    """One model × metric paired across two runs: the same items, before (run a) and after (run b)."""

    model: str
    run_a: str
    run_b: str
    label: str
    n: int
    mean_a: float
    mean_b: float
    paired_t: Outcome | None
    wilcoxon: Outcome | None
    bootstrap: Outcome | None


def cross_run(data: ReportData, h: Headline) -> list[CrossRun]:
    """For a comparison of runs: every model that is in the first run and a later one, on every headline metric
    with per-item values, the item-by-item differences (later run − first run): paired t (d_z), Wilcoxon
    signed-rank (rank-biserial) and a paired bootstrap interval; Holm over the paired t tests of the section."""
    if not data.is_comparison:
        return []
    by_model: dict[str, dict[str, str]] = {}  # original name -> run -> name in the report
    for renamed, original in data.renamed.items():
        by_model.setdefault(original, {})[renamed.rpartition("@")[2]] = renamed
    first = data.runs[0].name
    out: list[CrossRun] = []
    for e in h.entries:
        if not e.metric.item_source():
            continue
        frame = item_frame(data.tables, e.metric, e.by_value)
        if frame is None or not len(frame):
            continue
        source = e.metric.item_source()
        assert source is not None  # item_frame found a frame, so the metric has per-item values
        items = item_matrix(frame, [k for k in item_keys(source[0], frame) if k != e.metric.by])
        for model, names in by_model.items():
            a = names.get(first)
            for run in data.runs[1:]:
                b = names.get(run.name)
                if a is None or b is None or a not in items.columns or b not in items.columns:
                    continue
                both = items[[a, b]].dropna()
                if len(both) < 2:
                    continue
                x, y = both[b].to_numpy(float), both[a].to_numpy(float)
                res = {t: run_test(t, x, y, (x, y), "paired", h.n_resamples, h.seed)[0]
                       for t in ("paired_t", "wilcoxon", "bootstrap")}
                out.append(CrossRun(model, first, run.name, label(e), len(both), float(y.mean()), float(x.mean()),
                                    res["paired_t"], res["wilcoxon"], res["bootstrap"]))
    tests = [c.paired_t for c in out if c.paired_t is not None and np.isfinite(c.paired_t.p)]
    for o, p in zip(tests, holm([o.p for o in tests])):
        o.p_adj = float(p)
    return out
