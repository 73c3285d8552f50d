"""Layer 3a: first-token probability alignment (Cao et al. 2025).

Zero-shot probe: "How would someone from {country} answer the following
question:\\n\\n{question} \\nHere are the options: \\n(A)...\\n" in the user turn
and "If had to select one of the options, my answer would be (" as the
assistant prefill (the paper's wording, grammar included; Chinese version
below). The model's distribution is the softmax over the option letters at
the next token, through ``option_distribution``: one forward pass, no
generation.

Conditions: ZS; ZS[ctrl] (the country in the prompt replaced by a random
other country, seeded, while the human target stays the original country's);
FT and FT[ctrl] after KL fine-tuning on a train cell of countries ×
questions. Per item: 1 − Jensen–Shannon *distance* (natural log, clipped to
[0, 1]; Cao et al.'s code drops NaN items, we keep them), KL(human ‖ model)
ε-smoothed (ε = metrics.DEFAULT_EPS, so options outside a server's top-k do
not make it infinite), and the ordinal EMD.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from valuelens.config import FirstTokenSettings, Split
from valuelens.data.sources import load_survey
from valuelens.data.survey import ALL_LABELS, Question, Survey, country_names
from valuelens.errors import ValueLensError
from valuelens.layers import LayerContext
from valuelens.metrics import DEFAULT_EPS, js_distance, kl, one_minus_jsd, ordinal_emd, position_bias
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message, OptionRequest

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
CONDITIONS = ("ZS", "ZS[ctrl]", "FT", "FT[ctrl]")


def user_prompt(q: Question, country: str, lang: str) -> str:
    opts = "\n".join(f"({lab}){text}" for lab, text in zip(q.labels, q.options[lang]))
    return TEMPLATES[lang]["user"].format(country=country, question=q.text[lang], options=opts)


def option_request(q: Question, country: str, lang: str) -> OptionRequest:
    return OptionRequest((Message("user", user_prompt(q, country, lang)),), q.labels, TEMPLATES[lang]["prefill"])


def parse_letter(text: str, labels: Sequence[str]) -> str | None:
    """First option letter in a reply: "(B)", "B)", "B." or a lone "B"."""
    allowed = "".join(labels)
    m = re.search(rf"(?<![A-Za-z])\(?([{allowed}])(?:\)|\.|:|,|\s|$|）)", text.strip())
    return m.group(1) if m else None


@dataclass(frozen=True)
class Item:
    question: Question
    country: str  # the population whose answers are the target
    language: str
    human: tuple[float, ...] | None


def control_country(seed: int, qid: str, country: str, pool: Sequence[str]) -> str:
    """A random other country, the same for every language and model run."""
    others = sorted(c for c in pool if c != country)
    h = int.from_bytes(hashlib.sha256(f"{seed}|{qid}|{country}".encode()).digest()[:8], "big")
    return others[h % len(others)]


def _in(split: Split, item: Item) -> bool:
    return (split.countries is None or item.country in split.countries) and \
           (split.questions is None or item.question.id in split.questions)


def build_items(survey: Survey, questions: list[Question], countries: Sequence[str], languages: Sequence[str]) -> list[Item]:
    """Every (question, country, language); with human data, only pairs that have it."""
    has_human = bool(survey.distributions)
    items = []
    for lang in languages:
        for country in countries:
            for q in questions:
                if lang not in q.languages():
                    continue
                d = survey.lookup(q.id, country) if has_human else None
                if has_human and d is None:
                    continue
                items.append(Item(q, country, lang, d.probs if d else None))
    return items


class FirstTokenRun:
    """Holds what the conditions share: items, names, the control pool."""

    def __init__(self, settings: FirstTokenSettings, ctx: LayerContext):
        self.s, self.ctx, self.audit = settings, ctx, ctx.audit
        d = settings.data
        self.survey = _load(d.kind, d.path, d.path_zh, d.codebook, d.metadata, d.strict)
        self.questions = list(self.survey.questions.values())[: settings.limit]
        self.names = {**country_names(), **{c: {"en": c, **v} for c, v in self.audit.country_names.items()}}
        self.splits = settings.test_splits or {"all": Split(countries=list(self.audit.countries))}
        eval_countries = sorted({c for sp in self.splits.values() for c in (sp.countries or self.survey.countries())})
        self.items = [it for it in build_items(self.survey, self.questions, eval_countries, self.audit.languages)
                      if any(_in(sp, it) for sp in self.splits.values())]
        if not self.items:
            raise ValueLensError(f"first_token: no items for countries {eval_countries} in {d.path or 'builtin'}"
                                 " (check the country names and test_splits)")
        pool = self.survey.countries() if len(self.survey.countries()) > 1 else list(self.names)
        self.pool = pool

    def prompt_country(self, it: Item, control: bool) -> str:
        return control_country(self.audit.seed, it.question.id, it.country, self.pool) if control else it.country

    def localized(self, country: str, lang: str) -> str:
        return self.names.get(country, {}).get(lang, country)

    def probe(self, model: CachedModel, condition: str) -> list[dict[str, Any]]:
        control = condition.endswith("[ctrl]")
        asked = [self.prompt_country(it, control) for it in self.items]
        reqs = [option_request(it.question, self.localized(c, it.language), it.language)
                for it, c in zip(self.items, asked)]
        res = model.option_distribution(reqs, self.ctx.tracker.track(f"{model.name}: {condition}", len(reqs)))
        rows = []
        for it, c, r in zip(self.items, asked, res):
            rows.append({"condition": condition, "item": it, "prompt_country": c, "result": r})
        return rows


def _stamp(path: str | None) -> tuple | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


_SURVEYS: dict[tuple, Survey] = {}


def _load(kind: str, path: str | None, path_zh: str | None, codebook: str | None, metadata: str | None,
          strict: bool = False) -> Survey:
    """load_survey, remembering the last survey read (the pre-run check and
    each model's run read the same files; a changed file is read again)."""
    key = (kind, strict, *((p, _stamp(p)) for p in (path, path_zh, codebook, metadata)))
    if key not in _SURVEYS:
        extra = {k: v for k, v in (("codebook", codebook), ("metadata", metadata), ("strict", strict)) if v}
        survey = load_survey(kind, path, path_zh, **extra)
        _SURVEYS.clear()
        _SURVEYS[key] = survey
    return _SURVEYS[key]


def check(settings: FirstTokenSettings, ctx: LayerContext) -> None:
    """Before the run writes anything: read the data and build the items."""
    FirstTokenRun(settings, ctx)


def _metrics(human: tuple[float, ...] | None, probs: tuple[float, ...] | None) -> dict[str, float]:
    if human is None or probs is None:
        return {"one_minus_jsd": np.nan, "kl": np.nan, "emd": np.nan}
    return {"one_minus_jsd": one_minus_jsd(human, probs, normalize=True),
            "kl": kl(human, probs, eps=DEFAULT_EPS, normalize=True),
            "emd": ordinal_emd(human, probs, normalize=True)}


def run(model: CachedModel, settings: FirstTokenSettings, ctx: LayerContext) -> dict[str, pd.DataFrame]:
    job = FirstTokenRun(settings, ctx)
    if settings.train is not None and not model.can_finetune:
        raise ValueLensError(f"model {model.name}: its backend cannot be fine-tuned; "
                             "remove layers.first_token.train or use an hf/embedded backend")
    rows = job.probe(model, "ZS")
    if settings.control:
        rows += job.probe(model, "ZS[ctrl]")
    replies = _free_answers(model, job, settings) if settings.generate_check else {}
    train_log = pd.DataFrame()
    if settings.train is not None:
        tuned, train_log = _finetune(model, job, settings, ctx)
        rows += job.probe(tuned, "FT")
        if settings.control:
            rows += job.probe(tuned, "FT[ctrl]")
    items, options = _tables(rows, replies)
    tables = {"first_token_items": items, "first_token_options": options,
              "first_token_summary": summarise(items, options),
              "first_token_table2": table2(items, job.splits)}
    if len(train_log):
        tables["first_token_train_log"] = train_log
    tables["first_token_skipped"] = skipped_items(job.survey)
    return tables


SKIPPED_COLUMNS = ["file", "item", "question_id", "country", "reason"]


def skipped_items(survey: Survey) -> pd.DataFrame:
    """The data items the loader left out (degenerate distributions), one row each."""
    return pd.DataFrame(survey.skipped, columns=SKIPPED_COLUMNS).astype({"question_id": str})


def _free_answers(model: CachedModel, job: FirstTokenRun, s: FirstTokenSettings) -> dict[tuple, str]:
    gen = [GenerateRequest((Message("user", user_prompt(it.question, job.localized(it.country, it.language), it.language)
                                    + "\n" + TEMPLATES[it.language]["free"]),),
                           GenerateSettings(temperature=0.0, max_tokens=s.max_tokens, seed=job.audit.seed))
           for it in job.items]
    out = model.generate(gen, job.ctx.tracker.track(f"{model.name}: free answers", len(gen)))
    return {(it.question.id, it.country, it.language): g.texts[0] for it, g in zip(job.items, out)}


def _finetune(model: CachedModel, job: FirstTokenRun, s: FirstTokenSettings, ctx: LayerContext):
    from valuelens.models.hf_training import TrainItem

    spec = s.train
    assert spec is not None
    cells = {}
    for name, split in (("train", spec.train), ("val", spec.val)):
        countries = split.countries or job.survey.countries()
        cells[name] = [TrainItem(option_request(it.question, job.localized(it.country, it.language), it.language), it.human)
                       for it in build_items(job.survey, job.questions, countries, job.audit.languages)
                       if it.human is not None and _in(split, it)]
        if not cells[name]:
            raise ValueLensError(f"first_token.train.{name}: no items with human distributions in this cell")
    out = ctx.out_dir / "finetune" / model.name
    tuned, log = model.finetuned(cells["train"], cells["val"], spec.settings, out, ctx.tracker)
    return tuned, pd.DataFrame(log)


def _tables(rows: list[dict[str, Any]], replies: dict[tuple, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    items, options = [], []
    for row in rows:
        it: Item = row["item"]
        r = row["result"]
        q = it.question
        top = q.labels[int(np.argmax(r.probs))] if r.probs is not None else None
        rec = {"condition": row["condition"], "language": it.language, "country": it.country,
               "prompt_country": row["prompt_country"], "question_id": q.id, "dimension": q.dimension,
               "n_options": len(q.labels), "covered_mass": r.covered_mass, "top_option": top,
               "top_prob": max(r.probs) if r.probs is not None else np.nan, **_metrics(it.human, r.probs)}
        reply = replies.get((q.id, it.country, it.language)) if row["condition"] == "ZS" else None
        if replies:
            letter = parse_letter(reply, q.labels) if reply is not None else None
            rec.update(reply=reply, reply_option=letter,
                       reply_agrees=(letter == top) if (letter is not None and top is not None) else None)
        items.append(rec)
        for i, lab in enumerate(q.labels):
            options.append({"condition": row["condition"], "language": it.language, "country": it.country,
                            "question_id": q.id, "option": lab, "option_text": q.options[it.language][i],
                            "prob": r.probs[i] if r.probs is not None else np.nan,
                            "human_prob": it.human[i] if it.human is not None else np.nan})
    return pd.DataFrame(items), pd.DataFrame(options)


def country_gap(options: pd.DataFrame) -> pd.DataFrame:
    """Per condition, language, question and pair of countries: Jensen–Shannon
    distance between the model's two distributions (0 = the country changes nothing)."""
    rows = []
    for (cond, lang, qid), g in options.groupby(["condition", "language", "question_id"], sort=False):
        dists = {c: d.sort_values("option")["prob"].to_numpy() for c, d in g.groupby("country", sort=False)}
        for a, b in combinations(dists, 2):
            if not (np.isnan(dists[a]).any() or np.isnan(dists[b]).any()):
                rows.append({"condition": cond, "language": lang, "question_id": qid, "pair": f"{a} | {b}",
                             "js_distance": js_distance(dists[a], dists[b], normalize=True)})
    return pd.DataFrame(rows, columns=["condition", "language", "question_id", "pair", "js_distance"])


def summarise(items: pd.DataFrame, options: pd.DataFrame) -> pd.DataFrame:
    """Per condition × language: means of the item columns; position_* = metrics.position_bias of the top option."""
    gap = country_gap(options)
    rows = []
    for (cond, lang), g in items.groupby(["condition", "language"], sort=False):
        gl = gap[(gap["condition"] == cond) & (gap["language"] == lang)]
        row = {"condition": cond, "language": lang, "n_items": len(g),
               "mean_covered_mass": g["covered_mass"].mean(), "min_covered_mass": g["covered_mass"].min(),
               **position_bias([ALL_LABELS.index(x) + 1 if isinstance(x, str) else None for x in g["top_option"]],
                               g["n_options"]),  # the top option's position vs uniform over each item's k
               "mean_one_minus_jsd": g["one_minus_jsd"].mean(), "mean_kl": g["kl"].mean(), "mean_emd": g["emd"].mean(),
               "mean_country_gap_jsd": gl["js_distance"].mean() if len(gl) else np.nan}
        if "reply_agrees" in g and g["reply"].notna().any():
            agrees = g["reply_agrees"].dropna()
            row["reply_parsed_share"] = g.loc[g["reply"].notna(), "reply_option"].notna().mean()
            row["reply_agreement"] = agrees.astype(float).mean() if len(agrees) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def table2(items: pd.DataFrame, splits: dict[str, Split]) -> pd.DataFrame:
    """The paper's Table 2: rows condition × language, one column per test
    cell (mean 1 − JSD over its items) and their unweighted average."""
    rows = []
    for (cond, lang), g in items.groupby(["condition", "language"], sort=False):
        row: dict[str, Any] = {"condition": cond, "language": lang}
        for name, sp in splits.items():
            mask = np.ones(len(g), bool)
            if sp.countries is not None:
                mask &= g["country"].isin(sp.countries).to_numpy()
            if sp.questions is not None:
                mask &= g["question_id"].isin(sp.questions).to_numpy()
            row[name] = g.loc[mask, "one_minus_jsd"].mean() if mask.any() else np.nan
        row["average"] = float(np.nanmean([row[n] for n in splits])) if any(pd.notna(row[n]) for n in splits) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
