"""Search over a collection's segments with bounded memory: exact streaming, two-stage, filters.

Exact search reads each segment's vectors block by block (``memory_budget`` bytes at a
time), scores a block with the kernels, keeps each query's best ``k`` of the block and merges
them at the end; resident memory follows the budget, not the store. Two-stage search keeps
only the persisted int8 first-stage summaries in memory and reads the shortlisted pages'
vectors from disk. Filters are evaluated on columnar copies of the metadata before scoring:
pages that do not match are never read nor scored.

Positions: every stored document has a *global position* (segments in manifest order, rows
in segment order); ties in score go to the lower position, the earlier page.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..kernels import (
    dequantize_int8,
    int8_corrections,
    maxsim_binary_csr,
    maxsim_csr,
    maxsim_int8_csr,
    maxsim_pairs,
    topk,
)
from . import layout as L
from .segment import Segment

__all__ = ["FILTER_OPS", "filter_mask", "exact_search", "two_stage_search", "merge_topk", "gather_docs"]

FILTER_OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte")


def filter_mask(seg: Segment, where: dict[str, Any], known: set[str]) -> np.ndarray:
    """Documents of ``seg`` whose metadata matches ``where`` (all conditions ANDed).

    ``where`` maps a metadata field to a value (equality) or to ``{op: operand}`` with ops
    ``eq``, ``ne``, ``in`` (a list), ``gt``, ``gte``, ``lt``, ``lte`` (numbers). Strings
    compare exactly; numbers as float64; booleans as 0/1. A page without the field never
    matches (``ne`` included).
    """
    cols = seg.filter_columns()
    n = seg.n_docs
    mask = np.ones(n, bool)
    for field, cond in where.items():
        if field not in known:
            raise InvalidInputError(f"filter on unknown metadata field {field!r}; filterable fields: {sorted(known)}")
        num, codes, values = cols.get(field, (np.full(n, np.nan), np.full(n, -1, np.int32), []))
        ops = cond if isinstance(cond, dict) else {"eq": cond}
        for op, x in ops.items():
            mask &= _apply(op, x, num, codes, values, field)
    return mask


def _apply(op: str, x: Any, num: np.ndarray, codes: np.ndarray, values: list[str], field: str) -> np.ndarray:
    if op not in FILTER_OPS:
        raise InvalidInputError(f"filter {field!r}: unknown operator {op!r}; use one of {list(FILTER_OPS)}")
    if op in ("eq", "ne", "in"):
        items = list(x) if op == "in" else [x]
        if op == "in" and isinstance(x, (str, bytes, dict)):
            raise InvalidInputError(f"filter {field!r}: 'in' takes a list of values, got {type(x).__name__}")
        hit = np.zeros(num.shape[0], bool)
        lookup = {v: i for i, v in enumerate(values)}
        for item in items:
            if isinstance(item, str):
                if item in lookup:
                    hit |= codes == lookup[item]
            elif isinstance(item, (bool, int, float)) and not isinstance(item, complex):
                hit |= num == float(item)
            else:
                raise InvalidInputError(f"filter {field!r}: cannot compare with {type(item).__name__} {item!r}")
        if op == "ne":
            present = (codes >= 0) | ~np.isnan(num)
            return present & ~hit
        return hit
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidInputError(f"filter {field!r}: {op!r} takes a number, got {x!r}")
    with np.errstate(invalid="ignore"):
        return {"gt": num > x, "gte": num >= x, "lt": num < x, "lte": num <= x}[op]


def merge_topk(idx_parts: list[np.ndarray], val_parts: list[np.ndarray], k: int, n_q: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
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


def _score_block(index, data: dict[str, np.ndarray], offsets: np.ndarray, qv, qoff, n_threads) -> np.ndarray:
    codec = index.codec
    vec = data[L.VECTORS]
    if codec == "int8":
        return maxsim_int8_csr(qv, qoff, vec, data[L.SCALES], offsets, n_threads=n_threads, corrections=int8_corrections(vec))
    if codec == "binary":
        return maxsim_binary_csr(qv, qoff, np.ascontiguousarray(vec).view("<u8"), offsets, index.dim, n_threads=n_threads)
    return maxsim_csr(qv, qoff, vec, offsets, n_threads=n_threads)


def gather_docs(index, positions: np.ndarray, *, rerank: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vectors of the documents at sorted global ``positions``, as one CSR store (read from disk, verified)."""
    parts: dict[str, list[np.ndarray]] = {}
    lengths = []
    seg_of = np.searchsorted(index._bases, positions, side="right") - 1
    for si in np.unique(seg_of):
        seg = index._segments[si]
        data, lens = seg.read_docs(positions[seg_of == si] - index._bases[si], rerank=rerank)
        for name, arr in data.items():
            parts.setdefault(name, []).append(arr)
        lengths.append(lens)
    out = {name: np.concatenate(p) for name, p in parts.items()}
    off = np.zeros(len(positions) + 1, np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=off[1:])
    return out, off


