"""Survey questions: schema and the loader for our questionnaire JSON format.

Format (the built-in ``demo_survey.json`` is an example)::

    {"questions": [{"id": "D01", "dimension": "IDV", "ordinal": true,
                    "text": {"en": "...", "zh": "..."},
                    "options": {"en": ["...", ...], "zh": ["...", ...]}}]}
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from valuelens.errors import ValueLensError

LABELS = "ABCDEFGHIJ"  # the most options the questionnaire, WVS and GlobalOpinionQA loaders accept
ALL_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # option letters; cao2025 files have up to 26 options
MAX_DATA_BYTES = 32 << 20  # survey JSON/CSV files; the largest real ones are under 2 MB


@dataclass(frozen=True)
class Question:
    id: str
    text: dict[str, str]
    options: dict[str, tuple[str, ...]]
    dimension: str = ""
    ordinal: bool = True
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def labels(self) -> tuple[str, ...]:
        n = len(next(iter(self.options.values())))
        return tuple(ALL_LABELS[:n])

    def languages(self) -> set[str]:
        return set(self.text) & set(self.options)


@dataclass(frozen=True)
class HumanDistribution:
    """Human answer shares for one question in one population.

    ``probs`` follows the question's option order and sums to 1. ``group`` is
    "" for a whole country, else a demographic cell such as
    ``"sex=female;age=30-49"``. ``n`` is the respondent count when known.
    """

    question_id: str
    country: str
    probs: tuple[float, ...]
    group: str = ""
    n: int | None = None


@dataclass
class Survey:
    """Questions plus human distributions, from one source."""

    questions: dict[str, Question]
    distributions: list[HumanDistribution]
    source: str
    notes: list[str] = field(default_factory=list)  # what a loader detected (e.g. percent vs fractions)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # items left out: file, item, question_id, country, reason

    def countries(self) -> list[str]:
        return sorted({d.country for d in self.distributions})

    @cached_property
    def _index(self) -> dict[tuple[str, str, str], HumanDistribution]:
        return {(d.question_id, d.country, d.group): d for d in self.distributions}

    def lookup(self, question_id: str, country: str, group: str = "") -> HumanDistribution | None:
        return self._index.get((question_id, country, group))


def _builtin(name: str) -> Any:
    return json.loads(resources.files("valuelens.data").joinpath(name).read_text(encoding="utf-8"))


def check_size(path: Path, limit: int = MAX_DATA_BYTES) -> None:
    """Refuse a data file over ``limit`` bytes before reading it (a missing
    file is left to the reader's own error)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size > limit and path.is_file():
        raise ValueLensError(f"{path}: {size} bytes, larger than the {limit >> 20} MiB limit for this kind of data file")


def read_text(path: Path, encoding: str = "utf-8", limit: int = MAX_DATA_BYTES) -> str:
    """A data file's text, or a one-line error naming the file (missing, a
    directory, over ``limit`` bytes, not ``encoding``, unreadable)."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a FIFO would hang, /dev/zero never ends
            raise ValueLensError(f"{path}: not a regular file ({_kind(mode)}); give a file")
        check_size(path, limit)
        with path.open("rb") as f:  # never more than limit + 1 bytes, whatever stat said
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueLensError(f"{path}: larger than the {limit >> 20} MiB limit for this kind of data file")
        return data.decode(encoding)
    except FileNotFoundError:
        raise ValueLensError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ValueLensError(f"{path}: is a directory, expected a file") from None
    except UnicodeDecodeError as e:
        raise ValueLensError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:  # no permission, ...
        raise ValueLensError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


def _kind(mode: int) -> str:
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def read_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueLensError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ValueLensError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit
        raise ValueLensError(f"{path}: invalid JSON ({str(e).splitlines()[0][:80]})") from None


def parse_questions(raw: Any, origin: str) -> list[Question]:
    if not isinstance(raw, dict) or not isinstance(raw.get("questions"), list) or not raw["questions"]:
        raise ValueLensError(f"{origin}: expected an object with a non-empty 'questions' list")
    out, seen = [], set()
    for i, q in enumerate(raw["questions"]):
        where = f"{origin}: questions[{i}]"
        if not isinstance(q, dict):
            raise ValueLensError(f"{where}: expected an object")
        qid = q.get("id")
        if not isinstance(qid, str) or not qid:
            raise ValueLensError(f"{where}: 'id' must be a non-empty string")
        if qid in seen:
            raise ValueLensError(f"{where}: duplicate id {qid!r}")
        seen.add(qid)
        text, options = q.get("text"), q.get("options")
        if not isinstance(text, dict) or not text or not all(isinstance(v, str) and v.strip() for v in text.values()):
            raise ValueLensError(f"{where} ({qid}): 'text' must map language codes to non-empty strings")
        if not isinstance(options, dict) or set(options) != set(text):
            raise ValueLensError(f"{where} ({qid}): 'options' must have the same languages as 'text'")
        sizes = set()
        for lang, opts in options.items():
            if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) and o.strip() for o in opts):
                raise ValueLensError(f"{where} ({qid}): options[{lang!r}] must list at least 2 non-empty strings")
            sizes.add(len(opts))
        if len(sizes) != 1 or sizes.pop() > len(LABELS):
            raise ValueLensError(f"{where} ({qid}): every language needs the same number of options (at most {len(LABELS)})")
        out.append(Question(qid, dict(text), {k: tuple(v) for k, v in options.items()},
                            str(q.get("dimension", "")), bool(q.get("ordinal", True)), str(q.get("source", origin))))
    return out


def load_questionnaire(source: str) -> list[Question]:
    """``builtin`` (the demo questionnaire) or a path to a JSON file."""
    if source == "builtin":
        return parse_questions(_builtin("demo_survey.json"), "builtin demo_survey.json")
    path = Path(source)
    return parse_questions(read_json(path), str(path))


def country_names() -> dict[str, dict[str, str]]:
    """Country → {language: name}; English is the key itself."""
    table = _builtin("countries.json")["countries"]
    return {c: {"en": c, **v} for c, v in table.items()}
