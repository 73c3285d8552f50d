"""The audit layers. Each is a function ``run(model, settings, ctx)`` returning
tidy tables (name → DataFrame) without a model column; the orchestrator adds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from valuelens.config import AuditConfig
    from valuelens.progress import Tracker


@dataclass(frozen=True)
class LayerContext:
    audit: AuditConfig
    out_dir: Path  # the run's output directory (layers may keep artefacts under it)
    tracker: Tracker
