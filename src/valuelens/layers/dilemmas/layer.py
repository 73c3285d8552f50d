"""Entry points of the dilemma layer (see the package docstring for the design),
registered in :mod:`valuelens.layers.registry`."""

from __future__ import annotations

import pandas as pd

from valuelens.data.dilemmas import builtin_chains, builtin_dilemmas, load_chains, load_dilemmas, load_mmd, load_moralchoice
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext
from valuelens.layers.dilemmas import escalation, kidder, moralchoice, position
from valuelens.layers.dilemmas.ask import Asker
from valuelens.layers.dilemmas.settings import DilemmaSettings
from valuelens.models import CachedModel


def _first_per_pair(items: list, limit: int | None) -> list:
    if limit is None:
        return items
    seen: dict[str, int] = {}
    out = []
    for d in items:
        seen[d.pair] = seen.get(d.pair, 0) + 1
        if seen[d.pair] <= limit:
            out.append(d)
    return out


def _load(s: DilemmaSettings, langs: list[str]):
    """The corpora the settings name (each error a one-line ValueLensError)."""
    dilemmas = []
    if s.corpus is not None:
        dilemmas = _first_per_pair(builtin_dilemmas() if s.corpus == "builtin" else load_dilemmas(s.corpus), s.limit)
        if not any(set(langs) & d.languages() for d in dilemmas):
            raise ValueLensError(f"dilemmas: corpus {s.corpus} has no dilemma in the audit languages {langs}")
        missing = [lang for lang in langs if not any(lang in d.languages() for d in dilemmas)]
        if missing:  # else that language's results would be silently absent
            raise ValueLensError(f"dilemmas: corpus {s.corpus} has no dilemma in {', '.join(missing)}, one of the "
                                 f"audit languages {langs}; add those texts or set languages to the corpus's")
    chains, n = [], s.escalation.limit or s.limit
    if s.chains is not None:
        chains += (builtin_chains() if s.chains == "builtin" else load_chains(s.chains))[:n]
    if s.mmd is not None:
        chains += load_mmd(s.mmd)[:n]
    mc = None
    if s.moralchoice is not None:
        scenarios, templates = load_moralchoice(s.moralchoice.path, s.moralchoice.ambiguity)
        mc = (scenarios, templates)
    return dilemmas, chains, mc


def check(settings: DilemmaSettings, ctx: LayerContext) -> None:
    """Read every corpus before the run starts, so bad input fails early."""
    _load(settings, list(ctx.languages))


def run(model: CachedModel, settings: DilemmaSettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
    s, langs = settings, list(ctx.languages)
    asker = Asker(model, s, ctx)
    dilemmas, chains, mc = _load(s, langs)
    tables: dict[str, pd.DataFrame] = {}
    if dilemmas:
        tables.update(kidder.run(asker, dilemmas, langs))
    if chains:
        tables.update(escalation.run(asker, chains, langs, s.escalation.context))
        tables["dilemma_chain_steps"].attrs["seed"] = asker.seed
    if mc is not None:
        scenarios = moralchoice.sample_scenarios(mc[0], s.moralchoice.sample, asker.seed)  # type: ignore[union-attr]
        tables.update(moralchoice.run(asker, scenarios, mc[1]))
    tables["dilemma_position_bias"] = position.table(tables)
    return tables


def combine(merged: dict[str, pd.DataFrame], settings: DilemmaSettings,
            ctx: LayerContext | None = None) -> dict[str, pd.DataFrame]:
    """Cross-model agreement per chain value per step (needs ≥ 2 models), resampled
    with the audit seed (``ctx.seed``; without a context, the seed ``run`` stored)."""
    steps = merged.get("dilemma_chain_steps")
    if steps is None or "model" not in steps or steps["model"].nunique() < 2:
        return {}
    seed = ctx.seed if ctx is not None else int(steps.attrs.get("seed", 0))
    return {"dilemma_chain_model_agreement": escalation.model_agreement(steps, seed, settings.n_resamples)}
