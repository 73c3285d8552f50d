"""The ``valuelens`` command line (typer + rich)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from valuelens.errors import ValueLensError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Audit LLMs for cross-cultural value alignment.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the call cache of an output directory.")
app.add_typer(cache_app, name="cache")
console = Console()
err_console = Console(stderr=True)


@contextmanager
def guarded():
    """Our errors: one line on stderr, exit code 2 (bad input) or 1."""
    try:
        yield
    except ValueLensError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: rerun the same command to resume from the store")
        raise typer.Exit(130) from None


@app.command()
def run(audit: Optional[Path] = typer.Argument(None, help="audit YAML; default: the built-in demo audit"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (overrides the audit file)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars")):
    """Run (or resume) an audit and write results, run.json and the store."""
    from valuelens import api
    from valuelens.progress import NullTracker, rich_tracker

    with guarded():
        api.load(audit)  # bad input fails before any progress bar appears
        if quiet:
            result = api.run_full(audit, out, NullTracker())
        else:
            with rich_tracker(console) as tracker:
                result = api.run_full(audit, out, tracker)
        _summary(result)
        from valuelens.report import build_report

        console.print(f"report: {build_report(result.out_dir)}")


def _summary(result) -> None:
    calls = result.manifest.get("calls", {})
    console.print(f"[bold]{result.out_dir}[/]: calls made {calls.get('calls_made', 0)}, "
                  f"served from cache {calls.get('calls_cached', 0)}")
    for name, df in result.tables.items():
        if not name.endswith(("_summary", "_table2")):
            continue
        # Transposed: one column per model/condition/language, one row per
        # measure; measures that are NaN everywhere (e.g. no human data) are left out.
        keys = [c for c in ("model", "condition", "language") if c in df.columns]
        measures = [c for c in df.columns if c not in keys and df[c].notna().any()]
        if not measures:
            continue
        t = Table(title=name)
        t.add_column("measure", no_wrap=True)
        for row in df.itertuples(index=False):
            t.add_column(escape(" / ".join(str(getattr(row, k)) for k in keys)), justify="right")
        for col in measures:
            t.add_row(col, *[escape(_fmt(v)) for v in df[col]])
        console.print(t)
    console.print(f"results: {result.out_dir / 'results'} (Parquet and CSV); manifest: {result.out_dir / 'run.json'}")


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


@app.command()
def report(out_dir: Path = typer.Argument(..., help="output directory of a run")):
    """Write OUT_DIR/report.html: one self-contained HTML report (opens with no network)."""
    from valuelens.report import build_report

    with guarded():
        console.print(f"report: {build_report(out_dir)}")


@app.command()
def compare(out_dirs: list[Path] = typer.Argument(..., help="output directories of two or more runs"),
            out: Path = typer.Option(..., "--out", "-o", help="report file (.html) or directory (gets report.html)")):
    """One report over several runs; model names that occur in more than one become MODEL@RUN."""
    from valuelens.report import build_comparison

    with guarded():
        console.print(f"report: {build_comparison(out_dirs, out)}")


@app.command()
def validate(audit: Path = typer.Argument(..., help="audit YAML")):
    """Check an audit file and the layers' data files without running it."""
    from valuelens.audit import check_inputs
    from valuelens.config import load_audit

    with guarded():
        cfg = load_audit(audit)
        check_inputs(cfg)
        console.print(f"{audit}: ok ({len(cfg.models)} models, layers: "
                      f"{', '.join(k for k, v in cfg.layers if v is not None)})")


@app.command()
def models(audit: Optional[Path] = typer.Argument(None, help="audit YAML; default: the demo audit"),
           only_catalogue: bool = typer.Option(False, "--catalogue", "-c",
                                               help="only the built-in catalogue, with each entry's source")):
    """List the model backends, the catalogue of an audit's models and the built-in catalogue."""
    from valuelens import api
    from valuelens.models.registry import BACKENDS

    with guarded():
        if only_catalogue:
            _print_known_models(with_source=True)
            return
        t = Table(title="backends")
        t.add_column("name")
        t.add_column("what")
        for name, (_, doc) in BACKENDS.items():
            t.add_row(name, doc)
        console.print(t)
        cfg = api.load(audit)
        rows = [m.catalogue() for m in cfg.models]
        c = Table(title="catalogue")
        for col in rows[0]:
            c.add_column(col)
        for r in rows:
            c.add_row(*[str(v) for v in r.values()])
        console.print(c)
        known = [f"{m.name} = {m.known_as}" for m in cfg.models if m.known_as]
        if known:
            console.print(escape(f"metadata from the built-in catalogue (keys set in the file win): {'; '.join(known)}"),
                          highlight=False)
        _print_known_models(with_source=False)


def _print_known_models(with_source: bool) -> None:
    from valuelens.data.catalogue import known_models

    ms = known_models()
    t = Table(title=f"built-in catalogue ({len(ms)} models; an audit entry naming one gets its metadata)")
    for col in ("name", "Hugging Face repo / API ids", "developer", "region", "family", "params_b", "architecture",
                "alignment"):
        t.add_column(col)
    for m in ms:
        ids = m.hf_repo or ", ".join(m.api_ids[:2]) or "—"
        t.add_row(*[escape(v) for v in (m.name, ids, m.developer, m.region, m.family, m.params_text(),
                                        m.architecture or "unknown", m.alignment or "unknown")])
    console.print(t)
    if with_source:
        for m in ms:
            also = [*m.api_ids, *m.aliases] + ([f"base: {m.base_model}"] if m.base_model else [])
            console.print(escape(f"{m.name}: {m.source}" + (f" [{'; '.join(also)}]" if also else "")),
                          highlight=False)


@cache_app.command("info")
def cache_info(out_dir: Path = typer.Argument(..., help="output directory of a run")):
    """Number of cached calls, per model, and the store's size."""
    from valuelens import api

    with guarded():
        _need_store(out_dir)
        info = api.cache_info(out_dir)
        console.print(f"{info['path']}: {info['calls']} calls, {info['runs']} runs, {info['bytes'] / 1e6:.1f} MB")
        for m, n in info["per_model"].items():
            console.print(f"  {m}: {n}")


@cache_app.command("clear")
def cache_clear(out_dir: Path = typer.Argument(..., help="output directory of a run"),
                model: Optional[str] = typer.Option(None, help="only this model's calls"),
                yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")):
    """Delete cached calls (all, or one model's)."""
    from valuelens import api

    with guarded():
        _need_store(out_dir)
        if not yes and not typer.confirm(f"delete cached calls in {out_dir}?"):
            raise typer.Exit(1)
        console.print(f"deleted {api.cache_clear(out_dir, model)} calls")


def _need_store(out_dir: Path) -> None:
    from valuelens.store import STORE_NAME

    if not (out_dir / STORE_NAME).is_file():
        raise ValueLensError(f"{out_dir}: no {STORE_NAME} here (not a valuelens output directory)")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
