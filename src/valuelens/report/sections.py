"""The report's non-layer sections: summary, comparisons, run facts, catalogue."""

from __future__ import annotations

import json
from typing import Any

from . import position as pos
from .blocks import Cell, Section
from .headline import Headline, bias_profiles, flag_rules, flags
from .table1 import NOT_RUN, ranking_tables
from .load import Layer, ReportData

SYNTHETIC = "synthetic — not human data"  # valuelens.data.synthetic.LABEL (the report reads tables only)


def synthetic_layers(data: ReportData) -> list[Layer]:
    """Layers whose audit data (run.json) is ``kind: synthetic``: generated demo respondents."""
    def uses(layer: Layer) -> bool:
        for run in data.runs:
            conf = (run.manifest.get("audit") or {}).get("layers") or {}
            for k in layer.config_keys:
                v = conf.get(k)
                d = v.get("data") if isinstance(v, dict) else None
                if isinstance(d, dict) and d.get("kind") == "synthetic":
                    return True
        return False
    return [layer for layer in data.layers if uses(layer)]


def synthetic_note(sec: Section, data: ReportData, layer: Layer) -> None:
    """A synthetic-data layer: a warning at its top; every figure and table title says so."""
    if layer.key not in {x.key for x in synthetic_layers(data)}:
        return
    for b in sec.blocks:
        if b["kind"] in ("plot", "table"):
            b["title"] = f"{b['title']} [{SYNTHETIC}]" if b.get("title") else f"[{SYNTHETIC}]"
    sec.blocks.insert(0, {"kind": "text", "cls": "warn", "text": (
        f"Reference data: {SYNTHETIC}. The “human” distributions, respondents and personas of this layer are "
        "valuelens' generated demo respondents (a known answer process, valuelens.data.synthetic); distances "
        "to them test the pipeline, not a model's fit to any real population.")})


def summary(data: ReportData, h: Headline) -> Section:
    sec = Section("summary", "Summary")
    countries, languages = data.countries(), data.languages()
    sec.text(f"Cultures: {', '.join(countries) or 'none recorded'}; prompt languages: {', '.join(languages) or 'none'}; "
             f"models: {len(h.models)}.")
    position_summary(sec, data)
    status = []
    for layer in data.layers:
        st, reason = data.layer_status(layer)
        status.append({"text": f"{layer.title}: {'included' if st == 'ok' else st}", "flag": st != "ok",
                       "detail": reason})
    sec.items(status, "Layers")
    layer_matrix(sec, data, h.models)
    for text in failed_items(data):
        sec.text(text, "warn")
    ranking_tables(sec, h, countries, data)
    raised = flags(data, h)
    profiles = bias_profiles(h, raised)
    if not data.is_uniform():  # the layers a model was not given: said in words, never a value
        plan = data.model_layers()
        for p in profiles:
            missing = [x.title for x in data.layers if x.key in set().union(*plan.values())
                       and data.cell(p["model"], x) == NOT_RUN]
            if missing:
                p["parts"].append({"text": f"not run: {', '.join(missing)}", "flag": False})
    if profiles:
        sec.blocks.append({"kind": "profiles", "title": "Bias profile per model", "profiles": profiles})
    rules = flag_rules(h)
    if rules:
        sec.table(["metric", "flag when", "meaning", "source column"],
                  [[r["metric"], r["rule"], r["meaning"], r["source"]] for r in rules], "Human oversight: rules",
                  "A value beyond the threshold means a person should look at the model's answers before relying "
                  "on it for this culture.")
        if raised:
            sec.table(["model", "where", "metric", "value", "rule"],
                      [[f["model"], f["where"], f["metric"], Cell(f["value"], kind="flag"), f["rule"]]
                       for f in raised], f"Human oversight: {len(raised)} flag{'s' * (len(raised) != 1)} raised",
                      "What each flag means: see the rules above.")
        else:
            sec.text("Human oversight: no flag raised by the rules above.", "ok")
    return sec


