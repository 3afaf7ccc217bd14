"""Attention decides how many vectors a page keeps; coverage decides which.

DocPruner's rule (keep the patches above ``mean + k * std`` of their page) keeps the *count* a
page's attention asks for, but its *selection* takes the top of one distribution: on a long page
those tokens crowd into a few sentences, and under a strong budget whole regions of the page
lose every vector (docs/study-financebench.md). The two selectors here keep the same count and
spread it over the page, still keeping exact token vectors (no merging):

- :class:`AdaptiveSpread` (``adaptive-spread``): attention-weighted farthest-point selection;
- :class:`AdaptiveCluster` (``adaptive-cluster``): one token per Ward cluster, the cluster's
  most attended.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .base import Pruner
from .counts import docpruner_count
from .merging import ward_groups

__all__ = ["AdaptiveSpread", "AdaptiveCluster", "spread_select", "cluster_select"]


def _check_k(k: float) -> float:
    k = float(k)
    if not np.isfinite(k):
        raise InvalidInputError(f"k must be finite, got {k}")
    return k


def _unit_weights(importance: np.ndarray) -> np.ndarray:
    """``(n,)`` importance min-max scaled to [0, 1] over the page (all zeros when all equal)."""
    lo, hi = float(importance.min()), float(importance.max())
    return (importance - lo) / (hi - lo) if hi > lo else np.zeros(importance.size)


def spread_select(importance: np.ndarray, vectors: np.ndarray, m: int, alpha: float) -> np.ndarray:
    """``m`` rows by attention-weighted farthest-point selection, sorted.

    Starts from the most attended row; each next row maximises ``w_j * d_j``, ``d_j`` the cosine
    distance from row j to the nearest row kept so far and ``w_j = 1 - alpha + alpha * a_j`` with
    ``a_j`` the importance min-max scaled over the page. ``alpha = 0``: plain farthest-point
    (coverage only); ``alpha = 1``: a token without attention is never chosen over one with it
    while any is left at a distance. Ties go to the earlier row.

    Parameters
    ----------
    importance : (n,) float
    vectors : (n, dim) float
    m : rows to keep, clipped to [1, n]
    alpha : share of the weight that comes from attention, in [0, 1]
    """
    n = vectors.shape[0]
    m = max(1, min(int(m), n))
    x = vectors.astype(np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w = 1.0 - alpha + alpha * _unit_weights(importance)
    first = int(np.argmax(importance))
    kept = [first]
    near = 1.0 - x @ x[first]  # cosine distance to the nearest kept row
    near[first] = -1.0
    for _ in range(m - 1):
        j = int(np.argmax(w * np.maximum(near, 0.0) - (near < 0)))  # kept rows (-1) never win
        kept.append(j)
        np.minimum(near, 1.0 - x @ x[j], out=near)
        near[kept] = -1.0
    return np.sort(np.array(kept, dtype=np.int64))


def cluster_select(importance: np.ndarray, vectors: np.ndarray, m: int) -> np.ndarray:
    """One row per Ward cluster of the page cut into ``m`` clusters: each cluster's most important
    row (ties to the earlier), sorted. The tree is SciPy's Ward linkage (memoised, as the Ward
    merger's, so several counts on one page build it once).

    Parameters
    ----------
    importance : (n,) float
    vectors : (n, dim) float
    m : clusters, clipped to [1, n]
    """
    m = max(1, min(int(m), vectors.shape[0]))
    groups = ward_groups(vectors, m)
    return np.sort(np.array([int(g[np.argmax(importance[g])]) for g in groups], dtype=np.int64))


class AdaptiveSpread(Pruner):
    """DocPruner's per-page count, kept by attention-weighted farthest-point selection.

    The count is the number of patches whose importance exceeds ``mean + k * std`` over that
    page's patches (at least one; higher ``k`` keeps fewer), as :class:`AdaptiveThreshold`'s.
    The rows are then chosen by :func:`spread_select`: the most attended first, then each next
    the one farthest (cosine) from those kept, weighted by its attention (``alpha``), so every
    region of the page keeps a vector before any region keeps a second one.
    """

    name = "adaptive-spread"
    #: The parameter a collection budget solves for, and whether the count rises with it.
    budget_param: ClassVar[str] = "k"
    budget_rising: ClassVar[bool] = False

    def __init__(self, k: float = -0.25, alpha: float = 0.5) -> None:
        self.k = _check_k(k)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha is the attention's share of the weight, in [0, 1]; got {alpha}")
        self.alpha = alpha

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha}

    def n_keep(self, importance: np.ndarray) -> int:
        """Patch vectors this page keeps (importance over its patch rows)."""
        return min(docpruner_count(importance, self.k), importance.size)

    def _select(self, importance, vectors):
        return spread_select(importance, vectors, self.n_keep(importance), self.alpha)


class AdaptiveCluster(Pruner):
    """DocPruner's per-page count, kept as one token per Ward cluster (the cluster's most attended).

    The page's patches are Ward-clustered into the count its attention asks for (the number above
    ``mean + k * std``, as :class:`AdaptiveThreshold`), and each cluster keeps its most attended
    token as it is: the coverage of ``adaptive-ward`` with the exact vectors of selection.
    """

    name = "adaptive-cluster"
    budget_param: ClassVar[str] = "k"
    budget_rising: ClassVar[bool] = False

    def __init__(self, k: float = -0.25) -> None:
        self.k = _check_k(k)

    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def n_keep(self, importance: np.ndarray) -> int:
        """Patch vectors this page keeps (importance over its patch rows)."""
        return min(docpruner_count(importance, self.k), importance.size)

    def _select(self, importance, vectors):
        return cluster_select(importance, vectors, self.n_keep(importance))
