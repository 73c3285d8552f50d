"""Layer 2: the Diversity-Enhanced Framework (DEF; Liu et al. 2025a).

Virtual participants (country + persona from respondent microdata or
marginals, a random location, varied generation settings, a memory of their
earlier valid answers) answer a questionnaire several times, so a model's
answers form a distribution comparable to a human survey's. Outputs: KL per
question and value dimension (DEF's inf → max + 1 rule and an ε-smoothed
column), demographic preference bias, FF/CV insensitivity, and the cultural
variation map. Audit-file key: ``layers.diversity`` (``DEFSettings``).

The entry points import the heavy modules on first call, so
``valuelens.config`` can import :mod:`.settings` without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from valuelens.layers import LayerContext
    from valuelens.layers.def_layer.settings import DEFSettings
    from valuelens.models import CachedModel


def run(model: CachedModel, settings: DEFSettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
    from valuelens.layers.def_layer.layer import run as _run

    return _run(model, settings, ctx)


def combine(merged: dict[str, pd.DataFrame], settings: DEFSettings) -> dict[str, pd.DataFrame]:
    from valuelens.layers.def_layer.layer import combine as _combine

    return _combine(merged, settings)


def check(settings: DEFSettings, ctx: LayerContext) -> None:
    """Load the questionnaire, human data and microdata now (cached for ``run``),
    so bad input fails before anything is written."""
    from valuelens.layers.def_layer.layer import inputs_for

    inputs_for(settings, list(ctx.audit.countries))
