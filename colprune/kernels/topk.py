"""Exact top-k selection over a score matrix."""

from __future__ import annotations

import numpy as np

__all__ = ["topk"]


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` documents per query.

    Parameters
    ----------
    scores : (n_queries, n_docs) float array
    k : int
        Clipped to ``n_docs``; must be positive.

    Returns
    -------
    indices : (n_queries, min(k, n_docs)) int64
    values : (n_queries, min(k, n_docs)) same dtype as ``scores``
        Sorted by descending score; ties go to the lower document index, so the result
        is deterministic and equal to a full stable sort.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_queries, n_docs), got shape {scores.shape}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_q, n_docs = scores.shape
    k = min(int(k), n_docs)
    idx = np.empty((n_q, k), dtype=np.int64)
    if k == 0:
        return idx, np.empty((n_q, 0), dtype=scores.dtype)
    for q in range(n_q):
        row = scores[q]
        if 4 * k >= n_docs:
            idx[q] = np.argsort(-row, kind="stable")[:k]
            continue
        # argpartition finds the k-th value; every tie with it is a candidate so the
        # boundary is broken by index, not by whatever argpartition happened to pick.
        kth = row[np.argpartition(-row, k - 1)[k - 1]]
        cand = np.flatnonzero(row >= kth)
        order = np.lexsort((cand, -row[cand]))
        idx[q] = cand[order[:k]]
    return idx, np.take_along_axis(scores, idx, axis=1)
