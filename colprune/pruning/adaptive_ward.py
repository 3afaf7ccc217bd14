"""DocPruner's per-page count, kept as Ward-merged vectors instead of selected ones."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .counts import docpruner_count
from .merging import Merger, ward_groups


class AdaptiveWard(Merger):
    """The page's attention decides how many vectors it keeps, Ward merging decides which.

    The count is DocPruner's (arXiv 2509.23883): the number of patches whose importance
    exceeds ``mean + k * std`` over that page's patches (at least one). Instead of keeping
    those patches, every patch of the page is Ward-clustered into that many groups, each
    stored as its mean (as :class:`~colprune.pruning.HierarchicalPooling`), so the dropped
    patches still count through the group they join. Higher ``k`` keeps fewer.
    """

    name = "adaptive-ward"
    needs_importance: ClassVar[bool] = True
    #: The parameter a collection budget solves for, and whether the count rises with it.
    budget_param: ClassVar[str] = "k"
    budget_rising: ClassVar[bool] = False

    def __init__(self, k: float = -0.25) -> None:
        k = float(k)
        if not np.isfinite(k):
            raise InvalidInputError(f"k must be finite, got {k}")
        self.k = k

    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def n_keep(self, importance: np.ndarray) -> int:
        """Vectors this page keeps (importance over its patch rows)."""
        return docpruner_count(importance, self.k)

    def _groups(self, importance, vectors, grid):
        return ward_groups(vectors, self.n_keep(importance))
