"""Escalation chains (Wu et al. 2025, MMD): value rankings across steps.

At step i the model sees the norm, the situations of steps 1…i−1 and the
current situation, question and two choices (its earlier answers are not
shown, so every step is asked independently and in one batch). Each step is
asked in the given and the reversed order; the step's choice is the argmax of
the two orders' mean probabilities (position bias cancels), and an invalid
order adds to the invalid share. Win rate of a value at a step = share of the
chains where it was at stake (one of the two choices, the other carrying a
different value) and chosen; an invalid answer is a loss for both values.
Rankings per step from the win rates; stability = Kendall τ-b between the win
rates of consecutive steps; volatility = mean |rank change| per value.
Intervals bootstrap over chains (NaN when some resample leaves the statistic
undefined, e.g. with very few chains). A chain is asked in the audit
languages it has, else in its own (MMD: English).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from valuelens.data.dilemmas import MFT_VALUES, Chain
from valuelens.layers.dilemmas.ask import Asker
from valuelens.layers.dilemmas.measures import (
    choose,
    label_to_action,
    pairwise_agreement,
    ranks,
    stability,
    summary,
    volatility,
    win_rates,
    win_tensor,
)
from valuelens.layers.dilemmas.prompts import chain_prompt

CI = ["estimate", "ci_low", "ci_high", "n"]


@dataclass(frozen=True)
class StepAsk:
    chain: Chain
    step: int  # 0-based
    lang: str
    reverse: bool


def chain_languages(chain: Chain, languages: Sequence[str]) -> list[str]:
    own = [lang for lang in languages if lang in chain.languages()]
    return own or sorted(chain.languages())


def run(asker: Asker, chains: Sequence[Chain], languages: Sequence[str]) -> dict[str, pd.DataFrame]:
    asks = [StepAsk(c, i, lang, rev) for c in chains for lang in chain_languages(c, languages)
            for i in range(len(c.steps)) for rev in (False, True)]
    outs = asker.ab([chain_prompt(a.chain, a.step, a.lang, a.reverse) for a in asks], "escalation chains")
    rows = []
    for a, o in zip(asks, outs):
        first = 1 if a.reverse else 0
        label = o.label
        act = label_to_action(label, first)
        vals = a.chain.steps[a.step].values
        rows.append({"source": a.chain.source, "language": a.lang, "chain_id": a.chain.id, "step": a.step + 1,
                     "order": "reversed" if a.reverse else "given", "value_1": vals[0], "value_2": vals[1],
                     "p_A": o.p_a, "p_B": o.p_b, "p_invalid": o.p_invalid, "covered_mass": o.covered_mass,
                     "p_choice_1": o.p_b if a.reverse else o.p_a, "p_choice_2": o.p_a if a.reverse else o.p_b,
                     "chosen_label": label, "chosen_choice": None if act is None else act + 1,
                     "chosen_value": None if act is None else vals[act], "valid": act is not None, "reply": o.reply})
    resp = pd.DataFrame(rows)
    steps = step_choices(resp)
    return {"dilemma_chain_responses": resp, "dilemma_chain_steps": steps,
            **chain_tables(steps, asker.seed, asker.s.n_resamples)}


def step_choices(resp: pd.DataFrame) -> pd.DataFrame:
    """One row per chain step: both orders' probabilities averaged, then argmax."""
    out = []
    keys = ["source", "language", "chain_id", "step"]
    for k, g in resp.groupby(keys, sort=False):
        p1, p2 = np.nan_to_num(g["p_choice_1"].to_numpy(float)).mean(), np.nan_to_num(g["p_choice_2"].to_numpy(float)).mean()
        pinv = g["p_invalid"].to_numpy(float).mean()
        act = label_to_action(choose(p1, p2, pinv), 0)
        vals = (g["value_1"].iloc[0], g["value_2"].iloc[0])
        out.append({**dict(zip(keys, k)), "value_1": vals[0], "value_2": vals[1], "p_choice_1": p1, "p_choice_2": p2,
                    "p_invalid": pinv, "chosen_choice": None if act is None else act + 1,
                    "chosen_value": None if act is None else vals[act], "valid": act is not None})
    return pd.DataFrame(out)


def _values(g: pd.DataFrame) -> list[str]:
    seen = {v for v in pd.concat([g["value_1"], g["value_2"]]) if isinstance(v, str)}
    return [v for v in MFT_VALUES if v in seen] + sorted(seen - set(MFT_VALUES))


