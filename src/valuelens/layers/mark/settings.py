"""Settings of the MARK layer (``layers.mark`` in the audit file).

Defined here, without importing :mod:`valuelens.config`, so the config can
import it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from valuelens.strict import Strict

Baseline = Literal["demo_ideo", "demo_ideo_opinion", "worldvaluesbench"]
BASELINES: tuple[Baseline, ...] = ("demo_ideo", "demo_ideo_opinion", "worldvaluesbench")
SEXES = ("male", "female")
AGE_GROUPS = ("<=29", "30-49", "50+")  # as in the WVS-7 loader and DEF
PERSONA_FIELDS = ("sex", "age_group", "education", "marital_status", "employment", "urban_rural", "region")




AGGREGATE = ("cao2025", "global_opinions")  # country-level distributions only: personas from marginals


class MarkData(Strict):
    """WVS-7 respondent microdata (CSV) and its codebook; ``kind: synthetic``, the built-in
    demo respondents (valuelens.data.synthetic; synthetic — not human data), which takes no files;
    or country-level distributions without respondents (``cao2025`` JSON with ``path_zh`` for the
    Chinese texts, ``global_opinions`` CSV): personas are then drawn from ``marginals`` and accuracy
    and κ are not computable (no respondent has a real answer)."""

    kind: Literal["wvs7", "synthetic", "cao2025", "global_opinions"] = "wvs7"
    path: str | None = Field(default=None, min_length=1, description="WVS-7 microdata CSV, cao2025 JSON or "
                                                                     "GlobalOpinionQA CSV")
    path_zh: str | None = Field(default=None, min_length=1, description="cao2025: the Chinese twin file")
    codebook: str | None = Field(default=None, min_length=1, description="codebook.json")
    metadata: str | None = Field(default=None, description="question_metadata.json (question wording)")
    adjustments: str | None = Field(default=None, description="answer_adjustment.json")
    texts: str | None = Field(default=None, description="questionnaire JSON with en/zh texts for the questions "
                                                       "(same ids and option counts); needed for Chinese prompts")

    @model_validator(mode="after")
    def _files(self) -> MarkData:
        given = [k for k in ("path", "path_zh", "codebook", "metadata", "adjustments", "texts") if getattr(self, k)]
        if self.kind == "synthetic" and given:
            raise ValueError(f"data kind 'synthetic' takes no files (got {', '.join(given)})")
        if self.kind == "wvs7" and not (self.path and self.codebook):
            raise ValueError("data kind 'wvs7' needs path (microdata CSV) and codebook")
        if self.kind in AGGREGATE:
            if not self.path:
                raise ValueError(f"data kind {self.kind!r} needs a path")
            extra = [k for k in ("codebook", "metadata", "adjustments") if getattr(self, k)]
            if extra:
                raise ValueError(f"data kind {self.kind!r} takes no {', '.join(extra)} (those are for wvs7 microdata)")
        if self.path_zh and self.kind != "cao2025":
            raise ValueError("path_zh applies only to kind 'cao2025'")
        return self

    @property
    def aggregate(self) -> bool:
        return self.kind in AGGREGATE


class StackWeights(Strict):
    """Base vote weight of each position in the function stack."""

    dominant: float = Field(default=0.4, gt=0)
    auxiliary: float = Field(default=0.3, gt=0)
    tertiary: float = Field(default=0.2, gt=0)
    inferior: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> StackWeights:
        w = self.as_tuple()
        if any(a < b for a, b in zip(w, w[1:])):
            raise ValueError("weights must satisfy dominant >= auxiliary >= tertiary >= inferior")
        return self

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.dominant, self.auxiliary, self.tertiary, self.inferior)


class MarkSettings(Strict):
    """Layer 3b: MARK (multi-stage personality-driven reasoning) and its baselines."""

    data: MarkData
    questions: list[str] = Field(min_length=1, description="WVS-7 question ids to simulate, e.g. [Q1, Q46]")
    opinion_questions: list[str] = Field(default_factory=list,
                                         description="extra context-only questions for the prior-opinion baseline")
    max_opinions: int = Field(default=10, ge=1, description="prior opinions shown per prompt")
    respondents_per_country: int = Field(default=50, ge=1)
    weights: StackWeights = Field(default_factory=StackWeights)
    negative_factor: float = Field(default=0.5, gt=0, le=1,
                                   description="multiplies the weight of a negatively impacted function")
    max_retries: int = Field(default=2, ge=0, le=5, description="repair attempts per structured stage")
    max_tokens: int = Field(default=512, ge=16, le=4096, description="per structured stage")
    stop_early: bool = Field(default=True, description="end each structured reply after its first complete JSON "
                             "object (stop rule json)")
    baseline_max_tokens: int = Field(default=32, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0, le=2)
    baselines: list[Baseline] = Field(default_factory=lambda: list(BASELINES))
    explain: bool = Field(default=True, description="LLM-written explanation of the synthesised answer")
    reference: Literal["sampled", "global"] | None = Field(
        default=None, description="human distribution in Table 3: the sampled respondents' or the whole country's; "
                                  "default sampled, and global for country-level data (the only one it has)")
    marginals: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="country-level data only: 'default' or a country -> persona field (sex, "
                                          "age_group, education, marital_status, employment, urban_rural, region) "
                                          "-> weights; default: sex and age group uniform")
    bootstrap: int = Field(default=1000, ge=100, le=100_000, description="bootstrap resamples")

    @model_validator(mode="after")
    def _aggregate(self) -> MarkSettings:
        if self.data.aggregate:
            if self.reference == "sampled":
                raise ValueError(f"reference 'sampled' needs respondents' answers; data kind {self.data.kind!r} has "
                                 "country distributions only (use global)")
            if self.opinion_questions:
                raise ValueError(f"opinion_questions need respondents' answers; data kind {self.data.kind!r} has none")
        elif self.marginals:
            raise ValueError("marginals apply only to country-level data (kind cao2025 or global_opinions); "
                             "microdata personas are the respondents'")
        for where, fields in self.marginals.items():
            for name, weights in fields.items():
                if name not in PERSONA_FIELDS:
                    raise ValueError(f"marginals.{where}: unknown persona field {name!r}; expected one of "
                                     f"{', '.join(PERSONA_FIELDS)}")
                if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                    raise ValueError(f"marginals.{where}.{name}: weights must be >= 0 with a positive sum")
                allowed = {"sex": SEXES, "age_group": AGE_GROUPS}.get(name)
                bad = sorted(set(weights) - set(allowed)) if allowed else []
                if bad:
                    raise ValueError(f"marginals.{where}.{name}: unknown value(s) {bad}; expected {list(allowed or [])}")
        return self

    @property
    def reference_used(self) -> Literal["sampled", "global"]:
        return self.reference or ("global" if self.data.aggregate else "sampled")

    @field_validator("questions", "baselines")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("duplicate entries")
        return v
