"""Constrained generation (response_format) on the embedded model, side by side in one run.

Same loaded embedded model (SmolLM2-135M-Instruct, fp32, CPU), same prompts,
a fresh SQLite store per pass so every call is a miss:

1. MARK on the synthetic demo respondents (valuelens.data.synthetic;
   synthetic — not human data) with the demo's sizes and ``max_retries`` 0,
   so every stage reply is judged as first written:
   - **constrained**: the pipeline as it runs (``run_mark``; the hf backend
     honours each stage's JSON schema through llguidance);
   - **prompt-and-parse, pipeline**: the same, through a backend wrapper that
     does not honour formats (the fallback path: CachedModel drops them);
     an invalid persona stage ends a respondent's pipeline, so later stages
     may have no jobs;
   - **prompt-and-parse, same prompts**: every stage prompt of the
     constrained pass (with its job context) sent unconstrained
     (``run_stage(..., constrained=False)``), so each stage is compared on
     identical prompts.
   Valid = the layer's parser and checks accept the reply
   (``stages.parse_reply``); the baselines' "Answer: <n>" likewise.
2. Overhead: (a) the time spent in the grammar engine itself (mask +
   advance, timed inside the hf loop) per generated token and as a share of
   the constrained pass; (b) fixed-length decoding side by side: the first 8
   MARK stage prompts, greedy, batch 8, exactly ``--decode-tokens`` tokens
   per row, unconstrained (EOS ignored) vs constrained by a JSON schema whose
   one string field must run past the budget (so EOS is masked throughout),
   alternated A/B/A/B, tokens/s of each; (c) raw tokens/s of the MARK passes
   (constrained replies are shorter, so prompt prefill weighs more in them:
   not an overhead measure).
3. ``--engines``: the candidate grammar engines on SmolLM2's tokenizer and
   MARK's stress schema: tokenizer set-up, schema compile, and per-token
   mask + advance along a fixed valid reply (each engine that is installed).

    .venv/bin/python bench/constrained.py [--respondents 2] [--max-tokens 128] [--threads N] [--engines] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


class Plain:
    """The hf backend without ``honours``: every response format is dropped (prompt-and-parse)."""

    def __init__(self, backend: Any):
        self.b = backend
        self.supports_beams = backend.supports_beams
        self.stats = backend.stats

    def identity(self) -> dict[str, Any]:
        return self.b.identity()

    def generate(self, items):
        return self.b.generate(items)

    def option_distribution(self, requests):
        return self.b.option_distribution(requests)

    def close(self) -> None:
        pass


def grammar_timer():
    """Accumulate the time spent in the grammar engine (mask + advance) inside the decoding loop."""
    from valuelens.models import grammar

    spent = {"s": 0.0}
    mask, consume = grammar.Matcher.mask, grammar.Matcher.consume

    def timed(f):
        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent["s"] += time.perf_counter() - t
        return g

    grammar.Matcher.mask, grammar.Matcher.consume = timed(mask), timed(consume)
    return spent


def shares(outcomes: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for stage, os_ in outcomes.items():
        n = len(os_)
        v = sum(1 for o in os_ if o.valid)
        out[stage] = {"jobs": n, "valid": v, "share": v / n if n else None}
    return out


def fixed_length(backend: Any, prompts: list[str], n_tokens: int, spent: dict[str, float]) -> dict[str, Any]:
    """Decode exactly ``n_tokens`` per row on the same prompts, unconstrained vs constrained (see the docstring)."""
    from valuelens.models import GenerateRequest, GenerateSettings, Message
    from valuelens.models.requests import ResponseFormat

    fmt = ResponseFormat.json_schema({"type": "object", "properties": {"text": {
        "type": "string", "minLength": 40 * n_tokens, "maxLength": 80 * n_tokens}}, "required": ["text"]})
    backend._grammars()  # its EOS set, before the model's EOS is hidden below
    top_k, eos = backend._own_sampling()
    gs = GenerateSettings(max_tokens=n_tokens)
    runs: dict[str, list[float]] = {"unconstrained": [], "constrained": []}
    grammar_s = []
    backend._sampling_plan = (top_k, frozenset({-1}))  # unconstrained rows do not stop at EOS
    try:
        for _ in range(2):
            for name, f in (("unconstrained", None), ("constrained", fmt)):
                items = [(GenerateRequest((Message("user", p),), gs, response_format=f), 0) for p in prompts]
                tok0, g0, t0 = backend.stats.get("generated_tokens", 0), spent["s"], time.perf_counter()
                backend.generate(items)
                wall = time.perf_counter() - t0
                n = backend.stats.get("generated_tokens", 0) - tok0
                assert n == n_tokens * len(prompts), (name, n)
                runs[name].append(n / wall)
                if f is not None:
                    grammar_s.append((spent["s"] - g0) / n)
    finally:
        backend._sampling_plan = (top_k, eos)
    out = {k: {"tokens_per_s": v, "mean": sum(v) / len(v)} for k, v in runs.items()}
    out["grammar_ms_per_token"] = 1e3 * sum(grammar_s) / len(grammar_s)
    out["rows"], out["tokens_per_row"] = len(prompts), n_tokens
    return out


def mark_bench(backend: Any, respondents: int, max_tokens: int, seed: int = 0,
               decode_tokens: int = 48) -> dict[str, Any]:
    from valuelens.data.survey import country_names
    from valuelens.layers.mark import pipeline, stages
    from valuelens.layers.mark.baselines import run_baselines
    from valuelens.layers.mark.data import load_sample
    from valuelens.layers.mark.settings import MarkData, MarkSettings
    from valuelens.models import CachedModel, GenerateSettings
    from valuelens.store import Store

    s = MarkSettings(data=MarkData(kind="synthetic"), questions=["D01", "D04"], respondents_per_country=respondents,
                     max_retries=0, max_tokens=max_tokens, baseline_max_tokens=16, bootstrap=100)
    countries, langs = ["United States", "China"], ["en", "zh"]
    sample = load_sample(s, countries, seed)
    names = country_names()
    recorded: dict[str, list[Any]] = defaultdict(list)  # stage -> outcomes of the pass being run
    jobs_seen: dict[str, list[Any]] = defaultdict(list)  # stage -> jobs of the constrained pass
    real = pipeline.run_stage

    def recording(model, stage, jobs, settings, max_retries, tracker=None, constrained=True):
        outs = real(model, stage, jobs, settings, max_retries, tracker, constrained)
        recorded[stage] += outs
        if record_jobs:
            jobs_seen[stage] += list(jobs)
        return outs

    pipeline.run_stage = recording
    spent = grammar_timer()
    result: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="vl-constrained-"))
    try:
        for name, be in (("constrained", backend), ("prompt_and_parse_pipeline", Plain(backend))):
            record_jobs = name == "constrained"
            recorded.clear()
            model = CachedModel(be, Store(tmp / f"{name}.sqlite"), "smollm2")
            tok0, g0, t0 = backend.stats.get("generated_tokens", 0), spent["s"], time.perf_counter()
            pipeline.run_mark(model, s, sample.respondents, sample.questions, langs, names, seed)
            wall = time.perf_counter() - t0
            tokens = backend.stats.get("generated_tokens", 0) - tok0
            base = run_baselines(model, s, sample.respondents, sample.questions, sample.context, langs, names, seed)
            result[name] = {"stages": shares(recorded), "wall_s": wall, "tokens": tokens,
                            "grammar_s": spent["s"] - g0,
                            "baselines": {"jobs": len(base), "valid": sum(b["valid"] for b in base)}}
        # every constrained-pass prompt, unconstrained
        recorded.clear()
        model = CachedModel(backend, Store(tmp / "same.sqlite"), "smollm2")
        gen = GenerateSettings(temperature=s.temperature, max_tokens=s.max_tokens, seed=seed)
        tok0, t0 = backend.stats.get("generated_tokens", 0), time.perf_counter()
        for stage, jobs in jobs_seen.items():
            recorded[stage] += real(model, stage, jobs, gen, 0, None, constrained=False)
        result["prompt_and_parse_same_prompts"] = {
            "stages": shares(recorded), "wall_s": time.perf_counter() - t0,
            "tokens": backend.stats.get("generated_tokens", 0) - tok0, "grammar_s": 0.0}
        # which errors the unconstrained replies had
        errs: dict[str, int] = defaultdict(int)
        for os_ in recorded.values():
            for o in os_:
                if not o.valid:
                    e = o.attempts[-1]["error"] or ""
                    errs[e.split(":")[0][:40]] += 1
        result["prompt_and_parse_same_prompts"]["errors"] = dict(sorted(errs.items(), key=lambda kv: -kv[1])[:6])
        truncated = backend.stats.get("constrained_truncated", 0)
        result["constrained"]["truncated"] = truncated
        prompts = [j.prompt for js in jobs_seen.values() for j in js][:8]
        result["fixed_length"] = fixed_length(backend, prompts, decode_tokens, spent)
        del stages
    finally:
        pipeline.run_stage = real
    return result


def engines_bench() -> list[dict[str, Any]]:
    """Tokenizer set-up, compile and per-token mask+advance of each installed engine (SmolLM2, stress schema)."""
    import importlib.util

    import numpy as np
    from transformers import AutoTokenizer

    from valuelens.layers.mark import stages
    from valuelens.layers.mark.prompts import FIELD_NAMES
    from valuelens.models import embedded

    tok = AutoTokenizer.from_pretrained(embedded.dequantized_dir())
    V = len(tok)
    names = [FIELD_NAMES[f]["en"] for f in ("sex", "age", "education", "marital_status", "employment", "income",
                                             "ideology")]
    schema = stages.reply_schema("stress", {"names": {n: n for n in names}})
    reply = {"scores": {n: (i * 13) % 101 for i, n in enumerate(names)}, "stress_level": "medium",
             "summary": "This person faces moderate financial stress due to low income and unstable employment."}
    ids = tok.encode(json.dumps(reply, separators=(",", ":")), add_special_tokens=False) + [tok.eos_token_id]
    rows = []

    def row(name, version, setup, compile_s, steps_s, ok, note=""):
        rows.append({"engine": name, "version": version, "setup_ms": setup * 1e3, "compile_ms": compile_s * 1e3,
                     "per_token_ms": steps_s / len(ids) * 1e3, "accepts_reply": ok, "note": note})

    from importlib.metadata import version

    if importlib.util.find_spec("llguidance"):
        import llguidance
        import llguidance.hf

        t0 = time.perf_counter()
        lt = llguidance.hf.from_tokenizer(tok)
        t1 = time.perf_counter()
        g = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        m = llguidance.LLMatcher(lt, g)
        t2 = time.perf_counter()
        ok = True
        for t in ids:
            allowed = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")[:V]
            ok = ok and bool(allowed[t])
            m.consume_token(t)
        row("llguidance", version("llguidance"), t1 - t0, t2 - t1, time.perf_counter() - t2, ok)
    if importlib.util.find_spec("xgrammar"):
        import torch
        import xgrammar as xgr

        t0 = time.perf_counter()
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=V)
        comp = xgr.GrammarCompiler(info)
        t1 = time.perf_counter()
        cg = comp.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))
        m = xgr.GrammarMatcher(cg)
        t2 = time.perf_counter()
        bm, ok = xgr.allocate_token_bitmask(1, info.vocab_size), True
        for t in ids:
            m.fill_next_token_bitmask(bm)
            allowed = np.unpackbits(bm[0].view(torch.uint8).numpy(), bitorder="little")[:V]
            ok = ok and bool(allowed[t]) and m.accept_token(t)
        row("xgrammar", version("xgrammar"), t1 - t0, t2 - t1, time.perf_counter() - t2, ok,
            "pulls triton and apache-tvm-ffi")
    if importlib.util.find_spec("outlines_core"):
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema

        t0 = time.perf_counter()
        byte_of = _byte_decoder()
        vm: dict[bytes, list[int]] = {}
        for s, i in tok.get_vocab().items():
            if i in tok.all_special_ids:
                continue
            try:
                vm.setdefault(bytes(byte_of[c] for c in s), []).append(i)
            except KeyError:
                continue
        vocab = Vocabulary(tok.eos_token_id, vm)
        t1 = time.perf_counter()
        guide = Guide(Index(build_regex_from_schema(json.dumps(schema)), vocab))
        t2 = time.perf_counter()
        ok = True
        for t in ids[:-1]:
            ok = ok and t in set(guide.get_tokens())
            guide.advance(t)
        ok = ok and tok.eos_token_id in set(guide.get_tokens())
        row("outlines-core", version("outlines-core"), t1 - t0, t2 - t1, time.perf_counter() - t2, ok)
    if importlib.util.find_spec("lmformatenforcer"):
        try:
            from lmformatenforcer.integrations.transformers import build_token_enforcer_tokenizer_data  # noqa: F401
            note = "imports"
        except ImportError as e:
            note = f"does not import: {str(e)[:80]}"
        rows.append({"engine": "lm-format-enforcer", "version": version("lm-format-enforcer"), "note": note})
    return rows


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level alphabet: character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=2, help="per country (2 countries, en + zh)")
    ap.add_argument("--max-tokens", type=int, default=128, help="per MARK stage (the demo's 128)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--decode-tokens", type=int, default=48, help="per row in the fixed-length comparison")
    ap.add_argument("--engines", action="store_true", help="also compare the installed grammar engines")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from valuelens.models import embedded

    backend = embedded.load(batch_size=8)
    res: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch threads "
                                      f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}",
                           "respondents_per_country": a.respondents, "max_tokens": a.max_tokens}
    res["mark"] = mark_bench(backend, a.respondents, a.max_tokens, decode_tokens=a.decode_tokens)
    if a.engines:
        res["engines"] = engines_bench()
    res["load_after"] = f"{os.getloadavg()[0]:.1f}"
    print(json.dumps(res, indent=1))
    m = res["mark"]
    print("\nMARK stage replies valid (first attempt, max_retries 0):")
    print(f"{'stage':10s} {'constrained':>14s} {'p&p pipeline':>14s} {'p&p same prompts':>17s}")
    for stage in ("stress", "type", "impact", "reason", "explain"):
        cells = []
        for k in ("constrained", "prompt_and_parse_pipeline", "prompt_and_parse_same_prompts"):
            d = m[k]["stages"].get(stage, {"jobs": 0, "valid": 0})
            cells.append(f"{d['valid']}/{d['jobs']}")
        print(f"{stage:10s} {cells[0]:>14s} {cells[1]:>14s} {cells[2]:>17s}")
    for k in ("constrained", "prompt_and_parse_pipeline", "prompt_and_parse_same_prompts"):
        st = m[k]["stages"].values()
        jobs, valid = sum(d["jobs"] for d in st), sum(d["valid"] for d in st)
        tps = m[k]["tokens"] / m[k]["wall_s"] if m[k]["wall_s"] else float("nan")
        g = m[k]["grammar_s"]
        print(f"{k:32s} valid {valid}/{jobs} = {valid / max(1, jobs):.1%}  tokens {m[k]['tokens']}  "
              f"{tps:.1f} tokens/s  grammar {g:.2f} s = {1e3 * g / max(1, m[k]['tokens']):.3f} ms/token"
              + (f"  baselines valid {m[k]['baselines']['valid']}/{m[k]['baselines']['jobs']}"
                 if "baselines" in m[k] else ""))
    fl = m["fixed_length"]
    u, c = fl["unconstrained"]["mean"], fl["constrained"]["mean"]
    print(f"fixed-length decoding, {fl['rows']} rows x {fl['tokens_per_row']} tokens, greedy, batch 8: unconstrained "
          f"{u:.1f} tokens/s, constrained {c:.1f} tokens/s ({(u - c) / u:+.1%} slower), grammar "
          f"{fl['grammar_ms_per_token']:.3f} ms/token")
    for e in res.get("engines", []):
        if "setup_ms" in e:
            print(f"engine {e['engine']} {e['version']}: tokenizer set-up {e['setup_ms']:.0f} ms, compile "
                  f"{e['compile_ms']:.1f} ms, mask+advance {e['per_token_ms']:.3f} ms/token, accepts the reply: "
                  f"{e['accepts_reply']} {e['note']}")
        else:
            print(f"engine {e['engine']} {e['version']}: {e['note']}")
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
