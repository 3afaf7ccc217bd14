"""Nearest-centroid assignment: exact by BLAS for small codebooks, two-level for large ones.

Encoding a vector for a residual codec starts with its nearest centroid. Exact assignment costs
``2 * K * dim`` flops per vector (105 MFLOP per 100-vector page at K = 4,096), which makes the
codec's encoding, not the write, the cost of a build. :func:`nearest_centroids` therefore groups
the ``K`` centroids into ``G ~ sqrt(K)`` groups by k-means on the centroids themselves
(:func:`group_centroids`), scores each vector against the ``G`` group centres, and searches the
members of its ``probe`` nearest groups only (the IVF idea, applied to the codebook):
``2 * (G + probe * K / G) * dim`` flops. With ``probe == G`` it is exact assignment.

The result is a valid code for every vector; a vector whose true nearest centroid sits in a group
it did not probe gets the nearest among those it did (a slightly larger residual, which the
codec's buckets then quantise as any other). The tests bound the error against exact assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .checks import float_matrix

__all__ = ["CentroidGroups", "group_centroids", "search_groups", "nearest_centroids", "train_centroids", "TWO_LEVEL_MIN",
           "MAX_CENTROIDS", "default_probe"]

#: codes are uint16
MAX_CENTROIDS = 65536
#: codebooks of at least this many centroids are searched two-level by default (smaller ones exactly)
TWO_LEVEL_MIN = 1024
# rows of x scored against every centroid at once by BLAS: 4096 x K float32 (64 MiB at K = 4096)
_EXACT_CHUNK = 4096
# rows of x routed through the groups at once (each group then scores ~chunk * probe / G rows by BLAS)
_GROUPED_CHUNK = 16384


@dataclass(frozen=True)
class CentroidGroups:
    """A partition of a codebook's ``K`` centroids into ``G`` groups (k-means on the centroids).

    Attributes
    ----------
    centres : (G, dim) float32, the groups' mean centroids
    offsets : (G + 1,) int64, group ``g`` holds ``members[offsets[g]:offsets[g + 1]]``
    members : (K,) int64, centroid ids ordered by group (ascending within a group)
    """

    centres: np.ndarray
    offsets: np.ndarray
    members: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.centres.shape[0])


def default_probe(n_groups: int) -> int:
    """Groups searched per vector by default: a sixteenth of them, at least 4 (all when there are fewer).

    Measured at K = 4,096 (64 groups, 4 probed; ``bench/assign.py``): 3-5x fewer seconds than exact
    assignment, at a mean squared residual 0.6-2.3% above exact's on MiniLM token vectors of MS MARCO
    and on synthetic pages."""
    return int(min(n_groups, max(4, n_groups // 16)))


def _sqnorms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def _exact(x: np.ndarray, cent: np.ndarray, codes: np.ndarray, dist: np.ndarray | None) -> None:
    # argmin_k ||x - C_k||^2 = argmin_k (||C_k||^2 - 2 <x, C_k>), by BLAS in chunks of rows
    ct = np.ascontiguousarray(cent.T) * np.float32(-2.0)
    cnorm = _sqnorms(cent)
    for a in range(0, x.shape[0], _EXACT_CHUNK):
        s = x[a:a + _EXACT_CHUNK] @ ct
        s += cnorm
        best = np.argmin(s, axis=1)
        codes[a:a + best.size] = best
        if dist is not None:
            xx = _sqnorms(x[a:a + _EXACT_CHUNK])
            dist[a:a + best.size] = np.maximum(s[np.arange(best.size), best] + xx, 0)


def group_centroids(centroids, n_groups: int | None = None, *, seed: int = 0) -> CentroidGroups:
    """Partition ``centroids`` (K, dim) into ``n_groups`` groups by k-means (default:
    ``2**round(log2(sqrt(K)))``, Python's round: 64 groups for K = 4,096 and 8,192); deterministic for
    a seed. Empty groups are dropped."""
    cent = np.ascontiguousarray(centroids, np.float32)
    if cent.ndim != 2 or cent.shape[0] == 0:
        raise InvalidInputError(f"centroids must be a non-empty (K, dim) array, got shape {cent.shape}")
    k = cent.shape[0]
    if n_groups is None:
        n_groups = 1 << max(0, int(round(np.log2(np.sqrt(k)))))
    g = int(min(max(1, n_groups), k))
    centres = train_centroids(cent, g, iters=10, seed=seed)
    codes = np.empty(k, np.int64)
    _exact(cent, centres, codes, None)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=g)
    keep = counts > 0
    offsets = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(counts[keep], out=offsets[1:])
    return CentroidGroups(np.ascontiguousarray(centres[keep]), offsets, order.astype(np.int64))


def search_groups(centroids, *, seed: int = 0) -> CentroidGroups | None:
    """The groups a codebook is searched through: :func:`group_centroids` for at least
    :data:`TWO_LEVEL_MIN` centroids, None (exact search) below."""
    return group_centroids(centroids, seed=seed) if len(centroids) >= TWO_LEVEL_MIN else None


def _grouped(x: np.ndarray, cent: np.ndarray, groups: CentroidGroups, probe: int, codes: np.ndarray,
             dist: np.ndarray | None) -> None:
    gct = np.ascontiguousarray(groups.centres.T) * np.float32(-2.0)
    gnorm = _sqnorms(groups.centres)
    cnorm = _sqnorms(cent)
    n_g = groups.n_groups
    probe = min(probe, n_g)
    sizes = np.diff(groups.offsets)
    # each group's members as a (dim, m) -2 * C^T block, made once
    blocks = [np.ascontiguousarray(cent[groups.members[groups.offsets[g]:groups.offsets[g + 1]]].T) * np.float32(-2.0)
              for g in range(n_g)]
    for a in range(0, x.shape[0], _GROUPED_CHUNK):
        xa = x[a:a + _GROUPED_CHUNK]
        n = xa.shape[0]
        s = xa @ gct
        s += gnorm
        top = np.argpartition(s, probe - 1, axis=1)[:, :probe] if probe < n_g else np.broadcast_to(np.arange(n_g), (n, n_g))
        flat_g = top.ravel()
        order = np.argsort(flat_g, kind="stable")
        flat_r = order // probe  # the row of each (row, probe) pair, grouped by group
        bounds = np.searchsorted(flat_g[order], np.arange(n_g + 1))
        per = np.diff(bounds)
        # reused buffers: fresh multi-MB arrays per group would cost more in page faults than the products
        xbuf = np.empty((int(per.max()), x.shape[1]), np.float32)
        dbuf = np.empty(int((per * sizes).max()), np.float32)  # the largest (rows, members) product of one group
        best = np.full(n, np.inf, np.float32)
        arg = np.zeros(n, np.int64)
        for g in np.flatnonzero(per):
            lo, hi = bounds[g], bounds[g + 1]
            rows = flat_r[lo:hi]
            mem = groups.members[groups.offsets[g]:groups.offsets[g + 1]]
            xg = np.take(xa, rows, axis=0, out=xbuf[: rows.size], mode="clip")  # "raise" would buffer the copy
            d = np.matmul(xg, blocks[g], out=dbuf[: rows.size * mem.size].reshape(rows.size, mem.size))
            d += cnorm[mem]
            j = np.argmin(d, axis=1)
            dv = d[np.arange(rows.size), j]
            cand = mem[j]
            # strictly better, or equal with a lower id: the result does not depend on the order groups are visited
            old = best[rows]
            better = (dv < old) | ((dv == old) & (cand < arg[rows]))
            best[rows[better]] = dv[better]
            arg[rows[better]] = cand[better]
        codes[a:a + n] = arg
        if dist is not None:
            dist[a:a + n] = np.maximum(best + _sqnorms(xa), 0)


def nearest_centroids(x, centroids, *, groups: CentroidGroups | None = None, probe: int | None = None,
                      distances: bool = False):
    """Nearest centroid of each row of ``x``: exact, or two-level through ``groups``.

    Parameters
    ----------
    x : (N, dim) float32, finite (callers validate)
    centroids : (K, dim) float32
    groups : the centroids' :func:`group_centroids` partition, or None for exact assignment
    probe : groups searched per row (default :func:`default_probe`); ``probe >= G`` is exact
    distances : also return each row's squared distance to the centroid it got

    Returns
    -------
    codes : (N,) int64 in ``[0, K)``, and ``(N,)`` float32 squared distances when ``distances``
    """
    x = np.ascontiguousarray(x, np.float32)
    cent = np.ascontiguousarray(centroids, np.float32)
    codes = np.empty(x.shape[0], np.int64)
    dist = np.empty(x.shape[0], np.float32) if distances else None
    if x.shape[0]:
        if groups is None:
            _exact(x, cent, codes, dist)
        else:
            p = default_probe(groups.n_groups) if probe is None else int(probe)
            if p < 1:
                raise InvalidInputError(f"probe must be at least 1, got {probe!r}")
            if groups.members.size != cent.shape[0] or groups.centres.shape[1] != cent.shape[1]:
                raise InvalidInputError(f"groups partition {groups.members.size} centroids of dim {groups.centres.shape[1]}, "
                                        f"not these {cent.shape[0]} of dim {cent.shape[1]}: make them with "
                                        f"group_centroids(centroids)")
            _grouped(x, cent, groups, p, codes, dist)
    return (codes, dist) if distances else codes


# -- k-means ---------------------------------------------------------------------------------

def train_centroids(sample, k: int, *, iters: int = 8, seed: int = 0, two_level: bool = True) -> np.ndarray:
    """Euclidean k-means (Lloyd) on ``sample``: ``(k, dim)`` float32 centroids.

    Deterministic for a seed: starts at ``k`` distinct sample rows drawn by ``default_rng(seed)``;
    each of ``iters`` steps assigns every row to its nearest centroid (BLAS, in chunks) and moves
    each centroid to its members' mean. A cluster left empty is re-seeded at the rows farthest
    from their centroids (largest squared error first). With ``two_level`` and ``k >=``
    :data:`~colprune.kernels.assign.TWO_LEVEL_MIN` each step assigns through the current centroids'
    groups (:func:`~colprune.kernels.assign.nearest_centroids`), as faiss assigns large k-means
    approximately: ~``sqrt(k)`` times fewer flops per step.

    Parameters
    ----------
    sample : (S, dim) float array, finite, ``S >= k``
    k : int, 1 <= k <= min(S, 65536)
    iters : int >= 0
    seed : int
    """
    x = float_matrix(sample, "sample")
    s, _ = x.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(s, MAX_CENTROIDS):
        raise InvalidInputError(f"k must be an integer in [1, min(len(sample)={s}, {MAX_CENTROIDS})], got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise InvalidInputError(f"iters must be a non-negative integer, got {iters!r}")
    k = int(k)
    rng = np.random.default_rng(seed)
    cent = x[np.sort(rng.choice(s, size=k, replace=False))].copy()
    for _ in range(int(iters)):
        groups = search_groups(cent, seed=seed) if two_level else None
        codes, dist = nearest_centroids(x, cent, groups=groups, distances=True)
        counts = np.bincount(codes, minlength=k)
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        _sum_rows(sums, codes, x)
        full = counts > 0
        cent[full] = (sums[full] / counts[full, None]).astype(np.float32)
        empty = np.flatnonzero(~full)
        if empty.size:
            far = np.argsort(-dist, kind="stable")[: empty.size]
            cent[empty] = x[far]
    return np.ascontiguousarray(cent, dtype=np.float32)


def _sum_rows(sums: np.ndarray, codes: np.ndarray, x: np.ndarray) -> None:
    # per-cluster row sums by one sort and reduceat (np.add.at is slow for many rows)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    sums[sc[starts]] = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