def _tensor(g: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    chains = list(dict.fromkeys(g["chain_id"]))
    ci = {c: i for i, c in enumerate(chains)}
    values = _values(g)
    s = lambda x: x if isinstance(x, str) else None  # noqa: E731
    recs = [(ci[c], int(t) - 1, s(a), s(b), s(v)) for c, t, a, b, v in
            zip(g["chain_id"], g["step"], g["value_1"], g["value_2"], g["chosen_value"])]
    return win_tensor(recs, len(chains), int(g["step"].max()), values), values


def chain_tables(steps: pd.DataFrame, seed: int, n_resamples: int = 1000) -> dict[str, pd.DataFrame]:
    wins, stab, vol = [], [], []
    for (source, lang), g in steps.groupby(["source", "language"], sort=False):
        W, values = _tensor(g)
        rates = win_rates(W)
        rk = ranks(rates)
        idx = np.arange(W.shape[0])
        memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

        def resampled(i: np.ndarray, W=W) -> tuple[np.ndarray, np.ndarray]:
            """(τ per transition, volatility per value) of a resample of chains,
            computed once and shared by every row below (same seed → same draws)."""
            key = i.tobytes()
            if key not in memo:
                r = win_rates(W[i.astype(int)])
                memo[key] = (stability(r), volatility(ranks(r)))
            return memo[key]

        boot = lambda f: summary(idx, seed, n_resamples, stat=lambda i: f(*resampled(i)))  # noqa: E731
        for t in range(W.shape[1]):
            for k, v in enumerate(values):
                col = W[:, t, k]
                n_inv = int(((g["step"] == t + 1) & ~g["valid"].astype(bool) &
                             ((g["value_1"] == v) | (g["value_2"] == v))).sum())
                wins.append({"source": source, "language": lang, "step": t + 1, "value": v,
                             **summary(col[np.isfinite(col)], seed, n_resamples), "rank": rk[t, k], "n_invalid": n_inv})
        taus = stability(rates)
        for t in range(len(taus)):
            both = int(np.sum(np.isfinite(rates[t]) & np.isfinite(rates[t + 1])))
            stab.append({"source": source, "language": lang, "transition": f"{t + 1}-{t + 2}",
                         **boot(lambda tau, vol, t=t: tau[t]), "n_values": both})
        stab.append({"source": source, "language": lang, "transition": "mean",
                     **boot(lambda tau, vol: _nanmean(tau)), "n_values": None})
        for k, v in enumerate(values):
            vol.append({"source": source, "language": lang, "value": v,
                        **boot(lambda tau, vol, k=k: vol[k]),
                        "n_transitions": int(np.sum(np.isfinite(np.diff(rk[:, k]))))})
    return {"dilemma_chain_winrates": pd.DataFrame(wins, columns=["source", "language", "step", "value", *CI, "rank", "n_invalid"]),
            "dilemma_chain_stability": pd.DataFrame(stab, columns=["source", "language", "transition", *CI, "n_values"]),
            "dilemma_chain_volatility": pd.DataFrame(vol, columns=["source", "language", "value", *CI, "n_transitions"])}


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else np.nan


def model_agreement(steps: pd.DataFrame, seed: int, n_resamples: int = 1000) -> pd.DataFrame:
    """Cross-model consistency per value per step: over the chain steps where
    the value is at stake and every model answered, the mean share of model
    pairs that made the same choice (invalid is its own outcome)."""
    cols = ["source", "language", "step", "value", *CI, "n_models"]
    models = list(dict.fromkeys(steps["model"])) if "model" in steps else []
    if len(models) < 2:
        return pd.DataFrame(columns=cols)
    out = []
    for (source, lang, step), g in steps.groupby(["source", "language", "step"], sort=False):
        per_step = []
        for cid, h in g.groupby("chain_id", sort=False):
            if set(h["model"]) != set(models) or h["value_1"].iloc[0] == h["value_2"].iloc[0]:
                continue
            choice = {m: ("invalid" if pd.isna(c) else int(c)) for m, c in zip(h["model"], h["chosen_choice"])}
            per_step.append(((h["value_1"].iloc[0], h["value_2"].iloc[0]), pairwise_agreement([choice[m] for m in models])))
        for v in _values(g):
            flags = [a for vals, a in per_step if v in vals]
            out.append({"source": source, "language": lang, "step": int(step), "value": v,
                        **summary(flags, seed, n_resamples), "n_models": len(models)})
    return pd.DataFrame(out, columns=cols)
