"""Local Hugging Face models through transformers.

Option distributions: one forward pass per prompt (batched, left padding,
explicit position ids so padding does not shift positions), log-softmax at
the last position only. The token prefix shared by all prompts of a call is
run once and its KV cache reused by every batch; batches are planned so that
their members share more, and that longer prefix too is run once per batch
(``hf_prefix``; ``prefix_cache=False`` turns both off: length-sorted batches).

Label tokens: a label such as ``A`` can be written as the token ``A`` or the
token `` A`` depending on what precedes it (after ``(`` SmolLM2 uses ``A``;
after ``Answer:`` most tokenizers use `` A``). We count both spellings: the
probability of an option is the sum over its single-token spellings, and the
covered mass is the sum over all options' spellings. A label that is a single
token in neither spelling is an error (use letters, or fewer options).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valuelens.errors import ValueLensError
from valuelens.models import prompting
from valuelens.models.base import sample_seed
from valuelens.models.hf_alloc import tune_malloc
from valuelens.models.hf_prefix import (MIN_PREFIX, PrefixCache, common_prefix, input_device, length_batches,
                                         plan_batches)
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult


def _torch():
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ValueLensError(
            f"the hf backend needs torch and transformers ({e.name} is missing): "
            "pip install torch==2.13.0 'valuelens[hf]'"
        ) from None
    # Our own progress bars report progress; transformers' would interleave.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch


def weights_digest(path: Path) -> str:
    """sha256 over the model's weight and config files (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in {".safetensors", ".bin", ".gguf", ".json"})
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


