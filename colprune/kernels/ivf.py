"""Centroid index over residual codes (PLAID): inverted lists, probing, centroid interaction.

A segment's inverted lists map each centroid to the ascending documents holding at least one
vector with that code. A query probes each token's ``nprobe`` best centroids (by
``query_centroid_scores = Q @ C.T``), takes the union of their lists, and ranks those documents
by the centroid interaction ``sum_i max_{j in doc} qcs[i, codes[j]]`` before exact scoring.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..errors import InvalidInputError
from .maxsim import FASTMATH, balanced_bounds, threads

__all__ = ["inverted_lists", "probe_docs", "centroid_maxsim"]


def _ints(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "ui" or a.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D integer array, got {a.shape} {a.dtype}")
    return a


def _offsets(offsets, n: int, name: str = "offsets") -> np.ndarray:
    offsets = _ints(offsets, name)
    if offsets.size < 1:
        raise InvalidInputError(f"{name} must hold n + 1 entries, got none")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise InvalidInputError(f"{name} must rise from 0 to {n}, got {offsets[0]}..{offsets[-1]}")
    return offsets


def _scores(qcs) -> np.ndarray:
    if hasattr(qcs, "detach"):
        qcs = qcs.detach().cpu().float().numpy()
    qcs = np.asarray(qcs)
    if qcs.dtype.kind != "f" or qcs.ndim != 2 or qcs.shape[1] < 1:
        raise InvalidInputError(f"query_centroid_scores must be a (m, K) float array, got {qcs.shape} {qcs.dtype}")
    qcs = np.ascontiguousarray(qcs, dtype=np.float32)
    if not np.isfinite(qcs).all():
        raise InvalidInputError("query_centroid_scores contains NaN or infinite values")
    return qcs


def inverted_lists(codes, offsets, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Each centroid's documents: ``(list_offsets (K+1,) int64, list_docs (M,) int32)``.

    Centroid ``k``'s list is ``list_docs[list_offsets[k]:list_offsets[k + 1]]``: the ascending
    unique documents (0-based in this segment) with at least one vector coded ``k``.

    Parameters
    ----------
    codes : (N,) uint16 centroid ids, each < ``n_centroids``
    offsets : (n_docs + 1,) int64; document ``d`` owns ``codes[offsets[d]:offsets[d + 1]]``
    n_centroids : int, K >= 1
    """
    if isinstance(n_centroids, bool) or not isinstance(n_centroids, (int, np.integer)) or n_centroids < 1:
        raise InvalidInputError(f"n_centroids must be a positive integer, got {n_centroids!r}")
    k = int(n_centroids)
    codes = _ints(codes, "codes")
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= k):
        raise InvalidInputError(f"codes must be centroid ids in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
    offsets = _offsets(offsets, codes.size)
    codes = np.ascontiguousarray(codes, np.int64)  # one compiled walk for every integer dtype (uint64 included)
    list_offsets = np.zeros(k + 1, dtype=np.int64)
    last = np.full(k, -1, dtype=np.int64)
    _count_lists(codes, offsets, last, list_offsets)
    np.cumsum(list_offsets, out=list_offsets)
    list_docs = np.empty(int(list_offsets[-1]), dtype=np.int32)
    last[:] = -1
    _fill_lists(codes, offsets, last, list_offsets[:-1].copy(), list_docs)
    return list_offsets, list_docs


@njit(cache=True)
def _count_lists(codes, offsets, last, counts) -> None:
    # counts[k + 1] = documents holding centroid k; documents are visited in order, so `last` dedups
    for d in range(offsets.shape[0] - 1):
        for j in range(offsets[d], offsets[d + 1]):
            c = codes[j]
            if last[c] != d:
                last[c] = d
                counts[c + 1] += 1


@njit(cache=True)
def _fill_lists(codes, offsets, last, cursor, list_docs) -> None:
    # the same walk: each list receives its documents ascending
    for d in range(offsets.shape[0] - 1):
        for j in range(offsets[d], offsets[d + 1]):
            c = codes[j]
            if last[c] != d:
                last[c] = d
                list_docs[cursor[c]] = d
                cursor[c] += 1


def _top_centroids(qcs: np.ndarray, nprobe: int) -> np.ndarray:
    # each row's nprobe highest scores; among equal scores the lower centroid id first
    m, k = qcs.shape
    if nprobe >= k:
        return np.broadcast_to(np.arange(k), (m, k))
    thr = -np.partition(-qcs, nprobe - 1, axis=1)[:, nprobe - 1]
    out = np.empty((m, nprobe), dtype=np.int64)
    for i in range(m):
        above = np.flatnonzero(qcs[i] > thr[i])
        tied = np.flatnonzero(qcs[i] == thr[i])[: nprobe - above.size]
        out[i] = np.concatenate([above, tied])
    return out


def probe_docs(query_centroid_scores, nprobe: int, list_offsets, list_docs, n_docs: int) -> np.ndarray:
    """Documents in the inverted lists of each query token's ``nprobe`` best centroids: ``(n,)`` int64, sorted, unique.

    Parameters
    ----------
    query_centroid_scores : (m, K) float32, ``Q @ C.T``
    nprobe : int >= 1 (more than K probes every list)
    list_offsets, list_docs : from :func:`inverted_lists`
    n_docs : int, the segment's document count (every listed document is below it)
    """
    qcs = _scores(query_centroid_scores)
    if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
        raise InvalidInputError(f"nprobe must be a positive integer, got {nprobe!r}")
    if isinstance(n_docs, bool) or not isinstance(n_docs, (int, np.integer)) or n_docs < 0:
        raise InvalidInputError(f"n_docs must be a non-negative integer, got {n_docs!r}")
    list_docs = _ints(list_docs, "list_docs")
    list_offsets = _offsets(list_offsets, list_docs.size, "list_offsets")
    if list_offsets.size - 1 != qcs.shape[1]:
        raise InvalidInputError(f"list_offsets has {list_offsets.size - 1} lists, query_centroid_scores {qcs.shape[1]} centroids")
    if list_docs.size and (int(list_docs.min()) < 0 or int(list_docs.max()) >= n_docs):
        raise InvalidInputError(f"list_docs must be documents in [0, n_docs={n_docs})")
    cents = np.unique(_top_centroids(qcs, int(nprobe)))
    mark = np.zeros(int(n_docs), dtype=bool)
    for c in cents:
        mark[list_docs[list_offsets[c]:list_offsets[c + 1]]] = True
    return np.flatnonzero(mark).astype(np.int64)


def centroid_maxsim(query_centroid_scores, codes, offsets, docs) -> np.ndarray:
    """PLAID centroid interaction of one query with documents: ``(n,)`` float32.

    ``out[k] = sum_i max_{j in docs[k]} qcs[i, codes[j]]``; an empty document scores ``-inf``.

    Parameters
    ----------
    query_centroid_scores : (m, K) float32
    codes : (N,) uint16; offsets : (n_docs + 1,) int64
    docs : (n,) int64 document indices
    """
    qcs = _scores(query_centroid_scores)
    codes = _ints(codes, "codes")
    if codes.size and int(codes.max()) >= qcs.shape[1]:
        raise InvalidInputError(f"codes must be centroid ids below K={qcs.shape[1]}, got {int(codes.max())}")
    offsets = _offsets(offsets, codes.size)
    docs = _ints(docs, "docs")
    n_docs = offsets.size - 1
    if docs.size and (int(docs.min()) < 0 or int(docs.max()) >= n_docs):
        raise InvalidInputError(f"docs must be document indices in [0, {n_docs})")
    docs = np.ascontiguousarray(docs, dtype=np.int64)
    out = np.empty(docs.size, dtype=np.float32)
    if qcs.shape[0] == 0:
        out[:] = 0.0
        return out
    if docs.size:
        work = np.concatenate([[0], np.cumsum(offsets[docs + 1] - offsets[docs] + 1)])
        with threads(None):
            bounds = balanced_bounds(work, 4 * numba.get_num_threads())
            _centroid_maxsim(np.ascontiguousarray(qcs.T), np.ascontiguousarray(codes), offsets, docs, bounds, out)
    return out


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _centroid_maxsim(qcsT, codes, offsets, docs, bounds, out) -> None:
    # qcsT: (K, m), so each vector's code reads one contiguous row of m scores
    m = qcsT.shape[1]
    for ch in prange(bounds.size - 1):
        best = np.empty(m, dtype=np.float32)
        for k in range(bounds[ch], bounds[ch + 1]):
            d = docs[k]
            best[:] = -np.inf
            for j in range(offsets[d], offsets[d + 1]):
                row = qcsT[np.int64(codes[j])]
                for i in range(m):
                    best[i] = max(best[i], row[i])
            s = np.float32(0.0)
            for i in range(m):
                s += best[i]
            out[k] = s
