"""The audit file: YAML read with a safe loader, validated with pydantic.

Unknown keys and wrong types are errors that name the file, the line and the
key. See the README ("Audit file") for the format.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
import warnings
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from valuelens.comparisons import ComparisonList
from valuelens.data.catalogue import lookup, resolve, suggest
from valuelens.data.survey import country_names, read_text
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext, registry
from valuelens.layers.first_token_settings import (  # noqa: F401 - re-exported for older imports
    DataSource,
    FirstTokenSettings,
    Split,
    TrainSpec,
)
from valuelens.models.registry import (
    BackendSpec,
    OptionError,
    check_options,
    parse_spec,
)
from valuelens.strict import Strict

if TYPE_CHECKING:
    from valuelens.progress import Tracker

MAX_AUDIT_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # values after expanding aliases

def _not_dots(v: str) -> str:
    """A name is used as a file/directory name: ``.``, ``..`` and the like are refused."""
    if not v.strip("."):
        raise ValueError(f"{v!r} is not a usable name (only dots); use letters, digits, '.', '_' or '-'")
    return v


def _both_languages() -> list[Literal["en", "zh"]]:
    return ["en", "zh"]


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _located(key: tuple, message: str) -> PydanticCustomError:
    """An error at ``key`` below the validated field (parse_audit appends it to the location, for its line)."""
    return PydanticCustomError("located", "{message}", {"message": message, "key": key})


_CATALOGUE_RULE = "; filled from the built-in catalogue when the model is a known one and the key is not set"


class Price(Strict):
    """Prices per 1M tokens (any currency; the report and ``plan`` show the same unit)."""

    input: float = Field(ge=0, allow_inf_nan=False, description="per 1M prompt tokens")
    output: float = Field(ge=0, allow_inf_nan=False, description="per 1M completion tokens")


class ReportSettings(Strict):
    """The audit file's ``report:`` mapping: how the HTML report is written."""

    language: Literal["en", "zh"] = Field(
        default="en", description="language of the report's fixed texts (headings, explanations, flags, figure "
                                  "labels): en | zh; prompts and answers stay as asked")


