"""The ``valuelens`` command line (typer + rich)."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from valuelens.errors import Terminated, ValueLensError
from valuelens.terminal import fitted_table, transposed_tables

if TYPE_CHECKING:
    from valuelens.config import AuditConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Audit LLMs for cross-cultural value alignment.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the call cache of an output directory.")
app.add_typer(cache_app, name="cache")
console = Console(emoji=False)  # ":x:" in a spec or path is text, not an emoji
err_console = Console(stderr=True, emoji=False)


EXIT_CODES = """Exit codes: 0 done; 1 a failure outside your input (a backend or server, a full disk, an I/O
error); 2 bad input (an audit or data file, an unusable output directory or store); 3 an internal error (a bug:
please report it; VALUELENS_DEBUG=1 shows the traceback); 130 Ctrl-C; 143 SIGTERM."""


def _print_version(value: bool) -> None:
    if value:
        from valuelens import __version__

        console.print(f"valuelens {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Audit LLMs for cross-cultural value alignment."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the cleanup is not interrupted again
    raise Terminated()


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _notes(cfg: AuditConfig) -> None:
    """The audit file's deprecation notes (e.g. an old layer key), one line each on stdout."""
    for note in cfg.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


@contextmanager
def guarded():
    """Every failure as one line on stderr and an exit code by cause (see EXIT_CODES); SIGTERM as Ctrl-C."""
    import sqlite3

    from valuelens.errors import os_error
    from valuelens.store import store_error

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except ValueLensError as e:
        raise _fail(str(e), e.exit_code) from None
    except Terminated:
        err_console.print("interrupted (SIGTERM): rerun the same command to resume from the store")
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: rerun the same command to resume from the store")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - nothing else may end in a traceback
        if os.environ.get("VALUELENS_DEBUG") == "1":
            raise
        if isinstance(e, OSError):
            err = os_error(e.filename or "a file valuelens was using", e, "failed")
            raise _fail(str(err), err.exit_code) from None
        if isinstance(e, sqlite3.Error):
            err = store_error(Path("store"), e)
            raise _fail(str(err), err.exit_code) from None
        if isinstance(e, MemoryError):
            raise _fail("out of memory", 1) from None
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise _fail(f"internal error ({type(e).__name__}{': ' + first if first else ''}); please report it "
                    f"(VALUELENS_DEBUG=1 shows the traceback)", 3) from None


