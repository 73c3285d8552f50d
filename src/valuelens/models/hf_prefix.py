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

Batch planning (``plan_batches``): beyond the prefix all prompts share,
prompts of one batch often share more (the country sentence, a question's
template). The prompts are split into batches, each with the prefix its
members share, by a dynamic programme over contiguous runs of the prompts
sorted by length and, separately, lexicographically (a run's common prefix is
the minimum of its neighbours' common prefixes); it minimises tokens computed
(suffixes with their padding, plus each extension of the shared prefix run
once) plus a fixed cost per batch and per extension. The plan changes which
tokens are computed together, never what each prompt sees.

Reuse across calls (``PrefixStore``): the prefixes built for batches are kept
(least recently used out beyond ``STORE_BYTES`` of keys and values; an entry
that is a prefix of a newer one is dropped, the newer one covers it), and a
later call's prompts start from the longest stored prefix they share, cropped
to what they share. Calls of one layer often continue each other: a
conversation-style escalation step is the previous step's prompt plus the
model's answer and the next turn; an in-context example is another
dilemma's Direct prompt. The planner is told, per prompt, how many of its
tokens a stored prefix covers (``avail``) and counts only the rest. Exact in
the same sense as above: stored keys and values are those the prompt's own
prefix would produce (computed at batch size 1, on top of the same shorter
prefixes), so only the rounding of differently shaped matmuls differs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
import os
from typing import Any

MIN_PREFIX = 8  # below this many shared tokens the extra prefix pass is not worth it
# Fixed costs in units of one token's compute in a batch. On a CPU a forward
# pass costs ~15 ms beyond its tokens (~0.8 ms each for a 135M model), and
# small batches use the matmul units less well; on the probe's 70 items any
# value from 24 to 400 ran within 3 % of each other, 9-10 % faster than plain
# length-sorted batches. On a GPU tokens are nearly free: only full batches pay.
BATCH_COST = {"cpu": 96, "other": 4096}
EXTEND_COST = {"cpu": 96, "other": 4096}


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_batches(seqs: list[list[int]], batch_size: int, base: int = 0,
                 device: str = "cpu", avail: list[int] | None = None,
                 batch_cost: float | None = None) -> list[tuple[list[int], int]]:
    """Split ``seqs`` into batches of at most ``batch_size``: a list of
    (indices, prefix length), where the prefix length is ``base`` (the prefix
    all share, 0 for none) or the longer prefix the batch's members share.
    Every index appears once; each prefix leaves every member a token.
    ``avail[i]`` (optional, ``base`` <= it < ``len(seqs[i])``): how many of
    ``seqs[i]``'s first tokens a stored prefix already holds; a batch may then
    start from the part of it all members share at no cost (a one-member batch
    too). ``batch_cost``: the fixed cost of a batch (default ``BATCH_COST``;
    generation adds its decoding steps)."""
    kind = "cpu" if device == "cpu" else "other"
    batch_cost, extend_cost = BATCH_COST[kind] if batch_cost is None else batch_cost, EXTEND_COST[kind]
    by_len = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), seqs[i]))
    by_lex = sorted(range(len(seqs)), key=lambda i: seqs[i])
    plans = [_plan(seqs, order, batch_size, base, batch_cost, extend_cost, avail) for order in (by_len, by_lex)]
    return min(plans)[1]


