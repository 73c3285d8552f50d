"""The allocator setting of the hf backend: in effect where it claims to be,
off when asked, and seen by glibc itself (mallinfo2), not just by our flag."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, os, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
from valuelens.models.hf_alloc import tune_malloc
applied = tune_malloc()
before = libc.mallinfo2().hblkhd
p = libc.malloc(8 << 20)  # 8 MiB: above glibc's default mmap threshold
after = libc.mallinfo2().hblkhd
print(applied, after - before)
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="the allocator setting applies to Linux with glibc only")


def run_probe(env_value: str | None) -> tuple[bool, int]:
    import os

    env = dict(os.environ)
    env.pop("VALUELENS_MALLOC_TUNING", None)
    if env_value is not None:
        env["VALUELENS_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    applied, mapped = out.stdout.split()
    return applied == "True", int(mapped)


@glibc
def test_tuned_blocks_come_from_the_heap():
    applied, mapped = run_probe(None)
    assert applied
    assert mapped == 0  # served from the heap, reusable without page faults


@glibc
def test_opt_out_leaves_glibc_defaults():
    applied, mapped = run_probe("0")
    assert not applied
    assert mapped >= 8 << 20  # glibc's default: a fresh mmap for a block this size


def test_applied_once(monkeypatch):
    from valuelens.models import hf_alloc

    calls = []
    monkeypatch.setattr(hf_alloc, "_applied", None)
    monkeypatch.setattr(hf_alloc, "_apply", lambda: calls.append(1) or True)
    assert hf_alloc.tune_malloc() and hf_alloc.tune_malloc()
    assert calls == [1]
