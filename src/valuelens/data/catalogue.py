"""The built-in catalogue of the paper's models (``catalogue.json``).

Each entry gives a model's metadata — origin region, family, parameter count,
dense/MoE, alignment method — with its canonical name, display name, Hugging
Face repo id, hosted-API model ids, aliases (older repo ids, the paper's
spellings), developer and a short source note. ``null`` in the file means not disclosed or
not known.

Lookup is case-insensitive over the name, the API ids, the aliases, the repo
ids and the repo ids' last path component (``meta-llama/Meta-Llama-3-8B-Instruct`` also
answers to ``Meta-Llama-3-8B-Instruct``). :func:`match_backend` finds the
model a backend spec runs: ``embedded`` is SmolLM2-135M-Instruct; for
``hf:PATH``, ``openai:MODEL@URL`` and other ``KIND:ARG`` specs it tries the
whole path or model id, a Hugging Face cache folder
(``models--ORG--NAME``) in the path, then the last path component.
``scripted:`` specs never match.

No torch here: the audit-file loader uses this module.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from valuelens.errors import ValueLensError

Region = Literal["China", "Western", "other"]
Architecture = Literal["dense", "MoE"]
Alignment = Literal["base", "SFT", "RLHF-DPO", "full-FT"]

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
# the ModelEntry fields a catalogue entry fills in
FILLED = ("display_name", "region", "family", "params_b", "architecture", "alignment", "toy")


class KnownModel(BaseModel):
    """One catalogue entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="canonical name, e.g. Llama-3-8B-Instruct")
    display_name: str = Field(min_length=1)
    hf_repo: str | None = Field(default=None, pattern=r"^[\w.\-]+/[\w.\-]+$", description="Hugging Face repo id")
    api_ids: tuple[str, ...] = Field(default=(), description="model ids of the hosted API, e.g. gpt-4o-2024-08-06")
    aliases: tuple[str, ...] = Field(default=(), description="other spellings: older repo ids, the paper's names")
    region: Region
    family: str = Field(min_length=1, description="the architecture series the weights build on")
    developer: str = Field(min_length=1, description="who trained this checkpoint")
    params_b: float | None = Field(gt=0, description="total parameters, billions; null = undisclosed")
    active_params_b: float | None = Field(default=None, gt=0, description="MoE: parameters used per token, billions")
    architecture: Architecture | None
    alignment: Alignment | None
    base_model: str | None = None
    open_weights: bool
    toy: bool = Field(default=False, description="a demo-sized model: runs end to end, not for conclusions")
    source: str = Field(min_length=1)

    def keys(self) -> set[str]:
        """Every lookup key (case-folded)."""
        out = {self.name, *self.api_ids, *self.aliases}
        if self.hf_repo:
            out.add(self.hf_repo)
        out |= {k.rsplit("/", 1)[-1] for k in list(out) if "/" in k}
        return {k.casefold() for k in out}

    def metadata(self) -> dict[str, Any]:
        """What an audit's model entry takes from the catalogue (unknown
        architecture or alignment as ``"unknown"``)."""
        return {"display_name": self.display_name, "region": self.region, "family": self.family,
                "params_b": self.params_b, "architecture": self.architecture or "unknown",
                "alignment": self.alignment or "unknown", "toy": self.toy}

    def params_text(self) -> str:
        if self.params_b is None:
            return "—"
        return f"{self.params_b:g}" + (f" ({self.active_params_b:g} active)" if self.active_params_b else "")


def _parse(doc: Any, origin: str) -> tuple[KnownModel, ...]:
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueLensError(f"{origin}: expected {{\"models\": [...]}}")
    models = []
    for i, raw in enumerate(doc["models"]):
        try:
            models.append(KnownModel.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ValueLensError(f"{origin}: models.{i}.{key}: {err['msg']}") from None
    owner: dict[str, str] = {}
    for m in models:
        for k in m.keys():
            if owner.setdefault(k, m.name) != m.name:
                raise ValueLensError(f"{origin}: {k!r} names both {owner[k]!r} and {m.name!r}")
    return tuple(models)


@lru_cache(maxsize=1)
def known_models() -> tuple[KnownModel, ...]:
    """The catalogue, in file order."""
    text = resources.files("valuelens.data").joinpath("catalogue.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "builtin catalogue.json")


@lru_cache(maxsize=1)
def _index() -> dict[str, KnownModel]:
    return {k: m for m in known_models() for k in m.keys()}


def lookup(name: str) -> KnownModel | None:
    """The entry whose name, alias or Hugging Face repo id (or its last path
    component) is ``name``, ignoring case; None if none."""
    return _index().get(name.strip().casefold())


def suggest(name: str, n: int = 3) -> list[str]:
    """Canonical names of entries with a key close to ``name`` (for error
    messages); empty if nothing is close."""
    out: list[str] = []
    for hit in difflib.get_close_matches(name.strip().casefold(), list(_index()), n=n * 3, cutoff=0.6):
        canon = _index()[hit].name
        if canon not in out:
            out.append(canon)
    return out[:n]


def _model_id(spec: str) -> str | None:
    kind, sep, arg = spec.partition(":")
    if not sep or kind == "scripted":
        return None
    if kind == "openai":
        model, at, _url = arg.rpartition("@")
        return model if at else arg
    return arg


def match_backend(spec: str) -> KnownModel | None:
    """The entry for the model a backend spec runs, or None."""
    if spec.strip() == "embedded":
        return lookup(EMBEDDED_MODEL)
    model = _model_id(spec.strip())
    if not model or not model.strip("/"):
        return None
    path = model.rstrip("/")
    candidates = [path]
    for part in path.split("/"):
        if part.startswith("models--") and part.count("--") >= 2:  # the Hugging Face cache layout
            candidates.append(part.removeprefix("models--").replace("--", "/", 1))
    candidates.append(path.rsplit("/", 1)[-1])
    for c in candidates:
        hit = lookup(c)
        if hit is not None:
            return hit
    return None


def resolve(name: str, backend: str) -> KnownModel | None:
    """The entry an audit's model names implicitly: by what its backend runs,
    else by its name."""
    return match_backend(backend) or lookup(name)
