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
