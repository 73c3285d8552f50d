"""Escalation chains (Wu et al. 2025, MMD): value rankings across steps, per context mode.

What a step's prompt shows of the earlier steps is the context mode
(``escalation.context``, escalation_context.py): ``full`` (the chain as a
conversation with the model's own earlier answers), ``none`` (each step
alone) or ``causal`` (a summary of the earlier situations and choices).
``full`` and ``causal`` depend on the model's answers, so the chains are asked
step by step: one batch per step over every mode, chain, language and order,
each step's choices decided before the next step is rendered (the first
step's prompt is the same in every mode and is asked once). Every request goes
through the cache, so a resumed run re-derives the same later prompts from the
cached earlier answers.

Each step is asked in the given and the reversed order; the step's choice is
the argmax of the two orders' mean probabilities (position bias cancels: a
model that always answers the same letter gets a tie, i.e. no valid choice),
and an invalid order adds to the invalid share. Win rate of a value at a step
= share of the chains where it was at stake (one of the two choices, the other
carrying a different value) and chosen; an invalid answer is a loss for both
values. Ranks per step from the win rates (1 = highest, ties averaged);
stability = Kendall τ-b (scipy.stats.kendalltau) between the win rates of
consecutive steps and of the first and the last step; volatility = mean
|rank change| per value over consecutive steps. All of it per label set:
``mft`` (the steps' ``values``) and ``schwartz`` (their ``schwartz`` labels,
where the corpus has them). Intervals: 95 % percentile bootstrap over chains
(seeded; NaN when some resample leaves the statistic undefined, e.g. with
very few chains). A resample repeats some chains and drops others, which
unbalances the value pairs met at each step: that adds noise to the win
rates, so resampled τ-b is pulled toward 0 and resampled volatility up, and a
percentile interval can lie beside its estimate (``ci_excludes_estimate``);
read such an interval as the spread under resampling, not as centred on the
estimate. Rank intervals are over the resamples where the value was at stake. Modes are compared on the same resampled chains
(``dilemma_chain_context_contrast``: τ and volatility of each mode minus the
first listed mode's). A chain is asked in the audit languages it has, else in
its own (MMD: English).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from valuelens.data.dilemmas import MFT_VALUES, SCHWARTZ_VALUES, Chain
from valuelens.layers.dilemmas.ask import Asker
from valuelens.layers.dilemmas.escalation_context import render
from valuelens.layers.dilemmas.measures import (
    choose,
    fleiss_kappa,
    kendall,
    kendall_tau_b_rows,
    label_to_action,
    pairwise_agreement,
    ranks,
    stability,
    summary,
    volatility,
    win_rates,
    win_tensor,
)
from valuelens.metrics import position_bias

CI = ["estimate", "ci_low", "ci_high", "n"]
# label set -> (value column 1, value column 2, chosen column, known order)
LABEL_SETS = {"mft": ("value_1", "value_2", "chosen_value", MFT_VALUES),
              "schwartz": ("schwartz_1", "schwartz_2", "chosen_schwartz", SCHWARTZ_VALUES)}
GROUP = ["context", "label_set", "source", "language"]


@dataclass(frozen=True)
class Job:
    """One chain asked in one language and one context mode."""

    context: str
    chain: Chain
    lang: str


def chain_languages(chain: Chain, languages: Sequence[str]) -> list[str]:
    own = [lang for lang in languages if lang in chain.languages()]
    return own or sorted(chain.languages())


def _decide(p1: Sequence[float], p2: Sequence[float], pinv: Sequence[float]) -> tuple[float, float, float, int | None]:
    """Both orders' probabilities of choice 1 and 2 averaged (NaN = 0), then argmax."""
    a = float(np.nan_to_num(np.asarray(p1, float)).mean())
    b = float(np.nan_to_num(np.asarray(p2, float)).mean())
    c = float(np.asarray(pinv, float).mean())
    return a, b, c, label_to_action(choose(a, b, c), 0)


def chain_row_id(job: Job, step: int, reversed_: bool) -> str:
    """``dilemma_chain_responses.row_id``: the row's keys, joined (the samples table's join key)."""
    return (f"{job.context}|{job.chain.source}|{job.lang}|{job.chain.id}|{step}|"
            f"{'reversed' if reversed_ else 'given'}")


