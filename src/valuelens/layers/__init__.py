"""The audit layers. Each registered layer (see :mod:`valuelens.layers.registry`)
has ``run(model, settings, ctx)`` returning tidy tables (name → DataFrame)
without a model column (the orchestrator adds it), and may have
``combine(tables, settings, ctx)`` and ``check(settings, ctx)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from valuelens.data.survey import country_names
from valuelens.progress import NullTracker, Tracker


@dataclass(frozen=True)
class LayerContext:
    """What a layer gets from the audit besides its own settings: plain values,
    not the audit file's model (``AuditConfig.layer_context`` builds it), so
    layer code never imports ``valuelens.config``.

    Per-layer knobs (limits, data paths, ``strict``) are in the layer's own
    settings model, not here."""

    countries: tuple[str, ...]
    languages: tuple[str, ...]
    seed: int = 0
    out_dir: Path = Path(".")  # the run's output directory (layers may keep artefacts under it)
    tracker: Tracker = field(default_factory=NullTracker)
    country_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # the audit's extra names
    audit_name: str = "audit"

    def names(self) -> dict[str, dict[str, str]]:
        """Every known country's name per language: the built-in ones, then the audit's ``country_names``."""
        return {**country_names(), **{c: {"en": c, **v} for c, v in self.country_names.items()}}
