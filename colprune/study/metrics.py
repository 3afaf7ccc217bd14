"""Ranking metrics per query and bootstrap confidence intervals over queries.

nDCG uses linear gains (the grade itself) and log2 discounts, as trec_eval's ``ndcg_cut``
does; recall@k is the share of a query's relevant documents (grade > 0) in its top k.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np

__all__ = ["ndcg_at", "recall_at", "hit_at", "bootstrap_ci", "bm25_rank", "bm25_tokens"]


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


def hit_at(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    """1.0 when a relevant document (grade > 0) is in the top k, else 0.0."""
    return 1.0 if any(judged.get(d, 0) > 0 for d in ranked[:k]) else 0.0


_WORD = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``): the BM25 reference's analyser, no stemming or stopwords."""
    return _WORD.findall(text.lower())


def bm25_rank(docs: Sequence[str], queries: Sequence[str], *, k: int = 100, k1: float = 1.2, b: float = 0.75) -> list[list[int]]:
    """Okapi BM25 (Robertson-Sparck Jones idf ``log(1 + (N - df + 0.5) / (df + 0.5))``): for each
    query, the indices of its top ``k`` documents, best first (ties to the earlier document)."""
    tfs = [Counter(bm25_tokens(d)) for d in docs]
    lengths = np.array([sum(tf.values()) for tf in tfs], dtype=np.float64)
    avg = lengths.mean() if lengths.size and lengths.mean() > 0 else 1.0
    postings: dict[str, list[tuple[int, int]]] = {}
    for i, tf in enumerate(tfs):
        for term, n in tf.items():
            postings.setdefault(term, []).append((i, n))
    norm = k1 * (1 - b + b * lengths / avg)
    out = []
    for q in queries:
        scores = np.zeros(len(docs))
        for term in set(bm25_tokens(q)):
            post = postings.get(term)
            if not post:
                continue
            rows = np.array([p[0] for p in post])
            tf = np.array([p[1] for p in post], dtype=np.float64)
            idf = math.log(1 + (len(docs) - len(post) + 0.5) / (len(post) + 0.5))
            scores[rows] += idf * tf * (k1 + 1) / (tf + norm[rows])
        out.append(np.argsort(-scores, kind="stable")[:k].tolist())
    return out
