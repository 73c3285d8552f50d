"""DEF inputs: the questionnaire, human distributions and respondent microdata.

Question names: a question is found by its id or by its WVS name
(``extra["wvs"]``, e.g. cao2025 id "164" ↔ "Q164"), in settings (factual
items, CV pairs, dimensions) and in microdata columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from valuelens.data.dimension_map import DimensionMap, load_dimension_map
from valuelens.data.sources import load_survey
from valuelens.data.survey import HumanDistribution, Question, Survey, parse_questions, read_json
from valuelens.errors import ValueLensError
from valuelens.layers.def_layer.settings import CVPair, DEFSettings


def names(q: Question) -> set[str]:
    return {q.id} | ({str(q.extra["wvs"])} if q.extra.get("wvs") else set())


def option_codes(q: Question) -> tuple[int, ...]:
    """Answer codes of the options (WVS codes when known, else 1..k)."""
    codes = q.extra.get("codes")
    return tuple(int(c) for c in codes) if codes else tuple(range(1, len(q.labels) + 1))


@dataclass
class Inputs:
    questions: list[Question]  # asked, in order (value questions, then appended factual items)
    survey: Survey  # country-level human distributions (group "")
    factual: dict[str, int] = field(default_factory=dict)  # question id -> correct code
    dimension: dict[str, str] = field(default_factory=dict)  # question id -> value dimension
    respondents: pd.DataFrame | None = None
    codebook: dict[str, Question] | None = None
    micro_column: dict[str, str] = field(default_factory=dict)  # question id -> microdata column
    weighted: bool = True
    notes: list[str] = field(default_factory=list)
    cv_pairs: list[CVPair] = field(default_factory=list)  # the pairs checked (settings', or the map's defaults)

    def find(self, name: str) -> Question | None:
        return next((q for q in self.questions if name in names(q)), None)

    def human(self, qid: str, country: str) -> tuple[float, ...] | None:
        d = self.survey.lookup(qid, country)
        return d.probs if d else None

    def cells(self) -> list[HumanDistribution]:
        """Weighted answer shares per country × sex × age group, keyed by microdata column."""
        from valuelens.data.wvs import distributions

        if self.respondents is None or self.codebook is None:
            return []
        return distributions(self.respondents, self.codebook, ("country", "sex", "age_group"), self.weighted)


def _microdata(path: str, codebook_path: str, metadata: str | None, adjustments: str | None):
    from valuelens.data.wvs import load_codebook, load_microdata

    codebook = load_codebook(codebook_path, metadata, adjustments)
    return codebook, load_microdata(path, codebook)


def load(settings: DEFSettings, countries: list[str]) -> Inputs:
    d = settings.data
    notes: list[str] = []
    respondents = codebook = None
    if d.kind == "wvs7":
        from valuelens.data.wvs import distributions

        codebook, respondents = _microdata(d.path, d.codebook, d.metadata, d.adjustments)  # type: ignore[arg-type]
        cols = [c for c in respondents.columns if c in codebook and c not in {"country", "sex", "age", "age_group", "weight"}]
        survey = Survey({q: codebook[q] for q in cols}, distributions(respondents, codebook, ("country",), d.weighted),
                        "wvs7", [f"{Path(d.path).name}: {len(respondents)} respondents"])  # type: ignore[arg-type]
    elif d.kind == "synthetic":  # synthetic — not human data: the demo respondents (valuelens.data.synthetic)
        from valuelens.data import synthetic
        from valuelens.data.wvs import distributions

        codebook, respondents = synthetic.questions(), synthetic.respondents()
        survey = Survey(codebook, distributions(respondents, codebook, ("country",), d.weighted),
                        synthetic.SOURCE, synthetic.survey().notes)
    else:
        survey = load_survey(d.kind, d.path, d.path_zh)
    notes += survey.notes
    qs = list(survey.questions.values())
    if settings.questions is not None:
        unknown = [n for n in settings.questions if not any(n in names(q) for q in qs)]
        if unknown:
            raise ValueLensError(f"layers.def.questions: {unknown[:5]} not in the questionnaire")
        qs = [q for q in qs if names(q) & set(settings.questions)]
    qs = qs[: settings.limit]
    weighted = d.weighted
    m = settings.microdata
    if m is not None:
        codebook, respondents = _microdata(m.path, m.codebook, m.metadata, m.adjustments)
        weighted = m.weighted
    data = Inputs(qs, survey, respondents=respondents, codebook=codebook, weighted=weighted, notes=notes)
    _add_factual(data, settings)
    dmap = load_dimension_map(settings.dimension_map) if settings.dimension_map else None
    if settings.insensitivity.cv_pairs is not None:
        data.cv_pairs = list(settings.insensitivity.cv_pairs)
        for pair in data.cv_pairs:  # CV items are always asked
            for n in (pair.a, pair.b):
                if _ensure(data, n) is None:
                    raise ValueLensError(f"layers.def.insensitivity.cv_pairs: question {n!r} is not in the questionnaire")
    elif dmap is not None:
        data.cv_pairs = _default_pairs(data, dmap)
    for pair in data.cv_pairs:
        if pair.rule == "combos":
            for n, codes in ((pair.a, {c[0] for c in pair.combos or []}), (pair.b, {c[1] for c in pair.combos or []})):
                q = data.find(n)
                bad = sorted(codes - set(option_codes(q))) if q is not None else []
                if bad:
                    raise ValueLensError(f"layers.def.insensitivity.cv_pairs: {pair.a}|{pair.b}: code(s) {bad} are not "
                                         f"answer codes of {n} ({list(option_codes(q))})")  # type: ignore[arg-type]
    mapped = 0
    for q in data.questions:
        own = next((settings.dimensions[n] for n in sorted(names(q)) if n in settings.dimensions), None)
        from_map = next((dmap.dimension[n] for n in sorted(names(q)) if n in dmap.dimension), None) if dmap else None
        mapped += own is None and from_map is not None
        dim = own or from_map or q.dimension
        data.dimension[q.id] = "FACT" if q.id in data.factual else (dim or "")
    if dmap is not None and mapped:
        own_map = " (valuelens' own WVS-7 assignment, by questionnaire section)" if settings.dimension_map == "builtin" else ""
        data.notes.append(f"dimensions: {mapped} of {len(data.questions)} questions from {dmap.source}{own_map}")
    empty = [q.id for q in data.questions if not data.dimension[q.id]]
    if empty:
        data.notes.append(f"{len(empty)} questions have no value dimension (e.g. {', '.join(empty[:3])}): they count "
                          "in '(all)' only; set layers.def.dimensions to assign them")
    if respondents is not None and codebook is not None:
        for q in data.questions:
            col = next((n for n in sorted(names(q)) if n in respondents.columns and n in codebook), None)
            if col and len(codebook[col].labels) == len(q.labels):
                data.micro_column[q.id] = col
        known = set(respondents["country"].dropna())
        absent = [c for c in countries if c not in known]
        if absent:
            notes.append(f"microdata has no respondents for {absent}: their personas come from marginals")
        notes.append(f"microdata: {len(data.micro_column)} of {len(data.questions)} questions have a column")
    return data


def _default_pairs(data: Inputs, dmap: DimensionMap) -> list[CVPair]:
    """The map's CV pairs whose two items are both asked (never adds a question); noted."""
    out = []
    for p in dmap.cv_pairs:
        qa, qb = data.find(p["a"]), data.find(p["b"])
        if qa is None or qb is None:
            continue
        pair = CVPair(a=p["a"], b=p["b"], rule=p.get("rule", "auto"), combos=p.get("combos"))
        if pair.rule == "combos" and not all(c[0] in option_codes(qa) and c[1] in option_codes(qb)
                                             for c in pair.combos or []):
            data.notes.append(f"CV pair {p['a']}|{p['b']} of {dmap.source} skipped: its codes do not fit this data's "
                              "answer codes")
            continue
        out.append(pair)
    if dmap.cv_pairs:
        data.notes.append(f"CV pairs: {len(out)} of the {len(dmap.cv_pairs)} default pairs of {dmap.source} have both "
                          "items asked" + (f" ({', '.join(f'{p.a}|{p.b}' for p in out)})" if out else ""))
    return out


