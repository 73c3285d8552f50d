"""Order-balanced value-pair preferences and the layer's position-bias table, on scripted models.

A model with a pure label preference (always B) must come out 50/50 on every
value pair once both action orders are averaged; a model with a pure value
preference (always the first value of the pair: Truth, Individual, Short-term,
Justice) keeps 100 % under both orders. Tolerance for "50/50": 0.01 (the
order-balanced share is exact here, as every dilemma is asked in both orders).
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from test_dilemmas_layer import DEMO, FIRST2, P_A, P_B, row, run

from valuelens.metrics import POSITION_TV_THRESHOLD
from valuelens.report import build_report

TOL = 0.01
PAIRS = list(dict.fromkeys(d.pair for d in DEMO))


def _value1_rules(ds):
    """Pick the action serving value 1 in every form and language."""
    rules = []
    for d in ds:
        for lang in ("en", "zh"):
            a1, a2 = d.actions[0][lang], d.actions[1][lang]
            cmp = 'Do you prefer "{}"' if lang == "en" else "更愿意“{}”"
            rules += [{"contains": f"A. {a1}", "probs": P_A}, {"contains": f"B. {a1}", "probs": P_B},
                      {"contains": cmp.format(a1.rstrip(".。")), "probs": P_A},
                      {"contains": cmp.format(a2.rstrip(".。")), "probs": P_B}]
    return rules


def _balanced(pref, lang="en"):
    return pref[(pref["form"] == "order_balanced") & (pref["language"] == lang)]


@pytest.mark.parametrize("mode", ["probs", "generate"])
def test_always_b_is_fifty_fifty_once_orders_are_balanced(tmp_path, mode):
    script = {"rules": [{"contains": "", "probs": P_B}]} if mode == "probs" else {"default_text": "B"}
    extra = "" if mode == "probs" else ", mode: generate"
    res = run(tmp_path, {"m": script}, f"limit: 2, chains: none, consequences: false, steering: false{extra}",
              languages="[en, zh]")
    t = res.tables
    pref = t["dilemma_preferences"]
    for lang in ("en", "zh"):
        bal = _balanced(pref, lang)
        assert set(bal["pair"]) == set(PAIRS)
        for pair in PAIRS:
            v1, v2 = pair.split(" vs ")
            for v in (v1, v2):
                r = row(bal, pair=pair, value=v)
                assert abs(r["estimate"] - 0.5) <= TOL and r["n"] == 2
            # per-order shares kept: B is action 2 (value 2) in Direct, action 1 (value 1) in Direct-Reverse
            assert row(bal, pair=pair, value=v2)[["direct_share", "direct_reverse_share"]].tolist() == [1.0, 0.0]
            assert row(bal, pair=pair, value=v1)[["direct_share", "direct_reverse_share"]].tolist() == [0.0, 1.0]
            assert row(bal, pair=pair, value="(no choice)")["estimate"] == 0.0
        # the single-order rows still show the artefact
        assert row(pref, language=lang, form="direct", pair="Truth vs Loyalty", value="Loyalty")["estimate"] == 1.0
    pos = t["dilemma_position_bias"]
    for lang in ("en", "zh"):
        r = row(pos, part="dilemmas", language=lang, forms="all")
        # 8 dilemmas x 4 forms, all B: TV = |0 - 1/2|
        assert r[["position_tv", "top_position", "top_position_share", "position_n"]].tolist() == [0.5, 2, 1.0, 32]
        assert bool(r["position_dominated"]) and r["position_tv"] > POSITION_TV_THRESHOLD
        assert r["position_p"] < 1e-3  # 32 answers all at B: (1 + 0) / (1 + 10000) draws at least as far
    assert list(pos.columns[-2:]) == ["position_p", "position_dominated"]
    # the report says so at the top and marks the preference figure
    html = build_report(tmp_path / "out").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<script\b.*?</script>", " ", html,
                                                                         flags=re.S))))
    top = text[text.index("Summary"):text.index("Layers")]
    assert "m — dilemmas (all prompt forms), language zh: position TV 0.500, position 2 chosen in 100% of 32" in top
    assert re.search(r'<h3>Value-pair preferences \(order-balanced\)</h3></figcaption>\s*<p class="banner warn" '
                     r'role="note">Position-dominated \(m\): not a value finding', html)
    assert re.search(r"m language en dilemma position bias \(TV\) 0\.500 > 0\.3 and position_p < 0\.05", text)


def test_value_chooser_keeps_its_value_under_both_orders(tmp_path):
    t = run(tmp_path, {"m": {"rules": _value1_rules(FIRST2)}},
            "limit: 2, chains: none, consequences: false, steering: false", languages="[en, zh]").tables
    pref = t["dilemma_preferences"]
    for lang in ("en", "zh"):
        bal = _balanced(pref, lang)
        truth = row(bal, pair="Truth vs Loyalty", value="Truth")
        assert truth[["estimate", "direct_share", "direct_reverse_share", "n"]].tolist() == [1.0, 1.0, 1.0, 2]
        assert row(bal, pair="Truth vs Loyalty", value="Loyalty")["estimate"] == 0.0
        for pair in PAIRS:
            assert row(bal, pair=pair, value=pair.split(" vs ")[0])["estimate"] == 1.0
    pos = t["dilemma_position_bias"]
    # Direct alone: always A (value 1 is listed first) -- looks like position bias; both orders: none
    assert row(pos, part="dilemmas", language="en", forms="direct")["position_tv"] == 0.5
    allf = row(pos, part="dilemmas", language="en", forms="all")
    assert allf["position_tv"] == 0.0 and not bool(allf["position_dominated"])


def test_position_rows_for_invalid_answers_and_single_form(tmp_path):
    """Only Direct asked, every answer unparsable: no valid position, no order-balanced rows."""
    t = run(tmp_path, {"m": {"default_text": "?"}},
            "limit: 1, chains: none, consequences: false, steering: false, forms: [direct], mode: generate").tables
    assert not (t["dilemma_preferences"]["form"] == "order_balanced").any()
    r = row(t["dilemma_position_bias"], part="dilemmas", language="en", forms="all")
    assert r["position_n"] == 0 and r["position_dominated"] is None


def test_chain_and_moralchoice_position_rows(tmp_path, shared_data):
    script = {"rules": [{"contains": "Respond solely with A or B", "probs": [0.75, 0.25]},
                        {"contains": "Respond solely with yes or no", "probs": [0.4, 0.6]},
                        {"contains": "", "probs": P_A}],
              "default_text": "I cannot answer this question"}
    layer = (f"corpus: none, limit: 2, moralchoice: {{path: {shared_data / 'moralchoice'}, sample: 5, "
             "ambiguity: low}")
    t = run(tmp_path, {"m": script}, layer).tables
    pos = t["dilemma_position_bias"]
    ch = row(pos, part="chains", language="en", forms="all")
    assert ch[["position_tv", "top_position", "top_position_share"]].tolist() == [0.5, 1, 1.0]
    assert row(pos, part="chains", language="en", forms="reversed")["position_tv"] == 0.5
    # MoralChoice: ab forms always the option shown first, compare forms always "no" (the second);
    # repeat forms refuse (left out): 10 first + 10 second of 20
    mc = row(pos, part="moralchoice", forms="all")
    assert mc[["position_tv", "position_n"]].tolist() == [0.0, 20]
    assert row(pos, part="moralchoice", forms="ab_reverse")[["position_tv", "top_position"]].tolist() == [0.5, 1]
    assert row(pos, part="moralchoice", forms="compare")[["top_position", "position_n"]].tolist() == [2, 5]
    assert row(pos, part="moralchoice", forms="repeat")["position_n"] == 0


def test_tiny_model_order_balanced_shares_and_position_rows(tmp_path, tiny_model_dir):
    """A real (random) model through the hf backend: every order-balanced share is the mean of its two
    per-order shares, the per-order shares are the Direct / Direct-Reverse rows, and the position rows
    agree with the chosen labels."""
    import valuelens.api as vl
    from valuelens.config import parse_audit
    from valuelens.report import build_report

    audit = parse_audit(f"""\
