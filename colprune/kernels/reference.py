"""Plain NumPy oracles for the Numba kernels. Slow, obvious, float64."""

from __future__ import annotations

import numpy as np

__all__ = ["maxsim_reference", "topk_reference", "maxsim_int8_reference", "maxsim_binary_reference", "page_centroids_reference",
           "encode_residual_reference", "decode_residual_reference", "maxsim_residual_reference",
           "inverted_lists_reference", "probe_docs_reference", "centroid_maxsim_reference"]


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


# -- residual codec and centroid index (colprune.kernels.residual, colprune.kernels.ivf) --------

def encode_residual_reference(x, centroids, cutoffs, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """One vector at a time: exact float64 distances, buckets by ``searchsorted``, bits set one by one.

    The residual is the float32 difference ``x - C[code]``, as the kernel computes it.
    """
    x32 = np.asarray(x, dtype=np.float32)
    c32 = np.asarray(centroids, dtype=np.float32)
    x, c = x32.astype(np.float64), c32.astype(np.float64)
    cutoffs = np.asarray(cutoffs, dtype=np.float32)
    n, dim = x.shape
    codes = np.zeros(n, dtype=np.uint16)
    packed = np.zeros((n, dim * nbits // 8), dtype=np.uint8)
    for j in range(n):
        dist = ((c - x[j]) ** 2).sum(axis=1)
        codes[j] = int(np.argmin(dist))  # first minimum: ties go to the lowest id
        r = x32[j] - c32[codes[j]]
        for d in range(dim):
            b = int(np.searchsorted(cutoffs[d], r[d], side="right"))
            packed[j, (d * nbits) // 8] |= b << ((d * nbits) % 8)
    return codes, packed


def decode_residual_reference(codes, packed, centroids, weights, nbits: int) -> np.ndarray:
    """``centroids[code][d] + weights[d, bucket_d]``, each bucket read from its byte and shift."""
    c = np.asarray(centroids, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    n, dim = len(codes), c.shape[1]
    out = np.zeros((n, dim), dtype=np.float64)
    for j in range(n):
        for d in range(dim):
            b = (int(packed[j, (d * nbits) // 8]) >> ((d * nbits) % 8)) & ((1 << nbits) - 1)
            out[j, d] = c[int(codes[j]), d] + w[d, b]
    return out.astype(np.float32)


def maxsim_residual_reference(queries, codes, packed, offsets, centroids, weights, nbits: int, docs=None) -> np.ndarray:
    """:func:`maxsim_reference` on the decoded vectors (columns ``docs`` if given)."""
    out = maxsim_reference(queries, decode_residual_reference(codes, packed, centroids, weights, nbits), offsets)
    return out if docs is None else out[:, np.asarray(docs, dtype=np.int64)]


def inverted_lists_reference(codes, offsets, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """A Python set per centroid, filled document by document."""
    lists: list[set] = [set() for _ in range(int(n_centroids))]
    for d in range(len(offsets) - 1):
        for j in range(int(offsets[d]), int(offsets[d + 1])):
            lists[int(codes[j])].add(d)
    list_offsets = np.zeros(int(n_centroids) + 1, dtype=np.int64)
    list_offsets[1:] = np.cumsum([len(s) for s in lists])
    docs = [d for s in lists for d in sorted(s)]
    return list_offsets, np.array(docs, dtype=np.int32)


def probe_docs_reference(query_centroid_scores, nprobe: int, list_offsets, list_docs, n_docs: int) -> np.ndarray:
    """Each token's ``nprobe`` best centroids by a stable sort (ties: lower id), their lists united."""
    qcs = np.asarray(query_centroid_scores, dtype=np.float64)
    found: set = set()
    for row in qcs:
        for c in np.argsort(-row, kind="stable")[: int(nprobe)]:
            found.update(int(d) for d in list_docs[list_offsets[c]:list_offsets[c + 1]])
    return np.array(sorted(found), dtype=np.int64)


def centroid_maxsim_reference(query_centroid_scores, codes, offsets, docs) -> np.ndarray:
    """``sum_i max_{j in doc} qcs[i, codes[j]]`` document by document (empty: ``-inf``; no tokens: 0)."""
    qcs = np.asarray(query_centroid_scores, dtype=np.float64)
    out = np.empty(len(docs), dtype=np.float32)
    for k, d in enumerate(docs):
        a, b = int(offsets[d]), int(offsets[d + 1])
        if qcs.shape[0] == 0:
            out[k] = 0.0
        elif a == b:
            out[k] = -np.inf
        else:
            out[k] = qcs[:, np.asarray(codes[a:b], dtype=np.int64)].max(axis=1).sum()
    return out
