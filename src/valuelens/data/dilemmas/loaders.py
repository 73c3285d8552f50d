"""Loaders: our dilemma and chain JSON(L) schema, MMD JSON, MoralChoice.

Our dilemma schema (one object per line of a ``.jsonl`` file, or a ``.json``
list)::

    {"id": "TL01", "pair": "Truth vs Loyalty", "values": ["Truth", "Loyalty"],
     "situation": {"en": "...", "zh": "..."},
     "actions": [{"en": "...", "zh": "..."}, {"en": "...", "zh": "..."}],
     "consequences": {"negative": [TEXT, TEXT], "positive": [TEXT, TEXT]}}

A TEXT is a string (English) or ``{language: text}``; a value is a name or
``{language: name}`` (the English name is the canonical one). Our chain
schema: ``{"id", "norm": TEXT, "steps": [{"situation", "dilemma",
"choices": [TEXT, TEXT], "values": [name, name], "schwartz": [name, name]}]}``
(``values``: MFT foundations; ``schwartz``, optional: Schwartz basic values),
as a JSON list or one chain per line of a ``.jsonl`` file.

MMD (Wu et al. 2025): one row per chain with ``norm`` and ``step i_situation``,
``step i_dilemma``, ``step i_choiceA``, ``step i_choiceB``,
``step i_choiceA_value``, ``step i_choiceB_value`` (``Step`` also accepted);
a value such as ``Care/Harm`` is read as ``Care``. A file may be a JSON list,
several concatenated JSON lists, or JSONL. Every malformed row is a one-line
ValueLensError naming the file, the row (1-based) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from valuelens.data.dilemmas.schema import Chain, ChainStep, Dilemma, MCScenario, MCTemplates, Text
from valuelens.data.survey import read_text
from valuelens.errors import ValueLensError

MC_TEMPLATES = ("ab", "compare", "repeat")
MC_COLUMNS = ("scenario_id", "ambiguity", "generation_type", "generation_rule", "context", "action1", "action2")


class RowError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field, self.problem = field, problem


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Objects from a JSONL file, or a JSON file holding objects or lists of them."""
    p = Path(path)
    text = read_text(p)
    out: list[Any] = []
    if p.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueLensError(f"{p} line {n}: invalid JSON: {e.msg}") from None
                except (RecursionError, ValueError) as e:  # too deep; an integer beyond Python's digit limit
                    why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:80]
                    raise ValueLensError(f"{p} line {n}: invalid JSON ({why})") from None
    else:
        dec, pos = json.JSONDecoder(), 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise ValueLensError(f"{p} line {e.lineno}: invalid JSON: {e.msg}") from None
            except (RecursionError, ValueError) as e:  # too deep; an integer beyond Python's digit limit
                why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:80]
                raise ValueLensError(f"{p} line {text.count(chr(10), 0, pos) + 1}: invalid JSON ({why})") from None
            out.extend(obj if isinstance(obj, list) else [obj])
    for i, rec in enumerate(out, 1):
        if not isinstance(rec, dict):
            raise ValueLensError(f"{p} row {i}: expected an object, got {type(rec).__name__}")
    return out


def _text(v: Any, field: str) -> Text:
    if isinstance(v, str) and v.strip():
        return {"en": v.strip()}
    if isinstance(v, dict) and v and all(isinstance(k, str) and isinstance(t, str) and t.strip() for k, t in v.items()):
        return {k: t.strip() for k, t in v.items()}
    raise RowError(field, "expected a non-empty text or {language: text}")


def _two(v: Any, field: str) -> tuple[Any, Any]:
    if not isinstance(v, list) or len(v) != 2:
        raise RowError(field, "expected a list of two entries")
    return v[0], v[1]


def _value(v: Any, field: str) -> tuple[str, Text]:
    if isinstance(v, str) and v.strip():
        return v.strip(), {}
    if isinstance(v, dict):
        names = _text(v, field)
        return names.get("en", next(iter(names.values()))), names
    raise RowError(field, "expected a value name or {language: name}")


def _req(rec: dict[str, Any], key: str) -> Any:
    if key not in rec or rec[key] is None:
        raise RowError(key, "missing")
    return rec[key]


def _rows(path: Path, records: list[dict[str, Any]], parse):
    out = []
    for i, rec in enumerate(records, 1):
        try:
            out.append(parse(rec, i))
        except RowError as e:
            raise ValueLensError(f"{path} row {i}: field {e.field!r}: {e.problem}") from None
    dup = sorted(k for k, n in Counter(x.id for x in out).items() if n > 1)
    if dup:
        raise ValueLensError(f"{path}: duplicate ids {dup[:5]}")
    if not out:
        raise ValueLensError(f"{path}: no rows")
    return out


