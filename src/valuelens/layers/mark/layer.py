"""MARK layer entry points (registered in :mod:`valuelens.layers.registry`):
``check`` (inputs, before the run), ``run`` (one model) and ``combine`` (Table 3).

Tables: ``mark_traces`` (a readable row per MARK respondent-question),
``mark_responses`` (every method's answer per respondent-question),
``mark_items`` (per method × language × question × country distributions and
metrics), ``mark_summary`` (per method × language, with bootstrap intervals
and the paired test against MARK), ``mark_stages`` (valid / invalid / repaired
per stage), ``mark_notes`` (what the data allowed: personas from marginals, baselines or
languages left out) and, after all models, ``mark_table3``. Full traces go to
``OUT/mark_traces/<model>.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext
from valuelens.layers.mark.baselines import run_baselines
from valuelens.layers.mark.data import load_sample
from valuelens.layers.mark.evaluate import items, responses, summary, table3
from valuelens.layers.mark.pipeline import run_mark
from valuelens.layers.mark.settings import MarkSettings
from valuelens.models import CachedModel
from valuelens.results import write_text_atomic

PERSONA_STAGES = ("stress", "type", "impact")


def write_traces(path: Path, records: list[dict[str, Any]], model: str) -> Path:
    """One JSON object per line, written atomically (no .tmp left behind on a failed write)."""
    return write_text_atomic(path, "".join(json.dumps({"model": model, **r}, ensure_ascii=False) + "\n"
                                           for r in records))


def _last_error(rec: dict[str, Any]) -> str | None:
    st = rec["stages"].get(rec["invalid_stage"] or "")
    return st["attempts"][-1]["error"] if st and st["attempts"] else None


def trace_row(r: dict[str, Any]) -> dict[str, Any]:
    """The readable summary of one trace."""
    st = r["stages"].get("stress", {})
    scores = (st.get("parsed") or {}).get("scores", {})
    choices = ((r["stages"].get("reason") or {}).get("parsed") or {}).get("choices", {})
    vote = r["vote"] or {}
    persona = "; ".join(f"{k}={v}" for k, v in r["inputs"]["persona"].items() if v is not None and k != "country")
    return {
        "row_id": f"mark|{r['language']}|{r['respondent_id']}|{r['question_id']}",  # pipeline.trace_row_id
        "respondent_id": r["respondent_id"], "country": r["country"], "language": r["language"],
        "question_id": r["question_id"], "persona": persona, "prior_type": r["prior"]["type"],
        "stress_level": (st.get("parsed") or {}).get("stress_level"),
        "stressors": "; ".join(f"{k} ({scores[k]:g})" for k in st.get("stressors", [])) or None,
        "mbti": r["mbti"],
        "stack": " ".join(f"{f}{'+' if r['impacts'][f] == 'positive' else '-'}" for _, f in r["stack"])
        if r["stack"] and r["impacts"] else None,
        "choices": " ".join(f"{f}:{c['option']}" for f, c in choices.items()) or None,
        "weights": ", ".join(f"{f} {w:.3f}" for f, w in vote.get("weights", {}).items()) or None,
        "answer": r["answer"], "answer_text": r["answer_text"], "truth": r["truth"],
        "correct": r["answer"] == r["truth"], "valid": r["valid"], "invalid_stage": r["invalid_stage"],
        "error": _last_error(r), "explanation": r["explanation"], "calls": r["calls"],
        "failure": next((st.get("failure") for st in r["stages"].values() if st.get("failure")), ""),
    }


def stage_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per language × stage: jobs, valid, invalid, repaired (valid after a retry), calls, and
    constrained (jobs whose replies the backend held to the stage's JSON schema; 0 = prompt-and-parse)."""
    seen, rows = set(), []
    for r in records:
        for stage, o in r["stages"].items():
            key = (r["language"], stage, r["respondent_id"]) + (() if stage in PERSONA_STAGES else (r["question_id"],))
            if key in seen:
                continue
            seen.add(key)
            rows.append({"language": r["language"], "stage": stage, "valid": o["valid"],
                         "repaired": o["valid"] and len(o["attempts"]) > 1, "calls": len(o["attempts"]),
                         "constrained": bool(o.get("constrained", False))})
    cols = ["language", "stage", "jobs", "valid", "invalid", "repaired", "calls", "constrained"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    out = df.groupby(["language", "stage"], sort=False).agg(
        jobs=("valid", "size"), valid=("valid", "sum"), repaired=("repaired", "sum"), calls=("calls", "sum"),
        constrained=("constrained", "sum"))
    out["invalid"] = out["jobs"] - out["valid"]
    return out.reset_index()[cols]


def check(settings: MarkSettings, ctx: LayerContext) -> None:
    """Read the microdata and questions before the run starts (bad input fails early);
    every audit language must have question texts (else its results would be silently absent)."""
    sample = load_sample(settings, list(ctx.countries), ctx.seed)
    langs = list(ctx.languages)
    missing = [lang for lang in langs if not any(lang in q.languages() for q in sample.questions.values())]
    if missing:
        raise ValueLensError(f"layers.mark: the questions of {settings.data.codebook or settings.data.path} have no text in "
                             f"{', '.join(missing)}, one of the audit languages {langs}; give data.texts (a "
                             "questionnaire JSON with these languages) or set languages to the data's")


def run(model: CachedModel, settings: MarkSettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
    sample = load_sample(settings, list(ctx.countries), ctx.seed)
    names = ctx.names()
    langs = [lang for lang in ctx.languages if any(lang in q.languages() for q in sample.questions.values())]
    if not langs:
        raise ValueLensError(f"layers.mark: the questions have no text in {', '.join(ctx.languages)}; "
                             "give data.texts (a questionnaire JSON with these languages)")
    notes = list(sample.notes)
    if sample.aggregate and "demo_ideo_opinion" in settings.baselines:  # it shows the respondent's real answers
        notes.append("baseline demo_ideo_opinion not run: it shows the respondent's own answers to other questions, "
                     "and personas from marginals have none")
        settings = settings.model_copy(update={"baselines": [b for b in settings.baselines if b != "demo_ideo_opinion"]})
    if sample.aggregate and not any(set(f) - {"sex", "age_group"} for f in settings.marginals.values()):
        notes.append("personas from marginals hold only country, sex and age group: the Demo.+Ideo. and "
                     "WorldValuesBench baselines then see the same persona (same prompts and answers); add fields "
                     "(education, region, urban_rural, ...) under marginals to tell them apart")
    skipped = [lang for lang in ctx.languages if lang not in langs]
    if skipped:
        notes.append(f"no question text in {', '.join(skipped)}: not asked in that language")
    mark = run_mark(model, settings, sample.respondents, sample.questions, langs, names, ctx.seed, ctx.tracker)
    base = run_baselines(model, settings, sample.respondents, sample.questions, sample.context, langs, names,
                         ctx.seed, ctx.tracker)
    write_traces(ctx.out_dir / "mark_traces" / f"{model.name}.jsonl", mark, model.name)
    resp = responses(mark + base, {r.id: r.weight for r in sample.respondents},
                     {q.id: len(q.labels) for q in sample.questions.values()})
    resp["reply"] = [None] * len(mark) + [b["reply"] for b in base]
    its = items(resp, sample.global_human)
    return {"mark_traces": pd.DataFrame([trace_row(r) for r in mark]), "mark_responses": resp, "mark_items": its,
            "mark_summary": summary(resp, its, settings.reference_used, settings.bootstrap, ctx.seed,
                                    {k: int(np.argmax(v)) + 1 for k, v in sample.global_human.items()}
                                    if sample.aggregate else None),
            "mark_stages": stage_table(mark), "mark_notes": pd.DataFrame({"note": notes}, dtype=object)}


def combine(tables: dict[str, pd.DataFrame], settings: MarkSettings,
            ctx: LayerContext | None = None) -> dict[str, pd.DataFrame]:
    summ = tables.get("mark_summary")
    return {"mark_table3": table3(summ)} if summ is not None and len(summ) else {}
