"""Metrics for MARK and the baselines, and the paper's Table 3.

- Accuracy: simulated answer = the respondent's real answer; an invalid
  simulation counts as wrong.
- Cohen's κ: per question (invalid = a category of its own), averaged over questions.
- 1 − JSD (Jensen–Shannon distance, natural log) and ordinal EMD (1-D
  Wasserstein over option positions / (k − 1)) per question × country between
  the distribution of valid simulated answers and the human one: ``sampled`` =
  the sampled respondents' real answers (both unweighted), ``global`` = the whole
  country in the microdata (both weighted by W_WEIGHT). No valid answer → NaN.
- Without respondents (country-level data, personas from marginals) there is no
  real answer: accuracy, κ and the McNemar test are not computable (empty
  columns, named in ``not_computable``), 1 − JSD and EMD use the ``global``
  (country) distribution with unweighted simulated answers; position bias is
  judged against the country's modal answer.
- Intervals: percentile bootstrap (rows for ACC and κ, question × country items
  for 1 − JSD and EMD). Paired test of MARK vs each baseline: exact McNemar
  (binomial on the discordant respondent-questions), Holm-corrected over the
  baselines of one model and language.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from valuelens.metrics import cohen_kappa, kappa_codes, mcnemar_exact, one_minus_jsd, ordinal_emd, position_bias
from valuelens.stats import bootstrap_ci, holm

LABELS = {"demo_ideo": "Demo.+Ideo.", "demo_ideo_opinion": "Demo.+Ideo.+Opinion",
          "worldvaluesbench": "Zhao et al. (2024)", "mark": "MARK"}
ORDER = list(LABELS)
KEYS = ["language", "respondent_id", "question_id"]


def responses(records: list[dict[str, Any]], weights: Mapping[int, float],
              n_options: Mapping[str, int]) -> pd.DataFrame:
    rows = [{"row_id": f"{r['method']}|{r['language']}|{r['respondent_id']}|{r['question_id']}",
             "method": r["method"], "language": r["language"], "country": r["country"],
             "respondent_id": r["respondent_id"], "question_id": r["question_id"],
             "n_options": n_options[r["question_id"]], "weight": weights[r["respondent_id"]],
             "truth": r["truth"] if r["truth"] is not None else np.nan,
             "answer": r["answer"] if r["answer"] is not None else np.nan, "valid": bool(r["valid"]),
             # no real answer (personas from marginals): correctness is unknown, not False
             "correct": (r["answer"] is not None and r["answer"] == r["truth"]) if r["truth"] is not None else np.nan}
            for r in records]
    cols = ["row_id", "method", "language", "country", "respondent_id", "question_id", "n_options", "weight", "truth",
            "answer", "valid", "correct"]
    return pd.DataFrame(rows, columns=cols)


def _dist(values: np.ndarray, w: np.ndarray, k: int) -> np.ndarray | None:
    if not len(values) or w.sum() <= 0:
        return None
    return np.bincount(values.astype(int) - 1, weights=w, minlength=k) / w.sum()


def _fmt(p: np.ndarray | tuple | None) -> str | None:
    return None if p is None else " ".join(f"{x:.4f}" for x in p)


def items(resp: pd.DataFrame, global_human: Mapping[tuple[str, str], tuple[float, ...]]) -> pd.DataFrame:
    rows = []
    for (m, lang, qid, c), g in resp.groupby(["method", "language", "question_id", "country"], sort=False):
        k = int(g["n_options"].iloc[0])
        v = g[g["valid"]]
        sim = _dist(v["answer"].to_numpy(), np.ones(len(v)), k)
        sim_w = _dist(v["answer"].to_numpy(), v["weight"].to_numpy(float), k)
        known = g[g["truth"].notna()]
        hum = _dist(known["truth"].to_numpy(), np.ones(len(known)), k)
        glob = global_human.get((qid, c))
        rows.append({"method": m, "language": lang, "question_id": qid, "country": c, "n": len(g), "n_valid": len(v),
                     "accuracy": known["correct"].astype(float).mean() if len(known) else np.nan,
                     "one_minus_jsd_sampled": one_minus_jsd(hum, sim) if sim is not None and hum is not None else np.nan,
                     "emd_sampled": ordinal_emd(hum, sim) if sim is not None and hum is not None else np.nan,
                     "one_minus_jsd_global": one_minus_jsd(glob, sim_w, normalize=True)
                     if sim_w is not None and glob else np.nan,
                     "emd_global": ordinal_emd(glob, sim_w, normalize=True) if sim_w is not None and glob else np.nan,
                     "simulated": _fmt(sim), "human_sampled": _fmt(hum), "human_global": _fmt(glob)})
    return pd.DataFrame(rows)


def macro_kappa(g: pd.DataFrame) -> float:
    """Mean over questions of Cohen's κ (invalid answers as category 0)."""
    ks = []
    for _, h in g.groupby("question_id", sort=False):
        pred = h["answer"].fillna(0).astype(int).tolist()
        ks.append(cohen_kappa(h["truth"].astype(int).tolist(), pred,
                              labels=list(range(int(h["n_options"].iloc[0]) + 1))))
    return float(np.mean(ks)) if ks else np.nan


