"""How many vectors a page's attention asks for: the per-page counts of the adaptive pruners.

Each function reads one page's importance over its patch rows and returns a count in
``[1, n]``; the pruners then keep that many (selection) or merge into that many (Ward).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["docpruner_count", "effective_number", "entropy_count"]


def docpruner_count(importance: np.ndarray, k: float) -> int:
    """DocPruner's count: patches whose importance exceeds ``mean + k * std`` (at least one)."""
    threshold = importance.mean() + k * importance.std()
    return max(1, int(np.count_nonzero(importance > threshold)))


def effective_number(importance: np.ndarray) -> float:
    """``exp(entropy)`` of the page's attention distribution: how many patches it attends to.

    The importances (attention received, clipped at 0) are normalised to sum to one over the
    page's patches; ``exp(H)`` is n for uniform attention and 1 when one patch takes it all.
    """
    p = np.maximum(np.asarray(importance, dtype=np.float64), 0.0)
    total = p.sum()
    if not total > 0:
        return float(p.size)
    p = p[p > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def entropy_count(importance: np.ndarray, scale: float) -> int:
    """``round(scale * effective_number)`` clipped to ``[1, n]``."""
    return max(1, min(importance.size, math.floor(scale * effective_number(importance) + 0.5)))
