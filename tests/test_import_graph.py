"""The import graph of src/valuelens: no cycle, and no arrow that runs back
up the pipeline (cli/api → audit → config → layers → models, data, metrics,
stats; models → store; the report reads tables only). Lazy imports inside
functions count too."""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1] / "src" / "valuelens"

# floor → the floors it may import (besides itself). A floor is the first
# component below valuelens ("models", "layers", "audit", ...).
BASE = {"errors", "__init__", "strict", "locking"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "strict": set(),
    "locking": {"errors"},  # one exclusive lock file per folder (output directory, dataset cache)
    "__init__": {"errors"},
    "store": BASE,
    "results": BASE,
    "progress": BASE,
    "terminal": BASE,  # tables that fit the terminal (rich only)
    "metrics": BASE,
    "stats": BASE | {"metrics"},
    "comparisons": BASE | {"metrics", "stats"},  # comparisons: settings, metric catalogue, tests from tables
    "data": BASE,
    "models": BASE | {"data", "store", "progress"},
    "layers": BASE | {"models", "data", "metrics", "stats", "progress", "results"},  # results: atomic file writes
    "config": BASE | {"comparisons", "layers", "models", "data"},
    "preflight": BASE | {"config", "models", "data"},
    "lanes": BASE | {"store"},
    "runstate": BASE,  # run.json's per model × layer state (valuelens status): reads the directory only
    "audit": BASE | {"config", "layers", "models", "data", "lanes", "progress", "results", "store", "preflight",
                     "runstate"},
    "plan": BASE | {"audit", "config", "layers", "models", "progress", "store"},  # valuelens plan: a dry run
    "report": BASE | {"comparisons", "metrics", "stats", "results"},
    "api": BASE | {"audit", "config", "progress", "results", "store", "report", "data", "models", "preflight",
                   "plan"},
}
TOP = {"cli", "__main__"}  # may import anything


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(("valuelens",) + parts)] = p
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            for cand in (n, n + ".__init__"):
                if cand in known:
                    found.add(cand)
    return found


def floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def test_no_arrow_runs_back_up():
    bad = []
    for a, targets in graph().items():
        fa = floor(a)
        if fa in TOP:
            continue
        assert fa in ALLOWED, f"new floor {fa!r} ({a}): add it to ALLOWED with its allowed imports"
        bad += [f"{a} -> {b}" for b in sorted(targets) if floor(b) != fa and floor(b) not in ALLOWED[fa]]
    assert not bad, "imports against the pipeline's direction:\n" + "\n".join(bad)


def test_no_import_cycle():
    """No cycle between modules (a package's __init__ re-exporting its own
    modules is not counted as an arrow back into the package)."""
    g = graph()
    for a in g:
        g[a] = {b for b in g[a] if not (b.endswith(".__init__") and a.startswith(b[: -len("__init__")]))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