def run(asker: Asker, chains: Sequence[Chain], languages: Sequence[str],
        contexts: Sequence[str] = ("full", "none")) -> dict[str, pd.DataFrame]:
    jobs = [Job(ctx, c, lang) for ctx in contexts for c in chains for lang in chain_languages(c, languages)]
    decided: list[list[int | None]] = [[] for _ in jobs]
    resp, steps = [], []
    for t in range(max((len(c.steps) for c in chains), default=0)):
        asks = [(j, rev) for j, job in enumerate(jobs) if t < len(job.chain.steps) for rev in (False, True)]
        prompts = [render(jobs[j].context, jobs[j].chain, t, jobs[j].lang, rev, decided[j]) for j, rev in asks]
        ids = [chain_row_id(jobs[j], t + 1, rev) for j, rev in asks]
        outs = asker.ab(prompts, f"escalation chains · step {t + 1}", [("dilemma_chain_responses", r, "") for r in ids])
        by_job: dict[int, list[dict]] = {}
        for (j, rev), o, rid in zip(asks, outs, ids):
            job, st = jobs[j], jobs[j].chain.steps[t]
            act = label_to_action(o.label, 1 if rev else 0)
            row = {"row_id": rid, "context": job.context, "source": job.chain.source, "language": job.lang,
                   "chain_id": job.chain.id, "step": t + 1, "order": "reversed" if rev else "given",
                   "value_1": st.values[0], "value_2": st.values[1],
                   "schwartz_1": st.schwartz[0], "schwartz_2": st.schwartz[1],
                   "p_A": o.p_a, "p_B": o.p_b, "p_invalid": o.p_invalid, "covered_mass": o.covered_mass,
                   "p_choice_1": o.p_b if rev else o.p_a, "p_choice_2": o.p_a if rev else o.p_b,
                   "chosen_label": o.label, "chosen_choice": None if act is None else act + 1,
                   "chosen_value": None if act is None else st.values[act],
                   "chosen_schwartz": None if act is None else st.schwartz[act],
                   "valid": act is not None, "reply": o.reply, "failure": o.failure}
            resp.append(row)
            by_job.setdefault(j, []).append(row)
        for j, rows in by_job.items():
            job, st = jobs[j], jobs[j].chain.steps[t]
            p1, p2, pinv, act = _decide([r["p_choice_1"] for r in rows], [r["p_choice_2"] for r in rows],
                                        [r["p_invalid"] for r in rows])
            decided[j].append(act)
            steps.append({k: rows[0][k] for k in ("context", "source", "language", "chain_id", "step", "value_1",
                                                  "value_2", "schwartz_1", "schwartz_2")}
                         | {"p_choice_1": p1, "p_choice_2": p2, "p_invalid": pinv,
                            "chosen_choice": None if act is None else act + 1,
                            "chosen_value": None if act is None else st.values[act],
                            "chosen_schwartz": None if act is None else st.schwartz[act],
                            "valid": act is not None})
    resp_df = pd.DataFrame(resp)
    order = {c: i for i, c in enumerate(contexts)}
    steps_df = pd.DataFrame(steps)
    if len(steps_df):  # a row per chain step, in chain order within each mode (the loop is step-major)
        steps_df = (steps_df.assign(_c=steps_df["context"].map(order), _i=range(len(steps_df)))
                    .sort_values(["_c", "source", "language", "chain_id", "step"], kind="stable")
                    .drop(columns=["_c", "_i"]).reset_index(drop=True))
    return {"dilemma_chain_responses": resp_df, "dilemma_chain_steps": steps_df,
            **chain_tables(steps_df, asker.seed, asker.s.n_resamples, resp_df)}


def _values(g: pd.DataFrame, c1: str, c2: str, known: Sequence[str]) -> list[str]:
    seen = {v for v in pd.concat([g[c1], g[c2]]) if isinstance(v, str)}
    return [v for v in known if v in seen] + sorted(seen - set(known))


def _tensor(g: pd.DataFrame, chains: list[str], values: list[str], n_steps: int, cols: tuple) -> np.ndarray:
    ci = {c: i for i, c in enumerate(chains)}
    s = lambda x: x if isinstance(x, str) else None  # noqa: E731
    recs = [(ci[c], int(t) - 1, s(a), s(b), s(v)) for c, t, a, b, v in
            zip(g["chain_id"], g["step"], g[cols[0]], g[cols[1]], g[cols[2]])]
    return win_tensor(recs, len(chains), n_steps, values)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else np.nan


