"""The report's fixed texts in English and Chinese (``report.language: en | zh``).

English text is the key: ``tr("Summary")`` is "Summary" in an English report and
"摘要" in a Chinese one; placeholders are filled after the lookup
(``tr("{n} flags", n=3)``), so a translation may move them. Strings defined at
import time are marked with :func:`N_` and translated where they are shown.
Data (model names, prompts, answers, table columns, countries, values from the
tables) is never translated. Every key has a Chinese entry in :data:`ZH`
(tests/test_report_i18n.py checks it, and that a Chinese report shows none of
the English texts); a text missing there is shown in English and recorded in
:data:`MISSING`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .i18n_zh import ZH

LANGUAGES = ("en", "zh")
_current: ContextVar[str] = ContextVar("valuelens_report_language", default="en")
MISSING: set[str] = set()


def current() -> str:
    """The language the report is being written in."""
    return _current.get()


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Write the report's fixed texts in ``lang`` (en | zh) inside the block."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown report language {lang!r} (en or zh)")
    token = _current.set(lang)
    try:
        yield
    finally:
        _current.reset(token)


def N_(text: str) -> str:
    """Marks a fixed text defined at import time; translate it with :func:`tr` where it is shown."""
    return text


def tr(text: str, **values: object) -> str:
    """``text`` in the report's language, its ``{placeholders}`` filled from ``values``."""
    out = text
    if _current.get() == "zh" and text:
        got = ZH.get(text)
        if got is None:
            MISSING.add(text)
        else:
            out = got
    return out.format(**values) if values else out


def tr_known(text: str) -> str:
    """``text`` translated when the table has it, else as it is (names that come from run.json: a layer's
    title, a metric label of a layer the report does not know)."""
    return ZH.get(text, text) if _current.get() == "zh" else text


def plural(n: int, one: str, many: str, **values: object) -> str:
    """``one`` or ``many`` (English keys; Chinese has one form), filled with ``n`` and ``values``."""
    return tr(one if n == 1 else many, n=n, **values)
