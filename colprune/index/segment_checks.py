"""The defences every segment reader shares: damage turned into CorruptionError, checksums,
no links or storage outside the file, CSR offsets checked before a kernel sees them.

Used by :mod:`~colprune.index.segment_reader` (format 3), :mod:`~colprune.index.legacy`
(formats 1 and 2) and, for the checksums, by :mod:`~colprune.index.segment_writer`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, TypeVar

import h5py
import numpy as np
import xxhash

from ..errors import ColpruneError, CorruptionError, FormatError
from . import layout as L

__all__ = ["guarded", "hash_bytes", "whole_hashed", "open_h5_safely", "check_no_outside_reads", "check_offsets"]

F = TypeVar("F", bound=Callable[..., Any])

# what HDF5 and the decoders raise on a damaged file
_DAMAGE = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError,
           UnicodeDecodeError, json.JSONDecodeError, OverflowError, MemoryError)


def guarded(method: F) -> F:
    """Turn what HDF5 raises on a damaged file (OSError, KeyError, ...) into a CorruptionError naming the file.

    Decorates methods of objects with a ``path`` attribute.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ColpruneError, FileNotFoundError):  # a missing file is not damage: callers may retry
            raise
        except _DAMAGE as e:
            raise CorruptionError(f"{self.path}: unreadable or damaged ({type(e).__name__}: {e})") from None

    return wrapper  # type: ignore[return-value]


def hash_bytes(*arrays: np.ndarray) -> int:
    """xxh3_64 of the arrays' bytes, back to back (C order)."""
    if len(arrays) == 1 and arrays[0].flags.c_contiguous:  # the common case, without a hasher object
        return xxhash.xxh3_64_intdigest(arrays[0])
    h = xxhash.xxh3_64()
    for a in arrays:
        h.update(a if a.flags.c_contiguous else np.ascontiguousarray(a))
    return h.intdigest()


def whole_hashed(f: h5py.File) -> list[str]:
    """Datasets hashed as a whole (everything not covered by a per-document hash group)."""
    per_doc = {n for names in L.DOC_HASH_GROUPS.values() for n in names}
    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and name not in per_doc and not name.startswith(L.SIGNALS + "/"):
            out.append(name)

    f.visititems(visit)
    return sorted(out)


def open_h5_safely(path: str) -> h5py.File:
    """Open an HDF5 file read-only without the HDF5 file lock (segments are immutable)."""
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no file {path}") from None
        raise FormatError(f"cannot read {path} as HDF5: it is not an HDF5 file, or it is truncated or corrupted "
                          f"(h5py: {e})") from None


def check_no_outside_reads(f: h5py.File, path: str) -> None:
    """Refuse soft and external links, external raw storage and virtual datasets anywhere in ``f``."""
    stack = [("", f)]
    while stack:
        prefix, grp = stack.pop()
        for key in grp.keys():
            name = f"{prefix}/{key}" if prefix else key
            link = grp.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise FormatError(f"{path}: {name!r} is a {type(link).__name__}; colprune files hold no links (refused: "
                                  "it could make colprune read another file)")
            obj = grp[key]
            if isinstance(obj, h5py.Group):
                stack.append((name, obj))
                continue
            plist = obj.id.get_create_plist()
            if plist.get_external_count() > 0:
                raise FormatError(f"{path}: dataset {name!r} keeps its data in external files (refused: "
                                  "colprune reads only inside the file)")
            if plist.get_layout() == h5py.h5d.VIRTUAL:
                raise FormatError(f"{path}: dataset {name!r} is a virtual dataset (refused: it maps other files)")


def check_offsets(off: np.ndarray, n: int, total: int, what: str, *, strict: bool = False) -> np.ndarray:
    """CSR offsets of ``n`` rows over ``total`` values: start 0, non-decreasing, end at ``total``.

    Returns the offsets as ``(n + 1,)`` int64; ``strict`` also refuses empty rows.
    """
    off = np.asarray(off)
    if off.dtype.kind not in "iu" or off.shape != (n + 1,):
        raise CorruptionError(f"{what}: expected ({n + 1},) integer offsets, found shape {off.shape} dtype {off.dtype}")
    off = off.astype(np.int64)
    if n + 1 and (off[0] != 0 or off[-1] != total):
        raise CorruptionError(f"{what}: offsets run from {off[0]} to {off[-1]}, expected 0 to {total}")
    steps = np.diff(off)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if bad.size:
        raise CorruptionError(f"{what}: offsets {'not increasing' if strict else 'decreasing'} at row {int(bad[0])}")
    return off
