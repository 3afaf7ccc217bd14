"""The four basic pruners: DocPruner's adaptive threshold, fixed ratio, random, none."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .base import Pruner, check_ratio, n_from_ratio
from .counts import docpruner_count
from .merging import add_summary

__all__ = ["AdaptiveThreshold", "TopRatio", "Random", "NoPruning", "GlobalThreshold", "PivotDedup"]


class AdaptiveThreshold(Pruner):
    """DocPruner's adaptive threshold (Yan et al., arXiv 2509.23883).

    Keeps patch ``j`` when ``importance_j > mean + k * std`` over that page's patch
    importances (population std, strict ``>``); if nothing survives, keeps the argmax.
    Lower ``k`` keeps more; DocPruner's recommended range is about ``k in [-0.5, 0.5]``.
    ``summary=True`` also stores the mean of all the page's patch vectors (one more vector,
    covering every patch), so a page never holds less than its own single-vector embedding;
    such pages carry ``covers`` and need an index created with ``merged=True``.
    """

    name = "adaptive"
    #: The parameter a collection budget solves for, and whether the count rises with it.
    budget_param: ClassVar[str] = "k"
    budget_rising: ClassVar[bool] = False

    def __init__(self, k: float = -0.25, summary: bool = False) -> None:
        k = float(k)
        if not np.isfinite(k):
            raise InvalidInputError(f"k must be finite, got {k}")
        self.k = k
        self.summary = bool(summary)
        self.merges = self.summary  # the summary vector stands for every patch row

    def n_keep(self, importance: np.ndarray) -> int:
        """Patch vectors this page keeps (importance over its patch rows), the summary included."""
        return min(docpruner_count(importance, self.k), importance.size) + int(self.summary)

    def _select(self, importance: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        threshold = importance.mean() + self.k * importance.std()
        keep = np.flatnonzero(importance > threshold)
        return keep if keep.size else np.array([int(np.argmax(importance))])

    def prune_checked(self, vectors, imp, mask, grid=None):
        page = super().prune_checked(vectors, imp, mask, grid)
        return add_summary(page, vectors, imp, mask) if self.summary else page

    def params(self) -> dict[str, Any]:
        return {"k": self.k} | ({"summary": True} if self.summary else {})


class TopRatio(Pruner):
    """Keep a fixed share of each page's patches, the most important first.

    Keeps ``max(1, round(ratio * n_patches))`` patches; ties go to the earlier patch.
    """

    name = "ratio"

    def __init__(self, ratio: float = 0.5) -> None:
        self.ratio = check_ratio(ratio)

    def _select(self, importance: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        n_keep = n_from_ratio(self.ratio, importance.size)
        return np.argsort(-importance, kind="stable")[:n_keep]

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio}


class Random(Pruner):
    """Keep a fixed share of each page's patches chosen uniformly at random (a baseline).

    The generator is seeded once, so a run over the same pages in the same order is
    reproducible.
    """

    name = "random"
    needs_importance = False

    def __init__(self, ratio: float = 0.5, seed: int = 0) -> None:
        self.ratio = check_ratio(ratio)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def _select(self, importance: np.ndarray | None, vectors: np.ndarray) -> np.ndarray:
        n = vectors.shape[0]
        return self._rng.choice(n, size=n_from_ratio(self.ratio, n), replace=False)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "seed": self.seed}


class NoPruning(Pruner):
    """Keep every vector: a *full* index, from which pruned ones are derived later."""

    name = "none"
    needs_importance = False

    def _select(self, importance: np.ndarray | None, vectors: np.ndarray) -> np.ndarray:
        return np.arange(vectors.shape[0])


class GlobalThreshold(Pruner):
    """Keep patches whose importance exceeds one threshold shared by every page.

    Unlike :class:`AdaptiveThreshold` the cut does not adapt per page, so busy pages keep
    more vectors than sparse ones; at least one patch (the argmax) is always kept.
    """

    name = "threshold"

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = float(threshold)

    def _select(self, importance: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        keep = np.flatnonzero(importance > self.threshold)
        return keep if keep.size else np.array([int(np.argmax(importance))])

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


class PivotDedup(Pruner):
    """Drop near-duplicate patches: visit patches by descending importance and keep one only
    if its cosine similarity to every patch kept so far (the pivots) is below ``threshold``.

    Redundancy pruning in the spirit of pivot-based de-duplication of visual tokens: flat
    regions (margins, background) collapse onto one pivot while distinct content survives.
    """

    name = "dedup"

    def __init__(self, threshold: float = 0.9) -> None:
        threshold = float(threshold)
        if not -1.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        self.threshold = threshold

    def _select(self, importance: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        x = vectors.astype(np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        order = np.argsort(-importance, kind="stable")
        kept: list[int] = []
        best = np.full(x.shape[0], -np.inf, np.float32)  # max similarity to any pivot so far
        for j in order:
            if best[j] < self.threshold:
                kept.append(int(j))
                np.maximum(best, x @ x[j], out=best)
        return np.sort(np.array(kept))

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold}
