"""Dilemma corpora: the data model, loaders and the built-in demo corpus.

The demo corpus (written by the valuelens authors, English and Chinese):
``demo_dilemmas.jsonl``, ten dilemmas for each of Kidder's four right-vs-right
pairs with a negative and a positive consequence per action, and
``escalation_chains.jsonl`` (our chain schema, one chain per line), twelve
five-step escalation chains, each choice labelled with an MFT foundation
(``values``) and a Schwartz basic value (``schwartz``). Balanced design: the
twelve pairs of foundations other than Care–Loyalty, Fairness–Liberty and
Authority–Sanctity (K6 minus a perfect matching, so each foundation is at
stake in four chains at every step) appear once at every step position (chain
i, step t: pair (i + 5t) mod 12), so a change of ranks between steps comes from
the escalation, not from which values happen to meet there.
"""

from __future__ import annotations

from importlib import resources

from valuelens.data.dilemmas.loaders import (
    load_chains,
    load_dilemmas,
    load_mmd,
    load_moralchoice,
    norm_value,
    read_records,
)
from valuelens.data.dilemmas.schema import (
    KIDDER_PAIRS,
    MFT_VALUES,
    SCHWARTZ_VALUES,
    VALUE_NAMES,
    Chain,
    ChainStep,
    Dilemma,
    MCScenario,
    MCTemplates,
    value_name,
)

DEMO_DILEMMAS = "demo_dilemmas.jsonl"
DEMO_CHAINS = "escalation_chains.jsonl"


def builtin_dilemmas() -> list[Dilemma]:
    with resources.as_file(resources.files(__name__).joinpath(DEMO_DILEMMAS)) as p:
        return load_dilemmas(p)


def builtin_chains() -> list[Chain]:
    with resources.as_file(resources.files(__name__).joinpath(DEMO_CHAINS)) as p:
        return load_chains(p, source="builtin")


__all__ = [
    "KIDDER_PAIRS", "MFT_VALUES", "SCHWARTZ_VALUES", "VALUE_NAMES", "Chain", "ChainStep", "Dilemma", "MCScenario", "MCTemplates",
    "builtin_chains", "builtin_dilemmas", "load_chains", "load_dilemmas", "load_mmd", "load_moralchoice",
    "norm_value", "read_records", "value_name",
]