class ModelEntry(Strict):
    """One audited model: how to reach it, and its catalogue metadata.

    A known model (``valuelens models`` lists the built-in catalogue) gets its
    metadata — display_name, region, family, params_b, architecture,
    alignment — filled in: the entry named by ``catalogue:``, else the one
    the backend runs (``embedded``; the path of ``hf:``/``vllm:``, or its last
    component; the MODEL of ``openai:MODEL@URL``), else the one named by
    ``name``; case-insensitive, over names, aliases and Hugging Face repo ids.
    A key set in the audit file always wins; ``catalogue: null`` turns the
    lookup off. Unknown models keep the defaults below.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._\-]+$")
    backend: str = Field(min_length=1, description="embedded | hf:PATH | openai:MODEL@URL | vllm:PATH | scripted:PATH")
    catalogue_ref: str | None = Field(
        default=None, alias="catalogue", exclude=True,
        description="the catalogue entry to take metadata from (name, alias or repo id); default: found from the "
                    "backend, then the name; null: none")
    display_name: str | None = Field(default=None, description="default: the name" + _CATALOGUE_RULE)
    region: Literal["China", "Western", "other"] = Field(default="other", description="origin" + _CATALOGUE_RULE)
    family: str = Field(default="unknown",
                        description="architecture series, e.g. Llama-3, Mistral, Qwen" + _CATALOGUE_RULE)
    params_b: float | None = Field(default=None, gt=0, description="parameters, billions" + _CATALOGUE_RULE)
    architecture: Literal["dense", "MoE", "unknown"] = Field(
        default="dense", description="dense | MoE | unknown (undisclosed)" + _CATALOGUE_RULE)
    alignment: Literal["base", "SFT", "RLHF-DPO", "full-FT", "unknown"] = Field(
        default="unknown", description="base | SFT | RLHF-DPO | full-FT (full fine-tune of a base model)"
                                       + _CATALOGUE_RULE)
    revision: str | None = None
    toy: bool = Field(default=False, description="a demo or test model (the report shows a banner); true for the "
                                                 "catalogue's toy models and the scripted: backend" + _CATALOGUE_RULE)
    batch_size: int = Field(default=8, ge=1, le=1024)
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="backend options, checked against the backend's schema "
                                                "(valuelens.models.registry.OPTIONS), e.g. max_concurrency, api_key_env")
    layers: list[str] | None = Field(
        default=None, min_length=1,
        description="the layers this model runs (keys of the audit's layers:); default: every selected layer "
                    "whose models: (if given) lists it")
    # issue 20 item 6: cost and budget caps (valuelens.models.usage); not catalogue metadata, not the audit's identity
    price: Price | None = Field(default=None, description="{input, output} per 1M tokens: cost in plan, run.json, report")
    max_calls: int | None = Field(default=None, ge=0, description="stop the model after this many calls made "
                                  "(all runs in the output directory); rerun with a higher cap to continue")
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                   description="stop the model once its calls cost this much (needs price)")
    _known: str | None = PrivateAttr(default=None)

    _name_not_dots = field_validator("name")(_not_dots)

    @field_validator("layers")
    @classmethod
    def _known_layers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        keys = [s.key for s in registry.layers()]
        out: list[str] = []
        for j, name in enumerate(v):
            try:
                key = registry.get(name).key  # a deprecated alias (diversity) means its layer
            except KeyError:
                raise _located((j,), f"unknown layer {name!r}{_did_you_mean(name, keys)} "
                                     f"(layers: {', '.join(keys)})") from None
            if key in out:
                raise _located((j,), f"layer {key} listed twice")
            out.append(key)
        return out

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        try:
            parse_spec(v)
        except ValueLensError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("options")
    @classmethod
    def _checked_options(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        if any(str(k).lower() in {"api_key", "key", "token", "password"} for k in v):
            raise ValueError("secrets do not belong in the audit file; set api_key_env to the name of an environment variable")
        if "backend" in info.data:  # else the backend's own error is reported
            try:
                check_options(parse_spec(info.data["backend"]).kind, v)
            except OptionError as e:  # the key's own line: parse_audit appends ctx["key"] to the location
                raise PydanticCustomError("backend_option", "{message}", {"message": e.message, "key": e.key}) from None
        return v

    @property
    def spec(self) -> BackendSpec:
        """The parsed backend spec."""
        return parse_spec(self.backend)

    @field_validator("catalogue_ref")
    @classmethod
    def _in_catalogue(cls, v: str | None) -> str | None:
        if v is not None and lookup(v) is None:
            close = suggest(v)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"{v!r} is not in the built-in catalogue (valuelens models lists it){hint}")
        return v

    @model_validator(mode="after")
    def _fill_from_catalogue(self) -> ModelEntry:
        if "catalogue_ref" in self.model_fields_set:
            known = lookup(self.catalogue_ref) if self.catalogue_ref is not None else None
        else:
            known = resolve(self.name, self.backend)
        if "toy" not in self.model_fields_set and self.backend.strip().startswith("scripted:"):
            self.__dict__["toy"] = True  # scripted answers: a test double, not a model
        if known is None:
            return self
        self._known = known.name
        for key, value in known.metadata().items():
            if key not in self.model_fields_set:
                self.__dict__[key] = value  # not via setattr: model_fields_set keeps what the file set
        return self

    @model_validator(mode="after")
    def _cost_needs_price(self) -> ModelEntry:
        if self.max_cost is not None and self.price is None:
            raise ValueError("max_cost needs price: {input: ..., output: ...} (per 1M tokens)")
        return self

    @property
    def known_as(self) -> str | None:
        """The catalogue entry this model's metadata came from, if any."""
        return self._known

    def catalogue(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"options", "batch_size", "layers", "price", "max_calls", "max_cost"})
        d["display_name"] = self.display_name or self.name
        return d


