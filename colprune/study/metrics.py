"""Ranking metrics per query and bootstrap confidence intervals over queries.

nDCG uses linear gains (the grade itself) and log2 discounts, as trec_eval's ``ndcg_cut``
does; recall@k is the share of a query's relevant documents (grade > 0) in its top k.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["ndcg_at", "recall_at", "bootstrap_ci"]


def ndcg_at(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    """nDCG@k of one ranking against graded judgements (unjudged documents gain 0)."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def bootstrap_ci(values: Sequence[float], *, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
