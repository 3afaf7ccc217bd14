"""A count from the page's attention entropy, kept as Ward-merged vectors."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .counts import entropy_count
from .merging import Merger, add_summary, ward_groups


class EntropyWard(Merger):
    """Keep ``scale * exp(H)`` Ward-merged vectors per page, H the entropy of its attention.

    ``exp(H)`` is the effective number of patches the page's attention spreads over
    (:func:`~colprune.pruning.counts.effective_number`): a page whose attention concentrates on
    a few patches keeps few vectors, one whose attention spreads over many keeps many, so a
    collection budget is shared out by what each page's attention covers. ``scale`` sets the
    budget (``colprune study`` solves it for a share of the collection's vectors). The page's
    patches are Ward-clustered into that many groups (:class:`HierarchicalPooling`).
    ``summary=True`` also stores the mean of all the page's patch vectors (one more vector), so a
    page never holds less than its own single-vector embedding.
    """

    name = "entropy-ward"
    needs_importance: ClassVar[bool] = True
    budget_param: ClassVar[str] = "scale"
    budget_rising: ClassVar[bool] = True

    def __init__(self, scale: float = 0.5, summary: bool = False) -> None:
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise InvalidInputError(f"scale must be positive, got {scale}")
        self.scale = scale
        self.summary = bool(summary)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale} | ({"summary": True} if self.summary else {})

    def n_keep(self, importance: np.ndarray) -> int:
        """Patch vectors this page keeps (importance over its patch rows), the summary included."""
        return entropy_count(importance, self.scale) + int(self.summary)

    def _groups(self, importance, vectors, grid):
        return ward_groups(vectors, entropy_count(importance, self.scale))

    def prune_checked(self, vectors, imp, mask, grid=None):
        page = super().prune_checked(vectors, imp, mask, grid)
        return add_summary(page, vectors, imp, mask) if self.summary else page
