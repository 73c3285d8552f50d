"""Option distributions estimated from N sampled answers vs the exact ones (issue 20.1).

The openai backend estimates option distributions from sampled answers when a
server has no logprobs (``option_mode: sample``). This measures that
estimator against the exact first-token distribution of the embedded model
(SmolLM2-135M-Instruct, hf backend, fp32, CPU) on the first-token prompts
(built-in questionnaire x countries x en/zh, the paper's prefill):

A. **exact-distribution simulation** (every prompt, ``--reps`` draws per N):
   N first tokens drawn from the model's exact next-token distribution
   collapsed to "option i" (probability covered_mass * p_i) or "no option"
   (1 - covered_mass), then ``valuelens.models.sampled.estimate`` (the
   backend's own estimator). This is what a server sampling at temperature 1
   gives when the first token decides the answer (the prefill ends in "(").
B. **real sampling** (``--real`` prompts): the hf backend generates 100
   answers per prompt at temperature 1 (seeds ``sample_seed(0, j)``, 4
   tokens; hf's sampling keeps transformers' top-k 50, which changes the
   invalid share but not the ratios between options in the top 50), each
   mapped by ``sampled.parse_label``; the estimate for N uses the first N.

Printed per N: mean Jensen-Shannon divergence (natural log,
``valuelens.metrics.js_divergence``) and distance (its root, what the
``one_minus_jsd`` columns use) between estimate and exact, share of prompts
whose top option matches, Wilson-interval coverage (share of options whose
exact probability is inside its 95% interval), and the invalid share.

    .venv/bin/python bench/sampled_options.py [--countries 6] [--reps 200] [--real 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from valuelens.data.survey import country_names, load_questionnaire
from valuelens.layers.first_token import TEMPLATES, user_prompt
from valuelens.metrics import js_divergence
from valuelens.models import GenerateRequest, GenerateSettings, Message, OptionRequest, embedded
from valuelens.models.sampled import estimate, parse_label

NS = (10, 25, 50, 100)


def requests(n_countries: int) -> list[OptionRequest]:
    names = list(country_names().items())[:n_countries]
    return [OptionRequest((Message("user", user_prompt(q, nm[lang], lang)),), q.labels, TEMPLATES[lang]["prefill"])
            for lang in ("en", "zh") for _, nm in names for q in load_questionnaire("builtin")]


def score(est, exact: np.ndarray) -> dict[str, float]:
    if est.probs is None:  # no valid answer at all: counted as the worst case, never skipped
        return {"jsd": np.log(2), "dist": np.sqrt(np.log(2)), "top": 0.0, "cover": 0.0, "none": 1.0}
    p = np.asarray(est.probs)
    cover = np.mean([lo - 1e-12 <= t <= hi + 1e-12 for t, (lo, hi) in zip(exact, est.interval)])
    jsd = js_divergence(p, exact, normalize=True)
    return {"jsd": jsd, "dist": float(np.sqrt(max(jsd, 0.0))), "top": float(np.argmax(p) == np.argmax(exact)),
            "cover": float(cover), "none": 0.0}


def table(title: str, rows: dict[int, list[dict[str, float]]], invalid: dict[int, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'N':>5} {'mean JSD':>9} {'mean JS dist':>12} {'p90 JS dist':>11} {'top option ok':>13} "
          f"{'Wilson cover':>12} {'no valid':>8} {'invalid':>8}")
    for n, rs in rows.items():
        d = {k: np.array([r[k] for r in rs]) for k in rs[0]}
        print(f"{n:>5} {d['jsd'].mean():>9.4f} {d['dist'].mean():>12.4f} {np.quantile(d['dist'], 0.9):>11.4f} "
              f"{d['top'].mean():>13.3f} {d['cover'].mean():>12.3f} {d['none'].mean():>8.3f} "
              f"{np.mean(invalid[n]):>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--countries", type=int, default=6)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--real", type=int, default=12, help="prompts for part B (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    backend = embedded.load(batch_size=8)
    reqs = requests(args.countries)
    t0 = time.perf_counter()
    exact = backend.option_distribution(reqs)
    print(f"{len(reqs)} prompts ({args.countries} countries x {len(reqs) // (2 * args.countries)} questions x en/zh), "
          f"exact distributions in {time.perf_counter() - t0:.1f} s; mean covered mass "
          f"{np.mean([r.covered_mass for r in exact]):.3f} (min {min(r.covered_mass for r in exact):.3f})")

    rng = np.random.default_rng(args.seed)
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in NS}
    invalid: dict[int, list[float]] = {n: [] for n in NS}
    for req, ex in zip(reqs, exact):
        p = np.asarray(ex.probs)
        cats = np.append(p * ex.covered_mass, max(0.0, 1 - ex.covered_mass))
        cats = cats / cats.sum()
        labels = list(req.labels)
        for n in NS:
            for _ in range(args.reps):
                draw = rng.choice(len(cats), size=n, p=cats)
                est = estimate([labels[k] if k < len(labels) else None for k in draw], labels)
                rows[n].append(score(est, p))
                invalid[n].append(est.invalid_share)
    table(f"A. exact-distribution simulation: {len(reqs)} prompts x {args.reps} draws per N", rows, invalid)

    if args.real:
        step = max(1, len(reqs) // args.real)
        sub = [(reqs[i], exact[i]) for i in range(0, len(reqs), step)][: args.real]
        t0 = time.perf_counter()
        settings = GenerateSettings(temperature=1.0, top_p=1.0, max_tokens=4, seed=0)
        rows = {n: [] for n in NS}
        invalid = {n: [] for n in NS}
        for req, ex in sub:
            g = GenerateRequest(req.messages, settings, n=max(NS), prefill=req.prefill)
            texts = backend.generate([(g, j) for j in range(max(NS))])
            answers = [parse_label(t, req.labels) for t in texts]
            for n in NS:
                est = estimate(answers[:n], req.labels)
                rows[n].append(score(est, np.asarray(ex.probs)))
                invalid[n].append(est.invalid_share)
        table(f"B. real sampling with the hf backend: {len(sub)} prompts x {max(NS)} generated answers "
              f"({time.perf_counter() - t0:.0f} s; the first N answers for each N)", rows, invalid)


if __name__ == "__main__":
    main()
