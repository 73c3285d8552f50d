"""Sending A/B prompts to a model in either mode, through the cache.

``probs``: one ``option_distribution`` call over the labels A/B after the
prefill; p_A, p_B are renormalised over the two letters (``covered_mass`` =
their mass before); no label observed → invalid. ``generate``: ``samples``
answers per prompt, each parsed to A, B or invalid; p_A, p_B and p_invalid
are the shares of the samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from valuelens.layers import LayerContext
from valuelens.layers.dilemmas.measures import choose
from valuelens.layers.dilemmas.prompts import LABELS, Prompt, parse_choice
from valuelens.layers.dilemmas.settings import DilemmaSettings
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message, OptionRequest, OptionResult
from valuelens.models.cached import Tag


@dataclass(frozen=True)
class Outcome:
    p_a: float
    p_b: float
    p_invalid: float
    covered_mass: float  # probs mode; NaN in generate mode
    reply: str | None  # generate mode: the first sample
    failure: str = ""  # why the backend could not answer (a failed request counts as invalid); "" = answered

    @property
    def label(self) -> str:
        return choose(self.p_a, self.p_b, self.p_invalid)


class Asker:
    def __init__(self, model: CachedModel, settings: DilemmaSettings, ctx: LayerContext):
        self.model, self.s, self.ctx = model, settings, ctx
        self.seed = ctx.seed

    def _progress(self, desc: str, total: int):
        return self.ctx.tracker.track(f"{self.model.name}: dilemmas · {desc}", total)

    def gen_settings(self, greedy: bool = False) -> GenerateSettings:
        temp = 0.0 if greedy else self.s.temperature
        return GenerateSettings(temperature=temp, max_tokens=self.s.max_tokens, seed=self.seed)

    def probs(self, requests: Sequence[OptionRequest], desc: str, tags: Sequence[Tag] | None = None) -> list[OptionResult]:
        return self.model.option_distribution(list(requests), self._progress(desc, len(requests)), tags=tags)

    def texts(self, messages: Sequence[tuple[Message, ...]], desc: str, greedy: bool = False,
              tags: Sequence[Tag] | None = None) -> list[tuple[str, ...]]:
        n = 1 if greedy else self.s.samples
        reqs = [GenerateRequest(m, self.gen_settings(greedy), n=n) for m in messages]
        return [r.texts for r in self.model.generate(reqs, self._progress(desc, len(reqs) * n), tags=tags)]

    def ab(self, prompts: Sequence[Prompt], desc: str, tags: Sequence[Tag] | None = None) -> list[Outcome]:
        """``tags``: the samples log's (table, row_id, part) per prompt."""
        if self.s.mode == "probs":
            res = self.probs([OptionRequest(p.messages, LABELS, p.prefill) for p in prompts], desc, tags)
            return [Outcome(r.probs[0], r.probs[1], 0.0, r.covered_mass, None) if r.probs is not None
                    else Outcome(math.nan, math.nan, 1.0, math.nan if r.failure else r.covered_mass, None,
                                 r.failure or "") for r in res]
        out = []
        for p, texts in zip(prompts, self.texts([p.messages for p in prompts], desc, tags=tags)):
            labels = [parse_choice(t, p.yes_no) for t in texts]
            n = len(labels)
            failure = next((f for t in texts if (f := getattr(t, "failure", None))), "")  # a FailedText's reason
            out.append(Outcome(labels.count("A") / n, labels.count("B") / n, labels.count(None) / n,
                               math.nan, texts[0], failure))
        return out