def _dilemma(rec: dict[str, Any], row: int) -> Dilemma:
    unknown = set(rec) - {"id", "pair", "values", "situation", "actions", "consequences"}
    if unknown:
        raise RowError(sorted(unknown)[0], "unknown field")
    did = _req(rec, "id")
    if not isinstance(did, (str, int)) or not str(did).strip():
        raise RowError("id", "expected a non-empty string")
    pair = _req(rec, "pair")
    if not isinstance(pair, str) or not pair.strip():
        raise RowError("pair", "expected a non-empty string")
    v0, v1 = (_value(v, f"values[{k}]") for k, v in enumerate(_two(_req(rec, "values"), "values")))
    if v0[0] == v1[0]:
        raise RowError("values", "the two actions must serve different values")
    actions = tuple(_text(t, f"actions[{k}]") for k, t in enumerate(_two(_req(rec, "actions"), "actions")))
    neg = pos = None
    if rec.get("consequences") is not None:
        cons = rec["consequences"]
        if not isinstance(cons, dict) or set(cons) != {"negative", "positive"}:
            raise RowError("consequences", "expected {negative: [TEXT, TEXT], positive: [TEXT, TEXT]}")
        neg, pos = (tuple(_text(t, f"consequences.{kind}[{k}]") for k, t in enumerate(_two(cons[kind], f"consequences.{kind}")))
                    for kind in ("negative", "positive"))
    names = {name: tr for name, tr in (v0, v1) if tr}
    return Dilemma(str(did).strip(), pair.strip(), _text(_req(rec, "situation"), "situation"),
                   actions, (v0[0], v1[0]), neg, pos, names)  # type: ignore[arg-type]


def load_dilemmas(path: str | Path) -> list[Dilemma]:
    return _rows(Path(path), read_records(path), _dilemma)


def _step_values(vals: Any, field: str) -> tuple[str | None, str | None]:
    a, b = _two(vals, field)
    return norm_value(a), norm_value(b)


def _chain(source: str):
    def parse(rec: dict[str, Any], row: int) -> Chain:
        unknown = set(rec) - {"id", "norm", "steps"}
        if unknown:
            raise RowError(sorted(unknown)[0], "unknown field")
        steps = _req(rec, "steps")
        if not isinstance(steps, list) or not steps:
            raise RowError("steps", "expected a non-empty list")
        out = []
        for k, st in enumerate(steps):
            f = f"steps[{k}]"
            if not isinstance(st, dict):
                raise RowError(f, "expected an object")
            out.append(ChainStep(_text(st.get("situation"), f + ".situation"), _text(st.get("dilemma"), f + ".dilemma"),
                                 tuple(_text(t, f"{f}.choices[{j}]") for j, t in enumerate(_two(st.get("choices"), f + ".choices"))),  # type: ignore[arg-type]
                                 _step_values(st.get("values"), f + ".values"),
                                 (None, None) if st.get("schwartz") is None
                                 else _step_values(st["schwartz"], f + ".schwartz")))
        return Chain(str(rec.get("id", f"chain{row}")), _text(_req(rec, "norm"), "norm"), tuple(out), source)
    return parse


def load_chains(path: str | Path, source: str | None = None) -> list[Chain]:
    p = Path(path)
    return _rows(p, read_records(p), _chain(source or p.name))


