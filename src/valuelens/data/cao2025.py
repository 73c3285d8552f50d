"""Loader for the survey JSON of Cao et al. 2025 (NAACL), e.g. ``sft_wvs_valid.json``.

Each file is a list of ``{id, instruction, input, options, options_dist, data_type}``:
the country sits in ``instruction`` ("How would someone from {country} answer the
following question:" or "来自{country}的人会如何回答以下问题："), the question is
``input`` up to "Here are the options:" / "以下是选项：", ``options`` are "(A)text"
strings and ``options_dist`` maps letters to percents (or fractions; detected per
file). Distributions are normalised to fractions summing to 1.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from valuelens.data.survey import LABELS, HumanDistribution, Question, Survey, read_json
from valuelens.errors import ValueLensError

_COUNTRY = re.compile(r"How would someone from\s+(.+?)\s+answer the following question|来自\s*(.+?)\s*的人会如何回答以下问题")
_TAIL = re.compile(r"\s*(Here are the options\s*:|以下是选项\s*[:：])\s*$")
_OPTION = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.S)
TOLERANCE = 0.02  # a raw sum may be off by at most 2% of the detected scale


def finite(v: Any) -> float | None:
    """``v`` as a finite float, or None (bools, strings, huge ints, NaN and infinities)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def show(v: Any) -> str:
    """A short printable form of a bad value for error messages."""
    s = str(v)
    return s if len(s) <= 24 else s[:21] + "..."


def safe_sum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def _parse_items(path: Path) -> list[dict[str, Any]]:
    """Validate one file; returns per item: index, id, country, text, options, raw dist, raw sum."""
    raw = read_json(path)
    if not isinstance(raw, list) or not raw:
        raise ValueLensError(f"{path}: expected a non-empty JSON list of items")
    out = []
    for i, item in enumerate(raw):
        where = f"{path}: item {i}"
        if not isinstance(item, dict):
            raise ValueLensError(f"{where}: expected an object")
        for key in ("id", "instruction", "input", "options", "options_dist"):
            if key not in item:
                raise ValueLensError(f"{where}: missing field {key!r}")
        qid = item["id"]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
            raise ValueLensError(f"{where}, field 'id': expected a non-empty string or integer")
        qid = str(qid).strip()
        instr, text = item["instruction"], item["input"]
        if not isinstance(instr, str) or not (m := _COUNTRY.search(instr)):
            raise ValueLensError(f"{where} (id {qid}), field 'instruction': no country found "
                                 "(expected 'How would someone from {country} answer ...' or '来自{country}的人会如何回答以下问题')")
        country = (m.group(1) or m.group(2)).strip()
        where = f"{where} (id {qid}, {country})"
        if not isinstance(text, str) or not _TAIL.sub("", text).strip():
            raise ValueLensError(f"{where}, field 'input': expected a non-empty question string")
        opts = item["options"]
        if not isinstance(opts, list) or not opts:
            raise ValueLensError(f"{where}, field 'options': expected a non-empty list")
        if not 2 <= len(opts) <= len(LABELS):
            raise ValueLensError(f"{where}, field 'options': {len(opts)} options; expected 2 to {len(LABELS)}")
        options = []
        for j, o in enumerate(opts):
            om = _OPTION.match(o) if isinstance(o, str) else None
            if not om or om.group(1) != LABELS[j] or not om.group(2):
                raise ValueLensError(f"{where}, field 'options'[{j}]: expected '({LABELS[j]})text', got {str(o)[:40]!r}")
            options.append(om.group(2))
        dist = item["options_dist"]
        labels = LABELS[: len(options)]
        if not isinstance(dist, dict) or set(dist) != set(labels):
            got = sorted(dist) if isinstance(dist, dict) else type(dist).__name__
            raise ValueLensError(f"{where}, field 'options_dist': keys {got} do not match the option letters {list(labels)}")
        values = []
        for letter in labels:
            v = finite(dist[letter])
            if v is None:
                raise ValueLensError(f"{where}, field 'options_dist'[{letter!r}]: expected a finite number, "
                                     f"got {show(dist[letter])}")
            if v < 0:
                raise ValueLensError(f"{where}, field 'options_dist'[{letter!r}]: negative value {v}")
            values.append(v)
        out.append({"index": i, "id": qid, "country": country, "text": _TAIL.sub("", text).strip(),
                    "options": tuple(options), "values": values, "sum": safe_sum(values), "where": where})
    return out