class LayersBase(Strict):
    """The audit file's ``layers:`` mapping. Its fields are the registered layers
    (:mod:`valuelens.layers.registry`), each optional and typed by the layer's
    settings model; :func:`layers_model` builds the model for the registry as it
    is, so a layer registered later is validated too."""

    @model_validator(mode="after")
    def _some_layer(self) -> LayersBase:
        if not any(getattr(self, f) is not None for f in type(self).model_fields):
            raise ValueError("no layer selected; add e.g. 'first_token: {}'")
        return self

    def get(self, key: str) -> Strict | None:
        """A layer's settings (by key or deprecated alias), or None when it is not selected."""
        try:
            key = registry.get(key).key
        except KeyError:
            return None
        return getattr(self, key, None)

    def selected(self) -> list[tuple[registry.LayerSpec, Strict]]:
        """(layer, settings) of every selected layer, in run order."""
        return [(spec, s) for spec in registry.layers() if (s := self.get(spec.key)) is not None]

    @property
    def diversity(self) -> Strict | None:
        """Deprecated: the DEF layer's settings are ``layers.def`` (``getattr(layers, "def")``)."""
        return self.get("def")


_LAYER_MODELS: dict[tuple, type[LayersBase]] = {}


def _no_repeated_models(cls: Any, v: list[str] | None) -> list[str] | None:
    for j, name in enumerate(v or []):
        if name in v[:j]:  # type: ignore[index]
            raise _located((j,), f"model {name!r} listed twice")
    return v


_SELECTABLE: dict[type[Strict], type[Strict]] = {}


def selectable(settings: type[Strict]) -> type[Strict]:
    """A layer's settings model with ``models:`` added: the audit's models that run the layer (None: every model
    whose own ``layers:``, if given, lists it). A subclass, so the layer gets an instance of its own settings model
    and ignores the field; the audit reads it (:meth:`AuditConfig.layers_for`)."""
    if settings not in _SELECTABLE:
        if "models" in settings.model_fields:
            raise TypeError(f"{settings.__name__}: a layer setting may not be called 'models' (the audit's "
                            "per-layer model selection)")
        _SELECTABLE[settings] = create_model(
            settings.__name__, __base__=settings, __module__=settings.__module__,
            __validators__={"_models_once": field_validator("models")(_no_repeated_models)},
            models=(Optional[list[str]], Field(  # noqa: UP045 - a runtime type, not an annotation
                default=None, min_length=1,
                description="names of the audit's models that run this layer; default: every model (whose own "
                            "layers:, if given, lists it)")))
    return _SELECTABLE[settings]


def layers_model() -> type[LayersBase]:
    """The ``layers:`` model of the registry as it is now (one per registry state)."""
    specs = registry.layers()
    sig = tuple((s.key, s.settings, s.aliases) for s in specs)
    if sig not in _LAYER_MODELS:
        fields: dict[str, Any] = {
            s.key: (Optional[selectable(s.settings)], Field(  # noqa: UP045 - a runtime type, not an annotation
                default=None, description=s.title,
                validation_alias=AliasChoices(s.key, *s.aliases) if s.aliases else None))
            for s in specs}
        _LAYER_MODELS[sig] = create_model("Layers", __base__=LayersBase, __module__=__name__, **fields)
    return _LAYER_MODELS[sig]


Layers = layers_model()  # the built-in layers' model


