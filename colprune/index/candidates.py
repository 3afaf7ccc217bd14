"""Candidate search through the centroid index of a residual collection (PLAID's candidate generation).

A residual collection (codec ``residual1/2/4``) stores every vector as the id of its nearest
codebook centroid plus a few bits per dimension, and each segment stores *inverted lists*: for
every centroid, the pages holding a vector of it. ``Index.search(q, k, candidates=N, nprobe=P)``
then scores only a shortlist:

1. ``qcs = Q @ C.T``: every query token against every centroid, once per query batch;
2. per segment, each query token probes its ``P`` best centroids and the union of their lists
   is the segment's probed pages (as :func:`colprune.kernels.probe_docs` finds them); deleted
   pages and pages a ``where`` filter rejects are dropped **before** any scoring;
3. the probed pages are ranked by PLAID's *pruned* centroid interaction, from the probed lists
   alone (each token counts only its probed centroids: :func:`probe_scores`); the best
   ``REFINE_FACTOR * N`` of all segments are ranked again by the full centroid interaction,
   ``sum_i max_j qcs[i, code_j]`` over every vector of the page
   (:func:`colprune.kernels.centroid_maxsim`; one codebook, so scores of different segments
   compare), and the best ``N`` kept;
4. those ``N`` pages are scored exactly on their decoded residuals
   (:func:`colprune.kernels.maxsim_residual_csr`), or on the float16 rerank copy when the
   collection keeps one, and the top ``k`` returned.

``nprobe = K`` (every centroid) with ``N`` at least the number of live pages is exact search;
smaller values trade recall for speed. Defaults: :data:`DEFAULT_NPROBE`.

The per-segment centroid ids and lists are read once per process and held in memory (2 bytes per
vector plus 4 bytes per list entry), keyed by the open segment, which is immutable. A query's
work follows the pages it probes, not the collection: nothing is scanned whole per query but a
bit per page.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..kernels import centroid_maxsim, probe_docs, topk
from . import layout as L
from .snapshot import Snapshot

__all__ = ["DEFAULT_NPROBE", "RESIDUAL_CODECS", "check_candidates", "segment_candidates", "centroid_candidates",
           "segment_index", "row_ranges", "top_centroids", "probed_centroids", "probe_segment", "probe_scores", "REFINE_FACTOR"]

#: centroids each query token probes when ``nprobe`` is not given
DEFAULT_NPROBE = 4
#: codecs whose segments carry a centroid index
RESIDUAL_CODECS = ("residual1", "residual2", "residual4")

# segment -> (codes (N,) uint16, list_offsets (K+1,) int64, list_docs (M,) int32), read once per open segment
_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_candidates(codec: str, k: int, candidates: int | None, nprobe: int | None, n_centroids: int,
                     what: str = "this index") -> int | None:
    """Check ``candidates=`` / ``nprobe=`` for a collection of ``codec``; returns ``nprobe`` to use (None: not a
    centroid search).

    On float16/float32 ``candidates`` asks for two-stage search over page summaries and ``nprobe`` is
    refused; on residual codecs ``candidates`` (>= ``k``) asks for the centroid index and ``nprobe`` must
    be within ``1..n_centroids``; other codecs refuse both.
    """
    residual = codec in RESIDUAL_CODECS
    if nprobe is not None:
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)):
            raise InvalidInputError(f"nprobe must be an integer >= 1, got {nprobe!r}")
        if not residual:
            raise InvalidInputError(
                f"nprobe= probes the centroid index of a residual collection; {what} is {codec}"
                + (" (its candidates= search is two-stage, over page summaries)" if codec in ("float16", "float32") else "")
                + ": build with --codec residual2 (dtype='residual2') for the centroid index")
    if not residual:
        return None
    if candidates is None:
        if nprobe is not None:
            raise InvalidInputError(f"nprobe={nprobe} goes with candidates=N (search through the centroid index); "
                                    "without candidates= search is exact and probes nothing")
        return None
    if candidates < k:
        raise InvalidInputError(f"candidates={candidates} is fewer than k={k}: the shortlist scored exactly must "
                                f"hold at least the k hits returned (give candidates >= k, e.g. {max(10 * k, 100)})")
    nprobe = DEFAULT_NPROBE if nprobe is None else int(nprobe)
    if not 1 <= nprobe <= n_centroids:
        raise InvalidInputError(f"nprobe must be from 1 to the codebook's {n_centroids} centroids, got {nprobe}")
    return nprobe


def segment_candidates(qcs: np.ndarray, nprobe: int, list_offsets: np.ndarray, list_docs: np.ndarray,
                       codes: np.ndarray, offsets: np.ndarray, live: np.ndarray | None,
                       n: int) -> tuple[np.ndarray, np.ndarray]:
    """One query's best ``n`` pages of one segment by centroid MaxSim, among the pages its tokens probe.

    Parameters
    ----------
    qcs : (m, K) float32, the query's token-centroid scores
    nprobe : centroids probed per query token
    list_offsets, list_docs : (K + 1,) int64 and (M,) int32, the segment's inverted lists
    codes : (N,) uint16, centroid id of each vector; offsets : (n_docs + 1,) int64
    live : (n_docs,) bool or None; pages that may be returned (deleted and filtered-out ones are False)
    n : pages kept

    Returns
    -------
    ``(docs (<= n,) int64 ascending, scores (<= n,) float32)``: rows within the segment and their
    centroid scores; ties at the cut go to the lower row.
    """
    n_docs = offsets.size - 1
    docs = probe_docs(qcs, nprobe, list_offsets, list_docs, n_docs)
    if live is not None and docs.size:
        docs = docs[live[docs]]
    if docs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    cs = np.asarray(centroid_maxsim(qcs, codes, offsets, docs), np.float32)
    if docs.size > n:
        keep = np.sort(topk(cs[None, :], n)[0][0])
        docs, cs = docs[keep], cs[keep]
    ok = np.isfinite(cs)
    return np.asarray(docs[ok], np.int64), cs[ok]


def segment_index(seg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A residual segment's ``(codes (N,) uint16, list_offsets (K+1,) int64, list_docs (M,) int32)``, read once.

    The lists are read verified (:meth:`Segment.inverted_lists`). The codes are read whole and
    unverified (their checksums cover each page's codes with its residuals): they only rank the
    shortlist, every id is checked below K before it indexes anything
    (:func:`~colprune.kernels.centroid_maxsim`), and the pages returned are scored on vectors read
    verified (:func:`~colprune.index.search.rescore`).
    """
    got = _INDEXES.get(seg)
    if got is None:
        list_offsets, list_docs = seg.inverted_lists()
        if seg.resident is not None and L.CODES in seg.resident:
            codes = seg.resident[L.CODES]
        else:
            codes = seg.rows(L.CODES, 0, seg.n_vectors)
        got = (np.ascontiguousarray(codes, np.uint16), np.asarray(list_offsets, np.int64), np.asarray(list_docs))
        _INDEXES[seg] = got
    return got


