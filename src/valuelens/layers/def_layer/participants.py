"""Virtual participants: persona, location and generation settings, all seeded.

Every random draw comes from a generator seeded by hashing the audit seed
with the draw's purpose and coordinates (:func:`rng`), so a participant is
the same in every run, language and model, and adding participants does not
change the earlier ones. num_beams is drawn even for backends without beams
(then used as 1) so the other draws never depend on the backend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from valuelens.layers.def_layer.settings import DEFSettings


def derive(*parts: Any) -> int:
    """A 63-bit integer from the parts (stable across runs and platforms)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(derive(*parts))


def builtin_personas() -> dict[str, Any]:
    return json.loads(resources.files("valuelens.data").joinpath("def_personas.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Participant:
    country: str
    index: int
    persona: dict[str, str]  # sex, age_group, then optional fields (education, region, ...)
    location: dict[str, str] = field(default_factory=dict)  # language -> name ({} = none)
    num_beams: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    memory_size: int = 0
    source: str = "marginals"  # or "microdata"

    @property
    def pid(self) -> str:
        return f"{self.country}#{self.index + 1:03d}"

    def row(self) -> dict[str, Any]:
        return {"participant": self.pid, "country": self.country, **self.persona,
                "location": self.location.get("en"), "location_zh": self.location.get("zh"),
                "num_beams": self.num_beams, "temperature": self.temperature, "top_p": self.top_p,
                "memory_size": self.memory_size, "persona_source": self.source}


def location_table(settings: DEFSettings) -> dict[str, list[dict[str, str]]]:
    """Country → locations ({en, zh?}); the audit file's lists replace the built-in ones."""
    out = {c: list(v) for c, v in builtin_personas()["locations"].items()}
    for c, locs in settings.locations.items():
        out[c] = [{"en": x} if isinstance(x, str) else dict(x) for x in locs]
    return out


def _marginal_draw(r: np.random.Generator, fields: dict[str, dict[str, float]]) -> dict[str, str]:
    out = {}
    for name, weights in fields.items():
        keys = list(weights)
        w = np.array([weights[k] for k in keys], dtype=float)
        out[name] = keys[int(r.choice(len(keys), p=w / w.sum()))]
    return out


def personas_from_marginals(seed: int, country: str, n: int, settings: DEFSettings) -> list[dict[str, str]]:
    """Each field drawn independently from the country's marginals (else 'default', else the built-in uniform)."""
    fields = dict(builtin_personas()["marginals"])
    fields.update(settings.marginals.get("default", {}))
    fields.update(settings.marginals.get(country, {}))
    return [_marginal_draw(rng(seed, "def-persona", country, i), fields) for i in range(n)]


def personas_from_microdata(seed: int, country: str, n: int, respondents: pd.DataFrame,
                            extra: dict[str, tuple[str, dict[float, str]]]) -> list[dict[str, str]] | None:
    """``n`` respondents of the country with known sex and age group, drawn with probability
    ∝ weight (without replacement when there are enough); None if the country has none."""
    pool = respondents[(respondents["country"] == country) & respondents["sex"].notna()
                       & respondents["age_group"].notna()]
    if pool.empty:
        return None
    w = pool["weight"].to_numpy(float) if "weight" in pool else np.ones(len(pool))
    w = np.ones(len(pool)) if w.sum() <= 0 else w
    r = rng(seed, "def-respondents", country)
    idx = r.choice(len(pool), size=n, replace=len(pool) < n or (w > 0).sum() < n, p=w / w.sum())
    out = []
    for i in idx:
        row = pool.iloc[int(i)]
        p = {"sex": str(row["sex"]), "age_group": str(row["age_group"])}
        for name, (col, labels) in extra.items():
            v = row.get(col)
            if v is not None and not pd.isna(v) and float(v) in labels:
                p[name] = labels[float(v)]
        out.append(p)
    return out


def draw_participants(seed: int, country: str, settings: DEFSettings, supports_beams: bool,
                      personas: list[dict[str, str]], source: str,
                      locations: dict[str, list[dict[str, str]]]) -> list[Participant]:
    out = []
    lo_b, hi_b = settings.beams
    for i, persona in enumerate(personas):
        r = rng(seed, "def-participant", country, i)
        locs = locations.get(country) or []
        loc = dict(locs[int(r.integers(len(locs)))]) if locs else {}
        if persona.get("region"):
            loc = {"en": persona["region"]}
        beams = int(r.integers(lo_b, hi_b + 1))
        temp = round(float(r.uniform(*settings.temperature)), 2)
        top_p = round(float(r.uniform(*settings.top_p)), 2)
        memory = int(r.integers(0, settings.memory_max + 1))
        persona = {k: v for k, v in persona.items() if k != "region"}
        out.append(Participant(country, i, persona, loc, beams if supports_beams else 1, temp, top_p, memory, source))
    return out


def session_seed(seed: int, pid: str, pass_index: int) -> int:
    """The generation seed of one pass of one participant (same in every language)."""
    return derive(seed, "def-session", pid, pass_index) % (2**31 - 1)
