"""Synthetic ColPali-like page embeddings, for the demo, tests and benchmarks.

Each page mixes *content* patches (near a few page-specific topic directions, high
attention) with *background* patches (near one direction shared by all pages, low
attention), like white margins on real pages. Queries are noisy copies of a page's topics,
so every query has one known relevant page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticCorpus", "make_corpus"]


@dataclass
class SyntheticCorpus:
    """``ids``, per-page ``embeddings`` (n_i, dim) float32 and ``importance`` (n_i,),
    ``queries`` (m, dim) float32 and ``relevant[q]`` = id of query ``q``'s page."""

    ids: list[str]
    embeddings: list[np.ndarray]
    importance: list[np.ndarray]
    queries: list[np.ndarray]
    relevant: list[str]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_corpus(
    n_pages: int = 200,
    *,
    dim: int = 128,
    min_vectors: int = 700,
    max_vectors: int = 1030,
    content_share: float = 0.35,
    n_queries: int = 20,
    query_tokens: int = 20,
    n_topics: int | None = None,
    content_noise: float = 0.6,
    query_noise: float = 0.8,
    latent_dim: int | None = None,
    seed: int = 0,
) -> SyntheticCorpus:
    """Generate a corpus of L2-normalised multi-vector pages with importance scores.

    With ``n_topics``, pages draw their 4 topics from one shared pool of that many topic
    directions (jittered per page), so pages cluster and every query has many near
    neighbours; without it each page has topics of its own. ``content_noise`` and
    ``query_noise`` set how far content patches and query tokens scatter around their
    topic (0.6 and 0.8 give cosines of about 0.38 and 0.3; 0.25 and 0.4 about 0.7 and 0.53).

    With ``latent_dim``, topic directions come from a ``latent_dim``-dimensional subspace
    (a fixed random map of Gaussian coordinates), so any two topics are *graded* in
    similarity (cosines spread around 0 with s.d. ~``1/sqrt(latent_dim)``) instead of all
    nearly orthogonal: every page is somewhat related to every query, as in real
    collections, and the scores below the relevant pages fall off smoothly instead of
    forming a plateau of near-ties.
    """
    rng = np.random.default_rng(seed)
    background = _unit(rng.standard_normal(dim))
    if latent_dim:
        basis = rng.standard_normal((int(latent_dim), dim))

        def draw_topics(n: int) -> np.ndarray:
            return _unit(rng.standard_normal((n, int(latent_dim))) @ basis)
    else:

        def draw_topics(n: int) -> np.ndarray:
            return _unit(rng.standard_normal((n, dim)))

    pool = draw_topics(n_topics) if n_topics else None
    ids, embeddings, importance, topics = [], [], [], []
    for p in range(n_pages):
        n = int(rng.integers(min_vectors, max_vectors + 1))
        n_content = max(1, int(round(content_share * n * rng.uniform(0.6, 1.4))))
        if pool is None:
            page_topics = draw_topics(4)
        else:
            page_topics = _unit(pool[rng.integers(0, n_topics, 4)] + 0.3 * rng.standard_normal((4, dim)) / np.sqrt(dim) * 4)
        content = _unit(page_topics[rng.integers(0, 4, n_content)] + content_noise * rng.standard_normal((n_content, dim)) / np.sqrt(dim) * 4)
        back = _unit(background + 0.5 * rng.standard_normal((n - n_content, dim)) / np.sqrt(dim) * 4)
        vectors = np.concatenate([content, back])
        imp = np.concatenate([rng.gamma(4.0, 1.0, n_content), rng.gamma(1.0, 0.5, n - n_content)])
        order = rng.permutation(n)  # content is scattered over the page
        ids.append(f"page-{p:05d}")
        embeddings.append(vectors[order])
        importance.append((imp[order] / imp.sum()).astype(np.float32))
        topics.append(page_topics)
    queries, relevant = [], []
    for _ in range(n_queries):
        p = int(rng.integers(n_pages))
        q = topics[p][rng.integers(0, 4, query_tokens)] + query_noise * rng.standard_normal((query_tokens, dim)) / np.sqrt(dim) * 4
        queries.append(_unit(q))
        relevant.append(ids[p])
    return SyntheticCorpus(ids, embeddings, importance, queries, relevant)