def _rescore(index, qv, qoff, cand: np.ndarray, k: int, n_threads, *, rerank: bool = False, budget: int | None = None):
    """Exact MaxSim of each query's candidate positions ``(n_q, depth)`` (-1 = none), best ``k``.

    The candidates' vectors are read in groups of at most ``budget`` bytes (default: the index's
    memory budget), each group scored for every query that listed its pages, and the per-group
    best ``k`` merged: memory follows the budget, not the number of queries times the shortlist.
    """
    n_q = qoff.size - 1
    uniq = np.unique(cand[cand >= 0])
    if uniq.size == 0:
        return [np.zeros(0, np.int64)] * n_q, [np.zeros(0, np.float32)] * n_q
    budget = int(budget or index.memory_budget) // 2
    lengths = np.empty(uniq.size, np.int64)
    seg_of = np.searchsorted(index._bases, uniq, side="right") - 1
    for si in np.unique(seg_of):
        rows = uniq[seg_of == si] - index._bases[si]
        lengths[seg_of == si] = np.diff(index._segments[si].offsets)[rows] if rows.size else 0
    row_bytes = 2 * index.dim if rerank or index.codec != "float32" else 4 * index.dim
    ends = np.cumsum(lengths * row_bytes)
    idx_parts, val_parts = [], []
    lo = 0
    while lo < uniq.size:
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + budget, side="right")))
        group = uniq[lo:hi]
        data, off = gather_docs(index, group, rerank=rerank)
        if rerank:
            vec = data[L.RERANK]
        elif index.codec == "int8":
            vec = dequantize_int8(data[L.VECTORS], data[L.SCALES])
        else:
            vec = data[L.VECTORS]
        inside = (cand >= group[0]) & (cand <= group[-1])
        local = np.where(inside, np.searchsorted(group, np.where(inside, cand, group[0])), -1)
        local = np.sort(local, axis=1)  # ascending, -1 first: ties go to the earlier page
        exact = maxsim_pairs(qv, qoff, vec, off, local.astype(np.int64), n_threads=n_threads)
        exact[local < 0] = -np.inf
        idx_parts.append(np.where(local >= 0, group[np.maximum(local, 0)], -1))
        val_parts.append(exact)
        del data, vec
        lo = hi
    return merge_topk(idx_parts, val_parts, k, n_q)


def exact_search(index, qv, qoff, k: int, masks: Sequence[np.ndarray | None], n_threads, budget: int,
                 rerank: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact top-``k`` (binary: Hamming shortlist of ``rerank``, rescored exactly when a rerank copy exists)."""
    n_q = qoff.size - 1
    depth = k
    binary_rerank = index.codec == "binary" and index.has_rerank and rerank is not None and rerank > 0
    if binary_rerank:
        depth = max(int(rerank), k)
    row_bytes = index.bytes_per_vector
    idx_parts, val_parts = [], []
    for si, seg in enumerate(index._segments):
        live = masks[si]
        base = int(index._bases[si])
        for lo, hi in _block_bounds(seg, budget, row_bytes):
            sel = None if live is None else live[lo:hi]
            if sel is not None and not sel.any():
                continue
            if sel is not None and sel.mean() < 0.5:
                # selective filter or many deletions: read and score only the selected pages
                pos = base + lo + np.flatnonzero(sel)
                data, off = gather_docs(index, pos)
                scores = _score_block(index, data, off, qv, qoff, n_threads)
                glob = pos
            else:
                data = seg.read_vectors(lo, hi)
                off = seg.offsets[lo : hi + 1] - seg.offsets[lo]
                scores = _score_block(index, data, off, qv, qoff, n_threads)
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
    return _rescore(index, qv, qoff, cand, k, n_threads, rerank=True)


def _pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), max(1, width)), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def two_stage_search(index, qv, qoff, k: int, candidates: int, masks: Sequence[np.ndarray | None], n_threads,
                     n_centroids: int | None = None):
    """Rank every live page by its int8 centroid summary, then score the best ``candidates`` exactly."""
    codes, scales, corr, coff = index._resident_summary(n_centroids)
    n_q = qoff.size - 1
    depth = max(int(candidates), k)
    idx_all, glob_mask = [], None
    if any(m is not None for m in masks):
        glob_mask = np.concatenate([np.ones(s.n_docs, bool) if m is None else m for s, m in zip(index._segments, masks)])
    cand_rows = []
    step = 16  # queries per coarse pass: bounds the (queries x pages) score matrix
    for q0 in range(0, n_q, step):
        q1 = min(q0 + step, n_q)
        sub_off = qoff[q0 : q1 + 1] - qoff[q0]
        sub_v = qv[qoff[q0] : qoff[q1]]
        coarse = maxsim_int8_csr(sub_v, sub_off, codes, scales, coff, n_threads=n_threads, corrections=corr)
        if glob_mask is not None:
            coarse[:, ~glob_mask] = -np.inf
        bi, bv = topk(coarse, min(depth, coarse.shape[1]))
        bi = np.where(np.isfinite(bv), bi, -1)
        cand_rows.append(bi)
        del coarse
    cand = np.concatenate(cand_rows) if cand_rows else np.zeros((0, depth), np.int64)
    idx_all.append(cand)
    return _rescore(index, qv, qoff, cand.astype(np.int64), k, n_threads)
