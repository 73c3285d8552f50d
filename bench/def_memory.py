"""Peak memory of DEF generation by number of answers (issue 21.5), on the tiny test model.

Each size runs in its own fresh process (so peak RSS is that run's): build
the tiny random model (tests/tiny.py), load it through the hf backend, then
DEF's ``run_waves`` through a CachedModel on a fresh SQLite store for
participants x passes x 2 countries x 2 languages answers to one question
(no memory, retries 0, num_beams 1, sampled, DEF's reply form and stop rule),
so only the number of answers changes between sizes. Reported: RSS after the model is loaded,
peak RSS (``ru_maxrss``) at the end, their difference, the answers stored and
the wall time. CachedModel commits each chunk of samples (``chunk_size``) as
it completes, and the backend holds one chunk's prompts and caches at a
time, so the difference should not grow with the number of answers beyond
the answer rows DEF keeps for its tables (about 1 KB each).

    PYTHONPATH=src:tests .venv/bin/python bench/def_memory.py [--sizes 100 1000] [--max-tokens 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(n: int, max_tokens: int) -> dict:
    from tiny import build_tiny_model

    from valuelens.data.survey import country_names
    from valuelens.layers.def_layer.generation import make_sessions, run_waves
    from valuelens.layers.def_layer.layer import inputs_for, participants
    from valuelens.layers.def_layer.settings import DEFSettings
    from valuelens.models import CachedModel
    from valuelens.models.hf import HFBackend
    from valuelens.progress import NullTracker
    from valuelens.store import Store

    countries = ["United States", "China"]
    # one question, no memory: every prompt of the same kind and length, only their number changes
    passes = 5 if n <= 100 else 10
    people = max(1, n // (passes * 4))  # x passes x 2 countries x 2 languages
    with tempfile.TemporaryDirectory() as d:
        backend = HFBackend.from_path(build_tiny_model(Path(d) / "tiny"), batch_size=8)
        st = DEFSettings(participants=people, passes=passes, limit=1, beams=(1, 1), retries=0, memory_max=0,
                         max_tokens=max_tokens, insensitivity={"factual": {}})
        inputs = inputs_for(st, countries)
        sessions = make_sessions(participants(inputs, st, countries, 0, True), ["en", "zh"], passes, 0,
                                 country_names())
        loaded = rss_mb()
        store = Store(Path(d) / "s.sqlite")
        t = time.perf_counter()
        rows = run_waves(CachedModel(backend, store, "tiny", chunk_size=32), inputs, sessions, st, 0, NullTracker())
        secs = time.perf_counter() - t
        store.close()
        with sqlite3.connect(Path(d) / "s.sqlite") as c:
            stored = c.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"answers": len(rows), "stored": stored, "loaded_mb": loaded, "peak_mb": peak, "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--child", type=int, default=0)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.max_tokens)))
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}, "
          f"tiny model, max_tokens {a.max_tokens}")
    print(f"{'answers':>8} {'stored':>7} {'RSS loaded MB':>14} {'peak RSS MB':>12} {'peak - loaded':>14} {'seconds':>8}")
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--max-tokens", str(a.max_tokens)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['answers']:8d} {r['stored']:7d} {r['loaded_mb']:14.1f} {r['peak_mb']:12.1f} "
              f"{r['peak_mb'] - r['loaded_mb']:14.1f} {r['seconds']:8.1f}")


if __name__ == "__main__":
    main()