def length_batches(seqs: list[list[int]], batch_size: int, prefix: int = 0) -> list[tuple[list[int], int]]:
    """Plain batches: consecutive runs of the length-sorted prompts, each on
    ``prefix`` (the same shape as ``plan_batches``' result)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    return [(order[s : s + batch_size], prefix) for s in range(0, len(order), batch_size)]


def _plan(seqs, order, batch_size, base, batch_cost, extend_cost, avail=None):
    """Cheapest split of ``order`` into contiguous runs (dynamic programme)."""
    n = len(order)
    lens = [len(seqs[i]) for i in order]
    held = [base] * n if avail is None else [max(base, avail[i]) for i in order]
    adj = [_lcp(seqs[order[k]], seqs[order[k + 1]]) for k in range(n - 1)]
    best: list[tuple[float, int, int]] = [(0.0, 0, 0)] + [(float("inf"), 0, 0)] * n  # (cost, start, prefix)
    for j in range(1, n + 1):
        shared, longest, shortest, stored = None, 0, None, None
        for i in range(j - 1, max(-1, j - 1 - batch_size), -1):  # run order[i:j], growing leftwards
            if i < j - 1:
                shared = adj[i] if shared is None else min(shared, adj[i])
            longest = max(longest, lens[i])
            shortest = lens[i] if shortest is None else min(shortest, lens[i])
            stored = held[i] if stored is None else min(stored, held[i])
            size = j - i
            ext = shortest - 1 if shared is None else min(shared, shortest - 1)
            start = min(stored, ext)  # held by a stored prefix and shared by the run: free
            cost, prefix = size * (longest - start), start
            if shared is not None:
                if ext > start:
                    c = (ext - start) + extend_cost + size * (longest - ext)
                    if c < cost:
                        cost, prefix = c, ext
            total = best[i][0] + cost + batch_cost
            if total < best[j][0]:
                best[j] = (total, i, prefix)
    batches, j = [], n
    while j:
        _, i, prefix = best[j]
        batches.append(([order[k] for k in range(i, j)], prefix))
        j = i
    return best[n][0], batches[::-1]


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
        return cls._run(torch, model, prefix, 0, None)

    def extend(self, torch: Any, model: Any, prefix: list[int]) -> PrefixCache | None:
        """The cache of a longer prefix (``prefix`` starts with this one's
        tokens): only the new tokens are run, on a copy of this cache."""
        if len(prefix) == self.length:
            return self
        return self._run(torch, model, prefix, self.length, copy.deepcopy(self.cache))

    @classmethod
    def _run(cls, torch: Any, model: Any, prefix: list[int], start: int, past: Any) -> PrefixCache | None:
        try:
            from transformers.cache_utils import DynamicCache, DynamicLayer
        except ImportError:  # pragma: no cover - very old transformers
            return None
        dev = input_device(model)
        ids = torch.tensor([prefix[start:]], dtype=torch.long, device=dev)
        kw = dict(input_ids=ids, attention_mask=torch.ones((1, len(prefix)), dtype=torch.long, device=dev),
                  position_ids=torch.arange(start, len(prefix), device=dev).unsqueeze(0), use_cache=True)
        if past is not None:
            kw["past_key_values"] = past
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

    def crop(self, n: int) -> PrefixCache:
        """The cache of this prefix's first ``n`` tokens (a copy; this one is kept)."""
        if n == self.length:
            return self
        if not 0 < n < self.length:
            raise ValueError(f"cannot crop a {self.length}-token prefix to {n}")
        cache = copy.deepcopy(self.cache)
        for layer in cache.layers:
            layer.keys = layer.keys[..., :n, :].clone()
            layer.values = layer.values[..., :n, :].clone()
        return PrefixCache(cache, n)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.cache.layers for t in (layer.keys, layer.values))

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


STORE_BYTES = 1 << 30  # keys and values kept across calls (SmolLM2-135M in fp32: 46 KB per token, ~23k tokens)


class PrefixStore:
    """Prefix caches kept across ``option_distribution`` calls, by token ids.

    ``match`` gives the entry sharing the most leading tokens with a prompt;
    ``add`` keeps a new entry (dropping entries that are a prefix of it) and
    evicts the least recently used beyond ``max_bytes``."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = STORE_BYTES if max_bytes is None else max_bytes
        self.entries: dict[tuple[int, ...], PrefixCache] = {}  # insertion order = least recently used first
        self.bytes = 0

    def match(self, seq: list[int]) -> tuple[PrefixCache | None, int]:
        """(entry, shared length) for the entry sharing the most leading tokens with ``seq``."""
        best, n = None, 0
        for toks, pc in self.entries.items():
            if len(toks) <= n or len(seq) <= n or toks[0] != seq[0] or (n and toks[n - 1] != seq[n - 1]):
                continue  # cannot beat the best so far
            k = _lcp(toks, seq)
            if k > n:
                best, n = toks, k
        if best is None:
            return None, 0
        pc = self.entries.pop(best)
        self.entries[best] = pc  # most recently used
        return pc, n

    def add(self, tokens: list[int], pc: PrefixCache) -> None:
        key = tuple(tokens[: pc.length])
        if key in self.entries or not key:
            return
        for toks in [t for t in self.entries if len(t) < len(key) and key[: len(t)] == t]:
            self.bytes -= self.entries.pop(toks).nbytes()  # covered by the new entry
        size = pc.nbytes()
        if size > self.max_bytes:
            return
        self.entries[key] = pc
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self.entries.pop(next(iter(self.entries))).nbytes()

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


def input_device(model: Any) -> Any:
    """Where a model's inputs go: its input embeddings' device (the first
    device under ``device_map="auto"``), else that of its first parameter."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device
