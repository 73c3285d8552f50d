"""glibc allocator settings for CPU inference (``HFBackend``).

A forward pass allocates and frees activation tensors of a few MB each,
thousands of times per audit. glibc serves blocks above its mmap threshold
(128 KiB, adapting up to 32 MiB) with fresh ``mmap`` calls and trims the heap
top once 2x that much is free, so the same memory is unmapped and
page-faulted (zeroed) again and again. Setting both thresholds keeps freed
blocks in the heap for reuse: on the embedded model the first-token probe
ran 1.13x faster (``bench/malloc_tuning.py``, 70 items, 2 cores; peak RSS
unchanged at 1.1 GB), with bit-identical probabilities: this only decides
where tensors live, not what is computed.

The setting is process-wide, applied once, on Linux with glibc only.
``VALUELENS_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20  # free heap top kept before returning memory to the OS

_applied: bool | None = None


def tune_malloc() -> bool:
    """Apply the thresholds once; True when they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("VALUELENS_MALLOC_TUNING", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
