"""Synthetic ColPali-like page embeddings, for the demo, tests and benchmarks.

Each page mixes *content* patches (near a few page-specific topic directions, high
attention) with *background* patches (near one direction shared by all pages, low
attention), like white margins on real pages. Queries are noisy copies of a page's topics,
so every query has one known relevant page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticCorpus", "make_corpus", "stream_corpus"]


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
        picked = page_topics[rng.integers(0, 4, n_content)]  # drawn before the noise, as the seeds expect
        content = _unit(picked + content_noise * rng.standard_normal((n_content, dim)) / np.sqrt(dim) * 4)
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
        picked = topics[p][rng.integers(0, 4, query_tokens)]
        q = picked + query_noise * rng.standard_normal((query_tokens, dim)) / np.sqrt(dim) * 4
        queries.append(_unit(q))
        relevant.append(ids[p])
    return SyntheticCorpus(ids, embeddings, importance, queries, relevant)


def stream_corpus(
    n_pages: int,
    *,
    chunk: int = 10_000,
    dim: int = 128,
    min_vectors: int = 80,
    max_vectors: int = 120,
    content_share: float = 0.35,
    n_queries: int = 100,
    query_tokens: int = 20,
    content_noise: float = 0.6,
    query_noise: float = 0.8,
    latent_dim: int = 8,
    n_topics: int | None = None,
    seed: int = 0,
):
    """Graded-topic pages like :func:`make_corpus` (``latent_dim``, ``n_topics``), generated ``chunk`` pages at a time.

    For collections larger than memory. Returns ``(chunks, queries, relevant)``: ``chunks`` is
    a generator of ``(ids, vectors (sum n_i, dim) float16, lengths (n,), importance (sum n_i,)
    float32)``; ``queries`` and ``relevant`` fill in as the pages they were drawn from are
    generated (complete once the generator is exhausted). Vectors are L2-normalised.
    """
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((int(latent_dim), dim))
    background = _unit(rng.standard_normal(dim))
    query_pages = {int(p): i for i, p in enumerate(rng.choice(n_pages, size=min(n_queries, n_pages), replace=False))}
    queries: list = [None] * len(query_pages)
    relevant: list = [None] * len(query_pages)
    scale = 4 / np.sqrt(dim)
    pool = _unit(rng.standard_normal((int(n_topics), int(latent_dim))) @ basis) if n_topics else None

    def chunks():
        for lo in range(0, n_pages, chunk):
            crng = np.random.default_rng([seed, lo])
            n = min(chunk, n_pages - lo)
            lengths = crng.integers(min_vectors, max_vectors + 1, n)
            total = int(lengths.sum())
            if pool is None:
                topics = _unit(crng.standard_normal((n, 4, int(latent_dim))) @ basis)  # (n, 4, dim)
            else:  # pages share topics from the pool, jittered per page (as make_corpus(n_topics=))
                topics = _unit(pool[crng.integers(0, len(pool), (n, 4))] + 0.3 * scale * crng.standard_normal((n, 4, dim)))
            page_of = np.repeat(np.arange(n), lengths)
            is_content = crng.random(total) < content_share
            which = crng.integers(0, 4, total)
            vectors = crng.standard_normal((total, dim), dtype=np.float32)
            vectors *= np.where(is_content, content_noise * scale, 0.5 * scale).astype(np.float32)[:, None]
            vectors[is_content] += topics[page_of[is_content], which[is_content]]
            vectors[~is_content] += background
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            imp = np.where(is_content, crng.gamma(4.0, 1.0, total), crng.gamma(1.0, 0.5, total)).astype(np.float32)
            ids = [f"page-{lo + i:07d}" for i in range(n)]
            for p in range(lo, lo + n):
                if p in query_pages:
                    qi = query_pages[p]
                    t = topics[p - lo]
                    q = t[crng.integers(0, 4, query_tokens)] + query_noise * scale * crng.standard_normal((query_tokens, dim))
                    queries[qi], relevant[qi] = _unit(q), ids[p - lo]
            yield ids, vectors.astype(np.float16), lengths, imp

    return chunks(), queries, relevant