class HFBackend:
    supports_beams = True

    def __init__(self, model: Any, tokenizer: Any, *, name: str, digest: str, batch_size: int = 8,
                 dtype: str = "float32", use_chat_template: bool | None = None, prefix_cache: bool = True):
        torch = _torch()
        tune_malloc()  # process-wide, once: keeps freed activations in the heap (see hf_alloc)
        self.torch = torch
        self.model = model.eval()
        self.tok = tokenizer
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.name = name
        self.digest = digest
        self.batch_size = max(1, int(batch_size))
        self.dtype = dtype
        self.chat = prompting.has_chat_template(tokenizer, use_chat_template)
        self.stats: dict[str, int] = {}
        self.prefix_cache = prefix_cache  # set to False when the model gives no reusable cache
        self._label_ids: dict[str, list[int]] = {}
        self.finetuned: Path | None = None  # the checkpoint, for a fine-tuned handle

    @classmethod
    def from_path(cls, path: str | Path, *, batch_size: int = 8, dtype: str = "float32",
                  gguf_file: str | None = None, name: str | None = None, device: str = "cpu",
                  **kw: Any) -> HFBackend:
        """``device``: ``cpu`` (default), ``cuda``, ``cuda:N``, or ``auto``
        (all visible GPUs through accelerate's ``device_map="auto"``)."""
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path).expanduser()
        if not path.is_dir():
            raise ValueLensError(f"hf model path {path}: not a directory")
        try:
            extra = {"gguf_file": gguf_file} if gguf_file else {}
            tok = AutoTokenizer.from_pretrained(path, **extra)
            placement = {"device_map": "auto"} if device == "auto" else {}
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **extra, **placement)
            if device not in ("auto", "cpu"):
                model = model.to(device)
        except (OSError, ValueError) as e:
            raise ValueLensError(f"hf model path {path}: cannot load ({str(e).splitlines()[0]})") from None
        return cls(model, tok, name=name or str(path), digest=weights_digest(path), batch_size=batch_size, dtype=dtype, **kw)

    def identity(self) -> dict[str, Any]:
        ident = {"backend": "hf", "weights": self.digest, "dtype": self.dtype, "chat_template": self.chat}
        device = self.device.type
        if device != "cpu":  # other kernels, other last bits: not the CPU's cache entries
            ident["device"] = device
        return ident

    @property
    def device(self) -> Any:
        """Where inputs go: the device of the input embeddings."""
        return input_device(self.model)

    def close(self) -> None:
        pass

    def derive(self, model: Any, digest: str, finetuned: Path) -> HFBackend:
        """A new handle on ``model`` (e.g. fine-tuned from this one) with this
        backend's tokenizer and settings and its own weights digest; this
        backend is left as it is."""
        other = HFBackend(model, self.tok, name=self.name, digest=digest, batch_size=self.batch_size,
                          dtype=self.dtype, use_chat_template=self.chat, prefix_cache=self.prefix_cache)
        other.finetuned = finetuned
        return other

    def finetune(self, train: list[Any], val: list[Any], settings: Any, out_dir: Path,
                 tracker: Any = None) -> tuple[HFBackend, list[dict[str, Any]]]:
        """First-token KL fine-tuning (see :mod:`valuelens.models.hf_training`)
        of a copy of the weights: returns a new backend with the tuned weights
        and identity, and the training log. This backend keeps the base weights."""
        from valuelens.models.hf_training import train_first_token

        result = train_first_token(self, train, val, settings, Path(out_dir), tracker)
        return result.backend, result.log

    # prompts ----------------------------------------------------------------
    def render(self, messages: Sequence[Any], prefill: str) -> str:
        return prompting.render(self.tok, self.chat, messages, prefill)

    def encode(self, requests: Sequence[OptionRequest]) -> list[list[int]]:
        """Token ids of each request's prompt, as option_distribution scores it."""
        return self._encode([self.render(r.messages, r.prefill) for r in requests])

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return prompting.encode(self.tok, self.chat, texts)

    def pad(self, seqs: list[list[int]]):
        """Left-padded ids, attention mask and position ids (padding does not shift positions)."""
        torch = self.torch
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, pos

    def label_ids(self, label: str) -> list[int]:
        if label not in self._label_ids:
            self._label_ids[label] = prompting.label_token_ids(self.tok, label, self.name)
        return self._label_ids[label]

    # option distributions ---------------------------------------------------
    def _forward(self, ids, mask, pos, prefix: PrefixCache | None = None):
        def call(**keep: Any):
            # A fresh cache per call: the forward pass appends to the one it is given.
            cache = {} if prefix is None else {"past_key_values": prefix.expanded(len(ids)), "use_cache": True}
            dev = self.device
            return self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                              **cache, **keep)

        try:
            return call(logits_to_keep=1)
        except TypeError:  # older architectures without logits_to_keep
            return call()

    def last_logprobs(self, seqs: list[list[int]], prefix: PrefixCache | None = None, *, grad: bool = False):
        """Log-softmax (float32) of the next-token logits after each sequence;
        with ``prefix``, the sequences start with its tokens and only the rest
        is computed, on top of its cache. ``grad=True`` (training) keeps the
        graph and leaves the result on the model's device."""
        torch = self.torch
        if grad:
            ids, mask, pos = self.pad(seqs)
            return torch.log_softmax(self._forward(ids, mask, pos).logits[:, -1, :].float(), dim=-1)
        with torch.inference_mode():
            if prefix is None:
                ids, mask, pos = self.pad(seqs)
            else:
                ids, mask, pos = prefix.batch(torch, [s[prefix.length:] for s in seqs], self.tok.pad_token_id)
            out = self._forward(ids, mask, pos, prefix)
            return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()  # one copy back per batch

    def _shared_prefix(self, seqs: list[list[int]]) -> PrefixCache | None:
        n = common_prefix(seqs) if self.prefix_cache else 0
        if n < MIN_PREFIX:
            return None
        with self.torch.inference_mode():
            prefix = PrefixCache.build(self.torch, self.model, seqs[0][:n])
        if prefix is None:
            self.prefix_cache = False  # this model gives no reusable cache; do not try again
        return prefix

    def _batch_prefix(self, base: PrefixCache | None, tokens: list[int]) -> PrefixCache | None:
        """The cache of a batch's own shared prefix, on top of ``base``."""
        if base is not None and len(tokens) == base.length:
            return base
        if len(tokens) == 0 or not self.prefix_cache:
            return None
        with self.torch.inference_mode():
            if base is None:
                prefix = PrefixCache.build(self.torch, self.model, tokens)
            else:
                prefix = base.extend(self.torch, self.model, tokens)
        if prefix is None:
            self.prefix_cache = False
        return prefix or base

    def _plan(self, seqs: list[list[int]], base: PrefixCache | None) -> list[tuple[list[int], int]]:
        if self.prefix_cache:
            return plan_batches(seqs, self.batch_size, base.length if base else 0, self.device.type)
        return length_batches(seqs, self.batch_size)

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        torch = self.torch
        seqs = self.encode(requests)
        results: list[OptionResult | None] = [None] * len(seqs)
        base = self._shared_prefix(seqs)
        for idx, length in self._plan(seqs, base):
            prefix = self._batch_prefix(base, seqs[idx[0]][:length])
            try:
                logp = self.last_logprobs([seqs[i] for i in idx], prefix)
            except (TypeError, ValueError, NotImplementedError):
                if prefix is None:
                    raise
                self.prefix_cache, base = False, None  # the model rejects a past_key_values batch
                logp = self.last_logprobs([seqs[i] for i in idx])
            for row, i in enumerate(idx):
                mass = [float(torch.exp(logp[row, self.label_ids(lab)]).sum()) for lab in requests[i].labels]
                results[i] = OptionResult.from_mass(mass)
        return results  # type: ignore[return-value]

    # generation -------------------------------------------------------------
    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        """Greedy requests are batched; sampled ones run one at a time under
        their own seed so a sample never depends on what it was batched with."""
        torch = self.torch
        texts = [self.render(r.messages, r.prefill) for r, _ in items]
        seqs = self._encode(texts)
        out: list[str | None] = [None] * len(items)
        greedy = [i for i, (r, _) in enumerate(items) if r.settings.temperature == 0]
        sampled = [i for i, (r, _) in enumerate(items) if r.settings.temperature > 0]
        greedy.sort(key=lambda i: (items[i][0].settings.max_tokens, items[i][0].settings.num_beams, len(seqs[i])))
        s = 0
        while s < len(greedy):
            st = items[greedy[s]][0].settings
            idx = [i for i in greedy[s : s + self.batch_size]
                   if (items[i][0].settings.max_tokens, items[i][0].settings.num_beams) == (st.max_tokens, st.num_beams)]
            self._gen_batch(idx, seqs, out, st, sample=False)
            s += len(idx)
        for i in sampled:
            r, j = items[i]
            torch.manual_seed(sample_seed(r.settings.seed, j))
            self._gen_batch([i], seqs, out, r.settings, sample=True)
        return out  # type: ignore[return-value]

    def _gen_batch(self, idx, seqs, out, st, *, sample: bool) -> None:
        torch = self.torch
        ids, mask, _ = self.pad([seqs[i] for i in idx])
        kw: dict[str, Any] = dict(max_new_tokens=st.max_tokens, num_beams=st.num_beams,
                                  pad_token_id=self.tok.pad_token_id, do_sample=sample)
        if sample:
            kw.update(temperature=st.temperature, top_p=st.top_p)
        with torch.inference_mode():
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kw)
        for row, i in enumerate(idx):
            out[i] = self.tok.decode(gen[row, ids.shape[1]:], skip_special_tokens=True)