class AuditConfig(Strict):
    name: str = Field(default="audit", pattern=r"^[A-Za-z0-9._\-]+$")
    _name_not_dots = field_validator("name")(_not_dots)
    output_dir: str | None = Field(default=None, description="default: runs/<name>")
    seed: int = 0
    country_names: dict[str, dict[str, str]] = Field(default_factory=dict, description="extra countries: {Name: {zh: ...}}")
    countries: list[str] = Field(default_factory=lambda: ["United States", "China"], min_length=1)
    languages: list[Literal["en", "zh"]] = Field(default_factory=_both_languages, min_length=1)
    chunk_size: int = Field(default=32, ge=1, description="calls committed to the store per transaction")
    models: list[ModelEntry] = Field(min_length=1)
    comparisons: ComparisonList = Field(  # after models: the groups are checked against them
        default_factory=list, description="group comparisons for the report: by, groups, metric, unit, test, "
                                          "correction (valuelens.comparisons.settings)")
    max_parallel_models: int | None = Field(
        default=None, ge=1,
        description="lanes run at once (a lane: one server's models, or all local models, or an entry's options.lane); "
                    "default: every lane at once; 1: one model after another")
    fail_fast: bool = Field(
        default=False,
        description="stop the whole audit at the first model that fails; default: a model whose backend fails "
                    "permanently (auth, model not found, 5xx after retries, out of memory) is marked failed in "
                    "run.json and the report, the others go on, and a rerun retries it")
    layers: SerializeAsAny[LayersBase]
    report: ReportSettings = Field(default_factory=ReportSettings, description="the HTML report: language (en | zh)")

    @field_validator("layers", mode="before")
    @classmethod
    def _registered_layers(cls, v: Any) -> Any:
        return v if isinstance(v, LayersBase) else layers_model().model_validate(v)

    @field_validator("country_names")
    @classmethod
    def _usable_names(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for country, names in v.items():
            if not country.strip():
                raise ValueError("a country name is empty")
            for lang, name in names.items():
                if lang not in ("en", "zh"):
                    raise ValueError(f"{country}: unknown language {lang!r} (en or zh)")
                if not name.strip():
                    raise ValueError(f"{country}: the {lang} name is empty")
        return v

    @field_validator("languages", "countries")
    @classmethod
    def _no_repeats(cls, v: list[str], info: Any) -> list[str]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"{', '.join(dup)} given more than once (each would be counted twice)")
        return v

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, v: list[str], info: Any) -> list[str]:
        extra = info.data.get("country_names", {})
        for c in v:
            if c not in country_names() and c not in extra:
                raise ValueError(f"unknown country {c!r}; add it under country_names (with its zh name)")
        return v

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: list[ModelEntry]) -> list[ModelEntry]:
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate model names: {dup}")
        for m in v:
            lane = m.options.get("lane")
            if lane is not None and not (isinstance(lane, str) and lane.strip()):
                raise ValueError(f"model {m.name}: options.lane must be a non-empty name")
        return v

    @model_validator(mode="after")
    def _zh_names(self) -> AuditConfig:
        for c in self.countries:
            if "zh" in self.languages and c in self.country_names and "zh" not in self.country_names[c]:
                raise ValueError(f"country {c!r} needs a zh name under country_names for Chinese prompts")
        return self

    @model_validator(mode="after")
    def _model_layers(self) -> AuditConfig:
        """Per-model ``layers:`` and per-layer ``models:`` name what exists and agree (a model that lists a layer
        must not be left out by that layer's ``models:``); every selected layer has a model and every model a
        layer."""
        selected = {spec.key: s for spec, s in self.layers.selected()}
        names = [m.name for m in self.models]
        for key, s in selected.items():
            for j, name in enumerate(getattr(s, "models", None) or []):
                if name not in names:
                    raise _located(("layers", key, "models", j),
                                   f"unknown model {name!r}{_did_you_mean(name, names)} (models: {', '.join(names)})")
                own = self.models[names.index(name)].layers
                if own is not None and key not in own:
                    raise _located(("layers", key, "models", j),
                                   f"model {name}'s own layers: ({', '.join(own)}) leave out {key}; add {key} there, "
                                   f"or drop {name} here")
        for i, m in enumerate(self.models):
            for j, key in enumerate(m.layers or []):
                if key not in selected:
                    raise _located(("models", i, "layers", j),
                                   f"layer {key} is not selected under layers: (selected: {', '.join(selected)}); "
                                   f"add it there or remove it here")
                listed = getattr(selected[key], "models", None)
                if listed is not None and m.name not in listed:
                    raise _located(("models", i, "layers", j),
                                   f"layers.{key}.models does not list {m.name}; add it there, or drop {key} here")
        plan = self.model_layers()
        for i, m in enumerate(self.models):
            for spec, s in self.layers_for(m.name):
                problem = spec.fits(s, m.spec.kind) if spec.fits is not None else ""
                if problem:
                    listed = getattr(s, "models", None) or []
                    where = (("models", i, "layers", m.layers.index(spec.key)) if m.layers else
                             ("layers", spec.key, "models", listed.index(m.name)) if m.name in listed
                             else ("models", i))
                    raise _located(where, f"model {m.name} runs {spec.key}, but {problem}; give {spec.key} "
                                          f"to other models (layers.{spec.key}.models: or the models' layers:)")
            if not plan[m.name]:
                raise _located(("models", i), f"model {m.name} runs no layer: every selected layer's models: "
                                              "leaves it out; add it to one or remove the model")
        for key in selected:
            if not any(key in keys for keys in plan.values()):
                raise _located(("layers", key), "no model runs this layer (its models: and the models' layers: "
                                                "leave out every model); remove it or give it a model")
        return self

    def layers_for(self, model: str) -> list[tuple[registry.LayerSpec, Strict]]:
        """(layer, settings) of the layers one model runs, in run order: the selected layers that its own
        ``layers:`` lists (default: all) and whose ``models:`` lists it (default: all models)."""
        entry = next(m for m in self.models if m.name == model)
        return [(spec, s) for spec, s in self.layers.selected()
                if (entry.layers is None or spec.key in entry.layers)
                and (getattr(s, "models", None) is None or model in getattr(s, "models"))]

    def model_layers(self) -> dict[str, list[str]]:
        """Model name → the keys of the layers it runs, in run order (run.json ``model_layers``)."""
        return {m.name: [spec.key for spec, _ in self.layers_for(m.name)] for m in self.models}

    _origin: str = PrivateAttr(default="audit file")
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)
    _notes: list[str] = PrivateAttr(default_factory=list)

    def out_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def notes(self) -> list[str]:
        """Deprecation notes about the audit file (one line each, naming file and line)."""
        return list(self._notes)

    def layer_context(self, out_dir: str | Path | None = None, tracker: Tracker | None = None) -> LayerContext:
        """What the layers get from the audit (plain values; see :class:`valuelens.layers.LayerContext`)."""
        extra: dict[str, Any] = {"tracker": tracker} if tracker is not None else {}
        return LayerContext(tuple(self.countries), tuple(self.languages), self.seed,
                            Path(out_dir) if out_dir is not None else self.out_dir(),
                            country_names={c: dict(v) for c, v in self.country_names.items()},
                            audit_name=self.name, **extra)

    def where(self, *loc: str | int) -> str:
        """``FILE line N: key`` for a place in the audit file (for checks after parsing)."""
        return str(_fail(self._origin, self._lines, loc, "")).removesuffix(":")