def _stats(W: np.ndarray) -> dict[str, np.ndarray]:
    """The point estimates from the win tensor (scipy's Kendall τ-b)."""
    r = win_rates(W)
    rk = ranks(r)
    tau = stability(r)
    return {"rates": r, "ranks": rk, "tau": tau, "tau_mean": np.array(_nanmean(tau)),
            "tau_first_last": np.array(kendall(r[0], r[-1]) if r.shape[0] > 1 else np.nan),
            "volatility": volatility(rk)}


def resample_counts(n: int, seed: int, n_resamples: int) -> np.ndarray:
    """(resamples, n): how often each chain is drawn in each bootstrap resample
    (numpy default_rng(seed)); the same draws serve every mode, so modes are
    compared on the same resampled chains."""
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1.0)
    return counts


def boot_stats(W: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of _stats for every resample at once (leading axis: the
    resample): win rates as count-weighted means, ranks as measures.ranks,
    τ-b as measures.kendall_tau_b_rows (= scipy's), volatility as
    measures.volatility."""
    n, T, V = W.shape
    B = counts.shape[0]
    at = np.isfinite(W).reshape(n, T * V).astype(float)
    won = np.nan_to_num(W).reshape(n, T * V)
    cnt, wins = counts @ at, counts @ won
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(cnt > 0, wins / np.where(cnt > 0, cnt, 1), np.nan).reshape(B, T, V)
    x = rates
    rk = (x[..., None, :] > x[..., :, None]).sum(-1) + ((x[..., None, :] == x[..., :, None]).sum(-1) + 1) / 2
    rk = np.where(np.isfinite(x), rk, np.nan)
    tau = np.stack([kendall_tau_b_rows(rates[:, t], rates[:, t + 1]) for t in range(T - 1)], axis=1) \
        if T > 1 else np.full((B, 0), np.nan)
    d = np.abs(np.diff(rk, axis=1))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN, as the point estimates
        tau_mean = np.nanmean(tau, axis=1) if T > 1 else np.full(B, np.nan)
        vol = np.nanmean(d, axis=1) if T > 1 else np.full((B, V), np.nan)
    return {"rates": rates, "ranks": rk, "tau": tau, "tau_mean": tau_mean,
            "tau_first_last": kendall_tau_b_rows(rates[:, 0], rates[:, -1]) if T > 1 else np.full(B, np.nan),
            "volatility": vol}


def _ci(estimate: float, boot: np.ndarray, n: int, skip_undefined: bool = False) -> dict[str, float]:
    """95 % percentile interval of the resampled statistic: NaN when some
    resample leaves it undefined, unless ``skip_undefined`` (ranks: over the
    resamples where the value was at stake)."""
    b = boot[np.isfinite(boot)] if skip_undefined else boot
    if not np.isfinite(estimate) or b.size == 0 or not np.all(np.isfinite(b)):
        low = high = np.nan
    else:
        low, high = (float(q) for q in np.percentile(b, [2.5, 97.5]))
    return {"estimate": float(estimate), "ci_low": low, "ci_high": high, "n": n,
            "ci_excludes_estimate": bool(np.isfinite(low) and not low - 1e-12 <= estimate <= high + 1e-12)}


def _frame(rows: list[dict], cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=cols)


WIN_COLS = [*GROUP, "step", "value", *CI, "rank", "rank_ci_low", "rank_ci_high", "n_invalid"]
# ci_excludes_estimate: the percentile interval lies beside its estimate (resampling bias, see the docstring)
STAB_COLS = [*GROUP, "transition", *CI, "ci_excludes_estimate", "n_values"]
VOL_COLS = [*GROUP, "value", *CI, "ci_excludes_estimate", "mean_rank", "n_transitions"]
CONTRAST_COLS = ["context", "baseline", "label_set", "source", "language", "measure", "value", *CI,
                 "ci_excludes_estimate"]
CONTEXT_COLS = [*GROUP, "n_chains", "n_steps", "invalid_share", "tau_mean", "tau_first_last",
                "most_volatile", "most_volatile_volatility", "position_tv", "position_dominated"]


def chain_tables(steps: pd.DataFrame, seed: int, n_resamples: int = 1000,
                 responses: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Win rates and ranks per step, stability (τ-b), volatility, the modes
    side by side (``dilemma_chain_contexts``) and their paired contrasts."""
    wins: list[dict] = []
    stab: list[dict] = []
    vol: list[dict] = []
    contrast: list[dict] = []
    modes: list[dict] = []
    if steps.empty:
        return {"dilemma_chain_winrates": _frame(wins, WIN_COLS), "dilemma_chain_stability": _frame(stab, STAB_COLS),
                "dilemma_chain_volatility": _frame(vol, VOL_COLS),
                "dilemma_chain_context_contrast": _frame(contrast, CONTRAST_COLS),
                "dilemma_chain_contexts": _frame(modes, CONTEXT_COLS)}
    if "context" not in steps:
        steps = steps.assign(context="none")
    contexts = list(dict.fromkeys(steps["context"]))
    for label_set, cols in LABEL_SETS.items():
        if cols[0] not in steps or not (steps[cols[0]].map(lambda v: isinstance(v, str)).any()):
            continue
        for (source, lang), g in steps.groupby(["source", "language"], sort=False):
            chains = list(dict.fromkeys(g["chain_id"]))
            values = _values(g, cols[0], cols[1], cols[3])
            n_steps = int(g["step"].max())
            Ws = {ctx: _tensor(g[g["context"] == ctx], chains, values, n_steps, cols) for ctx in contexts}
            counts = resample_counts(len(chains), seed, n_resamples)
            point = {ctx: _stats(W) for ctx, W in Ws.items()}
            boots = {ctx: boot_stats(W, counts) for ctx, W in Ws.items()}
            nc = len(chains)
            for ctx in contexts:
                h = g[g["context"] == ctx]
                if h.empty:
                    continue
                key = {"context": ctx, "label_set": label_set, "source": source, "language": lang}
                W, full, bs = Ws[ctx], point[ctx], boots[ctx]
                rates, rk = full["rates"], full["ranks"]
                for t in range(n_steps):
                    at_t = h[h["step"] == t + 1]
                    for k, v in enumerate(values):
                        col = W[:, t, k]
                        n_inv = int((~at_t["valid"].astype(bool) & ((at_t[cols[0]] == v) | (at_t[cols[1]] == v))).sum())
                        rci = _ci(rk[t, k], bs["ranks"][:, t, k], nc, skip_undefined=True)
                        wins.append({**key, "step": t + 1, "value": v,
                                     **summary(col[np.isfinite(col)], seed, n_resamples), "rank": rk[t, k],
                                     "rank_ci_low": rci["ci_low"], "rank_ci_high": rci["ci_high"], "n_invalid": n_inv})
                for t in range(n_steps - 1):
                    both = int(np.sum(np.isfinite(rates[t]) & np.isfinite(rates[t + 1])))
                    stab.append({**key, "transition": f"{t + 1}-{t + 2}",
                                 **_ci(full["tau"][t], bs["tau"][:, t], nc), "n_values": both})
                if n_steps > 1:
                    both = int(np.sum(np.isfinite(rates[0]) & np.isfinite(rates[-1])))
                    stab.append({**key, "transition": "first-last",
                                 **_ci(float(full["tau_first_last"]), bs["tau_first_last"], nc), "n_values": both})
                    stab.append({**key, "transition": "mean",
                                 **_ci(float(full["tau_mean"]), bs["tau_mean"], nc), "n_values": None})
                for k, v in enumerate(values):
                    vol.append({**key, "value": v, **_ci(full["volatility"][k], bs["volatility"][:, k], nc),
                                "mean_rank": _nanmean(rk[:, k]),
                                "n_transitions": int(np.sum(np.isfinite(np.diff(rk[:, k]))))})
                vk = full["volatility"]
                top = int(np.nanargmax(vk)) if np.isfinite(vk).any() else None
                pos = {"position_tv": np.nan, "position_dominated": None}
                if responses is not None and len(responses) and label_set == "mft":
                    r = responses[(responses["context"] == ctx) & (responses["source"] == source)
                                  & (responses["language"] == lang)]
                    pb = position_bias([{"A": 1, "B": 2}.get(x) for x in r["chosen_label"]], [2] * len(r))
                    pos = {"position_tv": pb["position_tv"], "position_dominated": pb["position_dominated"]}
                modes.append({**key, "n_chains": len(set(h["chain_id"])), "n_steps": n_steps,
                              "invalid_share": float((~h["valid"].astype(bool)).mean()),
                              "tau_mean": float(full["tau_mean"]), "tau_first_last": float(full["tau_first_last"]),
                              "most_volatile": None if top is None else values[top],
                              "most_volatile_volatility": np.nan if top is None else float(vk[top]), **pos})
            base = contexts[0]
            for ctx in contexts[1:]:
                key = {"context": ctx, "baseline": base, "label_set": label_set, "source": source, "language": lang}
                a, b, pa, pb = boots[ctx], boots[base], point[ctx], point[base]
                contrast.append({**key, "measure": "tau_mean", "value": None,
                                 **_ci(float(pa["tau_mean"] - pb["tau_mean"]), a["tau_mean"] - b["tau_mean"], nc)})
                for k, v in enumerate(values):
                    contrast.append({**key, "measure": "volatility", "value": v,
                                     **_ci(pa["volatility"][k] - pb["volatility"][k],
                                           a["volatility"][:, k] - b["volatility"][:, k], nc)})
    return {"dilemma_chain_winrates": _frame(wins, WIN_COLS), "dilemma_chain_stability": _frame(stab, STAB_COLS),
            "dilemma_chain_volatility": _frame(vol, VOL_COLS),
            "dilemma_chain_context_contrast": _frame(contrast, CONTRAST_COLS),
            "dilemma_chain_contexts": _frame(modes, CONTEXT_COLS)}


def _fleiss_at(i: np.ndarray, table: np.ndarray) -> float:
    """Fleiss' κ of the resampled rows ``i`` of a step × (choice 1, choice 2, invalid) count table."""
    return fleiss_kappa(table[i.astype(int)])


def model_agreement(steps: pd.DataFrame, seed: int, n_resamples: int = 1000) -> pd.DataFrame:
    """Cross-model consistency per value per step (per context mode and label
    set): over the chain steps where the value is at stake and every model
    answered, the mean share of model pairs that made the same choice
    (``estimate``) and Fleiss' κ of the models' choices (``kappa``; outcomes
    choice 1, choice 2, invalid), both bootstrapped over those chain steps."""
    cols = [*GROUP, "step", "value", *CI, "kappa", "kappa_ci_low", "kappa_ci_high", "n_models"]
    models = list(dict.fromkeys(steps["model"])) if "model" in steps else []
    if len(models) < 2:
        return pd.DataFrame(columns=cols)
    if "context" not in steps:
        steps = steps.assign(context="none")
    out = []
    for label_set, (c1, c2, _, known) in LABEL_SETS.items():
        if c1 not in steps or not steps[c1].map(lambda v: isinstance(v, str)).any():
            continue
        for (ctx, source, lang, step), g in steps.groupby(["context", "source", "language", "step"], sort=False):
            per_step = []
            for _cid, h in g.groupby("chain_id", sort=False):
                if set(h["model"]) != set(models) or h[c1].iloc[0] == h[c2].iloc[0]:
                    continue
                choice = {m: ("invalid" if pd.isna(c) else int(c)) for m, c in zip(h["model"], h["chosen_choice"])}
                outcomes = [choice[m] for m in models]
                counts = [sum(o == k for o in outcomes) for k in (1, 2, "invalid")]
                per_step.append(((h[c1].iloc[0], h[c2].iloc[0]), pairwise_agreement(outcomes), counts))
            for v in _values(g, c1, c2, known):
                mine = [(a, c) for vals, a, c in per_step if v in vals]
                table = np.array([c for _, c in mine], dtype=float).reshape(-1, 3)
                kap = (summary(np.arange(len(mine)), seed, n_resamples, stat=partial(_fleiss_at, table=table))
                       if mine else {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan})
                out.append({"context": ctx, "label_set": label_set, "source": source, "language": lang,
                            "step": int(step), "value": v, **summary([a for a, _ in mine], seed, n_resamples),
                            "kappa": kap["estimate"], "kappa_ci_low": kap["ci_low"], "kappa_ci_high": kap["ci_high"],
                            "n_models": len(models)})
    return pd.DataFrame(out, columns=cols)
