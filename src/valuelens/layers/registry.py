"""The layer registry: the one place that says which audit layers exist.

Each layer is one :class:`LayerSpec`: its key, title, settings model, table
prefix, entry points (``run``, and optionally ``combine`` and ``check``) and
its report section. Everything else derives from :data:`REGISTRY`:

* ``config.Layers`` (the ``layers:`` mapping of the audit file) has one field
  per key, typed by the layer's settings model (``config.layers_model``);
* ``audit`` checks, runs and combines the selected layers in registry order,
  and refuses a table outside the layer's prefix (so every exported table
  belongs to exactly one layer);
* the report reads each layer's :meth:`LayerSpec.report_record` from
  ``run.json["layers"]``, which the audit writes. The report may not import
  layer code (tests/test_import_graph.py: it reads tables only), so it never
  imports this module; ``report/load.py`` keeps, for run.json files written
  before that record existed, a copy of the four built-in records, and
  tests/test_registry.py checks that copy equals the registry's.

Adding a layer: a package under ``valuelens/layers/`` (settings model, entry
points) and one ``LayerSpec`` in :data:`REGISTRY` (or :func:`register`, as
tests/test_registry.py does with a toy layer). See CONTRIBUTING.md.

Names. A layer's key is its ``layers:`` key in the audit file, the root of
its table names and its report anchor (``#layer-KEY``). DEF is ``def``
everywhere: key, tables ``def_*``, anchor ``layer-def``; its old audit key
``diversity`` is still accepted (``aliases``) with a deprecation note. Its
package stays ``layers/def_layer``: ``def`` is a Python keyword (no
``import valuelens.layers.def``), and renaming the folder would move every
file other work is editing for no gain. The dilemma layer's tables are
``dilemma_*`` under the key ``dilemmas`` (prefix given explicitly; renaming
exported tables would break every existing run directory).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from valuelens.layers import LayerContext
from valuelens.layers import first_token
from valuelens.layers.def_layer import layer as def_layer
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.layers.dilemmas import layer as dilemmas
from valuelens.layers.dilemmas.settings import DilemmaSettings
from valuelens.layers.first_token_settings import FirstTokenSettings
from valuelens.layers.mark import layer as mark
from valuelens.layers.mark.settings import MarkSettings
from valuelens.models import CachedModel
from valuelens.strict import Strict

Tables = dict[str, pd.DataFrame]


class RunFn(Protocol):
    """One model: its tables, without a ``model`` column (the orchestrator adds it)."""

    def __call__(self, model: CachedModel, settings: Any, ctx: LayerContext, /) -> Tables: ...


class CombineFn(Protocol):
    """After every model: cross-model tables (a returned name replaces the merged table)."""

    def __call__(self, tables: Tables, settings: Any, ctx: LayerContext, /) -> Tables: ...


class FitsFn(Protocol):
    """Why a model of this backend kind (``hf``, ``openai``, ...) cannot run the layer with these settings, or ""."""

    def __call__(self, settings: Any, kind: str, /) -> str: ...


class CheckFn(Protocol):
    """Before anything is written: read the layer's inputs; bad input raises ValueLensError."""

    def __call__(self, settings: Any, ctx: LayerContext, /) -> None: ...


@dataclass(frozen=True)
class LayerSpec:
    """One audit layer, declared once."""

    key: str  # the audit file's layers.KEY; the report anchor layer-KEY
    title: str  # section title in the report
    settings: type[Strict]  # the settings model of layers.KEY
    prefix: str  # every table the layer writes is named PREFIX*
    run: RunFn
    combine: CombineFn | None = None
    check: CheckFn | None = None
    section: str = ""  # the report builder (report/layers.py SECTIONS); "": the generic one (tables as exported)
    report_order: int = 100  # place in the report (the paper's order for the built-in layers); ties: registry order
    aliases: tuple[str, ...] = ()  # older audit-file keys, accepted with a deprecation note
    legacy_keys: tuple[str, ...] = ()  # keys older run.json files used under audit.layers (the report only)
    fits: FitsFn | None = None  # checked per model at config time (per-model layers: which model runs it)

    def __post_init__(self) -> None:
        for k in self.config_keys:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", k):
                raise ValueError(f"layer key {k!r}: use lower-case letters, digits and '_'")
        if not self.prefix:
            raise ValueError(f"layer {self.key}: empty table prefix")

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Every key under ``layers:`` that means this layer (current first)."""
        return (self.key, *self.aliases, *self.legacy_keys)

    def owns(self, table: str) -> bool:
        return table.startswith(self.prefix)

    def report_record(self) -> dict[str, Any]:
        """What the report needs to know about the layer, as run.json stores it (JSON values only)."""
        return {"key": self.key, "title": self.title, "prefix": self.prefix, "config_keys": list(self.config_keys),
                "section": self.section, "order": self.report_order}


REGISTRY: dict[str, LayerSpec] = {}  # key → spec, in the order layers run


def register(spec: LayerSpec) -> LayerSpec:
    """Add a layer (after the others). A key, alias or prefix already taken is an error."""
    for other in REGISTRY.values():
        taken = set(other.config_keys) & set(spec.config_keys)
        if taken:
            raise ValueError(f"layer {spec.key}: key {sorted(taken)[0]!r} is already layer {other.key}'s")
        if other.prefix.startswith(spec.prefix) or spec.prefix.startswith(other.prefix):
            raise ValueError(f"layer {spec.key}: table prefix {spec.prefix!r} overlaps layer {other.key}'s "
                             f"{other.prefix!r} (a table must belong to one layer)")
    REGISTRY[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    REGISTRY.pop(key, None)


@contextmanager
def registered(spec: LayerSpec) -> Iterator[LayerSpec]:
    """A layer registered for the duration of a ``with`` block (tests)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.key)


def layers() -> list[LayerSpec]:
    """The registered layers, in run order."""
    return list(REGISTRY.values())


def get(key: str) -> LayerSpec:
    """The layer of a key or alias."""
    for spec in REGISTRY.values():
        if key == spec.key or key in spec.aliases:
            return spec
    raise KeyError(key)


def aliases() -> Mapping[str, str]:
    """Deprecated audit-file key → current key."""
    return {a: s.key for s in REGISTRY.values() for a in s.aliases}


# The built-in layers, in the order they run (first_token first: the cheapest, and the one most audits use).
register(LayerSpec(
    "first_token", "First-token alignment", FirstTokenSettings, "first_token_", first_token.run,
    check=first_token.check, section="first_token", report_order=30, fits=first_token.backend_problem))
register(LayerSpec(
    "def", "DEF (Diversity-Enhanced Framework)", DEFSettings, "def_", def_layer.run, def_layer.combine,
    def_layer.check, section="def", report_order=20, aliases=("diversity",)))
register(LayerSpec(
    "dilemmas", "Ethical dilemmas", DilemmaSettings, "dilemma_", dilemmas.run, dilemmas.combine, dilemmas.check,
    section="dilemmas", report_order=10, legacy_keys=("dilemma", "moralchoice", "escalation")))
register(LayerSpec(
    "mark", "MARK (personality-driven reasoning)", MarkSettings, "mark_", mark.run, mark.combine, mark.check,
    section="mark", report_order=40))
