"""GPU check: the hf backend's first-token probe and greedy generation on a
GPU against the same machine's CPU, side by side in one run.

For the lent GPU machine, which cannot hold the embedded model's weights
(only 64 MiB travel there) and has no vLLM: the model is *randomly
initialised* from the embedded model's config (same architecture and FLOPs,
meaningless answers), with its tokenizer. Prompts are the first-token probe
over the built-in questionnaire for eight countries in English and Chinese,
repeated to ``--items``. Inputs and outputs go through ``HFBackend`` as in
an audit (no store: this measures the backend).

    python bench/gpu_probe.py --model-dir DIR [--items 640] [--batches 8,32,128] [--cpu-items 160]

DIR holds config.json and the tokenizer files (``--export DIR`` writes them
from the embedded model's cached copy on a machine that has it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

COUNTRIES = ("United States", "China", "Germany", "Japan", "Brazil", "India", "Nigeria", "Mexico")
FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")


def export(target: Path) -> None:
    from valuelens.models.embedded import dequantized_dir

    src = dequantized_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, target / name)
    print(f"wrote {sorted(p.name for p in target.iterdir())} to {target}")


def requests(n: int):
    """Probe requests shaped like the first-token layer's (that module needs
    pydantic, which the GPU image lacks): country, question, lettered options,
    the answer prefill."""
    from valuelens.data.survey import load_questionnaire
    from valuelens.models.requests import Message, OptionRequest

    base = []
    for q in load_questionnaire("builtin"):
        for c in COUNTRIES:
            for lang in ("en", "zh"):
                opts = "\n".join(f"({lab}){text}" for lab, text in zip(q.labels, q.options[lang]))
                text = f"How would someone from {c} answer the following question:\n\n{q.text[lang]}\n{opts}\n"
                base.append(OptionRequest((Message("user", text),), q.labels, "My answer would be ("))
    return (base * (n // len(base) + 1))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--export", type=Path)
    ap.add_argument("--items", type=int, default=640)
    ap.add_argument("--cpu-items", type=int, default=160)
    ap.add_argument("--batches", default="8,32,128")
    ap.add_argument("--gen-prompts", type=int, default=64)
    args = ap.parse_args()
    if args.export:
        return export(args.export)
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from valuelens.models.hf import HFBackend
    from valuelens.models.requests import GenerateRequest, GenerateSettings

    cfg = AutoConfig.from_pretrained(args.model_dir)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    items = requests(args.items)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPUs  GPU {gpu}  torch "
          f"{torch.__version__}  transformers {transformers.__version__}")
    print(f"random {cfg.model_type} with the embedded model's config ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"params), fp32; probe prompts: built-in questionnaire x {len(COUNTRIES)} countries x en/zh")
    rows = []
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    check: dict[str, list] = {}
    for device in devices:
        be = HFBackend(model.to(device), tok, name="random", digest="random")
        be.batch_size = 8
        check[device] = be.option_distribution(items[:64])
        n = args.items if device == "cuda" else args.cpu_items
        for b in [int(x) for x in args.batches.split(",")]:
            be.batch_size = b
            be.option_distribution(items[: 2 * b])  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            be.option_distribution(items[:n])
            if device == "cuda":
                torch.cuda.synchronize()
            rows.append((f"probe, {device}, batch {b}", n / (time.perf_counter() - t0), "items/s"))
            print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} {rows[-1][2]}", flush=True)
        gen = [(GenerateRequest(r.messages, GenerateSettings(max_tokens=32)), 0) for r in items[: args.gen_prompts]]
        be.batch_size = 32
        be.generate(gen[:4])
        t0 = time.perf_counter()
        be.generate(gen)
        rows.append((f"greedy generation (32 tokens), {device}, batch 32", len(gen) / (time.perf_counter() - t0),
                     "answers/s"))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} {rows[-1][2]}", flush=True)
    if len(check) == 2:
        diff = max(abs(p - q) for a, b in zip(check["cuda"], check["cpu"]) for p, q in zip(a.probs, b.probs))
        print(f"max |dp| per option, cuda vs cpu, first 64 items: {diff:.2e}")
    print()
    for what, v, unit in rows:
        print(f"{what:<52}{v:>10.1f} {unit}")


if __name__ == "__main__":
    main()
