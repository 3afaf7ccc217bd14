"""Exact MaxSim (late interaction) over a CSR store, compiled with Numba.

The store is two arrays, as in the HDF5 file: ``vectors`` ``(N, dim)`` holding every
document's vectors back to back and ``offsets`` ``(n_docs + 1,)`` with document ``d`` owning
``vectors[offsets[d]:offsets[d + 1]]``. Nothing is padded, so a document whose similarities
are all negative keeps its negative score (zero padding would clamp every token's max at 0).

Two kernel families score float32/float16 stores: register tiles (:func:`tile_kernels`, LLVM IR
blocks from :mod:`colprune.kernels._tiles`; x86 with AVX2+FMA or AVX-512) and plain loops LLVM
vectorises for any CPU (:func:`float_kernels`; ARM, older x86, and the reference the tiles are
tested against). :mod:`colprune.kernels.backend` picks one once.
"""

# long module: the float32 and float16 specialisations of every kernel (plain loops, register
# tiles, their runners and wrappers) stay side by side so that each dtype's variant is read and
# tested against its twin; splitting by dtype would separate code that must change together.

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

from ._llvm import half_to_float, has_native_half
from ._tiles import float_tile, stable
from .backend import backend, launching

__all__ = [
    "as_query_batch",
    "balanced_bounds",
    "float_kernels",
    "tile_kernels",
    "tile_shape",
    "pack_query_groups",
    "maxsim_csr",
    "maxsim_pairs",
    "pair_layout",
    "maxsim_scores",
    "threads",
    "widen_float16",
]

# 2**(e - 25) for a half's exponent field e (e = 0: subnormal scale 2**-24); e = 31 is inf/NaN.
_HALF_SCALE = np.array([2.0 ** (max(e, 1) - 25) for e in range(31)] + [np.inf], dtype=np.float32)


@njit(cache=True, inline="always")
def _half_to_float_portable(h) -> np.float32:
    # IEEE half bits -> float32, exactly: (implicit bit | mantissa) * 2**(exponent - 25),
    # for CPUs without a hardware conversion.
    h = np.int32(h)
    e = (h >> 10) & 31
    m = h & 1023
    if e == 31:
        v = np.float32(np.inf) if m == 0 else np.float32(np.nan)
    else:
        v = np.float32(m | (1024 if e > 0 else 0)) * _HALF_SCALE[e]
    return -v if h & 0x8000 else v


# vcvtph2ps where the CPU has it: widening a page then costs a few percent of scoring it
# (the portable arithmetic made single-query float16 search 2x slower than float32).
f16_to_f32 = half_to_float if has_native_half() else _half_to_float_portable


# Reassociation lets LLVM vectorise the dot and max reductions; no nnan/ninf, because
# -inf is a real value here (the score of an empty document).
# a dict, not a set: Numba pickles it into cache keys, and a set pickles in per-process order
FASTMATH = {"reassoc": True, "contract": True, "nsz": True, "arcp": True}
# Query rows scored against one document vector before moving on: 32 rows x dim floats
# stay in L1 while the document streams from L2.
QUERY_BLOCK = 32
# float16 vectors widened at a time: 32 x dim float32 (16 KB at dim 128) stay in L1 while every query row
# passes over them.
DOC_BLOCK = 32


@njit(cache=True, inline="always", fastmath=FASTMATH)
def sum_per_query(best, qoff, out, d) -> None:
    for q in range(qoff.size - 1):
        s = np.float32(0.0)
        for i in range(qoff[q], qoff[q + 1]):
            s += best[i]
        out[q, d] = s


@njit(cache=True, inline="always")
def _next_span(qoff, plist, p, p1):
    # the run of query rows from plist[p] on while the listed queries are adjacent:
    # all queries listed (batch mode) make one span, blocked by QUERY_BLOCK as a whole
    lo, hi = qoff[plist[p]], qoff[plist[p] + 1]
    p += 1
    while p < p1 and qoff[plist[p]] == hi:
        hi = qoff[plist[p] + 1]
        p += 1
    return lo, hi, p


