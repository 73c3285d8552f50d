"""Question → DEF value dimension maps, and the CV pairs shipped with them.

The built-in map (``wvs7_dimensions.json``) assigns WVS-7 items (``Q164``, …)
to the nine DEF dimensions; the assignment is valuelens' own, by the WVS-7
questionnaire's thematic sections (each item names its section and a reason).
A user map is a JSON file of the same layout: ``{"items": {ID: {"dimension":
CODE or null, ...}}, "cv_pairs": [{"a", "b", "rule", "combos"?, "why"?}]}``
(``cv_pairs`` optional). ``dimension: null`` = none of the nine (the data's own
dimension is kept).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from valuelens.data.survey import read_json
from valuelens.errors import ValueLensError

DIMENSIONS = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR", "EVI", "TDI", "USI")
BUILTIN = "wvs7_dimensions.json"
RULES = ("auto", "same", "same_side", "combos")


@dataclass(frozen=True)
class DimensionMap:
    source: str
    dimension: dict[str, str]  # question id -> dimension code (mapped items only)
    unmapped: frozenset[str] = frozenset()  # ids listed with dimension null
    cv_pairs: list[dict[str, Any]] = field(default_factory=list)  # {a, b, rule, combos?, why?}
    sections: dict[str, str] = field(default_factory=dict)  # question id -> WVS-7 section (when given)


def load_dimension_map(source: str) -> DimensionMap:
    """``builtin`` (valuelens' WVS-7 map) or the path of a JSON map; a bad file is one line naming the entry."""
    if source == "builtin":
        raw = json.loads(resources.files("valuelens.data").joinpath(BUILTIN).read_text(encoding="utf-8"))
        origin = f"builtin {BUILTIN}"
    else:
        from valuelens.data.fetch import resolve  # fetched:NAME paths

        path = Path(str(resolve(source)))
        raw, origin = read_json(path), str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), dict) or not raw["items"]:
        raise ValueLensError(f"{origin}: expected an object with a non-empty 'items' object (question id -> entry)")
    dims: dict[str, str] = {}
    unmapped: set[str] = set()
    sections: dict[str, str] = {}
    for qid, entry in raw["items"].items():
        where = f"{origin}: items[{qid!r}]"
        if not isinstance(entry, dict) or "dimension" not in entry:
            raise ValueLensError(f"{where}: expected an object with a 'dimension' (one of {', '.join(DIMENSIONS)} "
                                 "or null)")
        d = entry["dimension"]
        if d is None:
            unmapped.add(qid)
        elif d in DIMENSIONS:
            dims[qid] = d
        else:
            raise ValueLensError(f"{where}, field 'dimension': {str(d)[:24]!r} is not one of {', '.join(DIMENSIONS)} "
                                 "or null")
        if isinstance(entry.get("section"), str):
            sections[qid] = entry["section"]
    pairs = raw.get("cv_pairs", [])
    if not isinstance(pairs, list):
        raise ValueLensError(f"{origin}: 'cv_pairs' must be a list")
    for i, p in enumerate(pairs):
        where = f"{origin}: cv_pairs[{i}]"
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) and p[k] for k in ("a", "b")):
            raise ValueLensError(f"{where}: expected an object with question ids 'a' and 'b'")
        if p.get("rule", "auto") not in RULES:
            raise ValueLensError(f"{where}, field 'rule': expected one of {', '.join(RULES)}")
        combos = p.get("combos")
        if (p.get("rule") == "combos") != (combos is not None):
            raise ValueLensError(f"{where}: 'combos' goes with rule 'combos' (and only with it)")
        if combos is not None and (not isinstance(combos, list) or not combos or not all(
                isinstance(c, list) and len(c) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in c)
                for c in combos)):
            raise ValueLensError(f"{where}, field 'combos': expected a non-empty list of [code_a, code_b] integer pairs")
    return DimensionMap(origin, dims, frozenset(unmapped), [dict(p) for p in pairs], sections)
