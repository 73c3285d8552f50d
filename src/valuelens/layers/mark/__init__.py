"""Layer 3b: MARK, multi-stage personality-driven reasoning (Liu et al. 2025b),
and its baselines.

Stages (each a structured JSON call, validated with pydantic, repaired at most
``max_retries`` times, else marked invalid): stress analysis → MBTI type (with a
rule-based demographic prior) → stress impact per cognitive function →
per-function option choice (the impacted function stack, with each function's
positive or negative description, is in the prompt — the successor code's
placeholder mismatch left it out) → weighted vote in code + LLM explanation.

Entry points: :mod:`.layer`, registered in :mod:`valuelens.layers.registry`.
"""