def probed_centroids(qcs: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query token's ``nprobe`` best centroids (ties to the lower id), and each token's worst probed score.

    Returns ``(cents (m, min(nprobe, K)) int64, floor (m,) float32)``.
    """
    m, k = qcs.shape
    if nprobe >= k:
        return np.broadcast_to(np.arange(k), (m, k)), qcs.min(axis=1)
    thr = -np.partition(-qcs, nprobe - 1, axis=1)[:, nprobe - 1 : nprobe]
    above = qcs > thr
    tied = qcs == thr
    need = nprobe - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    return np.flatnonzero(chosen).reshape(m, nprobe) % k, thr[:, 0]


def top_centroids(qcs: np.ndarray, nprobe: int) -> np.ndarray:
    """The centroids some query token ranks among its ``nprobe`` best (ties to the lower id): sorted unique ids."""
    return np.unique(probed_centroids(qcs, nprobe)[0])


def row_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(starts[i], ends[i])``: (sum of lengths,) int64."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    firsts = np.zeros(lens.size, np.int64)
    np.cumsum(lens[:-1], out=firsts[1:])
    return np.repeat(starts - firsts, lens) + np.arange(total, dtype=np.int64)


def probe_segment(cents: np.ndarray, list_offsets: np.ndarray, list_docs: np.ndarray, n_docs: int,
                  live: np.ndarray | None) -> np.ndarray:
    """The live rows listed under any of the centroids ``cents``: (n,) int64, ascending (what
    :func:`~colprune.kernels.probe_docs` finds, with the mask applied)."""
    mark = np.zeros(n_docs, bool)
    mark[list_docs[row_ranges(list_offsets[cents], list_offsets[cents + 1])]] = True
    if live is not None:
        mark &= live
    return np.flatnonzero(mark)


def probe_scores(qcs: np.ndarray, cents: np.ndarray, floor: np.ndarray, list_offsets: np.ndarray,
                 list_docs: np.ndarray, n_docs: int, live: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The probed live rows of one segment and their pruned centroid interaction (PLAID's stage 2).

    For each query token, only its probed centroids count: a row's score is the sum over tokens of
    the best probed centroid score among the row's vectors, or the token's ``floor`` (its worst
    probed score) when none of its probed centroids is in the row. It reads only the probed lists,
    not the rows' codes.

    Returns ``(rows (n,) int64 ascending, scores (n,) float32)``.
    """
    m = cents.shape[0]
    tok = np.repeat(np.arange(m, dtype=np.int64), cents.shape[1])
    cen = cents.reshape(-1)
    lens = list_offsets[cen + 1] - list_offsets[cen]
    docs = list_docs[row_ranges(list_offsets[cen], list_offsets[cen + 1])].astype(np.int64)
    best = np.full(n_docs * m, -np.inf, np.float32)
    np.maximum.at(best, docs * m + np.repeat(tok, lens), np.repeat(qcs[tok, cen], lens))
    best = best.reshape(n_docs, m)
    seen = np.isfinite(best).any(axis=1)
    if live is not None:
        seen &= live
    rows = np.flatnonzero(seen)
    got = best[rows]
    return rows, np.where(np.isfinite(got), got, floor[None, :]).sum(axis=1, dtype=np.float32)


#: pages ranked by the full centroid interaction per page scored exactly (the rest of the probed
#: pages are cut by the pruned interaction of :func:`probe_scores` first)
REFINE_FACTOR = 4


def centroid_candidates(snap: Snapshot, qv: np.ndarray, qoff: np.ndarray, candidates: int, nprobe: int,
                        masks: Sequence[np.ndarray | None]) -> np.ndarray:
    """Each query's best ``candidates`` live pages by centroid MaxSim over the probed pages of every segment.

    Per query: each token's ``nprobe`` best centroids (:func:`probed_centroids`); in each segment,
    the live pages their lists hold, ranked by the pruned interaction (:func:`probe_scores`); the
    best ``REFINE_FACTOR * candidates`` of all segments ranked again by the full centroid
    interaction (:func:`~colprune.kernels.centroid_maxsim`, every vector of the page) in one call;
    the best ``candidates`` kept (ties to the lower position).

    Returns
    -------
    (n_q, candidates) int64 global positions, ascending, ``-1`` padding where fewer pages were probed.
    """
    n_q = qoff.size - 1
    centroids = snap.codebook.centroids
    qcs_all = np.ascontiguousarray(qv @ centroids.T, dtype=np.float32)  # (T, K): every token against every centroid
    indexes = [None if seg.n_docs == 0 or (m is not None and not m.any()) else segment_index(seg)
               for seg, m in zip(snap.segments, masks)]
    out = np.full((n_q, max(1, candidates)), -1, np.int64)
    for q in range(n_q):
        qcs = qcs_all[qoff[q] : qoff[q + 1]]
        cents, floor = probed_centroids(qcs, nprobe)
        seg_of, rows, approx = [], [], []
        for si, ix in enumerate(indexes):
            if ix is not None:
                r, a = probe_scores(qcs, cents, floor, ix[1], ix[2], snap.segments[si].n_docs, masks[si])
                seg_of.append(np.full(r.size, si, np.int64))
                rows.append(r)
                approx.append(a)
        if not rows or not sum(r.size for r in rows):
            continue
        seg_of, rows, approx = np.concatenate(seg_of), np.concatenate(rows), np.concatenate(approx)
        if rows.size > REFINE_FACTOR * candidates:
            keep = np.sort(topk(approx[None, :], REFINE_FACTOR * candidates)[0][0])
            seg_of, rows = seg_of[keep], rows[keep]
        codes, lengths = [], []
        for si in np.unique(seg_of):
            off, r = snap.segments[si].offsets, rows[seg_of == si]
            codes.append(indexes[si][0][row_ranges(off[r], off[r + 1])])
            lengths.append(off[r + 1] - off[r])
        sub_off = np.zeros(rows.size + 1, np.int64)
        np.cumsum(np.concatenate(lengths), out=sub_off[1:])
        cs = np.asarray(centroid_maxsim(qcs, np.concatenate(codes), sub_off, np.arange(rows.size)), np.float32)
        p = snap.bases[seg_of] + rows  # ascending: segments in order, rows ascending within each
        if p.size > candidates:
            p = p[np.sort(topk(cs[None, :], candidates)[0][0])]  # ties go to the lower position
        out[q, : p.size] = p
    return out
