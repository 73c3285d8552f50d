"""``valuelens run`` without YAML (issue 20.8): --model, --layers, --limit, --countries, --languages, --seed;
with an audit file the flags override its fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from valuelens import api
from valuelens.cli import app
from valuelens.config import AuditFlags, audit_with_flags, flag_model, parse_audit
from valuelens.errors import ValueLensError

ROOT = Path(__file__).resolve().parents[1]


def _script(tmp: Path, name: str = "s") -> Path:
    p = tmp / f"{name}.json"
    p.write_text(json.dumps({"rules": [{"contains": "China", "text": "B"}], "default_text": "A"}))
    return p


def _invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return r.exit_code, r.output


def test_flag_audit_equals_the_same_audit_as_yaml(tmp_path):
    s = _script(tmp_path)
    code, output = _invoke("run", "--model", f"m1=scripted:{s}", "--model", f"scripted:{s}",
                           "--layers", "first_token,dilemmas", "--limit", "1", "--countries", "United States,China",
                           "--languages", "en", "--seed", "3", "--out", str(tmp_path / "flags"), "-q")
    assert code == 0, output
    yaml_file = tmp_path / "audit.yaml"
    yaml_file.write_text(f"""\
seed: 3
countries: [United States, China]
languages: [en]
models:
  - {{name: m1, backend: "scripted:{s}"}}
  - {{name: s, backend: "scripted:{s}"}}
layers:
  first_token: {{limit: 1}}
  dilemmas: {{limit: 1}}
""")
    code, output = _invoke("run", str(yaml_file), "--out", str(tmp_path / "yaml"), "-q")
    assert code == 0, output
    flags = sorted(p.name for p in (tmp_path / "flags" / "results").glob("*.parquet"))
    assert flags == sorted(p.name for p in (tmp_path / "yaml" / "results").glob("*.parquet"))
    assert "first_token_items.parquet" in flags and any(n.startswith("dilemma_") for n in flags)
    for name in flags:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "flags" / "results" / name),
                                      pd.read_parquet(tmp_path / "yaml" / "results" / name), obj=name)
    a = json.loads((tmp_path / "flags" / "run.json").read_text())
    b = json.loads((tmp_path / "yaml" / "run.json").read_text())
    assert a["audit"] == b["audit"] and a["seed"] == 3
    assert a["audit_source"].startswith("command line: --model m1=scripted:")
    assert "--limit 1" in a["audit_source"] and "--seed 3" in a["audit_source"]


@pytest.mark.filterwarnings("ignore:.*deprecated name of layers.def:DeprecationWarning")
def test_flags_override_the_audit_file(tmp_path):
    s = _script(tmp_path)
    path = tmp_path / "a.yaml"
    path.write_text(f"""\
name: base
seed: 1
countries: [United States, China]
languages: [en, zh]
models:
  - {{name: x, backend: "scripted:{s}", layers: [first_token]}}
  - {{name: y, backend: "scripted:{s}", layers: [dilemmas]}}
  - {{name: z, backend: "scripted:{s}"}}
layers:
  first_token: {{limit: 5, control: false}}
  dilemmas: {{limit: 2}}
  diversity: {{data: {{kind: synthetic}}, participants: 2}}
""")
    cfg = audit_with_flags(path, AuditFlags(seed=7, languages=["en"], countries=["China"]))
    assert (cfg.seed, cfg.languages, cfg.countries, cfg.name) == (7, ["en"], ["China"], "base")
    assert cfg.layers.first_token.limit == 5
    assert cfg.model_layers() == {"x": ["first_token"], "y": ["dilemmas"], "z": ["first_token", "def", "dilemmas"]}
    # --layers: the file's settings of the chosen layers (an old key too); models that run none are left out
    cfg = audit_with_flags(path, AuditFlags(layers=["first_token", "def"], limit=3))
    assert [s.key for s, _ in cfg.layers.selected()] == ["first_token", "def"]
    assert cfg.layers.first_token.limit == 3 and cfg.layers.first_token.control is False
    assert getattr(cfg.layers, "def").participants == 2 and getattr(cfg.layers, "def").limit == 3
    assert cfg.model_layers() == {"x": ["first_token"], "z": ["first_token", "def"]}
    assert any("--layers: y runs none of first_token, def" in n for n in cfg.notes)
    # --model replaces the models (and with them the models' and layers' selections)
    cfg = audit_with_flags(path, AuditFlags(models=[f"scripted:{s}"]))
    assert [m.name for m in cfg.models] == ["s"]
    assert cfg.model_layers() == {"s": ["first_token", "def", "dilemmas"]}
    # an error in the file still names its line
    bad = path.read_text().replace("limit: 2}", "limit: 0}")
    path.write_text(bad)
    with pytest.raises(ValueLensError, match=r"a.yaml line 11: layers.dilemmas.limit"):
        audit_with_flags(path, AuditFlags(seed=1))
    with pytest.raises(ValueLensError, match=r"^--limit: layers.first_token.limit: Input should be greater"):
        audit_with_flags(path, AuditFlags(limit=0))


def test_file_model_left_out_keeps_the_file_lines_of_the_others(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("""\
models:
  - {name: x, backend: embedded, layers: [dilemmas]}
  - {name: y, backend: "hf:", layers: [first_token]}
layers:
  first_token: {}
  dilemmas: {}
