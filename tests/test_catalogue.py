"""The built-in model catalogue: the file, the lookup, filling audit entries,
and `valuelens models`."""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import get_args

import pytest

from valuelens.config import ModelEntry, parse_audit
from valuelens.data import catalogue as cat
from valuelens.errors import ValueLensError

PAPER_MODELS = [
    "Llama-3-8B", "Llama-3-8B-Instruct", "Llama-3-70B", "Llama-3-70B-Instruct", "Mistral-7B-Instruct",
    "Mixtral-8x7B-Instruct", "Dolphin-2.2.1-Mistral-7B", "Dolphin-2.9.1-Llama-3-8B", "Llama-3-Chinese-8B-Instruct",
    "Qwen2-7B", "Qwen2-7B-Instruct", "Qwen2-72B", "Qwen2-72B-Instruct",
    *[f"Qwen2.5-{s}B-Instruct" for s in ("0.5", "1.5", "3", "7", "14", "32", "72")],
    "DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Qwen-14B", "ChatGLM2-6B", "GLM-4-9B", "GLM-4-9B-Chat",
    "GLM-4-Air", "Baichuan2-13B-Chat", "WizardLM-13B", "GPT-4o", "Claude-3.5-Sonnet", "Doubao-1.5-pro",
    "SmolLM2-135M-Instruct",
]


def audit(models: str) -> str:
    return f"name: t\nmodels:\n{models}layers:\n  first_token: {{}}\n"


def literal_values(field: str) -> set[str]:
    return set(get_args(ModelEntry.model_fields[field].annotation))


# the file ---------------------------------------------------------------------

def test_catalogue_file_validates():
    raw = json.loads(resources.files("valuelens.data").joinpath("catalogue.json").read_text(encoding="utf-8"))
    models = cat.known_models()
    assert len(models) == len(raw["models"]) >= len(PAPER_MODELS)
    names = [m.name for m in models]
    assert set(PAPER_MODELS) <= set(names)
    owner: dict[str, str] = {}
    for m in models:
        assert m.region in literal_values("region")
        assert m.architecture is None or m.architecture in literal_values("architecture") - {"unknown"}
        assert m.alignment is None or m.alignment in literal_values("alignment") - {"unknown"}
        assert m.params_b is None or m.params_b > 0
        assert m.active_params_b is None or (m.architecture == "MoE" and 0 < m.active_params_b < m.params_b)
        assert m.source.strip() and m.developer.strip() and m.family.strip()
        assert m.hf_repo or m.api_ids, m.name  # something to reach it by
        for k in m.keys():  # names, aliases, repo ids: each one names one model
            assert owner.setdefault(k, m.name) == m.name, f"{k!r} names {owner[k]} and {m.name}"
        ModelEntry(name="x", backend="embedded", catalogue=m.name)  # its metadata passes the audit schema


def test_catalogue_facts_spot_checks():
    get = cat.lookup
    assert get("Mixtral-8x7B-Instruct").architecture == "MoE" and get("Mixtral-8x7B-Instruct").active_params_b == 12.9
    assert get("Llama-3-8B").alignment == "base" and get("Llama-3-8B-Instruct").alignment == "RLHF-DPO"
    assert get("Dolphin-2.9.1-Llama-3-8B").alignment == "full-FT" and get("Dolphin-2.2.1-Mistral-7B").family == "Mistral"
    assert get("Llama-3-Chinese-8B-Instruct").region == "China" and get("Llama-3-Chinese-8B-Instruct").family == "Llama-3"
    assert get("Qwen2.5-0.5B-Instruct").params_b == 0.49 and get("Qwen2-72B").region == "China"
    assert get("GPT-4o").params_b is None and get("GPT-4o").architecture is None and not get("GPT-4o").open_weights
    assert get("SmolLM2-135M-Instruct").params_b == 0.135


def test_a_broken_catalogue_is_refused():
    good = json.loads(resources.files("valuelens.data").joinpath("catalogue.json").read_text(encoding="utf-8"))
    first = good["models"][0]
    with pytest.raises(ValueLensError, match=r"models\.0\.region"):
        cat._parse({"models": [{**first, "region": "Mars"}]}, "c.json")
    with pytest.raises(ValueLensError, match=r"models\.0\.params_b"):
        cat._parse({"models": [{**first, "params_b": 0}]}, "c.json")
    with pytest.raises(ValueLensError, match="names both"):
        cat._parse({"models": [first, {**first, "name": "Other", "hf_repo": None, "aliases": [first["name"].upper()]}]},
                   "c.json")


# lookup -----------------------------------------------------------------------

