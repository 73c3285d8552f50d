"""Audit-file validation: every error names the file, the line and the key."""

from __future__ import annotations

import pytest

from valuelens.config import demo_audit, load_audit, parse_audit
from valuelens.errors import ValueLensError
from valuelens.models.registry import BACKENDS, OPTIONS, BackendSpec, load_backend, parse_spec, redact_url

GOOD = """\
name: t
countries: [United States, China]
models:
  - name: m1
    backend: scripted:x.json
layers:
  first_token: {}
"""


def test_good_and_demo_audits_load():
    cfg = parse_audit(GOOD, "a.yaml")
    assert cfg.models[0].name == "m1" and cfg.layers.first_token is not None
    assert cfg.out_dir().as_posix() == "runs/t"
    demo = demo_audit()
    assert demo.models[0].backend == "embedded" and demo.models[0].region == "Western"


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("name: t\n", "name: t\ncolour: red\n"), r"a\.yaml line 2: colour: unknown key"),
    (GOOD.replace("    backend:", "    batch_size: many\n    backend:"), r"a\.yaml line 5: models\.0\.batch_size: .*integer"),
    (GOOD.replace("scripted:x.json", "telepathy:x"), r"line 5: models\.0\.backend: unknown backend 'telepathy'"),
    (GOOD.replace("first_token: {}", "first_token: {max_tokens: -3}"), r"line 7: layers\.first_token\.max_tokens: .*greater than or equal to 1"),
    (GOOD.replace("first_token: {}", "first_tokn: {}"), r"line 7: layers\.first_tokn: unknown key"),
    (GOOD.replace("China]", "Atlantis]"), r"a\.yaml line 2: countries: unknown country 'Atlantis'"),
    (GOOD.replace("  first_token: {}\n", "  first_token:\n"), r"no layer selected"),
    (GOOD.replace("models:", "languages: [fr]\nmodels:"), r"line 3: languages\.0: Input should be 'en' or 'zh'"),
    (GOOD.replace("    backend: scripted:x.json", "    backend: scripted:x.json\n    options: {api_key: sk-123}"),
     r"secrets do not belong in the audit file"),
    ("name: t\nmodels: !!python/object/apply:os.system ['echo hi']\n", r"a\.yaml line 2: invalid YAML: .*python/object/apply"),
    ("name: [unclosed\n", r"a\.yaml line 2: invalid YAML"),
    ("- just\n- a list\n", r"a\.yaml: expected a mapping"),
    ("", r"a\.yaml: expected a mapping"),
])
def test_bad_audits_give_one_line_errors(text, expected):
    with pytest.raises(ValueLensError, match=expected) as e:
        parse_audit(text, "a.yaml")
    assert "\n" not in str(e.value)


def test_duplicate_model_names():
    text = GOOD.replace("layers:", "  - name: m1\n    backend: embedded\nlayers:")
    with pytest.raises(ValueLensError, match=r"line 3: models: duplicate model names: \['m1'\]"):
        parse_audit(text, "a.yaml")


def test_file_problems(tmp_path):
    with pytest.raises(ValueLensError, match="file not found"):
        load_audit(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueLensError, match=r"latin1\.yaml: not UTF-8"):
        load_audit(bad)
    with pytest.raises(ValueLensError, match="is a directory"):
        load_audit(tmp_path)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (2 << 20))
    with pytest.raises(ValueLensError, match="larger than"):
        load_audit(huge)


# issue 14.6, 16, 17.4: what the audit file alone decides ------------------------------------------------

def _with(model: str = "", top: str = "", layer: str = "first_token: {}") -> str:
    """GOOD with extra keys on the model entry, at the top level, or another layers block."""
    text = GOOD.replace("    backend: scripted:x.json\n", "    backend: scripted:x.json\n" + model) if model else GOOD
    return top + text.replace("first_token: {}", layer)