def norm_value(v: Any) -> str | None:
    """``Care/Harm`` → ``Care``; empty or "None" → None."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise RowError("value", f"expected a value name, got {type(v).__name__}")
    s = v.split("/")[0].strip().strip("*`").strip()
    if not s or s.lower() in {"none", "null", "n/a"}:
        return None
    return s[0].upper() + s[1:]


_MMD_KEY = re.compile(r"^step\s*(\d+)_(situation|dilemma|choiceA|choiceB|choiceA_value|choiceB_value)$", re.I)


def _mmd(rec: dict[str, Any], row: int) -> Chain:
    steps: dict[int, dict[str, Any]] = {}
    keys: dict[tuple[int, str], str] = {}
    for key, v in rec.items():
        m = _MMD_KEY.match(key.strip())
        if m:
            i, part = int(m.group(1)), m.group(2).lower()
            steps.setdefault(i, {})[part] = v
            keys[(i, part)] = key
    norm = _req(rec, "norm")
    if not steps:
        raise RowError("step 1_situation", "missing (no 'step i_...' fields)")
    out = []
    for i in sorted(steps):
        st = steps[i]
        for part in ("situation", "dilemma", "choicea", "choiceb"):
            if not isinstance(st.get(part), str) or not st[part].strip():
                raise RowError(keys.get((i, part), f"step {i}_{part.replace('choicea', 'choiceA').replace('choiceb', 'choiceB')}"),
                               "missing or empty")
        vals = []
        for part in ("choicea_value", "choiceb_value"):
            try:
                vals.append(norm_value(st.get(part)))
            except RowError as e:
                raise RowError(keys[(i, part)], e.problem) from None
        out.append(ChainStep({"en": st["situation"].strip()}, {"en": st["dilemma"].strip()},
                             ({"en": st["choicea"].strip()}, {"en": st["choiceb"].strip()}), (vals[0], vals[1])))
    return Chain(str(rec.get("id", f"mmd{row:05d}")), _text(norm, "norm"), tuple(out), "mmd")


def load_mmd(path: str | Path) -> list[Chain]:
    p = Path(path)
    return _rows(p, read_records(p), _mmd)


def _mc_csv(path: Path) -> list[MCScenario]:
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = [c for c in MC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueLensError(f"{path}: missing column {missing[0]!r}")
        out = []
        for n, r in enumerate(reader, 1):
            for c in ("scenario_id", "context", "action1", "action2"):
                if not (r.get(c) or "").strip():
                    raise ValueLensError(f"{path} row {n}: field {c!r}: empty")
            out.append(MCScenario(r["scenario_id"].strip(), (r["ambiguity"] or "").strip(),
                                  (r["generation_rule"] or "").strip(), r["context"].strip(),
                                  r["action1"].strip(), r["action2"].strip()))
    except csv.Error as e:
        raise ValueLensError(f"{path} line {reader.line_num + 1}: invalid CSV ({e})") from None
    return out


def _formats(template: str, *args: str, **kw: str) -> bool:
    """Whether ``template.format(*args, **kw)`` works (the layer formats it later)."""
    try:
        template.format(*args, **kw)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError):
        return False
    return True


def _json_obj(path: Path) -> dict[str, Any]:
    recs = read_records(path)
    if len(recs) != 1:
        raise ValueLensError(f"{path}: expected one JSON object")
    return recs[0]


def load_moralchoice(root: str | Path, ambiguity: str = "both") -> tuple[list[MCScenario], MCTemplates]:
    """Scenarios (``low``, ``high`` or ``both``) and the templates, from the
    MoralChoice folder layout (scenarios/, question_templates/, response_templates/);
    ``fetched:moralchoice`` is the folder ``valuelens data fetch moralchoice`` downloaded."""
    from valuelens.data.fetch import resolve

    root = Path(resolve(root) if isinstance(root, str) else root)
    if not root.is_dir():
        raise ValueLensError(f"{root}: MoralChoice folder not found")
    levels = ("low", "high") if ambiguity == "both" else (ambiguity,)
    scenarios = [s for lv in levels for s in _mc_csv(root / "scenarios" / f"moralchoice_{lv}_ambiguity.csv")]
    questions, responses = {}, {}
    for name in MC_TEMPLATES:
        qp, rp = root / "question_templates" / f"{name}.json", root / "response_templates" / f"{name}.json"
        q, r = _json_obj(qp), _json_obj(rp)
        for key in ("question_header", "question"):
            if not isinstance(q.get(key), str):
                raise ValueLensError(f"{qp}: field {key!r}: missing or not a string")
        if q["question"].count("{}") != 3 or not _formats(q["question"], "c", "a", "b"):
            raise ValueLensError(f"{qp}: field 'question': expected three {{}} placeholders (context, option A, option B)")
        questions[name] = (q["question_header"], q["question"])
        sides = {}
        for side in ("A", "B"):
            pats = r.get(f"responses_{side}")
            if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
                raise ValueLensError(f"{rp}: field 'responses_{side}': expected a list of strings")
            for i, pat in enumerate(pats):
                if not _formats(pat, optionA="a", optionA_short="a", optionB="b", optionB_short="b"):
                    raise ValueLensError(f"{rp}: field 'responses_{side}'[{i}]: placeholders must be {{optionA}}, "
                                         "{optionA_short}, {optionB} or {optionB_short} (a literal brace is {{ or }})")
            sides[side] = tuple(pats)
        responses[name] = sides
    ref = root / "response_templates" / "refusals.txt"
    try:
        refusals = tuple(line.strip() for line in ref.read_text(encoding="utf-8").splitlines() if line.strip())
    except FileNotFoundError:
        raise ValueLensError(f"{ref}: file not found") from None
    except UnicodeDecodeError as e:
        raise ValueLensError(f"{ref}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ValueLensError(f"{ref}: cannot read ({e.strerror or type(e).__name__})") from None
    return scenarios, MCTemplates(questions, responses, refusals)
