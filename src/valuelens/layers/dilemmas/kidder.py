"""Right-vs-right dilemmas (Kidder's pairs): forms, consequences, steering.

Conditions, each one row per prompt in ``dilemma_responses``:

* ``form``: every dilemma in every configured form.
* ``consequence``: the Direct form again, with a negative consequence
  attached to the action chosen in the Direct form and a positive one to the
  other; dilemmas whose Direct answer was invalid are not re-asked (counted
  in ``n_invalid_base``).
* ``guideline`` / ``examples``: the Direct form steered towards each of the
  two values in turn, by an explicit guideline ("prefer X over Y") or by
  ``steering_examples`` other dilemmas of the same pair answered for that
  value (not asked where the pair has no other dilemma). Example answers alternate A, B, A, … (each example is shown in the
  order that puts the preferred action under that letter), so the examples
  teach the value, not a letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from valuelens.data.dilemmas import Dilemma
from valuelens.layers.dilemmas.ask import Asker, Outcome
from valuelens.layers.dilemmas.measures import (
    agreement_flags,
    flip_flags,
    follow_flags,
    label_to_action,
    shares,
    summary,
)
from valuelens.layers.dilemmas.prompts import FIRST, dilemma_text, form_prompt


@dataclass(frozen=True)
class Asked:
    condition: str  # form | consequence | guideline | examples
    form: str
    d: Dilemma
    lang: str
    requested: str | None = None  # steering: the value asked for
    against: int | None = None  # consequence: the action given the negative consequence


def _examples(d: Dilemma, pool: Sequence[Dilemma], value: str, lang: str, k: int, seed: int) -> tuple[tuple[str, str], ...]:
    others = [e for e in pool if e.id != d.id and value in e.values]
    if not others:
        return ()
    i = next((n for n, e in enumerate(pool) if e.id == d.id), 0)
    start = (i + seed) % len(others)  # a seeded rotation through the other dilemmas
    out = []
    for j, e in enumerate(others[(start + j) % len(others)] for j in range(min(k, len(others)))):
        pref = e.values.index(value)
        label = "A" if j % 2 == 0 else "B"
        form = "direct" if (pref == 0) == (label == "A") else "direct_reverse"
        out.append((dilemma_text(e, lang, form), label))
    return tuple(out)


def _prompt(a: Asked, pools: dict[tuple[str, str], list[Dilemma]], k: int, seed: int):
    d = a.d
    if a.condition == "consequence":
        c = a.against
        assert c is not None and d.negative is not None and d.positive is not None
        outcomes = (d.negative[0], d.positive[1]) if c == 0 else (d.positive[0], d.negative[1])
        return form_prompt(d, a.lang, a.form, outcomes=outcomes)
    if a.condition == "guideline":
        assert a.requested is not None  # set for every steering condition
        other = d.values[1 - d.values.index(a.requested)]
        return form_prompt(d, a.lang, a.form, guideline=(a.requested, other))
    if a.condition == "examples":
        assert a.requested is not None
        return form_prompt(d, a.lang, a.form,
                           examples=_examples(d, pools[(d.pair, a.lang)], a.requested, a.lang, k, seed))
    return form_prompt(d, a.lang, a.form)


def row_id(a: Asked) -> str:
    """``dilemma_responses.row_id``: the row's keys, joined (the samples table's join key)."""
    return f"{a.condition}|{a.form}|{a.lang}|{a.d.id}|{a.requested or ''}"


def _row(a: Asked, o: Outcome) -> dict:
    first = FIRST[a.form]
    label = o.label
    action = label_to_action(label, first)
    p = {0: o.p_a if first == 0 else o.p_b, 1: o.p_b if first == 0 else o.p_a}
    return {"row_id": row_id(a), "condition": a.condition, "form": a.form, "language": a.lang, "dilemma_id": a.d.id,
            "pair": a.d.pair,
            "value_1": a.d.values[0], "value_2": a.d.values[1], "requested_value": a.requested,
            "consequence_against": None if a.against is None else a.against + 1,
            "label_A_action": first + 1, "p_A": o.p_a, "p_B": o.p_b, "p_invalid": o.p_invalid,
            "covered_mass": o.covered_mass, "p_action_1": p[0], "p_action_2": p[1], "chosen_label": label,
            "chosen_action": None if action is None else action + 1,
            "chosen_value": None if action is None else a.d.values[action], "valid": action is not None,
            "reply": o.reply, "failure": o.failure}


def run(asker: Asker, dilemmas: Sequence[Dilemma], languages: Sequence[str]) -> dict[str, pd.DataFrame]:
    s, seed = asker.s, asker.seed
    items = [(d, lang) for lang in languages for d in dilemmas if lang in d.languages()]
    pools: dict[tuple[str, str], list[Dilemma]] = {}
    for d, lang in items:
        pools.setdefault((d.pair, lang), []).append(d)

    def ask(asked: list[Asked], desc: str) -> list[dict]:
        outs = asker.ab([_prompt(a, pools, s.steering_examples, seed) for a in asked], desc,
                        [("dilemma_responses", row_id(a), "") for a in asked])
        return [_row(a, o) for a, o in zip(asked, outs)]

    rows = ask([Asked("form", f, d, lang) for f in s.forms for d, lang in items], "forms")
    if s.consequences:
        base = {(r["dilemma_id"], r["language"]): r["chosen_action"] for r in rows if r["form"] == "direct"}
        re_ask = [Asked("consequence", "direct", d, lang, against=base[(d.id, lang)] - 1) for d, lang in items
                  if d.has_consequences(lang) and base.get((d.id, lang)) is not None]
        rows += ask(re_ask, "consequences")
    if s.steering:  # "examples" only where the pair has another dilemma to show
        rows += ask([Asked(method, "direct", d, lang, requested=v) for method in ("guideline", "examples")
                     for d, lang in items for v in d.values
                     if method == "guideline" or any(e.id != d.id for e in pools[(d.pair, lang)])], "steering")
    resp = pd.DataFrame(rows)
    return {"dilemma_responses": resp, **tables(resp, s.forms, seed, s.n_resamples)}


def _v(x) -> str | None:
    return x if isinstance(x, str) else None


def _groups(df: pd.DataFrame, keys: list[str]):
    """Each group of ``keys`` (with pair), then the same with pair = "all"."""
    for k, g in df.groupby(keys + ["pair"], sort=False):
        yield dict(zip(keys + ["pair"], k)), g
    for k, g in df.groupby(keys, sort=False):
        yield {**dict(zip(keys, k if isinstance(k, tuple) else (k,))), "pair": "all"}, g


def balanced_preferences(base: pd.DataFrame, seed: int, n_resamples: int = 1000) -> list[dict]:
    """Form ``order_balanced``: per dilemma asked in both Direct and Direct-Reverse, each value's share is
    the mean of its two 0/1 indicators (0, ½ or 1), so a pure preference for one label gives ½ / ½; the
    estimate is their mean over dilemmas (bootstrap over dilemmas). ``direct_share`` and
    ``direct_reverse_share``: the same dilemmas' share in each order alone."""
    out = []
    both = base[base["form"].isin(["direct", "direct_reverse"])]
    for (lang, pair), g in both.groupby(["language", "pair"], sort=False):
        by_form = {f: dict(zip(h["dilemma_id"], (_v(x) for x in h["chosen_value"]))) for f, h in g.groupby("form")}
        if set(by_form) != {"direct", "direct_reverse"}:
            continue
        ids = [i for i in dict.fromkeys(g["dilemma_id"]) if i in by_form["direct"] and i in by_form["direct_reverse"]]
        vals = (g["value_1"].iloc[0], g["value_2"].iloc[0])
        d = shares([by_form["direct"][i] for i in ids], vals)
        r = shares([by_form["direct_reverse"][i] for i in ids], vals)
        for v in d:
            out.append({"language": lang, "form": "order_balanced", "pair": pair, "value": v,
                        **summary((d[v] + r[v]) / 2, seed, n_resamples),
                        "direct_share": float(d[v].mean()) if len(ids) else float("nan"),
                        "direct_reverse_share": float(r[v].mean()) if len(ids) else float("nan")})
    return out


