"""Loader for the survey JSON of Cao et al. 2025 (NAACL), e.g. ``sft_wvs_valid.json``.

Each file is a list of ``{id, instruction, input, options, options_dist, data_type}``:
the country sits in ``instruction`` ("How would someone from {country} answer the
following question:" or "来自{country}的人会如何回答以下问题："), the question is
``input`` up to "Here are the options:" / "以下是选项：", ``options`` are "(A)text"
strings (2 to 26 options, A-Z) and ``options_dist`` maps letters to percents (or
fractions; detected per file from the median item sum).

Renormalisation rule: each item's shares are divided by their own sum; an item
is used only when that sum is within ``TOLERANCE`` (2%) of the file's scale
(100 or 1). Published files hold degenerate items (all shares 0; sums such as
1.07 in a fractions file): by default each is skipped and listed in
``Survey.skipped`` (file, item, id, country, reason); ``strict=True`` makes the
first one an error instead.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from valuelens.data.survey import ALL_LABELS as LABELS
from valuelens.data.survey import HumanDistribution, Question, Survey, read_json
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


def _normalise(path: Path, items: list[dict[str, Any]], strict: bool) -> tuple[list[dict[str, Any]], str]:
    """Detect percent vs fractions from the median non-zero sum, then apply the
    renormalisation rule; returns the usable items and the scale's name.
    Degenerate items are marked ``it["skip"]`` (a reason), or raise when strict."""
    sums = [it["sum"] for it in items if it["sum"] > 0]
    median = statistics.median(sums) if sums else 1.0
    scale = 100.0 if abs(math.log(max(median, 1e-12) / 100)) < abs(math.log(max(median, 1e-12))) else 1.0
    kind = "percent (≈100)" if scale == 100 else "fractions (≈1)"
    for it in items:
        if it["sum"] <= 0:
            reason = "all option shares are 0"
        elif abs(it["sum"] - scale) > TOLERANCE * scale:
            reason = f"values sum to {it['sum']:.6g}; this file holds {kind}"
        else:
            it["probs"] = tuple(v / it["sum"] for v in it["values"])
            continue
        if strict:
            raise ValueLensError(f"{it['where']}, field 'options_dist': {reason} (strict: true)")
        it["skip"] = reason
    return items, ("percent (sums ≈ 100)" if scale == 100 else "fractions (sums ≈ 1)")


def _skip(path: Path, it: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"file": path.name, "item": it["index"], "question_id": it["id"], "country": it["country"],
            "reason": reason}


def load_cao2025(path_en: str | Path, path_zh: str | Path | None = None, strict: bool = False) -> Survey:
    """Load Cao et al. 2025 items: English file, optionally the Chinese file for zh texts.
    ``strict``: a degenerate item is an error instead of a skipped item."""
    path_en = Path(path_en)
    items, kind = _normalise(path_en, _parse_items(path_en), strict)
    notes = [f"{path_en.name}: {kind}"]
    skipped: list[dict[str, Any]] = []
    questions: dict[str, Question] = {}
    dists: list[HumanDistribution] = []
    seen: dict[tuple[str, str], int] = {}
    for it in items:
        key = (it["id"], it["country"])
        if key in seen:
            raise ValueLensError(f"{it['where']}: duplicate of item {seen[key]} (same id and country)")
        seen[key] = it["index"]
        if "skip" in it:
            skipped.append(_skip(path_en, it, it["skip"]))
            continue
        q = questions.get(it["id"])
        if q is None:
            extra = {"wvs": f"Q{it['id']}"} if it["id"].isdigit() else {}
            q = questions[it["id"]] = Question(it["id"], {"en": it["text"]}, {"en": it["options"]},
                                               source="cao2025", extra=extra)
        elif q.options["en"] != it["options"]:
            if len(q.options["en"]) != len(it["options"]):
                reason = f"{len(it['options'])} options instead of {len(q.options['en'])}; distribution dropped"
                notes.append(f"{path_en.name}: item {it['index']} (id {it['id']}, {it['country']}): {reason}")
                skipped.append(_skip(path_en, it, reason))
                continue
            notes.append(f"{path_en.name}: item {it['index']} (id {it['id']}, {it['country']}): "
                         "option texts differ from the first country's; kept the first")
        dists.append(HumanDistribution(it["id"], it["country"], it["probs"]))
    if not dists:
        raise ValueLensError(f"{path_en}: no item has a usable distribution ({len(skipped)} degenerate items; "
                             f"first: item {skipped[0]['item']}: {skipped[0]['reason']})")
    countries = {d.country for d in dists}
    notes.append(f"{path_en.name}: {len(items)} items, {len(questions)} questions, {len(countries)} countries")
    degenerate = sum(1 for it in items if "skip" in it)
    if degenerate:
        notes.append(f"{path_en.name}: {degenerate} degenerate items skipped (all shares 0, or a sum more than "
                     f"{TOLERANCE:.0%} off the file's scale)")
    notes.append("ordinal and dimension are not in the file: ordinal assumed, dimension left empty")
    if path_zh is not None:
        notes += _add_zh(Path(path_zh), questions, seen, strict)
    return Survey(questions, dists, "cao2025", notes, skipped)


def _add_zh(path: Path, questions: dict[str, Question], en_keys: dict[tuple[str, str], int],
            strict: bool) -> list[str]:
    """Add zh text and options per question from the Chinese file (items matched by id and country).
    Its distributions are not used: a degenerate one still gives its texts (noted)."""
    items, _ = _normalise(path, _parse_items(path), strict)
    zh: dict[str, dict[str, Any]] = {}
    unmatched = 0
    for it in items:
        if (it["id"], it["country"]) not in en_keys or it["id"] not in questions:
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
    degenerate = sum(1 for it in items if "skip" in it)
    if degenerate:
        notes.append(f"{path.name}: {degenerate} items with a degenerate distribution (not used: only the "
                     "English file's distributions are)")
    if unmatched:
        notes.append(f"{path.name}: {unmatched} items have no English counterpart (same id and country); ignored")
    return notes
