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

from .maxsim import balanced_bounds, threads

__all__ = ["page_centroids"]


@njit(cache=True)
def _kmeans_page(x, k, iters, out) -> None:
    n, dim = x.shape
    for c in range(k):  # evenly spaced starting rows
        r = (c * n) // k
        for t in range(dim):
            out[c, t] = x[r, t]
    assign = np.zeros(n, dtype=np.int64)
    sums = np.zeros((k, dim), dtype=np.float64)
    norm_sum = np.zeros(k, dtype=np.float64)
    count = np.zeros(k, dtype=np.int64)
    for _ in range(iters + 1):
        for j in range(n):
            best, arg = -np.inf, 0
            for c in range(k):
                s = 0.0
                for t in range(dim):
                    s += x[j, t] * out[c, t]
                if s > best:
                    best, arg = s, c
            assign[j] = arg
        sums[:] = 0.0
        norm_sum[:] = 0.0
        count[:] = 0
        for j in range(n):
            c = assign[j]
            count[c] += 1
            nrm = 0.0
            for t in range(dim):
                sums[c, t] += x[j, t]
                nrm += x[j, t] * x[j, t]
            norm_sum[c] += np.sqrt(nrm)
        for c in range(k):
            if count[c] == 0:  # keep an empty cluster's centroid where it was
                continue
            length = 0.0
            for t in range(dim):
                length += sums[c, t] * sums[c, t]
            length = np.sqrt(length)
            scale = norm_sum[c] / count[c] / length if length > 0 else 0.0
            for t in range(dim):
                out[c, t] = sums[c, t] * scale


@njit(parallel=True, cache=True)
def _centroids(vectors, offsets, coff, iters, bounds, out) -> None:
    for b in prange(bounds.size - 1):
        for d in range(bounds[b], bounds[b + 1]):
            x = vectors[offsets[d] : offsets[d + 1]].astype(np.float64)
            k = coff[d + 1] - coff[d]
            if k > 0:
                buf = np.empty((k, x.shape[1]), dtype=np.float64)
                _kmeans_page(x, k, iters, buf)
                out[coff[d] : coff[d + 1]] = buf.astype(np.float32)


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
    n_docs = offsets.size - 1
    lo = 0
    with threads(n_threads):
        while lo < n_docs:  # slices of ~1M vectors, widened to float32 one at a time
            hi = int(np.searchsorted(offsets, offsets[lo] + (1 << 20), side="right")) - 1
            hi = min(max(hi, lo + 1), n_docs)
            a, b = int(offsets[lo]), int(offsets[hi])
            x = np.ascontiguousarray(vectors[a:b], dtype=np.float32)
            sub_off = offsets[lo : hi + 1] - a
            sub_coff = coff[lo : hi + 1] - coff[lo]
            part = np.zeros((int(sub_coff[-1]), vectors.shape[1]), dtype=np.float32)
            if part.size:
                _centroids(x, sub_off, sub_coff, int(iters), balanced_bounds(sub_off, 4 * numba.get_num_threads()), part)
            out[coff[lo] : coff[hi]] = part
            lo = hi
    return out, coff
