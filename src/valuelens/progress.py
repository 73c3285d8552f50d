"""Progress reporting: a rich bar with count, rate and ETA, or nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.markup import escape

Advance = Callable[[int], None]


class Tracker(Protocol):
    def track(self, description: str, total: int) -> Advance: ...


class LockedTracker:
    """Any tracker made safe for several threads (lanes of models): creating a
    bar and advancing one happen under one lock."""

    def __init__(self, inner: Tracker):
        self.inner = inner
        self.lock = threading.Lock()

    def track(self, description: str, total: int) -> Advance:
        with self.lock:
            advance = self.inner.track(description, total)

        def locked_advance(n: int) -> None:
            with self.lock:
                advance(n)

        return locked_advance


class NullTracker:
    def track(self, description: str, total: int) -> Advance:
        return lambda n: None


class RichTracker:
    def __init__(self, progress: Any):
        self.progress = progress

    def track(self, description: str, total: int) -> Advance:
        task = self.progress.add_task(escape(description), total=total, rate="")
        by_id = {t.id: t for t in self.progress.tasks}

        def advance(n: int) -> None:
            self.progress.advance(task, n)
            speed = by_id[task].speed
            if speed:
                self.progress.update(task, rate=f"{speed:.1f}/s")

        return advance


@contextmanager
def rich_tracker(console: Any = None) -> Iterator[Tracker]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as p:
        yield RichTracker(p)


class LineTracker:
    """Progress for logs (stdout not a terminal, CI): one plain line per task when
    it starts, then at most one every ``interval`` seconds, and one when it ends.

    A 40-minute run printed nothing to a log before; a bar's redraws are
    unreadable there. Lines look like
    ``[  12:05] dilemmas m (en): 120/360 (33%) 2.1/s ETA 1:54``.
    """

    def __init__(self, write: Callable[[str], None], interval: float = 30.0,
                 clock: Callable[[], float] | None = None):
        import time

        self.write = write
        self.interval = interval
        self.clock = clock or time.monotonic
        self.start = self.clock()

    def _stamp(self, now: float) -> str:
        return f"[{_clock_text(now - self.start):>7}]"

    def track(self, description: str, total: int) -> Advance:
        began = self.clock()
        state = {"done": 0, "last": began}
        self.write(f"{self._stamp(began)} {description}: 0/{total}")

        def advance(n: int) -> None:
            if state["done"] >= total > 0:
                return
            state["done"] = min(total, state["done"] + n) if total > 0 else state["done"] + n
            now = self.clock()
            finished = total > 0 and state["done"] >= total
            if not finished and now - state["last"] < self.interval:
                return
            state["last"] = now
            done, spent = state["done"], now - began
            rate = done / spent if spent > 0 else 0.0
            line = f"{self._stamp(now)} {description}: {done}/{total}"
            if total > 0:
                line += f" ({100 * done // total}%)"
            if rate > 0:
                line += f" {rate:.1f}/s"
                if not finished and total > 0:
                    line += f" ETA {_clock_text((total - done) / rate)}"
            if finished:
                line += f" done in {_clock_text(spent)}"
            self.write(line)

        return advance


def _clock_text(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
