"""Items the backend could not answer (issue 16: a prompt too long for the
server) are visible in every layer's tables as a ``failure`` column (the
reason; empty when answered), not as an answer: first-token items get no
covered mass, and the first-token summary counts them (n_failed,
failed_share, failed_flag) and leaves them out of its means.

One audit of all four layers against the fake OpenAI server, which rejects
a fixed, hash-chosen quarter of the prompts with vLLM's "maximum context
length" 400 on every request."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from fake_openai_server import FakeOpenAIServer, prompt_of
from test_reliability_support import record, vl

FAST = {"backoff_base": 0.001, "backoff_max": 0.05, "timeout": 5.0, "max_retries": 2}


def rejected(prompt: str) -> bool:
    """The prompts the server refuses as too long: a fixed quarter, the same on every run."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16) % 4 == 0


def _audit(path, url, out) -> None:
    opts = ", ".join(f"{k}: {json.dumps(v)}" for k, v in FAST.items())
    path.write_text(f"""\
name: fails
seed: 0
output_dir: {out}
countries: [United States, China]
languages: [en, zh]
models:
  - name: api
    backend: "openai:fake-model@{url}"
    options: {{{opts}}}
layers:
  first_token: {{data: {{kind: synthetic}}, control: true, generate_check: true, max_tokens: 8}}
  diversity:
    data: {{kind: synthetic}}
    questions: [D01, D02]
    participants: 1
    passes: 1
    max_tokens: 16
    retries: 2
    insensitivity: {{cv_pairs: []}}
  dilemmas: {{mode: probs, limit: 2, n_resamples: 100}}
  mark:
    data: {{kind: synthetic}}
    questions: [D01]
    respondents_per_country: 1
    max_retries: 2
    max_tokens: 64
    baseline_max_tokens: 8
    bootstrap: 200
""", encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fails")
    out = d / "out"
    with FakeOpenAIServer(too_long=rejected) as srv:
        _audit(d / "a.yaml", srv.url, out)
        r = vl("run", str(d / "a.yaml"), "-q", cwd=d, timeout=600)
        requests = list(srv.requests)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    tables = {p.stem: pd.read_parquet(p) for p in (out / "results").glob("*.parquet")}
    counts = {name: int(_failed(tables[name]).sum()) if name in tables and "failure" in tables[name] else 0
              for name in ("first_token_items", "dilemma_responses", "dilemma_chain_responses", "def_answers",
                           "mark_traces")}
    summary = tables.get("first_token_summary")
    record("failures", failed_first_token=counts["first_token_items"],
           failed_dilemmas=counts["dilemma_responses"] + counts["dilemma_chain_responses"],
           failed_def=counts["def_answers"], failed_mark=counts["mark_traces"],
           summary_n_failed=int(summary["n_failed"].sum()) if summary is not None and "n_failed" in summary else 0,
           rejected_requests=sum(rejected(prompt_of(q["body"])) for q in requests))
    return tables, requests


def _failed(df: pd.DataFrame, col: str = "failure") -> pd.Series:
    return df[col].fillna("").astype(str) != ""


def test_first_token_items_name_the_failure_and_have_no_covered_mass(run):
    tables, _ = run
    items = tables["first_token_items"]
    failed = _failed(items)
    assert 0 < failed.sum() < len(items)
    assert items.loc[failed, "failure"].str.contains("maximum context length").all()
    assert items.loc[failed, "covered_mass"].isna().all() and items.loc[failed, "top_option"].isna().all()
    assert items.loc[~failed, "covered_mass"].gt(0).all()
    # free answers (generate_check) that failed are not replies: reply empty, reason kept
    zs = items[items.condition == "ZS"]
    rf = _failed(zs, "reply_failure")
    assert rf.any() and zs.loc[rf, "reply"].isna().all() and zs.loc[rf, "reply_option"].isna().all()


def test_first_token_summary_counts_failed_items_and_excludes_them_from_means(run):
    tables, _ = run
    items, summary = tables["first_token_items"], tables["first_token_summary"]
    flagged = 0
    for (cond, lang), g in items.groupby(["condition", "language"]):
        s = summary[(summary.condition == cond) & (summary.language == lang)].iloc[0]
        failed = _failed(g)
        ok = g[~failed]
        assert s["n_items"] == len(g) and s["n_failed"] == failed.sum()
        assert s["failed_share"] == pytest.approx(failed.sum() / len(g))
        assert bool(s["failed_flag"]) == bool(failed.any())
        flagged += bool(s["failed_flag"])
        # the mean over the answered items, computed here from the raw column
        assert s["mean_covered_mass"] == pytest.approx(float(np.mean(ok["covered_mass"].to_numpy())))
        assert s["min_covered_mass"] == pytest.approx(float(np.min(ok["covered_mass"].to_numpy())))
        if failed.any():  # what the old summary said: failed items averaged in as covered mass 0
            with_zeros = float(np.mean(np.where(failed, 0.0, g["covered_mass"].fillna(0.0))))
            assert s["mean_covered_mass"] > with_zeros
        ok_jsd = ok["one_minus_jsd"].dropna().to_numpy()
        if len(ok_jsd):
            assert s["mean_one_minus_jsd"] == pytest.approx(float(ok_jsd.mean()))
    assert flagged >= 1


def test_dilemma_rows_name_the_failure(run):
    tables, _ = run
    seen = 0
    for name in ("dilemma_responses", "dilemma_chain_responses", "dilemma_moralchoice_responses"):
        if name not in tables:
            continue
        t = tables[name]
        assert "failure" in t.columns, name
        failed = _failed(t)
        seen += int(failed.sum())
        assert t.loc[failed, "failure"].str.contains("maximum context length").all()
        assert t.loc[failed, "covered_mass"].isna().all()
        if "p_invalid" in t:  # a failed request is counted as an invalid answer, and says why
            assert (t.loc[failed, "p_invalid"] == 1).all()
            assert (t.loc[~failed, "p_invalid"] == 0).all()
    assert seen > 0


def test_def_answers_name_the_failure_and_are_not_retried(run):
    tables, _ = run
    a = tables["def_answers"]
    failed = _failed(a)
    assert failed.any() and not a.loc[failed, "valid"].any()
    assert a.loc[failed, "failure"].str.contains("maximum context length").all()
    # a failed prompt is not retried (the same prompt would fail again): it is the session's final attempt
    assert a.loc[failed, "final"].all()


def test_mark_traces_name_the_failure_without_repairs(run):
    tables, requests = run
    t = tables["mark_traces"]
    assert "failure" in t.columns
    failed = _failed(t)
    assert failed.any() and not t.loc[failed, "valid"].any()
    assert t.loc[failed, "error"].str.contains("could not answer").all()
    # no repair turn was sent after a failure: a repair repeats the failed reply as "(empty)"
    bodies = [json.dumps(q["body"], ensure_ascii=False) for q in requests]
    assert not any('"content": "(empty)"' in b for b in bodies)
