"""Loader for GlobalOpinionQA (Durmus et al. 2023), CSV or the Hugging Face dataset.

Columns ``question, selections, options, source``. ``selections`` is a stringified
``defaultdict(<class 'list'>, {'Country': [fractions...], ...})`` and ``options`` a
stringified list. Both are parsed with :func:`ast.literal_eval` on the literal only
(the ``defaultdict(...)`` wrapper is stripped first); nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import re
from pathlib import Path
from typing import Any

from valuelens.data.cao2025 import finite, safe_sum, show
from valuelens.data.survey import LABELS, HumanDistribution, Question, Survey, read_text
from valuelens.errors import ValueLensError

HF_DATASET = "Anthropic/llm_global_opinions"
EXACT = 1e-3   # sums within this of 1 are taken as they are (still divided by the sum)
RENORM = 0.05  # sums within this of 1 are renormalised with a note; beyond it is an error
_WRAPPER = re.compile(r"^\s*defaultdict\(\s*<class\s+'list'>\s*,\s*(.*)\)\s*$", re.S)
_COLUMNS = ("question", "selections", "options")


def _literal(text: Any, where: str, field: str, kind: type) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise ValueLensError(f"{where}, field {field!r}: empty")
    m = _WRAPPER.match(text)
    body = (m.group(1) if m else text).strip()
    try:
        value = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueLensError(f"{where}, field {field!r}: not a Python {kind.__name__} literal") from None
    if not isinstance(value, kind):
        raise ValueLensError(f"{where}, field {field!r}: expected a {kind.__name__}, got {type(value).__name__}")
    return value


def _read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    text = read_text(path, "utf-8-sig")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueLensError(f"{path}: header lacks column(s) {', '.join(missing)} (found {header[:6]})")
        rows = []
        for i, row in enumerate(reader):
            where = f"{path}: line {reader.line_num} (goqa-{i})"
            if None in row:
                raise ValueLensError(f"{where}: more fields than the header has columns")
            rows.append((where, row))
    except csv.Error as e:
        raise ValueLensError(f"{path}: invalid CSV near line {reader.line_num}: {e}") from None
    return rows


def _from_hub() -> list[tuple[str, dict[str, Any]]]:
    hint = f"download the CSV (https://huggingface.co/datasets/{HF_DATASET}) and pass its path"
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ValueLensError(f"GlobalOpinionQA: no path given and Hugging Face is set offline; {hint}")
    try:
        import datasets  # optional; not a dependency of valuelens
    except ImportError:
        raise ValueLensError(f"GlobalOpinionQA: no path given and the 'datasets' library is not installed; {hint}") from None
    try:
        table = datasets.load_dataset(HF_DATASET, split="train")
        rows = [dict(r) for r in table]
    except Exception as e:  # network and hub failures come in many types
        raise ValueLensError(f"GlobalOpinionQA: no path given and {HF_DATASET} could not be loaded "
                             f"({type(e).__name__}: {str(e)[:80]}); {hint}") from None
    return [(f"{HF_DATASET}: row {i} (goqa-{i})", r) for i, r in enumerate(rows)]


def load_global_opinions(path: str | Path | None = None) -> Survey:
    """Load GlobalOpinionQA from a CSV path, or from the Hugging Face hub when ``path`` is None."""
    rows = _from_hub() if path is None else _read_csv(Path(path))
    origin = HF_DATASET if path is None else Path(path).name
    if not rows:
        raise ValueLensError(f"{origin}: no rows")
    questions: dict[str, Question] = {}
    dists: list[HumanDistribution] = []
    renormalised: list[str] = []
    too_many = 0
    for i, (where, row) in enumerate(rows):
        for c in _COLUMNS:
            if row.get(c) in (None, ""):
                raise ValueLensError(f"{where}: missing field {c!r}")
        text = str(row["question"]).strip()
        if not text:
            raise ValueLensError(f"{where}, field 'question': empty")
        options = _literal(row["options"], where, "options", list)
        if not options:
            raise ValueLensError(f"{where}, field 'options': empty list")
        if len(options) < 2:
            raise ValueLensError(f"{where}, field 'options': only one option")
        if not all(isinstance(o, (str, int, float)) and not isinstance(o, bool) and str(o).strip() for o in options):
            raise ValueLensError(f"{where}, field 'options': every option must be a non-empty string")
        selections = _literal(row["selections"], where, "selections", dict)
        if not selections:
            raise ValueLensError(f"{where}, field 'selections': no countries")
        if len(options) > len(LABELS):
            too_many += 1
            continue
        qid = f"goqa-{i}"
        probs_by_country = []
        for country, values in selections.items():
            at = f"{where}, field 'selections', country {country!r}"
            if not isinstance(country, str) or not country.strip():
                raise ValueLensError(f"{where}, field 'selections': country keys must be non-empty strings")
            if not isinstance(values, list) or len(values) != len(options):
                n = len(values) if isinstance(values, list) else type(values).__name__
                raise ValueLensError(f"{at}: {n} values for {len(options)} options")
            nums = [finite(v) for v in values]
            for v, f in zip(values, nums):
                if f is None:
                    raise ValueLensError(f"{at}: {show(v)} is not a finite number")
                if f < 0:
                    raise ValueLensError(f"{at}: negative value {f}")
            checked = [f for f in nums if f is not None]  # every value (None was refused above)
            total = safe_sum(checked)
            if abs(total - 1) > RENORM:
                raise ValueLensError(f"{at}: values sum to {total:.6g}, not ≈1")
            if abs(total - 1) > EXACT:
                renormalised.append(f"goqa-{i}/{country}")
            probs_by_country.append(HumanDistribution(qid, country.strip(), tuple(v / total for v in checked)))
        questions[qid] = Question(qid, {"en": text}, {"en": tuple(str(o).strip() for o in options)},
                                  ordinal=False, source="global_opinions",
                                  extra={"survey": str(row.get("source") or "")})
        dists.extend(probs_by_country)
    notes = [f"{origin}: {len(rows)} rows, {len(questions)} questions, "
             f"{len({d.country for d in dists})} countries, {len(dists)} distributions (fractions, sums ≈ 1)",
             "ordinal unknown in GlobalOpinionQA: questions marked non-ordinal"]
    if renormalised:
        notes.append(f"{origin}: {len(renormalised)} distributions summed to 1±(0.1%–5%) and were renormalised "
                     f"(e.g. {', '.join(renormalised[:3])})")
    if too_many:
        notes.append(f"{origin}: {too_many} questions with more than {len(LABELS)} options skipped (no option letters)")
    return Survey(questions, dists, "global_opinions", notes)
