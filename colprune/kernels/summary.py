"""Per-page summaries for two-stage search: a few centroids per page.

Each page's vectors are clustered by a short spherical k-means (deterministic: centroids
start at evenly spaced rows, a fixed number of Lloyd steps, assignment by dot product).
A centroid is the unit mean direction of its members scaled by their mean norm, so it
stays on the scale of the vectors it stands for. MaxSim over the centroids ranks pages
cheaply; the best candidates are then scored exactly.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .maxsim import FASTMATH, balanced_bounds, f16_to_f32, threads

__all__ = ["page_centroids"]


@njit(cache=True, fastmath=FASTMATH)
def _kmeans_page(x, norms, k, iters, out, assign, sums, norm_sum, count) -> None:
    # x: (n, dim) float32 rows of one page; norms: their lengths; out: (k, dim) centroids
    n, dim = x.shape
    for c in range(k):  # evenly spaced starting rows
        r = (c * n) // k
        for t in range(dim):
            out[c, t] = x[r, t]
    for _ in range(iters + 1):
        for j in range(n):
            best, arg = -np.inf, 0
            for c in range(k):
                s = np.float32(0.0)
                for t in range(dim):
                    s += x[j, t] * out[c, t]
                if s > best:
                    best, arg = s, c
            assign[j] = arg
        sums[:k] = np.float32(0.0)
        norm_sum[:k] = np.float32(0.0)
        count[:k] = 0
        for j in range(n):
            c = assign[j]
            count[c] += 1
            norm_sum[c] += norms[j]
            for t in range(dim):
                sums[c, t] += x[j, t]
        for c in range(k):
            if count[c] == 0:  # keep an empty cluster's centroid where it was
                continue
            length = np.float32(0.0)
            for t in range(dim):
                length += sums[c, t] * sums[c, t]
            length = np.sqrt(length)
            scale = norm_sum[c] / np.float32(count[c]) / length if length > 0 else np.float32(0.0)
            for t in range(dim):
                out[c, t] = sums[c, t] * scale


@njit(cache=True)
def _longest(offsets) -> int:
    out = 0
    for d in range(offsets.size - 1):
        out = max(out, offsets[d + 1] - offsets[d])
    return out


@njit(cache=True)
def _scratch(longest, kmax, dim):
    # one thread's buffers, reused page after page
    return (np.empty((longest, dim), dtype=np.float32), np.empty(longest, dtype=np.float32),
            np.empty(longest, dtype=np.int64), np.empty((kmax, dim), dtype=np.float32),
            np.empty(kmax, dtype=np.float32), np.empty(kmax, dtype=np.int64))


@njit(cache=True, inline="always", fastmath=FASTMATH)
def _load_half(bits, a, n, x, norms) -> None:
    for j in range(n):
        nrm = np.float32(0.0)
        for t in range(x.shape[1]):
            v = f16_to_f32(bits[a + j, t])
            x[j, t] = v
            nrm += v * v
        norms[j] = np.sqrt(nrm)


@njit(cache=True, inline="always", fastmath=FASTMATH)
def _load_float(vectors, a, n, x, norms) -> None:
    for j in range(n):
        nrm = np.float32(0.0)
        for t in range(x.shape[1]):
            v = vectors[a + j, t]
            x[j, t] = v
            nrm += v * v
        norms[j] = np.sqrt(nrm)


# Two kernels, not one built by a factory around the loader: Numba's cache would not keep a
# closure over a jitted function, and every process would compile again (3.5 s). Measured:
# `_tiles.stable` on the loader does not rescue it (a new cache entry in every process).
@njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def _centroids_half(bits, offsets, coff, iters, bounds, out) -> None:
    longest, kmax = _longest(offsets), _longest(coff)
    for b in prange(bounds.size - 1):
        x, norms, assign, sums, norm_sum, count = _scratch(longest, kmax, bits.shape[1])
        for d in range(bounds[b], bounds[b + 1]):
            n, k = offsets[d + 1] - offsets[d], coff[d + 1] - coff[d]
            if k > 0:
                _load_half(bits, offsets[d], n, x, norms)
                _kmeans_page(x[:n], norms, k, iters, out[coff[d] : coff[d + 1]], assign, sums, norm_sum, count)


@njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def _centroids_float(vectors, offsets, coff, iters, bounds, out) -> None:
    longest, kmax = _longest(offsets), _longest(coff)
    for b in prange(bounds.size - 1):
        x, norms, assign, sums, norm_sum, count = _scratch(longest, kmax, vectors.shape[1])
        for d in range(bounds[b], bounds[b + 1]):
            n, k = offsets[d + 1] - offsets[d], coff[d + 1] - coff[d]
            if k > 0:
                _load_float(vectors, offsets[d], n, x, norms)
                _kmeans_page(x[:n], norms, k, iters, out[coff[d] : coff[d + 1]], assign, sums, norm_sum, count)


def page_centroids(
    vectors: np.ndarray, offsets: np.ndarray, n_centroids: int = 4, *, iters: int = 4, n_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Summarise every page by ``min(n_centroids, n_i)`` centroids.

    Parameters
    ----------
    vectors : (N, dim) float array (float16 is widened)
    offsets : (n_docs + 1,) int64
    n_centroids : centroids per page
    iters : Lloyd steps after the initial assignment

    Returns
    -------
    centroids : (C, dim) float32
    centroid_offsets : (n_docs + 1,) int64 — a CSR store like the input
    """
    if int(n_centroids) < 1:
        raise ValueError(f"n_centroids must be >= 1, got {n_centroids}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    counts = np.minimum(np.diff(offsets), int(n_centroids))
    coff = np.r_[0, np.cumsum(counts)].astype(np.int64)
    out = np.zeros((int(coff[-1]), vectors.shape[1]), dtype=np.float32)
    if out.size:
        if vectors.dtype == np.float16:  # widened row by row inside the kernel, no float32 copy of the store
            kernel, data = _centroids_half, np.ascontiguousarray(vectors).view(np.uint16)
        else:
            kernel, data = _centroids_float, np.ascontiguousarray(vectors, dtype=np.float32)
        with threads(n_threads):
            kernel(data, offsets, coff, int(iters), balanced_bounds(offsets, 4 * numba.get_num_threads()), out)
    return out, coff