def _kappa_arrays(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    q = pd.factorize(g["question_id"])[0]
    return q, g["truth"].to_numpy(int), g["answer"].fillna(0).to_numpy(int), int(g["n_options"].max()) + 1


def fast_macro_kappa(q: np.ndarray, t: np.ndarray, p: np.ndarray, k: int) -> float:
    """:func:`macro_kappa` on arrays (question index, truth, answer with 0 = invalid), for the bootstrap."""
    return float(np.mean([kappa_codes(t[q == j], p[q == j], k) for j in np.unique(q)]))


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    v = values[~np.isnan(values)]
    if not len(v):
        return np.nan, np.nan, np.nan
    return tuple(bootstrap_ci(v, n_resamples=n_boot, seed=seed))  # type: ignore[return-value]


NOT_COMPUTABLE = "accuracy, kappa, p_vs_mark"
NOT_COMPUTABLE_WHY = "no respondent answers: personas drawn from country marginals (country-level data)"


def summary(resp: pd.DataFrame, its: pd.DataFrame, reference: str, n_boot: int, seed: int,
            modal: Mapping[tuple[str, str], int] | None = None) -> pd.DataFrame:
    """Per method × language. Without real answers (``truth`` all missing: personas from marginals)
    accuracy, κ and the McNemar test cannot be computed: their columns stay empty and
    ``not_computable`` names them (``not_computable_why`` says why); 1 − JSD and EMD are computed, and
    the position-bias reference is then each country's modal human answer (``modal``: (question, country)
    -> option number; the first on ties), as in the first-token layer."""
    rows = []
    aggregate = bool(len(resp)) and bool(resp["truth"].isna().all())
    for (m, lang), g in resp.groupby(["method", "language"], sort=False):
        it = its[(its["method"] == m) & (its["language"] == lang)]
        jsd = _ci(it[f"one_minus_jsd_{reference}"].to_numpy(float), n_boot, seed)
        emd = _ci(it[f"emd_{reference}"].to_numpy(float), n_boot, seed)
        nan3 = (np.nan, np.nan, np.nan)
        if aggregate:
            acc, kappa, kap_low, kap_high = nan3, np.nan, np.nan, np.nan
        else:
            acc = _ci(g["correct"].to_numpy(float), n_boot, seed)
            q, t, p, k = _kappa_arrays(g)
            kap = bootstrap_ci(np.arange(len(g), dtype=float),
                               lambda ix: fast_macro_kappa(q[ix.astype(int)], t[ix.astype(int)], p[ix.astype(int)], k),
                               n_resamples=n_boot, seed=seed)
            kappa, kap_low, kap_high = macro_kappa(g), kap.low, kap.high
        rows.append({"method": m, "label": LABELS[m], "language": lang, "reference": reference, "n": len(g),
                     "n_invalid": int((~g["valid"]).sum()), "invalid_share": float((~g["valid"]).mean()),
                     "accuracy": acc[0], "accuracy_low": acc[1], "accuracy_high": acc[2],
                     "one_minus_jsd": jsd[0], "one_minus_jsd_low": jsd[1], "one_minus_jsd_high": jsd[2],
                     "emd": emd[0], "emd_low": emd[1], "emd_high": emd[2],
                     "kappa": kappa, "kappa_low": kap_low, "kappa_high": kap_high,
                     "not_computable": NOT_COMPUTABLE if aggregate else "",
                     "not_computable_why": NOT_COMPUTABLE_WHY if aggregate else "",
                     # answer = shown position; the respondents' real answers are the reference (when known)
                     **position_bias(g["answer"].tolist(), g["n_options"].tolist(),
                                     reference=g["truth"].tolist() if not aggregate else
                                     [(modal or {}).get((q, c)) for q, c in zip(g["question_id"], g["country"])])})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for c in ("mark_only_correct", "baseline_only_correct", "p_vs_mark", "p_holm"):
        out[c] = np.nan
    for lang in out["language"].unique() if not aggregate else ():
        mark = resp[(resp["method"] == "mark") & (resp["language"] == lang)].set_index(KEYS)["correct"]
        idx = [i for i in out.index if out.at[i, "language"] == lang and out.at[i, "method"] != "mark"]
        if mark.empty or not idx:
            continue
        for i in idx:
            base = resp[(resp["method"] == out.at[i, "method"]) & (resp["language"] == lang)].set_index(KEYS)["correct"]
            both = mark.to_frame("a").join(base.to_frame("b"), how="inner")
            x, y, p_value = mcnemar_exact(both["a"].to_numpy(bool), both["b"].to_numpy(bool))
            out.loc[i, ["mark_only_correct", "baseline_only_correct", "p_vs_mark"]] = [x, y, p_value]
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_vs_mark"].to_numpy(float))
    order = {m: i for i, m in enumerate(ORDER)}
    return out.sort_values(["language", "method"], key=lambda s: s.map(order) if s.name == "method" else s,
                           kind="stable").reset_index(drop=True)


def table3(summ: pd.DataFrame) -> pd.DataFrame:
    """Rows language × method (baselines, then MARK); per model: ACC (%), 1-JSD,
    EMD, kappa, and the Holm-corrected p of the paired test against MARK."""
    if summ.empty:
        return pd.DataFrame()
    models = list(dict.fromkeys(summ["model"]))
    rows = []
    for (lang, m), g in summ.groupby(["language", "method"], sort=False):
        row: dict[str, Any] = {"language": lang, "method": LABELS.get(m, m)}
        nc = "; ".join(sorted({str(v) for v in g["not_computable"].fillna("") if v})) \
            if "not_computable" in g.columns else ""  # e.g. "accuracy, kappa, p_vs_mark": empty cells, not values
        for model in models:
            r = g[g["model"] == model]
            r = r.iloc[0] if len(r) else None
            vals = [np.nan] * 5 if r is None else [round(100 * r["accuracy"], 2), round(r["one_minus_jsd"], 4),
                                                   round(r["emd"], 4), round(r["kappa"], 2), r["p_holm"]]
            row.update(zip((f"{model} ACC (%)", f"{model} 1-JSD", f"{model} EMD", f"{model} kappa",
                            f"{model} p (Holm)"), vals))
        if nc:
            row["not_computable"] = nc
        rows.append(row)
    order = {lab: i for i, lab in enumerate(LABELS.values())}
    return pd.DataFrame(rows).sort_values(["language", "method"], key=lambda s: s.map(order) if s.name == "method"
                                          else s, kind="stable").reset_index(drop=True)