@pytest.mark.parametrize("text, expected", [
    # typed backend options, unknown keys with a hint
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {max_concurency: 2}"),
     r"line 6: models\.0\.options\.max_concurency: unknown option of the openai backend; did you mean max_concurrency\?"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options:\n      mode: chat\n      timeuot: 3"),
     r"line 8: models\.0\.options\.timeuot: .*did you mean timeout\?"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {max_concurrency: many}"),
     r"line 6: models\.0\.options\.max_concurrency: Input should be a valid integer"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {max_concurrency: '4'}"),
     r"models\.0\.options\.max_concurrency: Input should be a valid integer"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {exact_options: 1}"),
     r"models\.0\.options\.exact_options: Input should be a valid boolean"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {mode: embeddings}"),
     r"models\.0\.options\.mode: Input should be 'chat' or 'completions'"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {timeout: .nan}"),
     r"models\.0\.options\.timeout: Input should be a finite number"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {api_key_env: 'MY KEY'}"),
     r"models\.0\.options\.api_key_env: String should match pattern"),
    (GOOD.replace("scripted:x.json", "hf:/m\n    options: {dtyp: float16}"), r"options\.dtyp: .*did you mean dtype\?"),
    (GOOD.replace("scripted:x.json", "hf:/m\n    options: {dtype: fp8}"), r"options\.dtype: Input should be 'float32'"),
    (GOOD.replace("scripted:x.json", "embedded\n    options: {devcie: cuda}"),
     r"options\.devcie: unknown option of the embedded backend; did you mean device\?"),
    (GOOD.replace("scripted:x.json", "embedded\n    options: {device: tpu}"), r"options\.device: unknown device 'tpu'"),
    (GOOD.replace("scripted:x.json", "embedded\n    options: {gguf_file: x.gguf}"),
     r"options\.gguf_file: unknown option of the embedded backend; known: device, dtype"),
    (GOOD.replace("scripted:x.json", "vllm:/m\n    options: {temprature: 0.7}"),
     r"options\.temprature: unknown option of the vllm backend; known: tensor_parallel_size"),
    (GOOD.replace("scripted:x.json", "vllm:/m\n    options: {tensor_paralel_size: 2}"),
     r"options\.tensor_paralel_size: .*did you mean tensor_parallel_size\?"),
    (GOOD.replace("scripted:x.json", "vllm:/m\n    options: {gpu_memory_utilization: 1.5}"),
     r"options\.gpu_memory_utilization: Input should be less than or equal to 1"),
    (_with("    options: {delay: 1}\n"), r"options\.delay: unknown option of the scripted backend"),
    (_with("    options: {batch_size: 4}\n"), r"options\.batch_size: .*set batch_size on the model entry"),
    (_with("    options: {lane: 3}\n"), r"options\.lane: Input should be a valid string"),
    # specs parsed once; malformed ones are errors here
    (GOOD.replace("scripted:x.json", "openai:gpt-4o"), r"line 5: models\.0\.backend: .*expected openai:MODEL@URL"),
    (GOOD.replace("scripted:x.json", "openai:@http://h/v1"), r"expected openai:MODEL@URL"),
    (GOOD.replace("scripted:x.json", "openai:m@ftp://h/v1"), r"must start with http:// or https://"),
    (GOOD.replace("scripted:x.json", "openai:m@http:///v1"), r"the URL has no host"),
    (GOOD.replace("scripted:x.json", "openai:m@http://h:70000/v1"), r"not a valid URL"),
    (GOOD.replace("scripted:x.json", "'hf:'"), r"backend 'hf:' needs a path"),
    (GOOD.replace("scripted:x.json", "'vllm:  '"), r"backend 'vllm:' needs a path"),
    (GOOD.replace("scripted:x.json", "'scripted:'"), r"backend 'scripted:' needs a path"),
    (GOOD.replace("scripted:x.json", "embedded:smol"), r"'embedded' takes no argument"),
    # duplicate keys anywhere
    (GOOD + "models: []\n", r"a\.yaml line 8: models: duplicate key \(also at line 3\)"),
    ("seed: 1\n" + GOOD + "seed: 2\n", r"line 9: seed: duplicate key \(also at line 1\)"),
    (GOOD + "  first_token: {limit: 1}\n", r"line 8: layers\.first_token: duplicate key \(also at line 7\)"),
    (GOOD.replace("    backend: scripted:x.json", "    backend: scripted:x.json\n    backend: embedded"),
     r"line 6: models\.0\.backend: duplicate key \(also at line 5\)"),
    (_with(layer="first_token: {limit: 1, control: true, limit: 2}"), r"line 7: layers\.first_token\.limit: duplicate key"),
    # true/false is not a number
    (_with(layer="first_token: {limit: true}"), r"line 7: layers\.first_token\.limit: expected a number, not true"),
    (_with(top="seed: false\n"), r"line 1: seed: expected a number, not false"),
    (_with("    batch_size: true\n"), r"line 6: models\.0\.batch_size: expected a number, not true"),
    (_with("    params_b: true\n"), r"models\.0\.params_b: expected a number, not true"),
    (_with(layer="dilemmas: {limit: true}"), r"layers\.dilemmas\.limit: expected a number, not true"),
    # languages and countries
    (_with(top="languages: [en, en]\n"), r"line 1: languages: en given more than once"),
    (GOOD.replace("China]", "China, China]"), r"line 2: countries: China given more than once"),
    (GOOD.replace("[United States, China]", "[Japan]\ncountry_names: {Japan: {zh: ''}}"),
     r"line 3: country_names: Japan: the zh name is empty"),
    (GOOD.replace("[United States, China]", "[Japan]\ncountry_names: {Japan: {zh: '  '}}"), r"the zh name is empty"),
    (GOOD.replace("[United States, China]", "[Japan]\ncountry_names: {Japan: {zh: 日本, fr: Japon}}"),
     r"Japan: unknown language 'fr'"),
    (GOOD.replace("[United States, China]", "[Japan]\ncountry_names: {'': {zh: 日本}}"), r"a country name is empty"),
    # names used as directory and file names
    (GOOD.replace("name: t", "name: '..'"), r"line 1: name: '\.\.' is not a usable name \(only dots\)"),
    (GOOD.replace("name: t", "name: '.'"), r"line 1: name: .*only dots"),
    (GOOD.replace("name: m1", "name: '...'"), r"line 4: models\.0\.name: .*only dots"),
])
def test_config_side_refusals(text, expected):
    with pytest.raises(ValueLensError, match=expected) as e:
        parse_audit(text, "a.yaml")
    assert "\n" not in str(e.value)