def _normalise(path: Path, items: list[dict[str, Any]]) -> tuple[float, str]:
    """Detect percent vs fractions from the median sum; reject items off by > 2%."""
    median = statistics.median(it["sum"] for it in items)
    scale = 100.0 if abs(math.log(max(median, 1e-12) / 100)) < abs(math.log(max(median, 1e-12))) else 1.0
    for it in items:
        if abs(it["sum"] - scale) > TOLERANCE * scale:
            kind = "percent (≈100)" if scale == 100 else "fractions (≈1)"
            raise ValueLensError(f"{it['where']}, field 'options_dist': values sum to {it['sum']:.6g}; "
                                 f"this file holds {kind}")
        it["probs"] = tuple(v / it["sum"] for v in it["values"])
    return scale, ("percent (sums ≈ 100)" if scale == 100 else "fractions (sums ≈ 1)")


def load_cao2025(path_en: str | Path, path_zh: str | Path | None = None) -> Survey:
    """Load Cao et al. 2025 items: English file, optionally the Chinese file for zh texts."""
    path_en = Path(path_en)
    items = _parse_items(path_en)
    _, kind = _normalise(path_en, items)
    notes = [f"{path_en.name}: {kind}"]
    questions: dict[str, Question] = {}
    dists: list[HumanDistribution] = []
    seen: dict[tuple[str, str], int] = {}
    for it in items:
        key = (it["id"], it["country"])
        if key in seen:
            raise ValueLensError(f"{it['where']}: duplicate of item {seen[key]} (same id and country)")
        seen[key] = it["index"]
        q = questions.get(it["id"])
        if q is None:
            extra = {"wvs": f"Q{it['id']}"} if it["id"].isdigit() else {}
            q = questions[it["id"]] = Question(it["id"], {"en": it["text"]}, {"en": it["options"]},
                                               source="cao2025", extra=extra)
        elif q.options["en"] != it["options"]:
            if len(q.options["en"]) != len(it["options"]):
                notes.append(f"{path_en.name}: item {it['index']} (id {it['id']}, {it['country']}): "
                             f"{len(it['options'])} options instead of {len(q.options['en'])}; distribution dropped")
                continue
            notes.append(f"{path_en.name}: item {it['index']} (id {it['id']}, {it['country']}): "
                         "option texts differ from the first country's; kept the first")
        dists.append(HumanDistribution(it["id"], it["country"], it["probs"]))
    countries = {d.country for d in dists}
    notes.append(f"{path_en.name}: {len(items)} items, {len(questions)} questions, {len(countries)} countries")
    notes.append("ordinal and dimension are not in the file: ordinal assumed, dimension left empty")
    if path_zh is not None:
        notes += _add_zh(Path(path_zh), questions, seen)
    return Survey(questions, dists, "cao2025", notes)


def _add_zh(path: Path, questions: dict[str, Question], en_keys: dict[tuple[str, str], int]) -> list[str]:
    """Add zh text and options per question from the Chinese file (items matched by id and country)."""
    items = _parse_items(path)
    _normalise(path, items)
    zh: dict[str, dict[str, Any]] = {}
    unmatched = 0
    for it in items:
        if (it["id"], it["country"]) not in en_keys:
            unmatched += 1
            continue
        n_en = len(questions[it["id"]].options["en"])
        if len(it["options"]) != n_en:
            raise ValueLensError(f"{it['where']}, field 'options': {len(it['options'])} options but the "
                                 f"English file has {n_en} for this question")
        zh.setdefault(it["id"], it)
    for qid, it in zh.items():
        q = questions[qid]
        questions[qid] = Question(q.id, {**q.text, "zh": it["text"]}, {**q.options, "zh": it["options"]},
                                  q.dimension, q.ordinal, q.source, q.extra)
    notes = [f"{path.name}: zh texts for {len(zh)} of {len(questions)} questions"]
    if unmatched:
        notes.append(f"{path.name}: {unmatched} items have no English counterpart (same id and country); ignored")
    return notes