output_dir: {tmp_path / 'out'}
seed: 3
languages: [en, zh]
models: [{{name: tiny, backend: "hf:{tiny_model_dir}"}}]
layers:
  dilemmas: {{limit: 2, chains: none, consequences: false, steering: false, n_resamples: 200}}
""", "a.yaml")
    t = vl.run_full(audit).tables
    pref, resp = t["dilemma_preferences"], t["dilemma_responses"]
    bal = pref[pref["form"] == "order_balanced"]
    assert len(bal) == 2 * 4 * 3  # languages x pairs x (2 values + no choice)
    assert bal["estimate"].to_numpy() == pytest.approx(((bal["direct_share"] + bal["direct_reverse_share"]) / 2).to_numpy())
    for r in bal.itertuples():
        for form, col in (("direct", "direct_share"), ("direct_reverse", "direct_reverse_share")):
            assert getattr(r, col) == pytest.approx(row(pref, language=r.language, form=form, pair=r.pair,
                                                        value=r.value)["estimate"])
    pos = t["dilemma_position_bias"]
    for lang in ("en", "zh"):
        labels = resp.loc[resp["language"] == lang, "chosen_label"]
        a, n = int((labels == "A").sum()), int(labels.isin(["A", "B"]).sum())
        r = row(pos, part="dilemmas", language=lang, forms="all")
        assert r["position_n"] == n and r["position_tv"] == pytest.approx(abs(a / n - 0.5))
    html = build_report(tmp_path / "out").read_text(encoding="utf-8")
    assert 'data-figure="position-dilemmas"' in html and "Value-pair preferences (order-balanced)" in html
