"""Search over a snapshot's segments with bounded memory: exact streaming, two-stage, on a device.

Exact search reads each segment's vectors block by block (``memory_budget`` bytes at a
time), scores a block with the kernels, keeps each query's best ``k`` of the block and merges
them at the end; resident memory follows the budget, not the store. Two-stage search keeps
only the persisted int8 first-stage summaries in memory (:func:`shortlist`) and reads the
shortlisted pages' vectors from disk (:func:`rescore`). Residual collections (``residual1/2/4``) are
scored by :func:`~colprune.kernels.maxsim_residual_csr`, which decodes a few vectors at a time
inside the kernel, and searched through their centroid index by :func:`centroid_search`
(:mod:`~colprune.index.candidates`). Filters (:mod:`~colprune.index.filters`)
are evaluated before scoring, as per-segment masks: pages that do not match are never read
nor scored.

Every function takes a :class:`~colprune.index.snapshot.Snapshot` and works in *global
positions* (segments in manifest order, rows in segment order); ties in score go to the lower
position, the earlier page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..kernels import (
    backend,
    dequantize_int8,
    int8_corrections,
    maxsim_binary_csr,
    maxsim_csr,
    maxsim_int8_csr,
    maxsim_pairs,
    maxsim_residual_csr,
    topk,
)
from ..kernels.maxsim import TILE_SHAPES
from . import layout as L
from .candidates import RESIDUAL_CODECS, centroid_candidates, row_ranges, segment_index
from .filters import FILTER_OPS, filter_mask
from .records import default_rerank
from .segment import Segment
from .snapshot import Snapshot

__all__ = ["FILTER_OPS", "filter_mask", "exact_search", "two_stage_search", "centroid_search", "shortlist", "rescore",
           "merge_topk", "gather_docs", "score_all", "device_scorer", "device_search"]


def merge_topk(idx_parts: list[np.ndarray], val_parts: list[np.ndarray], k: int,
               n_q: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Merge per-block candidates ``(n_q, k_b)`` of global positions: best ``k`` per query, ties to the lower position."""
    out_i, out_v = [], []
    for q in range(n_q):
        idx = np.concatenate([p[q] for p in idx_parts]) if idx_parts else np.zeros(0, np.int64)
        val = np.concatenate([p[q] for p in val_parts]) if val_parts else np.zeros(0, np.float32)
        ok = np.isfinite(val) & (idx >= 0)
        idx, val = idx[ok], val[ok]
        order = np.lexsort((idx, -val.astype(np.float64)))[:k]
        out_i.append(idx[order])
        out_v.append(val[order])
    return out_i, out_v