@pytest.mark.parametrize("key, expected", [
    ("Llama-3-8B-Instruct", "Llama-3-8B-Instruct"),
    ("llama-3-8b-instruct", "Llama-3-8B-Instruct"),            # case
    ("LLAMA3-8B-INSTRUCT", "Llama-3-8B-Instruct"),             # alias
    ("meta-llama/Meta-Llama-3-8B-Instruct", "Llama-3-8B-Instruct"),  # repo id
    ("Meta-Llama-3-8B-Instruct", "Llama-3-8B-Instruct"),       # repo id's last component
    ("  Qwen/Qwen2.5-7B-Instruct ", "Qwen2.5-7B-Instruct"),
    ("Distil-Qwen-14B", "DeepSeek-R1-Distill-Qwen-14B"),       # the paper's Table-2 spelling
    ("gpt-4o-2024-08-06", "GPT-4o"),                           # API id
    ("claude-3-5-sonnet-20241022", "Claude-3.5-Sonnet"),
    ("mistralai/Mistral-7B-Instruct-v0.1", "Mistral-7B-Instruct"),
    ("ehartford/dolphin-2.2.1-mistral-7b", "Dolphin-2.2.1-Mistral-7B"),
    ("Llama-3-8B", "Llama-3-8B"),                              # base and instruct stay apart
    ("llama-4", None), ("", None), ("gpt-4o-mini", None),
])
def test_lookup(key, expected):
    hit = cat.lookup(key)
    assert (hit.name if hit else None) == expected


@pytest.mark.parametrize("spec, expected", [
    ("embedded", "SmolLM2-135M-Instruct"),
    ("hf:/models/Meta-Llama-3-8B-Instruct", "Llama-3-8B-Instruct"),
    ("hf:/models/Meta-Llama-3-8B-Instruct/", "Llama-3-8B-Instruct"),
    ("hf:meta-llama/Meta-Llama-3-70B", "Llama-3-70B"),
    ("hf:/root/.cache/huggingface/hub/models--Qwen--Qwen2-72B-Instruct/snapshots/0123abc", "Qwen2-72B-Instruct"),
    ("vllm:/models/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B-Instruct"),
    ("openai:Qwen/Qwen2-7B-Instruct@http://127.0.0.1:8000/v1", "Qwen2-7B-Instruct"),
    ("openai:gpt-4o@https://api.openai.com/v1", "GPT-4o"),
    ("openai:anthropic/claude-3.5-sonnet@https://openrouter.ai/api/v1", "Claude-3.5-Sonnet"),
    ("openai:fake-model@http://127.0.0.1:9/v1", None),
    ("hf:/tmp/tiny", None),
    ("scripted:/data/gpt-4o", None),                          # canned answers are no model
])
def test_match_backend(spec, expected):
    hit = cat.match_backend(spec)
    assert (hit.name if hit else None) == expected


# audit files ------------------------------------------------------------------

def test_a_known_model_gets_its_metadata():
    cfg = parse_audit(audit("  - {name: llama3, backend: 'hf:/models/Meta-Llama-3-8B-Instruct'}\n"
                            "  - {name: mixtral, backend: scripted:x.json, catalogue: mistralai/Mixtral-8x7B-Instruct-v0.1}\n"
                            "  - {name: GPT-4o, backend: scripted:x.json}\n"
                            "  - {name: smol, backend: embedded}\n"), "a.yaml")
    llama, mixtral, gpt, smol = cfg.models
    assert llama.known_as == "Llama-3-8B-Instruct"
    assert (llama.display_name, llama.region, llama.family, llama.params_b, llama.architecture, llama.alignment) == \
        ("Llama-3-8B-Instruct", "Western", "Llama-3", 8.03, "dense", "RLHF-DPO")
    assert mixtral.known_as == "Mixtral-8x7B-Instruct" and mixtral.architecture == "MoE" and mixtral.params_b == 46.7
    assert gpt.known_as == "GPT-4o" and gpt.params_b is None and gpt.architecture == "unknown"  # undisclosed stays so
    assert smol.region == "Western" and smol.family == "SmolLM2"
    # what the file set is still told apart from what the catalogue filled
    assert llama.model_fields_set == {"name", "backend"}
    assert llama.catalogue()["region"] == "Western" and "catalogue_ref" not in llama.catalogue()
    assert "catalogue_ref" not in cfg.model_dump(mode="json")["models"][0]


