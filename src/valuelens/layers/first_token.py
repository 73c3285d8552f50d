"""Layer 3a, zero-shot first-token probe (Cao et al. 2025).

Prompt (English; a Chinese version below): "How would someone from {country}
answer the following question:\\n\\n{question} \\nHere are the options: \\n(A)...
\\n" in the user turn and "If had to select one of the options, my answer would
be (" as the assistant prefill (the paper's wording, grammar included). The
model's distribution is the softmax over the option letters at the next token.

With ``generate_check`` the same question is also asked for a free answer
(greedy), and the first option letter in the reply is compared with the
first-token argmax: a model whose letters disagree is not answering the way
its probabilities say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from valuelens.config import AuditConfig, FirstTokenSettings
from valuelens.data.survey import Question, country_names, load_questionnaire
from valuelens.metrics import js_distance
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message, OptionRequest
from valuelens.progress import Tracker

TEMPLATES = {
    "en": {
        "user": "How would someone from {country} answer the following question:\n\n{question} \nHere are the options: \n{options}\n",
        "prefill": "If had to select one of the options, my answer would be (",
        "free": "Reply with the letter of one option first, then one short sentence.",
    },
    "zh": {
        "user": "来自{country}的人会如何回答以下问题：\n\n{question} \n以下是选项：\n{options}\n",
        "prefill": "如果必须从选项中选择一个，我的答案会是 (",
        "free": "请先回答一个选项的字母，然后用一句话简要说明。",
    },
}


def user_prompt(q: Question, country: str, lang: str) -> str:
    opts = "\n".join(f"({lab}){text}" for lab, text in zip(q.labels, q.options[lang]))
    return TEMPLATES[lang]["user"].format(country=country, question=q.text[lang], options=opts)


def parse_letter(text: str, labels: Sequence[str]) -> str | None:
    """First option letter in a reply: "(B)", "B)", "B." or a lone "B"."""
    allowed = "".join(labels)
    m = re.search(rf"(?<![A-Za-z])\(?([{allowed}])(?:\)|\.|:|,|\s|$|）)", text.strip())
    return m.group(1) if m else None


def run(model: CachedModel, audit: AuditConfig, settings: FirstTokenSettings, tracker: Tracker) -> dict[str, pd.DataFrame]:
    questions = load_questionnaire(settings.questions)[: settings.limit]
    names = {**country_names(), **{c: {"en": c, **v} for c, v in audit.country_names.items()}}
    cells: list[dict[str, Any]] = []
    for lang in audit.languages:
        for country in audit.countries:
            for q in questions:
                if lang in q.languages():
                    cells.append({"language": lang, "country": country, "question": q,
                                  "user": user_prompt(q, names[country].get(lang, country), lang)})
    reqs = [OptionRequest((Message("user", c["user"]),), c["question"].labels, TEMPLATES[c["language"]]["prefill"])
            for c in cells]
    results = model.option_distribution(reqs, tracker.track(f"{model.name}: first-token probe", len(reqs)))
    replies: list[str | None] = [None] * len(cells)
    if settings.generate_check:
        gen = [GenerateRequest((Message("user", c["user"] + "\n" + TEMPLATES[c["language"]]["free"]),),
                               GenerateSettings(temperature=0.0, max_tokens=settings.max_tokens, seed=audit.seed))
               for c in cells]
        replies = [g.texts[0] for g in model.generate(gen, tracker.track(f"{model.name}: free answers", len(gen)))]

    items, options = [], []
    for c, r, reply in zip(cells, results, replies):
        q: Question = c["question"]
        top = q.labels[int(np.argmax(r.probs))] if r.probs is not None else None
        letter = parse_letter(reply, q.labels) if reply is not None else None
        items.append({
            "language": c["language"], "country": c["country"], "question_id": q.id, "dimension": q.dimension,
            "n_options": len(q.labels), "covered_mass": r.covered_mass, "top_option": top,
            "top_prob": max(r.probs) if r.probs is not None else float("nan"),
            "reply": reply, "reply_option": letter,
            "reply_agrees": (letter == top) if (letter is not None and top is not None) else None,
        })
        for i, lab in enumerate(q.labels):
            options.append({"language": c["language"], "country": c["country"], "question_id": q.id,
                            "option": lab, "option_text": q.options[c["language"]][i],
                            "prob": r.probs[i] if r.probs is not None else float("nan")})
    items_df, options_df = pd.DataFrame(items), pd.DataFrame(options)
    return {"first_token_items": items_df, "first_token_options": options_df,
            "first_token_summary": summarise(items_df, options_df)}


def country_gap(options: pd.DataFrame) -> pd.DataFrame:
    """Per language, pair of countries and question: Jensen–Shannon distance
    between the model's two distributions (0 = the country changes nothing)."""
    rows = []
    for (lang, qid), g in options.groupby(["language", "question_id"], sort=False):
        dists = {c: d.sort_values("option")["prob"].to_numpy() for c, d in g.groupby("country", sort=False)}
        for a, b in combinations(dists, 2):
            if not (np.isnan(dists[a]).any() or np.isnan(dists[b]).any()):
                rows.append({"language": lang, "question_id": qid, "pair": f"{a} | {b}",
                             "js_distance": js_distance(dists[a], dists[b])})
    return pd.DataFrame(rows, columns=["language", "question_id", "pair", "js_distance"])


def summarise(items: pd.DataFrame, options: pd.DataFrame) -> pd.DataFrame:
    gap = country_gap(options)
    rows = []
    for lang, g in items.groupby("language", sort=False):
        valid = g["top_option"].notna()
        agrees = g["reply_agrees"].dropna()
        rows.append({
            "language": lang, "n_items": len(g),
            "mean_covered_mass": g["covered_mass"].mean(),
            "min_covered_mass": g["covered_mass"].min(),
            "first_option_share": (g.loc[valid, "top_option"] == "A").mean() if valid.any() else float("nan"),
            "mean_country_gap_jsd": gap.loc[gap["language"] == lang, "js_distance"].mean() if len(gap) else float("nan"),
            "reply_parsed_share": g["reply_option"].notna().mean() if g["reply"].notna().any() else float("nan"),
            "reply_agreement": agrees.astype(float).mean() if len(agrees) else float("nan"),
        })
    return pd.DataFrame(rows)
