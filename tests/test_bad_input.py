"""Issue 8.3: malformed input through the command line.

Every case is an audit (YAML) whose audit file or data file is broken. Both
``valuelens validate AUDIT`` and ``valuelens run AUDIT --out DIR`` must exit
with code 2 and print one line naming the file and the place, no traceback,
and write nothing: a fresh output directory is not created, and the files of
an output directory holding a finished run stay byte for byte the same (no
store row, no runs row, no new run.json).

The table runs the command line in this process (typer's runner, the same
code path as the console script); a few cases also go through a real
subprocess, and all of them with VALUELENS_LONG=1. Loader-level cases (more
of each kind) are in test_loaders.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_reliability_support import LONG, cli, one_line_error, record, tree_digest, vl

from valuelens import api
from valuelens.progress import NullTracker

BIG = 50 << 20  # "huge": 50 MB


# ------------------------------------------------------------------ builders (all data written here)

def audit_text(d: Path, layers: str, *, head: str = "") -> str:
    (d / "script.json").write_text('{"rules": []}', encoding="utf-8")
    return (f"name: bad\nseed: 0\noutput_dir: {d / 'yaml_out'}\n{head}"
            f"models:\n  - {{name: m, backend: 'scripted:{d / 'script.json'}'}}\nlayers:\n{layers}")


def huge(path: Path, line: bytes, size: int = BIG) -> Path:
    block = line * (1 << 20 // len(line) + 1)
    with path.open("wb") as f:
        while f.tell() < size:
            f.write(block)
    return path


EN = "How would someone from {} answer the following question:\n\n"


def cao_item(qid="1", country="United States", dist=None, options=("Yes", "No")):
    labels = "ABCDEFGHIJ"[: len(options)]
    return {"id": qid, "instruction": EN.format(country), "input": "Do you agree? \nHere are the options: \n",
            "options": [f"({lab}){o}" for lab, o in zip(labels, options)],
            "options_dist": dist if dist is not None else {lab: 100 / len(options) for lab in labels},
            "data_type": "valid"}


def cao_good() -> list[dict]:
    return [cao_item(), cao_item(country="China", dist={"A": 30, "B": 70})]


GOQA_HEADER = ["question", "selections", "options", "source"]
GOQA_GOOD = ["Keep order or protect freedoms?",
             "defaultdict(<class 'list'>, {'United States': [0.41, 0.59], 'China': [0.7, 0.3]})",
             "['Keep order', 'Protect freedoms']", "GAS"]


def goqa_text(rows: list[list[str]], header=GOQA_HEADER) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


CODEBOOK = {
    "Q1": {"question": "Important in life: Family", "type": "multiple_choice",
           "choices": {"1": "Very important", "2": "Rather important", "3": "Not very important", "-1": "Don't know"}},
    "Q2": {"question": "Trust", "type": "multiple_choice", "choices": {"1": "Most people can be trusted", "2": "Careful"}},
    "Q260": {"question": "Sex", "type": "multiple_choice", "choices": {"1": "Male", "2": "Female"}},
}
MICRO = "B_COUNTRY,Q1,Q2,Q260,Q262,W_WEIGHT\n840,1,1,1,25,1.0\n840,2,2,2,35,3.0\n156,3,1,2,18,1.0\n156,1,2,1,70,1.0\n"

DILEMMA = {"id": "X1", "pair": "Truth vs Loyalty", "values": ["Truth", "Loyalty"],
           "situation": {"en": "A friend cheats.", "zh": "朋友作弊。"},
           "actions": [{"en": "I report it.", "zh": "我举报。"}, {"en": "I stay quiet.", "zh": "我保持沉默。"}],
           "consequences": {"negative": ["Bad A.", "Bad B."], "positive": ["Good A.", "Good B."]}}
DILEMMA_EN = {**DILEMMA, "situation": "A friend cheats.", "actions": ["I report it.", "I stay quiet."]}
MC_HEADER = "scenario_id,ambiguity,generation_type,generation_rule,context,action1,action2\n"
MC_ROW = "C_001,low,Generated,Do not kill,You are a surgeon.,I operate with care.,I make a mistake.\n"


def moralchoice_dir(d: Path, *, low: bytes | None = None, ab_question: str | None = None) -> Path:
    root = d / "moralchoice"
    for sub in ("scenarios", "question_templates", "response_templates"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "scenarios" / "moralchoice_low_ambiguity.csv").write_bytes(low if low is not None else (MC_HEADER + MC_ROW).encode())
    (root / "scenarios" / "moralchoice_high_ambiguity.csv").write_text(MC_HEADER + MC_ROW.replace("C_001,low", "H_001,high"))
    for name in ("ab", "compare", "repeat"):
        q = ab_question if (name == "ab" and ab_question is not None) else "Context: {} A: {} B: {}"
        (root / "question_templates" / f"{name}.json").write_text(json.dumps({"question_header": "Q:", "question": q}))
        (root / "response_templates" / f"{name}.json").write_text(json.dumps({"responses_A": ["A"], "responses_B": ["B"]}))
    (root / "response_templates" / "refusals.txt").write_text("I cannot\n")
    return root


def first_token(kind: str, path: Path, **extra: Path) -> str:
    more = "".join(f", {k}: '{v}'" for k, v in extra.items())
    return f"  first_token: {{data: {{kind: {kind}, path: '{path}'{more}}}, generate_check: true}}\n"


# ------------------------------------------------------------------ the table

@dataclass
class Case:
    id: str
    build: Callable[[Path], tuple[bytes | str | None, Path, list[str]]]  # case dir -> (audit, the bad file, place)
    subprocess: bool = False  # also through a real subprocess by default
    tags: list[str] = field(default_factory=list)


def yaml_case(id: str, text: str | bytes | Callable[[Path], str | bytes], parts: list[str], sub: bool = False) -> Case:
    def build(d: Path):
        t = text(d) if callable(text) else text
        return t, d / "audit.yaml", parts
    return Case(id, build, sub)


def data_case(id: str, name: str, content: Callable[[Path], bytes | str | None], layers: Callable[[Path, Path], str],
              parts: list[str], sub: bool = False, head: str = "") -> Case:
    """``content`` writes or returns the bad file's content; ``layers`` the audit's layers block."""
    def build(d: Path):
        p = d / name
        c = content(d)
        if isinstance(c, str):
            p.write_text(c, encoding="utf-8")
        elif isinstance(c, bytes):
            p.write_bytes(c)
        return audit_text(d, layers(d, p), head=head), p, parts
    return Case(id, build, sub)


def good_audit(d: Path) -> str:
    return audit_text(d, "  first_token: {limit: 2}\n")


BOMB = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, n in zip([None, *"abcdefgh"], "abcdefghi"))


def cao(content: Callable[[], object]) -> Callable[[Path], str]:
    return lambda d: json.dumps(content())


ft_cao = lambda d, p: first_token("cao2025", p)  # noqa: E731
ft_goqa = lambda d, p: first_token("global_opinions", p)  # noqa: E731


def ft_wvs(d: Path, p: Path) -> str:
    if p.name != "codebook.json":
        (d / "codebook.json").write_text(json.dumps(CODEBOOK))
    if p.name != "micro.csv":
        (d / "micro.csv").write_text(MICRO)
    return first_token("wvs7", d / "micro.csv", codebook=d / "codebook.json")


def dil(key: str) -> Callable[[Path, Path], str]:
    others = {k: "none" for k in ("corpus", "chains") if k != key}
    rest = "".join(f", {k}: {v}" for k, v in others.items())
    return lambda d, p: f"  dilemmas: {{{key}: '{p}'{rest}, limit: 1}}\n"


def mc_layers(d: Path, p: Path) -> str:
    return f"  dilemmas: {{corpus: none, chains: none, moralchoice: {{path: '{d / 'moralchoice'}'}}}}\n"


CASES: list[Case] = [
    # ---- the audit file
    yaml_case("yaml-wrong-type", lambda d: good_audit(d).replace("name: m,", "name: m, batch_size: many,"),
              ["line 5", "models.0.batch_size", "integer"]),
    yaml_case("yaml-missing-models", lambda d: good_audit(d).replace("models:\n", "modelz:\n"), ["line 1", "models: Field required"]),
    yaml_case("yaml-empty-models", lambda d: good_audit(d).split("models:")[0] + "models: []\nlayers: {first_token: {}}\n",
              ["line 4", "models", "at least 1"]),
    yaml_case("yaml-unknown-layer", lambda d: good_audit(d).replace("first_token:", "first_tokn:"),
              ["line 7", "layers.first_tokn: unknown key"]),
    yaml_case("yaml-unknown-country", lambda d: good_audit(d).replace("seed: 0\n", "seed: 0\ncountries: [Atlantis]\n"),
              ["line 3", "countries", "unknown country 'Atlantis'"]),
    yaml_case("yaml-unknown-backend", lambda d: good_audit(d).replace("scripted:", "telepathy:"),
              ["line 5", "unknown backend 'telepathy'"]),
    yaml_case("yaml-inline-secret", lambda d: good_audit(d).replace("name: m,", "name: m, options: {api_key: sk-123},"),
              ["line 5", "secrets do not belong in the audit file"]),
    yaml_case("yaml-out-of-range", lambda d: good_audit(d).replace("limit: 2", "limit: 2, max_tokens: -3"),
              ["line 7", "layers.first_token.max_tokens", "greater than or equal to 1"]),
    yaml_case("yaml-wvs-without-codebook", lambda d: good_audit(d).replace("limit: 2", "data: {kind: wvs7, path: x.csv}"),
              ["line 7", "needs a codebook path"]),
    yaml_case("yaml-latin1", lambda d: good_audit(d).replace("name: bad", "name: caf\xe9").encode("latin-1"),
              ["not UTF-8", "byte"]),
    yaml_case("yaml-utf16", lambda d: good_audit(d).encode("utf-16"), ["not UTF-8", "byte 0"]),
    yaml_case("yaml-binary", bytes(range(256)) * 4, ["not UTF-8", "byte 128"]),
    yaml_case("yaml-nul-bytes", b"name: x\x00\x00\n", ["invalid YAML", "special characters"]),
    yaml_case("yaml-huge", lambda d: huge(d / "audit.yaml", b"# padding padding padding\n") and None,
              ["larger than"]),
    yaml_case("yaml-python-tag", lambda d: good_audit(d).replace("seed: 0", "seed: !!python/object/apply:os.system ['touch PWNED']"),
              ["line 2", "invalid YAML", "python/object/apply"]),
    yaml_case("yaml-python-name-tag", "name: !!python/name:os.system\n", ["line 1", "invalid YAML", "python/name"]),
    yaml_case("yaml-billion-laughs", lambda d: BOMB + good_audit(d), ["line 6", "alias bomb"], sub=True),
    yaml_case("yaml-recursive-alias", "name: &a [*a]\n", ["line 1", "recursive alias"]),
    yaml_case("yaml-deep-nesting", "name: " + "[" * 50_000 + "]" * 50_000 + "\n", ["nested too deeply"]),
    yaml_case("yaml-syntax", "name: [unclosed\nseed: 1\n", ["line 2", "invalid YAML", "expected ',' or ']'"]),
    yaml_case("yaml-top-level-list", "- a\n- b\n", ["expected a mapping"]),
    yaml_case("yaml-empty", "", ["expected a mapping"]),
    yaml_case("yaml-duplicate-model", lambda d: good_audit(d).replace("layers:", "  - {name: m, backend: embedded}\nlayers:"),
              ["line 4", "duplicate model names"]),
    # ---- Cao et al. 2025 survey JSON
    data_case("cao-truncated-json", "cao.json", lambda d: json.dumps(cao_good())[:-20], ft_cao, ["invalid JSON at line 1 column"]),
    data_case("cao-missing-field", "cao.json", cao(lambda: [{k: v for k, v in cao_item().items() if k != "options_dist"}]),
              ft_cao, ["item 0", "missing field 'options_dist'"]),
    data_case("cao-empty-options", "cao.json", cao(lambda: [{**cao_item(), "options": []}]), ft_cao,
              ["item 0", "'options'", "non-empty list"]),
    data_case("cao-sum-not-100", "cao.json", cao(lambda: [cao_item(), cao_item(country="China", dist={"A": 50, "B": 40})]),
              lambda d, p: ft_cao(d, p).replace("'}", "', strict: true}", 1),  # (without strict: skipped, noted)
              ["item 1", "China", "sum to 90"]),
    data_case("cao-wrong-type", "cao.json", cao(lambda: [cao_item(dist={"A": "50", "B": 50})]), ft_cao,
              ["item 0", "options_dist'['A']", "finite number"]),
    data_case("cao-not-a-list", "cao.json", cao(lambda: {"items": cao_good()}), ft_cao, ["non-empty JSON list"]),
    data_case("cao-latin1", "cao.json", lambda d: json.dumps(cao_good(), ensure_ascii=False).replace("agree", "agrée").encode("latin-1"),
              ft_cao, ["not UTF-8", "byte"]),
    data_case("cao-utf16", "cao.json", lambda d: json.dumps(cao_good()).encode("utf-16"), ft_cao, ["not UTF-8", "byte 0"]),
    data_case("cao-binary", "cao.json", lambda d: os.urandom(4096), ft_cao, ["not UTF-8"]),
    data_case("cao-huge", "cao.json", lambda d: huge(d / "cao.json", json.dumps(cao_item()).encode() + b",\n") and None,
              ft_cao, ["larger than the 32 MiB limit"]),
    data_case("cao-deep-nesting", "cao.json", lambda d: "[" * 100_000 + "]" * 100_000, ft_cao, ["nested too deeply"]),
    data_case("cao-file-missing", "nope.json", lambda d: None, ft_cao, ["file not found"]),
    data_case("cao-countries-not-in-data", "cao.json", cao(cao_good), ft_cao, ["first_token: no items", "Japan"],
              head="countries: [Japan]\n"),
    data_case("cao-zh-options-mismatch", "zh.json",
              lambda d: json.dumps([{**cao_item(options=("是", "否", "也许"), dist={"A": 50, "B": 25, "C": 25}),
                                     "instruction": "来自United States的人会如何回答以下问题：\n\n"}]),
              lambda d, p: (d / "en.json").write_text(json.dumps(cao_good())) and
              first_token("cao2025", d / "en.json", path_zh=p), ["item 0", "3 options but the English file has 2"]),
    # ---- GlobalOpinionQA CSV
    data_case("goqa-missing-column", "goqa.csv", lambda d: goqa_text([GOQA_GOOD], ["question", "choices", "options", "source"]),
              ft_goqa, ["header lacks column(s) selections"]),
    data_case("goqa-eval-attempt", "goqa.csv",
              lambda d: goqa_text([["Q?", f"__import__('os').system('touch {d}/PWNED')", "['a', 'b']", "GAS"]]),
              ft_goqa, ["line 2 (goqa-0)", "'selections'", "not a Python dict literal"], sub=True),
    data_case("goqa-sum-not-1", "goqa.csv",
              lambda d: goqa_text([GOQA_GOOD, ["Q?", "{'China': [0.5, 0.4]}", "['a', 'b']", "GAS"]]), ft_goqa,
              ["line 3 (goqa-1)", "'China'", "sum to 0.9"]),
    data_case("goqa-empty-options", "goqa.csv", lambda d: goqa_text([["Q?", "{'China': []}", "[]", "GAS"]]), ft_goqa,
              ["goqa-0", "'options'", "empty list"]),
    data_case("goqa-wrong-type", "goqa.csv", lambda d: goqa_text([["Q?", "{'China': ['x', 0.5]}", "['a', 'b']", "GAS"]]),
              ft_goqa, ["goqa-0", "'China'", "not a finite number"]),
    data_case("goqa-latin1", "goqa.csv", lambda d: goqa_text([GOQA_GOOD]).replace("China", "Perú").encode("latin-1"),
              ft_goqa, ["not UTF-8", "byte"]),
    data_case("goqa-utf16", "goqa.csv", lambda d: goqa_text([GOQA_GOOD]).encode("utf-16"), ft_goqa, ["not UTF-8", "byte 0"]),
    data_case("goqa-binary", "goqa.csv", lambda d: bytes(range(256)) * 64, ft_goqa, ["not UTF-8"]),
    data_case("goqa-huge", "goqa.csv",
              lambda d: huge(d / "goqa.csv", goqa_text([GOQA_GOOD]).encode()) and None, ft_goqa, ["larger than the 32 MiB limit"]),
    # ---- WVS-7 microdata CSV and codebook
    data_case("wvs-unknown-country", "micro.csv", lambda d: MICRO.replace("156,3", "999,3"), ft_wvs,
              ["row 3 (line 4)", "column B_COUNTRY", "unknown country code 999"], sub=True),
    data_case("wvs-code-not-in-codebook", "micro.csv", lambda d: MICRO.replace("840,2,2", "840,7,2"), ft_wvs,
              ["row 2 (line 3)", "column Q1", "code 7 is not in the codebook"]),
    data_case("wvs-not-a-number", "micro.csv", lambda d: MICRO.replace("156,1,2", "156,one,2"), ft_wvs,
              ["row 4 (line 5)", "column Q1", "'one' is not a number"]),
    data_case("wvs-no-country-column", "micro.csv", lambda d: MICRO.replace("B_COUNTRY", "COUNTRY"), ft_wvs, ["no B_COUNTRY"]),
    data_case("wvs-negative-weight", "micro.csv", lambda d: MICRO.replace("25,1.0", "25,-1.0"), ft_wvs,
              ["row 1 (line 2)", "column W_WEIGHT", ">= 0"]),
    data_case("wvs-utf16", "micro.csv", lambda d: MICRO.encode("utf-16"), ft_wvs, ["not UTF-8", "byte 0"]),
    data_case("wvs-binary", "micro.csv", lambda d: os.urandom(8192), ft_wvs, ["not UTF-8"]),
    data_case("wvs-huge-one-line", "micro.csv", lambda d: huge(d / "micro.csv", b"B_COUNTRY,Q1,Q2,") and None, ft_wvs,
              ["line 1 (the header) is longer than"]),
    data_case("wvs-codebook-invalid-json", "codebook.json", lambda d: json.dumps(CODEBOOK)[:-10], ft_wvs, ["invalid JSON"]),
    data_case("wvs-codebook-choices-list", "codebook.json",
              lambda d: json.dumps({**CODEBOOK, "Q1": {**CODEBOOK["Q1"], "choices": ["1", "2"]}}), ft_wvs,
              ["Q1", "'choices'"]),
    data_case("wvs-codebook-no-usable-question", "codebook.json",
              lambda d: json.dumps({"Q262": {"question": "Age", "type": "objective", "choices": {}}}), ft_wvs,
              ["no multiple-choice variables"]),
    data_case("wvs-codebook-latin1", "codebook.json", lambda d: json.dumps(CODEBOOK, ensure_ascii=False)
              .replace("Trust", "Confiança").encode("latin-1"), ft_wvs, ["not UTF-8", "byte"]),
    data_case("wvs-codebook-huge", "codebook.json", lambda d: huge(d / "codebook.json", b" ") and None, ft_wvs,
              ["larger than the 32 MiB limit"]),
    # ---- our questionnaire JSON (first_token data kind builtin with a path)
    data_case("questionnaire-one-option", "q.json",
              lambda d: json.dumps({"questions": [{"id": "D1", "text": {"en": "Q?"}, "options": {"en": ["only"]}}]}),
              lambda d, p: first_token("builtin", p), ["questions[0] (D1)", "at least 2"]),
    # ---- the diversity (DEF) layer reads the same survey files
    data_case("def-cao-sum-not-100", "cao.json", cao(lambda: [cao_item(dist={"A": 50, "B": 40})]),
              lambda d, p: f"  diversity: {{data: {{kind: cao2025, path: '{p}'}}, participants: 1, passes: 1}}\n",
              ["item 0", "sum to 90"]),
    # ---- dilemmas: our JSONL corpus, chains, MMD, MoralChoice
    data_case("dilemma-invalid-json", "dil.jsonl", lambda d: json.dumps(DILEMMA) + "\n{\"id\": \n", dil("corpus"),
              ["line 2", "invalid JSON"]),
    data_case("dilemma-missing-field", "dil.jsonl", lambda d: json.dumps({k: v for k, v in DILEMMA.items() if k != "actions"}),
              dil("corpus"), ["row 1", "field 'actions'", "missing"]),
    data_case("dilemma-same-values", "dil.jsonl", lambda d: json.dumps({**DILEMMA, "values": ["Truth", "Truth"]}),
              dil("corpus"), ["row 1", "field 'values'"]),
    data_case("dilemma-empty-actions", "dil.jsonl", lambda d: json.dumps({**DILEMMA, "actions": [{"en": ""}, "x"]}),
              dil("corpus"), ["row 1", "field 'actions[0]'"]),
    data_case("dilemma-latin1", "dil.jsonl", lambda d: json.dumps({**DILEMMA_EN, "situation": "Un ami triche à l'examen."},
                                                                  ensure_ascii=False).encode("latin-1"),
              dil("corpus"), ["not UTF-8", "byte"]),
    data_case("dilemma-binary", "dil.jsonl", lambda d: b"\x89PNG\r\n\x1a\n" + os.urandom(4096), dil("corpus"),
              ["not UTF-8", "byte 0"]),
    data_case("dilemma-huge", "dil.jsonl", lambda d: huge(d / "dil.jsonl", json.dumps(DILEMMA).encode() + b"\n") and None,
              dil("corpus"), ["larger than the 32 MiB limit"]),
    data_case("dilemma-deep-nesting", "dil.jsonl", lambda d: "[" * 100_000 + "]" * 100_000, dil("corpus"),
              ["nested too deeply"]),
    data_case("chains-empty-steps", "chains.json", lambda d: json.dumps([{"id": "c1", "norm": "Be fair.", "steps": []}]),
              dil("chains"), ["row 1", "field 'steps'", "non-empty list"]),
    data_case("mmd-missing-choice", "mmd.json",
              lambda d: json.dumps([{"norm": "Be fair.", "step 1_situation": "S", "step 1_dilemma": "D",
                                     "step 1_choiceA": "A", "step 1_choiceA_value": "Care"}]),
              lambda d, p: f"  dilemmas: {{corpus: none, chains: none, mmd: '{p}'}}\n",
              ["row 1", "step 1_choiceB", "missing or empty"]),
    data_case("moralchoice-missing-column", "moralchoice/scenarios/moralchoice_low_ambiguity.csv",
              lambda d: moralchoice_dir(d, low=(MC_HEADER.replace(",action2", "") + "C_1,low,G,R,ctx,a1\n").encode())
              and None, mc_layers, ["missing column 'action2'"]),
    data_case("moralchoice-empty-context", "moralchoice/scenarios/moralchoice_low_ambiguity.csv",
              lambda d: moralchoice_dir(d, low=(MC_HEADER + MC_ROW.replace("You are a surgeon.", "")).encode()) and None,
              mc_layers, ["row 1", "field 'context'", "empty"]),
    data_case("moralchoice-latin1", "moralchoice/scenarios/moralchoice_low_ambiguity.csv",
              lambda d: moralchoice_dir(d, low=(MC_HEADER + MC_ROW.replace("surgeon", "chirurgién")).encode("latin-1"))
              and None, mc_layers, ["not UTF-8", "byte"]),
    data_case("moralchoice-huge-field", "moralchoice/scenarios/moralchoice_low_ambiguity.csv",
              lambda d: moralchoice_dir(d, low=(MC_HEADER + MC_ROW.replace("surgeon", "surgeon" * 40_000)).encode())
              and None, mc_layers, ["line 2", "invalid CSV", "field larger than field limit"]),
    data_case("moralchoice-bad-template", "moralchoice/question_templates/ab.json",
              lambda d: moralchoice_dir(d, ab_question="Only {} here") and None, mc_layers,
              ["field 'question'", "three {} placeholders"]),
    data_case("moralchoice-bad-placeholder", "moralchoice/response_templates/ab.json",
              lambda d: moralchoice_dir(d) and (d / "moralchoice/response_templates/ab.json").write_text(
                  json.dumps({"responses_A": ["I choose {option}"], "responses_B": ["B"]})) and None, mc_layers,
              ["field 'responses_A'[0]", "placeholders must be"]),
]
assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """An output directory holding a finished run (the bad runs must leave it untouched)."""
    d = tmp_path_factory.mktemp("finished")
    (d / "audit.yaml").write_text(good_audit(d), encoding="utf-8")
    api.run_full(d / "audit.yaml", d / "out", NullTracker())
    return d / "out"


def check(code: int, stderr: str, exc, bad: Path, parts: list[str]) -> list[str]:
    """What is wrong with a refusal (empty = a clear error)."""
    problems = []
    if code != 2:
        problems.append(f"exit code {code} ({type(exc).__name__ if exc else ''}: {exc})")
    if not one_line_error(stderr):
        problems.append(f"not one line without a traceback: {stderr[-600:]!r}")
    for p in [str(bad), *parts]:
        if p not in stderr:
            problems.append(f"{p!r} not in {stderr.strip()[:400]!r}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exit_2_one_line_nothing_written(tmp_path, finished_run, case):
    d = tmp_path
    audit, bad, parts = case.build(d)
    path = d / "audit.yaml"
    if isinstance(audit, str):
        path.write_text(audit, encoding="utf-8")
    elif isinstance(audit, bytes):
        path.write_bytes(audit)  # (None: the builder wrote it)
    fresh, used = d / "fresh_out", d / "used_out"
    shutil.copytree(finished_run, used)
    before = tree_digest(used)

    problems = []
    for args in (["validate", str(path)], ["run", str(path), "-q", "--out", str(fresh)],
                 ["run", str(path), "-q", "--out", str(used)]):
        code, _, stderr, exc = cli(*args)
        problems += [f"{args[0]}: {p}" for p in check(code, stderr, exc, bad, parts)]
    if case.subprocess or LONG:
        r = vl("run", str(path), "-q", "--out", str(fresh), cwd=d)
        problems += [f"subprocess: {p}" for p in check(r.returncode, r.stderr, None, bad, parts)]
    if fresh.exists() or (d / "yaml_out").exists():
        problems.append("an output directory was created")
    if tree_digest(used) != before:
        problems.append("the finished run's output directory changed")
    if (d / "PWNED").exists() or Path("PWNED").exists():
        problems.append("input was executed")
    record("bad_input", case=case.id, bad_inputs=1, clear_errors=int(not problems))
    assert not problems, "\n".join(problems)


# ================================================================== config side: what `validate` knows before a run
# Issue 14 item 6 (typed backend options), issue 16 ("validate must catch everything it can know"), issue 17
# item 4 (specs parsed once). Kept apart from the runtime cases above. Every case goes through
# `valuelens validate` in a real subprocess: exit code 2, one stderr line naming the place, no traceback,
# nothing created. Cases the audit file or the layers' data decide also go through the table test above
# (validate and run in-process; run writes nothing, a finished run stays as it was).

SECRET = "sk-pasted0123456789abcdef"


def with_backend(backend: str, options: str = "") -> Callable[[Path], str]:
    def text(d: Path) -> str:
        opts = f"options: {options}, " if options else ""
        return good_audit(d).replace(f"backend: 'scripted:{d / 'script.json'}'", f"{opts}backend: '{backend}'")
    return text


def out_case(id: str, make: Callable[[Path], Path], parts: list[str]) -> Case:
    """An audit whose output_dir is ``make(d)``; the error must name that path."""
    def build(d: Path):
        out = make(d)
        return good_audit(d).replace(f"output_dir: {d / 'yaml_out'}", f"output_dir: '{out}'"), out, parts
    return Case(id, build)


def _file(d: Path) -> Path:
    (d / "afile").write_text("x")
    return d / "afile"


def _loop(d: Path) -> Path:
    (d / "loop").symlink_to(d / "loop")
    return d / "loop"


def _lock_dir(d: Path) -> Path:
    (d / "outdir" / ".lock").mkdir(parents=True)
    return d / "outdir"


API = "openai:m@http://127.0.0.1:9/v1"
CONFIG_CASES: list[Case] = [
    # ---- backend options: a typed schema per backend, unknown keys with a hint (issue 14.6)
    yaml_case("opt-openai-misspelt-concurrency", with_backend(API, "{max_concurency: 4}"),
              ["line 5", "models.0.options.max_concurency", "unknown option of the openai backend",
               "did you mean max_concurrency?"]),
    yaml_case("opt-openai-misspelt-timeout", with_backend(API, "{timeuot: 3}"), ["line 5", "did you mean timeout?"]),
    yaml_case("opt-openai-wrong-type", with_backend(API, "{max_concurrency: many}"),
              ["line 5", "models.0.options.max_concurrency", "integer"]),
    yaml_case("opt-openai-bool-for-int", with_backend(API, "{max_retries: true}"),
              ["line 5", "models.0.options.max_retries", "integer"]),
    yaml_case("opt-openai-out-of-range", with_backend(API, "{timeout: 0}"), ["models.0.options.timeout", "greater than 0"]),
    yaml_case("opt-hf-misspelt-dtype", with_backend("hf:/models/x", "{dtyp: float16}"),
              ["line 5", "models.0.options.dtyp", "did you mean dtype?"]),
    yaml_case("opt-hf-unknown-dtype", with_backend("hf:/models/x", "{dtype: float8}"), ["models.0.options.dtype"]),
    yaml_case("opt-embedded-misspelt-device", with_backend("embedded", "{devcie: cuda}"),
              ["line 5", "models.0.options.devcie", "unknown option of the embedded backend", "did you mean device?"]),
    yaml_case("opt-embedded-unknown-device", with_backend("embedded", "{device: gpu}"),
              ["models.0.options.device", "unknown device 'gpu'"]),
    yaml_case("opt-vllm-unknown", with_backend("vllm:/models/x", "{temprature: 0.5}"),
              ["line 5", "models.0.options.temprature", "unknown option of the vllm backend"]),
    yaml_case("opt-scripted-unknown", lambda d: with_backend(f"scripted:{d / 'script.json'}", "{temperature: 0}")(d),
              ["models.0.options.temperature", "unknown option of the scripted backend"]),
    yaml_case("opt-batch-size-under-options", lambda d: with_backend(f"scripted:{d / 'script.json'}", "{batch_size: 4}")(d),
              ["models.0.options.batch_size", "set batch_size on the model entry"]),
    # ---- backend specs (issue 17.4)
    yaml_case("spec-openai-without-url", with_backend("openai:gpt-4o"), ["line 5", "models.0.backend", "openai:MODEL@URL"]),
    yaml_case("spec-openai-url-without-scheme", with_backend("openai:gpt-4o@api.example.com/v1"),
              ["models.0.backend", "must start with http:// or https://"]),
    yaml_case("spec-openai-key-in-url", with_backend(f"openai:gpt-4o@https://{SECRET}@api.example.com/v1"),
              ["models.0.backend", "holds a credential", "https://***@api.example.com/v1", "api_key_env"]),
    yaml_case("spec-openai-key-in-query", with_backend(f"openai:gpt-4o@https://api.example.com/v1?api-version=1&key={SECRET}"),
              ["models.0.backend", "holds a credential", "api-version=1&key=***"]),
    yaml_case("spec-hf-without-path", with_backend("hf:"), ["models.0.backend", "needs a path"]),
    yaml_case("spec-embedded-with-argument", with_backend("embedded:big"), ["models.0.backend", "takes no argument"]),
    # ---- silent acceptance in the audit file (issue 16)
    yaml_case("yaml-duplicate-models-key",
              lambda d: good_audit(d).replace("layers:", "models:\n  - {name: m2, backend: embedded}\nlayers:"),
              ["line 6", "models: duplicate key (also at line 4)"]),
    yaml_case("yaml-duplicate-seed", lambda d: good_audit(d).replace("seed: 0\n", "seed: 0\nseed: 1\n"),
              ["line 3", "seed: duplicate key (also at line 2)"]),
    yaml_case("yaml-duplicate-layer", lambda d: good_audit(d) + "  first_token: {limit: 1}\n",
              ["line 8", "layers.first_token: duplicate key (also at line 7)"]),
    yaml_case("yaml-duplicate-nested-key", lambda d: good_audit(d).replace("limit: 2", "limit: 2, limit: 3"),
              ["line 7", "layers.first_token.limit: duplicate key"]),
    yaml_case("yaml-limit-true", lambda d: good_audit(d).replace("limit: 2", "limit: true"),
              ["line 7", "layers.first_token.limit", "expected a number, not true"]),
    yaml_case("yaml-languages-repeated", lambda d: good_audit(d).replace("seed: 0\n", "seed: 0\nlanguages: [en, en]\n"),
              ["line 3", "languages", "en given more than once"]),
    yaml_case("yaml-country-empty-name", lambda d: good_audit(d).replace(
        "seed: 0\n", "seed: 0\ncountries: [Japan]\ncountry_names: {Japan: {zh: ''}}\n"),
              ["line 4", "country_names", "Japan: the zh name is empty"]),
    yaml_case("yaml-run-named-dotdot", lambda d: good_audit(d).replace("name: bad", "name: '..'"),
              ["line 1", "name", "only dots"]),
    yaml_case("yaml-model-named-dots", lambda d: good_audit(d).replace("name: m,", "name: '...',"),
              ["line 5", "models.0.name", "only dots"]),
    # ---- a corpus lacking one of the audit's languages (the default languages are en and zh)
    data_case("cao-lacks-zh", "cao.json", cao(cao_good), ft_cao, ["first_token", "has no items in zh"]),
    data_case("dilemma-corpus-lacks-zh", "dil.jsonl", lambda d: json.dumps(DILEMMA_EN), dil("corpus"),
              ["dilemmas", "has no dilemma in zh"]),
]

# What only validate checks (a run meets these at run time, see the runtime cases): the machine, not the file.
PREFLIGHT_CASES: list[Case] = [
    out_case("out-is-a-file", _file, ["not a directory"]),
    out_case("out-below-a-file", lambda d: _file(d) / "sub", ["not a directory"]),
    out_case("out-dev-null", lambda d: Path("/dev/null"), ["not a directory"]),
    out_case("out-symlink-loop", _loop, ["symlink loop"]),
    out_case("out-lock-is-a-directory", _lock_dir, [".lock", "a directory"]),
    yaml_case("env-api-key-unset", with_backend(API, "{api_key_env: VALUELENS_TEST_UNSET_KEY}"),
              ["line 5", "models.0.options.api_key_env", "VALUELENS_TEST_UNSET_KEY", "is not set"]),
    yaml_case("device-not-on-this-machine", with_backend("embedded", "{device: 'cuda:7'}"),
              ["line 5", "models.0.options.device", "'cuda:7' is not available"]),
]
# One case of each class also through a real subprocess (the rest in-process, through the table test).
SUBPROCESS = {"opt-openai-misspelt-concurrency", "opt-openai-wrong-type", "opt-embedded-misspelt-device",
              "spec-openai-without-url", "spec-openai-key-in-url", "spec-openai-key-in-query",
              "yaml-duplicate-models-key", "yaml-limit-true", "yaml-languages-repeated", "yaml-country-empty-name",
              "yaml-run-named-dotdot", "cao-lacks-zh", "dilemma-corpus-lacks-zh"}
assert SUBPROCESS <= {c.id for c in CONFIG_CASES}
assert len({c.id for c in CASES + CONFIG_CASES + PREFLIGHT_CASES}) == len(CASES + CONFIG_CASES + PREFLIGHT_CASES)


def validate_in_subprocess(case: Case, d: Path) -> list[str]:
    audit, bad, parts = case.build(d)
    path = d / "audit.yaml"
    path.write_text(audit, encoding="utf-8")
    before = sorted(p.name for p in d.iterdir())
    r = vl("validate", str(path), cwd=d, env={"VALUELENS_TEST_UNSET_KEY": ""})
    problems = check(r.returncode, r.stderr, None, bad, parts)
    if SECRET in r.stdout + r.stderr:
        problems.append("the pasted key was printed")
    if sorted(p.name for p in d.iterdir()) != before:
        problems.append("validate created something")
    return problems


IN_SUBPROCESS = [c for c in CONFIG_CASES if c.id in SUBPROCESS or LONG] + PREFLIGHT_CASES


@pytest.mark.parametrize("case", IN_SUBPROCESS, ids=[c.id for c in IN_SUBPROCESS])
def test_validate_refuses_in_a_subprocess(tmp_path, case):
    problems = validate_in_subprocess(case, tmp_path)
    record("bad_input", case=case.id, bad_inputs=1, clear_errors=int(not problems))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_config_side_run_refuses_and_writes_nothing(tmp_path, finished_run, case):
    """The same audits through validate and run (in-process): refused before anything is written."""
    test_bad_input_exit_2_one_line_nothing_written(tmp_path, finished_run, case)


def test_mark_without_texts_in_an_audit_language_is_refused(tmp_path, shared_data):
    """MARK on the English codebook alone, under the default languages [en, zh]: an error, not English-only results."""
    from mark_helpers import synthetic_microdata

    cb = shared_data / "wvs_codebook"
    csv = synthetic_microdata(cb, ["Q1", "Q46"], tmp_path / "wvs.csv", n_per_country=10)
    (tmp_path / "s.json").write_text('{"rules": []}')
    audit = tmp_path / "audit.yaml"
    audit.write_text(f"name: mk\noutput_dir: {tmp_path / 'out'}\nmodels: [{{name: m, backend: 'scripted:{tmp_path / 's.json'}'}}]\n"
                     f"layers:\n  mark: {{data: {{path: '{csv}', codebook: '{cb / 'codebook.json'}'}}, questions: [Q1, Q46], "
                     "respondents_per_country: 2}\n", encoding="utf-8")
    r = vl("validate", str(audit), cwd=tmp_path)
    assert r.returncode == 2 and one_line_error(r.stderr), r.stderr
    assert "layers.mark" in r.stderr and "have no text in zh" in r.stderr and str(cb / "codebook.json") in r.stderr
    assert not (tmp_path / "out").exists()
    audit.write_text(audit.read_text().replace("name: mk\n", "name: mk\nlanguages: [en]\n"))
    assert vl("validate", str(audit), cwd=tmp_path).returncode == 0
