"""The layer registry (valuelens.layers.registry): config, audit and report take
their layer lists from it. A toy fifth layer — one module-like namespace and
one registry entry, nothing else — is validated by the audit file, checked
before the run, run per model, combined, exported and reported."""

from __future__ import annotations

import json
import types
import warnings

import pandas as pd
import pytest
from pydantic import Field

from valuelens import api
from valuelens import audit as audit_mod
from valuelens.config import Layers, layers_model, parse_audit, selectable
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext, registry
from valuelens.models import GenerateRequest, GenerateSettings, Message
from valuelens.report import build_report
from valuelens.report.load import BUILTIN_LAYERS, Layer, check_manifest, layers_of, report_data
from valuelens.strict import Strict


def toy_package() -> types.ModuleType:
    """What a new layer package holds: a settings model and the entry points."""
    toy = types.ModuleType("toy_layer")

    class ToySettings(Strict):
        questions: int = Field(default=2, ge=1, le=5)
        word: str = "hello"

    def check(settings: ToySettings, ctx: LayerContext) -> None:
        if settings.word == "bad":
            raise ValueLensError("layers.toy.word: 'bad' is not a word this layer can ask about")

    def run(model, settings: ToySettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
        keys = [(c, lang, i) for c in ctx.countries for lang in ctx.languages for i in range(settings.questions)]
        reqs = [GenerateRequest((Message("user", f"Toy question {i} about {c} ({lang}): {settings.word}?"),),
                                GenerateSettings(temperature=0.0, max_tokens=4, seed=ctx.seed)) for c, lang, i in keys]
        out = model.generate(reqs, ctx.tracker.track(f"{model.name}: toy", len(reqs)))
        return {"toy_answers": pd.DataFrame([{"country": c, "language": lang, "question": i, "text": g.texts[0]}
                                             for (c, lang, i), g in zip(keys, out)])}

    def combine(tables: dict[str, pd.DataFrame], settings: ToySettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
        a = tables["toy_answers"]
        return {"toy_summary": a.groupby("model", as_index=False).size().assign(seed=ctx.seed)}

    toy.ToySettings, toy.check, toy.run, toy.combine = ToySettings, check, run, combine
    return toy


def toy_spec(toy: types.ModuleType, **kw) -> registry.LayerSpec:
    return registry.LayerSpec("toy", "Toy layer", toy.ToySettings, "toy_", kw.pop("run", toy.run),
                              toy.combine, toy.check, **kw)


def audit_text(out, layers: str, script) -> str:
    return (f"name: toy\noutput_dir: {out}\nseed: 5\ncountries: [United States, China]\nlanguages: [en]\n"
            f"models:\n  - name: s1\n    backend: scripted:{script}\n  - name: s2\n    backend: scripted:{script}\n"
            f"layers:\n{layers}")


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "script.json"
    p.write_text(json.dumps({"rules": [{"contains": "China", "text": "ni hao"}], "default_text": "hi"}), "utf-8")
    return p


def test_toy_layer_validated_run_exported_and_reported(tmp_path, script):
    out = tmp_path / "out"
    with registry.registered(toy_spec(toy_package())):
        # validated: the audit file's layers.toy is the toy's settings model, errors name file, line and key
        cfg = parse_audit(audit_text(out, "  toy: {questions: 3}\n", script), "a.yaml")
        assert getattr(cfg.layers, "toy").questions == 3 and [s.key for s, _ in cfg.layers.selected()] == ["toy"]
        with pytest.raises(ValueLensError, match=r"^a\.yaml line 13: layers\.toy\.questons: unknown key$"):
            parse_audit(audit_text(out, "  toy:\n    questons: 3\n", script), "a.yaml")
        with pytest.raises(ValueLensError, match=r"^a\.yaml line 13: layers\.toy\.questions: .*less than or equal"):
            parse_audit(audit_text(out, "  toy:\n    questions: 9\n", script), "a.yaml")
        with pytest.raises(ValueLensError, match=r"layers\.toy\.questions: expected a number, not true"):
            parse_audit(audit_text(out, "  toy: {questions: true}\n", script), "a.yaml")
        # checked before anything is written
        bad = parse_audit(audit_text(out, "  toy: {word: bad}\n", script), "a.yaml")
        with pytest.raises(ValueLensError, match="'bad' is not a word"):
            api.run_full(bad)
        assert not out.exists()
        # run per model, combined over the models, exported
        result = api.run_full(cfg)
        answers = result.tables["toy_answers"]
        assert list(answers.columns[:2]) == ["model", "country"] and len(answers) == 2 * 2 * 1 * 3
        assert set(answers.loc[answers["country"] == "China", "text"]) == {"ni hao"}
        assert set(answers.loc[answers["country"] != "China", "text"]) == {"hi"}
        summary = result.tables["toy_summary"]
        assert summary.set_index("model")["size"].to_dict() == {"s1": 6, "s2": 6} and set(summary["seed"]) == {5}
        assert (out / "results" / "toy_answers.parquet").is_file() and (out / "results" / "toy_summary.csv").is_file()
        manifest = json.loads((out / "run.json").read_text("utf-8"))
        assert manifest["layers"][-1] == toy_spec(toy_package()).report_record()
        assert {"toy_answers", "toy_summary"} <= set(manifest["tables"])
    # reported (after unregistering: the report reads run.json and the tables, never the registry)
    assert "toy" not in registry.REGISTRY
    data = report_data(out)
    assert [x.key for x in data.layers] == ["dilemmas", "def", "first_token", "mark", "toy"]
    toy_layer = data.layers[-1]
    assert data.layer_status(toy_layer) == ("ok", "")
    assert data.layer_status(data.layers[0])[0] == "not run"
    html = build_report(out).read_text("utf-8")
    assert 'id="layer-toy"' in html and "Toy layer" in html and "toy_answers" in html and "toy_summary" in html
    assert "ni hao" in html


def test_registry_gone_means_key_unknown(tmp_path, script):
    with registry.registered(toy_spec(toy_package())):
        assert "toy" in layers_model().model_fields
    assert "toy" not in layers_model().model_fields
    with pytest.raises(ValueLensError, match=r"line 12: layers\.toy: unknown key"):
        parse_audit(audit_text(tmp_path, "  toy: {}\n", script), "a.yaml")


def test_a_table_outside_the_layers_prefix_is_refused(tmp_path, script):
    toy = toy_package()

    def run(model, settings, ctx):
        return {"answers": pd.DataFrame({"x": [1]})}

    with registry.registered(toy_spec(toy, run=run)):
        cfg = parse_audit(audit_text(tmp_path / "out", "  toy: {}\n", script), "a.yaml")
        with pytest.raises(RuntimeError, match=r"layer toy: run returned tables outside its prefix 'toy_': answers"):
            api.run_full(cfg)


def test_register_refuses_a_taken_key_alias_or_prefix():
    toy = toy_package()
    for kw, why in [({"key": "mark"}, "already layer mark's"), ({"aliases": ("diversity",)}, "already layer def's"),
                    ({"prefix": "def_x"}, "overlaps layer def's"), ({"prefix": "d"}, "overlaps layer def's"),
                    ({"key": "Toy"}, "lower-case")]:
        args = {"key": "toy", "title": "Toy", "settings": toy.ToySettings, "prefix": "toy_", "run": toy.run, **kw}
        with pytest.raises(ValueError, match=why):
            registry.register(registry.LayerSpec(**args))
    assert list(registry.REGISTRY) == ["first_token", "def", "dilemmas", "mark"]


def test_config_audit_and_report_lists_are_the_registry():
    keys = list(registry.REGISTRY)
    assert keys == ["first_token", "def", "dilemmas", "mark"]  # run order
    assert list(Layers.model_fields) == keys
    assert audit_mod.LAYERS is registry.REGISTRY
    for spec in registry.layers():
        # the layer's settings model with the per-layer models: selection added (config.selectable)
        assert Layers.model_fields[spec.key].annotation == selectable(spec.settings) | None
        assert issubclass(selectable(spec.settings), spec.settings)
    # the report's copy for run.json files without a "layers" record is the registry's record
    records = [Layer(**{**r, "config_keys": tuple(r["config_keys"])})
               for r in (s.report_record() for s in registry.layers())]
    assert BUILTIN_LAYERS == tuple(sorted(records, key=lambda x: x.order))
    assert layers_of([{}]) == layers_of([{"layers": [s.report_record() for s in registry.layers()]}])
    # one name per layer: audit key = report anchor = table prefix root (dilemmas' tables: dilemma_*)
    for spec in registry.layers():
        assert spec.prefix == ("dilemma_" if spec.key == "dilemmas" else f"{spec.key}_")


DEF_AUDIT = """\
name: t
models:
  - name: m
    backend: scripted:x.json
layers:
  {key}:
    participants: {n}
"""


def test_def_key_and_its_deprecated_alias():
    cfg = parse_audit(DEF_AUDIT.format(key="def", n=2), "a.yaml")
    assert getattr(cfg.layers, "def").participants == 2 and cfg.notes == []
    assert cfg.model_dump(mode="json")["layers"]["def"]["participants"] == 2
    with pytest.warns(DeprecationWarning, match="layers.diversity: deprecated name of layers.def"):
        old = parse_audit(DEF_AUDIT.format(key="diversity", n=2), "a.yaml")
    assert old.notes == ["a.yaml line 6: layers.diversity: deprecated name of layers.def (still accepted); "
                         "rename it to def"]
    assert getattr(old.layers, "def") == getattr(cfg.layers, "def") == old.layers.diversity
    assert old.model_dump(mode="json")["layers"] == cfg.model_dump(mode="json")["layers"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # an error inside the old key names the key the file used, on its line
        with pytest.raises(ValueLensError, match=r"^a\.yaml line 7: layers\.diversity\.participants: "):
            parse_audit(DEF_AUDIT.format(key="diversity", n=0), "a.yaml")
        with pytest.raises(ValueLensError, match=r"line 8: layers\.diversity: deprecated name of layers\.def, "
                                                 r"which is given too; keep only that one"):
            parse_audit(DEF_AUDIT.format(key="def", n=2) + "  diversity: {}\n", "a.yaml")


def test_layers_get_a_plain_context(tmp_path):
    cfg = parse_audit(DEF_AUDIT.format(key="def", n=2).replace("name: t\n", "name: t\nseed: 3\nlanguages: [zh]\n"
                                                               "country_names: {Atlantis: {zh: 亚特兰蒂斯}}\n"
                                                               "countries: [Atlantis, China]\n"), "a.yaml")
    ctx = cfg.layer_context(tmp_path)
    assert ctx == LayerContext(("Atlantis", "China"), ("zh",), 3, tmp_path, ctx.tracker,
                               {"Atlantis": {"zh": "亚特兰蒂斯"}}, "t")
    assert not hasattr(ctx, "audit")
    names = ctx.names()
    assert names["Atlantis"] == {"en": "Atlantis", "zh": "亚特兰蒂斯"} and names["China"]["zh"] == "中国"


@pytest.mark.parametrize("layers, message", [
    ("x", "layers must be a list, not str"),
    (["x"], r"layers\[0\] must be an object"),
    ([{"key": "toy", "title": "T", "prefix": "toy_"}], r"layers\[0\]\.config_keys is missing"),
    ([{"key": "toy", "title": "T", "prefix": "toy_", "config_keys": [1]}], r"layers\[0\]\.config_keys\[0\] must"),
    ([{"key": "toy", "title": "T", "prefix": "toy_", "config_keys": [], "order": "1"}], r"layers\[0\]\.order must"),
])
def test_a_damaged_layers_record_is_one_clear_line(tmp_path, layers, message):
    with pytest.raises(ValueLensError, match=message):
        check_manifest({"layers": layers}, tmp_path / "run.json")


def test_an_older_run_json_keeps_its_layers(tmp_path):
    """run.json written before the "layers" record, with DEF under its old key: the report still
    knows the four layers and that DEF was part of the audit."""
    (tmp_path / "run.json").write_text(json.dumps({
        "status": "running", "audit": {"name": "old", "layers": {"diversity": {}, "first_token": None}}}), "utf-8")
    data = report_data(tmp_path)
    assert [x.key for x in data.layers] == ["dilemmas", "def", "first_token", "mark"]
    by_key = {x.key: x for x in data.layers}
    assert data.layer_status(by_key["def"])[0] == "no data yet"
    assert data.layer_status(by_key["first_token"])[0] == "not run"
