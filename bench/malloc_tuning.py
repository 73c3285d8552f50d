"""The hf backend's glibc allocator setting (``models/hf_alloc.py``): on vs off.

The setting is process-wide and fixed at start, so each side is its own
process: two workers, each with the embedded model loaded, one with
``VALUELENS_MALLOC_TUNING=0``. Both score the same items (the 70 probe items
of bench/probe_vs_lmeval.py when /work/shared/data is there, else the
builtin questionnaire for 4 countries x en/zh) through
``HFBackend.option_distribution`` in chunks of 32, as CachedModel sends
them. Reps alternate between the workers (one computes at a time) after a
warm-up each; medians of wall time are printed, and the two sides'
probabilities are compared (the allocator must not change a bit).

    .venv/bin/python bench/malloc_tuning.py [--reps 5] [--batch 8] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
if int(sys.argv[3]):
    torch.set_num_threads(int(sys.argv[3]))
from prefix_reuse import items
from valuelens.models import embedded
from valuelens.models.hf_alloc import tune_malloc
backend = embedded.load(batch_size=int(sys.argv[2]))
reqs, source = items()
print(json.dumps({"applied": tune_malloc(), "n": len(reqs), "source": source, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    out = []
    for s in range(0, len(reqs), 32):
        out += backend.option_distribution(reqs[s : s + 32])
    dt = time.perf_counter() - t0
    print(json.dumps({"s": dt, "probs": [list(r.probs) for r in out]}), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    args = ap.parse_args()
    workers = {}
    for on in (True, False):
        env = dict(os.environ, VALUELENS_MALLOC_TUNING="1" if on else "0")
        workers[on] = subprocess.Popen([sys.executable, "-c", WORKER, str(HERE), str(args.batch), str(args.threads)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    info = {on: json.loads(w.stdout.readline()) for on, w in workers.items()}
    assert info[True]["applied"] and not info[False]["applied"], info

    def rep(on: bool) -> dict:
        workers[on].stdin.write("run\n")
        workers[on].stdin.flush()
        return json.loads(workers[on].stdout.readline())

    print(f"{info[True]['n']} items ({info[True]['source']}), batch {args.batch}, torch threads "
          f"{info[True]['threads']}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rep(True), rep(False)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    max_dp = 0.0
    for r in range(args.reps):
        got = {}
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            got[on] = rep(on)
            times[on].append(got[on]["s"])
        max_dp = max(max_dp, *(abs(a - b) for x, y in zip(got[True]["probs"], got[False]["probs"]) for a, b in zip(x, y)))
        print(f"  rep {r + 1}: tuned {times[True][-1]:.2f} s, glibc defaults {times[False][-1]:.2f} s", flush=True)
    for w in workers.values():
        w.stdin.close()
        w.wait(timeout=60)
    n = info[True]["n"]
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{'allocator':<36}{'items/s':>9}{'s median':>10}")
    print(f"{'glibc defaults':<36}{n / off:>9.2f}{off:>10.2f}")
    print(f"{'valuelens setting (hf_alloc)':<36}{n / on:>9.2f}{on:>10.2f}")
    print(f"ratio tuned / defaults: {off / on:.3f}x; max |dp| between them: {max_dp:.1e}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
