"""Many models per audit: models grouped into lanes, lanes run concurrently.

A lane is a list of models that run one after another:

* all models behind one OpenAI-compatible server (its base URL normalised to
  scheme, host and port) — each server is its own lane;
* all local backends (embedded, hf, scripted, vllm, …): they compete for the
  same CPU/GPU, so they share the lane ``local``;
* an entry's ``options.lane`` overrides both (e.g. a vLLM engine on its own
  GPUs: ``lane: gpu-0-3``; ``lane: local`` puts a server with the local models).

Lanes run in threads, at most ``max_parallel`` at once (default: all); the
calling thread takes the local lane. With one at a time the models simply run
in the audit's order. Each lane opens its own
:class:`Store` connection on the run's file under the run the caller began.

A model whose error is that model's own permanent failure (``isolate``, by
default :func:`model_failure`: its backend gave up — HTTP 401/403, model not
found, 5xx after every retry, a missing backend dependency — or it ran out of
memory) is recorded in ``failed`` and its lane goes on with its next model;
the other lanes never notice. Any other error (a bug, bad input, Ctrl-C), or
every error with ``isolate=None`` (the audit's ``fail_fast: true``), stops
the other lanes after their current chunk (their next store access raises
:class:`Cancelled`) and the first error is raised.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from valuelens.errors import BackendError, MissingDependency
from valuelens.store import Store

T = TypeVar("T")
LOCAL = "local"


class Cancelled(Exception):
    """Raised in a lane when another lane failed or the run was interrupted."""


def server_of(url: str) -> str:
    """An OpenAI-compatible base URL normalised to its server: ``scheme://host:port``."""
    u = urlsplit(url.strip())
    scheme = (u.scheme or "http").lower()
    host = (u.hostname or "").lower()
    try:
        port = u.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(scheme)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def lane_of(spec: str, options: Mapping[str, Any] | None = None) -> str:
    """The lane of a model entry (its backend spec and options)."""
    lane = (options or {}).get("lane")
    if lane:
        return str(lane).strip()
    kind, _, arg = spec.partition(":")
    if kind == "openai":  # openai:MODEL without @URL: the server at $OPENAI_BASE_URL (models.registry)
        return server_of(arg.rpartition("@")[2] if "@" in arg else os.environ.get("OPENAI_BASE_URL", ""))
    return LOCAL


def plan(entries: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, list[int]]:
    """Lane name → indices of its models, in the audit's order; lanes in order of first appearance."""
    lanes: dict[str, list[int]] = {}
    for i, (spec, options) in enumerate(entries):
        lanes.setdefault(lane_of(spec, options), []).append(i)
    return lanes


def model_failure(e: BaseException) -> bool:
    """Whether ``e`` is one model's permanent failure, so the audit can go on
    without that model: a backend that gave up (:class:`BackendError`: auth,
    model not found, repeated 5xx after retries, a reply that cannot be
    read), a backend dependency that is not installed, or out of memory
    (``MemoryError``, torch's ``OutOfMemoryError``, a RuntimeError saying
    "out of memory"). Interrupts, :class:`Cancelled` and everything else are not."""
    if isinstance(e, (KeyboardInterrupt, Cancelled)) or not isinstance(e, Exception):
        return False
    if isinstance(e, (BackendError, MissingDependency, MemoryError)):
        return True
    if any(t.__name__ == "OutOfMemoryError" for t in type(e).__mro__):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


class LaneStore(Store):
    """A lane's own connection: stops the lane, after the chunk in hand is
    committed, once ``cancel`` is set."""

    def __init__(self, path: str | Path, run_id: str, cancel: threading.Event):
        super().__init__(path)
        self.attach_run(run_id)
        self.cancel = cancel

    def _check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("stopped: another model failed or the run was interrupted")

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        self._check()
        return super().get_many(keys)

    def put_many(self, model: str, rows: list[tuple[str, dict[str, Any], Any]]) -> None:
        super().put_many(model, rows)
        self._check()


def run_lanes(lanes: dict[str, list[int]], work: Callable[[int, Store], T], *, store_path: Path, run_id: str,
              max_parallel: int | None = None, isolate: Callable[[BaseException], bool] | None = model_failure,
              failed: dict[int, BaseException] | None = None) -> list[T | None]:
    """Run ``work(i, store)`` for every model index, lane by lane, lanes in
    parallel. Returns the results by index (None for a model that did not run).
    With a ``failed`` dict, a model whose error ``isolate`` accepts goes into
    it (index → error) and its lane goes on; any other error is raised, the first one,
    once every lane has stopped.

    This (the calling) thread runs a lane too, the local one first: local
    engines may want the main thread, and Ctrl-C lands there."""
    n = 1 + max((i for lane in lanes.values() for i in lane), default=-1)
    results: list[T | None] = [None] * n
    workers = min(max_parallel or len(lanes), len(lanes))
    if workers <= 1:  # one at a time: the audit's order
        queue = [sorted(i for lane in lanes.values() for i in lane)]
    else:
        queue = [lanes[k] for k in sorted(lanes, key=lambda k: k != LOCAL)][::-1]  # pop() takes the local lane first
    cancel = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(lane: list[int]) -> None:
        store = LaneStore(store_path, run_id, cancel)
        try:
            for i in lane:
                if cancel.is_set():
                    return
                try:
                    results[i] = work(i, store)
                except BaseException as e:
                    if isolate is None or failed is None or cancel.is_set() or not isolate(e):
                        raise
                    with lock:
                        failed[i] = e
        finally:
            store.close()

    def worker(lane: list[int] | None) -> None:
        try:
            while lane is not None:
                run(lane)
                with lock:
                    lane = queue.pop() if queue and not cancel.is_set() else None
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            with lock:
                errors.append(e)
            cancel.set()

    mine = queue.pop()
    threads = [threading.Thread(target=worker, args=(queue.pop(),), name=f"valuelens-lane-{k}", daemon=True)
               for k in range(1, workers)]
    for t in threads:
        t.start()
    worker(mine)
    try:
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C while waiting: the lanes commit their chunk in hand and stop
        cancel.set()
        for t in threads:
            t.join()
        raise
    if errors:  # the first real error; the other lanes' Cancelled only follow from it
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return results
