"""DEF's majority-group rule as an option (majority_rule: marginal): sex and
age group found separately, against hand-worked microdata shares."""

from __future__ import annotations

from valuelens.data.survey import HumanDistribution
from valuelens.layers.def_layer import bias
from valuelens.layers.def_layer.settings import DEFSettings


def hd(group: str, probs) -> HumanDistribution:
    return HumanDistribution("Q1", "China", tuple(probs), group)


# Shares of option 0 / option 1 in each cell (hand-made so the two rules disagree):
#   cells: female/<=29 has the highest option-0 share (0.9), but over all ages
#   men choose option 0 more (male 0.7 vs female 0.5) and over both sexes the
#   50+ group does (0.75 vs 0.7 for <=29).
CELLS = {"sex=female;age=<=29": (0.9, 0.1), "sex=female;age=50+": (0.1, 0.9),
         "sex=male;age=<=29": (0.5, 0.5), "sex=male;age=50+": (0.88, 0.12)}
BY_SEX = [hd("sex=female", (0.5, 0.5)), hd("sex=male", (0.7, 0.3))]
BY_AGE = [hd("age=<=29", (0.7, 0.3)), hd("age=50+", (0.75, 0.25))]
WHOLE = [hd("", (0.6, 0.4))]


def test_marginal_rule_picks_sex_and_age_separately():
    g = bias.marginal_groups(BY_SEX, BY_AGE, WHOLE, {"Q1": "Q1"}).set_index("option_index")
    assert (g.loc[0, "sex"], g.loc[0, "age_group"], g.loc[0, "group"], g.loc[0, "tie"]) == ("male", "50+", "male/50+", False)
    assert g.loc[0, "majority"] and not g.loc[1, "majority"]
    # option 1: female 0.5 vs male 0.3; <=29 0.3 vs 50+ 0.25
    assert (g.loc[1, "sex"], g.loc[1, "age_group"]) == ("female", "<=29")
    cells = bias.human_groups([hd(k, v) for k, v in CELLS.items()], WHOLE, {"Q1": "Q1"}).set_index("option_index")
    assert cells.loc[0, "group"] == "female/<=29"  # the default rule: the single best cell


def test_marginal_rule_keeps_ties_explicit():
    tied = [hd("sex=female", (0.6, 0.4)), hd("sex=male", (0.6, 0.4))]
    g = bias.marginal_groups(tied, BY_AGE, WHOLE, {"Q1": "Q1"}).set_index("option_index")
    assert (g.loc[0, "sex"], g.loc[0, "group"], g.loc[0, "tie"]) == ("tie", "female|male/50+", True)


def test_setting_defaults_to_cells():
    assert DEFSettings().majority_rule == "cells"
    assert DEFSettings(majority_rule="marginal").majority_rule == "marginal"


def test_audit_setting_reaches_the_bias_tables(tmp_path, tmp_path_factory):
    """Through a whole audit: with majority_rule: marginal the groups are
    recomputed from sex-only and age-only shares of the same microdata."""
    import numpy as np

    import valuelens.api as vl
    from valuelens.config import parse_audit
    from valuelens.data.wvs import distributions, load_codebook, load_microdata
    from test_def_layer import QUESTIONS, _audit, generate, write_codebook, write_csv

    d = tmp_path_factory.mktemp("wvs")
    cb, meta = write_codebook(d)
    book = load_codebook(cb, meta)
    df, _ = generate(book, QUESTIONS, [840, 156], 2000, seed=5, concentration=0.5)
    syn = {"csv": write_csv(df, d / "wvs.csv"), "codebook": cb, "meta": meta}
    text = _audit(tmp_path, syn, participants=1, passes=1).replace("    retries: 2\n", "    retries: 0\n    majority_rule: marginal\n")
    groups = vl.run_full(parse_audit(text, "a.yaml")).tables["def_bias_groups"]
    resp = load_microdata(syn["csv"], book)
    by_sex = {(x.country, x.question_id, x.group): x.probs for x in distributions(resp, book, ("country", "sex"))}
    checked = 0
    for _, r in groups[~groups["tie"]].iterrows():
        shares = {s: by_sex[(r["country"], r["question_id"], f"sex={s}")][r["option_index"]] for s in ("male", "female")}
        assert r["sex"] == max(shares, key=shares.get) and np.isclose(r["group_share"], shares[r["sex"]])
        checked += 1
    assert checked >= 20
