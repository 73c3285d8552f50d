"""Layer 3b: MARK, multi-stage personality-driven reasoning (Liu et al. 2025b),
and its baselines.

Stages (each a structured JSON call, validated with pydantic, repaired at most
``max_retries`` times, else marked invalid): stress analysis → MBTI type (with a
rule-based demographic prior) → stress impact per cognitive function →
per-function option choice (the impacted function stack, with each function's
positive or negative description, is in the prompt — the successor code's
placeholder mismatch left it out) → weighted vote in code + LLM explanation.

The entry points import lazily, so :mod:`valuelens.config` can import
:mod:`valuelens.layers.mark.settings` without a cycle.
"""

from __future__ import annotations

from typing import Any


def run(model: Any, settings: Any, ctx: Any) -> Any:
    from valuelens.layers.mark.layer import run as _run

    return _run(model, settings, ctx)


def combine(tables: Any, settings: Any) -> Any:
    from valuelens.layers.mark.layer import combine as _combine

    return _combine(tables, settings)


def check(settings: Any, ctx: Any) -> None:
    """Read the microdata and questions before the run starts (bad input fails early);
    every audit language must have question texts (else its results would be silently absent)."""
    from valuelens.errors import ValueLensError
    from valuelens.layers.mark.data import load_sample

    sample = load_sample(settings, list(ctx.audit.countries), ctx.audit.seed)
    langs = list(ctx.audit.languages)
    missing = [lang for lang in langs if not any(lang in q.languages() for q in sample.questions.values())]
    if missing:
        raise ValueLensError(f"layers.mark: the questions of {settings.data.codebook} have no text in "
                             f"{', '.join(missing)}, one of the audit languages {langs}; give data.texts (a "
                             "questionnaire JSON with these languages) or set languages to the data's")
