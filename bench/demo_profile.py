"""Where the demo's option-call time goes, and cross-call prefix reuse side by side.

Two commands (the embedded model, SmolLM2-135M-Instruct, fp32, batch 8):

``count`` — a dry run of the demo audit (or ``--audit FILE``): the real
tokenizer and batch planner, no forward passes (option results are a fixed
60/40, free answers "A", so later stages that depend on answers may differ
from a real run). Per layer part: requests, prompt tokens, and the tokens the
hf backend computes (planned batches: suffixes with padding, prefix
extensions, each call's common prefix) in two configurations:
``before`` — each CachedModel chunk of 32 misses planned on its own, nothing
kept between calls (the code before this change); ``after`` — chunks in the
backend's batch order (``HFBackend.batch_order``) and batch prefixes kept
across calls (``hf_prefix.PrefixStore``). Also the trie minimum (distinct
prefixes + one token per prompt: what no batching can go below).

``ab`` — the dilemma layer of the demo audit, sized by ``--limit`` (dilemmas
per pair) and ``--chains``, run for real in both configurations (a fresh
backend and output directory each, reps alternating), with wall and process
CPU time, tokens computed (counted in the forward passes), and the results
compared: max |dp| over p_A/p_B/covered_mass of every response row, and
whether every chosen label and table shape is equal.

    .venv/bin/python bench/demo_profile.py count [--audit FILE]
    .venv/bin/python bench/demo_profile.py ab [--limit 2] [--chains 3] [--reps 1] [--threads N]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared machine: idle OpenMP threads sleep

import valuelens.models.hf_prefix as hp  # noqa: E402
from valuelens import api  # noqa: E402
from valuelens.data import __file__ as _data_init  # noqa: E402
from valuelens.layers.dilemmas import ask as _ask  # noqa: E402
from valuelens.models.hf import HFBackend  # noqa: E402
from valuelens.models.requests import OptionResult  # noqa: E402

DEMO = Path(_data_init).parent / "demo_audit.yaml"
CHUNK = 32


class _Held:
    """A stand-in prefix cache for the dry run: only its length and size."""

    def __init__(self, n: int):
        self.length = n

    def nbytes(self) -> int:
        return self.length * 46080  # SmolLM2-135M fp32: 30 layers x 2 x 3 kv heads x 64 x 4 bytes


def _cost(calls: list[list[list[int]]], store: hp.PrefixStore | None) -> tuple[int, int]:
    """(tokens computed, forward passes) of the hf backend on these calls, each
    a list of token sequences as the layer sent them (before chunking);
    ``store``: the prefixes kept across calls (None: before this change)."""
    after = store is not None
    tok = fw = 0
    for seqs_all in calls:
        order = list(range(len(seqs_all)))
        if after and len(seqs_all) > CHUNK:
            n = hp.common_prefix(seqs_all)
            order = [i for idx, _ in hp.plan_batches(seqs_all, 8, n if n >= hp.MIN_PREFIX else 0) for i in idx]
        for k in range(0, len(order), CHUNK):
            seqs = [seqs_all[i] for i in order[k:k + CHUNK]]
            n = hp.common_prefix(seqs)
            base = n if n >= hp.MIN_PREFIX else 0
            have = 0
            if store is not None and base:
                have = min(store.match(seqs[0][:base])[1], base)
            if base > have:
                tok, fw = tok + base - have, fw + 1
                if store is not None:
                    store.add(seqs[0][:base], _Held(base))
            avail = None if store is None else [min(store.match(s)[1], len(s) - 1) for s in seqs]
            for idx, length in hp.plan_batches(seqs, 8, base, "cpu", avail):
                if length > base:
                    start = max(base, store.match(seqs[idx[0]][:length])[1] if store is not None else base)
                    if length > start:
                        tok, fw = tok + length - start, fw + 1
                        if store is not None:
                            store.add(seqs[idx[0]][:length], _Held(length))
                tok, fw = tok + len(idx) * (max(len(seqs[i]) for i in idx) - length), fw + 1
    return tok, fw


def _trie(seqs: list[list[int]]) -> int:
    nodes = {tuple(s[:k]) for s in seqs for k in range(1, len(s))}
    return len(nodes) + len(seqs)


def count(audit_path: Path) -> None:
    captured: dict[str, list[list[list[int]]]] = collections.defaultdict(list)
    gen: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    part = ["?"]

    def od(self, reqs):
        captured[part[0]].append(self.encode(reqs))
        return [OptionResult.from_mass([0.6] + [0.4 / (len(r.labels) - 1)] * (len(r.labels) - 1)) for r in reqs]

    def generate(self, items):
        seqs = self._encode([self.render(r.messages, r.prefill) for r, _ in items])
        g = gen[part[0]]
        g[0] += len(items)
        g[1] += sum(map(len, seqs))
        g[2] += sum(r.settings.max_tokens for r, _ in items)
        return ["A" for _ in items]

    HFBackend.option_distribution = od
    HFBackend.generate = generate
    HFBackend.batch_order = None  # type: ignore[assignment]  # whole calls reach od (chunk_size below)
    probs = _ask.Asker.probs

    def tagged(self, reqs, desc):
        part[0] = "dilemmas: " + desc.split(" · ")[0]
        try:
            return probs(self, reqs, desc)
        finally:
            part[0] = "dilemmas"

    _ask.Asker.probs = tagged
    raw = yaml.safe_load(audit_path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for layer, settings in raw["layers"].items():
            one = {**raw, "name": f"count_{layer}", "chunk_size": 1 << 20, "layers": {layer: settings}}
            path = Path(tmp) / f"{layer}.yaml"
            path.write_text(yaml.safe_dump(one, allow_unicode=True, sort_keys=False))
            part[0] = layer
            api.run_full(path, Path(tmp) / layer)
    print(f"dry run of {audit_path} (option calls: tokens computed, forward passes)")
    total: collections.Counter = collections.Counter()
    stores: dict[str, hp.PrefixStore] = {}  # one backend per layer run: its parts share the store
    for name, calls in captured.items():
        seqs = [s for c in calls for s in c]
        store = stores.setdefault(name.split(":")[0], hp.PrefixStore())
        (tb, fb), (ta, fa) = _cost(calls, None), _cost(calls, store)
        total.update(before=tb, after=ta, prompt=sum(map(len, seqs)), trie=_trie(seqs))
        print(f"  {name:32s} requests {len(seqs):5d}  prompt tokens {sum(map(len, seqs)):7d}  "
              f"before {tb:7d} ({fb} fw)  after {ta:7d} ({fa} fw)  ratio {tb / max(ta, 1):.2f}  "
              f"trie minimum {_trie(seqs):7d}")
    print(f"  {'all option calls':32s} prompt tokens {total['prompt']:7d}  before {total['before']:7d}  "
          f"after {total['after']:7d}  ratio {total['before'] / max(total['after'], 1):.2f}  "
          f"trie minimum {total['trie']:7d}")
    for name, (n, prompt, upper) in gen.items():
        print(f"  generation {name:21s} samples {n:5d}  prompt tokens {prompt:7d}  new tokens <= {upper}")


def _audit(tmp: Path, limit: int, chains: int) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    dil = dict(raw["layers"]["dilemmas"], limit=limit)
    dil["escalation"] = dict(dil.get("escalation") or {}, limit=chains)
    one = {**raw, "name": "ab", "layers": {"dilemmas": dil}}
    path = tmp / "ab.yaml"
    path.write_text(yaml.safe_dump(one, allow_unicode=True, sort_keys=False))
    return path


def ab(limit: int, chains: int, reps: int) -> None:
    import numpy as np

    computed = [0]
    real_lp, real_run = HFBackend.last_logprobs, hp.PrefixCache._run.__func__

    def lp(self, seqs, prefix=None, *, grad=False):
        computed[0] += len(seqs) * (max(map(len, seqs)) - (prefix.length if prefix else 0))
        return real_lp(self, seqs, prefix, grad=grad)

    def run_(cls, torch, model, prefix, start, past):
        computed[0] += len(prefix) - start
        return real_run(cls, torch, model, prefix, start, past)

    HFBackend.last_logprobs = lp
    hp.PrefixCache._run = classmethod(run_)
    order, store_bytes = HFBackend.batch_order, hp.STORE_BYTES
    tmp = Path(tempfile.mkdtemp(prefix="demo_profile_"))
    audit = _audit(tmp, limit, chains)
    results: dict[str, list] = {"before": [], "after": []}
    tables = {}
    try:
        for rep in range(reps):
            for mode in (("before", "after") if rep % 2 == 0 else ("after", "before")):
                HFBackend.batch_order = order if mode == "after" else None  # type: ignore[assignment]
                hp.STORE_BYTES = store_bytes if mode == "after" else 0
                out = tmp / f"{mode}{rep}"
                computed[0] = 0
                t0, c0 = time.perf_counter(), time.process_time()
                res = api.run_full(audit, out)
                results[mode].append((time.perf_counter() - t0, time.process_time() - c0, computed[0],
                                      res.manifest["calls"]["calls_made"]))
                tables[mode] = res.tables
                shutil.rmtree(out, ignore_errors=True)
    finally:
        HFBackend.batch_order, hp.STORE_BYTES = order, store_bytes
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"dilemma layer of the demo audit, limit {limit} per pair, {chains} chains; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (start of the report)")
    for mode, runs in results.items():
        for wall, cpu, tok, calls in runs:
            print(f"  {mode:6s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  tokens computed {tok:7d}  calls {calls}")
    (wb, cb, tb, _), (wa, ca, ta, _) = (min(results[m]) for m in ("before", "after"))
    print(f"  ratio before/after: wall {wb / wa:.2f}  cpu {cb / ca:.2f}  tokens {tb / max(ta, 1):.2f}")
    diff, same = 0.0, True
    for name in tables["before"]:
        a, b = tables["before"][name], tables["after"][name]
        same &= a.shape == b.shape and list(a.columns) == list(b.columns)
        if name in ("dilemma_responses", "dilemma_chain_responses"):
            for col in ("p_A", "p_B", "covered_mass"):
                diff = max(diff, float(np.nanmax(np.abs(a[col].to_numpy(float) - b[col].to_numpy(float)))))
            same &= list(a["chosen_label"].fillna("-")) == list(b["chosen_label"].fillna("-"))
    print(f"  results: max |dp| {diff:.2e}; chosen labels and table shapes equal: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count")
    c.add_argument("--audit", type=Path, default=DEMO)
    a = sub.add_parser("ab")
    a.add_argument("--limit", type=int, default=2)
    a.add_argument("--chains", type=int, default=3)
    a.add_argument("--reps", type=int, default=1)
    a.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "count":
        count(args.audit)
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        ab(args.limit, args.chains, args.reps)


if __name__ == "__main__":
    main()
