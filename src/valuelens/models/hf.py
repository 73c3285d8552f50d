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
a token sits within Δ of the top-k/top-p cut): about 2·Δ/T per token.

Shared prefixes in generation: the loop's batches are planned like option
batches (``plan_batches``, a batch costing its decoding steps too), the
prefix all rows of a call share is run once and extended per batch, and each
row runs only the rest of its prompt on a copy of that cache. Same texts as
without reuse up to fp32 rounding (max |Δlogit| 6e-8 at every step on the
tiny test model, ``tests/test_hf_generation.py``); prefixes are not kept
across generate calls, so a row's computation depends only on its call.

Stop rules (``GenerateSettings.stop_at``, :mod:`valuelens.models.stopping`):
a row ends at its first complete answer (DEF's "Answer: … Explanation: <one
sentence>", a closed JSON object); its text is the text it writes without the
rule, cut there (the draws before the stop point are the same).

Beam sampling (num_beams > 1, temperature > 0): ``model.generate`` on
batches of requests with equal settings (beams, temperature, top-p,
max_tokens, constrained or not: ``generate`` takes one of each per call),
each row's candidates drawn from its own generator (:func:`_row_seeded_top_k`
replaces transformers' ``_get_top_k_continuations`` for the call), so a row
gets the text it got alone under ``torch.manual_seed``. Models whose
generation config adds other processors (repetition penalty, min-p, …), and
a transformers without that hook, keep the old path: one request at a time
through ``model.generate`` under ``torch.manual_seed``. The cache identity is
unchanged: stored samples are the texts these samplers make (the same
processors and random streams).

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
from valuelens.models.hf_prefix import (BATCH_COST, MIN_PREFIX, PrefixCache, PrefixStore, common_prefix,
                                         input_device, length_batches, plan_batches)
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult, cut_at_stop, stop_index


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
        through our own batched decoding loop (:meth:`_decode`, shared
        prefixes run once per batch); each sampled row draws from its own
        generator, so its text does not depend on what it is batched with.
        Beam search runs batched through ``model.generate``; beam *sampling*
        too, batched within groups of equal settings with a generator per row
        (:meth:`_beam_sample`); everything else one request at a time under
        its seed (:meth:`_sample_alone`), as when the model's generation
        config needs processors the loop lacks. Texts are cut before the
        first of ``settings.stop`` (stop strings) and after the first
        complete answer under ``settings.stop_at`` in every path."""
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
        for idx, prefix in self._gen_batches(loop, items, seqs):
            self._decode(idx, items, seqs, out, prefix)
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
        # Beam sampling: batched within groups of equal settings (``model.generate`` has one temperature, top-p,
        # beam count and length per call), each row drawing from its own generator (:meth:`_beam_sample`).
        beam_sampled = [i for i in alone if items[i][0].settings.num_beams > 1 and self._row_seeded_beams()]
        def sgroup(i: int) -> tuple[Any, ...]:
            st = items[i][0].settings
            return (st.num_beams, st.temperature, st.top_p, st.max_tokens, items[i][0].response_format is not None)

        beam_sampled.sort(key=lambda i: (sgroup(i), len(seqs[i])))
        s = 0
        while s < len(beam_sampled):
            idx = [i for i in beam_sampled[s: s + self.batch_size] if sgroup(i) == sgroup(beam_sampled[s])]
            self._beam_sample(idx, items, seqs, out)
            s += len(idx)
        batched = set(beam_sampled)
        for i in alone:
            if i not in batched:
                self._sample_alone(i, items, seqs, out)
        return [cut_at_stop(t, items[i][0].settings.stop, items[i][0].settings.stop_at)  # type: ignore[arg-type]
                for i, t in enumerate(out)]

    def _gen_batches(self, loop: list[int], items, seqs) -> list[tuple[list[int], PrefixCache | None]]:
        """Batches of the own loop's rows, each with the prefix cache its prompts share (or None).

        Without prefix reuse: consecutive runs of the length-sorted prompts. With it: ``plan_batches``
        (as for option distributions) with a batch cost that counts the decoding steps a batch adds
        (``GEN_STEP_COST`` per step up to the rows' largest ``max_tokens``), so it splits a batch only
        where the prefix it saves outweighs them. The prefix all rows share is run once per call
        and extended per batch; generation keeps no prefixes across calls, so a row's texts depend
        only on the call's own rows (a resumed chunk recomputes exactly what it computed before)."""
        if not loop:
            return []
        sub = [seqs[i] for i in loop]
        if not self.prefix_cache:
            return [([loop[k] for k in idx], None) for idx, _ in length_batches(sub, self.batch_size)]
        n = common_prefix(sub)
        kind = "cpu" if self.device.type == "cpu" else "other"
        steps = max(items[i][0].settings.max_tokens for i in loop)
        plan = plan_batches(sub, self.batch_size, n if n >= MIN_PREFIX else 0, self.device.type,
                            batch_cost=BATCH_COST[kind] + GEN_STEP_COST[kind] * steps)
        base: PrefixCache | None = None
        out: list[tuple[list[int], PrefixCache | None]] = []
        run = saved = 0  # prefix tokens run, and prompt tokens the rows did not run
        with self.torch.inference_mode():
            for idx, length in plan:
                prefix = None
                if length >= MIN_PREFIX and self.prefix_cache:
                    if n >= MIN_PREFIX and base is None:
                        base = PrefixCache.build(self.torch, self.model, sub[0][:n])
                        if base is None:
                            self.prefix_cache = False  # the model gives no reusable cache
                        run += n
                    if self.prefix_cache:
                        tokens = sub[idx[0]][:length]
                        on_base = base is not None and length >= n
                        prefix = (base.extend(self.torch, self.model, tokens) if on_base  # type: ignore[union-attr]
                                  else PrefixCache.build(self.torch, self.model, tokens))
                        if prefix is None:
                            self.prefix_cache = False
                        else:
                            run += length - n if on_base else length
                            saved += len(idx) * length
                out.append(([loop[k] for k in idx], prefix))
        if saved:
            self.stats["gen_prefix_saved_tokens"] = self.stats.get("gen_prefix_saved_tokens", 0) + saved - run
        return out

    def _row_seeded_beams(self) -> bool:
        """Whether this transformers' beam search draws through ``_get_top_k_continuations`` with the
        arguments :func:`_row_seeded_top_k` expects (else beam sampling stays one request at a time)."""
        if not hasattr(self, "_beam_hook"):
            import inspect

            f = getattr(type(self.model), "_get_top_k_continuations", None)
            want = {"accumulated_log_probs", "running_sequences", "running_beam_indices", "cur_len",
                    "decoder_prompt_len", "do_sample", "beams_to_keep", "num_beams", "batch_size"}
            self._beam_hook = (f is not None and hasattr(self.model, "_gather_beams")
                               and want <= set(inspect.signature(f).parameters))
        return self._beam_hook

    def _beam_sample(self, idx: list[int], items, seqs, out) -> None:
        """Beam sampling of the rows ``idx`` (equal settings) in one ``model.generate`` call, each row's
        candidates drawn with its own ``torch.Generator`` seeded with ``sample_seed(seed, j)``: the random
        numbers it would consume alone under ``torch.manual_seed`` (:meth:`_sample_alone`), so its text does not
        depend on its batch (up to the fp32 rounding of padding, as for the own loop)."""
        import functools

        r0 = items[idx[0]][0]
        seeds = [sample_seed(items[i][0].settings.seed, items[i][1]) for i in idx]
        self.model._get_top_k_continuations = functools.partial(_row_seeded_top_k, self.model, seeds, {})
        try:
            self._gen_batch(idx, seqs, out, r0.settings, sample=True, formats=[items[i][0].response_format for i in idx])
        finally:
            del self.model._get_top_k_continuations

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

    def _decode(self, idx: list[int], items, seqs, out, prefix: PrefixCache | None = None) -> None:
        """Prefill, then one token per step on the KV cache, for the rows ``idx``.

        Per row: greedy rows take the argmax; sampled rows apply, to their own
        logits alone, what ``model.generate(do_sample=True)`` applies
        (temperature, the model's top-k, top-p) and draw with
        ``torch.multinomial`` from their own ``torch.Generator`` seeded with
        ``sample_seed(seed, j)``, so a row consumes exactly the random numbers
        it would consume alone under ``torch.manual_seed`` (the old path).
        Left padding with explicit position ids: padding does not shift
        positions. With ``prefix`` (the rows' prompts all start with its
        tokens), only the rest of each prompt is run, on a copy of its cache
        per row (padding then sits between prefix and suffix, masked, as in
        ``hf_prefix``). A row stops at EOS, ``max_tokens``, a stop string or
        its stop rule's first complete answer and leaves the batch (its cache
        rows dropped).
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
        past = None
        if prefix is None:
            ids, mask, pos = (t.to(dev) for t in self.pad([seqs[i] for i in idx]))
        else:
            batch = prefix.batch(torch, [seqs[i][prefix.length:] for i in idx], self.tok.pad_token_id)
            ids, mask, pos = (t.to(dev) for t in batch)
            past = prefix.expanded(len(idx))
        tokens: list[list[int]] = [[] for _ in idx]
        active = list(range(len(idx)))
        cur, first = ids, True
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
                    if (st.stop or st.stop_at) and stop_index(self.tok.decode(tokens[row], skip_special_tokens=True),
                                                              st.stop, st.stop_at) is not None:
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


def _row_seeded_top_k(model, seeds: list[int], gens: dict, accumulated_log_probs, running_sequences,
                      running_beam_indices, cur_len, decoder_prompt_len, do_sample, beams_to_keep, num_beams,
                      batch_size, **kwargs):
    """transformers' ``GenerationMixin._get_top_k_continuations`` (5.x), with the sampled candidates of batch
    row ``b`` drawn by ``torch.multinomial`` from its own generator seeded ``seeds[b]`` (made on the scores'
    device at the first step, kept in ``gens``) instead of the global one; the rest as in transformers."""
    import torch

    if do_sample:
        if not gens:
            gens.update({b: torch.Generator(device=accumulated_log_probs.device).manual_seed(s)
                         for b, s in enumerate(seeds)})
        probs = torch.nn.functional.softmax(accumulated_log_probs, dim=-1)
        topk_indices = torch.cat([torch.multinomial(probs[b: b + 1], num_samples=beams_to_keep, generator=gens[b])
                                  for b in range(batch_size)])
        topk_log_probs = torch.gather(input=accumulated_log_probs, dim=1, index=topk_indices)
        topk_log_probs, order = topk_log_probs.sort(dim=-1, descending=True)
        topk_indices = topk_indices.gather(dim=-1, index=order)
    else:
        topk_log_probs, topk_indices = torch.topk(accumulated_log_probs, k=beams_to_keep)
    vocab_size = accumulated_log_probs.shape[-1] // num_beams
    topk_current_beam_indices = topk_indices // vocab_size
    topk_running_beam_indices = model._gather_beams(running_beam_indices, topk_current_beam_indices)
    topk_running_sequences = model._gather_beams(running_sequences, topk_current_beam_indices)
    topk_ids = topk_indices % vocab_size
    topk_running_sequences[:, :, cur_len] = topk_ids
    batch_offset = torch.arange(batch_size, device=topk_ids.device).view(-1, 1) * num_beams
    topk_running_beam_indices[:, :, cur_len - decoder_prompt_len] = topk_current_beam_indices + batch_offset
    return topk_log_probs, topk_running_sequences, topk_running_beam_indices


# Decoding steps in units of one prompt token's compute (``hf_prefix`` units): a step is a forward pass whose
# fixed cost on a CPU is ~15-20 ms against ~0.8 ms per token (SmolLM2-135M); on a GPU batches are what count.
GEN_STEP_COST = {"cpu": 20, "other": 4096}

