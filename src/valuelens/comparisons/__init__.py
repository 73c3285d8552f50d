"""Group comparisons in the paper's design: the settings (``comparisons:`` in the audit file), the headline
metric catalogue they name, and the computation from exported tables (per-item values, tests, intervals).

Floor: imports only metrics and stats (and the base modules); config and the report import it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from .settings import ComparisonSpec, check_groups

ComparisonList = Annotated[list[ComparisonSpec], AfterValidator(check_groups)]

__all__ = ["ComparisonList", "ComparisonSpec"]