@app.command(epilog=EXIT_CODES)
def run(audit: Optional[Path] = typer.Argument(None, help="audit YAML; default: the built-in demo audit"),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="output directory (overrides the audit file)"),
        force: bool = typer.Option(False, "--force", help="run even where the output directory holds a different "
                                   "audit (its tables are moved to results/stale/)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output (same as --progress none)"),
        progress: str = typer.Option("auto", "--progress",
                                     help="bar | plain (a line per task every 30 s, for logs) | none; auto: a bar "
                                          "on a terminal, plain lines otherwise"),
        model: Optional[list[str]] = typer.Option(
            None, "--model", "-m", metavar="SPEC", help="a model to audit: SPEC or NAME=SPEC (embedded, hf:PATH, openai:MODEL@URL, "
                                        "vllm:PATH, scripted:FILE); repeat for more; replaces the file's models"),
        layers: Optional[str] = typer.Option(None, "--layers", metavar="A,B", help="layers to run, comma-separated (first_token, "
                                             "def, dilemmas, mark); replaces the file's selection"),
        limit: Optional[str] = typer.Option(None, "--limit", metavar="N", help="first N questions / dilemmas in every layer "
                                            "that has a limit"),
        countries: Optional[str] = typer.Option(None, "--countries", metavar="A,B", help="comma-separated, e.g. "
                                                "\"United States,China\""),
        languages: Optional[str] = typer.Option(None, "--languages", metavar="en,zh", help="comma-separated: en, zh"),
        seed: Optional[str] = typer.Option(None, "--seed", metavar="N", help="seed of every sampled call")):
    """Run (or resume) an audit and write results, run.json and the store.

    Without AUDIT, --model and --layers build the audit (no YAML); with AUDIT, flags override it.

    Precedence: flag > audit file > default. No AUDIT and no flag: the built-in demo audit."""
    from valuelens import api
    from valuelens.audit import check_out_dir, mark_failed
    from valuelens.progress import LineTracker, NullTracker, rich_tracker

    with guarded():
        mode = "none" if quiet else progress.strip().lower()
        if mode == "auto":
            mode = "bar" if console.is_terminal else "plain"
        if mode not in {"bar", "plain", "none"}:
            raise ValueLensError(f"--progress: {progress!r} is not one of auto, bar, plain, none")
        if out is not None and not out.strip():
            raise ValueLensError("--out: empty path; give a directory (e.g. --out runs/NAME)")
        out_dir = Path(out) if out is not None else None
        flags = audit_flags(model, layers, limit, countries, languages, seed)
        # bad input fails before any progress bar appears
        cfg = api.load(audit, flags) if flags.given() else api.load(audit)
        source = (f"{audit or 'command line'}: {flags.describe()}" if flags.given()
                  else str(audit) if audit is not None else "builtin demo")
        _notes(cfg)
        check_out_dir(out_dir if out_dir is not None else cfg.out_dir())
        if mode == "none":
            result = api.run_full(cfg, out_dir, NullTracker(), force=force, source=source, plan=True)
        elif mode == "plain":
            interval = float(os.environ.get("VALUELENS_PROGRESS_INTERVAL", "30"))
            line = LineTracker(lambda text: console.print(escape(text), highlight=False, soft_wrap=True), interval)
            result = api.run_full(cfg, out_dir, line, force=force, source=source, plan=True)
        else:
            with rich_tracker(console) as tracker:
                result = api.run_full(cfg, out_dir, tracker, force=force, source=source, plan=True)
        try:
            _summary(result)
            from valuelens.report import build_report

            console.print(f"report: {build_report(result.out_dir)}")
        except BaseException as e:  # the command failed: run.json must not say "finished"
            mark_failed(result.out_dir, e)
            raise


def _listed(flag: str, value: str | None) -> list[str] | None:
    """A comma-separated flag value as a list (None: not given); an empty item is an error."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",")]
    if not any(items):
        raise ValueLensError(f"{flag}: empty; give a comma-separated list")
    if not all(items):
        raise ValueLensError(f"{flag}: {value!r} has an empty item (two commas, or one at an end)")
    return items


def _whole(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ValueLensError(f"{flag}: {value!r} is not a whole number") from None


def audit_flags(model: list[str] | None, layers: str | None, limit: str | None, countries: str | None,
                languages: str | None, seed: str | None):
    """``valuelens run``'s audit flags, parsed (config.AuditFlags); a bad value is a one-line error naming the flag."""
    from valuelens.config import AuditFlags

    models = list(model or [])
    for m in models:
        if not m.strip():
            raise ValueLensError("--model: empty; give a backend spec, e.g. --model embedded")
    return AuditFlags(models=models, layers=_listed("--layers", layers), limit=_whole("--limit", limit),
                      countries=_listed("--countries", countries), languages=_listed("--languages", languages),
                      seed=_whole("--seed", seed))


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
        # Split into several tables when the columns do not fit the terminal (80 columns in a log).
        columns = [("\n".join(str(getattr(row, k)) for k in keys), [_fmt(df[c].iloc[i]) for c in measures])
                   for i, row in enumerate(df.itertuples(index=False))]
        for t in transposed_tables(name, "measure", measures, columns, console.width):
            console.print(t)
    for name, why in (result.manifest.get("stopped_models") or {}).items():
        console.print(escape(f"{name}: stopped: budget ({why}); raise its cap and rerun to continue"),
                      highlight=False, soft_wrap=True)
    console.print(f"results: {result.out_dir / 'results'} (Parquet and CSV); manifest: {result.out_dir / 'run.json'}")


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


LANGUAGE_HELP = "language of the report's fixed texts: en | zh (default: the audit file's report.language, else en)"


