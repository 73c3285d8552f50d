"""``comparisons:`` in the audit file: which groups of models to compare, on what, by which unit and test.

    comparisons:
      - {by: family, groups: [Mistral, Llama-3], metric: def_kl, unit: item, test: [student, welch, wilcoxon]}

``by``: a catalogue field (region, family, architecture — dense/MoE —, alignment) or ``size`` (params_b in
buckets, see :data:`SIZE_BUCKETS`). ``groups``: two values of that field (default: every pair present).
``metric``: a headline metric key or a list of them (default: every headline metric). ``unit``:

- ``model``: one observation per model (its headline value);
- ``item``: one observation per item (question × culture × prompt language), each item's value the mean over
  the group's models that answered it; the two groups' item sets need not match. The paper's Table 1 design
  (n = items per group, DF = n1 + n2 − 2);
- ``paired``: the items both groups have, compared pair by pair.

Default unit: ``item`` where the metric has per-item values (first-token and DEF metrics), else ``model``.
``test`` (default per unit): student, welch, mannwhitney (model/item); wilcoxon (item/paired: signed-rank on
the items both groups have), paired_t, bootstrap (paired: the mean item difference; item/model: the
difference of the means, groups resampled independently). ``correction``: holm (default), bh or none, over
all tests of the same kind in the report.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pandas as pd
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from valuelens.strict import Strict

from .catalogue import BY_METRIC, METRICS

Unit = Literal["model", "item", "paired"]
TestName = Literal["student", "welch", "mannwhitney", "wilcoxon", "paired_t", "bootstrap"]
UNIT_TESTS: dict[str, tuple[str, ...]] = {
    "model": ("student", "welch", "mannwhitney", "bootstrap"),
    "item": ("student", "welch", "mannwhitney", "wilcoxon", "bootstrap"),
    "paired": ("paired_t", "wilcoxon", "bootstrap"),
}
DEFAULT_TESTS: dict[str, tuple[str, ...]] = {
    "model": ("student", "welch"),
    "item": ("student", "welch", "wilcoxon"),
    "paired": ("paired_t", "wilcoxon", "bootstrap"),
}
BY_FIELDS = ("region", "family", "architecture", "alignment", "size")
# params_b → size bucket: small < 10 B ≤ medium < 50 B ≤ large (unknown params_b: no bucket)
SIZE_BUCKETS = ((10.0, "small"), (50.0, "medium"), (float("inf"), "large"))
IGNORED = {"unknown", "", "None", "nan", "other"}


def size_bucket(params_b: Any) -> str | None:
    try:
        v = float(params_b)
    except (TypeError, ValueError):
        return None
    if math.isnan(v) or v <= 0:
        return None
    return next(name for limit, name in SIZE_BUCKETS if v < limit)


def group_of(model: dict[str, Any], by: str) -> str | None:
    """A model's group for ``by`` (its catalogue row or audit entry as a dict); None when unknown."""
    v = size_bucket(model.get("params_b")) if by == "size" else model.get(by)
    if v is None or pd.isna(v) or str(v) in IGNORED:
        return None
    return str(v)


def default_unit(metric_key: str) -> str:
    return "item" if BY_METRIC[metric_key].item_source() else "model"


class ComparisonSpec(Strict):
    """One comparison of two groups of models (see the module docstring)."""

    by: str
    groups: list[str] | None = Field(default=None, min_length=2, max_length=2,
                                     description="two values of the 'by' field; default: every pair present")
    metric: str | list[str] | None = Field(default=None, description="headline metric key(s); default: all")
    unit: Unit | None = Field(default=None, description="model | item | paired; default: item where the metric "
                                                        "has per-item values, else model")
    test: list[TestName] | None = Field(default=None, min_length=1, description="default: by unit")
    correction: Literal["holm", "bh", "none"] = "holm"

    @field_validator("by")
    @classmethod
    def _known_by(cls, v: str) -> str:
        if v not in BY_FIELDS:
            raise ValueError(f"unknown field {v!r} to group models by (one of {', '.join(BY_FIELDS)})")
        return v

    @field_validator("groups")
    @classmethod
    def _two_groups(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and v[0] == v[1]:
            raise ValueError(f"the two groups are the same ({v[0]!r})")
        return v

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | list[str] | None) -> str | list[str] | None:
        for m in [v] if isinstance(v, str) else v or []:
            if m not in BY_METRIC:
                raise ValueError(f"unknown metric {m!r} (one of {', '.join(x.key for x in METRICS)})")
        return v

    def metrics(self) -> list[str]:
        if self.metric is None:
            return [m.key for m in METRICS]
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    def unit_of(self, metric_key: str) -> str:
        return self.unit or default_unit(metric_key)

    def tests_of(self, metric_key: str) -> tuple[str, ...]:
        unit = self.unit_of(metric_key)
        return tuple(self.test) if self.test else DEFAULT_TESTS[unit]

    @model_validator(mode="after")
    def _unit_fits(self) -> ComparisonSpec:
        explicit = self.metric is not None
        for key in self.metrics():
            unit = self.unit_of(key)
            if unit != "model" and not BY_METRIC[key].item_source():
                if explicit:
                    raise ValueError(f"metric {key!r} has no per-item values, so unit {unit!r} is not possible "
                                     "(use unit: model)")
                continue
            bad = [t for t in self.tests_of(key) if t not in UNIT_TESTS[unit]]
            if bad and (explicit or self.unit is not None):
                hint = " (the signed-rank test pairs items: use unit item or paired, or mannwhitney)" \
                    if "wilcoxon" in bad and unit == "model" else ""
                raise ValueError(f"test {', '.join(bad)} does not fit unit {unit!r} (for {unit}: "
                                 f"{', '.join(UNIT_TESTS[unit])}){hint}")
        return self


def check_groups(specs: list[ComparisonSpec], info: ValidationInfo) -> list[ComparisonSpec]:
    """Every named group is a value some audited model has (after the catalogue filled its metadata)."""
    models = (info.data or {}).get("models")
    if not models:  # the models' own error is reported
        return specs
    for i, spec in enumerate(specs):
        if spec.groups is None:
            continue
        present = sorted({g for m in models if (g := group_of(_as_dict(m), spec.by)) is not None})
        for j, g in enumerate(spec.groups):
            if g not in present:
                # config.parse_audit appends ctx["key"] to the error's location for this error type (the
                # backend options use it), so the message names the group's own line.
                raise PydanticCustomError("backend_option", "{message}", {
                    "message": f"{g!r} is not the {spec.by} of any audited model "
                               f"({spec.by} values: {', '.join(present) or 'none known'})",
                    "key": (i, "groups", j)})
    return specs


def _as_dict(m: Any) -> dict[str, Any]:
    return m if isinstance(m, dict) else m.model_dump() if hasattr(m, "model_dump") else dict(m)
