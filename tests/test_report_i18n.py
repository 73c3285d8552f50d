"""The report in English or Chinese (issue 23.7): every fixed text has a Chinese entry, a Chinese report shows
none of the English texts, and the language comes from the audit file or ``valuelens report --language``."""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pytest
from typer.testing import CliRunner

from valuelens.cli import app
from valuelens.comparisons.catalogue import METRICS
from valuelens.report import build_report, i18n
from valuelens.report.i18n_zh import ZH
from valuelens.results import write_json

from test_report_figures import layer_tables, text_of, write_run

REPORT = Path(__file__).resolve().parents[1] / "src" / "valuelens" / "report"
CJK = re.compile(r"[\u4e00-\u9fff]")


def english_keys() -> set[str]:
    """Every literal passed to tr(), N_() and plural() in the report package, the templates' t("...") and the
    metric catalogue's label, meaning, profile and explanation."""
    keys: set[str] = set()
    for f in REPORT.glob("*.py"):
        if f.name.startswith("i18n"):
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tr", "N_", "plural"):
                args = node.args[1:3] if node.func.id == "plural" else node.args[:1]
                keys |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    for f in (REPORT / "templates").glob("*.j2"):
        keys |= set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', f.read_text(encoding="utf-8")))
    for m in METRICS:
        keys |= {x for x in (m.label, m.meaning, m.profile, m.explain) if x}
    return keys - {""}


def fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def test_every_english_text_has_a_chinese_entry():
    keys = english_keys()
    assert len(keys) > 300
    missing = sorted(k for k in keys if k not in ZH)
    assert missing == []
    for en in keys:
        zh = ZH[en]
        assert fields(zh) == fields(en), en  # the same placeholders, wherever the translation puts them
        if re.search(r"[A-Za-z]{3}", re.sub(r"\{[^}]*\}|[\w.]*_[\w.*]*|[A-Z]{2,}\w*", "", en)):
            assert CJK.search(zh), en  # words to translate, and the entry is Chinese


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = write_run(tmp_path_factory.mktemp("i18n") / "run", layer_tables())
    i18n.MISSING.clear()
    html = {}
    for lang in ("en", "zh"):
        html[lang] = build_report(out, lang).read_text(encoding="utf-8")
    return out, html


def test_the_chinese_report_has_no_english_fixed_text(reports):
    _, html = reports
    assert i18n.MISSING == set()  # every tr() text met on the way had an entry
    zh, en = text_of(html["zh"]), text_of(html["en"])
    assert '<html lang="zh-CN">' in html["zh"] and '<html lang="en">' in html["en"]
    left = set()
    for key, value in ZH.items():
        for frag in re.split(r"\{[^}]*\}", key):
            frag = frag.strip(" .,:;()'")
            words = re.findall(r"[A-Za-z]+", frag)
            # three or more English words, not a table or column name, not kept as is in the Chinese text
            if len(words) >= 3 and "_" not in frag and frag not in value and frag in zh:
                left.add(frag)
    assert left == set()
    for title in ("Overview", "Summary", "What the measures mean", "Human oversight: rules", "Steering accuracy",
                  "Every model on every headline measure", "Consequence flip rates", "Trace viewer"):
        assert title in en and ZH[title] in zh and title not in zh
    # data stay as asked: model names, table names, countries
    for same in ("cn-model", "west-model", "dilemma_preferences", "United States"):
        assert same in zh


def test_figure_labels_are_translated(reports):
    from test_report_figures import figures

    _, html = reports
    (fig,) = figures(html["zh"])["dilemma-steering"]
    assert fig["layout"]["yaxis"]["title"]["text"] == ZH["steering accuracy"]
    assert fig["layout"]["legend"]["title"]["text"] == ZH["model"]
    (ov,) = figures(html["zh"])["overview"]
    titles = [a["text"] for a in ov["layout"]["annotations"]]
    assert ZH["Ethical dilemmas"] in titles and ZH["First-token alignment"] not in titles  # no first-token here
    heat = [t for t in ov["data"] if t["type"] == "heatmap"]
    assert any(ZH["consequence flip rate"] + " · en" in t["y"] for t in heat)


def test_language_from_the_audit_file_and_the_command_line(reports, tmp_path):
    out, _ = reports
    manifest = json.loads((out / "run.json").read_text())
    manifest["audit"]["report"] = {"language": "zh"}
    write_json(out / "run.json", manifest)
    try:
        assert '<html lang="zh-CN">' in build_report(out).read_text(encoding="utf-8")  # report.language
        runner = CliRunner()
        res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "en.html"), "--language", "en"])
        assert res.exit_code == 0, res.output
        assert '<html lang="en">' in (tmp_path / "en.html").read_text(encoding="utf-8")  # the option wins
        res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "x.html"), "--language", "fr"])
        assert res.exit_code == 2 and "--language: 'fr' is not a report language (en or zh)" in res.output
        assert "Traceback" not in res.output and not (tmp_path / "x.html").exists()
    finally:
        manifest["audit"].pop("report")
        write_json(out / "run.json", manifest)


def test_the_audit_file_takes_report_language(tmp_path):
    from valuelens.config import parse_audit
    from valuelens.errors import ValueLensError

    base = "models: [{name: m, backend: 'scripted:x.json'}]\nlayers: {first_token: {}}\n"
    assert parse_audit(base, "audit.yaml").report.language == "en"
    assert parse_audit(base + "report: {language: zh}\n", "audit.yaml").report.language == "zh"
    with pytest.raises(ValueLensError, match="report.language"):
        parse_audit(base + "report: {language: de}\n", "audit.yaml")