def _block_bounds(seg: Segment, budget_bytes: int, row_bytes: int) -> list[tuple[int, int]]:
    """Document ranges whose vectors fit ``budget_bytes`` (a document larger than that gets a block alone)."""
    off = seg.offsets
    rows = max(1, budget_bytes // max(1, row_bytes))
    out, lo = [], 0
    n = seg.n_docs
    while lo < n:
        hi = int(np.searchsorted(off, off[lo] + rows, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        out.append((lo, hi))
        lo = hi
    return out


def _query_list(qv: np.ndarray, qoff: np.ndarray) -> list[np.ndarray]:
    return [qv[qoff[i] : qoff[i + 1]] for i in range(qoff.size - 1)]


def _residual_scores(snap: Snapshot, data: dict[str, np.ndarray], offsets: np.ndarray, queries: list[np.ndarray],
                     n_threads, docs: np.ndarray | None = None) -> np.ndarray:
    """MaxSim on residual-coded documents, decoded block by block inside the kernel (exact w.r.t. the decoded vectors)."""
    cb = snap.codebook
    return maxsim_residual_csr(queries, data[L.CODES], data[L.VECTORS], offsets, cb.centroids, cb.weights, cb.nbits,
                               docs, n_threads=n_threads)


def _score_block(snap: Snapshot, data: dict[str, np.ndarray], offsets: np.ndarray, qv, qoff, n_threads) -> np.ndarray:
    codec = snap.codec
    vec = data[L.VECTORS]
    if codec in RESIDUAL_CODECS:
        return _residual_scores(snap, data, offsets, _query_list(qv, qoff), n_threads)
    if codec == "int8":
        return maxsim_int8_csr(qv, qoff, vec, data[L.SCALES], offsets, n_threads=n_threads, corrections=int8_corrections(vec))
    if codec == "binary":
        return maxsim_binary_csr(qv, qoff, np.ascontiguousarray(vec).view("<u8"), offsets, snap.dim, n_threads=n_threads)
    return maxsim_csr(qv, qoff, vec, offsets, n_threads=n_threads)


def gather_docs(snap: Snapshot, positions: np.ndarray, *, rerank: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vectors of the documents at sorted global ``positions``, as one CSR store (read from disk, verified)."""
    parts: dict[str, list[np.ndarray]] = {}
    lengths = []
    seg_of = np.searchsorted(snap.bases, positions, side="right") - 1
    for si in np.unique(seg_of):
        seg = snap.segments[si]
        docs = positions[seg_of == si] - snap.bases[si]
        held = seg.resident
        if held is not None and (L.RERANK in held if rerank else L.VECTORS in held):
            # a resident segment (verified when read): one gather per dataset, not one read per run of pages
            off = seg.offsets
            rows = row_ranges(off[docs], off[docs + 1])
            names = [L.RERANK] if rerank else [n for n in (L.VECTORS, L.SCALES, L.CODES) if n in held]
            data, lens = {n: held[n][rows] for n in names}, off[docs + 1] - off[docs]
        else:
            data, lens = seg.read_docs(docs, rerank=rerank)
        for name, arr in data.items():
            parts.setdefault(name, []).append(arr)
        lengths.append(lens)
    out = {name: np.concatenate(p) for name, p in parts.items()}
    off = np.zeros(len(positions) + 1, np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=off[1:])
    return out, off


def rescore(snap: Snapshot, qv, qoff, cand: np.ndarray, k: int, n_threads, *, rerank: bool = False,
            budget: int | None = None):
    """Exact MaxSim of each query's candidate positions ``(n_q, depth)`` (-1 = none), best ``k``.

    The candidates' vectors are read in groups of at most ``budget`` bytes (default: the index's
    memory budget), each group scored for every query that listed its pages, and the per-group
    best ``k`` merged: memory follows the budget, not the number of queries times the shortlist.
    """
    n_q = qoff.size - 1
    uniq = np.unique(cand[cand >= 0])
    if uniq.size == 0:
        return [np.zeros(0, np.int64)] * n_q, [np.zeros(0, np.float32)] * n_q
    budget = int(budget or snap.memory_budget) // 2
    lengths = np.empty(uniq.size, np.int64)
    seg_of = np.searchsorted(snap.bases, uniq, side="right") - 1
    for si in np.unique(seg_of):
        rows = uniq[seg_of == si] - snap.bases[si]
        lengths[seg_of == si] = np.diff(snap.segments[si].offsets)[rows] if rows.size else 0
    residual = snap.codec in RESIDUAL_CODECS and not rerank
    if residual:
        row_bytes = snap.bytes_per_vector
    else:
        row_bytes = 2 * snap.dim if rerank or snap.codec != "float32" else 4 * snap.dim
    ends = np.cumsum(lengths * row_bytes)
    idx_parts, val_parts = [], []
    lo = 0
    while lo < uniq.size:
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + budget, side="right")))
        group = uniq[lo:hi]
        data, off = gather_docs(snap, group, rerank=rerank)
        inside = (cand >= group[0]) & (cand <= group[-1])
        local = np.where(inside, np.searchsorted(group, np.where(inside, cand, group[0])), -1)
        local = np.sort(local, axis=1).astype(np.int64)  # ascending, -1 first: ties go to the earlier page
        if residual:
            exact = _residual_pairs(snap, data, off, qv, qoff, local, n_threads)
        else:
            if rerank:
                vec = data[L.RERANK]
            elif snap.codec == "int8":
                vec = dequantize_int8(data[L.VECTORS], data[L.SCALES])
            else:
                vec = data[L.VECTORS]
            exact = maxsim_pairs(qv, qoff, vec, off, local, n_threads=n_threads)
            del vec
        exact[local < 0] = -np.inf
        idx_parts.append(np.where(local >= 0, group[np.maximum(local, 0)], -1))
        val_parts.append(exact)
        del data
        lo = hi
    return merge_topk(idx_parts, val_parts, k, n_q)


def _residual_pairs(snap: Snapshot, data: dict[str, np.ndarray], off: np.ndarray, qv, qoff, local: np.ndarray,
                    n_threads) -> np.ndarray:
    """:func:`maxsim_pairs` for residual codes: each query scored on its own (ascending) rows of the gathered store."""
    exact = np.full(local.shape, -np.inf, np.float32)
    for q in range(local.shape[0]):
        sel = local[q] >= 0
        if sel.any():
            exact[q, sel] = _residual_scores(snap, data, off, [qv[qoff[q] : qoff[q + 1]]], n_threads, local[q, sel])[0]
    return exact


def centroid_search(snap: Snapshot, qv, qoff, k: int, candidates: int, nprobe: int, masks: Sequence[np.ndarray | None],
                    n_threads, budget: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Top-``k`` of a residual collection through its centroid index (:mod:`~colprune.index.candidates`).

    Each query's best ``candidates`` live pages by centroid MaxSim over the pages its tokens'
    ``nprobe`` nearest centroids list are scored exactly (decoded residuals, or the float16
    rerank copy when the collection keeps one). Returns ``(idx, val)``, one array of global
    positions and scores per query, best first, ties to the lower position.
    """
    cand = centroid_candidates(snap, qv, qoff, candidates, nprobe, masks)
    return rescore(snap, qv, qoff, cand, k, n_threads, rerank=snap.has_rerank, budget=budget)


def warm_kernels(snap: Snapshot) -> None:
    """Run the search paths of ``snap``'s codec once, over its first live page only.

    Numba loads its cached kernels (and initialises itself, ~1 s in a fresh process) on a kernel's first
    call: done here, that cost leaves the first query. Exact search, and the centroid index of a residual
    collection, run once per register-tile width of the CPU's kernel family (the tiles follow the query's
    length: a query of ``W`` tokens takes the width-``W`` tiles) and with 32 tokens; the query repeats the
    page's first vector, so its nearest centroids list the page."""
    masks = [np.zeros(seg.n_docs, bool) for seg in snap.segments]
    for si, live in enumerate(snap.masks(None)):
        rows = np.arange(snap.segments[si].n_docs) if live is None else np.flatnonzero(live)
        rows = rows[np.diff(snap.segments[si].offsets)[rows] > 0]  # a page with a vector to make the query of
        if rows.size:
            masks[si][rows[0]] = True
            first = np.asarray(snap.pages(si, int(rows[0]), int(rows[0]) + 1)[0].vectors[0], np.float32)
            break
    else:
        return
    snap.check_unique_ids()  # what the first hit would read: every segment's ids
    residual = snap.codec in RESIDUAL_CODECS and snap.codebook is not None
    rerank = default_rerank(1) if snap.codec == "binary" and snap.has_rerank else None
    for m in sorted({32, *(shape[0] for shape in TILE_SHAPES.get(backend(), ()))}):
        qv = np.ascontiguousarray(np.broadcast_to(first, (m, snap.dim)), np.float32)
        qoff = np.array([0, m], np.int64)
        exact_search(snap, qv, qoff, 1, masks, None, 1 << 28, rerank)
        if snap.codec in ("float16", "float32") and snap.summary_centroids:
            two_stage_search(snap, qv, qoff, 1, 1, masks, None)  # reads every segment's summaries, as the first would
        if residual:
            centroid_search(snap, qv, qoff, 1, 1, min(4, snap.codebook.n_centroids), masks, None, 1 << 28)
    if residual:
        for seg in snap.segments:  # every segment's codes and inverted lists, read once (as the first query would)
            segment_index(seg)


def exact_search(snap: Snapshot, qv, qoff, k: int, masks: Sequence[np.ndarray | None], n_threads, budget: int,
                 rerank: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact top-``k`` (binary: Hamming shortlist of ``rerank``, rescored exactly when a rerank copy exists)."""
    n_q = qoff.size - 1
    depth = k
    binary_rerank = snap.codec == "binary" and snap.has_rerank and rerank is not None and rerank > 0
    if binary_rerank:
        depth = max(int(rerank), k)
    row_bytes = snap.bytes_per_vector
    idx_parts, val_parts = [], []
    for si, seg in enumerate(snap.segments):
        live = masks[si]
        base = int(snap.bases[si])
        for lo, hi in _block_bounds(seg, budget, row_bytes):
            sel = None if live is None else live[lo:hi]
            if sel is not None and not sel.any():
                continue
            if sel is not None and sel.mean() < 0.5:
                # selective filter or many deletions: read and score only the selected pages
                pos = base + lo + np.flatnonzero(sel)
                data, off = gather_docs(snap, pos)
                scores = _score_block(snap, data, off, qv, qoff, n_threads)
                glob = pos
            else:
                data = seg.read_vectors(lo, hi)
                off = seg.offsets[lo : hi + 1] - seg.offsets[lo]
                scores = _score_block(snap, data, off, qv, qoff, n_threads)
                if sel is not None:
                    scores[:, ~sel] = -np.inf
                glob = base + lo + np.arange(hi - lo)
            bi, bv = topk(scores, min(depth, scores.shape[1]))
            idx_parts.append(glob[bi])
            val_parts.append(bv)
            del data, scores
    idx, val = merge_topk(idx_parts, val_parts, depth, n_q)
    if not binary_rerank:
        return idx, val
    cand = _pad(idx, depth)
    return rescore(snap, qv, qoff, cand, k, n_threads, rerank=True)


def _pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), max(1, width)), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def shortlist(snap: Snapshot, qv, qoff, depth: int, masks: Sequence[np.ndarray | None], n_threads, *,
              n_centroids: int | None = None, with_scores: bool = False):
    """First stage of two-stage search: each query's best ``depth`` pages by int8 centroid-summary MaxSim.

    Parameters
    ----------
    snap : the snapshot searched
    qv, qoff : queries in CSR form, ``(T, dim)`` float32 and ``(n_q + 1,)`` int64
    depth : candidates per query
    masks : per segment, the pages that may be returned (:meth:`Snapshot.masks`)
    n_centroids : centroids per page for segments that store no summary (default 4)
    with_scores : also return the first-stage scores

    Returns
    -------
    ``(n_q, depth)`` int64 global positions, best first, ties to the lower position, -1 where a
    query has fewer candidates; with ``with_scores``, ``(positions, scores (n_q, depth) float32)``
    with ``-inf`` scores where the position is -1.
    """
    codes, scales, corr, coff = snap.resident_summary(n_centroids)
    n_q = qoff.size - 1
    glob_mask = None
    if any(m is not None for m in masks):
        glob_mask = np.concatenate([np.ones(s.n_docs, bool) if m is None else m for s, m in zip(snap.segments, masks)])
    cand_rows, score_rows = [], []
    step = 16  # queries per coarse pass: bounds the (queries x pages) score matrix
    for q0 in range(0, n_q, step):
        q1 = min(q0 + step, n_q)
        sub_off = qoff[q0 : q1 + 1] - qoff[q0]
        sub_v = qv[qoff[q0] : qoff[q1]]
        coarse = maxsim_int8_csr(sub_v, sub_off, codes, scales, coff, n_threads=n_threads, corrections=corr)
        if glob_mask is not None:
            coarse[:, ~glob_mask] = -np.inf
        bi, bv = topk(coarse, min(depth, coarse.shape[1]))
        fin = np.isfinite(bv)
        cand_rows.append(np.where(fin, bi, -1))
        score_rows.append(np.where(fin, bv, -np.inf).astype(np.float32))
        del coarse
    cand = np.concatenate(cand_rows).astype(np.int64) if cand_rows else np.zeros((0, depth), np.int64)
    if not with_scores:
        return cand
    return cand, (np.concatenate(score_rows) if score_rows else np.zeros((0, depth), np.float32))


def two_stage_search(snap: Snapshot, qv, qoff, k: int, candidates: int, masks: Sequence[np.ndarray | None], n_threads,
                     n_centroids: int | None = None):
    """Rank every live page by its int8 centroid summary, then score the best ``candidates`` exactly."""
    depth = max(int(candidates), k)
    cand = shortlist(snap, qv, qoff, depth, masks, n_threads, n_centroids=n_centroids)
    return rescore(snap, qv, qoff, cand, k, n_threads)


def score_all(snap: Snapshot, qv, qoff, n_threads) -> np.ndarray:
    """Exact MaxSim of every query against every live page: ``(n_q, n_live)`` float32 (reads all vectors)."""
    if not len(snap):
        return np.zeros((qoff.size - 1, 0), np.float32)
    data, off = gather_docs(snap, snap.positions())
    return _score_block(snap, data, off, qv, qoff, n_threads)


def device_scorer(snap: Snapshot, device: str):
    """A :class:`~colprune.kernels.torch_maxsim.TorchScorer` of the live pages on ``device``, and their positions.

    The vectors are uploaded as floats (int8 dequantised, binary from its float16 rerank copy);
    residual codes stay compressed on the device (:meth:`TorchScorer.from_residual`).
    """
    from ..kernels.torch_maxsim import TorchScorer

    positions = snap.positions()
    data, off = gather_docs(snap, positions, rerank=snap.codec == "binary" and snap.has_rerank)
    if snap.codec in RESIDUAL_CODECS:  # kept compressed on the device, decoded block by block there
        cb = snap.codebook
        return TorchScorer.from_residual(data[L.CODES], data[L.VECTORS], off, cb.centroids, cb.weights, cb.nbits,
                                         device=device), positions
    if snap.codec == "int8":
        vec = dequantize_int8(data[L.VECTORS], data[L.SCALES])
    elif snap.codec == "binary":
        if not snap.has_rerank:
            raise InvalidInputError("device= needs float vectors: this binary index has no float16 rerank copy")
        vec = data[L.RERANK]
    else:
        vec = data[L.VECTORS]
    return TorchScorer(vec, off, device=device), positions


def device_search(snap: Snapshot, scorer, positions: np.ndarray, qv, qoff, k: int, masks: Sequence[np.ndarray | None]):
    """Exact top-``k`` with a :func:`device_scorer`: ``(idx, val)``, one array of positions and scores per query."""
    scores = scorer.scores(qv, qoff)
    if any(m is not None for m in masks):
        live = np.concatenate([np.ones(s.n_docs, bool) if m is None else m for s, m in zip(snap.segments, masks)])
        scores[:, ~live[positions]] = -np.inf
    bi, bv = topk(scores, min(k, scores.shape[1]))
    idx = [positions[r[np.isfinite(v)]] for r, v in zip(bi, bv)]
    val = [v[np.isfinite(v)] for v in bv]
    return idx, val
