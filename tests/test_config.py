"""Audit-file validation: every error names the file, the line and the key."""

from __future__ import annotations

import pytest

from valuelens.config import demo_audit, load_audit, parse_audit
from valuelens.errors import ValueLensError

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