def _ensure(data: Inputs, name: str) -> Question | None:
    """The asked question called ``name``; one of the survey's that was not selected is appended."""
    q = data.find(name)
    if q is None:
        q = next((x for x in data.survey.questions.values() if name in names(x)), None)
        if q is not None:
            data.questions.append(q)
    return q


def _add_factual(data: Inputs, settings: DEFSettings) -> None:
    ins = settings.insensitivity
    absent = {}
    for name, code in ins.factual.items():
        q = _ensure(data, name)
        if q is not None:
            _check_code(q, name, code)
            data.factual[q.id] = code
        else:
            absent[name] = code
    if not absent:
        return
    if ins.factual_source is None:
        data.notes.append(f"factual items {sorted(absent)} are not in the questionnaire and factual_source is null: skipped")
        return
    if ins.factual_source == "builtin":
        raw = json.loads(resources.files("valuelens.data").joinpath("def_factual.json").read_text(encoding="utf-8"))
    else:
        raw = read_json(Path(ins.factual_source))
    extra = {q.id: q for q in parse_questions(raw, ins.factual_source)}
    for name, code in absent.items():
        q = extra.get(name)
        if q is None:
            raise ValueLensError(f"layers.def.insensitivity.factual: {name!r} is neither in the questionnaire nor in "
                                 f"{ins.factual_source}")
        _check_code(q, name, code)
        data.questions.append(q)
        data.factual[q.id] = code
    data.notes.append(f"factual items {sorted(absent)} asked from {ins.factual_source} (no human distributions)")


def _check_code(q: Question, name: str, code: int) -> None:
    if code not in option_codes(q):
        raise ValueLensError(f"layers.def.insensitivity.factual: {name}: code {code} is not one of {list(option_codes(q))}")
