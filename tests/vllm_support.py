"""Shared by the vLLM tests: skip (or fail, under VALUELENS_REQUIRE_VLLM=1)
when vLLM is not installed, and the probe items both backends score."""

from __future__ import annotations

import importlib.util
import os

import pytest

from valuelens.data.survey import load_questionnaire
from valuelens.layers.first_token import option_request

REASON = "vLLM is not installed here; these tests run in .venv-vllm (`make test-vllm`)"


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("VALUELENS_REQUIRE_VLLM") == "1":
            pytest.fail(REASON + " — VALUELENS_REQUIRE_VLLM=1 says they must run")
        pytest.skip(REASON)


def probe_items(countries=("United States", "China"), languages=("en", "zh")):
    """The first-token probe over the built-in questionnaire (option requests)."""
    qs = load_questionnaire("builtin")
    return [option_request(q, c, lang) for q in qs for c in countries for lang in languages]


def max_abs_diff(a, b) -> float:
    """Largest per-option |p_a - p_b| over paired OptionResults."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        assert x.probs is not None and y.probs is not None
        worst = max(worst, max(abs(p - q) for p, q in zip(x.probs, y.probs, strict=True)))
    return worst
