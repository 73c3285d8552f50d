"""option_distribution throughput: valuelens vs a bare transformers loop.

Both use the same loaded embedded model (SmolLM2-135M-Instruct, fp32), the
same rendered first-token prompts and the same forward passes (batch 8,
length-sorted, left padding, logits at the last position only). valuelens
adds rendering, the store (a fresh SQLite file each rep, so every call is a
miss and is written) and result objects. Reps alternate; medians are printed.

    .venv/bin/python bench/option_throughput.py [--reps 3] [--countries 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from valuelens.data.survey import country_names, load_questionnaire
from valuelens.layers.first_token import TEMPLATES, user_prompt
from valuelens.models import CachedModel, Message, OptionRequest
from valuelens.models import embedded
from valuelens.store import Store


def requests(n_countries: int) -> list[OptionRequest]:
    names = list(country_names().items())[:n_countries]
    out = []
    for lang in ("en", "zh"):
        for _, nm in names:
            for q in load_questionnaire("builtin"):
                out.append(OptionRequest((Message("user", user_prompt(q, nm[lang], lang)),), q.labels,
                                         TEMPLATES[lang]["prefill"]))
    return out


def bare_loop(model, tok, texts: list[str], labels: list[tuple[str, ...]], batch: int) -> list[list[float]]:
    """Plain transformers: tokenize, sort, pad left, forward, softmax over option ids."""
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    letter = {lab: tok(lab, add_special_tokens=False)["input_ids"] for labs in labels for lab in labs}
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[list[float]] = [[] for _ in ids]
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        width = max(len(ids[i]) for i in idx)
        x = torch.full((len(idx), width), tok.pad_token_id)
        m = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            x[r, width - len(ids[i]):] = torch.tensor(ids[i])
            m[r, width - len(ids[i]):] = 1
        with torch.inference_mode():
            logits = model(input_ids=x, attention_mask=m, position_ids=(m.cumsum(-1) - 1).clamp(min=0),
                           logits_to_keep=1).logits[:, -1].float()
        probs = torch.softmax(logits, -1)
        for r, i in enumerate(idx):
            p = [float(probs[r, letter[lab]].sum()) for lab in labels[i]]
            out[i] = [v / sum(p) for v in p]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--countries", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    backend = embedded.load(batch_size=args.batch)
    reqs = requests(args.countries)
    texts = [backend.render(r.messages, r.prefill) for r in reqs]
    labels = [r.labels for r in reqs]
    print(f"{len(reqs)} prompts, {statistics.mean(len(backend.tok(t)['input_ids']) for t in texts):.1f} tokens each "
          f"on average, batch {args.batch}, torch threads {torch.get_num_threads()}")
    bare_loop(backend.model, backend.tok, texts[:8], labels[:8], args.batch)  # warm-up
    t_bare, t_vl, max_diff = [], [], 0.0
    for _ in range(args.reps):
        t0 = time.perf_counter()
        ref = bare_loop(backend.model, backend.tok, texts, labels, args.batch)
        t_bare.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d:
            store = Store(Path(d) / "s.sqlite")
            store.begin_run()
            t0 = time.perf_counter()
            got = CachedModel(backend, store, "bench").option_distribution(reqs)
            t_vl.append(time.perf_counter() - t0)
            store.close()
        max_diff = max(max_diff, max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g.probs, r)))
    bare, vl = len(reqs) / statistics.median(t_bare), len(reqs) / statistics.median(t_vl)
    print(f"{'approach':<34}{'prompts/s':>10}")
    print(f"{'bare transformers loop':<34}{bare:>10.2f}")
    print(f"{'valuelens option_distribution':<34}{vl:>10.2f}")
    # valuelens also counts the " A" spelling of each label; the bare loop only "A".
    print(f"ratio valuelens / bare: {vl / bare:.3f}   (max |Δp| between the two: {max_diff:.2e}, from the ' A' spellings)")


if __name__ == "__main__":
    main()
