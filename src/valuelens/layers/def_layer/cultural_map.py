"""Cultural variation map (paper Figure 11) and the "variation preserved" score.

Points: each (model, language, country) and each human population
(country). Coordinates: the mean expected option value (in [0, 1], see
``tables``) per value dimension over the ordinal, non-factual questions; when
fewer than two dimensions are labelled, each question is its own coordinate.
Features missing for any point are dropped. PCA: centred, not scaled (all
features share the [0, 1] scale), by SVD; the sign of each component is fixed
so its largest loading is positive. Variation preserved for a pair of
countries = the model's distance between its two points ÷ the humans'
distance, on the 2-D map and in the full feature space (1 = same spread,
0 = the model does not tell the countries apart).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

HUMAN = "(human)"


def feature_values(questions: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Long table: model, language, country, feature, value (humans as model '(human)', language '')."""
    q = questions[questions["ordinal"].astype(bool) & ~questions["factual"].astype(bool)].copy()
    dims = sorted(d for d in q["dimension"].dropna().unique() if d)
    kind = "dimension" if len(dims) >= 2 else "question"
    q["feature"] = q["dimension"] if kind == "dimension" else q["question_id"]
    if kind == "dimension":
        q = q[q["feature"].isin(dims)]
    model = (q.groupby(["model", "language", "country", "feature"], sort=True)["model_expected"].mean()
             .rename("value").reset_index())
    human_q = q.dropna(subset=["human_expected"]).drop_duplicates(["country", "question_id"])
    human = human_q.groupby(["country", "feature"], sort=True)["human_expected"].mean().rename("value").reset_index()
    human.insert(0, "language", "")
    human.insert(0, "model", HUMAN)
    return pd.concat([model, human], ignore_index=True), kind


def pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA coordinates and the explained-variance ratios of the two components."""
    c = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    for i in range(vt.shape[0]):
        if vt[i, np.argmax(np.abs(vt[i]))] < 0:
            u[:, i], vt[i] = -u[:, i], -vt[i]
    coords = np.zeros((x.shape[0], 2))
    k = min(2, s.size)
    coords[:, :k] = u[:, :k] * s[:k]
    total = float((s**2).sum())
    ratio = np.zeros(2)
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    return coords, ratio


def cultural_map(questions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """def_map_values (long), def_map (one row per point with pc1, pc2) and def_variation."""
    values, kind = feature_values(questions)
    values.insert(3, "feature_kind", kind)
    wide = values.pivot_table(index=["model", "language", "country"], columns="feature", values="value", aggfunc="first")
    wide = wide.dropna(axis=1, how="any")
    empty_map = pd.DataFrame(columns=["model", "language", "country", "pc1", "pc2", "explained_pc1", "explained_pc2",
                                      "n_features"])
    if wide.shape[0] < 2 or wide.shape[1] < 1:
        return values, empty_map, variation(empty_map, wide)
    coords, ratio = pca2(wide.to_numpy(float))
    pts = wide.index.to_frame(index=False)
    pts["pc1"], pts["pc2"] = coords[:, 0], coords[:, 1]
    pts["explained_pc1"], pts["explained_pc2"], pts["n_features"] = ratio[0], ratio[1], wide.shape[1]
    return values, pts, variation(pts, wide)


def variation(points: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    cols = ["model", "language", "country_a", "country_b", "model_distance", "human_distance", "variation_preserved",
            "model_distance_full", "human_distance_full", "variation_preserved_full"]
    if points.empty:
        return pd.DataFrame(columns=cols)
    xy = {(r.model, r.language, r.country): np.array([r.pc1, r.pc2]) for r in points.itertuples()}
    full = {k: wide.loc[k].to_numpy(float) for k in wide.index}
    human = {c for m, _, c in xy if m == HUMAN}
    rows = []
    for (m, lang), _ in points[points["model"] != HUMAN].groupby(["model", "language"], sort=False):
        countries = sorted(c for mm, ll, c in xy if (mm, ll) == (m, lang) and c in human)
        for a, b in combinations(countries, 2):
            d2m = float(np.linalg.norm(xy[(m, lang, a)] - xy[(m, lang, b)]))
            d2h = float(np.linalg.norm(xy[(HUMAN, "", a)] - xy[(HUMAN, "", b)]))
            dfm = float(np.linalg.norm(full[(m, lang, a)] - full[(m, lang, b)]))
            dfh = float(np.linalg.norm(full[(HUMAN, "", a)] - full[(HUMAN, "", b)]))
            rows.append({"model": m, "language": lang, "country_a": a, "country_b": b, "model_distance": d2m,
                         "human_distance": d2h, "variation_preserved": d2m / d2h if d2h > 0 else np.nan,
                         "model_distance_full": dfm, "human_distance_full": dfh,
                         "variation_preserved_full": dfm / dfh if dfh > 0 else np.nan})
    return pd.DataFrame(rows, columns=cols)
