"""A run's state per model × layer, read from its run.json (``valuelens status``).

The audit writes ``run.json["progress"]``: model → layer → ``{state, calls_made,
calls_cached, calls_expected, prompt_tokens, completion_tokens, ...}``, with
``state`` one of :data:`STATES`. Reading it changes nothing in the directory:
whether a run is live is asked of the run's ``.lock`` with a shared,
non-blocking ``flock`` on a read-only descriptor (the running audit holds an
exclusive one), so ``status`` works while the run holds its lock, and a
``running`` record that no process holds is shown as ``interrupted``.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valuelens.errors import ValueLensError

PENDING, RUNNING, DONE, FAILED, CANCELLED, BUDGET = "pending", "running", "done", "failed", "cancelled", "stopped: budget"
INTERRUPTED = "interrupted"
STATES = (PENDING, RUNNING, DONE, FAILED, CANCELLED, BUDGET, INTERRUPTED)


@dataclass
class Row:
    model: str
    layer: str
    state: str
    record: dict[str, Any] = field(default_factory=dict)

    def calls(self) -> str:
        """``made+cached`` calls, ``/expected`` where the plan gave it."""
        r = self.record
        done = int(r.get("calls_made") or 0) + int(r.get("calls_cached") or 0)
        text = "-" if self.state == PENDING and not done else str(done)
        if r.get("calls_expected") is not None:
            text += f"/{r['calls_expected']}"
        return text


@dataclass
class RunState:
    out_dir: Path
    status: str  # run.json's status, "interrupted" for a "running" one whose lock nobody holds
    live: bool | None  # a process holds the run's lock (None: cannot tell)
    rows: list[Row]
    manifest: dict[str, Any]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out


def _live(out: Path) -> bool | None:
    """Whether a process holds the run's lock (exclusive), asked without writing anything."""
    lock = out / ".lock"
    if not lock.is_file():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_state(out_dir: str | Path) -> RunState:
    """The run's state, or a one-line :class:`ValueLensError` for a directory that is not a run."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ValueLensError(f"{out}: no such directory (give the output directory of a run)")
    path = out / "run.json"
    if not path.is_file():
        raise ValueLensError(f"{out}: not a valuelens run directory (no run.json)")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise ValueLensError(f"{path}: unreadable ({type(e).__name__}); not a valuelens run.json") from None
    if not isinstance(m, dict) or not isinstance(m.get("audit"), dict):
        raise ValueLensError(f"{path}: not a valuelens run.json (no 'audit' object)")
    live = _live(out)
    status = str(m.get("status", "unknown"))
    stale = status == RUNNING and live is False
    if stale:
        status = INTERRUPTED
    progress = m.get("progress") if isinstance(m.get("progress"), dict) else None
    rows: list[Row] = []
    if progress is not None:
        for model, layers in progress.items():
            for layer, rec in (layers if isinstance(layers, dict) else {}).items():
                rec = rec if isinstance(rec, dict) else {}
                state = str(rec.get("state", PENDING))
                if stale and state == RUNNING:
                    state = INTERRUPTED
                rows.append(Row(str(model), str(layer), state, rec))
    else:  # a run.json from before per-layer progress: each model's state for every configured layer
        layers = [k for k, v in (m["audit"].get("layers") or {}).items() if v is not None]
        records = {r.get("name"): r for r in m.get("models") or [] if isinstance(r, dict)}
        for entry in m["audit"].get("models") or []:
            rec = records.get(entry.get("name"))
            state = PENDING if rec is None else {None: DONE, "finished": DONE}.get(rec.get("status"),
                                                                                str(rec.get("status")))
            for layer in layers:
                rows.append(Row(str(entry.get("name")), layer, state, {} if rec is None else {}))
    return RunState(out, status, live, rows, m)
