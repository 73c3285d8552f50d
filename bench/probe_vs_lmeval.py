"""First-token probe throughput: valuelens vs lm-evaluation-harness (issue 3).

Scores the same 70 items (United States + China x the 35 WVS questions of
Cao et al. 2025, English) with the same model (the embedded SmolLM2-135M-
Instruct, its fp32 copy in the user cache), fp32, batch 8, on the CPU:

- valuelens: ``CachedModel(...).option_distribution`` with a fresh store
  each rep (every call is a miss and is written), in this venv;
- lm-eval: the items as a custom ``multiple_choice`` task whose context is
  the exact text valuelens scores (chat template + prefill, from
  ``HFBackend.render``) and whose choices are the bare option letters
  (``target_delimiter: ""``, so each continuation is one token right after
  "("), scored by ``lm_eval.evaluator.evaluate`` with a pre-loaded ``HFLM``
  in a driver process that runs in ``.venv-lmeval``. Only the evaluate call
  is timed (it builds the requests, tokenizes, runs the forwards and the
  metrics); the model load and the task load are reported separately.

Both processes stay up with their model loaded; reps alternate between them
(only one computes at a time), after one warm-up each; medians are printed.
valuelens' hf backend sets two glibc allocator thresholds for itself
(``models/hf_alloc.py``); a second lm-eval driver runs with the same
settings (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``) so the
table also shows the ratio that the rest of valuelens' work accounts for.
The lm-eval CLI is also run once end to end (model load included) unless
``--no-cli``. lm-eval's per-choice log-likelihoods (its logged samples) are
compared with valuelens' distributions.

    .venv/bin/python bench/probe_vs_lmeval.py [--reps 3] [--batch 8] [--threads N] [--no-cli]

The first run creates ``.venv-lmeval`` (torch 2.13.0 CPU from the local
wheel, lm_eval[hf] 0.4.13; about 100 s, 1.6 GB) and stamps it; later runs
reuse it. Without /work/shared/data (or --data) it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-lmeval"
STAMP = VENV / ".valuelens-bench-stamp"
TORCH = "torch==2.13.0"  # the CPU build on local disk; never a bare torch
LM_EVAL = "lm_eval[hf]==0.4.13"
DATA = Path("/work/shared/data/wvs_cao2025")
COUNTRIES = ("United States", "China")
TASK = "valuelens_first_token_wvs"

DRIVER = r'''
import json, logging, os, sys, time
t0 = time.perf_counter()
import torch
import lm_eval
from lm_eval.evaluator import evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
logging.getLogger("lm_eval").setLevel(logging.WARNING)
model_dir, include, task, batch = sys.argv[1:5]

def emit(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()

t_import = time.perf_counter() - t0
t0 = time.perf_counter()
lm = HFLM(pretrained=model_dir, dtype="float32", batch_size=int(batch), device="cpu")
tm = TaskManager(include_path=include)
emit({"event": "ready", "import_s": t_import, "load_s": time.perf_counter() - t0,
      "threads": torch.get_num_threads(), "lm_eval": getattr(lm_eval, "__version__", "?"),
      "torch": torch.__version__})
for line in sys.stdin:
    if line.strip() != "run":
        break
    t0 = time.perf_counter()
    loaded = tm.load([task])
    t_task = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(lm=lm, task_dict=loaded, log_samples=True, bootstrap_iters=0)
    t_eval = time.perf_counter() - t0
    lls = {}
    for s in res["samples"][task]:
        lls[s["doc"]["id"]] = [float(r[0][0]) for r in s["resps"]]
    emit({"event": "done", "task_s": t_task, "eval_s": t_eval, "lls": lls})
'''


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the lm-eval venv ----------------------------------------------------------
def ensure_venv() -> Path:
    """Create .venv-lmeval once (idempotent: a stamp names what was installed)."""
    py = VENV / "bin" / "python"
    want = f"{TORCH} {LM_EVAL} python{sys.version_info.major}.{sys.version_info.minor}"
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return py
    log(f"setting up {VENV.name} ({TORCH}, {LM_EVAL}) ...")
    t0 = time.perf_counter()
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    for reqs in ([TORCH], [TORCH, LM_EVAL]):  # torch first, pinned again so lm_eval cannot move it
        r = subprocess.run(nice + [str(py), "-m", "pip", "install", "-q", *reqs], capture_output=True, text=True)
        if r.returncode:
            tail = "\n".join(ln for ln in (r.stdout + r.stderr).splitlines() if "is ignored" not in ln)[-3000:]
            sys.exit(f"pip install {' '.join(reqs)} failed in {VENV}:\n{tail}")
    STAMP.write_text(want + "\n")
    log(f"{VENV.name} installed in {time.perf_counter() - t0:.0f} s")
    return py


# -- items and the lm-eval task -------------------------------------------------
def build_requests(data: Path):
    from valuelens.data.sources import load_survey
    from valuelens.layers.first_token import build_items, option_request

    survey = load_survey("cao2025", data / "sft_wvs_valid.json", data / "sft_wvs_zh_valid.json")
    items = build_items(survey, list(survey.questions.values()), COUNTRIES, ["en"])
    return [option_request(it.question, it.country, "en") for it in items]


def write_task(tmp: Path, texts: list[str], labels: list[tuple[str, ...]]) -> Path:
    """JSONL dataset + task YAML (written as JSON, which YAML reads)."""
    inc = tmp / "tasks"
    inc.mkdir()
    data = tmp / "items.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i, (t, labs) in enumerate(zip(texts, labels)):
            f.write(json.dumps({"id": i, "context": t, "choices": list(labs)}, ensure_ascii=False) + "\n")
    cfg = {"task": TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
           "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "context",
           "doc_to_choice": "choices", "doc_to_target": 0, "target_delimiter": "",
           "metric_list": [{"metric": "acc"}]}
    (inc / f"{TASK}.yaml").write_text(json.dumps(cfg, indent=1))
    return inc


def child_env(tmp: Path, threads: int = 0, malloc: bool = False) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_DATASETS_CACHE=str(tmp / "hf_datasets"))
    env.pop("VIRTUAL_ENV", None)
    if malloc:  # the glibc settings valuelens' hf backend applies to itself (models/hf_alloc.py)
        from valuelens.models.hf_alloc import MMAP_THRESHOLD, TRIM_THRESHOLD

        env.update(MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_=str(TRIM_THRESHOLD))
    if threads:  # torch's default thread count follows OMP_NUM_THREADS
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class Driver:
    """lm-eval in .venv-lmeval, model loaded once; one evaluate() per 'run'."""

    def __init__(self, py: Path, tmp: Path, model_dir: Path, include: Path, batch: int, threads: int,
                 malloc: bool = False):
        (tmp / "driver.py").write_text(DRIVER)
        self.err_path = tmp / f"driver{'-malloc' if malloc else ''}.log"
        self.err = open(self.err_path, "w")
        self.p = subprocess.Popen([str(py), str(tmp / "driver.py"), str(model_dir), str(include), TASK, str(batch)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  env=child_env(tmp, threads, malloc), cwd=tmp)
        self.ready = self._read()

    def _read(self) -> dict:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        self.err.flush()
        sys.exit(f"lm-eval driver died (exit {self.p.wait()}); its log:\n{self.err_path.read_text()[-4000:]}")

    def run(self) -> dict:
        assert self.p.stdin is not None
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait(timeout=60)
        self.err.close()


def run_cli(py: Path, tmp: Path, model_dir: Path, include: Path, batch: int, threads: int) -> tuple[float, dict[int, list[float]]]:
    """The lm_eval CLI once, end to end; returns the wall time and its logged log-likelihoods."""
    out = tmp / "cli_out"
    cmd = [str(py.parent / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
           "--tasks", TASK, "--include_path", str(include), "--batch_size", str(batch), "--device", "cpu",
           "--log_samples", "--output_path", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(tmp, threads), cwd=tmp)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"lm_eval CLI failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}")
    lls: dict[int, list[float]] = {}
    for fn in glob.glob(str(out / "**" / f"samples_{TASK}_*.jsonl"), recursive=True):
        for line in open(fn, encoding="utf-8"):
            s = json.loads(line)
            lls[int(s["doc"]["id"])] = [float(x[0][0]) for x in s["resps"]]
    return wall, lls


# -- comparison -------------------------------------------------------------------
def softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def single_spelling(backend, texts: list[str], labels) -> tuple[list[list[float]], list[float]]:
    """valuelens' forward, but only the bare-letter tokens (what lm-eval scores);
    also the share of the letters' mass that the ' A' spellings carry."""
    seqs = backend._encode(texts)
    probs, space_share = [], []
    for s in range(0, len(seqs), backend.batch_size):
        logp = backend.last_logprobs(seqs[s : s + backend.batch_size])
        for row, labs in enumerate(labels[s : s + backend.batch_size]):
            bare = [float(logp[row, backend.tok(lab, add_special_tokens=False)["input_ids"][0]]) for lab in labs]
            both = sum(float(backend.torch.exp(logp[row, backend.label_ids(lab)]).sum()) for lab in labs)
            probs.append(softmax(bare))
            space_share.append(1 - sum(math.exp(b) for b in bare) / both)
    return probs, space_share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--data", type=Path, default=DATA, help="folder with sft_wvs_valid.json and sft_wvs_zh_valid.json")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end lm_eval CLI run")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for both sides (default: torch's default, the core count)")
    args = ap.parse_args()
    if not (args.data / "sft_wvs_valid.json").is_file() or not (args.data / "sft_wvs_zh_valid.json").is_file():
        log(f"SKIP: {args.data} has no sft_wvs_valid.json / sft_wvs_zh_valid.json (the Cao et al. 2025 WVS items); "
            "nothing to benchmark")
        return

    import torch

    from valuelens.models import CachedModel
    from valuelens.models import embedded
    from valuelens.store import Store

    if args.threads:
        torch.set_num_threads(args.threads)
    log(f"{datetime.now():%Y-%m-%d %H:%M}  {platform.node()}  {os.cpu_count()} vCPU  Python {platform.python_version()}")
    py = ensure_venv()
    model_dir = embedded.dequantized_dir()
    backend = embedded.load(batch_size=args.batch)
    reqs = build_requests(args.data)
    texts = [backend.render(r.messages, r.prefill) for r in reqs]
    labels = [r.labels for r in reqs]
    n = len(reqs)
    ntok = statistics.mean(len(s) for s in backend._encode(texts))
    with tempfile.TemporaryDirectory(prefix="probe_vs_lmeval_") as d:
        tmp = Path(d)
        include = write_task(tmp, texts, labels)
        drv = Driver(py, tmp, model_dir, include, args.batch, args.threads)
        drv_m = Driver(py, tmp, model_dir, include, args.batch, args.threads, malloc=True)
        r = drv.ready
        log(f"{n} items ({' + '.join(COUNTRIES)}, en), {ntok:.1f} prompt tokens/item, fp32, batch {args.batch}, "
            f"model {model_dir.name}")
        log(f"torch threads: valuelens {torch.get_num_threads()}, lm-eval {r['threads']}; "
            f"lm_eval {r['lm_eval']} (torch {r['torch']}); lm-eval import {r['import_s']:.1f} s + HFLM load {r['load_s']:.1f} s")

        def vl_rep():
            with tempfile.TemporaryDirectory() as sd:
                store = Store(Path(sd) / "s.sqlite")
                store.begin_run()
                t0 = time.perf_counter()
                got = CachedModel(backend, store, "bench").option_distribution(reqs)
                dt = time.perf_counter() - t0
                store.close()
            return dt, got

        _, got = vl_rep()  # warm-up
        warm = drv.run()  # warm-up; its logged samples give the comparison
        warm_m = drv_m.run()
        t_vl, t_lm, t_lm_m, t_task = [], [], [], []
        whos = ["lm", "vl", "lm+malloc"]
        for rep in range(args.reps):  # rotate which goes first
            for who in whos[rep % 3:] + whos[: rep % 3]:
                if who == "vl":
                    dt, got = vl_rep()
                    t_vl.append(dt)
                elif who == "lm":
                    res = drv.run()
                    t_lm.append(res["eval_s"])
                    t_task.append(res["task_s"])
                else:
                    t_lm_m.append(drv_m.run()["eval_s"])
            log(f"  rep {rep + 1}: valuelens {t_vl[-1]:.2f} s, lm-eval evaluate {t_lm[-1]:.2f} s "
                f"(+ task load {t_task[-1]:.2f} s), lm-eval with valuelens' malloc setting {t_lm_m[-1]:.2f} s")
        drv.close()
        drv_m.close()
        cli = run_cli(py, tmp, model_dir, include, args.batch, args.threads) if not args.no_cli else None

    # probabilities: lm-eval's log-likelihoods vs valuelens
    lm_ll = {int(k): v for k, v in warm["lls"].items()}
    lm_p = [softmax(lm_ll[i]) for i in range(n)]
    vl_p = [list(g.probs) for g in got]
    bare_p, space = single_spelling(backend, texts, labels)
    d_vl = max(abs(a - b) for x, y in zip(vl_p, lm_p) for a, b in zip(x, y))
    d_bare = max(abs(a - b) for x, y in zip(bare_p, lm_p) for a, b in zip(x, y))
    top_agree = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__)
                    for x, y in zip(vl_p, lm_p))

    lm_s, vl_s, lm_m_s = statistics.median(t_lm), statistics.median(t_vl), statistics.median(t_lm_m)
    lm_ips, vl_ips = n / lm_s, n / vl_s
    d_malloc = max(abs(a - b) for i in range(n) for a, b in zip(warm_m["lls"][str(i)], lm_ll[i]))
    log("")
    log(f"{'approach (same %d items, same model, fp32, batch %d)' % (n, args.batch):<58}{'items/s':>9}"
        f"{'s median':>10}{'s best':>8}")
    log(f"{'lm-eval ' + r['lm_eval'] + ' evaluate(), pre-loaded HFLM':<58}{lm_ips:>9.2f}{lm_s:>10.2f}{min(t_lm):>8.2f}")
    log(f"{'  same, with valuelens glibc malloc setting (MALLOC_*_)':<58}{n / lm_m_s:>9.2f}{lm_m_s:>10.2f}"
        f"{min(t_lm_m):>8.2f}")
    log(f"{'valuelens CachedModel.option_distribution (fresh store)':<58}{vl_ips:>9.2f}{vl_s:>10.2f}{min(t_vl):>8.2f}")
    if cli is not None:
        wall, cli_ll = cli
        log(f"{'lm_eval CLI once, end to end (process start + load)':<58}{n / wall:>9.2f}{wall:>10.2f}")
    ratio = vl_ips / lm_ips
    log(f"ratio valuelens / lm-eval: {ratio:.2f}x  (target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}); "
        f"medians of {args.reps} interleaved reps; "
        f"best vs best {min(t_lm) / min(t_vl):.2f}x")
    log(f"ratio valuelens / lm-eval given valuelens' malloc setting too: {lm_m_s / vl_s:.2f}x "
        f"(its log-likelihoods unchanged by it: max |d| {d_malloc:.1e})")
    log(f"max |dp| valuelens vs lm-eval: {d_vl:.2e}  (valuelens adds the ' A' spellings: they hold "
        f"{statistics.mean(space):.1e} of the letters' mass on average, {max(space):.1e} at most)")
    log(f"max |dp| valuelens forward with bare letters only vs lm-eval: {d_bare:.2e}; same top option on {top_agree}/{n} items")
    if cli is not None:
        if len(cli_ll) == n:
            d_cli = max(abs(a - b) for i in range(n) for a, b in zip(cli_ll[i], lm_ll[i]))
            log(f"lm_eval CLI logged samples vs evaluate(): max |d loglik| {d_cli:.1e}")
        else:
            log(f"lm_eval CLI: found {len(cli_ll)} logged samples (expected {n})")


if __name__ == "__main__":
    main()
