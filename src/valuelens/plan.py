"""``valuelens plan``: the calls and tokens an audit will make, per model × layer, before any call.

The plan runs every layer on a stand-in for each model, through the same
:class:`~valuelens.models.cached.CachedModel` and a throw-away store (so a call
repeated across layers is counted once, as in a run), and counts what it asks:

* a ``scripted:`` model is its own stand-in (it answers without a model), so
  its counts are exactly the calls a run on a fresh output directory makes;
* any other model gets scripted answers (option probabilities from a hash of
  the prompt, the text ``Answer: 1``) with the real backend's capabilities
  (beam search: not on ``openai``; fine-tuning: ``hf``/``embedded``). Layers
  whose number of calls depends on the answers (DEF and MARK retries after an
  invalid reply, escalation chains that stop) can then make a different
  number; ``exact`` says which counts are certain.

Tokens: prompt tokens by the model's own tokenizer where it can be loaded
without the weights (``hf:``/``vllm:`` paths, the embedded model once its
copy is cached), else :func:`~valuelens.models.usage.estimate_tokens`
(``openai:``: the server's tokenizer is not known here). Completion tokens are
an upper bound for generation (each sample's ``max_tokens``); option requests
take 1 token on a server (0 locally), or ``samples × sample_tokens`` with
``option_mode: sample``. Cost = prompt × input price + completion × output
price (per 1M tokens), so also an upper bound. Counts are for a fresh output
directory: a rerun serves what is cached without calls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valuelens.audit import layers_of
from valuelens.config import AuditConfig, ModelEntry
from valuelens.models import CachedModel, load_backend
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult
from valuelens.models.scripted import ScriptedBackend
from valuelens.models.usage import Meter, Usage, cost, estimate_tokens, prompt_text
from valuelens.progress import NullTracker
from valuelens.store import Store


@dataclass
class PlanRow:
    model: str
    layer: str
    calls: int
    repeats: int  # requests asked again within the run (served from the cache: no call)
    prompt_tokens: int
    completion_tokens: int  # at most this many (generation: max_tokens per sample)
    token_source: str  # tokenizer | estimate
    exact: bool  # calls certain (a scripted model); else under stand-in answers
    cost: float | None  # with the model's price; an upper bound (completion tokens are)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _StandIn(ScriptedBackend):
    """Scripted answers with the real backend's capabilities and token counts (see the module docstring)."""

    def __init__(self, entry: ModelEntry, tokenizer: Any = None, chat: bool = False, suffix: str = ""):
        super().__init__(name=f"plan:{entry.name}{suffix}")
        self.entry, self.tok, self.chat, self.suffix = entry, tokenizer, chat, suffix
        kind = entry.spec.kind
        self.supports_beams = kind != "openai"
        opts = entry.options
        self.server = kind == "openai"
        sample = self.server and opts.get("option_mode") == "sample"
        self.option_completion = (int(opts.get("samples", 50)) * int(opts.get("sample_tokens", 8)) if sample
                                  else 1 if self.server else 0)
        self.option_prompts = int(opts.get("samples", 50)) if sample else 1
        self.last_usage: list[Usage | None] | None = None

    def identity(self) -> dict[str, Any]:
        return {"backend": "plan", "model": self.entry.name, "tuned": self.suffix}

    def _prompt_tokens(self, messages: Any, prefill: str) -> tuple[int, str]:
        if self.tok is not None:
            from valuelens.models import prompting

            return prompting.count_tokens(self.tok, self.chat, messages, prefill, "")[0], "tokenizer"
        return estimate_tokens(prompt_text(messages, prefill)), "estimate"

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        out = super().option_distribution(requests)
        usage: list[Usage | None] = []
        for r in requests:
            p, src = self._prompt_tokens(r.messages, r.prefill)
            usage.append(Usage(p * self.option_prompts, self.option_completion, src))
        self.last_usage = usage
        return out

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        out = super().generate(items)
        usage: list[Usage | None] = []
        for r, _ in items:
            p, src = self._prompt_tokens(r.messages, r.prefill)
            usage.append(Usage(p, r.settings.max_tokens, src))
        self.last_usage = usage
        return out


class _TrainableStandIn(_StandIn):
    def finetune(self, train: list[Any], val: list[Any], settings: Any, out_dir: Any,
                 tracker: Any = None) -> tuple[_StandIn, list[dict[str, Any]]]:
        return _StandIn(self.entry, self.tok, self.chat, "+ft"), []


def _tokenizer(entry: ModelEntry) -> tuple[Any, bool]:
    """The model's tokenizer without its weights, where that is cheap (else None: estimates)."""
    spec = entry.spec
    path: str | Path | None = None
    if spec.kind in ("hf", "vllm"):
        path = spec.path
    elif spec.kind == "embedded":
        from valuelens.models.embedded import CACHE_NAME, cache_root

        cached = cache_root() / CACHE_NAME
        path = cached if (cached / "tokenizer_config.json").is_file() else None
    if not path or not Path(path).is_dir():
        return None, False
    try:
        from transformers import AutoTokenizer

        from valuelens.models import prompting

        tok = AutoTokenizer.from_pretrained(str(path))
        use = entry.options.get("use_chat_template")
        return tok, prompting.has_chat_template(tok, use)
    except Exception:  # noqa: BLE001 - no tokenizer: the plan estimates (and says so: token_source)
        return None, False


def stand_in(entry: ModelEntry) -> tuple[Any, bool]:
    """(the backend the plan asks for this model, whether its counts are exact)."""
    if entry.spec.kind == "scripted":
        backend = load_backend(entry.backend, batch_size=entry.batch_size)
        if isinstance(backend, ScriptedBackend):
            backend.delay = 0.0  # a scripted latency changes no answer
        return backend, True
    tok, chat = _tokenizer(entry)
    cls = _TrainableStandIn if entry.spec.kind in ("hf", "embedded") else _StandIn
    return cls(entry, tok, chat), False


def plan_audit(audit: AuditConfig) -> list[PlanRow]:
    """One row per model × layer, in the audit's order (see the module docstring)."""
    rows: list[PlanRow] = []
    with tempfile.TemporaryDirectory(prefix="valuelens-plan-") as tmp:
        ctx = audit.layer_context(Path(tmp), NullTracker())
        store = Store(Path(tmp) / "store.sqlite")
        try:
            for index, entry in enumerate(audit.models):
                backend, exact = stand_in(entry)
                meter = Meter()
                model = CachedModel(backend, store, entry.name, chunk_size=audit.chunk_size, meter=meter)
                for spec, settings in layers_of(audit, index):
                    before = meter.snapshot()
                    spec.run(model, settings, ctx)
                    d = Meter.difference(meter.snapshot(), before)
                    rows.append(PlanRow(entry.name, spec.key, d["calls_made"], d["calls_cached"], d["prompt_tokens"],
                                        d["completion_tokens"], d["token_source"] or "-", exact,
                                        cost(d["prompt_tokens"], d["completion_tokens"], entry.price)))
        finally:
            store.close()
    return rows