# loading with line numbers --------------------------------------------------

def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)  # a key keeps its own line
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def _check_expansion(root: yaml.Node, origin: str) -> None:
    """Refuse alias bombs ("billion laughs") and recursive aliases before
    anything walks the expanded tree: count nodes with aliases expanded,
    sharing the count of each node (linear in the file's size)."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = ([n for kv in node.value for n in kv] if isinstance(node, yaml.MappingNode)
                else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            on_path.discard(id(node))
            size[id(node)] = total = 1 + sum(size[id(k)] for k in kids)
            if total > MAX_YAML_NODES:
                raise ValueLensError(f"{origin} line {node.start_mark.line + 1}: invalid YAML: aliases expand to more "
                                     f"than {MAX_YAML_NODES} values (an alias bomb?)")
        elif id(node) in on_path:
            raise ValueLensError(f"{origin} line {node.start_mark.line + 1}: invalid YAML: recursive alias")
        elif id(node) not in size:
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((k, False) for k in kids)


def _check_duplicate_keys(root: yaml.Node, origin: str) -> None:
    """Refuse a key given twice in one mapping (YAML would keep the last and
    silently drop the first, e.g. a whole ``models:`` list)."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if (k.tag, k.value) in first:
                        key = ".".join(map(str, (*path, k.value)))
                        raise ValueLensError(f"{origin} line {line}: {key}: duplicate key (also at line "
                                             f"{first[k.tag, k.value]}); YAML would silently keep only the last")
                    first[k.tag, k.value] = line
                stack.append((v, (*path, k.value if isinstance(k, yaml.ScalarNode) else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*path, i)) for i, v in enumerate(node.value))


def _flat_types(ann: Any) -> list[Any]:
    """The types a field annotation admits (unions and Annotated unpacked)."""
    if get_origin(ann) is Annotated:
        return _flat_types(get_args(ann)[0])
    if get_origin(ann) in (Union, UnionType):
        return [t for a in get_args(ann) for t in _flat_types(a)]
    return [ann]


