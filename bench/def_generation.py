"""DEF generation throughput, side by side in one run on the same prompts and model.

Same loaded embedded model (SmolLM2-135M-Instruct, fp32, CPU). The prompts
are DEF's own: the layer's ``run_waves`` asks a small DEF (``--participants``
per country x ``--passes`` x 2 languages x the first ``--questions``
questions of the built-in questionnaire, num_beams 1, temperatures/top-p
drawn per participant, retries of invalid answers included) in waves, as an
audit does (question k of every session in one call; later questions carry
the session's remembered answers). Every call it makes is recorded and
replayed, call by call, for the other rows, on a fresh SQLite store each
(every sample a miss); each row runs ``--rounds`` times in alternating order
(ABCD DCBA ...), so a load that drifts during the run weighs on all alike. Rows:

- valuelens sampled, as DEF asks: the ``run_waves`` run itself — the reply
  form (regex, through llguidance when installed), the stop rule
  ``def_answer`` (a row ends after the explanation's first sentence) and
  shared-prefix reuse (``HFBackend._gen_batches``).
- valuelens sampled, plain: the same requests without reply form and stop
  rule (prefix reuse on): like for like with the bare loop.
- bare transformers: ``model.generate(do_sample=True)`` on left-padded
  batches of ``--batch`` of each call's new samples (the anchor; each batch
  takes its first request's temperature and top-p, since ``generate`` has
  one per call), to EOS or ``max_tokens``.
- valuelens greedy: DEF's requests at temperature 0.

Tokens/s counts generated tokens (EOS included, padding not); the rows
generate different numbers of tokens (that is what the stop rule saves), so
answers/s is the figure to compare. The projection is DEF's default size
(participants x passes x questions x languages x countries) at the DEF row's
answers/s, for num_beams 1, at this ``--max-tokens``.

    .venv/bin/python bench/def_generation.py [--participants 2] [--passes 4] [--questions 2] [--max-tokens 96]
        [--batch 8] [--threads N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from valuelens.data.survey import country_names, load_questionnaire
from valuelens.layers.def_layer.generation import make_sessions, run_waves
from valuelens.layers.def_layer.layer import inputs_for, participants
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.models import CachedModel, GenerateRequest, embedded
from valuelens.progress import NullTracker
from valuelens.store import Store

COUNTRIES = ["United States", "China"]


class Recorder(CachedModel):
    """A CachedModel that records every generate call's requests."""

    calls: list[list[GenerateRequest]]

    def generate(self, requests, progress=None):  # type: ignore[override]
        self.calls.append(list(requests))
        return super().generate(requests, progress)


def new_items(calls: list[list[GenerateRequest]]) -> list[list[tuple[GenerateRequest, int]]]:
    """Per call, the samples not asked before (what a fresh store computes in that call)."""
    seen, out = set(), []
    for call in calls:
        fresh = []
        for r in call:
            for j in range(r.n):
                key = json.dumps(r.sample_json(j), sort_keys=True, ensure_ascii=False)
                if key not in seen:
                    seen.add(key)
                    fresh.append((r, j))
        out.append(fresh)
    return out


def def_run(backend, st: DEFSettings) -> tuple[float, int, list[list[GenerateRequest]], int]:
    """Seconds, generated tokens, recorded calls and answers of DEF's run_waves on a fresh store."""
    inputs = inputs_for(st, COUNTRIES)
    people = participants(inputs, st, COUNTRIES, 0, True)
    sessions = make_sessions(people, ["en", "zh"], st.passes, 0, country_names())
    before = backend.stats.get("generated_tokens", 0)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "s.sqlite")
        model = Recorder(backend, store, "bench", chunk_size=64)
        model.calls = []
        t = time.perf_counter()
        rows = run_waves(model, inputs, sessions, st, 0, NullTracker())
        secs = time.perf_counter() - t
        store.close()
    return secs, backend.stats.get("generated_tokens", 0) - before, model.calls, len(rows)


def replay(backend, calls: list[list[GenerateRequest]]) -> tuple[float, int]:
    """Seconds and generated tokens of the recorded calls, in order, on a fresh store."""
    before = backend.stats.get("generated_tokens", 0)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "s.sqlite")
        model = CachedModel(backend, store, "bench", chunk_size=64)
        t = time.perf_counter()
        for call in calls:
            model.generate(call)
        secs = time.perf_counter() - t
        store.close()
    return secs, backend.stats.get("generated_tokens", 0) - before


def bare_batched(backend, calls: list[list[tuple[GenerateRequest, int]]], batch: int) -> tuple[float, int]:
    """model.generate(do_sample=True) on left-padded batches of each call's new samples (same prompts, same order)."""
    torch = backend.torch
    eos = backend.model.generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos)
    pad = backend.tok.pad_token_id
    tokens, t = 0, time.perf_counter()
    for items in calls:
        reqs = [r for r, _ in items]
        seqs = backend._encode([backend.render(r.messages, r.prefill) for r in reqs])
        for s in range(0, len(reqs), batch):
            st = reqs[s].settings
            ids, mask, _ = backend.pad(seqs[s: s + batch])
            torch.manual_seed(st.seed)
            with torch.inference_mode():
                gen = backend.model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                             temperature=st.temperature, top_p=st.top_p, max_new_tokens=st.max_tokens,
                                             pad_token_id=pad)
            for row in gen[:, ids.shape[1]:].tolist():
                tokens += next((k + 1 for k, tok in enumerate(row) if tok in eos), len(row))
    return time.perf_counter() - t, tokens


