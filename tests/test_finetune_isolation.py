"""Fine-tuning in an audit never leaks into the base model's later layers or
its cache entries (issue 14.1): the base handle keeps the base weights."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd

import valuelens.api as vl
from valuelens.config import parse_audit

COUNTRIES = ["United States", "China", "Germany", "Japan", "Canada"]
QUESTIONS = [("Is it the one?", (0.8, 0.2)), ("Is it in the answer?", (0.1, 0.9)),
             ("Is an answer to it?", (0.3, 0.7)), ("Is it a yes?", (0.6, 0.4))]


def write_cao(path) -> None:
    """A small file in the Cao 2025 layout (generated here: two options per item)."""
    items = []
    for c in COUNTRIES:
        for q, (a, b) in QUESTIONS:
            items.append({"id": str(len(items) % len(QUESTIONS) + 1),
                          "instruction": f"How would someone from {c} answer the following question:\n\n",
                          "input": f"{q} \nHere are the options: \n", "options": ["(A)yes", "(B)no"],
                          "options_dist": {"A": a * 100, "B": b * 100}, "data_type": "valid"})
    path.write_text(json.dumps(items), encoding="utf-8")


def audit(tmp_path, tiny_model_dir, out: str, with_first_token: bool) -> str:
    text = f"""\
name: iso
output_dir: {tmp_path / out}
countries: [United States, China]
languages: [en]
models:
  - {{name: m, backend: "hf:{tiny_model_dir}"}}
layers:
"""
    if with_first_token:
        text += f"""\
  first_token:
    data: {{kind: cao2025, path: {tmp_path / 'cao.json'}}}
    control: false
    train:
      train: {{countries: [Germany, Japan]}}
      val: {{countries: [Canada]}}
      settings: {{epochs: 2, lr: 5.0e-2, batch_size: 4}}
"""
    return text + "  dilemmas: {n_resamples: 200}\n"


def test_finetuning_does_not_leak_into_later_layers_or_the_cache(tmp_path, tiny_model_dir):
    write_cao(tmp_path / "cao.json")
    both = vl.run_full(parse_audit(audit(tmp_path, tiny_model_dir, "both", True), "a.yaml"))
    assert {"ZS", "FT"} <= set(both.tables["first_token_items"].condition)
    ft = both.tables["first_token_items"].set_index(["condition", "country", "question_id"])["top_prob"]
    assert (ft.loc["FT"] - ft.loc["ZS"]).abs().max() > 1e-3  # training changed the tuned model's answers
    alone = vl.run_full(parse_audit(audit(tmp_path, tiny_model_dir, "alone", False), "a.yaml"))
    dilemma_tables = [k for k in alone.tables if k.startswith("dilemma")]
    assert dilemma_tables
    for name in dilemma_tables:
        pd.testing.assert_frame_equal(both.tables[name], alone.tables[name], obj=name)
    # The store keeps the tuned model's calls under their own identity.
    with sqlite3.connect(tmp_path / "both" / "store.sqlite") as db:
        models = {row[0] for row in db.execute("SELECT DISTINCT model FROM calls")}
    assert models == {"m", "m+ft"}, models
