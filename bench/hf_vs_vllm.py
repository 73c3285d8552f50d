"""The hf backend vs the vllm backend, side by side in one run, same model,
same items: first-token probe items/s and DEF generation answers/s.

Model: the embedded SmolLM2-135M-Instruct's fp32 copy (user cache), fp32.
Probe items: United States + China x the 35 WVS questions of Cao et al. 2025
in English and Chinese (140 items) when /work/shared/data is there, else the
built-in questionnaire. DEF prompts: the layer's own prompt builder
(``bench/def_generation.def_requests``), sampled with each participant's
temperature/top-p, one answer per prompt.

Every measurement goes through ``CachedModel`` with a fresh store (every call
is a miss and is written), so it is what an audit pays. Reps alternate
between the backends (only one computes at a time) after one warm-up each;
medians are printed, with the largest per-option |dp| between the two.

    .venv-vllm/bin/python bench/hf_vs_vllm.py [--reps 3] [--def-prompts 32] [--max-tokens 32] [--threads N]

Runs in the venv that has vLLM (``make bench-vllm``). On a GPU machine with
vLLM, pass ``--device cuda`` to put the hf model on the GPU too.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path("/work/shared/data/wvs_cao2025")


def probe_requests(data: Path):
    from valuelens.layers.first_token import option_request

    if (data / "sft_wvs_valid.json").is_file():
        from valuelens.data.sources import load_survey

        zh = data / "sft_wvs_zh_valid.json"
        survey = load_survey("cao2025", data / "sft_wvs_valid.json", zh if zh.is_file() else None)
        langs = ("en", "zh") if zh.is_file() else ("en",)
        qs = sorted(survey.questions.values(), key=lambda q: q.id)
        return [option_request(q, c, lang) for q in qs for c in ("United States", "China") for lang in langs], \
            f"Cao 2025 WVS items (US+China x {'/'.join(langs)})"
    from valuelens.data.survey import load_questionnaire

    qs = load_questionnaire("builtin")
    return [option_request(q, c, lang) for q in qs for c in ("United States", "China") for lang in ("en", "zh")], \
        "built-in questionnaire (US+China x en/zh)"


def timed_store(backend, fn) -> tuple[float, object]:
    from valuelens.models import CachedModel
    from valuelens.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite")
        store.begin_run()
        model = CachedModel(backend, store, "bench")
        t0 = time.perf_counter()
        out = fn(model)
        dt = time.perf_counter() - t0
        store.close()
    return dt, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--def-prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for hf (0: torch's choice)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("SKIP: vLLM is not installed in this venv; run `make bench-vllm` (it builds .venv-vllm)")
        return
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    import torch

    from def_generation import def_requests
    from valuelens.models import embedded
    from valuelens.models.registry import load_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    items, what = probe_requests(args.data)
    gens = def_requests(args.def_prompts, args.max_tokens)
    t0 = time.perf_counter()
    hf = embedded.load(batch_size=8)
    t_hf = time.perf_counter() - t0
    t0 = time.perf_counter()
    vl = load_backend(f"vllm:{embedded.dequantized_dir()}", dtype="float32", max_model_len=2048, enforce_eager=True)
    t_vl = time.perf_counter() - t0
    backends = {"hf": hf, "vllm": vl}
    print(f"{datetime.now():%Y-%m-%d %H:%M}  {platform.node()}  {os.cpu_count()} CPUs  Python {platform.python_version()}"
          f"  torch {torch.__version__}  vllm {vllm.__version__}  load avg {os.getloadavg()[0]:.2f}")
    print(f"model smollm2-135m-instruct fp32; load: hf {t_hf:.1f} s, vllm {t_vl:.1f} s; hf torch threads "
          f"{torch.get_num_threads()}, batch 8")
    print(f"probe: {len(items)} {what}; DEF: {len(gens)} sampled answers, max {args.max_tokens} tokens")

    jobs = {"probe": lambda m: m.option_distribution(items),
            "def": lambda m: m.generate(gens)}
    times: dict[tuple[str, str], list[float]] = {(j, b): [] for j in jobs for b in backends}
    outs: dict[tuple[str, str], object] = {}
    for job, fn in jobs.items():
        for name, be in backends.items():  # warm-up
            outs[(job, name)] = timed_store(be, fn)[1]
        for rep in range(args.reps):
            order = list(backends) if rep % 2 == 0 else list(reversed(backends))
            for name in order:
                times[(job, name)].append(timed_store(backends[name], fn)[0])
            print(f"  {job} rep {rep + 1}: " + ", ".join(f"{n} {times[(job, n)][-1]:.2f} s" for n in backends))

    diff = max(abs(p - q) for a, b in zip(outs[("probe", "hf")], outs[("probe", "vllm")])
               for p, q in zip(a.probs, b.probs))
    print(f"\n{'what (same items, same model, fp32)':<44}{'hf/s':>10}{'vllm/s':>10}{'vllm/hf':>10}")
    for job, n, unit in (("probe", len(items), "items"), ("def", len(gens), "answers")):
        h = n / statistics.median(times[(job, "hf")])
        v = n / statistics.median(times[(job, "vllm")])
        print(f"{job + ' ' + unit + ' per second':<44}{h:>10.2f}{v:>10.2f}{v / h:>9.2f}x")
    print(f"max |dp| per option, probe, vllm vs hf: {diff:.2e}; medians of {args.reps} interleaved reps")
    vl.close()


if __name__ == "__main__":  # vLLM starts its engine process with spawn
    main()
