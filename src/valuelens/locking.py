"""One exclusive, non-blocking lock file per folder (POSIX ``flock``).

Used for the output directory of a run (``audit.locked``) and the dataset
cache (``data.fetch``): a second process gets one clear line, never a wait.
The lock goes with the process, so a killed run leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from .errors import ValueLensError, os_error


@contextlib.contextmanager
def exclusive(folder: Path, name: str, *, unusable: str, busy: str) -> Iterator[None]:
    """Hold ``folder/name`` locked; ``unusable``: what the folder cannot be used as
    (an OSError's message), ``busy``: the line when another process holds it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / name, "a")
    except OSError as e:
        raise os_error(folder, e, unusable) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueLensError(f"{folder}: {busy}") from None
        except OSError as e:
            raise os_error(folder / name, e, "cannot lock") from None
        yield
