"""Input checks at memory speed, for bulk loads (NumPy's ``isfinite`` on float16 runs ~3x slower)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["first_nonfinite_row"]


@njit(cache=True)
def _first_bad_half(bits) -> int:
    # a half is NaN or infinite exactly when its five exponent bits are all ones
    for j in range(bits.shape[0]):
        bad = 0
        for t in range(bits.shape[1]):
            bad |= np.int32((bits[j, t] & 0x7C00) == 0x7C00)
        if bad:
            return j
    return -1


@njit(cache=True)
def _first_bad_single(bits) -> int:
    for j in range(bits.shape[0]):
        bad = 0
        for t in range(bits.shape[1]):
            bad |= np.int32((bits[j, t] & 0x7F800000) == 0x7F800000)
        if bad:
            return j
    return -1


def first_nonfinite_row(x: np.ndarray) -> int:
    """Index of the first row of ``x`` (N, dim) holding a NaN or an infinity; -1 if none.

    float16 and float32 are checked on their bit patterns in one pass; other dtypes with NumPy.
    """
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {x.shape}")
    if x.dtype in (np.float16, np.float32) and x.size:
        view = np.ascontiguousarray(x).view(np.uint16 if x.dtype == np.float16 else np.uint32)
        return int((_first_bad_half if x.dtype == np.float16 else _first_bad_single)(view))
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    return int(bad[0]) if bad.size else -1