def tables(resp: pd.DataFrame, forms: Sequence[str], seed: int, n_resamples: int = 1000) -> dict[str, pd.DataFrame]:
    """Summary tables from the per-response rows; every estimate with a
    bootstrap interval over dilemmas (or prompts, for steering)."""
    ci = lambda v: summary(v, seed, n_resamples)  # noqa: E731
    base = resp[resp["condition"] == "form"] if len(resp) else resp
    pref = []
    for (lang, form, pair), g in base.groupby(["language", "form", "pair"], sort=False):
        vals = (g["value_1"].iloc[0], g["value_2"].iloc[0])
        for v, flags in shares([_v(x) for x in g["chosen_value"]], vals).items():
            pref.append({"language": lang, "form": form, "pair": pair, "value": v, **ci(flags)})
    pref += balanced_preferences(base, seed, n_resamples)
    agree = []
    for key, g in _groups(base, ["language"]):
        chosen = {(i, f): _v(x) for i, f, x in zip(g["dilemma_id"], g["form"], g["chosen_value"])}
        ids = list(dict.fromkeys(g["dilemma_id"]))
        comps = {"direct_vs_reverse": ["direct", "direct_reverse"]} if {"direct", "direct_reverse"} <= set(forms) else {}
        if len(forms) > 1:
            comps["all_forms"] = list(forms)
        for name, fs in comps.items():
            by_form = {f: [chosen.get((i, f)) for i in ids] for f in fs}
            agree.append({**key, "comparison": name, "forms": "+".join(fs), **ci(agreement_flags(by_form))})
    flips = []
    cons = resp[resp["condition"] == "consequence"]
    for key, g in _groups(base[base["form"] == "direct"], ["language"]):
        c = cons[(cons["language"] == key["language"]) & cons["dilemma_id"].isin(g["dilemma_id"])]
        reask = {i: (None if pd.isna(a) else int(a)) for i, a in zip(c["dilemma_id"], c["chosen_action"])}
        b, r = [], []  # base and re-asked actions; an invalid base was not re-asked
        for i, a in zip(g["dilemma_id"], g["chosen_action"]):
            if pd.isna(a) or i in reask:
                b.append(None if pd.isna(a) else int(a))
                r.append(reask.get(i))
        if not len(c) and all(x is not None for x in b):
            continue  # no consequence texts in this group
        flips.append({**key, **ci(flip_flags(b, r)), "n_invalid_base": sum(x is None for x in b),
                      "n_invalid_reask": int((~c["valid"].astype(bool)).sum())})
    steer = []
    st = resp[resp["condition"].isin(["guideline", "examples"])]
    for key, g in _groups(st, ["language", "condition"]):
        for req, h in [("both", g), *g.groupby("requested_value", sort=False)]:
            flags = follow_flags([_v(x) for x in h["chosen_value"]], list(h["requested_value"]))
            steer.append({"language": key["language"], "method": key["condition"], "pair": key["pair"],
                          "requested_value": req, **ci(flags)})
    ci_cols = ["estimate", "ci_low", "ci_high", "n"]
    return {
        "dilemma_preferences": pd.DataFrame(pref, columns=["language", "form", "pair", "value", *ci_cols,
                                                           "direct_share", "direct_reverse_share"]),
        "dilemma_agreement": pd.DataFrame(agree, columns=["language", "pair", "comparison", "forms", *ci_cols]),
        "dilemma_consequence_flips": pd.DataFrame(flips, columns=["language", "pair", *ci_cols, "n_invalid_base",
                                                                   "n_invalid_reask"]),
        "dilemma_steering": pd.DataFrame(steer, columns=["language", "method", "pair", "requested_value", *ci_cols]),
    }
