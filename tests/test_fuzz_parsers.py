"""Issue 8.5: fuzzing. Answer parsers never raise; the OpenAI response
handling and every loader raise nothing but ValueLensError (one line).

Example counts are modest by default and 10x with VALUELENS_LONG=1.
test_loaders.py fuzzes the Cao 2025, GlobalOpinionQA and codebook loaders
too, with its own strategies.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_support import LONG, record

from valuelens.config import parse_audit
from valuelens.data.cao2025 import load_cao2025
from valuelens.data.global_opinions import load_global_opinions
from valuelens.data.survey import LABELS, load_questionnaire
from valuelens.data.wvs import load_codebook, load_microdata, respondents_to_survey
from valuelens.errors import BackendError, ValueLensError
from valuelens.layers.first_token import parse_letter
from valuelens.models.openai_api import OpenAIBackend, _retry_after

SCALE = 10 if LONG else 1


def fuzz(n: int):
    return settings(max_examples=n * SCALE, deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_counts: dict[str, int] = {}


def count(name: str) -> None:
    _counts[name] = _counts.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    record("fuzz", fuzz_examples=sum(_counts.values()), fuzz_targets=len(_counts))


@pytest.fixture(scope="module")
def work() -> Path:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def expect_clean(fn, *args, **kw):
    """Call a loader: a result, or a one-line ValueLensError; anything else fails the test."""
    try:
        return fn(*args, **kw)
    except ValueLensError as e:
        assert "\n" not in str(e) and str(e), repr(e)
        return None


# ------------------------------------------------------------------ strategies

ANSWERS = st.sampled_from([
    "(B) because", "B) yes", "Answer: C.", "答案：（A）", "（B）因为", "A", " D ", "I would choose (Z)", "((((", "",
    "The answer is B, not A", "B.", "选项二", "Answer: 2", "<think>A</think> B", "**B**", "\x00", "A\u0301",
    "Ⓑ", "ｂ", "B" * 1000,
])
TEXT = st.text(max_size=200) | ANSWERS | st.builds(lambda a, b: a + b, ANSWERS, st.text(max_size=40))
JSON_LEAF = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**30, max_value=10**30)
             | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=16)
NUMBERISH = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**400, 10**400)
             | st.sampled_from([0.0, -0.0, -1e-300, -745.2, -746.0, 0.5, 1e308, -1e308, 709.0, 710.0]))


def dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode()


ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])


def encoded(text_strategy):
    """Text in some encoding (the unencodable ones fall back to UTF-8 with replacement)."""
    return st.builds(lambda t, enc: t.encode(enc, errors="replace"), text_strategy, ENCODINGS)


RAW = st.binary(max_size=400) | encoded(st.text(max_size=200))


# ------------------------------------------------------------------ answer parsers: never raise

@fuzz(400)
@given(text=TEXT, n=st.integers(2, len(LABELS)))
def test_parse_letter_never_raises(text, n):
    labels = tuple(LABELS[:n])
    got = parse_letter(text, labels)
    assert got is None or got in labels
    lab = labels[len(text) % n]
    assert parse_letter(f"({lab}) {text}", labels) == lab
    count("parse_letter")


def _def_parsing():
    return pytest.importorskip("valuelens.layers.def_layer.parsing")


@fuzz(300)
@given(text=TEXT, options=st.lists(st.text(max_size=20) | st.sampled_from(["Yes", "No", "1", "非常重要", ""]),
                                   min_size=0, max_size=10))
def test_def_parse_answer_never_raises(text, options):
    p = _def_parsing()
    got = p.parse_answer(text, options)
    assert got.position is None or 0 <= got.position < len(options)
    assert p.parse_verdict(text) in (True, False, None)
    assert isinstance(p.first_sentence(text), str)
    count("def_parse_answer")


@fuzz(300)
@given(text=TEXT | st.sampled_from(["A", "(B)", "Option A", "选项B", "Yes", "no.", "是", "否", "I choose B because A"]),
       yes_no=st.booleans())
def test_dilemma_parse_choice_never_raises(text, yes_no):
    prompts = pytest.importorskip("valuelens.layers.dilemmas.prompts")
    assert prompts.parse_choice(text, yes_no) in (None, "A", "B")
    count("dilemma_parse_choice")


@fuzz(300)
@given(text=TEXT | JSON.map(lambda o: json.dumps(o, allow_nan=True))
       | st.sampled_from([10, 999, 3000, 100_000]).map(lambda n: '{"a":' + "[" * n + "1" + "]" * n + "}")
       | st.sampled_from(['{"a": 1' + "0" * 5000 + "}", '```json\n{"a": 1}\n```', "<think>{</think>{}"]))
def test_mark_extract_json_only_stage_errors(text):
    stages = pytest.importorskip("valuelens.layers.mark.stages")
    try:
        got = stages.extract_json(text)
    except stages.StageError:
        pass  # by design: the message goes into the repair prompt
    else:
        assert isinstance(got, dict)
    count("mark_extract_json")


# ------------------------------------------------------------------ OpenAI-compatible responses

_LOOP = asyncio.new_event_loop()  # one loop for all examples (asyncio.run per call is slow)


class _Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status_code, self.body, self.headers = status, body, headers

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Client:
    def __init__(self, response: _Response):
        self.response = response

    async def post(self, url, json=None):
        return self.response


def _choice(token, logprob, top, content):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "text": content,
                         "logprobs": {"content": [{"token": token, "logprob": logprob, "top_logprobs": top}],
                                      "tokens": [token], "token_logprobs": [logprob],
                                      "top_logprobs": [{t["token"]: t["logprob"] for t in top
                                                        if isinstance(t, dict) and isinstance(t.get("token"), str)}]}}]}


TOKENS = st.sampled_from(["A", " A", "B", " B", "C", "\n", "The", "(", ""]) | st.text(max_size=3)
TOP = st.lists(st.fixed_dictionaries({"token": TOKENS, "logprob": NUMBERISH}) | JSON, max_size=6)
BODY = (st.builds(lambda *a: dumps(_choice(*a)), TOKENS, NUMBERISH, TOP, st.text(max_size=20) | JSON)
        | JSON.map(dumps) | st.binary(max_size=80))


@fuzz(300)
@given(status=st.sampled_from([200] * 6 + [400, 401, 404, 410, 429, 500, 502, 503]), body=BODY,
       retry_after=st.none() | st.text(max_size=12), mode=st.sampled_from(["chat", "completions"]),
       n=st.integers(2, 5))
def test_openai_responses_give_results_or_backend_errors(status, body, retry_after, mode, n):
    b = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, mode=mode)
    labels = tuple(LABELS[:n])
    resp = _Response(status, body, {"retry-after": retry_after} if retry_after is not None else {})

    async def call(parse):
        b.limit.bind()  # the adaptive concurrency limit, bound to this event loop (as _run_all does)
        return await b._call(_Client(resp), "/chat/completions", {}, parse, lambda t: t)

    try:
        res = _LOOP.run_until_complete(call(lambda c: b._option_result(labels, c)))
    except BackendError as e:
        assert "\n" not in str(e)
    else:
        assert math.isfinite(res.covered_mass) and 0 <= res.covered_mass <= 1
        if res.probs is not None:
            assert len(res.probs) == n and all(math.isfinite(p) and 0 <= p <= 1 for p in res.probs)
            assert math.fsum(res.probs) == pytest.approx(1.0)
    try:
        text = _LOOP.run_until_complete(call(b._text))
    except BackendError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(text, str)
    count("openai_response")


@fuzz(300)
@given(value=st.none() | st.text(max_size=40) | st.sampled_from(
    ["0", "-5", "1e999", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 31 Dec 9999 23:59:59 GMT", "30 Feb"]),
    attempt=st.integers(0, 30))
def test_retry_after_and_backoff_are_bounded(value, attempt):
    ra = _retry_after(value)
    assert ra is None or ra >= 0
    b = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", backoff_base=0.5, backoff_max=30)
    delay = b._delay(attempt, ra)
    assert math.isfinite(delay) and 0 <= delay <= 30 * 1.05 + 0.01
    count("retry_after")


# ------------------------------------------------------------------ loaders: only ValueLensError

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


EN = "How would someone from {} answer the following question:\n\n"
CAO_ITEM = st.fixed_dictionaries({
    "id": st.sampled_from(["1", "2", 3]) | JSON_LEAF,
    "instruction": st.sampled_from([EN.format("China"), EN.format("United States"), "来自中国的人会如何回答以下问题：", ""]) | JSON_LEAF,
    "input": st.sampled_from(["Agree? \nHere are the options: \n", "问？以下是选项："]) | JSON_LEAF,
    "options": st.lists(st.sampled_from(["(A)Yes", "(B)No", "(C)Maybe", "(A)"]) | JSON_LEAF, max_size=4),
    "options_dist": st.dictionaries(st.sampled_from("ABCD"), NUMBERISH | JSON_LEAF, max_size=4),
})


@fuzz(60)
@given(en=RAW | st.lists(CAO_ITEM, max_size=3).map(dumps), zh=st.none() | RAW | st.lists(CAO_ITEM, max_size=3).map(dumps))
def test_fuzz_load_cao2025(work, en, zh):
    p = _write(work / "cao.json", en)
    z = _write(work / "cao_zh.json", zh) if zh is not None else None
    s = expect_clean(load_cao2025, p, z)
    if s is not None:
        assert all(abs(math.fsum(d.probs) - 1) <= 1e-9 for d in s.distributions)
    count("load_cao2025")


GOQA_CELL = (st.text(max_size=30) | st.sampled_from([
    "defaultdict(<class 'list'>, {'China': [0.5, 0.5]})", "{'China': [1e999, -1e999]}", "['a', 'b']",
    "{'X': [0.5, 0.5]}", "__import__('os')", "[" * 200, "{'X': " + "[" * 100 + "]" * 100 + "}", "{'X': [1, 2, 3]}"]))


@fuzz(60)
@given(data=RAW | st.lists(st.lists(GOQA_CELL, min_size=2, max_size=5), max_size=4).map(
    lambda rows: ("question,selections,options,source\n" + "".join(
        ",".join('"' + c.replace('"', '""') + '"' for c in r) + "\n" for r in rows)).encode()))
def test_fuzz_load_global_opinions(work, data):
    s = expect_clean(load_global_opinions, _write(work / "goqa.csv", data))
    if s is not None:
        assert all(abs(math.fsum(d.probs) - 1) <= 1e-9 for d in s.distributions)
    count("load_global_opinions")


CODEBOOK = {"Q1": {"question": "Family", "type": "multiple_choice",
                   "choices": {"1": "Very", "2": "Rather", "3": "Not very", "-1": "Don't know"}},
            "Q2": {"question": "Trust", "type": "multiple_choice", "choices": {"1": "Trusted", "2": "Careful"}},
            "Q260": {"question": "Sex", "type": "multiple_choice", "choices": {"1": "Male", "2": "Female"}},
            "Q262": {"question": "Age", "type": "objective", "choices": {"-1": "Don't know"}}}
ENTRY = st.fixed_dictionaries({"type": st.sampled_from(["multiple_choice", "objective"]) | JSON_LEAF,
                               "choices": st.dictionaries(st.sampled_from(["1", "2", "3", "-1", "x", "0", "99"])
                                                          | st.text(max_size=3), st.text(max_size=6) | JSON_LEAF,
                                                          max_size=5) | JSON_LEAF,
                               "question": JSON_LEAF})


@fuzz(60)
@given(book=RAW | st.dictionaries(st.sampled_from(["Q1", "Q2", "Q260", "B_COUNTRY"]) | st.text(max_size=4),
                                  ENTRY | JSON, max_size=4).map(dumps),
       meta=st.none() | RAW | JSON.map(dumps),
       adjust=st.none() | st.dictionaries(st.sampled_from(["Q1", "Q2"]), JSON, max_size=2).map(dumps))
def test_fuzz_load_codebook(work, book, meta, adjust):
    m = _write(work / "meta.json", meta) if meta is not None else None
    a = _write(work / "adj.json", adjust) if adjust is not None else None
    expect_clean(load_codebook, _write(work / "cb.json", book), m, a)
    count("load_codebook")


COLUMNS = st.sampled_from(["B_COUNTRY", "B_COUNTRY_ALPHA", "Q1", "Q2", "Q260", "Q262", "W_WEIGHT", "Q999", ""])
CELL = st.sampled_from(["840", "156", "USA", "chn", "999", "1", "2", "3", "-1", "-2", "7", "1.5", "", "nan", "inf",
                        "-inf", "1e400", "x", " 2 ", "0", "25", "-0", "NA", '"1"', "1;2"]) | st.text(max_size=4)


def _micro(cols: list[str], rows: list[list[str]], sep: str) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=sep)
    w.writerow(cols)
    w.writerows(rows)
    return buf.getvalue().encode()


@fuzz(80)
@given(data=RAW | st.builds(_micro, st.lists(COLUMNS, min_size=1, max_size=7),
                            st.lists(st.lists(CELL, min_size=0, max_size=8), max_size=6), st.sampled_from([",", ";"])),
       questions=st.none() | st.lists(st.sampled_from(["Q1", "Q2", "Q3", "Q262"]), max_size=3),
       countries=st.none() | st.lists(st.sampled_from(["China", 840, "USA", "Atlantis", "156", " usa "]), max_size=2))
def test_fuzz_load_microdata(work, data, questions, countries):
    cb_path = work / "cb_ok.json"
    cb_path.write_text(json.dumps(CODEBOOK))
    cb = load_codebook(cb_path)
    path = _write(work / "micro.csv", data)
    expect_clean(load_microdata, path, cb, questions, countries)
    expect_clean(respondents_to_survey, path, cb_path, questions=questions, countries=countries)
    count("load_microdata")


QUESTION = st.fixed_dictionaries({"id": st.sampled_from(["D1", "D2"]) | JSON_LEAF,
                                  "text": st.dictionaries(st.sampled_from(["en", "zh"]), st.text(max_size=5) | JSON_LEAF,
                                                          max_size=2) | JSON_LEAF,
                                  "options": st.dictionaries(st.sampled_from(["en", "zh"]),
                                                             st.lists(st.text(max_size=4) | JSON_LEAF, max_size=12)
                                                             | JSON_LEAF, max_size=2) | JSON_LEAF},
                                 optional={"dimension": JSON_LEAF, "ordinal": JSON_LEAF, "source": JSON_LEAF})


@fuzz(60)
@given(data=RAW | st.fixed_dictionaries({"questions": st.lists(QUESTION, max_size=3) | JSON}).map(dumps) | JSON.map(dumps))
def test_fuzz_load_questionnaire(work, data):
    qs = expect_clean(load_questionnaire, str(_write(work / "q.json", data)))
    if qs is not None:
        assert all(2 <= len(q.labels) <= len(LABELS) for q in qs)
    count("load_questionnaire")


AUDIT_KEYS = st.sampled_from(["name", "seed", "countries", "languages", "models", "layers", "chunk_size", "output_dir",
                              "country_names", "first_token", "data", "kind", "path", "backend", "options", "limit",
                              "dilemmas", "diversity", "mark", "control", "test_splits", "train", "<<", "!!", "x"])
AUDIT_VALUES = st.recursive(
    JSON_LEAF | st.sampled_from(["embedded", "scripted:x.json", "openai:m@http://h/v1", "China", "en", "builtin",
                                 "cao2025", "wvs7"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(AUDIT_KEYS, inner, max_size=4), max_leaves=20)
BASE = {"name": "t", "models": [{"name": "m", "backend": "scripted:x.json"}], "layers": {"first_token": {}}}


def _yaml(obj) -> str:
    try:
        return yaml.safe_dump(obj, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return "x: 1"


@fuzz(150)
@given(text=st.text(max_size=200)
       | st.dictionaries(AUDIT_KEYS, AUDIT_VALUES, max_size=6).map(lambda d: _yaml({**BASE, **d}))
       | st.builds(lambda a, b: a + b, st.just(_yaml(BASE)), st.text(max_size=60))
       | st.sampled_from(["a: &a [*a]", "a: !!python/object:os.system x", "[" * 3000, "a: *nope", "? [a]: 1", "a: !!binary x",
                          "%YAML 9.9\n---\na: 1", "a: 1\n---\nb: 2", "\ufeffname: t"]))
def test_fuzz_parse_audit(text):
    cfg = expect_clean(parse_audit, text, "fuzz.yaml")
    assert cfg is None or cfg.models
    count("parse_audit")


# ------------------------------------------------------------------ dilemma loaders (if present)

def _dilemmas():
    return pytest.importorskip("valuelens.data.dilemmas")


TEXTISH = st.text(max_size=8) | st.dictionaries(st.sampled_from(["en", "zh", 3]), st.text(max_size=6) | JSON_LEAF,
                                                max_size=2) | JSON_LEAF
DILEMMA = st.fixed_dictionaries({
    "id": JSON_LEAF | st.sampled_from(["X1", "X2"]), "pair": st.sampled_from(["Truth vs Loyalty"]) | JSON_LEAF,
    "values": st.lists(TEXTISH | st.sampled_from(["Truth", "Loyalty"]), max_size=3) | JSON_LEAF,
    "situation": TEXTISH, "actions": st.lists(TEXTISH, max_size=3) | JSON_LEAF},
    optional={"consequences": st.fixed_dictionaries({"negative": st.lists(TEXTISH, max_size=3),
                                                      "positive": st.lists(TEXTISH, max_size=3)}) | JSON, "x": JSON})
STEP = st.fixed_dictionaries({"situation": TEXTISH, "dilemma": TEXTISH, "choices": st.lists(TEXTISH, max_size=3) | JSON_LEAF,
                              "values": st.lists(st.sampled_from(["Care/Harm", "None", "", "fairness"]) | JSON_LEAF,
                                                 max_size=3) | JSON_LEAF})
CHAIN = st.fixed_dictionaries({"id": JSON_LEAF, "norm": TEXTISH, "steps": st.lists(STEP | JSON_LEAF, max_size=3) | JSON_LEAF})
MMD_KEY = st.sampled_from(["norm", "step 1_situation", "step 1_dilemma", "step 1_choiceA", "step 1_choiceB",
                           "step 1_choiceA_value", "Step 2_choiceB_value", "step 0_dilemma", "step 99999999999_situation"])
MMD = st.dictionaries(MMD_KEY, st.text(max_size=6) | JSON_LEAF, max_size=7)


def _records(objs, jsonl: bool) -> bytes:
    if jsonl:
        return b"\n".join(dumps(o) for o in objs)
    return dumps(objs)


@fuzz(80)
@given(kind=st.sampled_from(["dilemmas", "chains", "mmd"]), jsonl=st.booleans(),
       data=st.data())
def test_fuzz_dilemma_loaders(work, kind, jsonl, data):
    mod = _dilemmas()
    rec = {"dilemmas": DILEMMA, "chains": CHAIN, "mmd": MMD}[kind]
    raw = data.draw(RAW | st.lists(rec | JSON, max_size=3).map(lambda o: _records(o, jsonl)))
    path = _write(work / ("d.jsonl" if jsonl else "d.json"), raw)
    fn = {"dilemmas": mod.load_dilemmas, "chains": mod.load_chains, "mmd": mod.load_mmd}[kind]
    expect_clean(fn, path)
    count(f"load_{kind}")


MC_CELL = st.sampled_from(["C_1", "low", "Generated", "rule", "You are a surgeon.", "I act.", "I do not act.", ""]) \
    | st.text(max_size=6)
PATTERN = st.sampled_from(["{optionA}", "{optionB_short}", "I choose {optionA}", "{x}", "{", "}", "{0}", "{optionA!r}",
                           "{optionA.upper}", "{optionA[0]}", "Option A", ""]) | st.text(max_size=6)


MC_GOOD = ["C_1", "low", "Generated", "rule", "You are a surgeon.", "I act.", "I do not act."]


@fuzz(60)
@given(rows=st.lists(st.just(MC_GOOD) | st.lists(MC_CELL, min_size=5, max_size=8), max_size=3),
       raw=st.none() | st.none() | RAW,
       question=st.sampled_from(["C {} A {} B {}", "C {} A {} B {}", "only {}", "{} {} {} {", "{0} {1} {2}",
                                 "{x} {} {} {}"]) | st.text(max_size=10),
       resp_a=st.lists(PATTERN, max_size=3) | JSON, resp_b=st.lists(PATTERN, max_size=3) | JSON,
       answer=TEXT)
def test_fuzz_moralchoice_loader_and_matcher(work, rows, raw, question, resp_a, resp_b, answer):
    mod = _dilemmas()
    root = work / "mc"
    for sub in ("scenarios", "question_templates", "response_templates"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    header = ["scenario_id", "ambiguity", "generation_type", "generation_rule", "context", "action1", "action2"]
    low = raw if raw is not None else _micro(header, rows, ",")
    (root / "scenarios" / "moralchoice_low_ambiguity.csv").write_bytes(low)
    for name in ("ab", "compare", "repeat"):
        (root / "question_templates" / f"{name}.json").write_text(json.dumps({"question_header": "H", "question": question}))
        (root / "response_templates" / f"{name}.json").write_text(json.dumps({"responses_A": resp_a, "responses_B": resp_b}))
    (root / "response_templates" / "refusals.txt").write_text("I cannot\n")
    got = expect_clean(mod.load_moralchoice, root, "low")
    if got is not None:  # what the loader accepts, the layer can use without raising
        mc = pytest.importorskip("valuelens.layers.dilemmas.moralchoice")
        scenarios, templates = got
        for sc in scenarios[:2]:
            for template in ("ab", "compare", "repeat"):
                for order in (0, 1):
                    mc.question(templates, sc, template, order)
                    a, b = mc.options(sc, order)
                    assert mc.match_answer(answer, template, a, b, templates) in ("A", "B", "refusal", "invalid")
        count("match_answer")
    count("load_moralchoice")
