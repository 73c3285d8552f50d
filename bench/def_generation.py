"""DEF generation throughput, side by side in one run on the same prompts and model.

Same loaded embedded model (SmolLM2-135M-Instruct, fp32, CPU), same DEF
prompts (persona system turn + one question, from the layer's own prompt
builder; temperatures/top-p drawn per participant, num_beams 1), a fresh
SQLite store per valuelens measurement so every call is a miss. Rows:

- valuelens sampled: ``CachedModel.generate`` through the hf backend's
  batched loop (each row its own seeded generator, see ``HFBackend._decode``).
- bare transformers: ``model.generate(do_sample=True)`` on left-padded
  batches of ``--batch`` (the anchor; each batch takes its first request's
  temperature and top-p, since ``generate`` has one per call).
- valuelens greedy: the same prompts at temperature 0.
- old path (``--old``): one request at a time under ``torch.manual_seed``
  (the hf backend before issue 21); "same texts" counts the batched
  sampler's texts equal to it (fp32 padding can flip a draw, see README).

Tokens/s counts generated tokens (EOS included, padding not). The projection
is DEF's default size (participants × passes × questions × languages ×
countries) at the measured sampled answers/s, for num_beams 1 only and at
this ``--max-tokens``: beam-sampled participants (DEF's ``beams`` 1–4) still
run one at a time.

    .venv/bin/python bench/def_generation.py [--prompts 16] [--max-tokens 32] [--batch 8] [--threads N] [--old]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from valuelens.data.survey import country_names, load_questionnaire
from valuelens.layers.def_layer.participants import draw_participants, location_table, personas_from_marginals
from valuelens.layers.def_layer.prompts import messages
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, embedded
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


def through_store(backend, reqs: list[GenerateRequest]) -> tuple[float, int, list[str]]:
    """Seconds, generated tokens, texts of one batched CachedModel.generate call on a fresh store."""
    before = backend.stats.get("generated_tokens", 0)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "s.sqlite")
        model = CachedModel(backend, store, "bench", chunk_size=64)
        t = time.perf_counter()
        res = model.generate(reqs)
        secs = time.perf_counter() - t
        store.close()
    return secs, backend.stats.get("generated_tokens", 0) - before, [g.texts[0] for g in res]


def bare_batched(backend, reqs: list[GenerateRequest], batch: int) -> tuple[float, int]:
    """model.generate(do_sample=True) on left-padded batches (same prompts, same order)."""
    torch = backend.torch
    seqs = backend._encode([backend.render(r.messages, r.prefill) for r in reqs])
    eos = backend.model.generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos)
    pad = backend.tok.pad_token_id
    tokens, t = 0, time.perf_counter()
    for s in range(0, len(reqs), batch):
        st = reqs[s].settings
        ids, mask, _ = backend.pad(seqs[s: s + batch])
        torch.manual_seed(st.seed)
        with torch.inference_mode():
            gen = backend.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=st.temperature,
                                         top_p=st.top_p, max_new_tokens=st.max_tokens, pad_token_id=pad)
        for row in gen[:, ids.shape[1]:].tolist():
            n = next((k + 1 for k, tok in enumerate(row) if tok in eos), len(row))
            tokens += n
    return time.perf_counter() - t, tokens


def old_path(backend, reqs: list[GenerateRequest]) -> tuple[float, list[str]]:
    items = [(r, 0) for r in reqs]
    seqs = backend._encode([backend.render(r.messages, r.prefill) for r in reqs])
    out: list = [None] * len(items)
    t = time.perf_counter()
    for i in range(len(items)):
        backend._sample_alone(i, items, seqs, out)
    return time.perf_counter() - t, out


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
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--old", action="store_true", help="also run the old one-at-a-time path and compare texts")
    a = ap.parse_args()
    backend = embedded.load(batch_size=a.batch)
    if a.threads:
        backend.torch.set_num_threads(a.threads)
    sampled = def_requests(a.prompts, a.max_tokens)
    greedy = [replace(r, settings=replace(r.settings, temperature=0.0)) for r in sampled]
    n = len(sampled)
    load0 = os.getloadavg()[0]
    through_store(backend, greedy[:2])  # warm-up
    rows = []
    ts, tok_s, texts = through_store(backend, sampled)
    rows.append(("valuelens sampled (batched loop)", n / ts, tok_s / ts))
    tb, tok_b = bare_batched(backend, sampled, a.batch)
    rows.append((f"bare model.generate(do_sample) x{a.batch}", n / tb, tok_b / tb))
    tg, tok_g, _ = through_store(backend, greedy)
    rows.append(("valuelens greedy (batched loop)", n / tg, tok_g / tg))
    same = None
    if a.old:
        to, ref = old_path(backend, sampled)
        rows.append(("old path: sampled one at a time", n / to, tok_s / to))  # same texts: same tokens, mostly
        same = sum(x == y for x, y in zip(texts, ref))
    err = padding_error(backend, sampled, a.batch)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; embedded SmolLM2-135M fp32 CPU, {backend.torch.get_num_threads()} threads, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{n} DEF prompts (num_beams 1), max_tokens {a.max_tokens}, batch {a.batch}")
    print(f"{'path':40} {'answers/s':>10} {'tokens/s':>10}")
    for name, ans, tps in rows:
        print(f"{name:40} {ans:10.2f} {tps:10.1f}")
    print(f"ratio valuelens sampled / bare batched sampled: answers/s {rows[0][1] / rows[1][1]:.2f}, "
          f"tokens/s {rows[0][2] / rows[1][2]:.2f} (floor 0.8)")
    if same is not None:
        print(f"batched sampler texts equal to the old one-at-a-time path: {same}/{n}")
    print(f"max |logit difference| padded vs alone (prompt's last position): {err:.2e}")
    d = DEFSettings()
    total = d.participants * d.passes * len(load_questionnaire("builtin")) * 2 * 2
    print(f"projected DEF default ({d.participants} participants x {d.passes} passes x "
          f"{len(load_questionnaire('builtin'))} questions x 2 languages x 2 countries = {total} answers), "
          f"all num_beams 1, max_tokens {a.max_tokens}: {total / rows[0][1] / 3600:.1f} h")


if __name__ == "__main__":
    main()
