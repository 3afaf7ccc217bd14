"""DocPruner's per-page count, kept as Ward-merged vectors instead of selected ones."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .counts import docpruner_count
from .merging import Merger, add_summary, ward_groups


class AdaptiveWard(Merger):
    """The page's attention decides how many vectors it keeps, Ward merging decides which.

    The count is DocPruner's (arXiv 2509.23883): the number of patches whose importance
    exceeds ``mean + k * std`` over that page's patches (at least one). Instead of keeping
    those patches, every patch of the page is Ward-clustered into that many groups, each
    stored as its mean (as :class:`~colprune.pruning.HierarchicalPooling`), so the dropped
    patches still count through the group they join. Higher ``k`` keeps fewer.
    ``summary=True`` also stores the mean of all the page's patch vectors (one more vector).
    """

    name = "adaptive-ward"
    needs_importance: ClassVar[bool] = True
    #: The parameter a collection budget solves for, and whether the count rises with it.
    budget_param: ClassVar[str] = "k"
    budget_rising: ClassVar[bool] = False

    def __init__(self, k: float = -0.25, summary: bool = False) -> None:
        k = float(k)
        if not np.isfinite(k):
            raise InvalidInputError(f"k must be finite, got {k}")
        self.k = k
        self.summary = bool(summary)

    def params(self) -> dict[str, Any]:
        return {"k": self.k} | ({"summary": True} if self.summary else {})

    def n_keep(self, importance: np.ndarray) -> int:
        """Patch vectors this page keeps (importance over its patch rows), the summary included."""
        return min(docpruner_count(importance, self.k), importance.size) + int(self.summary)

    def _groups(self, importance, vectors, grid):
        return ward_groups(vectors, docpruner_count(importance, self.k))

    def prune_checked(self, vectors, imp, mask, grid=None):
        page = super().prune_checked(vectors, imp, mask, grid)
        return add_summary(page, vectors, imp, mask) if self.summary else page
