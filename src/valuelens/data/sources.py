"""One entry point for every survey source: ``load_survey(kind, path, ...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from valuelens.data.survey import Survey, load_questionnaire
from valuelens.errors import ValueLensError

KINDS = ("builtin", "cao2025", "global_opinions", "synthetic", "wvs7")
_WVS_KEYS = {"codebook", "metadata", "adjustments", "questions", "countries", "weighted", "demographics"}


def path_problem(kind: str, path: str | None, codebook: str | None) -> str | None:
    """What is wrong with a data source's paths for its kind (None: nothing);
    shared by the layers' settings models."""
    if kind not in ("builtin", "synthetic") and not path:
        return f"data kind {kind!r} needs a path"
    if kind == "synthetic" and path:
        return "data kind 'synthetic' takes no path (it is the built-in demo data)"
    if kind == "wvs7" and not codebook:
        return "data kind 'wvs7' needs a codebook path"
    return None


def load_survey(kind: str, path: str | Path | None = None, path_zh: str | Path | None = None, **kw: Any) -> Survey:
    """Load a Survey.

    - ``builtin``: our questionnaire JSON (``path`` None or "builtin" = the demo); no distributions.
    - ``cao2025``: Cao et al. 2025 JSON (``path``), Chinese texts from ``path_zh``; ``strict=True``:
      a degenerate item is an error, not skipped.
    - ``global_opinions``: GlobalOpinionQA CSV (``path``; None tries the Hugging Face hub).
    - ``synthetic``: the demo questionnaire with our generated respondents' country shares
      (:mod:`valuelens.data.synthetic`; synthetic — not human data); ``path`` must be None or "builtin".
    - ``wvs7``: WVS-7 microdata CSV (``path``) with ``codebook=`` (required), ``metadata=``,
      ``adjustments=``, ``questions=``, ``countries=``, ``weighted=``, ``demographics=``.
    """
    from valuelens.data.fetch import resolve  # fetched:NAME paths (valuelens data fetch) -> the cached files

    path, path_zh, kw = resolve(path), resolve(path_zh), {k: resolve(v) for k, v in kw.items()}

    def no_extra(allowed: set[str]) -> None:
        extra = sorted(set(kw) - allowed)
        if extra:
            raise ValueLensError(f"survey kind {kind!r}: unexpected option(s) {', '.join(extra)}")

    if path_zh is not None and kind != "cao2025":
        raise ValueLensError(f"survey kind {kind!r}: path_zh applies only to 'cao2025'")
    if kind == "builtin":
        no_extra(set())
        source = "builtin" if path in (None, "builtin") else str(path)
        questions = load_questionnaire(source)
        return Survey({q.id: q for q in questions}, [], "builtin",
                      [f"{source}: {len(questions)} questions, no human distributions"])
    if kind == "synthetic":
        no_extra(set())
        if path not in (None, "builtin"):
            raise ValueLensError("survey kind 'synthetic': takes no path (it is the built-in demo data)")
        from valuelens.data.synthetic import survey
        return survey()
    if kind == "cao2025":
        no_extra({"strict"})
        if path is None:
            raise ValueLensError("survey kind 'cao2025': give the path of the JSON file (e.g. sft_wvs_valid.json)")
        from valuelens.data.cao2025 import load_cao2025
        return load_cao2025(path, path_zh, strict=bool(kw.get("strict", False)))
    if kind == "global_opinions":
        no_extra(set())
        from valuelens.data.global_opinions import load_global_opinions
        return load_global_opinions(path)
    if kind == "wvs7":
        no_extra(_WVS_KEYS)
        if path is None or not kw.get("codebook"):
            raise ValueLensError("survey kind 'wvs7': give the microdata CSV path and codebook=<codebook.json>")
        from valuelens.data.wvs import respondents_to_survey
        return respondents_to_survey(path, kw["codebook"], kw.get("metadata"),
                                     adjustments_path=kw.get("adjustments"), questions=kw.get("questions"),
                                     countries=kw.get("countries"), weighted=kw.get("weighted", True),
                                     demographics=kw.get("demographics", True))
    raise ValueLensError(f"unknown survey kind {kind!r}; expected one of {', '.join(KINDS)}")