def _bool_as_number(ann: Any, value: Any, loc: tuple) -> tuple[tuple, str] | None:
    """Where ``value`` holds true/false for a number field (pydantic would
    silently read it as 1/0), with the message; None if nowhere."""
    types = _flat_types(ann)
    if isinstance(value, bool):
        if any(t in (bool, Any) for t in types) or not any(t in (int, float) for t in types):
            return None
        return loc, f"expected a number, not {str(value).lower()}"
    for t in types:
        origin, args = get_origin(t), get_args(t)
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(value, dict):
            if issubclass(t, LayersBase):
                t = layers_model()
            fields = {(f.alias or name): f for name, f in t.model_fields.items()}
            for f in t.model_fields.values():
                if isinstance(f.validation_alias, AliasChoices):
                    fields.update({a: f for a in f.validation_alias.choices if isinstance(a, str)})
            fields.update(t.model_fields)
            for k, v in value.items():
                if k in fields:
                    hit = _bool_as_number(fields[k].annotation, v, (*loc, k))
                    if hit:
                        return hit
            return None
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return next(filter(None, (_bool_as_number(args[1], v, (*loc, k)) for k, v in value.items())), None)
        if origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
            return next(filter(None, (_bool_as_number(args[0], v, (*loc, i)) for i, v in enumerate(value))), None)
    return None