@njit(cache=True, inline="always", fastmath=FASTMATH)
def _start_pairs(best, qoff, plist, p0, p1) -> None:
    for p in range(p0, p1):
        for i in range(qoff[plist[p]], qoff[plist[p] + 1]):
            best[i] = -np.inf


@njit(cache=True, inline="always", fastmath=FASTMATH)
def _sum_pairs(best, qoff, plist, p0, p1, out) -> None:
    for p in range(p0, p1):
        s = np.float32(0.0)
        for i in range(qoff[plist[p]], qoff[plist[p] + 1]):
            s += best[i]
        out[p] = s


@functools.cache
def float_kernels(dim: int):
    """The float32 and float16 MaxSim kernels compiled for one ``dim``.

    Both score *pairs*: document ``docs[k]`` against the queries
    ``plist[poff[k]:poff[k + 1]]`` (ascending), into ``out[poff[k]:poff[k + 1]]``. Batch
    mode lists every query for every document; a rerank lists each shortlisted document
    with the queries that shortlisted it, so a page wanted by several queries is read once.
    ``dim`` is a compile-time constant of the inner loop: LLVM unrolls and vectorises it,
    which a run-time trip count prevents (about 2.5x slower measured at dim 128).
    """

    # The block loop is written out in both kernels on purpose: moved into a helper
    # (inlined or not) it measured 1.4x slower.
    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def f32(qv, qoff, dv, doff, docs, poff, plist, bounds, out) -> None:
        # bounds split range(len(docs)) over threads
        m = qv.shape[0]
        for c in prange(bounds.size - 1):
            best = np.empty(m, dtype=np.float32)
            for k in range(bounds[c], bounds[c + 1]):
                d, p0, p1 = docs[k], poff[k], poff[k + 1]
                _start_pairs(best, qoff, plist, p0, p1)
                p = p0
                while p < p1:
                    lo, hi, p = _next_span(qoff, plist, p, p1)
                    for i0 in range(lo, hi, QUERY_BLOCK):
                        i1 = min(i0 + QUERY_BLOCK, hi)
                        for j in range(doff[d], doff[d + 1]):
                            for i in range(i0, i1):
                                acc = np.float32(0.0)
                                for t in range(dim):
                                    acc += qv[i, t] * dv[j, t]
                                best[i] = max(best[i], acc)
                _sum_pairs(best, qoff, plist, p0, p1, out)

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def f16(qv, qoff, dv_bits, doff, docs, poff, plist, bounds, scratch, out) -> None:
        # each run of documents widens DOC_BLOCK vectors at a time into its own rows of
        # `scratch` (L1-sized; an argument, not a local array: LLVM then vectorises the
        # scoring loop as for f32) and scores every listed query row against them
        m = qv.shape[0]
        for c in prange(bounds.size - 1):
            best = np.empty(m, dtype=np.float32)
            base = c * DOC_BLOCK
            for k in range(bounds[c], bounds[c + 1]):
                d, p0, p1 = docs[k], poff[k], poff[k + 1]
                _start_pairs(best, qoff, plist, p0, p1)
                for a in range(doff[d], doff[d + 1], DOC_BLOCK):
                    n = min(DOC_BLOCK, doff[d + 1] - a)
                    for j in range(n):
                        for t in range(dim):
                            scratch[base + j, t] = f16_to_f32(dv_bits[a + j, t])
                    p = p0
                    while p < p1:
                        lo, hi, p = _next_span(qoff, plist, p, p1)
                        for i0 in range(lo, hi, QUERY_BLOCK):
                            i1 = min(i0 + QUERY_BLOCK, hi)
                            for j in range(base, base + n):
                                for i in range(i0, i1):
                                    acc = np.float32(0.0)
                                    for t in range(dim):
                                        acc += qv[i, t] * scratch[j, t]
                                    best[i] = max(best[i], acc)
                _sum_pairs(best, qoff, plist, p0, p1, out)

    return f32, f16


