"""Shared-prefix KV reuse in HFBackend.option_distribution: with vs without.

One process, one loaded embedded model (SmolLM2-135M-Instruct, fp32), the
same items both ways: the 70 probe items of bench/probe_vs_lmeval.py
(United States + China x 35 WVS questions, en) when /work/shared/data is
there, else the builtin questionnaire for 4 countries x en/zh. The backend
is called directly, in chunks of ``--chunk`` items (32 = what CachedModel
sends; 0 = all items in one call). Reps alternate between the two paths
after one warm-up each; medians (and the best rep) are printed, as wall
time and as process CPU time (steadier when other jobs share the cores).

    .venv/bin/python bench/prefix_reuse.py [--reps 5] [--batch 8] [--chunk 32] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from valuelens.models import embedded  # noqa: E402
from valuelens.models.hf_prefix import common_prefix  # noqa: E402


def items():
    data = Path("/work/shared/data/wvs_cao2025")
    if data.is_dir():
        from probe_vs_lmeval import build_requests

        return build_requests(data), "probe items of probe_vs_lmeval.py"
    from option_throughput import requests

    return requests(4), "builtin questionnaire, 4 countries x en/zh"


def run(backend, reqs, chunk: int, reuse: bool):
    backend.prefix_cache = reuse
    step = chunk or len(reqs)
    t0, c0 = time.perf_counter(), time.process_time()
    out = []
    for s in range(0, len(reqs), step):
        out += backend.option_distribution(reqs[s : s + step])
    assert backend.prefix_cache == reuse  # no silent fallback
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=32, help="items per option_distribution call (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = embedded.load(batch_size=args.batch)
    reqs, source = items()
    seqs = backend._encode([backend.render(r.messages, r.prefill) for r in reqs])
    step = args.chunk or len(reqs)
    shared = [common_prefix(seqs[s : s + step]) for s in range(0, len(seqs), step)]
    print(f"{len(reqs)} items ({source}), {statistics.mean(map(len, seqs)):.1f} tokens each on average, "
          f"shared prefix per call {shared} tokens; batch {args.batch}, chunk {args.chunk or 'all'}, "
          f"torch threads {torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    run(backend, reqs[:16], args.chunk, True)  # warm-up both paths
    run(backend, reqs[:16], args.chunk, False)
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    max_dp = 0.0
    for rep in range(args.reps):
        res = {}
        for reuse in ((True, False) if rep % 2 == 0 else (False, True)):
            w, c, res[reuse] = run(backend, reqs, args.chunk, reuse)
            wall[reuse].append(w)
            cpu[reuse].append(c)
        print(f"  rep {rep + 1}: reuse {wall[True][-1]:.2f} s (cpu {cpu[True][-1]:.2f}), "
              f"plain {wall[False][-1]:.2f} s (cpu {cpu[False][-1]:.2f})", flush=True)
        for a, b in zip(res[True], res[False]):
            max_dp = max(max_dp, abs(a.covered_mass - b.covered_mass), *(abs(x - y) for x, y in zip(a.probs, b.probs)))
    n = len(reqs)
    print(f"{'path':<28}{'items/s':>9}{'best':>8}{'items/cpu-s':>13}")
    for reuse, label in ((False, "plain (prefix_cache=False)"), (True, "prefix reuse")):
        print(f"{label:<28}{n / statistics.median(wall[reuse]):>9.2f}{n / min(wall[reuse]):>8.2f}"
              f"{n / statistics.median(cpu[reuse]):>13.2f}")
    print(f"ratio reuse / plain: wall median {statistics.median(wall[False]) / statistics.median(wall[True]):.3f}x, "
          f"best {min(wall[False]) / min(wall[True]):.3f}x, cpu median "
          f"{statistics.median(cpu[False]) / statistics.median(cpu[True]):.3f}x")
    print(f"max |dp| reuse vs plain (probabilities and covered mass): {max_dp:.2e}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
