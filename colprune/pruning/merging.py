"""Mergers: replace groups of patch vectors by their mean, instead of dropping vectors.

Every merger takes ``ratio``, the share of a page's patch vectors to end up with (so merged
and pruned indexes compare at equal storage). A merged vector is the mean of its group,
L2-normalised and rescaled to the group's mean norm; its importance is the group's mean;
``PrunedPage.covers`` lists the input rows it stands for. Non-patch rows pass through.

- :class:`HierarchicalPooling`: Ward agglomerative clustering of the page's vectors, as in
  colpali-engine's ``HierarchicalTokenPooler`` (pool factor = 1 / ratio).
- :class:`SequentialPooling`: consecutive runs of ``round(1 / ratio)`` patches (1-D).
- :class:`GridPooling`: square windows on the patch grid (2-D); partial windows at the
  right and bottom edges pool what is there.
- :class:`KMeansPooling`: spherical k-means with ``round(ratio * n)`` centroids (semantic).
- :class:`PruneThenMerge`: any pruner, then any merger on what it kept.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .base import PrunedPage, Pruner, check_ratio, n_from_ratio

__all__ = ["Merger", "HierarchicalPooling", "SequentialPooling", "GridPooling", "KMeansPooling", "PruneThenMerge",
           "ward_linkage", "ward_groups", "add_summary"]


def _merge(vectors: np.ndarray, imp: np.ndarray | None, groups: list[np.ndarray]):
    x = vectors.astype(np.float32)
    norms = np.linalg.norm(x, axis=1)
    out = np.empty((len(groups), x.shape[1]), np.float32)
    out_imp = np.empty(len(groups), np.float32)
    for g, members in enumerate(groups):
        m = x[members].mean(axis=0)
        length = float(np.linalg.norm(m))
        out[g] = m * (norms[members].mean() / length) if length > 0 else m
        out_imp[g] = np.nan if imp is None else float(imp[members].mean())
    return out, out_imp


class Merger(Pruner):
    """Base class of mergers: subclasses implement :meth:`_groups`."""

    merges: ClassVar[bool] = True
    needs_importance = False

    def __init__(self, ratio: float = 0.5) -> None:
        self.ratio = check_ratio(ratio)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio}

    def _select(self, importance, vectors):  # mergers build groups instead
        raise NotImplementedError

    def _groups(self, importance: np.ndarray | None, vectors: np.ndarray, grid: tuple[int, int] | None) -> list[np.ndarray]:
        """Groups of patch indices (each non-empty, together a partition of the patches)."""
        raise NotImplementedError

    def prune_checked(self, vectors, imp, mask, grid=None) -> PrunedPage:
        patch_rows = np.flatnonzero(mask)
        other = np.flatnonzero(~mask)
        groups = self._groups(None if imp is None else imp[patch_rows], vectors[patch_rows], grid) if patch_rows.size else []
        merged, merged_imp = _merge(vectors[patch_rows], None if imp is None else imp[patch_rows], groups)
        covers = [np.sort(patch_rows[g]) for g in groups] + [np.array([r]) for r in other]
        vecs = np.concatenate([merged, vectors[other].astype(np.float32)])
        other_imp = np.full(other.size, np.nan, np.float32) if imp is None else imp[other].astype(np.float32)
        imps = np.concatenate([merged_imp, other_imp])
        flags = np.r_[np.ones(len(groups), bool), np.zeros(other.size, bool)]
        first = np.array([c[0] for c in covers], np.int64)
        order = np.argsort(first, kind="stable")
        out_vecs = vecs[order]
        if vectors.dtype == np.float16:
            out_vecs = out_vecs.astype(np.float16)
        return PrunedPage(out_vecs, first[order], imps[order], flags[order], int(vectors.shape[0]),
                          tuple(covers[i].astype(np.int64) for i in order))


def add_summary(page: PrunedPage, vectors: np.ndarray, imp: np.ndarray | None, mask: np.ndarray) -> PrunedPage:
    """``page`` plus one summary vector: the mean of all the page's patch vectors (L2-normalised,
    rescaled to their mean norm), covering every patch row, placed first among the merged
    vectors. A page then never holds less than its own single-vector (mean-pooled) embedding."""
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return page
    vec, vimp = _merge(vectors[rows], None if imp is None else imp[rows], [np.arange(rows.size)])
    covers = page.covers if page.covers is not None else tuple(np.array([r]) for r in page.positions)
    at = int(np.searchsorted(page.positions, rows[0]))
    out_vecs = np.concatenate([page.vectors[:at], vec.astype(page.vectors.dtype), page.vectors[at:]])
    return PrunedPage(out_vecs, np.insert(page.positions, at, rows[0]), np.insert(page.importance, at, vimp[0]),
                      np.insert(page.patch_mask, at, True), page.n_original,
                      covers[:at] + (rows.astype(np.int64),) + covers[at:])


class HierarchicalPooling(Merger):
    """Ward clustering into ``round(ratio * n)`` clusters (colpali-engine's token pooler)."""

    name = "ward"

    def _groups(self, importance, vectors, grid):
        return ward_groups(vectors, n_from_ratio(self.ratio, vectors.shape[0]))


_LINKAGE_CACHE: dict[bytes, np.ndarray] = {}
_LINKAGE_CACHE_BYTES = [0]
#: Bytes of Ward trees kept for re-cutting (the study cuts one page's tree at several budgets).
LINKAGE_CACHE_LIMIT = 256 << 20


def ward_linkage(vectors: np.ndarray) -> np.ndarray:
    """SciPy's Ward linkage of the rows, memoised by content: the tree does not depend on how
    many clusters are cut from it, so pruners cutting the same page at other counts reuse it."""
    import hashlib

    from scipy.cluster.hierarchy import linkage

    x = np.ascontiguousarray(vectors)
    key = hashlib.blake2b(x.tobytes(), digest_size=16, person=str(x.shape).encode()[:16]).digest()
    z = _LINKAGE_CACHE.get(key)
    if z is None:
        z = linkage(x.astype(np.float64), method="ward")
        if _LINKAGE_CACHE_BYTES[0] + z.nbytes > LINKAGE_CACHE_LIMIT:
            _LINKAGE_CACHE.clear()
            _LINKAGE_CACHE_BYTES[0] = 0
        _LINKAGE_CACHE[key] = z
        _LINKAGE_CACHE_BYTES[0] += z.nbytes
    return z


def ward_groups(vectors: np.ndarray, k: int) -> list[np.ndarray]:
    """The rows partitioned into (at most) ``k`` Ward clusters; ``k >= n`` keeps every row alone."""
    n = vectors.shape[0]
    if k >= n:
        return [np.array([i]) for i in range(n)]
    from scipy.cluster.hierarchy import fcluster

    labels = fcluster(ward_linkage(vectors), t=max(1, k), criterion="maxclust")
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


class SequentialPooling(Merger):
    """Consecutive runs of ``round(1 / ratio)`` patches (1-D pooling in sequence order)."""

    name = "pool1d"

    def _groups(self, importance, vectors, grid):
        w = max(1, round(1 / self.ratio))
        return [np.arange(a, min(a + w, vectors.shape[0])) for a in range(0, vectors.shape[0], w)]


class GridPooling(Merger):
    """Square windows of ``round(sqrt(1 / ratio))`` cells on the patch grid (2-D pooling)."""

    name = "pool2d"

    def _groups(self, importance, vectors, grid):
        if grid is None or grid[0] * grid[1] != vectors.shape[0]:
            raise InvalidInputError(f"pool2d needs the page's patch grid covering all {vectors.shape[0]} patches, got {grid}")
        rows, cols = grid
        w = max(1, round(math.sqrt(1 / self.ratio)))
        cell = np.arange(rows * cols).reshape(rows, cols)
        return [cell[r : r + w, c : c + w].ravel() for r in range(0, rows, w) for c in range(0, cols, w)]


class KMeansPooling(Merger):
    """Spherical k-means with ``round(ratio * n)`` centroids, a few Lloyd steps from evenly
    spaced starts (deterministic); empty clusters disappear."""

    name = "kmeans"

    def __init__(self, ratio: float = 0.5, iters: int = 10) -> None:
        super().__init__(ratio)
        self.iters = int(iters)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "iters": self.iters}

    def _groups(self, importance, vectors, grid):
        x = vectors.astype(np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        n = x.shape[0]
        k = n_from_ratio(self.ratio, n)
        cent = x[[(c * n) // k for c in range(k)]].copy()
        for _ in range(self.iters):
            assign = np.argmax(x @ cent.T, axis=1)
            for c in range(k):
                members = x[assign == c]
                if len(members):
                    m = members.sum(axis=0)
                    cent[c] = m / max(np.linalg.norm(m), 1e-12)
        assign = np.argmax(x @ cent.T, axis=1)
        return [np.flatnonzero(assign == c) for c in range(k) if (assign == c).any()]


class PruneThenMerge(Pruner):
    """Run ``pruner``, then ``merger`` on the vectors it kept; covers point at input rows."""

    name = "prune-merge"
    merges: ClassVar[bool] = True

    def __init__(self, pruner: dict | Pruner | None = None, merger: dict | Pruner | None = None) -> None:
        from . import make_pruner

        self.pruner = make_pruner(pruner or {"name": "adaptive", "params": {"k": -0.25}})
        self.merger = make_pruner(merger or {"name": "ward", "params": {"ratio": 0.5}})
        if not getattr(self.merger, "merges", False):
            raise InvalidInputError(f"{self.merger.name!r} is not a merger")
        self.needs_importance = self.pruner.needs_importance

    def params(self) -> dict[str, Any]:
        return {"pruner": self.pruner.config(), "merger": self.merger.config()}

    def __hash__(self) -> int:
        return hash((self.name, repr(self.params())))

    def _select(self, importance, vectors):
        raise NotImplementedError

    def prune_checked(self, vectors, imp, mask, grid=None) -> PrunedPage:
        first = self.pruner.prune_checked(vectors, imp, mask, grid)
        kept_imp = None if imp is None else imp[first.positions]
        second = self.merger.prune_checked(first.vectors, kept_imp, first.patch_mask, None)
        covers = tuple(first.positions[c] for c in second.covers)
        return PrunedPage(second.vectors, first.positions[second.positions], second.importance, second.patch_mask,
                          int(vectors.shape[0]), covers)
