"""Constrained decoding for the ``hf`` backend: a token mask per step from llguidance.

Engine: `llguidance <https://github.com/guidance-ai/llguidance>`_ (the Rust
engine behind guidance, also used by vLLM and llama.cpp), the optional extra
``valuelens[grammar]``. Chosen over xgrammar, outlines-core and
lm-format-enforcer by a measurement on SmolLM2-135M's tokenizer and MARK's
stress schema (``bench/constrained.py --engines``; numbers in the README and
bench/README): llguidance compiles a schema in 3-12 ms and masks a token in
0.12-0.18 ms with no further dependency; xgrammar masks about as fast
(0.05-0.25 ms) but compiles the same schema in 4-6 s (MARK builds a schema
per persona / stack / option count) and pulls triton and tvm-ffi into a CPU
install; outlines-core compiles in 5-11 s and masks in 2-3.4 ms;
lm-format-enforcer 0.11.3 does not import with transformers 5.

Semantics (what the cache key's ``response_format`` stands for): JSON is
written compactly (no whitespace between tokens: ``whitespace_flexible``
off, separators ``,`` and ``:``), properties in the schema's order; a regex
must match the whole reply. End of sequence is allowed only once the reply is
complete, and a complete reply ends the row. A reply cut by ``max_tokens``
before it is complete is returned as it is (``stats["constrained_truncated"]``):
the layers' parsers judge every reply.

Two ways in: :class:`Matcher` (one per row) in the backend's own decoding
loop, where the mask is applied to the row's own logits before temperature,
top-k and top-p, so rows stay independent of their batch; and
:class:`BeamProcessor`, a transformers logits processor for the paths that go
through ``model.generate`` (beam search, beam sampling), which finds each
beam's matcher by its generated tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from valuelens.errors import MissingDependency, ValueLensError
from valuelens.models.requests import ResponseFormat

ENGINE = "llguidance"
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
INSTALL = "pip install 'valuelens[grammar]' (llguidance)"


def available() -> bool:
    """Whether the grammar engine can be imported."""
    try:
        import llguidance  # noqa: F401
        import llguidance.hf  # noqa: F401
    except ImportError:
        return False
    return True


def _llg():
    try:
        import llguidance
        import llguidance.hf
    except ImportError:
        raise MissingDependency(f"constrained generation (response_format) on the hf backend needs {INSTALL}") from None
    return llguidance


class Grammars:
    """Compiled response formats for one tokenizer (the tokenizer wrap takes ~1 s: one per backend)."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: Iterable[int]):
        llg = _llg()
        self.llg = llg
        self.vocab_size = int(vocab_size)
        eos = sorted(set(int(i) for i in eos_ids)) or [tokenizer.eos_token_id]
        self.eos = frozenset(eos)
        try:
            self.tok = llg.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size, eos_token=eos)
        except ValueError as e:  # slow (non-Rust) tokenizers
            raise ValueLensError(f"constrained generation: the model's tokenizer cannot be used by {ENGINE} ({e})") from None
        self._compiled: dict[ResponseFormat, str] = {}

    def grammar(self, fmt: ResponseFormat) -> str:
        """The engine's grammar for ``fmt`` (checked once; an invalid one is an error naming it)."""
        g = self._compiled.get(fmt)
        if g is None:
            M = self.llg.LLMatcher
            try:
                g = (M.grammar_from_json_schema(fmt.spec, defaults=JSON_OPTIONS) if fmt.kind == "json_schema"
                     else M.grammar_from_regex(fmt.spec))
            except ValueError as e:
                raise ValueLensError(f"response format {fmt.name!r}: {e}") from None
            problem = M.validate_grammar(g, self.tok)
            if problem and not problem.startswith("WARNING"):
                raise ValueLensError(f"response format {fmt.name!r} ({fmt.kind}): {problem.splitlines()[0]}")
            self._compiled[fmt] = g
        return g

    def matcher(self, fmt: ResponseFormat) -> Matcher:
        return Matcher(self.llg.LLMatcher(self.tok, self.grammar(fmt), log_level=0), self.vocab_size)


class Matcher:
    """The state of one reply under its grammar."""

    def __init__(self, m: Any, vocab_size: int):
        self.m = m
        self.vocab_size = vocab_size
        self.tokens = 0

    def allowed(self, torch: Any, device: Any = None) -> Any:
        """Boolean mask (vocab,) of the tokens that may come next."""
        import numpy as np

        bits = np.frombuffer(self.m.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[: self.vocab_size].astype(bool)
        t = torch.from_numpy(mask)
        return t if device is None else t.to(device)

    def mask(self, torch: Any, scores: Any) -> Any:
        """``scores`` (1, V) or (V,) with the disallowed tokens at -inf (a new tensor)."""
        allowed = self.allowed(torch, scores.device)
        if scores.shape[-1] > allowed.shape[0]:  # logits wider than the tokenizer's vocabulary
            allowed = torch.cat([allowed, allowed.new_zeros(scores.shape[-1] - allowed.shape[0])])
        return scores.masked_fill(~allowed[: scores.shape[-1]], float("-inf"))

    def consume(self, token: int) -> bool:
        self.tokens += 1
        return bool(self.m.consume_token(int(token)))

    @property
    def done(self) -> bool:
        """The reply is complete (nothing but end of sequence may follow)."""
        return bool(self.m.is_stopped())

    @property
    def accepting(self) -> bool:
        return bool(self.m.is_accepting())

    @property
    def error(self) -> str | None:
        return self.m.get_error() if self.m.is_error() else None

    def copy(self) -> Matcher:
        c = Matcher(self.m.deep_copy(), self.vocab_size)
        c.tokens = self.tokens
        return c


class BeamProcessor:
    """A transformers ``LogitsProcessor`` constraining some rows of a ``model.generate``
    batch: ``formats[b]`` is the format of batch row ``b`` (None: free), each of its
    ``num_beams`` beams masked by the matcher of the tokens it has generated after
    ``prompt_width``. Matchers are kept by generated-token prefix, so beams that are
    reordered, forked or dropped each find their own state."""

    def __init__(self, grammars: Grammars, formats: list[ResponseFormat | None], num_beams: int, prompt_width: int,
                 torch: Any):
        self.grammars = grammars
        self.formats = formats
        self.num_beams = num_beams
        self.width = prompt_width
        self.torch = torch
        self.states: list[dict[tuple[int, ...], Matcher]] = [{} for _ in formats]

    def _state(self, b: int, generated: tuple[int, ...]) -> Matcher:
        states = self.states[b]
        m = states.get(generated)
        if m is None:
            parent = states.get(generated[:-1]) if generated else None
            if parent is not None:
                m = parent.copy()
                m.consume(generated[-1])
            else:
                m = self.grammars.matcher(self.formats[b])  # type: ignore[arg-type]
                for t in generated:
                    m.consume(t)
            states[generated] = m
        return m

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for row in range(scores.shape[0]):
            b = row // self.num_beams
            if self.formats[b] is None:
                continue
            generated = tuple(int(t) for t in input_ids[row, self.width:])
            scores[row] = self._state(b, generated).mask(self.torch, scores[row])
        return scores