def test_the_backend_wins_over_the_name_and_explicit_keys_win_over_both():
    cfg = parse_audit(audit(
        "  - name: qwen2-7b\n"
        "    backend: openai:Qwen/Qwen2-7B-Instruct@http://127.0.0.1:8000/v1\n"
        "    display_name: My Qwen\n    region: other\n    family: Qwen2\n    params_b: 7\n"
        "    architecture: MoE\n    alignment: SFT\n"
        "  - {name: picked, backend: embedded, catalogue: Llama-3-8B, alignment: full-FT}\n"), "a.yaml")
    qwen, picked = cfg.models
    assert qwen.known_as == "Qwen2-7B-Instruct"  # from the backend, not the name (Qwen2-7B, the base model)
    assert (qwen.display_name, qwen.region, qwen.family, qwen.params_b, qwen.architecture, qwen.alignment) == \
        ("My Qwen", "other", "Qwen2", 7.0, "MoE", "SFT")
    assert picked.known_as == "Llama-3-8B" and picked.family == "Llama-3" and picked.alignment == "full-FT"


def test_unknown_names_keep_the_defaults():
    cfg = parse_audit(audit("  - {name: m1, backend: scripted:x.json}\n"
                            "  - {name: tiny, backend: 'hf:/tmp/tiny', region: China}\n"
                            "  - {name: plain, backend: embedded, catalogue: null}\n"), "a.yaml")
    defaults = {k: ModelEntry.model_fields[k].default for k in cat.FILLED}
    for m in cfg.models:
        assert m.known_as is None
        got = {k: getattr(m, k) for k in cat.FILLED}
        scripted = {"toy": True} if m.backend.startswith("scripted:") else {}  # a test double is a toy model
        assert got == {**defaults, **scripted, **{k: getattr(m, k) for k in m.model_fields_set & set(cat.FILLED)}}
    assert cfg.models[1].region == "China" and cfg.models[2].family == "unknown"


def test_an_unknown_catalogue_name_is_a_one_line_error():
    with pytest.raises(ValueLensError, match=r"a\.yaml line 5: models\.0\.catalogue: 'Lama-3-8B-Instruct' is not in "
                                             r"the built-in catalogue .*did you mean Llama-3-8B-Instruct") as e:
        parse_audit(audit("  - name: m\n    backend: embedded\n    catalogue: Lama-3-8B-Instruct\n"), "a.yaml")
    assert "\n" not in str(e.value)


def test_the_demo_audit_takes_its_metadata_from_the_catalogue():
    from valuelens.config import demo_audit

    m = demo_audit().models[0]
    assert m.known_as == "SmolLM2-135M-Instruct"
    assert m.display_name == "SmolLM2-135M-Instruct (embedded)"  # the file's own value wins
    # SmolLM2-Instruct: SFT then DPO (model card) -> RLHF-DPO, from the catalogue
    assert (m.region, m.family, m.params_b, m.architecture, m.alignment) == (
        "Western", "SmolLM2", 0.135, "dense", "RLHF-DPO")


def test_no_torch_for_the_catalogue():
    import subprocess

    code = ("import sys; import valuelens.config, valuelens.data.catalogue as c; c.known_models(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# the command line -------------------------------------------------------------

def _cli(*args: str):
    from typer.testing import CliRunner

    from valuelens import cli

    # rich reads COLUMNS once, when the console is made (at the first import of
    # valuelens.cli, perhaps by another test): set the width itself, so the wide
    # catalogue keeps every column whatever ran before in this process.
    width = cli.console.width
    cli.console.width = 240
    try:
        return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "240"})
    finally:
        cli.console.width = width


def test_models_lists_the_builtin_catalogue(tmp_path):
    p = tmp_path / "audit.yaml"
    p.write_text(audit("  - {name: llama3, backend: 'hf:/models/Meta-Llama-3-8B-Instruct'}\n"
                       "  - {name: fake, backend: scripted:x.json, region: China, family: Test}\n"))
    r = _cli("models", str(p))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "backends" in out and "openai" in out and "fake" in out and "China" in out  # the existing tables
    assert "llama3 = Llama-3-8B-Instruct" in out
    assert "built-in catalogue" in out
    for row in ("Mixtral-8x7B-Instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1", "46.7 (12.9 active)",
                "Dolphin-2.9.1-Llama-3-8B", "Doubao-1.5-pro", "Claude-3.5-Sonnet", "Qwen2.5-72B-Instruct"):
        assert row in out, row
    r = _cli("models", "--catalogue")
    assert r.exit_code == 0 and "backends" not in r.stdout
    assert "Mixtral-8x7B-Instruct: Mistral AI announcement" in r.stdout and "gpt-4o-2024-08-06" in r.stdout