def _fail(origin: str, lines: dict[tuple, int], loc: tuple, msg: str,
          flags: dict[tuple, str] | None = None) -> ValueLensError:
    key = ".".join(str(p) for p in loc) or "(top level)"
    flag = next((flags[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in flags), None) if flags else None
    if flag is not None:  # a value the command line gave: name the flag, not a line of the file
        return ValueLensError(f"{flag}: {key}: {msg}")
    line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
    where = f" line {line}" if line else ""
    return ValueLensError(f"{origin}{where}: {key}: {msg}")


def _read_yaml(text: str, origin: str) -> tuple[dict[str, Any], dict[tuple, int]]:
    """The audit file's mapping and the line of every key (safe loader; alias bombs and duplicate keys refused)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(node, origin)
            _check_duplicate_keys(node, origin)
        data = yaml.safe_load(text)
    except RecursionError:
        raise ValueLensError(f"{origin}: invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueLensError(f"{origin}{where}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ValueLensError(f"{origin}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueLensError(f"{origin}: expected a mapping of audit settings at the top level")
    return data, _line_map(node) if node is not None else {}


def parse_audit(text: str, origin: str) -> AuditConfig:
    data, lines = _read_yaml(text, origin)
    return _validated(data, origin, lines)


def _validated(data: dict[str, Any], origin: str, lines: dict[tuple, int],
               flags: dict[tuple, str] | None = None) -> AuditConfig:
    """The audit settings validated; an error names the file and line, or the command-line flag (``flags``:
    location → the flag that set it)."""
    try:
        cfg = AuditConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if loc[:1] == ("layers",) and len(loc) == 2 and loc[1] in registry.aliases():
                msg = (f"deprecated name of layers.{registry.aliases()[str(loc[1])]}, which is given too; "
                       "keep only that one")
        if err["type"] in ("backend_option", "located"):  # the option's (or list item's) own key
            loc = (*loc, *err["ctx"]["key"])
        raise _fail(origin, lines, loc, msg, flags) from None
    bad = _bool_as_number(AuditConfig, data, ())
    if bad:
        raise _fail(origin, lines, *bad, flags)
    cfg._origin, cfg._lines = origin, lines
    used = data.get("layers")
    used = used if isinstance(used, dict) else {}
    for old, new in registry.aliases().items():
        if old in used:
            note = (f"{cfg.where('layers', old)}: deprecated name of layers.{new} (still accepted); "
                    f"rename it to {new}")
            cfg._notes.append(note)
            warnings.warn(note, DeprecationWarning, stacklevel=3)
    return cfg


# the command line's audit flags (valuelens run --model ... --layers ...) ----------------------------------

@dataclass
class AuditFlags:
    """``valuelens run`` flags that build or override an audit (None / empty: not given). Precedence: a flag
    wins over the audit file's field, which wins over the default."""

    models: list[str] = field(default_factory=list)  # SPEC or NAME=SPEC; replace the file's models
    layers: list[str] | None = None  # the layers to run (the file's settings where it has them, else defaults)
    limit: int | None = None  # every selected layer that has a limit setting
    countries: list[str] | None = None
    languages: list[str] | None = None
    seed: int | None = None

    def given(self) -> bool:
        return bool(self.models) or any(v is not None for v in (self.layers, self.limit, self.countries,
                                                                 self.languages, self.seed))

    def describe(self) -> str:
        """The flags as a command line (run.json ``audit_source``)."""
        parts = [f"--model {m}" for m in self.models]
        for flag, v in (("--layers", self.layers), ("--countries", self.countries), ("--languages", self.languages)):
            if v is not None:
                parts.append(f"{flag} {','.join(v)}")
        parts += [f"{flag} {v}" for flag, v in (("--limit", self.limit), ("--seed", self.seed)) if v is not None]
        return " ".join(parts)


_NAME = re.compile(r"[A-Za-z0-9._\-]+")


def flag_model(raw: str) -> tuple[str, str]:
    """(name, backend spec) of a ``--model`` value: ``NAME=SPEC``, or a SPEC named after what it runs (the
    MODEL of ``openai:ORG/MODEL@URL``, the last folder of ``hf:PATH``, the file of ``scripted:FILE.json``,
    ``embedded``)."""
    raw = raw.strip()
    name, sep, spec = raw.partition("=")
    if sep and _NAME.fullmatch(name):
        return name, spec.strip()
    kind, _, arg = raw.partition(":")
    if kind == "openai":
        base = (arg.rpartition("@")[0] if "@" in arg else arg).rstrip("/").rpartition("/")[2]
    elif kind in ("hf", "vllm", "scripted"):
        base = Path(arg.rstrip("/")).stem if kind == "scripted" else Path(arg.rstrip("/")).name
    else:
        base = kind
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", base).strip("-.") or "model", raw


def audit_with_flags(path: str | Path | None, flags: AuditFlags) -> AuditConfig:
    """An audit from an audit file (or none) with the command line's flags applied, validated like a file:
    an error in a value a flag gave names the flag (``--countries: countries.0: unknown country ...``).

    ``--model`` replaces the file's models (and with them its layers' ``models:`` lists, which name the file's
    models); ``--layers`` chooses the layers (the file's settings for a layer it has, else the layer's
    defaults), keeps only those in the models' own ``layers:``, and leaves out a file model that runs none
    of them (with a note); ``--limit`` sets ``limit`` on every chosen layer that has one (MARK has none);
    ``--countries``, ``--languages`` and ``--seed`` replace the file's. Without a file, ``--model`` and
    ``--layers`` are needed."""
    if path is not None:
        origin = str(path)
        data, lines = _read_yaml(read_text(Path(path), limit=MAX_AUDIT_BYTES), origin)
    else:
        origin, data, lines = "command line", {}, {}
        if not flags.models:
            raise ValueLensError("--model: give at least one model (e.g. --model embedded), or an audit file")
        if flags.layers is None:
            raise ValueLensError(f"--layers: name the layers to run ({', '.join(s.key for s in registry.layers())}), "
                                 "or give an audit file")
    data = copy.deepcopy(data)
    at: dict[tuple, str] = {}
    notes: list[str] = []
    for key in ("countries", "languages", "seed"):
        value = getattr(flags, key)
        if value is not None:
            data[key], at[(key,)] = value, f"--{key}"
    file_layers: dict[str, Any] = data["layers"] if isinstance(data.get("layers"), dict) else {}
    if flags.models:
        models: list[dict[str, str]] = []
        seen: set[str] = set()
        for raw in flags.models:
            name, spec = flag_model(raw)
            if name in seen:
                raise ValueLensError(f"--model {raw}: a second model named {name!r}; name them: --model NAME=SPEC")
            seen.add(name)
            at[("models", len(models))] = f"--model {raw}"
            models.append({"name": name, "backend": spec})
        data["models"], at[("models",)] = models, "--model"
        file_layers = {k: ({kk: vv for kk, vv in v.items() if kk != "models"} if isinstance(v, dict) else v)
                       for k, v in file_layers.items()}
    if flags.layers is not None:
        keys = [s.key for s in registry.layers()]
        chosen: dict[str, Any] = {}
        for name in flags.layers:
            try:
                layer = registry.get(name)
            except KeyError:
                raise ValueLensError(f"--layers: unknown layer {name!r}{_did_you_mean(name, keys)} "
                                     f"(layers: {', '.join(keys)})") from None
            if layer.key in chosen:
                raise ValueLensError(f"--layers: {layer.key} given twice")
            given = next((k for k in layer.config_keys if file_layers.get(k) is not None), None)
            chosen[layer.key] = file_layers[given] if given else {}
            if given is None:
                at[("layers", layer.key)] = f"--layers {layer.key}"
            elif given != layer.key:  # the file's old name (diversity): its lines under the current key
                lines.update({("layers", layer.key, *k[2:]): v for k, v in list(lines.items())
                              if k[:2] == ("layers", given)})
        at[("layers",)] = "--layers"
        data["layers"] = chosen
        if not flags.models and isinstance(data.get("models"), list):
            kept, left, index = [], [], []
            for i, m in enumerate(data["models"]):
                own = m.get("layers") if isinstance(m, dict) else None
                inside = ([k for k in own if isinstance(k, str) and _layer_key(k) in chosen]
                          if isinstance(own, list) else list(chosen))
                mname = m.get("name") if isinstance(m, dict) else None
                admitted = [k for k in inside if not (isinstance(chosen.get(_layer_key(k)), dict) and isinstance(
                    chosen[_layer_key(k)].get("models"), list) and mname not in chosen[_layer_key(k)]["models"])]
                if not admitted:  # it runs none of the chosen layers (its own layers:, or their models:)
                    left.append(str(mname))
                    continue
                if isinstance(own, list):
                    m["layers"] = inside
                kept.append(m)
                index.append(i)
            if left and kept:
                notes.append(f"--layers: {', '.join(left)} run{'s' * (len(left) == 1)} none of "
                             f"{', '.join(chosen)}; left out of this run")
                names = {m.get("name") for m in kept if isinstance(m, dict)}
                for v in chosen.values():
                    if isinstance(v, dict) and isinstance(v.get("models"), list):
                        v["models"] = [n for n in v["models"] if n in names]
                lines = _renumbered(lines, index)
                data["models"] = kept
            # every model left out: the validation's own error says so (a layer without a model)
    elif "layers" in data:
        data["layers"] = file_layers
    if flags.limit is not None:
        layers: dict[str, Any] = data["layers"] if isinstance(data.get("layers"), dict) else {}
        hit = []
        for key, v in layers.items():
            try:
                layer = registry.get(key)
            except KeyError:
                continue  # the validation names the unknown key
            if v is not None and "limit" in layer.settings.model_fields:
                layers[key] = {**v, "limit": flags.limit} if isinstance(v, dict) else v
                at[("layers", key, "limit")] = "--limit"
                hit.append(key)
        if not hit:
            raise ValueLensError(f"--limit: none of the layers ({', '.join(layers) or 'none'}) takes a limit")
    cfg = _validated(data, origin, lines, at)
    cfg._notes.extend(notes)
    return cfg


def _layer_key(name: str) -> str:
    try:
        return registry.get(name).key
    except KeyError:
        return name


def _renumbered(lines: dict[tuple, int], kept: list[int]) -> dict[tuple, int]:
    """The file's line map with ``models.I...`` keys moved to the kept models' new indices."""
    out = {k: v for k, v in lines.items() if not (len(k) >= 2 and k[0] == "models" and isinstance(k[1], int))}
    for new, old in enumerate(kept):
        out.update({("models", new, *k[2:]): v for k, v in lines.items()
                    if len(k) >= 2 and k[0] == "models" and k[1] == old})
    return out


def load_audit(path: str | Path) -> AuditConfig:
    path = Path(path)
    return parse_audit(read_text(path, limit=MAX_AUDIT_BYTES), str(path))


def demo_audit_text() -> str:
    return resources.files("valuelens.data").joinpath("demo_audit.yaml").read_text(encoding="utf-8")


def demo_audit() -> AuditConfig:
    return parse_audit(demo_audit_text(), "builtin demo_audit.yaml")
