"""DEF generation throughput: the layer's batched wave call vs one prompt at a time.

Same loaded embedded model (SmolLM2-135M-Instruct, fp32, CPU), same DEF
prompts (persona system turn + one question, from the layer's own prompt
builder), same settings, a fresh SQLite store per measurement so every call
is a miss. Three rows, each "batched" against "one at a time":

- sampled: DEF's default (temperature/top_p drawn per participant). The hf
  backend runs sampled requests one at a time under their own seed (so a
  sample never depends on its batch), hence a ratio near 1.
- greedy: temperature 0; the backend batches these (``batch_size``).
- proposal: ``batched_seeded_sample`` below: a batched sampler with one
  torch.Generator per row, seeded like the backend (``sample_seed``), with
  temperature and top-p applied per row. Its single-row run is the reference;
  "agree" is the share of batched texts identical to it (fp32 kernels may
  differ in the last bits between batch shapes, which can flip a sample).

    .venv/bin/python bench/def_generation.py [--prompts 16] [--max-tokens 32] [--batch 8] [--threads N]

``--threads`` sets torch's CPU threads (default: torch's choice). On a shared
machine, two OpenMP threads under oversubscription ran ~8x slower than one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from valuelens.data.survey import country_names, load_questionnaire
from valuelens.layers.def_layer.participants import draw_participants, location_table, personas_from_marginals
from valuelens.layers.def_layer.prompts import messages
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, embedded, sample_seed
from valuelens.store import Store


def def_requests(n: int, max_tokens: int) -> list[GenerateRequest]:
    """n DEF prompts: participants of two countries, English and Chinese, the built-in questions."""
    st = DEFSettings(participants=max(1, n // 4), beams=(1, 1))
    names = country_names()
    qs = load_questionnaire("builtin")
    out = []
    for country in ("United States", "China"):
        people = draw_participants(0, country, st, True, personas_from_marginals(0, country, st.participants, st),
                                   "marginals", location_table(st))
        for i, p in enumerate(people):
            for lang in ("en", "zh"):
                q = qs[(i + len(out)) % len(qs)]
                msgs = messages(p, names[country][lang], lang, [], q.text[lang], list(q.options[lang]))
                gs = GenerateSettings(temperature=p.temperature, top_p=p.top_p, max_tokens=max_tokens,
                                      seed=1000 + len(out))
                out.append(GenerateRequest(msgs, gs))
    return out[:n]


def batched_seeded_sample(backend, items: list[tuple[GenerateRequest, int]], batch_size: int) -> list[str]:
    """Sampling (num_beams 1) in batches, each row with its own seeded generator.

    A proposal for the hf backend: same seeds as ``sample_seed``; temperature
    and top-p per row; greedy rows (temperature 0) take the argmax.
    """
    torch = backend.torch
    seqs = backend._encode([backend.render(r.messages, r.prefill) for r, _ in items])
    order = sorted(range(len(items)), key=lambda i: (items[i][0].settings.max_tokens, len(seqs[i])))
    out: list[str] = [""] * len(items)
    eos = backend.tok.eos_token_id
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        ids, mask, pos = backend.pad([seqs[i] for i in idx])
        gens = [torch.Generator().manual_seed(sample_seed(items[i][0].settings.seed, items[i][1])) for i in idx]
        temps = [items[i][0].settings.temperature for i in idx]
        top_ps = [items[i][0].settings.top_p for i in idx]
        steps = max(items[i][0].settings.max_tokens for i in idx)
        tokens: list[list[int]] = [[] for _ in idx]
        done = [False] * len(idx)
        past, cur = None, ids
        with torch.inference_mode():
            for _ in range(steps):
                res = backend.model(input_ids=cur, attention_mask=mask, position_ids=pos, past_key_values=past,
                                    use_cache=True)
                past, logits = res.past_key_values, res.logits[:, -1, :].float()
                nxt = []
                for row in range(len(idx)):
                    if temps[row] == 0:
                        tok = int(torch.argmax(logits[row]))
                    else:
                        probs = torch.softmax(logits[row] / temps[row], dim=-1)
                        sp, si = torch.sort(probs, descending=True)
                        keep = torch.cumsum(sp, 0) - sp < top_ps[row]
                        sp = torch.where(keep, sp, torch.zeros_like(sp))
                        tok = int(si[torch.multinomial(sp / sp.sum(), 1, generator=gens[row])])
                    if not done[row]:
                        if tok == eos or len(tokens[row]) >= items[idx[row]][0].settings.max_tokens:
                            done[row] = True
                        else:
                            tokens[row].append(tok)
                    nxt.append(tok)
                if all(done):
                    break
                cur = torch.tensor(nxt, dtype=torch.long)[:, None]
                mask = torch.cat([mask, torch.ones((len(idx), 1), dtype=mask.dtype)], dim=1)
                pos = pos[:, -1:] + 1
        for row, i in enumerate(idx):
            out[i] = backend.tok.decode(tokens[row], skip_special_tokens=True)
    return out


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def through_store(backend, reqs: list[GenerateRequest], one_at_a_time: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "s.sqlite")
        model = CachedModel(backend, store, "bench", chunk_size=64)
        if one_at_a_time:
            secs, _ = timed(lambda: [model.generate([r]) for r in reqs])
        else:
            secs, _ = timed(lambda: model.generate(reqs))
        store.close()
    return secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    backend = embedded.load(batch_size=a.batch)
    if a.threads:
        backend.torch.set_num_threads(a.threads)
    sampled = def_requests(a.prompts, a.max_tokens)
    greedy = [replace(r, settings=replace(r.settings, temperature=0.0)) for r in sampled]
    n = len(sampled)
    through_store(backend, greedy[:2], False)  # warm-up
    rows = []
    for name, reqs in (("sampled (DEF default)", sampled), ("greedy", greedy)):
        tb = through_store(backend, reqs, one_at_a_time=False)
        t1 = through_store(backend, reqs, one_at_a_time=True)
        rows.append((name, n / tb, n / t1, ""))
    items = [(r, 0) for r in sampled]
    t1, ref = timed(lambda: batched_seeded_sample(backend, items, 1))
    tb, got = timed(lambda: batched_seeded_sample(backend, items, a.batch))
    agree = sum(x == y for x, y in zip(got, ref)) / n
    rows.append(("proposal: batched seeded sampler", n / tb, n / t1, f"agree {agree:.0%}"))
    print(f"embedded SmolLM2-135M, CPU ({backend.torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}), {n} DEF prompts, max_tokens {a.max_tokens}, batch {a.batch}")
    print(f"{'path':36} {'batched ans/s':>14} {'one-at-a-time ans/s':>20} {'ratio':>6}")
    for name, b, o, note in rows:
        print(f"{name:36} {b:14.2f} {o:20.2f} {b / o:6.2f}  {note}")


if __name__ == "__main__":
    main()
