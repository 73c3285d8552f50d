"""DEF layer entry points (registered in :mod:`valuelens.layers.registry`): ``check``
(inputs, before the run), ``run`` (one model) and ``combine`` (all models)."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from valuelens.data.wvs import distributions
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext
from valuelens.layers.def_layer import bias, insensitivity
from valuelens.layers.def_layer.cultural_map import cultural_map
from valuelens.layers.def_layer.data import Inputs, load
from valuelens.layers.def_layer.generation import make_sessions, run_waves
from valuelens.layers.def_layer.participants import (
    Participant, draw_participants, location_table, personas_from_marginals, personas_from_microdata,
)
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.layers.def_layer.tables import add_kl_def, dimension_table, question_tables, summary_table
from valuelens.models import CachedModel

_INPUTS: dict[str, Inputs] = {}  # one entry: the inputs of the audit being run, shared by its models


def _stamp(path: str | None) -> str:
    try:
        st = os.stat(path) if path and path != "builtin" else None
    except OSError:
        return f"{path}:?"
    return f"{path}:{st.st_mtime_ns}:{st.st_size}" if st else str(path)


def inputs_for(settings: DEFSettings, countries: list[str]) -> Inputs:
    """Loaded once per audit (keyed by the settings, countries and the files' mtimes and sizes)."""
    d, m = settings.data, settings.microdata
    files = [d.path, d.path_zh, d.codebook, d.metadata, d.adjustments, settings.insensitivity.factual_source,
             settings.dimension_map,
             *((m.path, m.codebook, m.metadata, m.adjustments) if m else ())]
    key = "|".join([settings.model_dump_json(), *countries, *map(_stamp, files)])
    if key not in _INPUTS:
        _INPUTS.clear()
        _INPUTS[key] = load(settings, countries)
    return _INPUTS[key]


def _persona_columns(inputs: Inputs, settings: DEFSettings) -> dict[str, tuple[str, dict[float, str]]]:
    if inputs.respondents is None or inputs.codebook is None:
        return {}
    out = {}
    for name, col in settings.persona_fields.items():
        q = inputs.codebook.get(col)
        if q is not None and col in inputs.respondents.columns:
            out[name] = (col, {float(c): lab for c, lab in zip(q.extra["codes"], q.options["en"])})
    return out


def participants(inputs: Inputs, settings: DEFSettings, countries: list[str], seed: int,
                 supports_beams: bool) -> list[Participant]:
    locations = location_table(settings)
    extra = _persona_columns(inputs, settings)
    out: list[Participant] = []
    for country in countries:
        personas, source = None, "microdata"
        if inputs.respondents is not None:
            personas = personas_from_microdata(seed, country, settings.participants, inputs.respondents, extra)
        if personas is None:
            personas, source = personas_from_marginals(seed, country, settings.participants, settings), "marginals"
        out += draw_participants(seed, country, settings, supports_beams, personas, source, locations)
    return out


def _bias(inputs: Inputs, questions: pd.DataFrame, rule: str = "cells") -> dict[str, pd.DataFrame]:
    if inputs.respondents is None or not inputs.micro_column:
        return {}
    if not hasattr(inputs, "_groups"):
        col_to_q = {c: q for q, c in inputs.micro_column.items()}
        whole = distributions(inputs.respondents, inputs.codebook, ("country",), inputs.weighted)  # type: ignore[arg-type]
        if rule == "marginal":
            by_sex, by_age = (distributions(inputs.respondents, inputs.codebook, ("country", facet),  # type: ignore[arg-type]
                                            inputs.weighted) for facet in ("sex", "age_group"))
            inputs._groups = bias.marginal_groups(by_sex, by_age, whole, col_to_q)  # type: ignore[attr-defined]
        else:
            inputs._groups = bias.human_groups(inputs.cells(), whole, col_to_q)  # type: ignore[attr-defined]
    groups: pd.DataFrame = inputs._groups  # type: ignore[attr-defined]
    labels = {q.id: q.labels for q in inputs.questions}
    table = bias.bias_table(questions, groups, labels)
    return {"def_bias": table, "def_bias_profile": bias.mismatch_profile(table), "def_bias_groups": groups.copy()}


def check(settings: DEFSettings, ctx: LayerContext) -> None:
    """Load the questionnaire, human data and microdata now (cached for ``run``),
    so bad input fails before anything is written."""
    inputs_for(settings, list(ctx.countries))


def run(model: CachedModel, settings: DEFSettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
    inputs = inputs_for(settings, list(ctx.countries))
    if not any(lang in q.languages() for q in inputs.questions for lang in ctx.languages):
        raise ValueLensError(f"def: no question has a text in {list(ctx.languages)}")
    people = participants(inputs, settings, list(ctx.countries), ctx.seed, model.supports_beams)
    sessions = make_sessions(people, list(ctx.languages), settings.passes, ctx.seed, ctx.names())
    answers = pd.DataFrame(run_waves(model, inputs, sessions, settings, ctx.seed, ctx.tracker))
    for col in ("option_index", "code", "shown_number"):
        answers[col] = answers[col].astype("Int64")
    questions, options = question_tables(answers, inputs, settings.kl_eps)
    checks = insensitivity.items(answers, inputs, settings)
    checks = insensitivity.judge(model, checks, inputs, settings, ctx.seed)
    notes = list(inputs.notes)
    if not model.supports_beams:
        notes.append(f"{model.name}: backend without beams; num_beams = 1, temperature and top_p vary")
    if inputs.respondents is None:
        notes.append("no respondent microdata: personas from marginals, and the demographic-bias analysis "
                     "(def_bias, def_bias_profile, def_bias_groups) needs microdata (layers.def.microdata), so it "
                     "is not computed")
    skipped = [q.id for q in inputs.questions for lang in ctx.languages if lang not in q.languages()]
    if skipped:
        notes.append(f"{len(skipped)} question × language pairs have no text in that language and were not asked")
    tables: dict[str, Any] = {
        "def_participants": pd.DataFrame([p.row() for p in people]),
        "def_answers": answers, "def_questions": questions, "def_options": options,
        "def_insensitivity_items": checks, "def_insensitivity": insensitivity.rates(checks),
        **_bias(inputs, questions, settings.majority_rule),
        "def_notes": pd.DataFrame({"note": notes}),
    }
    return tables


def combine(merged: dict[str, pd.DataFrame], settings: DEFSettings,
            ctx: LayerContext | None = None) -> dict[str, pd.DataFrame]:
    """KL with DEF's replacement over the whole run, dimension averages, the map, the summary."""
    if "def_questions" not in merged:
        return {}
    q = add_kl_def(merged["def_questions"], settings.close_threshold)
    dims = dimension_table(q, settings.close_threshold)
    values, points, var = cultural_map(q)
    out = {"def_questions": q, "def_dimensions": dims, "def_map_values": values, "def_map": points,
           "def_variation": var}
    if "def_bias_groups" in merged:
        g = merged["def_bias_groups"].drop(columns=["model"])
        out["def_bias_groups"] = g.drop_duplicates(["country", "question_id", "option_index"]).reset_index(drop=True)
    out["def_summary"] = summary_table({**merged, **out}, dims)
    return out