def padding_error(backend, reqs: list[GenerateRequest], batch: int) -> float:
    """max |logit difference| at the last prompt position, padded batches vs each prompt alone."""
    torch = backend.torch
    seqs = backend._encode([backend.render(r.messages, r.prefill) for r in reqs])
    worst = 0.0
    with torch.inference_mode():
        for s in range(0, len(seqs), batch):
            ids, mask, pos = backend.pad(seqs[s: s + batch])
            padded = backend.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
            for k, q in enumerate(seqs[s: s + batch]):
                alone = backend.model(input_ids=torch.tensor([q]), logits_to_keep=1).logits[0, -1]
                worst = max(worst, float((padded[k] - alone).abs().max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=2, help="per country")
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--questions", type=int, default=2, help="the first N built-in questions")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="each row this many times, in alternating order")
    a = ap.parse_args()
    backend = embedded.load(batch_size=a.batch)
    if a.threads:
        backend.torch.set_num_threads(a.threads)
    st = DEFSettings(participants=a.participants, passes=a.passes, limit=a.questions, beams=(1, 1),
                     max_tokens=a.max_tokens, insensitivity={"factual": {}})  # only the first N questions
    def_run(backend, st.model_copy(update=dict(participants=1, passes=1, limit=1, max_tokens=4)))  # warm-up
    load0 = os.getloadavg()[0]
    t0 = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    stats0 = dict(backend.stats)
    td, tok_d, calls, n_rows = def_run(backend, st)
    saved = backend.stats.get("stop_saved_tokens", 0) - stats0.get("stop_saved_tokens", 0)
    reused = backend.stats.get("gen_prefix_saved_tokens", 0) - stats0.get("gen_prefix_saved_tokens", 0)
    items = new_items(calls)
    n = sum(len(c) for c in items)
    plain = [[replace(r, response_format=None, settings=replace(r.settings, stop_at=None)) for r in c] for c in calls]
    greedy = [[replace(r, settings=replace(r.settings, temperature=0.0)) for r in c] for c in calls]
    paths = [lambda: replay(backend, calls), lambda: replay(backend, plain),
             lambda: bare_batched(backend, new_items(plain), a.batch), lambda: replay(backend, greedy)]
    # Rounds in alternating order (ABCD, DCBA, ...): a load that drifts during the run weighs on every row alike.
    # The first round's DEF row is the run_waves run itself.
    secs, toks = [td, 0.0, 0.0, 0.0], [tok_d, 0, 0, 0]
    for k in range(a.rounds):
        order = [1, 2, 3] if k == 0 else ([3, 2, 1, 0] if k % 2 else [0, 1, 2, 3])
        for p in order:
            dt, dtok = paths[p]()
            secs[p] += dt
            toks[p] += dtok
    names = ["valuelens sampled, as DEF asks", "valuelens sampled, plain", f"bare model.generate(do_sample) x{a.batch}",
             "valuelens greedy, as DEF asks"]
    rows = [(name, a.rounds * n / sec, tok / sec) for name, sec, tok in zip(names, secs, toks)]
    reqs = [r for c in items for r, _ in c]
    err = padding_error(backend, reqs[: 2 * a.batch], a.batch)
    print(f"{t0}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; embedded SmolLM2-135M fp32 CPU, "
          f"{backend.torch.get_num_threads()} threads, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"DEF: {a.participants} participants x {a.passes} passes x 2 countries x 2 languages x {a.questions} "
          f"questions = {n_rows} answer rows, {n} samples in {len(calls)} calls (retries included); num_beams 1, "
          f"max_tokens {a.max_tokens}, batch {a.batch}; {a.rounds} rounds per row (tokens, seconds: all rounds)")
    print(f"{'path':40} {'answers/s':>10} {'tokens/s':>10} {'tokens':>8} {'seconds':>8}")
    for (name, ans, tps), sec, tok in zip(rows, secs, toks):
        print(f"{name:40} {ans:10.3f} {tps:10.1f} {tok:8d} {sec:8.1f}")
    print(f"ratio valuelens sampled / bare batched sampled (answers/s): as DEF asks {rows[0][1] / rows[2][1]:.2f}, "
          f"plain {rows[1][1] / rows[2][1]:.2f} (floor 0.8, target 1.0)")
    print(f"first round as DEF asks: rows stopped before max_tokens saved <= {saved} tokens; prefix reuse: {reused} "
          f"prompt tokens not rerun; all rounds: {toks[0]} tokens generated as DEF asks against {toks[1]} plain")
    print(f"max |logit difference| padded vs alone (prompt's last position): {err:.2e}")
    d = DEFSettings()
    total = d.participants * d.passes * len(load_questionnaire("builtin")) * 2 * 2
    print(f"projected DEF default ({d.participants} participants x {d.passes} passes x "
          f"{len(load_questionnaire('builtin'))} questions x 2 languages x 2 countries = {total} answers "
          f"x {n / n_rows:.2f} samples per answer as here (retries)), all num_beams 1, max_tokens {a.max_tokens}, "
          f"at the DEF row's rate: {total * n / n_rows / rows[0][1] / 3600:.1f} h")


if __name__ == "__main__":
    main()
