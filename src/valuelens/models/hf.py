"""Local Hugging Face models through transformers.

Option distributions: one forward pass per prompt (batched, left padding,
explicit position ids so padding does not shift positions), log-softmax at
the last position only. The token prefix shared by all prompts of a call is
run once and its KV cache reused by every batch; batches are planned so that
their members share more, and that longer prefix too is run once per batch
(``hf_prefix``; ``prefix_cache=False`` turns both off: length-sorted batches).
Batch prefixes are kept across calls (``hf_prefix.PrefixStore``, LRU within
``STORE_BYTES``): a later call's prompts start from the longest stored prefix
they share (escalation steps that continue the previous step's conversation,
in-context examples that repeat another call's prompt). ``batch_order`` tells
``CachedModel`` the planned order, so its chunks of a long call keep prompts
that share a prefix together.

Label tokens: a label such as ``A`` can be written as the token ``A`` or the
token `` A`` depending on what precedes it (after ``(`` SmolLM2 uses ``A``;
after ``Answer:`` most tokenizers use `` A``). We count both spellings: the
probability of an option is the sum over its single-token spellings, and the
covered mass is the sum over all options' spellings. A label that is a single
token in neither spelling is an error (use letters, or fewer options).

Generation (num_beams 1, greedy and sampled): our own batched loop (left
padding, explicit positions, KV cache; finished rows leave the batch). A
sampled row applies to its own logits what ``model.generate(do_sample=True)``
applies (temperature, the model's top-k — transformers' 50 unless its
generation config says otherwise — top-p) and draws with ``torch.multinomial``
from its own generator seeded with ``sample_seed(seed, j)``: the random
numbers it consumes are those it consumed alone under ``torch.manual_seed``
before, so its text is that old text whatever its batch, order or resume.
Only the logits depend on the batch, through fp32 rounding of padded shapes
(max |Δlogit| 6e-8 on the tiny test model, 5.2e-5 on SmolLM2-135M in
``bench/def_generation.py``). A draw ``argmax p_i / E_i`` (E_i ~ Exp(1)) can change only
when two candidates' ratios lie within a factor exp(2·Δ/T) of each other (or
a token sits within Δ of the top-k/top-p cut): about 2·Δ/T per token. Beam
sampling (num_beams > 1, temperature > 0) and models whose generation config
adds other processors (repetition penalty, min-p, …) keep the old path: one
request at a time through ``model.generate`` under ``torch.manual_seed``.
The cache identity is unchanged: stored samples are the texts this sampler
makes (the same processors and random streams).

Constrained generation (``GenerateRequest.response_format``, JSON schema or
regex) through :mod:`valuelens.models.grammar` (llguidance, the extra
``valuelens[grammar]``): in the own loop each constrained row has its own
matcher, and its logits are masked (disallowed tokens at -inf) before
temperature, top-k and top-p, so a row still depends only on itself and its
seed; a row whose reply is complete ends there. Paths through
``model.generate`` (beams) get :class:`~valuelens.models.grammar.BeamProcessor`.
Without the engine the backend does not honour formats (``honours`` is
False): the cached model then asks the plain prompt (prompt-and-parse) and
counts it in ``stats["unconstrained_replies"]``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valuelens.errors import ValueLensError
from valuelens.models import grammar, prompting
from valuelens.models.base import sample_seed
from valuelens.models.hf_alloc import tune_malloc
from valuelens.models.hf_prefix import (MIN_PREFIX, PrefixCache, PrefixStore, common_prefix, input_device,
                                         length_batches, plan_batches)
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult, cut_at_stop


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
    # transformers 5.2x warns on every forward pass that gets a prefix cache under its old keyword name;
    # the call is right for the pinned versions and the warning would bury the run's own messages.
    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
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
        self.prefix_store = PrefixStore()  # batch prefixes kept across option_distribution calls (hf_prefix)
        self._label_ids: dict[str, list[int]] = {}
        self.finetuned: Path | None = None  # the checkpoint, for a fine-tuned handle
        self._grammar_set: grammar.Grammars | None = None

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
                model = model.to(device)  # type: ignore[arg-type]  # transformers' stubs: to() takes a device
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

    def count_tokens(self, messages: Sequence[Any], prefill: str, text: str) -> tuple[int, int]:
        """Prompt tokens as scored (the rendered prompt) and the reply's tokens, by this model's tokenizer
        (for run.json's token counts; an option request's reply is empty: 0)."""
        return prompting.count_tokens(self.tok, self.chat, messages, prefill, text)

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
        return self._batch_prefix(None, seqs[0][:n])

    def _batch_prefix(self, base: PrefixCache | None, tokens: list[int]) -> PrefixCache | None:
        """The cache of a batch's own shared prefix: from the longest stored
        prefix it shares (cropped) or ``base``, extended by the tokens neither
        holds; a newly built one is stored for later calls."""
        if base is not None and len(tokens) == base.length:
            return base
        if len(tokens) == 0 or not self.prefix_cache:
            return None
        stored, n = self.prefix_store.match(tokens)
        start = stored.crop(n) if stored is not None and n > (base.length if base else 0) else base
        if start is not None and start.length == len(tokens):
            return start
        with self.torch.inference_mode():
            if start is None:
                prefix = PrefixCache.build(self.torch, self.model, tokens)
            else:
                prefix = start.extend(self.torch, self.model, tokens)
        if prefix is None:
            self.prefix_cache = False
            return base
        self.prefix_store.add(tokens, prefix)
        return prefix

    def _plan(self, seqs: list[list[int]], base: PrefixCache | None) -> list[tuple[list[int], int]]:
        if self.prefix_cache:
            avail = [min(self.prefix_store.match(s)[1], len(s) - 1) for s in seqs]  # tokens held by stored prefixes
            return plan_batches(seqs, self.batch_size, base.length if base else 0, self.device.type, avail)
        return length_batches(seqs, self.batch_size)

    def batch_order(self, requests: Sequence[OptionRequest]) -> list[int]:
        """The requests' indices in the order :meth:`option_distribution` would
        batch them (CachedModel sends long calls in chunks in this order, so a
        chunk keeps the prompts that share a prefix together)."""
        seqs = self.encode(requests)
        n = common_prefix(seqs) if self.prefix_cache else 0
        if not self.prefix_cache:
            return [i for idx, _ in length_batches(seqs, self.batch_size) for i in idx]
        return [i for idx, _ in plan_batches(seqs, self.batch_size, n if n >= MIN_PREFIX else 0, self.device.type)
                for i in idx]

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
                self.prefix_store.clear()
                logp = self.last_logprobs([seqs[i] for i in idx])
            for row, i in enumerate(idx):
                mass = [float(torch.exp(logp[row, self.label_ids(lab)]).sum()) for lab in requests[i].labels]
                results[i] = OptionResult.from_mass(mass)
        return results  # type: ignore[return-value]

    # generation -------------------------------------------------------------
    def honours(self, request: GenerateRequest) -> bool:
        """Every response format, when the grammar engine is installed and the tokenizer is a fast
        (Rust) one, which llguidance needs; otherwise the cached model asks the plain prompt."""
        return (request.response_format is not None and bool(getattr(self.tok, "is_fast", False))
                and grammar.available())

    def _grammars(self) -> grammar.Grammars:
        if self._grammar_set is None:
            plan = self._own_sampling()
            if plan is not None:
                eos = plan[1]
            else:
                gc = getattr(self.model, "generation_config", None)
                e = getattr(gc, "eos_token_id", None) if gc is not None else None
                e = self.tok.eos_token_id if e is None else e
                eos = frozenset([e] if isinstance(e, int) else (e or []))
            # End of sequence for a grammar: the EOS ids that are special tokens (a regular token listed as EOS
            # is text the grammar may need, e.g. a letter); a constrained row ends at one only when complete.
            special = set(self.tok.all_special_ids)
            eos = frozenset(e for e in eos if e in special) or frozenset([self.tok.eos_token_id])
            out = self.model.get_output_embeddings()
            width = int(out.weight.shape[0]) if out is not None else len(self.tok)
            self._grammar_set = grammar.Grammars(self.tok, max(width, len(self.tok)), eos)
        return self._grammar_set

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        """Single-sequence requests (``num_beams`` 1, greedy or sampled) go
        through our own batched decoding loop (:meth:`_decode`); each sampled
        row draws from its own generator, so its text does not depend on what
        it is batched with. Beam search runs batched through
        ``model.generate``; beam *sampling* one request at a time under its
        seed (:meth:`_sample_alone`), as before; so does everything when the
        model's generation config needs processors the loop lacks. Texts are
        cut before the first of ``settings.stop`` (stop strings) in every path."""
        if any(r.response_format is not None for r, _ in items):
            self._grammars()  # the engine, or a clear error naming the extra to install
        texts = [self.render(r.messages, r.prefill) for r, _ in items]
        seqs = self._encode(texts)
        out: list[str | None] = [None] * len(items)
        own = self._own_sampling() is not None
        loop = [i for i, (r, _) in enumerate(items) if own and r.settings.num_beams == 1]
        mine = set(loop)
        beams = [i for i, (r, _) in enumerate(items) if i not in mine and r.settings.temperature == 0]
        alone = [i for i, (r, _) in enumerate(items) if i not in mine and r.settings.temperature > 0]
        # Batches by prompt length (less padding); the order within and across batches does not matter.
        loop.sort(key=lambda i: len(seqs[i]))
        for s in range(0, len(loop), self.batch_size):
            self._decode(loop[s: s + self.batch_size], items, seqs, out)
        def group(i: int) -> tuple[int, int, bool]:  # constrained requests batch apart (their own EOS, see _gen_batch)
            r = items[i][0]
            return (r.settings.max_tokens, r.settings.num_beams, r.response_format is not None)

        beams.sort(key=lambda i: (*group(i), len(seqs[i])))
        s = 0
        while s < len(beams):
            st = items[beams[s]][0].settings
            idx = [i for i in beams[s: s + self.batch_size] if group(i) == group(beams[s])]
            self._gen_batch(idx, seqs, out, st, sample=False, formats=[items[i][0].response_format for i in idx])
            s += len(idx)
        for i in alone:
            self._sample_alone(i, items, seqs, out)
        return [cut_at_stop(t, items[i][0].settings.stop) for i, t in enumerate(out)]  # type: ignore[arg-type]

    def _sample_alone(self, i: int, items, seqs, out) -> None:
        """Request ``i`` alone through ``model.generate`` under ``torch.manual_seed``
        (beam sampling; and the reference the batched sampler reproduces)."""
        r, j = items[i]
        self.torch.manual_seed(sample_seed(r.settings.seed, j))
        self._gen_batch([i], seqs, out, r.settings, sample=True, formats=[r.response_format])

    def _gen_batch(self, idx, seqs, out, st, *, sample: bool, formats=None) -> None:
        torch = self.torch
        ids, mask, _ = self.pad([seqs[i] for i in idx])
        kw: dict[str, Any] = dict(max_new_tokens=st.max_tokens, num_beams=st.num_beams,
                                  pad_token_id=self.tok.pad_token_id, do_sample=sample)
        if sample:
            kw.update(temperature=st.temperature, top_p=st.top_p)
        if formats and any(f is not None for f in formats):
            from transformers import LogitsProcessorList

            gs = self._grammars()
            kw["logits_processor"] = LogitsProcessorList(
                [grammar.BeamProcessor(gs, list(formats), st.num_beams, ids.shape[1], torch)])
            kw["eos_token_id"] = sorted(gs.eos)  # the grammar's end of sequence (special tokens), as in _decode
        with torch.inference_mode():
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kw)
        for row, i in enumerate(idx):
            out[i] = self.tok.decode(gen[row, ids.shape[1]:], skip_special_tokens=True)

    def _own_sampling(self) -> tuple[int, frozenset[int]] | None:
        """(top_k, EOS ids) of ``model.generate``'s sampling for this model, or
        None when its generation config asks for a logits processor that
        :meth:`_decode` does not reproduce (then sampling runs one request at a
        time through ``model.generate``, as before)."""
        if not hasattr(self, "_sampling_plan"):
            gc = getattr(self.model, "generation_config", None)
            plan = None
            if gc is not None and all(getattr(gc, k, None) in ok for k, ok in _PLAIN_GENERATION.items()):
                eos = gc.eos_token_id if gc.eos_token_id is not None else self.tok.eos_token_id
                eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
                top_k = 50 if gc.top_k is None else int(gc.top_k)  # transformers' default when the model sets none
                plan = (top_k, eos_ids) if eos_ids else None
            self._sampling_plan = plan
        return self._sampling_plan

    def _decode(self, idx: list[int], items, seqs, out) -> None:
        """Prefill, then one token per step on the KV cache, for the rows ``idx``.

        Per row: greedy rows take the argmax; sampled rows apply, to their own
        logits alone, what ``model.generate(do_sample=True)`` applies
        (temperature, the model's top-k, top-p) and draw with
        ``torch.multinomial`` from their own ``torch.Generator`` seeded with
        ``sample_seed(seed, j)``, so a row consumes exactly the random numbers
        it would consume alone under ``torch.manual_seed`` (the old path).
        Left padding with explicit position ids: padding does not shift
        positions. A row stops at EOS, ``max_tokens`` or a stop string and
        leaves the batch (its cache rows dropped).
        """
        torch = self.torch
        from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                            TopPLogitsWarper)

        top_k, eos = self._own_sampling()  # type: ignore[misc]  # generate() checked it is not None
        dev = self.device
        sts = [items[i][0].settings for i in idx]
        gens: list[Any] = []
        warps: list[list[Any]] = []
        for i, st in zip(idx, sts):
            if st.temperature == 0:
                gens.append(None)
                warps.append([])
                continue
            gens.append(sample_seed(st.seed, items[i][1]))  # a generator on the logits' device at the first step
            w: list[Any] = [TemperatureLogitsWarper(st.temperature)] if st.temperature != 1.0 else []
            if top_k:
                w.append(TopKLogitsWarper(top_k=top_k))
            if st.top_p < 1.0:
                w.append(TopPLogitsWarper(top_p=st.top_p))
            warps.append(w)
        fmts = [items[i][0].response_format for i in idx]
        matchers = [None if f is None else self._grammars().matcher(f) for f in fmts]
        gm_eos = self._grammars().eos if any(m is not None for m in matchers) else frozenset()
        ids, mask, pos = (t.to(dev) for t in self.pad([seqs[i] for i in idx]))
        tokens: list[list[int]] = [[] for _ in idx]
        active = list(range(len(idx)))
        past, cur, first = None, ids, True
        params = self._forward_params()
        keep_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.2x: ``cache``
        stats = self.stats
        with torch.inference_mode():
            while active:
                res = self.model(input_ids=cur, attention_mask=mask, position_ids=pos, use_cache=True,
                                 **{cache_kw: past}, **keep_kw)
                past = getattr(res, cache_kw)
                logits = res.logits[:, -1].to(dtype=torch.float32)
                if first:  # (with device_map="auto" the logits may live on another GPU than the inputs)
                    gens = [g if g is None else torch.Generator(device=logits.device).manual_seed(g) for g in gens]
                    first = False
                keep, nxt = [], []
                for b, row in enumerate(active):
                    scores = logits[b: b + 1]
                    gm = matchers[row]
                    if gm is not None:  # the row's grammar, on its own logits, before the sampling warpers
                        scores = gm.mask(torch, scores)
                    if gens[row] is None:
                        tok = int(torch.argmax(scores, dim=-1))
                    else:
                        for warp in warps[row]:
                            scores = warp(None, scores)
                        probs = torch.softmax(scores, dim=-1)
                        tok = int(torch.multinomial(probs, num_samples=1, generator=gens[row]))
                    tokens[row].append(tok)
                    st = sts[row]
                    if gm is not None:  # the grammar says where the reply ends (the mask allows EOS only then)
                        if tok in gm_eos:
                            continue
                        gm.consume(tok)
                        if gm.done:  # the reply is complete: only end of sequence could follow
                            continue
                        if gm.error is not None or len(tokens[row]) >= st.max_tokens:
                            key = "grammar_errors" if gm.error is not None else "constrained_truncated"
                            stats[key] = stats.get(key, 0) + 1
                            continue
                    elif tok in eos or len(tokens[row]) >= st.max_tokens:
                        continue
                    if st.stop and _has_stop(self.tok.decode(tokens[row], skip_special_tokens=True), st.stop):
                        stats["stop_saved_tokens"] = stats.get("stop_saved_tokens", 0) + st.max_tokens - len(tokens[row])
                        stats["stopped_early"] = stats.get("stopped_early", 0) + 1
                        continue
                    keep.append(b)
                    nxt.append(tok)
                if len(keep) < len(active):
                    if not keep:
                        break
                    sel = torch.tensor(keep, dtype=torch.long, device=dev)
                    past.batch_select_indices(sel)
                    mask, pos = mask[sel], pos[sel]
                    active = [active[b] for b in keep]
                cur = torch.tensor(nxt, dtype=torch.long, device=dev)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                pos = pos[:, -1:] + 1
        stats["generated_tokens"] = stats.get("generated_tokens", 0) + sum(len(t) for t in tokens)
        for row, i in enumerate(idx):
            out[i] = self.tok.decode(tokens[row], skip_special_tokens=True)

    def _forward_params(self) -> frozenset[str]:
        if not hasattr(self, "_params"):
            import inspect

            self._params = frozenset(inspect.signature(self.model.forward).parameters)
        return self._params


# Generation-config fields, with the values under which ``model.generate``'s sampling adds no logits
# processor beyond temperature, top-k and top-p (what ``HFBackend._decode`` reproduces).
_PLAIN_GENERATION: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "min_length": (None, 0),
    "min_new_tokens": (None, 0), "sequence_bias": (None,), "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "exponential_decay_length_penalty": (None,), "min_p": (None,), "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "top_h": (None,), "renormalize_logits": (None, False),
    "remove_invalid_values": (None, False), "guidance_scale": (None, 1.0), "watermarking_config": (None,),
    "diversity_penalty": (None, 0.0),
}


def _has_stop(text: str, stop: Sequence[str]) -> bool:
    return any(s in text for s in stop)

