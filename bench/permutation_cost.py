"""Cost of option permutations in the first-token probe: items/s with
``permutations: none`` vs ``cyclic`` on the same items.

The layer's own request path: ``first_token.option_orders`` and
``option_request`` build each item's prompts (all of an item's orders are
adjacent, as the layer sends them), sent through ``CachedModel`` (chunks of
32, a fresh SQLite store per rep, so every call is a miss) to the hf backend
with its shared-prefix reuse on. ``cyclic`` is also timed with
``prefix_cache=False`` to show what the shared prefixes save. An item costs
k forward sequences under ``cyclic`` (k = its number of options); the
"per sequence" column shows whether one sequence costs more than under
``none`` (it should not: the orders of an item share the prompt up to the
option list). Besides wall and CPU time (noisy when other jobs share the
cores), the token positions the model computes are counted per path: a
deterministic measure of the forward-pass work.

Model: the embedded SmolLM2-135M-Instruct (fp32), or ``--tiny`` for the
tests' tiny random Llama (mechanics only). Items: the first ``--questions``
WVS questions of ../shared/data (United States and China, en) when present,
else the builtin questionnaire.

    .venv/bin/python bench/permutation_cost.py [--tiny] [--questions 8] [--reps 2 (0: count only)] [--batch 8] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "wvs_cao2025"


def load_items(n_questions: int):
    from valuelens.data.sources import load_survey
    from valuelens.layers.first_token import build_items

    if DATA.is_dir():
        survey = load_survey("cao2025", DATA / "sft_wvs_valid.json")
        qs = list(survey.questions.values())[:n_questions]
        return build_items(survey, qs, ["United States", "China"], ["en"]), f"{len(qs)} WVS questions x US, China, en"
    survey = load_survey("builtin")
    qs = list(survey.questions.values())[:n_questions]
    return build_items(survey, qs, ["United States", "China"], ["en"]), f"{len(qs)} builtin questions x 2 countries, en"


def requests(items, spec: str):
    from valuelens.layers.first_token import option_orders, option_request

    out = []
    for it in items:
        for order in option_orders(spec, len(it.question.labels), 0, it.question.id):
            out.append(option_request(it.question, it.country, it.language, None, order))
    return out


def count_positions(backend) -> dict[str, int]:
    """Count the token positions the model computes (input_ids elements, padding
    included, over every forward call): a measure of work that no other job on
    the machine can disturb."""
    seen = {"positions": 0, "calls": 0}
    forward = backend.model.forward

    @functools.wraps(forward)
    def counted(*a, **kw):
        ids = kw.get("input_ids", a[0] if a else None)
        if ids is not None:
            seen["positions"] += int(ids.numel())
            seen["calls"] += 1
        return forward(*a, **kw)

    backend.model.forward = counted
    return seen


def timed(backend, reqs, tmp: Path, tag: str) -> tuple[float, float]:
    """Wall and process CPU seconds (CPU time is steadier when other jobs share the cores)."""
    from valuelens.models import CachedModel
    from valuelens.store import Store

    store = Store(tmp / f"{tag}-{time.monotonic_ns()}.sqlite")
    model = CachedModel(backend, store, "bench", chunk_size=32)
    t0, c0 = time.perf_counter(), time.process_time()
    res = model.option_distribution(reqs)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    store.close()
    assert model.made == len(reqs)  # every call computed, none from a cache
    assert all(r.probs is not None for r in res)
    return dt, dc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny random model instead of the embedded one")
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2, help="timed reps (0: only count the computed positions)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="permcost-"))
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import build_tiny_model

        from valuelens.models.hf import HFBackend

        backend = HFBackend.from_path(build_tiny_model(tmp / "tiny"), batch_size=args.batch)
        name = "tiny random Llama (tests/tiny.py)"
    else:
        from valuelens.models import embedded

        backend = embedded.load(batch_size=args.batch)
        name = "embedded SmolLM2-135M-Instruct fp32"
    items, source = load_items(args.questions)
    reqs = {spec: requests(items, spec) for spec in ("none", "cyclic")}
    k = len(reqs["cyclic"]) / len(reqs["none"])
    print(f"{name}; {len(items)} items ({source}); none: {len(reqs['none'])} sequences, cyclic: "
          f"{len(reqs['cyclic'])} (mean k = {k:.2f} orders per item); batch {args.batch}, torch threads "
          f"{torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    paths = (("none", "none", True), ("cyclic", "cyclic", True), ("cyclic, prefix_cache off", "cyclic", False))
    counter = count_positions(backend)
    positions = {}
    for label, spec, cache in paths:  # work per path, once (deterministic)
        backend.prefix_cache = cache
        counter["positions"] = counter["calls"] = 0
        timed(backend, reqs[spec], tmp, "count")
        positions[label] = (counter["positions"], counter["calls"])
    backend.prefix_cache = True
    print(f"{'path':<28}{'sequences':>10}{'positions computed':>20}{'forward calls':>15}{'per sequence vs none':>22}")
    for label, spec, _ in paths:
        pos_, calls = positions[label]
        per = (pos_ / len(reqs[spec])) / (positions["none"][0] / len(reqs["none"]))
        print(f"{label:<28}{len(reqs[spec]):>10}{pos_:>20}{calls:>15}{per:>21.2f}x")
    print(f"cyclic computes {positions['cyclic'][0] / positions['none'][0]:.2f}x the positions of none for "
          f"{k:.2f}x the sequences; without prefix reuse {positions['cyclic, prefix_cache off'][0] / positions['none'][0]:.2f}x",
          flush=True)
    if args.reps == 0:  # the deterministic count only
        return
    times: dict[str, list[float]] = {p[0]: [] for p in paths}
    cpu: dict[str, list[float]] = {p[0]: [] for p in paths}
    for rep in range(args.reps):
        for label, spec, cache in paths[rep % 3:] + paths[: rep % 3]:  # rotate which goes first
            backend.prefix_cache = cache
            w, c = timed(backend, reqs[spec], tmp, label.replace(" ", "_"))
            times[label].append(w)
            cpu[label].append(c)
        print(f"  rep {rep + 1}: " + ", ".join(f"{lab} {times[lab][-1]:.2f} s (cpu {cpu[lab][-1]:.2f})"
                                              for lab, _, _ in paths), flush=True)
    backend.prefix_cache = True
    print(f"{'path':<28}{'items/s':>9}{'seq/s':>9}{'items/cpu-s':>13}{'cpu vs none':>13}{'cpu per seq vs none':>21}")
    base = statistics.median(cpu["none"])
    for label, spec, _ in paths:
        t, c = statistics.median(times[label]), statistics.median(cpu[label])
        per_seq = (c / len(reqs[spec])) / (base / len(reqs["none"]))
        print(f"{label:<28}{len(items) / t:>9.2f}{len(reqs[spec]) / t:>9.2f}{len(items) / c:>13.2f}"
              f"{c / base:>12.2f}x{per_seq:>20.2f}x")
    ratio = statistics.median(cpu["cyclic"]) / base
    saved = 1 - statistics.median(cpu["cyclic"]) / statistics.median(cpu["cyclic, prefix_cache off"])
    print(f"cyclic / none: {ratio:.2f}x the CPU time for {k:.2f}x the sequences "
          f"({'within' if ratio <= k else 'ABOVE'} k x); shared-prefix reuse saves {saved:.0%} of cyclic's CPU time")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
