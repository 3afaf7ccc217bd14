"""A count from the page's attention entropy, kept as the most important patches."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .base import Pruner
from .counts import entropy_count


class EntropyTop(Pruner):
    """Keep the ``scale * exp(H)`` most important patches of each page (H: attention entropy).

    The selection counterpart of :class:`~colprune.pruning.EntropyWard`: the same per-page
    count, the patches with the highest importance kept as they are (ties to the earlier).
    """

    name = "entropy-top"
    budget_param: ClassVar[str] = "scale"
    budget_rising: ClassVar[bool] = True

    def __init__(self, scale: float = 0.5) -> None:
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise InvalidInputError(f"scale must be positive, got {scale}")
        self.scale = scale

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def n_keep(self, importance: np.ndarray) -> int:
        """Vectors this page keeps (importance over its patch rows)."""
        return entropy_count(importance, self.scale)

    def _select(self, importance, vectors):
        return np.argsort(-importance, kind="stable")[: self.n_keep(importance)]
