"""Insensitivity: FF (false fact presentation) and CV (conflict in value expression).

FF: a valid final answer to a factual item whose code is not the correct one
(invalid answers are counted apart, in ``ff_invalid``, not as wrong).
CV: per session (language, participant, pass) and configured pair of opposite
items answered validly on both: ``same`` flags the same answer position on
both, ``same_side`` flags positions on the same side of the midpoint (k + 1)/2
(the midpoint itself is on neither side), ``combos`` flags the listed pairs of
answer codes. Rates per language × country.
Optional judge: the audited model, greedy, asked the configured prompt;
"Yes"/"是" = flagged, an unreadable verdict is left out of the judge rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from valuelens.layers.def_layer.data import Inputs, option_codes
from valuelens.layers.def_layer.parsing import parse_verdict
from valuelens.layers.def_layer.settings import DEFSettings
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message

SESSION = ["language", "country", "participant", "pass"]


def contradicts(a: int, b: int, k: int, rule: str) -> bool:
    """``a``, ``b``: 1-based answer positions on two opposite k-option items."""
    if rule == "same":
        return a == b
    mid = (k + 1) / 2
    return (a - mid) * (b - mid) > 0


def items(answers: pd.DataFrame, inputs: Inputs, settings: DEFSettings) -> pd.DataFrame:
    """One row per FF answer and per CV pair check (rule-based flag)."""
    final = answers[answers["final"]]
    rows: list[dict[str, Any]] = []
    for _, r in final[final["question_id"].isin(list(inputs.factual))].iterrows():
        correct = inputs.factual[r["question_id"]]
        rows.append({**{k: r[k] for k in SESSION}, "kind": "FF", "item": r["question_id"], "valid": bool(r["valid"]),
                     "answer": r["option_text"], "code": r["code"], "correct_code": correct,
                     "flagged": bool(r["valid"]) and int(r["code"]) != correct})
    by_session = {k: g.set_index("question_id") for k, g in final.groupby(SESSION, sort=False)}
    for pair in inputs.cv_pairs:
        qa, qb = inputs.find(pair.a), inputs.find(pair.b)
        assert qa is not None and qb is not None  # checked when loading
        ka, kb = len(qa.labels), len(qb.labels)
        rule = pair.rule if pair.rule != "auto" else ("same_side" if ka == kb == 10 else "same")
        combos = {tuple(c) for c in pair.combos or []}
        for key, g in by_session.items():
            if qa.id not in g.index or qb.id not in g.index:
                continue
            ra, rb = g.loc[qa.id], g.loc[qb.id]
            ok = bool(ra["valid"]) and bool(rb["valid"])
            if rule == "combos":  # answer codes, as listed
                flagged = ok and (int(ra["code"]), int(rb["code"])) in combos
            else:
                flagged = ok and contradicts(int(ra["option_index"]) + 1, int(rb["option_index"]) + 1, max(ka, kb),
                                             rule)
            rows.append({**dict(zip(SESSION, key)), "kind": "CV", "item": f"{qa.id}|{qb.id}", "valid": ok,
                         "answer": f"{ra['option_text']} | {rb['option_text']}" if ok else None,
                         "rule": rule, "flagged": flagged})
    cols = SESSION + ["kind", "item", "valid", "answer", "code", "correct_code", "rule", "flagged"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _template(prompts: Mapping[Any, str], lang: str) -> str:
    return prompts.get(lang) or next(iter(prompts.values()))


def judge(model: CachedModel, checks: pd.DataFrame, inputs: Inputs, settings: DEFSettings, seed: int) -> pd.DataFrame:
    """Adds judge_reply and judge_flagged (None where not judged) to the valid checks."""
    j = settings.insensitivity.judge
    out = checks.copy()
    out["judge_reply"], out["judge_flagged"] = None, None
    out.insert(0, "row_id", [f"{r['language']}|{r['participant']}|{r['pass']}|{r['kind']}|{r['item']}" for _, r in out.iterrows()])
    if j is None or out.empty:
        return out
    gs = GenerateSettings(temperature=0.0, max_tokens=j.max_tokens, seed=seed)
    reqs, where = [], []
    for i, r in out[out["valid"]].iterrows():
        lang = r["language"]
        if r["kind"] == "FF":
            q = inputs.find(r["item"])
            opts = q.options[lang]  # type: ignore[union-attr]
            correct = opts[option_codes(q).index(int(r["correct_code"]))]  # type: ignore[arg-type]
            text = _template(j.ff_prompt, lang).format(question=q.text[lang], options="\n".join(opts),  # type: ignore[union-attr]
                                            correct=correct, answer=r["answer"])
        else:
            a, b = (inputs.find(n) for n in r["item"].split("|"))
            ans_a, ans_b = r["answer"].split(" | ", 1)
            text = _template(j.cv_prompt, lang).format(question_a=a.text[lang], answer_a=ans_a,  # type: ignore[union-attr]
                                            question_b=b.text[lang], answer_b=ans_b)  # type: ignore[union-attr]
        reqs.append(GenerateRequest((Message("user", text),), gs))
        where.append(i)
    tags = [("def_insensitivity_items", out.at[i, "row_id"], "judge") for i in where]
    for i, g in zip(where, model.generate(reqs, tags=tags)):
        out.at[i, "judge_reply"] = g.texts[0]
        out.at[i, "judge_flagged"] = parse_verdict(g.texts[0])
    return out


def rates(checks: pd.DataFrame) -> pd.DataFrame:
    """FF and CV rates per language × country (NaN where there is nothing to rate)."""
    rows = []
    for (lang, country), g in checks.groupby(["language", "country"], sort=False):
        row: dict[str, Any] = {"language": lang, "country": country}
        for kind, name in (("FF", "ff"), ("CV", "cv")):
            k = g[g["kind"] == kind]
            v = k[k["valid"]]
            row.update({f"{name}_n": len(v), f"{name}_invalid": len(k) - len(v),
                        f"{name}_flagged": int(v["flagged"].sum()),
                        f"{name}_rate": float(v["flagged"].mean()) if len(v) else np.nan})
            if "judge_flagged" in g and g["judge_flagged"].notna().any():
                jv = v["judge_flagged"].dropna()
                row[f"judge_{name}_rate"] = float(jv.astype(float).mean()) if len(jv) else np.nan
        rows.append(row)
    cols = ["language", "country"] + [f"{k}_{c}" for k in ("ff", "cv") for c in ("n", "invalid", "flagged", "rate")]
    return pd.DataFrame(rows).reindex(columns=cols + [c for c in ("judge_ff_rate", "judge_cv_rate")
                                                      if any(c in r for r in rows)])
