"""Per-model layer selection (issue 20.3): models' ``layers:`` and layers' ``models:``, in the config, the
audit driver, the tables and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from valuelens import api
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.report import build_report
from valuelens.report.load import report_data

# Small layers: 2 first-token questions; 1 dilemma per Kidder pair in one form, no chains.
FIRST_TOKEN = "{limit: 2, control: false}"
DILEMMAS = "{limit: 1, forms: [direct], consequences: false, steering: false, chains: none}"


def _scripts(root: Path) -> dict[str, str]:
    """Three scripted models (option probabilities hashed from the prompt; rows are told apart by their model
    column)."""
    out = {}
    for name in ("a", "b", "c"):
        p = root / f"{name}.json"
        p.write_text(json.dumps({"name": name, "rules": [], "default_text": "A"}))
        out[name] = str(p)
    return out


def _audit(root: Path, out: Path, models: list[tuple[str, str]], layers: dict[str, str]) -> str:
    scripts = _scripts(root)
    lines = [f"name: per-model\noutput_dir: {out}\ncountries: [United States, China]\nlanguages: [en]\nmodels:"]
    for name, extra in models:
        lines.append(f"  - {{name: {name}, backend: 'scripted:{scripts[name]}'{extra}}}")
    lines.append("layers:")
    lines += [f"  {k}: {v}" for k, v in layers.items()]
    return "\n".join(lines) + "\n"


def _run(root: Path, name: str, models, layers):
    out = root / name
    text = _audit(root, out, models, layers)
    cfg = parse_audit(text, f"{name}.yaml")
    return api.run_full(cfg, out), out


def _layer_tables(tables: dict[str, pd.DataFrame], prefix: str) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in tables.items() if k.startswith(prefix)}


def test_per_model_layers_equal_separate_single_layer_audits(tmp_path):
    # a: both layers (no selection of its own); b: first_token only (its own layers:); c: dilemmas only
    # (its own layers:, and dilemmas' models: names a and c)
    mixed, out = _run(tmp_path, "mixed", [("a", ""), ("b", ", layers: [first_token]"), ("c", ", layers: [dilemmas]")],
                      {"first_token": FIRST_TOKEN, "dilemmas": DILEMMAS[:-1] + ", models: [a, c]}"})
    ft, _ = _run(tmp_path, "ft", [("a", ""), ("b", "")], {"first_token": FIRST_TOKEN})
    dl, _ = _run(tmp_path, "dl", [("a", ""), ("c", "")], {"dilemmas": DILEMMAS})
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["model_layers"] == {"a": ["first_token", "dilemmas"], "b": ["first_token"], "c": ["dilemmas"]}
    for prefix, single in (("first_token_", ft), ("dilemma_", dl)):
        got, want = _layer_tables(mixed.tables, prefix), _layer_tables(single.tables, prefix)
        assert got.keys() == want.keys() and got
        for name in want:
            pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    assert set(mixed.tables["first_token_items"]["model"]) == {"a", "b"}
    assert set(mixed.tables["dilemma_choices" if "dilemma_choices" in mixed.tables else
                             next(k for k in mixed.tables if k.startswith("dilemma_") and
                                  "model" in mixed.tables[k])]["model"]) <= {"a", "c"}
    cat = mixed.tables["models"].set_index("name")
    assert cat.loc["a", "layers"] == "first_token, dilemmas" and cat.loc["b", "layers"] == "first_token"
    assert cat.loc["c", "layers"] == "dilemmas"
    # the calls: c never asked a first-token prompt, b never a dilemma
    calls = {m["name"]: m["calls_made"] for m in manifest["models"]}
    single_calls = {m["name"]: m["calls_made"] for m in json.loads((tmp_path / "ft" / "run.json").read_text())["models"]}
    assert calls["b"] == single_calls["b"]


def test_each_models_rows_equal_its_single_model_audit(tmp_path):
    mixed, _ = _run(tmp_path, "mixed", [("a", ""), ("b", ", layers: [first_token]"), ("c", ", layers: [dilemmas]")],
                    {"first_token": FIRST_TOKEN, "dilemmas": DILEMMAS})
    for name, layers in (("a", {"first_token": FIRST_TOKEN, "dilemmas": DILEMMAS}),
                         ("b", {"first_token": FIRST_TOKEN}), ("c", {"dilemmas": DILEMMAS})):
        single, _ = _run(tmp_path, f"only-{name}", [(name, "")], layers)
        prefixes = tuple("dilemma_" if k == "dilemmas" else f"{k}_" for k in layers)
        assert {k for k in mixed.tables if k.startswith(prefixes)} == set(single.tables) - {"models", "samples"}  # samples: compared below
        for table, want in single.tables.items():
            if table == "models":
                continue
            got = mixed.tables[table]
            pd.testing.assert_frame_equal(got[got["model"] == name].reset_index(drop=True), want, obj=table)
        for table in set(mixed.tables) - set(single.tables):  # the layers it was not given: no row of it
            if "model" in mixed.tables[table].columns and table != "models":
                assert (mixed.tables[table]["model"] != name).all(), table


def test_report_says_who_ran_what_and_never_shows_not_run_as_a_number(tmp_path):
    _, out = _run(tmp_path, "mixed", [("a", ""), ("b", ", layers: [first_token]"), ("c", ", layers: [dilemmas]")],
                  {"first_token": FIRST_TOKEN, "dilemmas": DILEMMAS})
    data = report_data(out)
    layers = {x.key: x for x in data.layers}
    assert data.cell("b", layers["dilemmas"]) == "not run" and data.cell("c", layers["first_token"]) == "not run"
    assert data.cell("a", layers["dilemmas"]) == "ran" and data.cell("b", layers["first_token"]) == "ran"
    assert data.cell("a", layers["def"]) == "not run"  # not in the audit at all
    html = build_report(out).read_text(encoding="utf-8")
    assert "Which model ran which layer" in html
    matrix = html.split("Which model ran which layer", 1)[1].split("</table>", 1)[0]
    head = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<th[^>]*>(.*?)</th>", matrix)]
    rows = {}
    for r in matrix.split("<tr>")[2:]:
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        rows[cells[0]] = dict(zip(head[1:], cells[1:]))
    assert head == ["model", "Ethical dilemmas", "First-token alignment"]  # the report's order
    assert rows == {"a": {"Ethical dilemmas": "ran", "First-token alignment": "ran"},
                    "b": {"Ethical dilemmas": "not run", "First-token alignment": "ran"},
                    "c": {"Ethical dilemmas": "ran", "First-token alignment": "not run"}}
    assert '<em class="notrun">not run</em>' in matrix
    # one ranking per layer, each only over the models that ran it
    for title, ran, absent in (("First-token alignment", {"a", "b"}, "c"), ("Ethical dilemmas", {"a", "c"}, "b")):
        head = f" · {title}</h3>"
        if head not in html:  # a layer whose metrics all lack values for ranking: its one-model table
            continue
        table = html.split(head, 1)[1].split("</table>", 1)[0]
        names = set(re.findall(r"<td class=\"nw\">([abc])</td>", table))
        assert names <= ran and absent not in names
    assert "Run by a, b; not run: c." in html and "Run by a, c; not run: b." in html


def test_all_models_all_layers_report_is_unchanged(tmp_path):
    _, out = _run(tmp_path, "uniform", [("a", ""), ("b", "")], {"first_token": FIRST_TOKEN})
    html = build_report(out).read_text(encoding="utf-8")
    assert "Which model ran which layer" not in html and "Run by" not in html
    assert report_data(out).is_uniform()


def test_old_run_json_without_model_layers_means_every_layer(tmp_path):
    _, out = _run(tmp_path, "old", [("a", ""), ("b", "")], {"first_token": FIRST_TOKEN})
    m = json.loads((out / "run.json").read_text())
    del m["model_layers"]
    (out / "run.json").write_text(json.dumps(m))
    data = report_data(out)
    assert data.model_layers() == {"a": {"first_token"}, "b": {"first_token"}} and data.is_uniform()


BASE = """\
name: t
models:
  - {name: local-ft, backend: embedded, layers: [first_token]}
  - {name: gpt-4o, backend: "openai:gpt-4o@https://api.openai.com/v1"}
  - name: claude
    backend: "openai:claude-3-5-sonnet@https://api.anthropic.com/v1"
    layers: [dilemmas, diversity]
