"""Settings of the first-token layer (Cao et al. 2025 probe, [ctrl], KL
fine-tuning, option orders, calibration, prompt wordings).

Here, below :mod:`valuelens.config`, so the layer imports nothing above it;
the config composes these settings with the other layers'.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from valuelens.models.hf_training import TrainSettings
from valuelens.data.sources import path_problem
from valuelens.strict import Strict


class DataSource(Strict):
    """Where survey questions and human distributions come from."""

    kind: Literal["builtin", "cao2025", "global_opinions", "synthetic", "wvs7"] = "builtin"
    path: str | None = None
    path_zh: str | None = Field(default=None, description="cao2025: the Chinese twin file")
    codebook: str | None = Field(default=None, description="wvs7: codebook.json")
    metadata: str | None = Field(default=None, description="wvs7: question_metadata.json")
    strict: bool = Field(default=False, description="cao2025: a degenerate item (all shares 0, or a sum more than "
                                                    "2% off the file's scale) is an error instead of skipped")

    @model_validator(mode="after")
    def _paths(self) -> DataSource:
        if self.strict and self.kind != "cao2025":
            raise ValueError("strict applies only to data kind 'cao2025'")
        problem = path_problem(self.kind, self.path, self.codebook)
        if problem:
            raise ValueError(problem)
        return self


class Split(Strict):
    """A cell of items: countries × questions (None = all of them)."""

    countries: list[str] | None = None
    questions: list[str] | None = None


class TrainSpec(Strict):
    """KL fine-tuning: the train and validation cells, and the settings."""

    train: Split
    val: Split
    settings: TrainSettings = Field(default_factory=TrainSettings)


PROMPT_FIELDS = ("country", "question", "options")


def _fields(text: str) -> set[str]:
    import string

    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:  # a single { or }
        raise ValueError(f"{e}; write a literal brace as {{{{ or }}}}") from None


class Wording(Strict):
    """One first-token prompt wording: the user turn and the assistant prefill."""

    user: str = Field(min_length=1, description="must contain {country}, {question} and {options}")
    prefill: str = Field(default="", description="start of the answer; the option letter is scored right after it")

    @field_validator("user")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        got = _fields(v)
        if got - set(PROMPT_FIELDS) or set(PROMPT_FIELDS) - got:
            raise ValueError(f"placeholders {sorted(got)}; expected exactly {{country}}, {{question}} and {{options}}")
        return v

    @field_validator("prefill")
    @classmethod
    def _no_placeholders(cls, v: str) -> str:
        if _fields(v):
            raise ValueError("the prefill takes no placeholders")
        return v


class PromptTemplate(Strict):
    """A user wording of the first-token probe, per language (at least one)."""

    en: Wording | None = None
    zh: Wording | None = None

    @model_validator(mode="after")
    def _some(self) -> PromptTemplate:
        if self.en is None and self.zh is None:
            raise ValueError("give the wording for en and/or zh")
        return self


class FirstTokenSettings(Strict):
    """Layer 3a: zero-shot probe, [ctrl], optional KL fine-tuning."""

    permutations: Literal["none", "reverse", "cyclic"] | int = Field(
        default="none", description="option orders per item: none | reverse | cyclic | k (k seeded random orders); "
                                    "the original order is always asked too")
    calibrate: bool = Field(default=False, description="label-prior calibration from content-free prompts "
                                                       "(Zhao et al. 2021), reported beside the raw distribution")
    prompt_variants: bool = Field(default=False, description="also ask ZS with our three other wordings per language")
    templates: dict[str, PromptTemplate] = Field(default_factory=dict,
                                                 description="user wordings for prompt sensitivity, by name")

    @field_validator("permutations", mode="before")
    @classmethod
    def _orders(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, bool) or (isinstance(v, int) and not 1 <= v <= 100):
            raise ValueError("expected none, reverse, cyclic or a number of random orders from 1 to 100")
        return v

    @field_validator("templates")
    @classmethod
    def _names(cls, v: dict[str, PromptTemplate]) -> dict[str, PromptTemplate]:
        import re

        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9._\-]+", name) or name in ("paper", "plain", "survey", "report"):
                raise ValueError(f"template name {name!r}: use letters, digits, '.', '_' or '-', "
                                 "and not a built-in name (paper, plain, survey, report)")
        return v

    data: DataSource = Field(default_factory=DataSource)
    control: bool = Field(default=True, description="also ask with the country replaced by a random other one")
    test_splits: dict[str, Split] = Field(default_factory=dict,
                                          description="Table-2 columns; default: one cell 'all' = the audit's countries")
    train: TrainSpec | None = None
    generate_check: bool = Field(default=False, description="also generate a free answer and compare its letter")
    max_tokens: int = Field(default=24, ge=1, le=512)
    limit: int | None = Field(default=None, ge=1, description="use only the first N questions")
