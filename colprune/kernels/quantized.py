"""MaxSim over compressed vectors: int8 (per-vector scale) and binary (sign bits).

int8
    ``codes[j] = round(x_j / s_j)`` with ``s_j = max|x_j| / 127`` (per vector, symmetric);
    queries are quantised the same way per token. ``<q, x> ~ s_q * s_j * <codes_q, codes_j>``
    with the integer dot exact in int32. On CPUs with AVX-512 VNNI the dots run as
    ``vpdpbusd`` (64 multiply-adds per instruction); elsewhere a portable loop gives the same
    numbers.
binary
    One sign bit per dimension (``x > 0``), packed into uint64 words. Similarity is
    ``dim - 2 * hamming(q, x)`` (the dot product of the ±1 vectors), so MaxSim becomes a
    popcount-and-min loop. Coarse by itself: use it to shortlist and rerank exactly.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import njit, prange

from ._llvm import has_vnni, popcount64, vnni_block
from ._tiles import int16_tile, stable
from .backend import int8_path
from .maxsim import FASTMATH, as_query_batch, balanced_bounds, sum_per_query, threads

__all__ = [
    "quantize_int8",
    "dequantize_int8",
    "int8_corrections",
    "maxsim_int8",
    "maxsim_int8_csr",
    "pack_binary",
    "maxsim_binary",
    "maxsim_binary_csr",
]


# -- int8 --------------------------------------------------------------------------------

def quantize_int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vector symmetric int8: ``(codes (N, dim) int8, scales (N,) float32)``.

    ``x ~ codes * scales[:, None]``; the largest |component| of each vector maps to ±127.
    An all-zero vector gets scale 1 and zero codes.
    """
    x = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(x).max(axis=1) / np.float32(127.0) if x.size else np.zeros(x.shape[0], np.float32)
    scales = np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.rint(x / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def int8_corrections(codes: np.ndarray) -> np.ndarray:
    """``128 * codes.sum(axis=1)`` as int32: what the VNNI kernel subtracts per stored vector
    (its queries are shifted to unsigned). Cache it beside codes that are scored often."""
    return (128 * np.asarray(codes).sum(axis=1, dtype=np.int32)).astype(np.int32)


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``codes * scales[:, None]`` as float32."""
    return codes.astype(np.float32) * np.asarray(scales, np.float32)[:, None]


@functools.lru_cache(maxsize=None)
def _int8_kernels(dim: int):
    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def portable(qc, qs, qoff, dc, ds, doff, bounds, out) -> None:
        m = qc.shape[0]
        for c in prange(bounds.size - 1):
            best = np.empty(m, dtype=np.float32)
            for d in range(bounds[c], bounds[c + 1]):
                best[:] = -np.inf
                for i0 in range(0, m, 32):
                    i1 = min(i0 + 32, m)
                    for j in range(doff[d], doff[d + 1]):
                        sj = ds[j]
                        for i in range(i0, i1):
                            acc = np.int32(0)
                            for t in range(dim):
                                acc += np.int32(qc[i, t]) * np.int32(dc[j, t])
                            best[i] = max(best[i], np.float32(acc) * sj)
                for i in range(m):
                    best[i] *= qs[i]
                sum_per_query(best, qoff, out, d)

    if not (has_vnni() and dim % 4 == 0):
        return portable, None
    block4, block1 = stable(vnni_block(dim, 4), f"vnni_block:{dim}:4"), stable(vnni_block(dim, 1), f"vnni_block:{dim}:1")

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def vnni(qpk, qs, qoff, dc, ds, dcorr, doff, bounds, out) -> None:
        # qpk: (n_blocks, dim // 4, 16, 4) uint8 = query int8 + 128; dcorr[j] = 128 * sum(dc[j])
        nb = qpk.shape[0]
        m = qs.shape[0]
        for c in prange(bounds.size - 1):
            best = np.empty(nb * 16, dtype=np.float32)
            tmp = np.empty((4, 16), dtype=np.int32)
            for d in range(bounds[c], bounds[c + 1]):
                best[:] = -np.inf
                s0, s1 = doff[d], doff[d + 1]
                for b in range(nb):
                    qa = qpk[b].ctypes.data
                    bb = best[b * 16 : (b + 1) * 16]
                    j = s0
                    while j + 4 <= s1:
                        block4(qa, dc[j].ctypes.data, tmp.ctypes.data)
                        for r in range(4):
                            sj, cj = ds[j + r], dcorr[j + r]
                            for lane in range(16):
                                bb[lane] = max(bb[lane], np.float32(tmp[r, lane] - cj) * sj)
                        j += 4
                    while j < s1:
                        block1(qa, dc[j].ctypes.data, tmp.ctypes.data)
                        sj, cj = ds[j], dcorr[j]
                        for lane in range(16):
                            bb[lane] = max(bb[lane], np.float32(tmp[0, lane] - cj) * sj)
                        j += 1
                for i in range(m):
                    best[i] *= qs[i]
                sum_per_query(best[:m], qoff, out, d)

    return portable, vnni


# pmaddwd tiles: (int32 lanes W, query groups R, documents C) per int8 path. AVX2 takes 2 x 4:
# 8 accumulators + 2 query rows + broadcast + product in 16 ymm, measured 1.04-1.12x the 3 x 3
# tile on every shape (Zen 4 with NUMBA_CPU_NAME=haswell; 3 x 3 left int8 1.39-1.49x float32).
INT16_TILES = {"pmaddwd256": (8, 2, 4), "pmaddwd512": (16, 2, 12)}
INT16_DOC_BLOCK = 48


def _int16_runner(tC, t2, t1, C: int, row_bytes: int, key: str):
    @njit(inline="always")
    def run(qa, da, sa, n, ba) -> None:
        j = 0
        while j + C <= n:
            tC(qa, da + j * row_bytes, sa + j * 4, ba)
            j += C
        while j + 2 <= n:
            t2(qa, da + j * row_bytes, sa + j * 4, ba)
            j += 2
        if j < n:
            t1(qa, da + j * row_bytes, sa + j * 4, ba)

    return stable(run, key)


@functools.lru_cache(maxsize=None)
def _int16_kernel(dim: int, width: int, rv: int, c: int):
    """int8 codes scored by pmaddwd tiles: documents widened to int16 48 vectors at a time."""
    row_bytes, group_bytes, best_bytes = dim * 2, dim * width * 2, width * 4
    DB = INT16_DOC_BLOCK

    def runner(r):
        return _int16_runner(int16_tile(dim, width, r, c), int16_tile(dim, width, r, 2), int16_tile(dim, width, r, 1),
                             c, row_bytes, f"int16_run:{dim}:{width}:{r}:{c}")

    run_a, run_b, run_1 = runner(rv), runner(min(2, rv)), runner(1)

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def kernel(qpk, qs, qoff, dc, ds, doff, bounds, scratch, out) -> None:
        # qpk: (n_groups, dim // 2, width, 2) int16 query codes, rows back to back
        ng = qpk.shape[0]
        m = qs.shape[0]
        qbase, sbase = qpk.ctypes.data, ds.ctypes.data
        for ch in prange(bounds.size - 1):
            best = np.empty(ng * width, dtype=np.float32)
            ba0 = best.ctypes.data
            base = ch * DB
            wa = scratch[base:].ctypes.data
            for d in range(bounds[ch], bounds[ch + 1]):
                best[:] = -np.inf
                for a in range(doff[d], doff[d + 1], DB):
                    n = min(DB, doff[d + 1] - a)
                    for j in range(n):
                        for t in range(dim):
                            scratch[base + j, t] = np.int16(dc[a + j, t])
                    for g in range(0, ng, rv):
                        nr = min(rv, ng - g)
                        qa, ba = qbase + g * group_bytes, ba0 + g * best_bytes
                        if nr == rv:
                            run_a(qa, wa, sbase + a * 4, n, ba)
                        elif nr == 1:
                            run_1(qa, wa, sbase + a * 4, n, ba)
                        else:
                            run_b(qa, wa, sbase + a * 4, n, ba)
                for i in range(m):
                    best[i] *= qs[i]
                sum_per_query(best[:m], qoff, out, d)

    return kernel


def _pack_int16_queries(qc: np.ndarray, width: int) -> np.ndarray:
    m, dim = qc.shape
    ng = -(-m // width)
    rows = np.zeros((ng * width, dim), dtype=np.int16)
    rows[:m] = qc
    return np.ascontiguousarray(rows.reshape(ng, width, dim // 2, 2).transpose(0, 2, 1, 3))


def _pack_vnni_queries(qc: np.ndarray) -> np.ndarray:
    m, dim = qc.shape
    nb = (m + 15) // 16
    u = np.full((nb * 16, dim), 128, dtype=np.uint8)  # padding rows are query value 0
    u[:m] = (qc.astype(np.int16) + 128).astype(np.uint8)
    return np.ascontiguousarray(u.reshape(nb, 16, dim // 4, 4).transpose(0, 2, 1, 3))


def maxsim_int8(
    queries,
    codes: np.ndarray,
    scales: np.ndarray,
    offsets: np.ndarray,
    *,
    n_threads: int | None = None,
    portable: bool = False,
    corrections: np.ndarray | None = None,
) -> np.ndarray:
    """MaxSim of float queries against int8-coded documents: ``(n_queries, n_docs)`` float32.

    Queries are quantised per token like the documents, then
    ``score = sum_i s_q_i * max_j s_j * <codes_q_i, codes_j>`` with exact int32 dots.

    Parameters
    ----------
    queries : as for :func:`~colprune.kernels.maxsim_scores`
    codes : (N, dim) int8
    scales : (N,) float32
    offsets : (n_docs + 1,) int64
    portable : bool
        Use the plain loop even where a SIMD path (VNNI, pmaddwd) is available (for testing).
    corrections : (N,) int32, optional
        :func:`int8_corrections` of ``codes``, if the caller caches it.
    """
    qv, qoff, _ = as_query_batch(queries)
    codes = np.ascontiguousarray(codes)
    if codes.dtype != np.int8 or codes.ndim != 2 or codes.shape[1] != qv.shape[1]:
        raise ValueError(f"codes must be (N, {qv.shape[1]}) int8, got {codes.shape} {codes.dtype}")
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if scales.shape != (codes.shape[0],) or offsets[-1] != codes.shape[0]:
        raise ValueError("scales and offsets must match codes")
    return maxsim_int8_csr(qv, qoff, codes, scales, offsets, n_threads=n_threads, portable=portable,
                           corrections=corrections)


def maxsim_int8_csr(
    qv: np.ndarray,
    qoff: np.ndarray,
    codes: np.ndarray,
    scales: np.ndarray,
    offsets: np.ndarray,
    *,
    n_threads: int | None = None,
    portable: bool = False,
    corrections: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`maxsim_int8` on already-validated CSR queries and store (from :func:`as_query_batch`)."""
    out = np.empty((qoff.size - 1, offsets.size - 1), dtype=np.float32)
    if out.size == 0:
        return out
    qc, qs = quantize_int8(qv)
    dim = int(codes.shape[1])
    plain, fast = _int8_kernels(dim)
    path = "portable" if portable else int8_path()
    with threads(n_threads):
        bounds = balanced_bounds(offsets, 4 * numba.get_num_threads())
        if path == "vnni" and fast is not None:
            if corrections is None:
                corrections = int8_corrections(codes)
            fast(_pack_vnni_queries(qc), qs, qoff, codes, scales, corrections, offsets, bounds, out)
        elif path in INT16_TILES and dim % 2 == 0:
            width, rv, c = INT16_TILES[path]
            scratch = np.empty(((bounds.size - 1) * INT16_DOC_BLOCK, dim), dtype=np.int16)
            _int16_kernel(dim, width, rv, c)(_pack_int16_queries(qc, width), qs, qoff, codes, scales, offsets, bounds,
                                             scratch, out)
        else:
            plain(qc, qs, qoff, codes, scales, offsets, bounds, out)
    return out


# -- binary ------------------------------------------------------------------------------

def pack_binary(vectors: np.ndarray) -> np.ndarray:
    """Sign bits (``x > 0``) packed into ``(N, ceil(dim / 64))`` uint64 words, zero-padded."""
    x = np.asarray(vectors)
    n, dim = x.shape
    words = (dim + 63) // 64
    bits = np.zeros((n, words * 64), dtype=bool)
    bits[:, :dim] = x > 0
    return np.ascontiguousarray(np.packbits(bits, axis=1, bitorder="little").view("<u8"))


@functools.lru_cache(maxsize=None)
def _binary_kernel(words: int):
    @njit(parallel=True, cache=True)
    def kernel(qbT, qoff, db, doff, bounds, dim, out) -> None:
        # qbT: (words, n_query_rows) so the row loop vectorises (vpopcntq across rows)
        m = qbT.shape[1]
        for c in prange(bounds.size - 1):
            least = np.empty(m, dtype=np.int32)
            best = np.empty(m, dtype=np.float32)
            for d in range(bounds[c], bounds[c + 1]):
                least[:] = 1 << 30
                for j in range(doff[d], doff[d + 1]):
                    for i in range(m):
                        h = np.int32(0)
                        for w in range(words):
                            h += np.int32(popcount64(qbT[w, i] ^ db[j, w]))
                        least[i] = min(least[i], h)
                for i in range(m):
                    best[i] = np.float32(dim - 2 * least[i]) if least[i] < (1 << 30) else -np.inf
                sum_per_query(best, qoff, out, d)

    return kernel


def maxsim_binary(
    queries, codes: np.ndarray, offsets: np.ndarray, dim: int, *, n_threads: int | None = None
) -> np.ndarray:
    """Hamming MaxSim: ``sum_i max_j (dim - 2 * hamming(sign(q_i), sign(d_j)))``.

    Parameters
    ----------
    queries : as for :func:`~colprune.kernels.maxsim_scores`; binarised with :func:`pack_binary`
    codes : (N, words) uint64 from :func:`pack_binary`
    offsets : (n_docs + 1,) int64
    dim : the vectors' dimension before packing

    Returns
    -------
    (n_queries, n_docs) float32; an empty document scores -inf.
    """
    qv, qoff, _ = as_query_batch(queries, dim=dim)
    codes = np.ascontiguousarray(codes)
    words = (dim + 63) // 64
    if codes.dtype != np.uint64 or codes.ndim != 2 or codes.shape[1] != words:
        raise ValueError(f"codes must be (N, {words}) uint64 from pack_binary, got {codes.shape} {codes.dtype}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets[-1] != codes.shape[0]:
        raise ValueError("offsets must end at len(codes)")
    return maxsim_binary_csr(qv, qoff, codes, offsets, dim, n_threads=n_threads)


def maxsim_binary_csr(
    qv: np.ndarray, qoff: np.ndarray, codes: np.ndarray, offsets: np.ndarray, dim: int, *, n_threads: int | None = None
) -> np.ndarray:
    """:func:`maxsim_binary` on already-validated CSR queries and store (from :func:`as_query_batch`)."""
    words = codes.shape[1]
    out = np.empty((qoff.size - 1, offsets.size - 1), dtype=np.float32)
    if out.size == 0:
        return out
    qbT = np.ascontiguousarray(pack_binary(qv).T)
    with threads(n_threads):
        bounds = balanced_bounds(offsets, 4 * numba.get_num_threads())
        _binary_kernel(words)(qbT, qoff, codes, offsets, bounds, np.int64(dim), out)
    return out