def layer_matrix(sec: Section, data: ReportData, models: list[str]) -> None:
    """Which model ran which layer, when the audit gave models different layers (per-model ``layers:`` or
    per-layer ``models:``)."""
    if data.is_uniform():
        return
    given = set().union(*data.model_layers().values())
    layers = [x for x in data.layers if x.key in given]
    rows = []
    for m in models:
        cells: list = [m]
        for x in layers:
            c = data.cell(m, x)
            cells.append(Cell(c, kind="notrun") if c == NOT_RUN else Cell(c, kind="flag") if c == "failed" else c)
        rows.append(cells)
    sec.table(["model", *[x.title for x in layers]], rows, "Which model ran which layer",
              "ran: the model has rows in the layer's tables. not run: the audit did not give the model this "
              "layer (its layers: or the layer's models:), so it has no value there — not a failure and not a 0. "
              "failed / cancelled: the model failed or was stopped (see below). pending: the run has not "
              "finished. no results: it ran the layer and the layer wrote no rows for it. Each layer's "
              "ranking, flags and comparisons use only the models that ran it.")


def position_summary(sec: Section, data: ReportData) -> None:
    """Which models' choices are position-dominated, in which layer (report/position.py), with the rule."""
    found, parts = pos.hits(data), pos.checked(data)
    if found:
        sec.items([{"text": x.text(), "flag": True, "detail": ""} for x in found],
                  f"Position-dominated choices: {len(found)} not value finding{'s' * (len(found) != 1)}")
        sec.text(f"Rule: {pos.RULE}. These models answer by the option's place in the prompt, not its content; "
                 "their figures are marked in each layer and must not be read as their values.", "warn")
    elif parts:
        sec.text(f"Position bias: no model's choices are position-dominated ({', '.join(parts)}; {pos.RULE}).", "ok")


def failed_items(data: ReportData) -> list[str]:
    """One line per model with requests its backend could not answer (run.json faults.failed_items)."""
    out = []
    for run in data.runs:
        for m in run.manifest.get("models") or []:
            n = (m.get("faults") or {}).get("failed_items") if isinstance(m, dict) else None
            if isinstance(n, int) and n > 0:
                out.append(f"{m.get('name')}{f' ({run.name})' if data.is_comparison else ''}: {n} request"
                           f"{'s' * (n != 1)} failed (rejected by the server, e.g. the prompt is too long for the "
                           "model); those items have no probabilities or an empty text in the tables, and a rerun "
                           "asks for them again.")
    for run in data.runs:  # issue 20: models that failed on their own, and estimated option distributions
        for m in run.manifest.get("models") or []:
            if not isinstance(m, dict):
                continue
            name = f"{m.get('name')}{f' ({run.name})' if data.is_comparison else ''}"
            done = [k for k, v in ((run.manifest.get("progress") or {}).get(m.get("name")) or {}).items()
                    if isinstance(v, dict) and v.get("state") == "done"]
            kept = (f"the layers it finished ({', '.join(done)}) are in the tables, the others not" if done
                    else "it has no results in the tables")
            if m.get("status") == "failed":
                out.append(f"{name}: failed ({m.get('error') or 'no error recorded'}); {kept}; the other models "
                           "ran. Rerunning the same command retries it (the others come from the cache).")
            if m.get("status") == "stopped: budget":
                out.append(f"{name}: stopped: budget ({m.get('stopped') or 'cap reached'}); {kept}. Raise its "
                           "max_calls / max_cost and rerun to continue (what it made comes from the cache).")
            n = m.get("options_estimated")
            if isinstance(n, int) and n > 0:
                out.append(f"{name}: {n} option distribution{'s' * (n != 1)} estimated from sampled answers "
                           "(its server gave no log-probabilities): shares of N samples at temperature 1, with "
                           "sampling error, not exact probabilities.")
    return out


