"""Handing freed heap memory back to the OS between a build's commits (glibc only)."""

from __future__ import annotations

import functools
from typing import Callable

__all__ = ["malloc_trim", "release_freed_memory"]


@functools.lru_cache(maxsize=1)
def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        import ctypes
        import ctypes.util

        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the OS (glibc only; elsewhere nothing).

    The encoder's attention maps are large, short-lived buffers; once glibc's adaptive mmap
    threshold has risen above their size they come from the heap, and without a trim a long
    build's resident memory creeps up by hundreds of MB of memory that is already free.
    """
    trim = malloc_trim()
    if trim is not None:
        trim(0)
