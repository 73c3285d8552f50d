"""Settings of the dilemma layer (``layers.dilemmas`` in the audit file).

Defined here, not in ``valuelens.config``, so that config can import them
without an import cycle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from valuelens.strict import Strict

Form = Literal["direct", "direct_reverse", "compare", "compare_reverse"]
FORMS: tuple[Form, ...] = ("direct", "direct_reverse", "compare", "compare_reverse")
Context = Literal["full", "none", "causal"]
CONTEXTS: tuple[Context, ...] = ("full", "none", "causal")




class MoralChoiceSettings(Strict):
    """MoralChoice (Scherrer et al. 2023) from its folder layout."""

    path: str = Field(min_length=1, description="folder with scenarios/, question_templates/, response_templates/")
    sample: int | None = Field(default=None, ge=1, description="seeded random sample of N scenarios (default: all)")
    ambiguity: Literal["low", "high", "both"] = "both"


class EscalationSettings(Strict):
    """Escalation chains (escalation_context.py): what a step's prompt shows of the earlier steps."""

    context: list[Context] = Field(
        default_factory=lambda: list(CONTEXTS[:2]), min_length=1,  # full, none
        description="full: the chain as a conversation with the model's own earlier answers; none: each step "
                    "alone; causal: a short summary of the earlier situations and the model's choices")

    limit: int | None = Field(default=None, ge=1, description="first N chains (default: the layer's limit)")

    @field_validator("context")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a context is listed twice")
        return [c for c in CONTEXTS if c in v]  # canonical order


class DilemmaSettings(Strict):
    """Layer 1: right-vs-right dilemmas, escalation chains, MoralChoice."""

    corpus: str | None = Field(default="builtin", description="builtin | path to our dilemma JSONL | none")
    forms: list[Form] = Field(default_factory=lambda: list(FORMS), min_length=1)
    consequences: bool = Field(default=True, description="re-ask with consequences against the Direct choice")
    steering: bool = Field(default=True, description="explicit guideline vs in-context examples, both directions")
    steering_examples: int = Field(default=2, ge=1, le=6, description="in-context examples per steered prompt")
    chains: str | None = Field(default="builtin", description="builtin | path to our chain JSON(L) | none")
    mmd: str | None = Field(default=None, description="MMD JSON file of escalation chains (asked in English)")
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    moralchoice: MoralChoiceSettings | None = None
    mode: Literal["probs", "generate"] = "probs"
    max_tokens: int = Field(default=32, ge=1, le=1024, description="generate mode, and MoralChoice repeat forms")
    samples: int = Field(default=1, ge=1, le=100, description="generate mode: samples per prompt")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="generate mode; > 0 when samples > 1")
    limit: int | None = Field(default=None, ge=1, description="first N dilemmas of each pair and first N chains")
    n_resamples: int = Field(default=1000, ge=100, le=100_000, description="bootstrap resamples per interval")

    @field_validator("corpus", "chains", "mmd")
    @classmethod
    def _none(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in {"", "none"} else v

    @field_validator("forms")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("forms are listed twice")
        return [f for f in FORMS if f in v]  # canonical order

    @model_validator(mode="after")
    def _consistent(self) -> DilemmaSettings:
        if self.consequences and "direct" not in self.forms and self.corpus is not None:
            raise ValueError("consequences re-ask against the Direct choice: add 'direct' to forms or set consequences: false")
        if self.mode == "generate" and self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy samples are identical)")
        if self.corpus is None and self.chains is None and self.mmd is None and self.moralchoice is None:
            raise ValueError("nothing to ask: set corpus, chains, mmd or moralchoice")
        return self