def run_facts(data: ReportData) -> Section:
    sec = Section("run", "Run facts")
    for run in data.runs:
        m = run.manifest
        prefix = f"{run.name}: " if data.is_comparison else ""
        if not m:
            sec.text(f"{prefix}no run.json in {run.out_dir}.", "warn")
            continue
        audit = m.get("audit") or {}
        calls = m.get("calls") or {}
        total = m.get("calls_all_runs") or {}
        layers = [k for k, v in (audit.get("layers") or {}).items() if v is not None]
        facts = [["status", m.get("status", "unknown")], ["error", m.get("error")],
                 ["output directory", str(run.out_dir)], ["audit file", m.get("audit_source")],
                 ["run id", m.get("run_id")], ["started", m.get("started")], ["ended", m.get("ended")],
                 ["seed", m.get("seed")], ["countries", ", ".join(audit.get("countries", []))],
                 ["languages", ", ".join(audit.get("languages", []))], ["layers in the audit", ", ".join(layers)],
                 ["calls made (this run)", calls.get("calls_made")],
                 ["calls served from the cache (this run)", calls.get("calls_cached")],
                 ["runs on this output directory", total.get("runs")],
                 ["calls made (all runs)", total.get("calls_made")], ["calls in the store", total.get("calls_stored")],
                 *[[f"version: {k}", v] for k, v in (m.get("versions") or {}).items()]]
        sec.table(["fact", "value"], [r for r in facts if r[1] not in (None, "")], f"{prefix}run.json",
                  f"From {run.out_dir / 'run.json'}.")
        models = m.get("models") or []
        if models:
            sec.table(["model", "calls made", "calls cached", "faults"],
                      [[x.get("name"), x.get("calls_made"), x.get("calls_cached"), _faults(x.get("faults"))]
                       for x in models], f"{prefix}calls and faults per model",
                      "Faults are the backend's counters (retries, timeouts, errors) for the models that finished.")
        tokens = token_rows(m)
        if tokens:
            priced = any(r[-2] != "" for r in tokens)
            sec.table(["model", "layer", "state", "calls made", "calls cached", "prompt tokens", "completion tokens",
                       "cached prompt tokens", "cached completion tokens", "tokens by", "cost", "cost of cached"],
                      tokens, f"{prefix}tokens and cost per model × layer",
                      "Tokens of the calls made this run, and (cached) the tokens the calls served from the cache "
                      "had when they were made, not spent again. Tokens by: server = the server's usage, "
                      "tokenizer = the model's tokenizer, estimate = about 4 characters per token (1 per CJK "
                      "character); calls stored before tokens were counted are left out of the cached tokens. "
                      + ("Cost from the audit file's prices per 1M tokens." if priced else
                         "No prices in the audit file: no cost."))
    return sec


def token_rows(m: dict[str, Any]) -> list[list[Any]]:
    """run.json["progress"] as rows of the tokens table (empty for a run.json without it)."""
    rows = []
    progress = m.get("progress")
    for model, layers in (progress.items() if isinstance(progress, dict) else ()):
        for layer, r in (layers.items() if isinstance(layers, dict) else ()):
            if not isinstance(r, dict):
                continue
            untracked = r.get("cached_untracked") or 0
            rows.append([model, layer, r.get("state", ""), r.get("calls_made", ""), r.get("calls_cached", ""),
                         r.get("prompt_tokens", ""), r.get("completion_tokens", ""),
                         f"{r.get('cached_prompt_tokens', '')}" + (f" ({untracked} calls unknown)" if untracked else ""),
                         r.get("cached_completion_tokens", ""), r.get("token_source", ""),
                         "" if r.get("cost") is None else f"{r['cost']:.4f}",
                         "" if r.get("cost_cached") is None else f"{r['cost_cached']:.4f}"])
    return rows


def _faults(f: Any) -> str:
    if not f:
        return "none"
    return ", ".join(f"{k}: {v}" for k, v in f.items()) if isinstance(f, dict) else json.dumps(f)


def catalogue(data: ReportData) -> Section:
    sec = Section("catalogue", "Model catalogue")
    if len(data.catalogue):
        sec.frame(data.catalogue, "", "From results/models (or, before it exists, the audit in run.json). "
                  + ("Model names that occur in several runs are shown as MODEL@RUN." if data.renamed else ""))
    else:
        sec.text("No model catalogue recorded.", "warn")
    return sec


def about(h: Headline) -> Section:
    sec = Section("about", "About these numbers")
    sec.items([{"text": t, "flag": False, "detail": ""} for t in [
        "Every number is read from the exported tables in results/ (Parquet and CSV) or from run.json; the only "
        "aggregation is the simple mean of a table column, and each table or figure says over which rows.",
        "Numbers are shown with 3 decimals; p-values below 0.001 as <0.001; — means no value.",
        "1−JSD uses the Jensen–Shannon distance (the square root of the divergence, natural log), clipped to [0, 1], "
        "as in Cao et al.'s code. EMD is the 1-D Wasserstein distance over option positions, divided by "
        "(number of options − 1).",
        "Tables with a condition column: headline values, ranking and flags use the zero-shot (ZS) rows.",
        *([h.describe()] if h.sources else [])]])
    return sec
