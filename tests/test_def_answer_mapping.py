"""DEF answers map to the option the model means (issue 14, item 2).

Two scripted models answer every question with one intended option: one
names the *scale value* it means ("Answer: 7" on a 1–10 scale; on a question
without numeric options, where no value is shown, the option text), the other
the *label* its option has in the prompt as shown ("Answer: 4", or "Answer: D"
on a letter-labelled scale). Both must recover the intended option on every
item, in English and Chinese: on the real Cao et al. 2025 file (skipped when
../shared/data is absent) and on a generated file that holds the same kinds
of scales plus a 0–8 scale whose numbers are not their positions.
Before the fix, DEF's shuffled numbering mapped "Answer: 7" to the 7th shown
option, whatever its text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path


import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.data.cao2025 import load_cao2025
from valuelens.data.survey import Question, country_names
from valuelens.layers.def_layer.data import option_codes

def numeric_text(text: str) -> int | None:
    t = unicodedata.normalize("NFKC", text).strip()
    return int(t) if re.fullmatch(r"[+-]?\d+", t) else None


def is_numeric_scale(q: Question) -> bool:
    return any(numeric_text(t) is not None for opts in q.options.values() for t in opts)


FORMAT = {"en": "Answer: {a} Explanation: That is what I think.", "zh": "答案：{a} 解释：我就是这么想的。"}


def intended(q: Question) -> int:
    """The option each scripted model means: spread over the scale, fixed per question."""
    return (sum(map(ord, q.id)) * 7 + 3) % len(q.labels)


def by_value_script(questions: list[Question]) -> dict:
    rules = []
    for q in questions:
        j = intended(q)
        for lang, text in q.text.items():
            opt = q.options[lang][j]
            if not is_numeric_scale(q):
                value = opt  # no scale value is shown: the option's words
            elif numeric_text(opt) is not None:
                value = str(numeric_text(opt))  # the number written on the scale
            else:
                value = str(option_codes(q)[j])  # a worded end of the scale: its code (1 = first)
            rules.append({"contains": text, "text": FORMAT[lang].format(a=value)})
    return {"name": "by-value", "rules": rules, "default_text": "no rule matched"}


def by_label_script(questions: list[Question]) -> dict:
    """One rule per question and shown label: "<label>. <intended text>" on its own line."""
    rules = []
    for q in questions:
        j = intended(q)
        for lang, text in q.text.items():
            target = q.options[lang][j]
            for pos in range(len(q.labels)):
                for label in (str(pos + 1), chr(ord("A") + pos)):
                    rules.append({"contains": [text, f"\n{label}. {target}\n"],
                                  "text": FORMAT[lang].format(a=label)})
    return {"name": "by-label", "rules": rules, "default_text": "no rule matched"}


def run_both(tmp: Path, questions: list[Question], data_yaml: str, countries: list[str], passes: int) -> dict:
    (tmp / "value.json").write_text(json.dumps(by_value_script(questions), ensure_ascii=False), encoding="utf-8")
    (tmp / "label.json").write_text(json.dumps(by_label_script(questions), ensure_ascii=False), encoding="utf-8")
    known = country_names()
    extra = {c: {"zh": c} for c in countries if c not in known}
    cfg = parse_audit(f"""\
name: def-mapping
output_dir: {tmp / 'out'}
countries: {json.dumps(countries)}
country_names: {json.dumps(extra)}
languages: [en, zh]
models:
  - {{name: by-value, backend: "scripted:{tmp / 'value.json'}"}}
  - {{name: by-label, backend: "scripted:{tmp / 'label.json'}"}}
layers:
  diversity:
    data: {data_yaml}
    participants: 1
    passes: {passes}
    memory_max: 0
    retries: 0
    insensitivity: {{factual: {{}}, factual_source: null}}
