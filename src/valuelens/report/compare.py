"""Group comparisons in the paper's Table 1 layout (Student and Welch t-tests).

Groups come from the model catalogue (region, family, architecture,
alignment); the observations are the models' headline values (one number
per model, see :mod:`.headline`). A pair of groups is compared only when each
has at least two models with a value; Holm's correction runs over all the
tests of one kind (Student, Welch) in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from valuelens.stats import TTestResult, holm, ttest

from .headline import Entry, Headline

GROUPINGS = (("region", "origin region"), ("family", "model family"), ("architecture", "architecture"),
             ("alignment", "alignment method"))
REGION_PAIR = ("China", "Western")
IGNORED = {"unknown", "", "None", "nan"}
MIN_MODELS = 2


@dataclass
class Test:
    entry: Entry
    student: TTestResult
    welch: TTestResult
    holm_student: float = float("nan")
    holm_welch: float = float("nan")


@dataclass
class Comparison:
    grouping: str
    label: str
    a: str
    b: str
    models_a: list[str]
    models_b: list[str]
    tests: list[Test] = field(default_factory=list)
    skipped_metrics: dict[str, list[str]] = field(default_factory=dict)  # reason -> metric labels


@dataclass
class Comparisons:
    done: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    n_tests: int = 0


def _groups(catalogue: pd.DataFrame, column: str, models: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if column not in catalogue.columns or "name" not in catalogue.columns:
        return out
    for name, value in zip(catalogue["name"], catalogue[column]):
        if name in models and pd.notna(value) and str(value) not in IGNORED:
            out.setdefault(str(value), []).append(name)
    return out


def _pairs(column: str, groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    if column == "region":
        return [REGION_PAIR]
    return list(combinations(sorted(groups), 2))


def _describe(groups: dict[str, list[str]], names: tuple[str, ...]) -> str:
    return ", ".join(f"{g}: {len(groups.get(g, []))} model{'s' * (len(groups.get(g, [])) != 1)}" for g in names)


def compare(catalogue: pd.DataFrame, h: Headline) -> Comparisons:
    out = Comparisons()
    if h.values.empty or not h.entries:
        out.skipped.append("No headline metric is available yet, so there is nothing to compare.")
        return out
    for column, label in GROUPINGS:
        groups = _groups(catalogue, column, h.models)
        pairs = _pairs(column, groups)
        ok = [(a, b) for a, b in pairs if len(groups.get(a, [])) >= MIN_MODELS and len(groups.get(b, [])) >= MIN_MODELS]
        if not ok:
            shown = tuple(REGION_PAIR) if column == "region" else tuple(sorted(groups))
            if not groups:
                detail = "no model has a known value"
            elif len(shown) < 2:
                detail = f"only one group: {_describe(groups, shown)}"
            else:
                detail = _describe(groups, shown)
            out.skipped.append(f"{label} ({column}): not compared; a t-test needs at least {MIN_MODELS} models in "
                               f"each of two groups ({detail}).")
            continue
        for a, b in ok:
            c = Comparison(column, label, a, b, groups[a], groups[b])
            for e in h.entries:
                x = h.values.loc[groups[a], e.key].dropna().to_numpy(dtype=float)
                y = h.values.loc[groups[b], e.key].dropna().to_numpy(dtype=float)
                if x.size < MIN_MODELS or y.size < MIN_MODELS:
                    c.skipped_metrics.setdefault(f"fewer than {MIN_MODELS} models with a value in a group",
                                                 []).append(e.label)
                    continue
                student = ttest(x, y, equal_var=True)
                if student.sed == 0:  # t would be ±inf or undefined: nothing varies within the groups
                    c.skipped_metrics.setdefault("no variation within either group", []).append(e.label)
                    continue
                c.tests.append(Test(e, student, ttest(x, y, equal_var=False)))
            out.done.append(c)
    _adjust(out)
    return out


def _adjust(out: Comparisons) -> None:
    tests = [t for c in out.done for t in c.tests]
    out.n_tests = len(tests)
    for kind in ("student", "welch"):
        idx = [i for i, t in enumerate(tests) if not np.isnan(getattr(t, kind).p)]
        if not idx:
            continue
        adj = holm([getattr(tests[i], kind).p for i in idx])
        for i, p in zip(idx, adj):
            setattr(tests[i], f"holm_{kind}", float(p))
