"""Residual compression (ColBERTv2 / PLAID): a centroid code plus a few bits per dimension.

A vector ``x`` is stored as ``code = argmin_k ||x - C_k||^2`` (uint16; ties: lowest ``k``) and, per
dimension ``d``, the bucket ``b_d`` of its residual ``r = x - C[code]`` among ``2**nbits`` buckets
(``b_d = searchsorted(cutoffs[d], r_d, side="right")``), packed ``8 / nbits`` dimensions a byte,
dimension 0 in the low bits. It decodes to ``C[code][d] + weights[d, b_d]`` (float32).
Cutoffs and weights are per-dimension quantiles of the training sample's residuals
(:func:`residual_buckets`); the centroids come from :func:`train_centroids`. Given the centroids'
groups (:func:`~colprune.kernels.assign.group_centroids`), the code is the nearest centroid among
those of the vector's nearest groups (two-level search, as a codebook of 1,024 or more centroids
encodes; :mod:`colprune.kernels.assign`). ``colprune.kernels.reference`` holds the float64 oracles
the tests compare against.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import njit, prange

from ..errors import InvalidInputError
from ._tiles import float_tile, stable
from .assign import MAX_CENTROIDS, CentroidGroups, nearest_centroids, train_centroids
from .checks import float_matrix
from .maxsim import (
    FASTMATH,
    QUERY_BLOCK,
    as_query_batch,
    balanced_bounds,
    doc_runner,
    pack_query_groups,
    sum_per_query,
    threads,
    tile_shape,
)

__all__ = [
    "NBITS",
    "codebook_size",
    "train_centroids",
    "residual_buckets",
    "assign_centroids",
    "encode_residual",
    "decode_residual",
    "maxsim_residual_csr",
    "check_residual_store",
    "pack_buckets",
    "unpack_buckets",
]

NBITS = (1, 2, 4)


# -- validation ----------------------------------------------------------------------------

def _check_nbits(nbits, dim: int | None = None) -> int:
    if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or int(nbits) not in NBITS:
        raise InvalidInputError(f"nbits must be one of {NBITS}, got {nbits!r}")
    nbits = int(nbits)
    if dim is not None and (dim * nbits) % 8:
        raise InvalidInputError(f"dim * nbits must be a multiple of 8 to pack residuals, got dim {dim} x nbits {nbits}")
    return nbits


def _check_codes(codes, n_centroids: int, n: int | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "ui" or codes.ndim != 1:
        raise InvalidInputError(f"codes must be a 1-D integer array (uint16), got {codes.shape} {codes.dtype}")
    if n is not None and codes.shape[0] != n:
        raise InvalidInputError(f"codes has {codes.shape[0]} entries, expected {n}")
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= n_centroids):
        raise InvalidInputError(f"codes must be centroid ids in [0, {n_centroids}), got {int(codes.min())}..{int(codes.max())}")
    return np.ascontiguousarray(codes, dtype=np.uint16)


def _check_offsets(offsets, n: int, name: str = "offsets") -> np.ndarray:
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "ui" or offsets.ndim != 1 or offsets.size < 1:
        raise InvalidInputError(f"{name} must be a 1-D integer array of n_docs + 1 entries, got {offsets.shape} {offsets.dtype}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise InvalidInputError(f"{name} must rise from 0 to {n} (the number of vectors), got {offsets[0]}..{offsets[-1]}")
    return offsets


def check_residual_store(codes, packed, centroids, weights, nbits):
    """Validate and convert a residual-coded store.

    Returns ``(codes (N,) uint16, packed (N, dim*nbits//8) uint8, centroids (K, dim) float32,
    weights (dim, 2**nbits) float32, nbits)``; raises :class:`~colprune.errors.InvalidInputError`
    naming the argument that is wrong.
    """
    centroids = float_matrix(centroids, "centroids")
    k, dim = centroids.shape
    if not 1 <= k <= MAX_CENTROIDS:
        raise InvalidInputError(f"centroids must hold 1..{MAX_CENTROIDS} rows, got {k}")
    nbits = _check_nbits(nbits, dim)
    weights = float_matrix(weights, "weights")
    if weights.shape != (dim, 1 << nbits):
        raise InvalidInputError(f"weights must be (dim, 2**nbits) = ({dim}, {1 << nbits}), got {weights.shape}")
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != dim * nbits // 8:
        raise InvalidInputError(f"packed must be (N, {dim * nbits // 8}) uint8 (dim {dim} x nbits {nbits} / 8), "
                                f"got {packed.shape} {packed.dtype}")
    codes = _check_codes(codes, k, packed.shape[0])
    return codes, np.ascontiguousarray(packed), centroids, weights, nbits


# -- training ------------------------------------------------------------------------------

def codebook_size(n_vectors: int) -> int:
    """Number of centroids for a collection of ``n_vectors``: ``2**floor(log2(16 * sqrt(n)))``,
    at most 65536 and at most ``n`` (the largest power of two not above either bound).

    ``codebook_size(1) == 1``, ``codebook_size(1000) == 256``, ``codebook_size(10**6) == 8192``.
    """
    if isinstance(n_vectors, bool) or not isinstance(n_vectors, (int, np.integer)) or n_vectors < 1:
        raise InvalidInputError(f"n_vectors must be a positive integer, got {n_vectors!r}")
    n = int(n_vectors)
    e = 0  # largest e with 2**e <= 16 * sqrt(n), i.e. 4**e <= 256 * n, in integers
    while 4 ** (e + 1) <= 256 * n:
        e += 1
    k = min(1 << e, MAX_CENTROIDS)
    while k > n:
        k >>= 1
    return k


def residual_buckets(residuals, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension bucket cutoffs and weights from training residuals ``x - C[code]``.

    Returns ``cutoffs (dim, 2**nbits - 1)`` float32 (quantiles at ``(1..B-1)/B``) and
    ``weights (dim, 2**nbits)`` float32 (quantiles at ``(c + 0.5)/B``), ``B = 2**nbits``.
    """
    r = float_matrix(residuals, "residuals")
    if r.shape[0] == 0:
        raise InvalidInputError("residuals must hold at least one row")
    nbits = _check_nbits(nbits)
    b = 1 << nbits
    cutoffs = np.quantile(r, np.arange(1, b) / b, axis=0).T
    weights = np.quantile(r, (np.arange(b) + 0.5) / b, axis=0).T
    return np.ascontiguousarray(cutoffs, dtype=np.float32), np.ascontiguousarray(weights, dtype=np.float32)


# -- encoding and decoding -----------------------------------------------------------------

def assign_centroids(x, centroids, *, groups: CentroidGroups | None = None, probe: int | None = None) -> np.ndarray:
    """Nearest centroid of each row of ``x`` (N, dim): ``(N,)`` uint16 (ties: the lowest id).

    Distances are ``||C_k||^2 - 2 <x, C_k>`` in float32 by BLAS, so rows almost equidistant from
    two centroids may pick either (the float64 reference can differ there). With ``groups``
    (:func:`~colprune.kernels.assign.group_centroids` of ``centroids``) the search is two-level:
    the nearest among the members of each row's ``probe`` nearest groups.
    """
    centroids = float_matrix(centroids, "centroids")
    if not 1 <= centroids.shape[0] <= MAX_CENTROIDS:
        raise InvalidInputError(f"centroids must hold 1..{MAX_CENTROIDS} rows, got {centroids.shape[0]}")
    x = float_matrix(x, "x", centroids.shape[1])
    return nearest_centroids(x, centroids, groups=groups, probe=probe).astype(np.uint16)


def _shifts(nbits: int) -> np.ndarray:
    return (np.arange(8 // nbits, dtype=np.uint8) * nbits).astype(np.uint8)


def pack_buckets(buckets: np.ndarray, nbits: int) -> np.ndarray:
    """``(N, dim)`` bucket ids (< 2**nbits) packed to ``(N, dim*nbits//8)`` uint8, dimension 0 in the low bits."""
    n, dim = buckets.shape
    per = 8 // nbits
    b = buckets.astype(np.uint8).reshape(n, dim // per, per)
    return np.ascontiguousarray(np.bitwise_or.reduce(b << _shifts(nbits), axis=2), dtype=np.uint8)


def unpack_buckets(packed: np.ndarray, nbits: int) -> np.ndarray:
    """Inverse of the packing: ``(N, dim)`` uint8 bucket ids from ``(N, dim*nbits//8)`` uint8."""
    n, nb = packed.shape
    return ((packed[:, :, None] >> _shifts(nbits)) & np.uint8((1 << nbits) - 1)).reshape(n, nb * 8 // nbits)


def encode_residual(x, centroids, cutoffs, nbits: int, *, groups: CentroidGroups | None = None,
                    probe: int | None = None, weights=None):
    """Encode ``x`` (N, dim): ``(codes (N,) uint16, packed (N, dim*nbits//8) uint8)``.

    ``groups`` / ``probe``: two-level nearest-centroid search, as in :func:`assign_centroids`.
    With the bucket ``weights`` (dim, 2**nbits) a third array is returned: each row's squared
    reconstruction error ``||x - decode(code, packed)||^2`` (N,) float32, measured while encoding.

    Parameters
    ----------
    x : (N, dim) float array, finite
    centroids : (K, dim) float32 (the float16-stored codebook widened)
    cutoffs : (dim, 2**nbits - 1) float32, ascending per row
    nbits : 1, 2 or 4, with ``dim * nbits % 8 == 0``
    """
    centroids = float_matrix(centroids, "centroids")
    dim = centroids.shape[1]
    nbits = _check_nbits(nbits, dim)
    cutoffs = float_matrix(cutoffs, "cutoffs")
    if cutoffs.shape != (dim, (1 << nbits) - 1):
        raise InvalidInputError(f"cutoffs must be (dim, 2**nbits - 1) = ({dim}, {(1 << nbits) - 1}), got {cutoffs.shape}")
    if not 1 <= centroids.shape[0] <= MAX_CENTROIDS:
        raise InvalidInputError(f"centroids must hold 1..{MAX_CENTROIDS} rows, got {centroids.shape[0]}")
    w = np.zeros((dim, 1 << nbits), np.float32) if weights is None else float_matrix(weights, "weights")
    if w.shape != (dim, 1 << nbits):
        raise InvalidInputError(f"weights must be (dim, 2**nbits) = ({dim}, {1 << nbits}), got {w.shape}")
    x = float_matrix(x, "x", dim)
    codes = nearest_centroids(x, centroids, groups=groups, probe=probe).astype(np.uint16)
    packed = np.zeros((x.shape[0], dim * nbits // 8), dtype=np.uint8)
    err = np.zeros(x.shape[0], np.float32)
    if x.shape[0]:
        with threads(None):
            _bucketise(x, centroids, codes, cutoffs, w, np.int64(nbits), packed, err)
    return (codes, packed) if weights is None else (codes, packed, err)


@njit(parallel=True, cache=True)
def _bucketise(x, cent, codes, cutoffs, weights, nbits, packed, err) -> None:
    # b_d = number of cutoffs <= r_d (searchsorted side="right" on ascending cutoffs), packed low bits first;
    # err_j = sum_d (r_d - weights[d, b_d])^2, the decoded row's squared error, while r is at hand
    for j in prange(x.shape[0]):
        c = codes[j]
        e = np.float32(0.0)
        for t in range(x.shape[1]):
            r = x[j, t] - cent[c, t]
            b = 0
            for u in range(cutoffs.shape[1]):
                b += cutoffs[t, u] <= r
            packed[j, (t * nbits) >> 3] |= np.uint8(b << ((t * nbits) & 7))
            q = r - weights[t, b]
            e += q * q
        err[j] = e


@njit(parallel=True, cache=True)
def _decode(codes, packed, cent, weights, nbits, out) -> None:
    mask = (1 << nbits) - 1
    for j in prange(codes.shape[0]):
        c = codes[j]
        for t in range(out.shape[1]):
            b = (packed[j, (t * nbits) >> 3] >> ((t * nbits) & 7)) & mask
            out[j, t] = cent[c, t] + weights[t, b]


def decode_residual(codes, packed, centroids, weights, nbits: int) -> np.ndarray:
    """Decode to ``(N, dim)`` float32: ``centroids[codes] + weights[d, bucket_d]``."""
    codes, packed, centroids, weights, nbits = check_residual_store(codes, packed, centroids, weights, nbits)
    out = np.empty((codes.shape[0], centroids.shape[1]), dtype=np.float32)
    if codes.size:
        with threads(None):
            _decode(codes, packed, centroids, weights, np.int64(nbits), out)
    return out


# -- scoring -------------------------------------------------------------------------------

def maxsim_residual_csr(queries, codes, packed, offsets, centroids, weights, nbits: int, docs=None, *,
                        n_threads: int | None = None) -> np.ndarray:
    """Exact MaxSim of the queries against residual-coded documents (exact w.r.t. the decoded vectors).

    Parameters
    ----------
    queries : (m, dim) array, (n_queries, m, dim) array or a list of (m_q, dim) arrays
    codes : (N,) uint16; packed : (N, dim*nbits//8) uint8
    offsets : (n_docs + 1,) int64; document ``d`` owns rows ``offsets[d]:offsets[d + 1]``
    centroids : (K, dim) float32; weights : (dim, 2**nbits) float32; nbits : 1, 2 or 4
    docs : (n,) int array, optional
        Score only these documents: column ``k`` is document ``docs[k]``.

    Returns
    -------
    (n_queries, n_docs or len(docs)) float32; an empty document scores ``-inf``.
    """
    codes, packed, centroids, weights, nbits = check_residual_store(codes, packed, centroids, weights, nbits)
    offsets = _check_offsets(offsets, codes.shape[0])
    try:
        qv, qoff, _ = as_query_batch(queries, dim=centroids.shape[1])
    except InvalidInputError:
        raise
    except ValueError as e:
        raise InvalidInputError(f"queries: {e}") from None
    n_docs = offsets.size - 1
    if docs is not None:
        docs = np.asarray(docs)
        if docs.dtype.kind not in "ui" or docs.ndim != 1:
            raise InvalidInputError(f"docs must be a 1-D integer array, got {docs.shape} {docs.dtype}")
        if docs.size and (int(docs.min()) < 0 or int(docs.max()) >= n_docs):
            raise InvalidInputError(f"docs must be document indices in [0, {n_docs})")
        docs = np.ascontiguousarray(docs, dtype=np.int64)
    docs = np.arange(n_docs, dtype=np.int64) if docs is None else docs
    out = np.empty((qoff.size - 1, docs.size), dtype=np.float32)
    if out.size == 0:
        return out
    dim = centroids.shape[1]
    with threads(n_threads):
        work = np.concatenate([[0], np.cumsum(offsets[docs + 1] - offsets[docs])])
        bounds = balanced_bounds(work, 4 * numba.get_num_threads())
        shape = tile_shape(None, qoff, False)
        if shape is None:
            scratch = np.empty(((bounds.size - 1) * RESIDUAL_BLOCK, dim), dtype=np.float32)
            _plain_kernel(dim, nbits)(qv, qoff, codes, packed, offsets, docs, centroids, weights, bounds, scratch, out)
        else:
            width, rv, c = shape
            qpk = pack_query_groups(qv, qoff, width, False)[0]
            scratch = np.empty(((bounds.size - 1) * RESIDUAL_BLOCK, dim), dtype=np.float32)
            _tile_kernel(dim, nbits, width, rv, c)(qpk, qoff, codes, packed, offsets, docs, centroids, weights, bounds,
                                                   scratch, out)
    return out


# decoded vectors per block: 32 x dim float32 (16 KB at dim 128) stay in L1 while every query row passes
RESIDUAL_BLOCK = 32


@functools.cache
def _decoder(dim: int, nbits: int):
    mask = (1 << nbits) - 1
    per, n_bytes = 8 // nbits, dim * nbits // 8

    @njit(cache=True, inline="always")
    def decode_rows(codes, packed, cent, weights, a, n, scratch, base) -> None:
        # rows a..a+n decoded into scratch[base:base+n]; dim and nbits are constants, so the loops unroll.
        # Byte by byte (each byte loaded once): measured faster than indexing the byte per dimension at 4 bits.
        for j in range(n):
            c = codes[a + j]
            for p in range(n_bytes):
                v = packed[a + j, p]
                for k in range(per):
                    t = p * per + k
                    scratch[base + j, t] = cent[c, t] + weights[t, (v >> (k * nbits)) & mask]

    return stable(decode_rows, f"residual_decode:{dim}:{nbits}")


@functools.cache
def _plain_kernel(dim: int, nbits: int):
    """Portable loops: decode a block, then every query row against it (LLVM vectorises the dots)."""
    decode_rows = _decoder(dim, nbits)
    DB = RESIDUAL_BLOCK

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def kernel(qv, qoff, codes, packed, doff, docs, cent, weights, bounds, scratch, out) -> None:
        m = qv.shape[0]
        for ch in prange(bounds.size - 1):
            best = np.empty(m, dtype=np.float32)
            base = ch * DB
            for k in range(bounds[ch], bounds[ch + 1]):
                d = docs[k]
                best[:] = -np.inf
                for a in range(doff[d], doff[d + 1], DB):
                    n = min(DB, doff[d + 1] - a)
                    decode_rows(codes, packed, cent, weights, a, n, scratch, base)
                    for i0 in range(0, m, QUERY_BLOCK):
                        i1 = min(i0 + QUERY_BLOCK, m)
                        for j in range(base, base + n):
                            for i in range(i0, i1):
                                acc = np.float32(0.0)
                                for t in range(dim):
                                    acc += qv[i, t] * scratch[j, t]
                                best[i] = max(best[i], acc)
                sum_per_query(best, qoff, out, k)

    return kernel


@functools.cache
def _tile_kernel(dim: int, nbits: int, width: int, rv: int, c: int):
    """Register tiles (AVX2/AVX-512, as the float kernels): decode a block, score it with every query group."""
    decode_rows = _decoder(dim, nbits)
    DB = RESIDUAL_BLOCK
    row_bytes, group_bytes, best_bytes = dim * 4, dim * width * 4, width * 4

    def runner(r):
        return doc_runner(float_tile(dim, width, r, c), float_tile(dim, width, r, 2), float_tile(dim, width, r, 1),
                          c, row_bytes, f"residual_run:{dim}:{width}:{r}:{c}")

    run_a, run_b, run_1 = runner(rv), runner(min(2, rv)), runner(1)

    @njit(parallel=True, cache=True)
    def kernel(qpk, qoff, codes, packed, doff, docs, cent, weights, bounds, scratch, out) -> None:
        # queries packed back to back (pack_query_groups, aligned=False): best[i] is query row i
        ng = qpk.shape[0]
        qbase = qpk.ctypes.data
        for ch in prange(bounds.size - 1):
            best = np.empty(ng * width, dtype=np.float32)
            ba0 = best.ctypes.data
            base = ch * DB
            sa = scratch[base:].ctypes.data
            for k in range(bounds[ch], bounds[ch + 1]):
                d = docs[k]
                best[:] = -np.inf
                for a in range(doff[d], doff[d + 1], DB):
                    n = min(DB, doff[d + 1] - a)
                    decode_rows(codes, packed, cent, weights, a, n, scratch, base)
                    for g in range(0, ng, rv):
                        nr = min(rv, ng - g)
                        if nr == rv:
                            run_a(qbase + g * group_bytes, sa, n, ba0 + g * best_bytes)
                        elif nr == 1:
                            run_1(qbase + g * group_bytes, sa, n, ba0 + g * best_bytes)
                        else:
                            run_b(qbase + g * group_bytes, sa, n, ba0 + g * best_bytes)
                sum_per_query(best, qoff, out, k)

    return kernel