layers:
  first_token: {models: [local-ft, gpt-4o]}
  dilemmas: {}
  def: {}
"""


def test_model_layers_resolution():
    cfg = parse_audit(BASE, "a.yaml")
    assert cfg.model_layers() == {"local-ft": ["first_token"], "gpt-4o": ["first_token", "def", "dilemmas"],
                                  "claude": ["def", "dilemmas"]}  # run order; the old name diversity means def
    assert [s.key for s, _ in cfg.layers_for("claude")] == ["def", "dilemmas"]
    dumped = cfg.model_dump(mode="json")
    assert dumped["layers"]["first_token"]["models"] == ["local-ft", "gpt-4o"]
    assert dumped["models"][2]["layers"] == ["dilemmas", "def"]
    assert "layers" not in cfg.models[0].catalogue()  # not catalogue metadata


@pytest.mark.parametrize("old,new,message", [
    ("layers: [first_token]}", "layers: [first_tokn]}",
     "a.yaml line 3: models.0.layers.0: unknown layer 'first_tokn'; did you mean first_token?"),
    ("models: [local-ft, gpt-4o]", "models: [local-ft, gpt4o]",
     "a.yaml line 9: layers.first_token.models.1: unknown model 'gpt4o'; did you mean gpt-4o?"),
    ("[dilemmas, diversity]", "[dilemmas, mark]",
     "a.yaml line 7: models.2.layers.1: layer mark is not selected under layers:"),
    ("  dilemmas: {}", "  dilemmas: {models: [gpt-4o]}",
     "a.yaml line 7: models.2.layers.0: layers.dilemmas.models does not list claude"),
    ("models: [local-ft, gpt-4o]", "models: [local-ft, local-ft]",
     "a.yaml line 9: layers.first_token.models.1: model 'local-ft' listed twice"),
    ("[dilemmas, diversity]", "[dilemmas, dilemmas]", "a.yaml line 7: models.2.layers.1: layer dilemmas listed twice"),
    ("[dilemmas, diversity]", "[]", "a.yaml line 7: models.2.layers: List should have at least 1 item"),
    ("  def: {}", "  def: {models: [local-ft]}",
     "a.yaml line 11: layers.def.models.0: model local-ft's own layers: (first_token) leave out def"),
    ('api.openai.com/v1"}', 'api.openai.com/v1", layers: [first_token]}', ""),  # claude still runs def
    (('api.openai.com/v1"}', "[dilemmas, diversity]"), ('api.openai.com/v1", layers: [first_token]}', "[dilemmas]"),
     "a.yaml line 11: layers.def: no model runs this layer"),
    (("models: [local-ft, gpt-4o]", "  dilemmas: {}\n  def: {}"),
     ("models: [local-ft]", "  dilemmas: {models: [claude]}\n  def: {models: [claude]}"),
     "a.yaml line 4: models.1: model gpt-4o runs no layer"),
    ("models: [local-ft, gpt-4o]", "models: local-ft", "a.yaml line 9: layers.first_token.models: Input should be a valid list"),
])
def test_bad_model_layers_are_one_line_errors_with_file_and_line(old, new, message):
    text = BASE
    for o, n in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
        assert o in text
        text = text.replace(o, n)
    if not message:
        parse_audit(text, "a.yaml")
        return
    with pytest.raises(ValueLensError) as e:
        parse_audit(text, "a.yaml")
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_validate_prints_the_plan(tmp_path):
    from typer.testing import CliRunner

    from valuelens.cli import app

    p = tmp_path / "a.yaml"
    p.write_text(BASE.replace("name: t", f"name: t\noutput_dir: {tmp_path / 'o'}"), encoding="utf-8")
    r = CliRunner().invoke(app, ["validate", str(p)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "local-ft: first_token" in r.output and "claude: def, dilemmas" in r.output


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mixed_fleet.yaml"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_mixed_fleet_example_validates_and_is_the_readme_quickstart(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from valuelens.cli import app

    monkeypatch.chdir(tmp_path)  # its output directory (runs/mixed-fleet) is checked relative to here
    r = CliRunner().invoke(app, ["validate", str(EXAMPLE)], env={"COLUMNS": "200", "OPENAI_API_KEY": "sk-test"})
    assert r.exit_code == 0, r.output
    assert "llama3-8b: first_token" in r.output and "gpt-4o: def, dilemmas, mark" in r.output
    cfg = parse_audit(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    kinds = {m.name: m.spec.kind for m in cfg.models}
    assert kinds == {"llama3-8b": "hf", "qwen2-7b": "openai", "gpt-4o": "openai"}
    assert cfg.models[1].spec.url.startswith("http://127.0.0.1") and "api.openai.com" in cfg.models[2].spec.url
    assert cfg.layers.first_token.train is not None  # fine-tuning, on the local weights only
    # the README's quickstart shows this audit
    quick = README.read_text(encoding="utf-8").split("## Quickstart on real models", 1)[1]
    block = quick.split("```yaml", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    # without the API key the same file fails validation, naming the line
    r = CliRunner().invoke(app, ["validate", str(EXAMPLE)], env={"COLUMNS": "200", "OPENAI_API_KEY": ""})
    assert r.exit_code == 2 and "OPENAI_API_KEY" in r.output and "line 30" in r.output, r.output


def test_failed_is_not_not_run(tmp_path, monkeypatch):
    from fake_openai_server import FakeOpenAIServer

    monkeypatch.setenv("FLEET_BAD_KEY", "wrong-key")
    scripts = _scripts(tmp_path)
    out = tmp_path / "out"
    with FakeOpenAIServer(api_key="right-key") as server:
        text = f"""\
name: failing
output_dir: {out}
countries: [United States, China]
languages: [en]
models:
  - {{name: a, backend: 'scripted:{scripts["a"]}'}}
  - name: bad
    backend: "openai:fake@{server.url}"
    options: {{api_key_env: FLEET_BAD_KEY, max_retries: 1, backoff_base: 0.001, backoff_max: 0.01}}
    layers: [first_token]
layers:
  first_token: {FIRST_TOKEN}
  dilemmas: {DILEMMAS}
"""
        api.run_full(parse_audit(text, "f.yaml"), out)
    data = report_data(out)
    layers = {x.key: x for x in data.layers}
    assert data.cell("bad", layers["first_token"]) == "failed"
    assert data.cell("bad", layers["dilemmas"]) == "not run"
    assert data.cell("a", layers["dilemmas"]) == "ran"
    html = build_report(out).read_text(encoding="utf-8")
    matrix = html.split("Which model ran which layer", 1)[1].split("</table>", 1)[0]
    assert '<strong class="flagged">failed</strong>' in matrix and '<em class="notrun">not run</em>' in matrix
