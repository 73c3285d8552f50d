"""Shared-prefix KV reuse for option distributions (``HFBackend``).

The prompts of one ``option_distribution`` call usually start with the same
tokens (chat template, system prompt, the fixed start of the user text). The
prefix is run once, at batch size 1, with a cache; each batch then runs only
its suffixes on top of a copy of that cache expanded to the batch:

    keys/values : [prefix (P)] [suffix, left-padded (width)]
    mask        : [1 ... 1   ] [0 .. 0 1 ... 1            ]
    positions   :              P + cumsum(suffix mask) - 1

Padding now sits between prefix and suffix; it is masked out as keys and its
positions do not shift the real tokens', so every real token sees exactly
the keys and positions it sees in the unpadded full prompt. The result is
the same computation as without reuse, up to float rounding of differently
shaped matmuls (~1e-7 on probabilities).

Only caches made purely of ``DynamicLayer`` full-attention layers are reused:
sliding-window, recurrent/linear-attention or quantized layers would not see
the padding the same way, so such models (and models that reject
``past_key_values``) take the plain path.
"""

from __future__ import annotations

import copy
import os
from typing import Any

MIN_PREFIX = 8  # below this many shared tokens the extra prefix pass is not worth it


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving each sequence at
    least one token of its own (the one whose next-token logits we read)."""
    if len(seqs) < 2:
        return 0
    return min(len(os.path.commonprefix(seqs)), min(len(s) for s in seqs) - 1)


class PrefixCache:
    """The KV cache of one shared prefix, and batches built on top of it."""

    def __init__(self, cache: Any, length: int):
        self.cache = cache
        self.length = length

    @classmethod
    def build(cls, torch: Any, model: Any, prefix: list[int]) -> PrefixCache | None:
        """Run the prefix once; None when the model gives no reusable cache.
        Call under ``torch.inference_mode()``."""
        try:
            from transformers.cache_utils import DynamicCache, DynamicLayer
        except ImportError:  # pragma: no cover - very old transformers
            return None
        dev = input_device(model)
        ids = torch.tensor([prefix], dtype=torch.long, device=dev)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                  position_ids=torch.arange(len(prefix), device=dev).unsqueeze(0), use_cache=True)
        try:
            try:
                out = model(**kw, logits_to_keep=1)  # the prefix's logits are never read
            except TypeError:
                out = model(**kw)
        except (TypeError, ValueError, NotImplementedError):
            return None
        cache = getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        if not isinstance(cache, DynamicCache) or not layers:
            return None
        if any(type(layer) is not DynamicLayer for layer in layers):
            return None
        if cache.get_seq_length() != len(prefix):
            return None
        return cls(cache, len(prefix))

    def expanded(self, n: int) -> Any:
        """A fresh cache holding the prefix n times (the forward pass appends
        to the cache it is given, so each batch gets its own copy)."""
        cache = copy.deepcopy(self.cache)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache

    def batch(self, torch: Any, suffixes: list[list[int]], pad: int):
        """Input ids (suffixes, left-padded), attention mask over prefix and
        suffix, and position ids continuing after the prefix."""
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), pad, dtype=torch.long)
        mask = torch.zeros((len(suffixes), self.length + width), dtype=torch.long)
        mask[:, : self.length] = 1
        for i, s in enumerate(suffixes):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, self.length + width - len(s):] = 1
        pos = (self.length + mask[:, self.length:].cumsum(-1) - 1).clamp(min=self.length)
        return ids, mask, pos


def input_device(model: Any) -> Any:
    """Where a model's inputs go: its input embeddings' device (the first
    device under ``device_map="auto"``), else that of its first parameter."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device