""", "a.yaml")
    return vl.run(cfg)


def check(tables: dict, questions: list[Question], items: set[tuple[str, str]]) -> None:
    a = tables["def_answers"]
    want = {q.id: intended(q) for q in questions}
    assert set(a.model) == {"by-value", "by-label"} and set(a.language) == {"en", "zh"}
    for (model, lang), g in a.groupby(["model", "language"]):
        assert items <= set(zip(g.question_id, g.country)), (model, lang)  # every item was asked
        bad = g[~g.valid | (g.option_index != g.question_id.map(want))]
        assert bad.empty, (model, lang, bad[["question_id", "country", "shown_order", "reply", "option"]].head())
    q = tables["def_questions"]
    assert (q.invalid_share == 0).all()


def test_real_wvs_items_map_to_the_meant_option(tmp_path, shared_data):
    cao = shared_data / "wvs_cao2025"
    en, zh = cao / "sft_wvs_valid.json", cao / "sft_wvs_zh_valid.json"
    survey = load_cao2025(en, zh)
    questions = list(survey.questions.values())
    assert len(questions) == 35 and sum(map(is_numeric_scale, questions)) == 21
    items = {(d.question_id, d.country) for d in survey.distributions}
    assert len(items) == 1586
    tables = run_both(tmp_path, questions, f"{{kind: cao2025, path: {en}, path_zh: {zh}}}", survey.countries(), passes=1)
    check(tables, questions, items)
    a = tables["def_answers"]
    numeric = {q.id for q in questions if is_numeric_scale(q)}
    shown = a.drop_duplicates(["question_id", "participant", "pass"])
    assert (shown[shown.question_id.isin(numeric)].shown_order == "A,B,C,D,E,F,G,H,I,J").all()  # in order
    assert shown[~shown.question_id.isin(numeric)].shown_order.nunique() > 14  # the rest still shuffled


# a generated questionnaire in the Cao 2025 layout (no shared data needed) -----------------------------------
SCALES = {
    "901": ("How justifiable is cheating on taxes?", "纳税作弊有多合理？",
            ["Never justifiable", *map(str, range(2, 10)), "Always justifiable"],
            ["从不合理", *map(str, range(2, 10)), "总是合理"]),
    "902": ("How satisfied are you with your life (0 to 8)?", "您对生活有多满意（0到8）？",
            [str(i) for i in range(9)], [str(i) for i in range(9)]),
    "903": ("Work is a duty towards society.", "工作是对社会的责任。",
            ["Strongly agree", "Agree", "Disagree", "Strongly disagree"], ["非常同意", "同意", "不同意", "非常不同意"]),
    "904": ("Rate your trust in the press from 1 to 5.", "请用1到5给您对新闻界的信任打分。",
            ["1", "2", "3", "4", "5"], ["1", "2", "3", "4", "5"]),
    "905": ("Which is most important?", "哪一项最重要？",
            ["Order", "Say in decisions", "Prices", "Free speech", "Growth"], ["秩序", "参与决策", "物价", "言论自由", "增长"]),
}


def write_questionnaire(d: Path, countries: list[str]) -> tuple[Path, Path]:
    files = []
    for lang in ("en", "zh"):
        items = []
        for n, (qid, (t_en, t_zh, o_en, o_zh)) in enumerate(SCALES.items()):
            opts = o_en if lang == "en" else o_zh
            for c_i, c in enumerate(countries):
                weights = [1 + (i * (c_i + 2) + n) % 5 for i in range(len(opts))]
                instr = (f"How would someone from {c} answer the following question:\n\n" if lang == "en"
                         else f"来自{c}的人会如何回答以下问题：\n\n")
                tail = "\nHere are the options: \n" if lang == "en" else "\n以下是选项：\n"
                items.append({"id": qid, "instruction": instr, "input": (t_en if lang == "en" else t_zh) + tail,
                              "options": [f"({chr(65 + i)}){o}" for i, o in enumerate(opts)],
                              "options_dist": {chr(65 + i): 100 * w / sum(weights) for i, w in enumerate(weights)},
                              "data_type": "valid"})
        path = d / f"generated_{lang}.json"
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def test_generated_scales_map_to_the_meant_option(tmp_path):
    countries = ["United States", "China", "Japan"]
    en, zh = write_questionnaire(tmp_path, countries)
    survey = load_cao2025(en, zh)
    questions = list(survey.questions.values())
    tables = run_both(tmp_path, questions, f"{{kind: cao2025, path: {en}, path_zh: {zh}}}", countries, passes=3)
    check(tables, questions, {(q, c) for q in SCALES for c in countries})
    a = tables["def_answers"]
    kinds = a.drop_duplicates("question_id").set_index("question_id")["labels"].to_dict()
    assert kinds == {"901": "numbers", "902": "letters", "903": "numbers", "904": "numbers", "905": "numbers"}
    label = a[a.model == "by-label"].drop_duplicates(["question_id", "language"]).set_index(["question_id", "language"])
    assert label.loc[("902", "en"), "reply"].startswith("Answer: " + "ABCDEFGHI"[intended(survey.questions["902"])])
