"""Plain NumPy oracles for the Numba kernels. Slow, obvious, float64."""

from __future__ import annotations

import numpy as np

__all__ = ["maxsim_reference", "topk_reference", "maxsim_int8_reference", "maxsim_binary_reference", "page_centroids_reference"]


def maxsim_reference(queries, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MaxSim of every query against every document, one page at a time.

    Parameters
    ----------
    queries : list of (m_q, dim) arrays
    vectors : (N, dim) array
        Document vectors, documents stored back to back.
    offsets : (n_docs + 1,) int array
        Document ``d`` owns ``vectors[offsets[d]:offsets[d + 1]]``.

    Returns
    -------
    (n_queries, n_docs) float32
        ``sum_i max_j <q_i, d_j>``; an empty document scores ``-inf``, an empty query ``0``.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = offsets.size - 1
    out = np.empty((len(queries), n_docs), dtype=np.float32)
    for qi, q in enumerate(queries):
        q = np.asarray(q, dtype=np.float64)
        for d in range(n_docs):
            doc = vectors[offsets[d] : offsets[d + 1]]
            if q.shape[0] == 0:
                out[qi, d] = 0.0
            elif doc.shape[0] == 0:
                out[qi, d] = -np.inf
            else:
                out[qi, d] = (q @ doc.T).max(axis=1).sum()
    return out


def topk_reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` per row by a full stable sort: descending score, lower index first on ties."""
    scores = np.asarray(scores)
    k = min(int(k), scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def maxsim_int8_reference(queries, codes: np.ndarray, scales: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The int8 kernels' arithmetic in NumPy: per-token quantised queries, exact integer dots."""
    from .quantized import quantize_int8

    offsets = np.asarray(offsets, dtype=np.int64)
    out = np.empty((len(queries), offsets.size - 1), dtype=np.float32)
    for qi, q in enumerate(queries):
        qc, qs = quantize_int8(np.asarray(q, np.float32))
        for d in range(offsets.size - 1):
            a, b = offsets[d], offsets[d + 1]
            if a == b:
                out[qi, d] = -np.inf
                continue
            dots = (qc.astype(np.int64) @ codes[a:b].astype(np.int64).T).astype(np.float64)
            out[qi, d] = ((dots * scales[a:b][None, :].astype(np.float64)).max(axis=1) * qs).sum()
    return out


def maxsim_binary_reference(queries, vectors_or_signs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Hamming MaxSim from unpacked signs: ``sum_i max_j <sign(q_i), sign(d_j)>`` with sign in {-1, +1}."""
    s = np.where(np.asarray(vectors_or_signs) > 0, 1.0, -1.0)
    return maxsim_reference([np.where(np.asarray(q) > 0, 1.0, -1.0) for q in queries], s, offsets)


def page_centroids_reference(vectors, offsets, n_centroids: int = 4, iters: int = 4):
    """NumPy version of :func:`colprune.kernels.summary.page_centroids` (same algorithm)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    out, coff = [], [0]
    for d in range(offsets.size - 1):
        x = vectors[offsets[d] : offsets[d + 1]]
        n, k = x.shape[0], min(int(n_centroids), x.shape[0])
        cent = x[[(c * n) // k for c in range(k)]].copy() if k else np.zeros((0, vectors.shape[1]))
        for _ in range(iters + 1):
            if not k:
                break
            assign = np.argmax(x @ cent.T, axis=1)
            for c in range(k):
                members = x[assign == c]
                if len(members) == 0:
                    continue
                s = members.sum(axis=0)
                length = np.linalg.norm(s)
                cent[c] = s * (np.linalg.norm(members, axis=1).mean() / length) if length > 0 else 0.0
        out.append(cent)
        coff.append(coff[-1] + k)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, vectors.shape[1]), np.float32), np.array(coff)