def _language(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in ("en", "zh"):
        raise ValueLensError(f"--language: {value!r} is not a report language (en or zh)")
    return value


@app.command(epilog=EXIT_CODES)
def report(out_dir: Path = typer.Argument(..., help="output directory of a run"),
           out: Optional[Path] = typer.Option(None, "--out", "-o",
                                              help="report file (.html) or directory; default OUT_DIR/report.html"),
           language: Optional[str] = typer.Option(None, "--language", "-l", help=LANGUAGE_HELP)):
    """Write OUT_DIR/report.html: one self-contained HTML report (opens with no network).
    Reads the run without writing to it; with --out it works on read-only media."""
    from valuelens.report.load import report_data
    from valuelens.report.render import REPORT_NAME, render, write_html

    with guarded():
        lang = _language(language)
        dest = out_dir / REPORT_NAME if out is None else out
        if out is not None and (out.suffix.lower() not in {".html", ".htm"} or out.is_dir()):
            dest = out / REPORT_NAME
        data = report_data(out_dir)
        _check_writable(dest, "" if out is not None else "; give --out FILE to write the report elsewhere")
        console.print(f"report: {write_html(dest, render(data, lang))}")


def _check_writable(dest: Path, hint: str) -> None:
    """Refuse a report destination whose directory (or its nearest existing parent) cannot be written."""
    p = Path(os.path.abspath(dest)).parent
    while not p.exists() and p.parent != p:
        p = p.parent
    if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        try:
            ro = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
        except OSError:
            ro = False
        raise ValueLensError(f"{dest}: cannot write ({'read-only file system' if ro else 'permission denied'}){hint}")
    if dest.exists() and not dest.is_file():
        raise ValueLensError(f"{dest}: exists and is not a regular file")


@app.command()
def view(out_dir: Path = typer.Argument(..., help="output directory of a run (finished or still running)"),
         port: int = typer.Option(8765, "--port", "-p", help="port on 127.0.0.1 (0: any free port)")):
    """Serve the report and the run's result files on http://127.0.0.1:PORT/ until Ctrl-C.
    The report is rebuilt from the tables on each load, so a running audit shows what has finished."""
    from valuelens.report.serve import make_server

    with guarded():
        if not 0 <= port <= 65535:
            raise ValueLensError(f"--port: {port} is not a port number (0-65535)")
        try:
            server = make_server(out_dir, port)
        except OSError as e:
            raise ValueLensError(f"--port {port}: cannot listen on 127.0.0.1 ({e.strerror or e}); "
                                 f"give another --port, or 0 for any free one") from None
        console.print(f"serving {out_dir} on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", highlight=False)
        try:
            server.serve_forever()
        finally:
            server.server_close()


@app.command()
def compare(out_dirs: list[Path] = typer.Argument(..., help="output directories of two or more runs"),
            out: Path = typer.Option(..., "--out", "-o", help="report file (.html) or directory (gets report.html)"),
            language: Optional[str] = typer.Option(None, "--language", "-l", help=LANGUAGE_HELP)):
    """One report over several runs; model names that occur in more than one become MODEL@RUN. A model in the
    first run and a later one gets paired differences per item (later − first: paired t, Wilcoxon,
    bootstrap interval)."""
    from valuelens.report import build_comparison

    with guarded():
        console.print(f"report: {build_comparison(out_dirs, out, _language(language))}")


@app.command()
def validate(audit: Path = typer.Argument(..., help="audit YAML")):
    """Check an audit file, the layers' data files, the output directory and
    the environment (API key variables, devices) without running it."""
    from valuelens.audit import check_inputs, check_out_dir
    from valuelens.config import load_audit
    from valuelens.preflight import preflight

    with guarded():
        cfg = load_audit(audit)
        _notes(cfg)
        check_inputs(cfg)
        check_out_dir(cfg.out_dir())
        preflight(cfg)
        console.print(f"{audit}: ok ({len(cfg.models)} models, layers: "
                      f"{', '.join(k for k, v in cfg.layers if v is not None)})")
        _plan_lines(cfg)


def _plan_lines(cfg: AuditConfig) -> None:
    """Which model runs which layer, when models were given different layers."""
    plan = cfg.model_layers()
    every = [spec.key for spec, _ in cfg.layers.selected()]
    if any(keys != every for keys in plan.values()):
        for name, keys in plan.items():
            console.print(escape(f"  {name}: {', '.join(keys)}"), highlight=False, soft_wrap=True)


@app.command()
def plan(audit: Optional[Path] = typer.Argument(None, help="audit YAML; default: the built-in demo audit")):
    """Print the calls and tokens the audit will make per model × layer, and their cost where the audit file
    gives prices, before any call (a dry run on stand-in answers; no model weights are loaded)."""
    from valuelens import api
    from valuelens.audit import check_inputs
    from valuelens.plan import plan_audit

    with guarded():
        cfg = api.load(audit)
        _notes(cfg)
        check_inputs(cfg)
        rows = plan_audit(cfg)
        priced = any(r.cost is not None for r in rows)
        headers = ["model", "layer", "calls", "prompt tokens", "completion tokens (at most)", "tokens by"]
        body = [[r.model, r.layer, f"{r.calls}" + ("" if r.exact else " ~"), f"{r.prompt_tokens}",
                 f"{r.completion_tokens}", r.token_source] + ([_money(r.cost)] if priced else []) for r in rows]
        for m in dict.fromkeys(r.model for r in rows):
            mine = [r for r in rows if r.model == m]
            total = [m, "all", str(sum(r.calls for r in mine)) + ("" if all(r.exact for r in mine) else " ~"),
                     str(sum(r.prompt_tokens for r in mine)), str(sum(r.completion_tokens for r in mine)), ""]
            costs = [r.cost for r in mine if r.cost is not None]
            body.append(total + ([_money(sum(costs)) if costs else "-"] if priced else []))
        t, _ = fitted_table(f"plan: {cfg.name}", headers + (["cost (at most)"] if priced else []), body,
                            console.width)
        console.print(t)
        console.print(escape("calls: exact for scripted models; ~ = counted on stand-in answers (retries after "
                             "invalid replies can change it). Counts are for a fresh output directory (cached "
                             "calls are not made again)."), highlight=False, soft_wrap=True)


def _money(v) -> str:
    return "-" if v is None else f"{v:.4f}"


@app.command()
def status(out_dir: Path = typer.Argument(..., help="output directory of a run (finished or still running)")):
    """Per model × layer: done / running / failed / pending / stopped: budget, with calls (made+cached/expected)
    and tokens. Reads run.json only; works while the run holds its lock."""
    from valuelens.runstate import read_state

    with guarded():
        st = read_state(out_dir)
        live = {True: "a process is running it", False: "no process is running it", None: "cannot tell if live"}
        counts = ", ".join(f"{n} {k}" for k, n in st.counts().items())
        console.print(escape(f"{out_dir}: {st.status} ({live[st.live]}); model × layer: {counts or 'none'}"),
                      highlight=False, soft_wrap=True)
        rows = [[r.model, r.layer, r.state, r.calls(), str(r.record.get("prompt_tokens", "-")),
                 str(r.record.get("completion_tokens", "-")), r.record.get("token_source") or "-",
                 _money(r.record.get("cost")) if "cost" in r.record else "-",
                 str(r.record.get("why") or r.record.get("error") or "")] for r in st.rows]
        t, _ = fitted_table("status", ["model", "layer", "state", "calls", "prompt tokens", "completion tokens",
                                       "tokens by", "cost", "note"], rows, console.width,
                            priority=(0, 1, 2, 3, 5, 6, 8, 7, 4))
        console.print(t)


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
        t.add_column("name", no_wrap=True)
        t.add_column("what", overflow="fold")
        for name, (_, doc) in BACKENDS.items():
            t.add_row(escape(name), escape(doc))
        console.print(t)
        cfg = api.load(audit)
        rows = [m.catalogue() for m in cfg.models]
        c, _ = fitted_table("catalogue", list(rows[0]), [[str(v) for v in r.values()] for r in rows], console.width)
        console.print(c)
        known = [f"{m.name} = {m.known_as}" for m in cfg.models if m.known_as]
        if known:
            console.print(escape(f"metadata from the built-in catalogue (keys set in the file win): {'; '.join(known)}"),
                          highlight=False)
        _print_known_models(with_source=False)


def _print_known_models(with_source: bool) -> None:
    from valuelens.data.catalogue import known_models

    ms = known_models()
    headers = ("name", "Hugging Face repo / API ids", "developer", "region", "family", "params_b", "architecture",
               "alignment")
    rows = [(m.name, m.hf_repo or ", ".join(m.api_ids[:2]) or "—", m.developer, m.region, m.family, m.params_text(),
             m.architecture or "unknown", m.alignment or "unknown") for m in ms]
    # At 80 columns the repo ids, developer and architecture go first (--catalogue lists each entry's ids below).
    t, _ = fitted_table(f"built-in catalogue ({len(ms)} models; an audit entry naming one gets its metadata)",
                        headers, rows, console.width, priority=(0, 7, 5, 1, 2, 3, 6, 4))
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

    if not (out_dir / STORE_NAME).exists():  # a store of the wrong kind is the Store's one-line error
        raise ValueLensError(f"{out_dir}: no {STORE_NAME} here (not a valuelens output directory)")


data_app = typer.Typer(no_args_is_help=True, help="Public datasets: list, fetch (pinned, checksummed, licence "
                       "recorded) and check user-downloaded files.")
app.add_typer(data_app, name="data")


def _say(text: str) -> None:
    console.print(escape(text), highlight=False, soft_wrap=True)


@data_app.command("list")
def data_list():
    """Known datasets: licence, whether it must be accepted, cached or not, and the cache path."""
    from valuelens.data.fetch import data_root, list_datasets

    with guarded():
        _say(f"cache: {data_root()} (VALUELENS_DATA_DIR overrides)")
        for r in list_datasets():
            accept = "; needs --accept-licence" if r["accept"] else ""
            _say(f"{r['name']}: {r['status']} [{r['source']}]")
            _say(f"  {r['title']}")
            _say(f"  licence: {r['licence']}{accept}")
            if r["path"]:
                _say(f"  {'path' if r['status'] == 'cached' else 'where'}: {r['path']}")
            if r["audit"]:
                _say(f"  in an audit: {r['audit']}")


@data_app.command("fetch", epilog=EXIT_CODES)
def data_fetch(name: str = typer.Argument(..., help="dataset name (valuelens data list)"),
               accept_licence: bool = typer.Option(False, "--accept-licence",
                                                   help="accept the dataset's licence (required where it says so)"),
               force: bool = typer.Option(False, "--force", help="download again even if cached (a partial "
                                          "download is discarded)")):
    """Download a dataset at its pinned revision, checksummed, and print its licence.

    Each file's size and SHA-256 is verified before it enters the cache; an audit then uses it as
    `fetched:NAME` (or `fetched:NAME/FILE`)."""
    from valuelens.data.fetch import fetch, get, licence_line

    with guarded():
        _say(licence_line(get(name)))
        res = fetch(name, accept_licence=accept_licence, force=force, say=_say)
        _say(f"{'fetched' if res.status == 'fetched' else 'already cached (verified)'}: {res.path}")
        if res.dataset.audit:
            _say(f"in an audit: {res.dataset.audit}")


@data_app.command("check", epilog=EXIT_CODES)
def data_check(name: str = typer.Argument(..., help="dataset whose format FILE should have (e.g. wvs7)"),
               file: Path = typer.Argument(..., help="your downloaded file (MoralChoice: its data folder)"),
               codebook: Optional[Path] = typer.Option(None, "--codebook",
                                                       help="wvs7: the WVS-7 codebook.json (default: the fetched "
                                                            "wvs_codebook)")):
    """Validate a file you downloaded yourself (e.g. WVS microdata) and say where to register.

    The file is read with valuelens's own loaders (columns, codes against the codebook)."""
    from valuelens.data.fetch_check import check_file

    with guarded():
        for line in check_file(name, file, codebook):
            _say(line)


def main() -> None:
    app()


if __name__ == "__main__":
    main()  # typer exits with the command's code
