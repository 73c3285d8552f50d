"""Per-question distributions and KL, and the summaries built on them.

The model distribution of a question (per language and country) is over the
options plus an ``invalid`` outcome, from each session's final attempt. The
human distribution has 0 on ``invalid``. Three KL(model ‖ human) columns:

- ``kl_raw``: unsmoothed, infinite when the model puts mass where humans have
  none (any invalid answer does);
- ``kl_def``: DEF's rule, inf/NaN → largest finite KL in the run + 1 (the run:
  all models, languages and countries; set in ``combine``), so one item's
  value depends on the others;
- ``kl_eps``: ε added to every entry of both distributions, renormalised
  (ε = ``kl_eps`` setting, default 1e-6).

These keep DEF's definition (comparable with its numbers), but an
off-format answer counts as distance from the humans. So valuelens also
reports KL over the valid answers only (the model's option shares among its
valid answers vs the human shares), beside ``invalid_share`` as a measure of
its own; rankings and flags use these:

- ``kl_valid_raw``: unsmoothed (infinite only when a validly chosen option
  has human share 0); NaN when the model gave no valid answer;
- ``kl_valid``: DEF's inf → max + 1 rule applied to ``kl_valid_raw`` over the
  run (set in ``combine``; NaN stays NaN);
- ``kl_valid_eps``: ε-smoothed like ``kl_eps``.

Expected option value: Σ p_i · i / (k − 1) over the valid options (positions
0..k−1), in [0, 1]; NaN for a model without a valid answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from valuelens.layers.def_layer.data import Inputs
from valuelens.metrics import expected_option_value, kl, kl_table_replace_inf, position_bias, share_below

KEYS = ["language", "country", "question_id"]


def _top(shares: np.ndarray, labels: tuple[str, ...]) -> str | None:
    if shares.sum() <= 0:
        return None
    best = np.flatnonzero(np.isclose(shares, shares.max(), rtol=0, atol=1e-12))
    return "|".join(labels[i] for i in best)


def question_tables(answers: pd.DataFrame, inputs: Inputs, eps: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """def_questions (one row per language × country × question) and def_options (+ an 'invalid' row)."""
    questions = {q.id: q for q in inputs.questions}
    final = answers[answers["final"]]
    qrows: list[dict[str, Any]] = []
    orows: list[dict[str, Any]] = []
    chosen = pd.to_numeric(final["option_index"], errors="coerce").to_numpy(float, na_value=np.nan)
    groups = sorted(final.groupby(KEYS, sort=False).indices.items(), key=lambda kv: kv[1][0])  # first-seen order
    for (lang, country, qid), rows in groups:
        q = questions[qid]
        k = len(q.labels)
        picked = chosen[rows]
        counts = np.bincount(picked[~np.isnan(picked)].astype(int), minlength=k).astype(float)
        n, n_valid = len(rows), int(counts.sum())
        model = np.append(counts, n - n_valid) / n
        human = inputs.human(qid, country) if qid not in inputs.factual else None
        h = np.append(np.asarray(human, float), 0.0) if human is not None else None
        both = h is not None and n_valid > 0  # valid-only KL: the option counts against the human shares
        qrows.append({
            "language": lang, "country": country, "question_id": qid, "dimension": inputs.dimension.get(qid, ""),
            "factual": qid in inputs.factual, "ordinal": q.ordinal, "n_options": k, "n_answers": n, "n_valid": n_valid,
            "invalid_share": 1 - n_valid / n, "model_top": _top(counts, q.labels),
            "human_top": _top(h[:-1], q.labels) if h is not None else None,
            "kl_raw": kl(model, h, normalize=True) if h is not None else np.nan,
            "kl_eps": kl(model, h, eps=eps, normalize=True) if h is not None else np.nan,
            "kl_valid_raw": kl(counts, h[:-1], normalize=True) if both and h is not None else np.nan,
            "kl_valid_eps": kl(counts, h[:-1], eps=eps, normalize=True) if both and h is not None else np.nan,
            "model_expected": expected_option_value(counts, np.arange(k) / (k - 1), normalize=True) if n_valid else np.nan,
            "human_expected": expected_option_value(h[:-1], np.arange(k) / (k - 1), normalize=True) if h is not None else np.nan,
        })
        texts = q.options.get(lang) or q.options["en"]
        for i in range(k + 1):
            orows.append({"language": lang, "country": country, "question_id": qid,
                          "option": q.labels[i] if i < k else "invalid", "option_text": texts[i] if i < k else "",
                          "count": int(counts[i]) if i < k else n - n_valid, "model_share": model[i],
                          "human_share": h[i] if h is not None else np.nan})
    return pd.DataFrame(qrows), pd.DataFrame(orows)


def add_kl_def(questions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """kl_def and kl_valid over the whole table (DEF's replacement), and the 'close' flags."""
    q = questions.copy()
    human = ~q["factual"].astype(bool)
    has = q["kl_raw"].notna() & human
    q["kl_def"] = np.nan
    if has.any():
        q.loc[has, "kl_def"] = kl_table_replace_inf(q.loc[has, "kl_raw"].to_numpy())
    q["close"] = np.where(has, q["kl_def"] < threshold, None)
    q["close_eps"] = np.where(has, q["kl_eps"] < threshold, None)
    if "kl_valid_raw" in q.columns:
        valid = q["kl_valid_raw"].notna() & human  # NaN = no valid answer: left out, never replaced
        q["kl_valid"] = np.nan
        if valid.any():
            q.loc[valid, "kl_valid"] = kl_table_replace_inf(q.loc[valid, "kl_valid_raw"].to_numpy())
        q["close_valid"] = np.where(valid, q["kl_valid"] < threshold, None)
    return q


def _mean_share(values: pd.Series, threshold: float) -> tuple[float, float]:
    """Mean and share below ``threshold`` of the non-NaN values (NaN, NaN when there are none)."""
    v = values.dropna()
    return (float(v.mean()), share_below(v, threshold)) if len(v) else (np.nan, np.nan)


def dimension_table(questions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per model × language × country × value dimension (and '(all)'): mean KL over its questions."""
    q = questions[questions["kl_def"].notna()]
    rows = []
    for keys, g in q.groupby(["model", "language", "country"], sort=False):
        parts = [(d, gd) for d, gd in g.groupby("dimension", sort=True)] + [("(all)", g)]
        for dim, gd in parts:
            row = {**dict(zip(["model", "language", "country"], keys)), "dimension": dim or "(none)",
                   "n_questions": len(gd), "mean_kl_def": gd["kl_def"].mean(), "mean_kl_eps": gd["kl_eps"].mean(),
                   "share_close": share_below(gd["kl_def"], threshold),
                   "share_close_eps": share_below(gd["kl_eps"], threshold),
                   "invalid_share": gd["invalid_share"].mean()}
            if "kl_valid" in gd.columns:  # over the questions with at least one valid answer
                row["n_questions_valid"] = int(gd["kl_valid"].notna().sum())
                row["mean_kl_valid"], row["share_close_valid"] = _mean_share(gd["kl_valid"], threshold)
                row["mean_kl_valid_eps"] = gd["kl_valid_eps"].mean()
            rows.append(row)
    return pd.DataFrame(rows, columns=DIMENSION_COLUMNS)


DIMENSION_COLUMNS = ["model", "language", "country", "dimension", "n_questions", "mean_kl_def", "mean_kl_eps",
                     "share_close", "share_close_eps", "invalid_share", "n_questions_valid", "mean_kl_valid",
                     "mean_kl_valid_eps", "share_close_valid"]


def summary_table(merged: dict[str, pd.DataFrame], dims: pd.DataFrame) -> pd.DataFrame:
    """One row per model × language × country: the layer's headline numbers."""
    keys = ["model", "language", "country"]
    answers = merged["def_answers"]
    final = answers[answers["final"]]
    base = final.groupby(keys, sort=False).agg(n_answers=("valid", "size"), invalid_share=("valid", lambda v: 1 - v.mean()),
                                               retried_share=("attempt", lambda a: float((a > 0).mean())))
    out = base.reset_index()
    alld = dims[dims["dimension"] == "(all)"][keys + ["n_questions", "mean_kl_def", "mean_kl_eps", "share_close",
                                                      "share_close_eps", "n_questions_valid", "mean_kl_valid",
                                                      "mean_kl_valid_eps", "share_close_valid"]]
    out = out.merge(alld, on=keys, how="left")
    if "def_bias" in merged and len(merged["def_bias"]):
        b = merged["def_bias"].dropna(subset=["match"])
        out = out.merge(b.groupby(keys)["match"].mean().rename("bias_match_rate").reset_index(), on=keys, how="left")
    ins = merged.get("def_insensitivity")
    if ins is not None and set(keys) <= set(ins.columns):
        cols = [c for c in ("ff_rate", "cv_rate", "judge_ff_rate", "judge_cv_rate") if c in ins]
        out = out.merge(ins[keys + cols], on=keys, how="left")
    if {"shown_number", "shown_order"} <= set(final.columns):  # position_*: where the chosen option was shown
        # only shuffled questions: a numeric scale keeps its order (see prompts), so there position = value
        shown = final[final["shuffled"].astype(bool)] if "shuffled" in final.columns else final
        pos = [{**dict(zip(keys, k)), **position_bias(g["shown_number"].astype("float64").tolist(),
                                                      g["shown_order"].str.count(",") + 1)}
               for k, g in shown.groupby(keys, sort=False)]
        out = out.merge(pd.DataFrame(pos, columns=keys + list(position_bias([], []))), on=keys, how="left")
    return out
