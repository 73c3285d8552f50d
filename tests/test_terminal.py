"""Terminal output: tables fit 80 columns without "…", plain progress lines for logs."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from valuelens.progress import LineTracker
from valuelens.terminal import fitted_table, table_width, transposed_tables


def rendered(tables, width: int) -> str:
    buf = io.StringIO()
    c = Console(file=buf, width=width, force_terminal=False, color_system=None)
    for t in tables:
        c.print(t)
    return buf.getvalue()


def test_table_width_matches_rich():
    # the arithmetic the splitter relies on, checked against rich's own rendering
    from rich.table import Table

    for widths in ([3], [5, 9], [1, 12, 7, 4]):
        t = Table()
        for i, w in enumerate(widths):
            t.add_column("x" * w)
        t.add_row(*["y" * w for w in widths])
        out = rendered([t], 500).splitlines()
        assert max(len(line) for line in out) == table_width(widths)


def test_transposed_tables_fit_and_keep_every_cell():
    measures = ["mean_one_minus_jsd", "position_tv", "kl_valid", "invalid_share"]
    columns = [(f"model-{i} / condition-{i % 3} / {'en' if i % 2 else 'zh'}",
                [f"{0.1 * (i + r):.3f}" for r in range(len(measures))]) for i in range(7)]
    tables = transposed_tables("first_token_summary", "measure", measures, columns, 80)
    assert len(tables) > 1  # 7 wide columns cannot share one 80-column table
    text = rendered(tables, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    flat = "".join(text.split())
    for header, cells in columns:
        assert "".join(header.split()) in flat or all(w in text for w in header.split())  # headers may fold
        for cell in cells:
            assert cell in text
    # every value column appears in exactly one table, in order
    assert [c for t in tables for c in [col.header for col in t.columns][1:]] == [h for h, _ in columns]


def test_transposed_tables_one_table_when_it_fits():
    tables = transposed_tables("s", "measure", ["a"], [("m1", ["0.1"]), ("m2", ["0.2"])], 80)
    assert len(tables) == 1 and tables[0].title == "s"


def test_fitted_table_drops_by_priority_and_says_so():
    headers = ["name", "repo", "region", "notes"]
    rows = [["SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct" * 2, "Western", "x" * 30]]
    t, dropped = fitted_table("cat", headers, rows, 80, priority=(0, 3, 1, 2))
    assert dropped == ["repo"]  # highest number goes first; the rest then fits
    text = rendered([t], 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "left out at 80 columns: repo" in " ".join(text.split())
    t2, dropped2 = fitted_table("cat", headers, rows, 300)
    assert dropped2 == [] and t2.caption is None


def test_line_tracker_throttles_and_finishes():
    clock = [0.0]
    out: list[str] = []
    tr = LineTracker(out.append, interval=10, clock=lambda: clock[0])
    adv = tr.track("dilemmas m (en)", 50)
    for _ in range(50):
        clock[0] += 1
        adv(1)
    assert out[0].endswith("dilemmas m (en): 0/50")
    assert len(out) == 1 + 4 + 1  # start, at 10/20/30/40 s, the end
    assert "20/50 (40%) 1.0/s ETA 0:30" in out[2]
    assert out[-1].endswith("50/50 (100%) 1.0/s done in 0:50")
    adv(5)  # past the end: nothing more
    assert len(out) == 6


def test_cli_run_in_a_log_prints_progress_lines_and_fits_80_columns(tmp_path):
    (tmp_path / "script.json").write_text('{"rules": [], "default_text": "A. yes"}')
    audit = tmp_path / "audit.yaml"
    audit.write_text(f"""\
name: termtest
output_dir: {tmp_path / 'out'}
models:
  - name: a-rather-long-model-name-one
    backend: scripted:{tmp_path / 'script.json'}
  - name: a-rather-long-model-name-two
    backend: scripted:{tmp_path / 'script.json'}
languages: [en, zh]
layers:
  first_token: {{limit: 3}}
""")
    env = {**os.environ, "COLUMNS": "80", "VALUELENS_PROGRESS_INTERVAL": "0"}
    r = subprocess.run([sys.executable, "-m", "valuelens", "run", str(audit)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("[") and line.endswith(": 0/12") for line in lines), r.stdout  # a start per task
    assert any("(100%)" in line and "done in" in line for line in lines), r.stdout
    table_lines = [line for line in lines if line[:1] in "┃│┏┡└┗━─╷╵╶╴┌┐" or line.startswith(("│", "┃"))]
    assert table_lines and max(len(line) for line in table_lines) <= 80, r.stdout
    assert "…" not in r.stdout
    assert sum("first_token_summary" in line for line in lines) <= 3  # 8 columns (2 models x 2 prompts x 2 languages), 3 per table at 80
    m = subprocess.run([sys.executable, "-m", "valuelens", "models", "--catalogue"], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert m.returncode == 0, m.stderr
    assert "left out at 80 columns" in " ".join(m.stdout.split())
    assert "…" not in m.stdout
