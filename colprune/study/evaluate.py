"""Score a study's indexes against graded judgements, and the two reference rows.

:func:`evaluate` searches an index (top 100 per query) and gives per-query hit@1/5/10,
nDCG@5/10 and recall@10/100 with the index's keep ratio and vector bytes per page;
:func:`meanpool` and :func:`bm25` give the same for one mean vector per page and for BM25 over
the page text. :func:`page_means` is the one page-mean computation (the distilled student's
single-vector first stage uses it too, as :func:`colprune.distill.page_means`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from ..index import Index
from .datasets import Dataset
from .metrics import bm25_rank, hit_at, ndcg_at, recall_at

__all__ = ["evaluate", "per_query", "page_means", "meanpool", "bm25", "cached", "identity", "METRICS"]

#: The per-query figures :func:`per_query` gives, in this order.
METRICS = ("hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "recall@10", "recall@100")


def evaluate(index: Index, queries: list[np.ndarray], qids: list[str], ds: Dataset) -> dict[str, Any]:
    """Search ``index`` with ``queries`` (one ``(n_tokens, dim)`` array per judged query ``qids``)
    and score the top 100 against ``ds.qrels``.

    Returns ``{"per_query": {metric: [value per query]}, "keep_ratio", "bytes_per_page"}``
    (the last two from ``index.info()``; bytes per page are the stored vectors', plus a residual
    codec's codebook amortised over the pages: what decoding needs).
    """
    hits = index.search(queries, k=100)
    info = index.info()
    codebook = (info.get("codebook") or {}).get("bytes_per_page") or 0.0
    return {"per_query": per_query([[h.id for h in hs] for hs in hits], qids, ds),
            "keep_ratio": info["keep_ratio"], "bytes_per_page": (info["vector_bytes_per_page"] or 0.0) + codebook}


def per_query(rankings: list[list[str]], qids: list[str], ds: Dataset) -> dict[str, list[float]]:
    """``{metric: [value per query]}`` of :data:`METRICS` for the ranked page ids of each query."""
    per: dict[str, list[float]] = {m: [] for m in METRICS}
    for q, ranked in zip(qids, rankings):
        judged = ds.qrels.get(q, {})
        for k in (1, 5, 10):
            per[f"hit@{k}"].append(hit_at(ranked, judged, k))
        per["ndcg@5"].append(ndcg_at(ranked, judged, 5))
        per["ndcg@10"].append(ndcg_at(ranked, judged, 10))
        per["recall@10"].append(recall_at(ranked, judged, 10))
        per["recall@100"].append(recall_at(ranked, judged, 100))
    return per


def page_means(index, *, restore_norms: bool = False) -> tuple[list[str], np.ndarray]:
    """``(ids, (n_pages, dim) float32)``: one L2-normalised vector per page, the mean of its
    stored token vectors.

    By default the mean of the stored (L2-normalised) tokens: the page side of a distilled
    student's single-vector head, which is trained against the mean of the teacher's normalised
    query tokens. ``restore_norms=True`` first gives each token back its length (the ``norm``
    signal, when the index has it), so the mean is that of the encoder's raw token vectors:
    what a single-vector index of the same encoder stores (the study's ``meanpool`` row).
    """
    scale = restore_norms and "norm" in index.signal_names
    ids, rows = [], []
    for p in index.iter_pages():
        v = p.vectors.astype(np.float32)
        if scale:
            v = v * p.signals["norm"][:, None].astype(np.float32)
        m = v.mean(axis=0)
        rows.append(m / max(float(np.linalg.norm(m)), 1e-12))
        ids.append(p.id)
    return ids, (np.stack(rows) if rows else np.zeros((0, index.dim), np.float32))


def meanpool(full: Index, queries: list[np.ndarray], qids: list[str], ds: Dataset) -> dict[str, Any]:
    """The reference row of one vector per page: :func:`page_means` with the token norms restored,
    stored as float16. MaxSim against one vector ranks a query by the dot product of its summed
    token vectors with it. Same return value as :func:`evaluate`."""
    ids, means = page_means(full, restore_norms=True)
    d = means.astype(np.float16).astype(np.float32)
    q = np.stack([qv.sum(axis=0) for qv in queries])
    order = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :100]
    rankings = [[ids[i] for i in row] for row in order]
    return {"per_query": per_query(rankings, qids, ds), "keep_ratio": len(ids) / full.info()["vectors"],
            "bytes_per_page": 2.0 * full.dim}


def bm25(ds: Dataset, qids: list[str]) -> dict[str, Any] | None:
    """The reference row of BM25 over the page text (k1 1.2, b 0.75); None when no page has text.
    Same return value as :func:`evaluate`, with no keep ratio or bytes (NaN)."""
    texts = ds.page_texts()
    if not any(t.strip() for t in texts.values()):
        return None
    ids = list(texts)
    rankings = bm25_rank([texts[i] for i in ids], [ds.queries[q] for q in qids], k=100)
    return {"per_query": per_query([[ids[i] for i in r] for r in rankings], qids, ds),
            "keep_ratio": float("nan"), "bytes_per_page": float("nan")}


def identity(full: Index, qids: list[str]) -> dict[str, Any]:
    """What an evaluation of a variant of ``full`` depends on besides the variant: the full index's
    pages and vectors, and the judged queries (a key for :func:`cached`)."""
    return {"pages": len(full), "vectors": int(full.info()["vectors"]), "encoder": full.encoder, "queries": list(qids)}


def cached(path: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, kept in the JSON file ``path`` under ``key`` and read back while ``key`` is the
    same: a re-run (one more method, another dataset beside, ``--choose``) scores nothing twice, and
    the derived index need not be kept. ``key`` must be JSON (lists, not tuples)."""
    if os.path.exists(path):
        try:
            with open(path) as f:
                got = json.load(f)
            if got.get("key") == key:
                return got["evaluation"]
        except (OSError, ValueError, AttributeError):
            pass  # unreadable or another format: score again
    ev = compute()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"key": key, "evaluation": ev}, f)
    os.replace(tmp, path)
    return ev