def test_options_that_fit_are_accepted_as_given():
    cfg = parse_audit(GOOD.replace("scripted:x.json", "openai:m@http://h/v1\n    options: {max_concurrency: 4, "
                                   "timeout: 5, api_key_env: MY_KEY, lane: api}"), "a.yaml")
    assert cfg.models[0].options == {"max_concurrency": 4, "timeout": 5, "api_key_env": "MY_KEY", "lane": "api"}
    assert cfg.models[0].spec == BackendSpec("openai", model="m", url="http://h/v1")
    for backend, opts in [("embedded", "{device: cpu, dtype: bfloat16}"), ("hf:/m", "{device: 'cuda:1', gguf_file: a.gguf}"),
                          ("vllm:/m", "{max_model_len: 2048, engine_args: {max_num_batched_tokens: 4096}}"),
                          ("scripted:x.json", "{lane: local}")]:
        assert parse_audit(GOOD.replace("scripted:x.json", f"{backend}\n    options: {opts}"), "a.yaml").models[0].options
    # true/false stays fine where a field is a bool, merge keys are not duplicates, "a..b" is a name
    assert parse_audit(_with(layer="first_token: {control: false, generate_check: true}"), "a.yaml")
    merged = parse_audit(GOOD.replace("  - name: m1\n    backend: scripted:x.json\n",
                                      "  - &m {name: m1, backend: scripted:x.json}\n  - {<<: *m, name: m2}\n"), "a.yaml")
    assert [m.name for m in merged.models] == ["m1", "m2"]
    assert parse_audit(GOOD.replace("name: m1", "name: v1..2"), "a.yaml").models[0].name == "v1..2"