""")
    with pytest.raises(ValueLensError, match=r"^.*a.yaml line 3: models.0.backend: "):
        audit_with_flags(path, AuditFlags(layers=["first_token"]))


@pytest.mark.parametrize("raw,name,spec", [
    ("embedded", "embedded", "embedded"),
    ("openai:Qwen/Qwen2-7B-Instruct@http://127.0.0.1:8000/v1", "Qwen2-7B-Instruct",
     "openai:Qwen/Qwen2-7B-Instruct@http://127.0.0.1:8000/v1"),
    ("openai:gpt-4o", "gpt-4o", "openai:gpt-4o"),
    ("hf:/models/Meta-Llama-3-8B-Instruct/", "Meta-Llama-3-8B-Instruct", "hf:/models/Meta-Llama-3-8B-Instruct/"),
    ("scripted:/tmp/my script.json", "my-script", "scripted:/tmp/my script.json"),
    ("mine=openai:gpt-4o@https://x.example/v1?api-version=2024", "mine", "openai:gpt-4o@https://x.example/v1?api-version=2024"),
    ("openai:gpt-4o@https://x.example/v1?api-version=2024", "gpt-4o", "openai:gpt-4o@https://x.example/v1?api-version=2024"),
])
def test_model_flag_names(raw, name, spec):
    assert flag_model(raw) == (name, spec)


@pytest.mark.parametrize("args,line", [
    (["--layers", "first_token"], "--model: give at least one model"),
    (["--model", "embedded"], "--layers: name the layers to run"),
    (["--model", "embedded", "--layers", "frist_token"], "--layers: unknown layer 'frist_token'; did you mean first_token?"),
    (["--model", "embedded", "--layers", "first_token,first_token"], "--layers: first_token given twice"),
    (["--model", "embedded", "--layers", "first_token", "--limit", "x"], "--limit: 'x' is not a whole number"),
    (["--model", "embedded", "--layers", "first_token", "--limit", "0"],
     "--limit: layers.first_token.limit: Input should be greater than or equal to 1"),
    (["--model", "embedded", "--layers", "mark", "--limit", "2"], "--limit: none of the layers (mark) takes a limit"),
    (["--model", "embedded", "--layers", "mark"], "--layers mark: layers.mark."),
    (["--model", "embedded", "--layers", "first_token", "--countries", "Narnia"],
     "--countries: countries: unknown country 'Narnia'"),
    (["--model", "embedded", "--layers", "first_token", "--countries", "China,,United States"],
     "--countries: 'China,,United States' has an empty item"),
    (["--model", "embedded", "--layers", "first_token", "--languages", "en,fr"],
     "--languages: languages.1: Input should be 'en' or 'zh'"),
    (["--model", "embedded", "--layers", "first_token", "--seed", "1.5"], "--seed: '1.5' is not a whole number"),
    (["--model", "nope:x", "--layers", "first_token"], "--model nope:x: models.0.backend: unknown backend 'nope'"),
    (["--model", "embedded", "--model", "embedded", "--layers", "first_token"],
     "--model embedded: a second model named 'embedded'; name them: --model NAME=SPEC"),
    (["--model", "openai:gpt-4o@https://api.openai.com/v1", "--layers", "first_token"], None),  # checked below
])
def test_bad_flags_are_one_line(tmp_path, args, line, monkeypatch):
    if line is None:  # a fine-tuning first_token from a file, an API model from the flags
        path = tmp_path / "a.yaml"
        path.write_text("models: [{name: x, backend: embedded}]\nlayers:\n  first_token:\n    train:\n"
                        "      train: {questions: [D01]}\n      val: {questions: [D02]}\n")
        args = [str(path), *args]
        line = "--model openai:gpt-4o@https://api.openai.com/v1: models.0: model gpt-4o runs first_token, but " \
               "first_token.train needs the weights: the openai backend cannot be fine-tuned"
    code, output = _invoke("run", *args, "--out", str(tmp_path / "o"), "-q")
    assert code == 2, output
    assert output.strip().startswith(f"error: {line}"), output
    assert len(output.strip().splitlines()) == 1, output
    assert not (tmp_path / "o").exists()  # nothing written


def test_openai_base_url_default_and_the_cli_in_a_subprocess(tmp_path):
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "COLUMNS": "200",
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("OPENAI_API_KEY", None)
        r = subprocess.run([sys.executable, "-m", "valuelens", "run", "--model", "openai:fake-model", "--layers",
                            "first_token", "--limit", "1", "--languages", "en", "--out", str(tmp_path / "o"), "-q"],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len(server.requests) > 0
    manifest = json.loads((tmp_path / "o" / "run.json").read_text())
    assert manifest["model_layers"] == {"fake-model": ["first_token"]}
    items = pd.read_parquet(tmp_path / "o" / "results" / "first_token_items.parquet")
    assert set(items["model"]) == {"fake-model"} and set(items["language"]) == {"en"}


def test_api_load_with_flags_equals_yaml():
    flags = AuditFlags(models=["embedded"], layers=["dilemmas"], limit=2, countries=["China"], languages=["zh"],
                       seed=5)
    a = api.load(None, flags)
    b = parse_audit("seed: 5\ncountries: [China]\nlanguages: [zh]\nmodels: [{name: embedded, backend: embedded}]\n"
                    "layers: {dilemmas: {limit: 2}}\n", "b.yaml")
    assert a.model_dump(mode="json") == b.model_dump(mode="json")


def test_layers_flag_leaves_out_models_a_layers_models_list_excludes(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("""\
models:
  - {name: x, backend: embedded}
  - {name: y, backend: embedded, layers: [dilemmas]}
  - {name: z, backend: embedded}
layers:
  first_token: {models: [x]}
  dilemmas: {}
""")
    cfg = audit_with_flags(path, AuditFlags(layers=["first_token"]))
    assert cfg.model_layers() == {"x": ["first_token"]} and cfg.notes == [
        "--layers: y, z run none of first_token; left out of this run"]
    cfg = audit_with_flags(path, AuditFlags(layers=["dilemmas"]))
    assert cfg.model_layers() == {"x": ["dilemmas"], "y": ["dilemmas"], "z": ["dilemmas"]} and not cfg.notes
