"""SIGKILL an escalation run mid-chain, resume each time: the tables equal an
uninterrupted run's, no call is made twice, and the stored full-mode requests
hold the model's own earlier answers (issue 22). Scripted model: its answers
are a hash of the prompt, so every full/causal prompt depends on the answers
before it. Marked slow (end to end, as test_kill_resume): about 80 s on a 2-core machine at load
average 11, a few CPU-seconds per run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_kill_resume import kill_at

from valuelens.data.dilemmas import builtin_chains
from valuelens.store import STORE_NAME

CHAINS, CONTEXTS = 3, 3
ASKED = CHAINS * 2 * (5 * CONTEXTS - (CONTEXTS - 1))  # chains x orders x steps; step 1 is shared by the modes
TABLES = ("dilemma_chain_responses", "dilemma_chain_steps", "dilemma_chain_winrates", "dilemma_chain_stability",
          "dilemma_chain_volatility", "dilemma_chain_contexts", "dilemma_chain_context_contrast")


def _audit(tmp_path: Path, out: Path) -> Path:
    script = tmp_path / "hash.json"
    script.write_text(json.dumps({"rules": [], "delay": 0.01}))
    p = tmp_path / f"{out.name}.yaml"
    p.write_text(f"""\
name: kill
output_dir: {out}
seed: 3
chunk_size: 2
languages: [en]
models:
  - {{name: m, backend: "scripted:{script}"}}
layers:
  dilemmas: {{corpus: none, limit: {CHAINS}, n_resamples: 200, escalation: {{context: [full, none, causal]}}}}
""")
    return p


def _run(audit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit), "-q"], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_sigkill_mid_chain_then_resume_gives_identical_tables(tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = _run(_audit(tmp_path, ref_out))
    assert ref.returncode == 0, ref.stderr
    assert json.loads((ref_out / "run.json").read_text())["calls"]["calls_made"] == ASKED

    audit = _audit(tmp_path, out)
    kills = kill_at(audit, out, (3, 16, 33, 50, 66))  # inside steps 1-5 of the step-by-step batches
    assert kills >= 3, "the run finished before most kill points: make it longer"
    final = _run(audit)
    assert final.returncode == 0, final.stderr

    with sqlite3.connect(out / STORE_NAME) as c:
        made = c.execute("SELECT SUM(calls_made) FROM runs").fetchone()[0]
        stored = c.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
        requests = [json.loads(r) for (r,) in c.execute("SELECT request FROM calls")]
    assert stored == (ASKED, ASKED) and made == ASKED  # nothing lost, nothing asked twice

    for name in TABLES:
        a = pd.read_parquet(ref_out / "results" / f"{name}.parquet")
        b = pd.read_parquet(out / "results" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)  # scripted answers: exactly equal

    # the stored full-mode requests of step k carry the model's own choices at steps 1..k-1
    steps = pd.read_parquet(out / "results" / "dilemma_chain_steps.parquet")
    full = steps[steps["context"] == "full"]
    chosen = {(r.chain_id, r.step): r.chosen_choice for r in full.itertuples()}
    conversations = [q["messages"] for q in requests if len(q["messages"]) > 1]
    assert len(conversations) == CHAINS * 4 * 2  # steps 2-5, both orders
    chains = builtin_chains()[:CHAINS]
    for msgs in conversations:
        k = (len(msgs) + 1) // 2
        (chain,) = [c for c in chains if c.norm["en"] in msgs[0]["content"]]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (k - 1) + ["user"]
        assert chain.steps[k - 1].situation["en"] in msgs[-1]["content"]
        want = ["Answer: (no clear answer)" if pd.isna(chosen[(chain.id, j)])
                else f"Answer: {'AB'[int(chosen[(chain.id, j)]) - 1]}" for j in range(1, k)]
        assert [m["content"] for m in msgs[1::2]] == want
