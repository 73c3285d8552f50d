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
    yaml_case("yaml-duplicate-model", lambda d: good_audit(d).replace("layers:", f"  - {{name: m, backend: embedded}}\nlayers:"),
              ["line 4", "duplicate model names"]),
    # ---- Cao et al. 2025 survey JSON
    data_case("cao-truncated-json", "cao.json", lambda d: json.dumps(cao_good())[:-20], ft_cao, ["invalid JSON at line 1 column"]),
    data_case("cao-missing-field", "cao.json", cao(lambda: [{k: v for k, v in cao_item().items() if k != "options_dist"}]),
              ft_cao, ["item 0", "missing field 'options_dist'"]),
    data_case("cao-empty-options", "cao.json", cao(lambda: [{**cao_item(), "options": []}]), ft_cao,
              ["item 0", "'options'", "non-empty list"]),
    data_case("cao-sum-not-100", "cao.json", cao(lambda: [cao_item(), cao_item(country="China", dist={"A": 50, "B": 40})]),
              ft_cao, ["item 1", "China", "sum to 90"]),
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
