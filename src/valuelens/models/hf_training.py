"""Layer 3a alignment: first-token KL fine-tuning (Cao et al. 2025).

The model's distribution over an item's options is computed as
``HFBackend.option_distribution`` does it, with the backend's own rendering,
tokens, left padding and position ids: log-softmax over the full vocabulary at
the last position; an option's log-mass is the logsumexp over its label
spellings; log-softmax over the options gives q. The loss is
KL(human ‖ q) = Σ h (log h − log q), with 0·log 0 = 0, per item, averaged over
the batch. Cao et al.'s code (``kl_div(..., reduction="batchmean")`` on a 1-D
tensor) also divides by the number of options; we do not (SPEC, Known quirks).

Training: LoRA through peft (query/value projections by default) or all
parameters; AdamW; StepLR stepped once per epoch; ``torch.manual_seed(seed)``
(this sets the global torch RNG) and a seeded generator for shuffling.
Validation KL (mean per item) is measured before training (epoch 0) and after
each epoch; the trainable weights of the best epoch (1..epochs) are restored.

Training never touches the base backend: it runs on a deep copy of the
weights (LoRA adapters are injected into the copy), and the result is a new
backend handle (``HFBackend.derive``) whose weights digest is a hash of the
base digest, the settings and the data. So the base handle keeps scoring
with the base weights, and the two never share cache entries. The copy costs
one more model's worth of memory while both handles are alive.

Output under ``out_dir``: ``checkpoint/`` (peft adapter, or full model and
tokenizer; ``valuelens.json`` with digests and results; an empty ``done``
marker written last) and ``train_log.jsonl`` (one line per step: epoch, step,
loss, lr; one per epoch: epoch, val_kl). Resume: if ``checkpoint/done``
exists for the same hash, it is loaded instead of retraining; a finished checkpoint of a different run is an
error (use another out_dir). Prompts longer than ``max_length`` tokens are an
error, not truncated, so training sees the same tokens as scoring.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from valuelens.errors import MissingDependency, ValueLensError
from valuelens.models.requests import OptionRequest
from valuelens.progress import Tracker

if TYPE_CHECKING:  # the backend calls this module, not the other way round
    from valuelens.models.hf import HFBackend

META = "valuelens.json"


class TrainSettings(BaseModel):
    """Fine-tuning settings; the defaults are the paper's."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)
    step_gamma: float = Field(0.85, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    max_length: int = Field(512, ge=1)


@dataclass(frozen=True)
class TrainItem:
    """A prompt and the human distribution over ``request.labels`` (renormalised to sum 1)."""

    request: OptionRequest
    human: tuple[float, ...]

    def __post_init__(self):
        h = tuple(float(x) for x in self.human)
        if len(h) != len(self.request.labels) or any(not math.isfinite(x) or x < 0 for x in h) or sum(h) <= 0:
            raise ValueLensError(f"human distribution {self.human} does not fit the labels {self.request.labels}")
        object.__setattr__(self, "human", tuple(x / sum(h) for x in h))


@dataclass(frozen=True)
class TrainResult:
    backend: HFBackend  # the fine-tuned handle (the base backend is unchanged)
    checkpoint: Path
    best_epoch: int
    val_kl_before: float
    val_kl_best: float
    log: list[dict[str, Any]]


def run_digest(base_digest: str, settings: TrainSettings, train: list[TrainItem], val: list[TrainItem]) -> str:
    """The fine-tuned weights' digest: sha256 of base digest, settings and data."""
    data = [[[it.request.to_json(), list(it.human)] for it in part] for part in (train, val)]
    blob = json.dumps({"base": base_digest, "settings": settings.model_dump(mode="json"), "data": data},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode_items(backend: HFBackend, items: list[TrainItem], max_length: int) -> list[list[int]]:
    """Token ids of each prompt, exactly as ``option_distribution`` builds them."""
    seqs = backend.encode([it.request for it in items])
    for s in seqs:
        if len(s) > max_length:
            raise ValueLensError(f"a training prompt has {len(s)} tokens, more than max_length {max_length}")
    return seqs


def item_kl(backend: HFBackend, seqs: list[list[int]], items: list[TrainItem]):
    """KL(human ‖ model) per item as a 1-D tensor (with gradients), one forward
    pass: the backend's own scoring pass, with the graph kept."""
    torch = backend.torch
    logp = backend.last_logprobs(seqs, grad=True)
    kls = []
    for row, it in enumerate(items):
        mass = torch.stack([torch.logsumexp(logp[row, backend.label_ids(lab)], 0) for lab in it.request.labels])
        logq = torch.log_softmax(mass, 0)
        h = torch.tensor(it.human, dtype=logq.dtype, device=logq.device)
        nz = h > 0  # 0 · log 0 = 0
        kls.append((h[nz] * (h[nz].log() - logq[nz])).sum())
    return torch.stack(kls)


def _val_kl(backend: HFBackend, seqs: list[list[int]], items: list[TrainItem], bs: int) -> float:
    backend.model.eval()
    with backend.torch.no_grad():
        total = sum(float(item_kl(backend, seqs[s:s + bs], items[s:s + bs]).double().sum())
                    for s in range(0, len(items), bs))
    return total / len(items)


def train_first_token(backend: HFBackend, train: list[TrainItem], val: list[TrainItem], settings: TrainSettings,
                      out_dir: Path, progress: Tracker | None = None) -> TrainResult:
    """Fine-tune a copy of ``backend``'s weights on KL(human ‖ model); the
    tuned handle is ``result.backend`` (see the module docstring)."""
    if not train or not val:
        raise ValueLensError("fine-tuning needs at least one training and one validation item")
    if backend.finetuned is not None:
        raise ValueLensError(f"backend {backend.name} is already fine-tuned; fine-tune its base model")
    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoint"
    digest = run_digest(backend.digest, settings, train, val)
    if (ckpt / "done").exists():
        if json.loads((ckpt / META).read_text())["digest"] != digest:
            raise ValueLensError(f"{ckpt} holds a different training run (other model, settings or data); "
                                 "use another output directory or delete it")
        return load_finetuned(backend, ckpt)
    seqs = (encode_items(backend, train, settings.max_length), encode_items(backend, val, settings.max_length))
    # The tuned handle trains on its own copy; until training ends it is marked unfinished.
    tuned = backend.derive(copy.deepcopy(backend.model), f"{digest}-unfinished", out_dir)
    return _train(tuned, backend.digest, train, val, seqs, settings, out_dir, progress, digest)


def _train(backend, base_digest, train, val, seqs, settings, out_dir, progress, digest) -> TrainResult:
    torch, ckpt, (tr_seqs, va_seqs) = backend.torch, out_dir / "checkpoint", seqs
    torch.manual_seed(settings.seed)
    if settings.method == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise MissingDependency("LoRA fine-tuning needs peft: pip install 'valuelens[hf]'") from None
        cfg = LoraConfig(task_type="CAUSAL_LM", r=settings.lora_r, lora_alpha=settings.lora_alpha,
                         lora_dropout=settings.lora_dropout, target_modules=list(settings.target_modules))
        backend.model = get_peft_model(backend.model, cfg)
    model = backend.model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=settings.step_gamma)
    gen = torch.Generator().manual_seed(settings.seed)
    bs = settings.batch_size
    advance = progress.track(f"{backend.name}: fine-tuning", settings.epochs * len(train)) if progress else None

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ckpt, ignore_errors=True)  # an unfinished earlier run
    log: list[dict[str, Any]] = []
    with open(out_dir / "train_log.jsonl", "w", encoding="utf-8") as logf:
        def record(entry: dict[str, Any]) -> None:
            log.append(entry)
            logf.write(json.dumps(entry) + "\n")
            logf.flush()

        val_before = _val_kl(backend, va_seqs, val, bs)
        record({"epoch": 0, "val_kl": val_before})
        best_epoch, best_kl, best_state, step = 0, math.inf, None, 0
        for epoch in range(1, settings.epochs + 1):
            model.train()
            order = torch.randperm(len(train), generator=gen).tolist()
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                loss = item_kl(backend, [tr_seqs[i] for i in idx], [train[i] for i in idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                record({"epoch": epoch, "step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]})
                step += 1
                if advance:
                    advance(len(idx))
            sched.step()
            v = _val_kl(backend, va_seqs, val, bs)
            record({"epoch": epoch, "val_kl": v})
            if v < best_kl:
                best_epoch, best_kl = epoch, v
                best_state = {n: p.detach().clone() for n, p in params.items()}
    if best_state is None:
        raise ValueLensError(f"fine-tuning {backend.name}: the validation KL was never finite")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(best_state[n])
    model.eval()

    model.save_pretrained(ckpt)
    if settings.method == "full":
        backend.tok.save_pretrained(ckpt)
    meta = {"base_digest": base_digest, "digest": digest, "method": settings.method,
            "settings": settings.model_dump(mode="json"), "best_epoch": best_epoch,
            "val_kl_before": val_before, "val_kl_best": best_kl}
    (ckpt / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (ckpt / "done").touch()
    backend.digest, backend.finetuned = digest, ckpt
    return TrainResult(backend, ckpt, best_epoch, val_before, best_kl, log)


def load_finetuned(backend: HFBackend, checkpoint_dir: Path) -> TrainResult:
    """A new handle with a finished checkpoint applied to a copy of the base
    backend's weights (same weights digest as at training); the base backend
    is unchanged."""
    ckpt = Path(checkpoint_dir)
    if not (ckpt / "done").exists():
        raise ValueLensError(f"{ckpt}: not a finished fine-tuning checkpoint (no 'done' marker)")
    if backend.finetuned is not None:
        raise ValueLensError(f"backend {backend.name} is already fine-tuned; load the checkpoint on its base model")
    meta = json.loads((ckpt / META).read_text(encoding="utf-8"))
    if backend.digest != meta["base_digest"]:
        raise ValueLensError(f"{ckpt} was trained on weights {meta['base_digest']}, "
                             f"but backend {backend.name} has weights {backend.digest}")
    if meta["method"] == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(copy.deepcopy(backend.model), ckpt).eval()
    else:
        from transformers import AutoModelForCausalLM

        dev = next(backend.model.parameters()).device
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=getattr(backend.torch, backend.dtype)).to(dev).eval()
    tuned = backend.derive(model, meta["digest"], ckpt)
    log_path = ckpt.parent / "train_log.jsonl"
    log = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()] if log_path.exists() else []
    return TrainResult(tuned, ckpt, meta["best_epoch"], meta["val_kl_before"], meta["val_kl_best"], log)