@pytest.mark.parametrize("spec, parsed", [
    ("embedded", BackendSpec("embedded")),
    ("hf:/models/llama", BackendSpec("hf", path="/models/llama")),
    ("vllm:/m", BackendSpec("vllm", path="/m")),
    ("scripted:a.json", BackendSpec("scripted", path="a.json")),
    ("openai:qwen2-7b@http://127.0.0.1:8000/v1", BackendSpec("openai", model="qwen2-7b", url="http://127.0.0.1:8000/v1")),
    ("openai:org/m@v2@https://h/v1?api-version=2024", BackendSpec("openai", model="org/m@v2", url="https://h/v1?api-version=2024")),
])
def test_specs_parse_once_into_a_typed_spec(spec, parsed):
    assert parse_spec(spec) == parsed and str(parsed) == spec


@pytest.mark.parametrize("url", ["https://sk-abc123secret@api.example.com/v1", "https://user:sk-abc123secret@h/v1",
                                 "https://h/v1?api-version=1&api_key=sk-abc123secret",
                                 "https://h/v1?token=sk-abc123secret"])
def test_a_key_pasted_into_the_url_is_refused_and_never_shown(url):
    with pytest.raises(ValueLensError, match="holds a credential") as e:
        parse_audit(GOOD.replace("scripted:x.json", f"'openai:m@{url}'"), "a.yaml")
    assert "abc123secret" not in str(e.value) and "***" in str(e.value)
    assert "abc123secret" not in redact_url(url)


def test_option_schemas_match_what_the_backends_take():
    import inspect

    from valuelens.models import embedded
    from valuelens.models.hf import HFBackend
    from valuelens.models.openai_api import OpenAIBackend
    from valuelens.models.vllm_engine import VLLMBackend

    assert set(OPTIONS) == set(BACKENDS)
    fields = {k: set(v.model_fields) - {"lane"} for k, v in OPTIONS.items()}
    assert fields["openai"] == set(OpenAIBackend.OPTIONS)
    assert fields["vllm"] == set(VLLMBackend.OPTIONS)
    hf_params = set(inspect.signature(HFBackend.from_path).parameters) | set(inspect.signature(HFBackend).parameters)
    assert fields["hf"] <= hf_params
    assert fields["embedded"] == set(inspect.signature(embedded.load).parameters) - {"batch_size"}
    assert fields["scripted"] == set()


def test_load_backend_checks_options_too(tmp_path):
    (tmp_path / "s.json").write_text('{"rules": []}')
    with pytest.raises(ValueLensError, match=r"backend scripted: unknown option 'max_concurrency' of the scripted"):
        load_backend(f"scripted:{tmp_path / 's.json'}", max_concurrency=2)
    with pytest.raises(ValueLensError, match=r"unknown option 'tensor_paralel_size'.*did you mean tensor_parallel_size\?"):
        load_backend("vllm:/models/x", tensor_paralel_size=2)  # before vLLM is imported
    with pytest.raises(ValueLensError, match=r"backend openai: options\.timeout: Input should be a valid number"):
        load_backend("openai:m@http://127.0.0.1:9/v1", timeout="soon")
    assert load_backend(f"scripted:{tmp_path / 's.json'}", batch_size=4, lane="x").name == "s"


def test_embedded_honours_device_and_dtype(tiny_model_dir, monkeypatch):
    """`embedded` takes `device` and `dtype` like hf:PATH; both reach the
    weights and the identity (so the cache never mixes them)."""
    import torch

    from valuelens.models import embedded

    monkeypatch.setattr(embedded, "dequantized_dir", lambda: tiny_model_dir)
    base = load_backend("embedded")
    half = load_backend("embedded", dtype="bfloat16", device="cpu")
    assert next(base.model.parameters()).dtype == torch.float32 and base.identity()["dtype"] == "float32"
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.identity()["dtype"] == "bfloat16"
    assert base.name == half.name == "embedded:SmolLM2-135M-Instruct"
    if torch.cuda.is_available():  # a device machine
        gpu = load_backend("embedded", device="cuda")
        assert gpu.device.type == "cuda" and gpu.identity()["device"] == "cuda"
    else:
        with pytest.raises(ValueLensError, match="device 'cuda' is not available on this machine"):
            load_backend("embedded", device="cuda")
