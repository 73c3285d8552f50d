"""Shared-prefix KV reuse in HFBackend.option_distribution: plain batches,
the call's common prefix only, and batches planned by shared prefix.

One process, one loaded embedded model (SmolLM2-135M-Instruct, fp32), the
same items both ways: the 70 probe items of bench/probe_vs_lmeval.py
(United States + China x 35 WVS questions, en) when /work/shared/data is
there, else the builtin questionnaire for 4 countries x en/zh. The backend
is called directly, in chunks of ``--chunk`` items (32 = what CachedModel
sends; 0 = all items in one call). Reps rotate between the three paths
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
from valuelens.models.hf_prefix import common_prefix, length_batches  # noqa: E402


def items():
    data = Path("/work/shared/data/wvs_cao2025")
    if data.is_dir():
        from probe_vs_lmeval import build_requests

        return build_requests(data), "probe items of probe_vs_lmeval.py"
    from option_throughput import requests

    return requests(4), "builtin questionnaire, 4 countries x en/zh"


MODES = ("plain", "shared", "planned")
LABELS = {"plain": "plain (prefix_cache=False)", "shared": "common prefix, length-sorted batches",
          "planned": "common prefix + planned batches"}


def run(backend, reqs, chunk: int, mode: str):
    """One pass over the items; ``shared`` swaps the batch planner for plain
    length-sorted batches on top of the call's common prefix (what the
    backend did before planning)."""
    backend.prefix_cache = mode != "plain"
    if mode == "shared":
        backend._plan = lambda seqs, base: length_batches(seqs, backend.batch_size, base.length if base else 0)
    else:
        backend.__dict__.pop("_plan", None)
    step = chunk or len(reqs)
    t0, c0 = time.perf_counter(), time.process_time()
    out = []
    for s in range(0, len(reqs), step):
        out += backend.option_distribution(reqs[s : s + step])
    assert backend.prefix_cache == (mode != "plain")  # no silent fallback
    return time.perf_counter() - t0, time.process_time() - c0, out


def max_dp(xs, ys) -> float:
    return max(max(abs(a.covered_mass - b.covered_mass), *(abs(p - q) for p, q in zip(a.probs, b.probs)))
               for a, b in zip(xs, ys))


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
    for mode in MODES:  # warm-up
        run(backend, reqs[:16], args.chunk, mode)
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    dp = {m: 0.0 for m in MODES[1:]}
    for rep in range(args.reps):
        res = {}
        for mode in MODES[rep % 3:] + MODES[: rep % 3]:  # rotate which goes first
            w, c, res[mode] = run(backend, reqs, args.chunk, mode)
            wall[mode].append(w)
            cpu[mode].append(c)
        print("  rep %d: " % (rep + 1) + ", ".join(f"{m} {wall[m][-1]:.2f} s (cpu {cpu[m][-1]:.2f})" for m in MODES),
              flush=True)
        for m in MODES[1:]:
            dp[m] = max(dp[m], max_dp(res[m], res["plain"]))
    n = len(reqs)
    print(f"{'path':<40}{'items/s':>9}{'best':>8}{'items/cpu-s':>13}{'vs plain':>10}")
    for m in MODES:
        ratio = statistics.median(wall["plain"]) / statistics.median(wall[m])
        print(f"{LABELS[m]:<40}{n / statistics.median(wall[m]):>9.2f}{n / min(wall[m]):>8.2f}"
              f"{n / statistics.median(cpu[m]):>13.2f}{ratio:>9.3f}x")
    print(f"planned / shared: wall median {statistics.median(wall['shared']) / statistics.median(wall['planned']):.3f}x, "
          f"cpu median {statistics.median(cpu['shared']) / statistics.median(cpu['planned']):.3f}x")
    print("max |dp| vs plain (probabilities and covered mass): "
          + ", ".join(f"{m} {dp[m]:.2e}" for m in MODES[1:]))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