# Register tiles per kernel family, (floats per register W, query groups R, documents C):
# R*C accumulators + R query loads + 1 broadcast fit the register file (16 ymm / 32 zmm).
# The first shape is the default; a later one (narrower registers) is taken when it pads the
# query rows by at least 10% less (one 20-token query: 24 rows of ymm instead of 32 of zmm,
# 1.2x measured on Zen 4).
TILE_SHAPES = {"avx2": [(8, 3, 4)], "avx512": [(16, 2, 12), (8, 3, 8)]}
# document vectors per block: copied (float32) or widened (float16) into L1-sized scratch
# while every query group passes over them; a multiple of every tile's C
TILE_DOC_BLOCK = 48


def tile_shape(name: str | None = None, qoff: np.ndarray | None = None, aligned: bool = False):
    """``(W, R, C)`` of the float tiles of a kernel family for these queries, ``None`` for the
    portable loops."""
    shapes = TILE_SHAPES.get(name or backend())
    if not shapes:
        return None
    if qoff is None or len(shapes) == 1:
        return shapes[0]
    qlen = np.diff(qoff)

    def padded(w):
        return int((-(-qlen // w)).sum() * w) if aligned else -(-int(qoff[-1]) // w) * w

    best = shapes[0]
    for sh in shapes[1:]:
        if padded(sh[0]) <= 0.9 * padded(best[0]):
            best = sh
    return best


def pack_query_groups(qv: np.ndarray, qoff: np.ndarray, width: int, aligned: bool):
    """Query rows packed for the tiles: groups of ``width`` rows stored ``(dim, width)``.

    ``aligned=False`` packs all rows back to back (batch mode: every query is scored against
    every page, so groups may straddle queries); ``aligned=True`` starts each query at a group
    (pair mode: a page is scored for a subset of queries). Padding rows are zero and never
    summed. Returns ``qpk (n_groups, dim, width)``, ``prow`` (first packed row of each query),
    ``glo``/``ghi`` (each query's groups) and ``qlen``.
    """
    qlen = np.diff(qoff).astype(np.int64)
    if aligned:
        gcount = -(-qlen // width)
        gstart = np.concatenate([[0], np.cumsum(gcount)]).astype(np.int64)
        glo, ghi = gstart[:-1], gstart[1:]
        prow = glo * width
    else:
        prow = qoff[:-1].astype(np.int64)
        glo, ghi = prow // width, -(-qoff[1:].astype(np.int64) // width)
    n_groups = int(ghi.max()) if ghi.size else 0
    rows = np.zeros((n_groups * width, qv.shape[1]), np.float32)
    if aligned:
        q_of = np.repeat(np.arange(qlen.size), qlen)
        rows[prow[q_of] + (np.arange(qv.shape[0]) - qoff[q_of])] = qv
    else:
        rows[: qv.shape[0]] = qv
    qpk = np.ascontiguousarray(rows.reshape(n_groups, width, qv.shape[1]).transpose(0, 2, 1))
    return qpk, prow, np.ascontiguousarray(glo), np.ascontiguousarray(ghi), qlen


def doc_runner(tC, t2, t1, C: int, row_bytes: int, key: str):
    # score n consecutive vectors from address da: C at a time, then 2, then 1
    @njit(inline="always")
    def run(qa, da, n, ba) -> None:
        j = 0
        while j + C <= n:
            tC(qa, da + j * row_bytes, ba)
            j += C
        while j + 2 <= n:
            t2(qa, da + j * row_bytes, ba)
            j += 2
        if j < n:
            t1(qa, da + j * row_bytes, ba)

    return stable(run, key)


# long: one closure factory per tile shape; its inner kernels must be defined together for Numba
@functools.cache
def tile_kernels(dim: int, width: int, rv: int, c: int):
    """Tiled float32 and float16 pair kernels (same contract as :func:`float_kernels`, on
    queries packed by :func:`pack_query_groups`)."""
    row_bytes, group_bytes, best_bytes = dim * 4, dim * width * 4, width * 4
    DB = TILE_DOC_BLOCK

    def runner(r):
        return doc_runner(float_tile(dim, width, r, c), float_tile(dim, width, r, 2), float_tile(dim, width, r, 1),
                           c, row_bytes, f"float_run:{dim}:{width}:{r}:{c}")

    run_a, run_b, run_1 = runner(rv), runner(min(2, rv)), runner(1)

    @njit(inline="always")
    def score_block(qbase, da, n, ba0, glo, ghi, plist, p0, p1) -> None:
        # every listed query's groups against n vectors at da; adjacent/overlapping groups merged
        p = p0
        while p < p1:
            g0, g1 = glo[plist[p]], ghi[plist[p]]
            p += 1
            while p < p1 and glo[plist[p]] <= g1:
                g1 = max(g1, ghi[plist[p]])
                p += 1
            for g in range(g0, g1, rv):
                nr = min(rv, g1 - g)
                qa, ba = qbase + g * group_bytes, ba0 + g * best_bytes
                if nr == rv:
                    run_a(qa, da, n, ba)
                elif nr == 1:
                    run_1(qa, da, n, ba)
                else:
                    run_b(qa, da, n, ba)

    @njit(inline="always", fastmath=FASTMATH)
    def start(best, glo, ghi, plist, p0, p1) -> None:
        for p in range(p0, p1):
            q = plist[p]
            for i in range(glo[q] * width, ghi[q] * width):
                best[i] = -np.inf

    @njit(inline="always", fastmath=FASTMATH)
    def finish(best, prow, qlen, plist, p0, p1, out) -> None:
        for p in range(p0, p1):
            q = plist[p]
            s = np.float32(0.0)
            for i in range(prow[q], prow[q] + qlen[q]):
                s += best[i]
            out[p] = s

    key = f"{dim}:{width}:{rv}:{c}"
    stable(score_block, f"score_block:{key}")
    stable(start, f"start:{key}")
    stable(finish, f"finish:{key}")

    @njit(parallel=True, cache=True)
    def f32(qpk, prow, glo, ghi, qlen, dv, doff, docs, poff, plist, bounds, scratch, out) -> None:
        # blocks are copied into L1-sized scratch rows first: one sequential stream the
        # prefetchers follow, instead of C interleaved ones (1.5x for a single query)
        nbest = qpk.shape[0] * width
        qbase = qpk.ctypes.data
        for ch in prange(bounds.size - 1):
            best = np.empty(nbest, dtype=np.float32)
            ba0 = best.ctypes.data
            base = ch * DB
            sa = scratch[base:].ctypes.data
            for k in range(bounds[ch], bounds[ch + 1]):
                d, p0, p1 = docs[k], poff[k], poff[k + 1]
                start(best, glo, ghi, plist, p0, p1)
                for a in range(doff[d], doff[d + 1], DB):
                    n = min(DB, doff[d + 1] - a)
                    for j in range(n):
                        for t in range(dim):
                            scratch[base + j, t] = dv[a + j, t]
                    score_block(qbase, sa, n, ba0, glo, ghi, plist, p0, p1)
                finish(best, prow, qlen, plist, p0, p1, out)

    @njit(parallel=True, cache=True)
    def f16(qpk, prow, glo, ghi, qlen, dv_bits, doff, docs, poff, plist, bounds, scratch, out) -> None:
        nbest = qpk.shape[0] * width
        qbase = qpk.ctypes.data
        for ch in prange(bounds.size - 1):
            best = np.empty(nbest, dtype=np.float32)
            ba0 = best.ctypes.data
            base = ch * DB
            sa = scratch[base:].ctypes.data
            for k in range(bounds[ch], bounds[ch + 1]):
                d, p0, p1 = docs[k], poff[k], poff[k + 1]
                start(best, glo, ghi, plist, p0, p1)
                for a in range(doff[d], doff[d + 1], DB):
                    n = min(DB, doff[d + 1] - a)
                    for j in range(n):
                        for t in range(dim):
                            scratch[base + j, t] = f16_to_f32(dv_bits[a + j, t])
                    score_block(qbase, sa, n, ba0, glo, ghi, plist, p0, p1)
                finish(best, prow, qlen, plist, p0, p1, out)

    return f32, f16


def balanced_bounds(offsets: np.ndarray, n_chunks: int) -> np.ndarray:
    """Split documents into ``n_chunks`` contiguous runs of about equal vector counts.

    Threads take whole runs, so a store whose long pages cluster together still splits
    evenly (Numba's prange would hand out equal *document* counts).
    """
    n_docs = offsets.size - 1
    n_chunks = max(1, min(int(n_chunks), n_docs))
    targets = np.linspace(0, offsets[-1], n_chunks + 1)[1:-1]
    inner = np.searchsorted(offsets, targets, side="left")
    return np.unique(np.concatenate([[0], np.clip(inner, 0, n_docs), [n_docs]])).astype(np.int64)


@njit(cache=True)
def _widen_all(bits, out) -> None:
    for i in range(bits.size):
        out[i] = f16_to_f32(bits[i])


@njit(cache=True)
def _widen_all_portable(bits, out) -> None:
    for i in range(bits.size):
        out[i] = _half_to_float_portable(bits[i])


def widen_float16(a: np.ndarray, *, portable: bool = False) -> np.ndarray:
    """Widen a float16 array to float32 with the kernel's own conversion (for tests).

    ``portable=True`` uses the arithmetic conversion of CPUs without F16C.
    """
    a = np.ascontiguousarray(a, dtype=np.float16)
    out = np.empty(a.size, dtype=np.float32)
    (_widen_all_portable if portable else _widen_all)(a.view(np.uint16).reshape(-1), out)
    return out.reshape(a.shape)


def as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if x.dtype.is_floating_point and str(x.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            x = x.float()  # bfloat16 (and other torch-only floats) have no NumPy dtype
        x = x.numpy()
    return np.asarray(x)


def as_query_batch(queries, dim: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Normalise queries to CSR float32.

    Parameters
    ----------
    queries : (m, dim) array, (n_queries, m, dim) array, or a sequence of (m_q, dim) arrays
        NumPy arrays or torch tensors of any float dtype.
    dim : int, optional
        Expected embedding dimension.

    Returns
    -------
    vectors : (sum m_q, dim) float32, C-contiguous
    offsets : (n_queries + 1,) int64
    single : bool
        True when ``queries`` was one 2-D array.
    """
    single = False
    if isinstance(queries, (list, tuple)):
        items = [as_array(q) for q in queries]
    else:
        arr = as_array(queries)
        if arr.ndim == 2:
            items, single = [arr], True
        elif arr.ndim == 3:
            items = list(arr)
        else:
            raise ValueError(f"queries must be a (m, dim) array, a (n, m, dim) "
                             f"array or a list of (m, dim) arrays; got shape {arr.shape}")
    if not items:
        raise ValueError("no queries given")
    for i, q in enumerate(items):
        if q.ndim != 2:
            raise ValueError(f"query {i}: expected a 2-D (n_tokens, dim) array, got shape {q.shape}")
        if q.dtype.kind != "f":
            raise ValueError(f"query {i}: expected a floating-point array, got dtype {q.dtype}")
        if q.shape[0] == 0:
            raise ValueError(f"query {i}: has no token vectors")
        if dim is not None and q.shape[1] != dim:
            raise ValueError(f"query {i}: dim {q.shape[1]} does not match the index dim {dim}")
        if not np.isfinite(q).all():
            raise ValueError(f"query {i}: contains NaN or infinite values")
    if len({q.shape[1] for q in items}) > 1:
        raise ValueError(f"queries have different dims: {sorted({q.shape[1] for q in items})}")
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum([q.shape[0] for q in items], out=offsets[1:])
    vectors = np.ascontiguousarray(np.concatenate(items, axis=0), dtype=np.float32)
    return vectors, offsets, single


@contextmanager
def threads(n_threads: int | None) -> Iterator[None]:
    """Run a block of kernel launches on ``n_threads`` (None: all), holding the kernel lock (see backend)."""
    if n_threads is None:
        with launching():
            yield
        return
    n = int(n_threads)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n_threads must be in [1, {numba.config.NUMBA_NUM_THREADS}], got {n_threads}")
    with launching():
        before = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            yield
        finally:
            numba.set_num_threads(before)


def _check_store(vectors: np.ndarray, offsets: np.ndarray, dim: int, check_finite: bool) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, dim), got shape {vectors.shape}")
    if vectors.dtype.kind != "f":
        raise ValueError(f"vectors must be floating-point, got dtype {vectors.dtype}")
    if vectors.shape[1] != dim:
        raise ValueError(f"vectors have dim {vectors.shape[1]}, queries have dim {dim}")
    if offsets.ndim != 1 or offsets.size < 1:
        raise ValueError("offsets must be a 1-D array of n_docs + 1 entries")
    if offsets[0] != 0 or offsets[-1] != vectors.shape[0]:
        raise ValueError(f"offsets must start at 0 and end at len(vectors)={vectors.shape[0]}, got {offsets[0]}..{offsets[-1]}")
    if offsets.size > 1 and (np.diff(offsets) < 0).any():
        raise ValueError("offsets must be non-decreasing")
    if check_finite and not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")


def maxsim_scores(
    queries,
    vectors: np.ndarray,
    offsets: np.ndarray,
    *,
    n_threads: int | None = None,
    check_finite: bool = True,
) -> np.ndarray:
    """Exact MaxSim scores of every query against every document of a CSR store.

    ``score(q, d) = sum_i max_j <q_i, d_j>``, accumulated in float32 whatever the storage.

    Parameters
    ----------
    queries : (m, dim) array, (n_queries, m, dim) array, or a list of (m_q, dim) arrays
    vectors : (N, dim) float32 or float16 array
        Documents' vectors back to back (other float dtypes are converted to float32).
    offsets : (n_docs + 1,) int array
        Document ``d`` owns ``vectors[offsets[d]:offsets[d + 1]]``.
    n_threads : int, optional
        Threads to use (default: Numba's current setting, all cores unless changed).
    check_finite : bool
        Reject NaN/inf in ``vectors`` (an O(N·dim) pass; the index skips it because it
        validated on write).

    Returns
    -------
    (n_queries, n_docs) float32
        A document without vectors scores ``-inf``. A single 2-D query still gives one row.
    """
    qv, qoff, _ = as_query_batch(queries)
    vectors = as_array(vectors)
    offsets = np.ascontiguousarray(as_array(offsets), dtype=np.int64)
    _check_store(vectors, offsets, qv.shape[1], check_finite)
    return maxsim_csr(qv, qoff, vectors, offsets, n_threads=n_threads)


def maxsim_csr(
    qv: np.ndarray,
    qoff: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    *,
    n_threads: int | None = None,
    docs: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`maxsim_scores` on already-validated CSR queries (from :func:`as_query_batch`).

    ``docs``, if given, scores only those documents: column ``k`` of the result is
    document ``docs[k]``.
    """
    n_q = qoff.size - 1
    docs = np.arange(offsets.size - 1, dtype=np.int64) if docs is None else np.ascontiguousarray(docs, dtype=np.int64)
    poff = np.arange(docs.size + 1, dtype=np.int64) * n_q
    plist = np.tile(np.arange(n_q, dtype=np.int64), docs.size)
    out = _score_pairs(qv, qoff, vectors, offsets, docs, poff, plist, n_threads)
    return np.ascontiguousarray(out.reshape(docs.size, n_q).T)


def maxsim_pairs(
    qv: np.ndarray,
    qoff: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    candidates: np.ndarray,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Exact MaxSim of each query against its own shortlist of documents (a rerank).

    Parameters
    ----------
    qv, qoff : CSR queries from :func:`as_query_batch` (``n_q`` queries)
    vectors, offsets : the CSR store (float32 or float16), already validated
    candidates : (n_q, depth) int array
        Document indices per query (``-1`` entries are skipped and score ``-inf``).

    Returns
    -------
    (n_q, depth) float32
        ``out[q, r]`` is the score of document ``candidates[q, r]`` for query ``q``.

    Pages are visited once each, with every query that listed them, so reranking
    ``depth`` pages for many queries costs about what a batch search over the union does
    per pair, not one pass per query.
    """
    docs, poff, plist, order, shape = pair_layout(candidates, qoff.size - 1, offsets.size - 1)
    out = np.full(shape[0] * shape[1], -np.inf, dtype=np.float32)
    out[order] = _score_pairs(qv, qoff, vectors, offsets, docs, poff, plist, n_threads)
    return out.reshape(shape)


def pair_layout(candidates, n_q: int, n_docs: int):
    """Group (query, document) pairs by document for the pair kernels.

    Returns ``docs`` (the distinct documents, ascending), ``poff``/``plist`` (document
    ``docs[k]`` is scored for queries ``plist[poff[k]:poff[k + 1]]``, ascending), ``order``
    (pair ``p`` of the kernel fills flat slot ``order[p]`` of the ``candidates`` shape) and
    that shape.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    if cand.ndim != 2 or cand.shape[0] != n_q:
        raise ValueError(f"candidates must be ({n_q}, depth), got shape {cand.shape}")
    if cand.size and (cand.max() >= n_docs or cand.min() < -1):
        raise ValueError(f"candidates must be document indices in [0, {n_docs}) or -1")
    q_of = np.repeat(np.arange(n_q, dtype=np.int64), cand.shape[1])
    flat = cand.reshape(-1)
    keep = np.flatnonzero(flat >= 0)
    order = keep[np.lexsort((q_of[keep], flat[keep]))]  # by document, then query
    docs, starts = np.unique(flat[order], return_index=True)
    poff = np.r_[starts, order.size].astype(np.int64)
    return docs.astype(np.int64), poff, np.ascontiguousarray(q_of[order]), order, cand.shape


def _score_pairs(qv, qoff, vectors, offsets, docs, poff, plist, n_threads) -> np.ndarray:
    out = np.empty(plist.size, dtype=np.float32)
    if out.size == 0:
        return out
    with threads(n_threads):
        # balance threads by work: vectors x listed query rows of each document
        rows = np.diff(qoff)[plist]
        work = (offsets[docs + 1] - offsets[docs]) * np.add.reduceat(rows, poff[:-1]) if docs.size else rows[:0]
        bounds = balanced_bounds(np.concatenate([[0], np.cumsum(work)]), 4 * numba.get_num_threads())
        dim = int(vectors.shape[1])
        # batch mode (every query listed for every document) packs rows back to back
        aligned = plist.size != docs.size * (qoff.size - 1)
        shape = tile_shape(None, qoff, aligned)
        if shape is not None:
            width, rv, c = shape
            qpk, prow, glo, ghi, qlen = pack_query_groups(qv, qoff, width, aligned)
            f32, f16 = tile_kernels(dim, width, rv, c)
            scratch = np.empty(((bounds.size - 1) * TILE_DOC_BLOCK, dim), dtype=np.float32)
            if vectors.dtype == np.float16:
                f16(qpk, prow, glo, ghi, qlen, np.ascontiguousarray(vectors).view(np.uint16), offsets, docs, poff, plist,
                    bounds, scratch, out)
            else:
                f32(qpk, prow, glo, ghi, qlen, np.ascontiguousarray(vectors, dtype=np.float32), offsets, docs, poff,
                    plist, bounds, scratch, out)
            return out
        f32, f16 = float_kernels(dim)
        if vectors.dtype == np.float16:
            scratch = np.empty(((bounds.size - 1) * DOC_BLOCK, dim), dtype=np.float32)
            f16(qv, qoff, np.ascontiguousarray(vectors).view(np.uint16), offsets, docs, poff, plist, bounds, scratch, out)
        else:
            f32(qv, qoff, np.ascontiguousarray(vectors, dtype=np.float32), offsets, docs, poff, plist, bounds, out)
    return out
