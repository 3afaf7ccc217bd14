"""The part of sharded search that runs next to the data: one shard, searched in rounds the coordinator merges.

A :class:`ShardWorker` holds one shard (an :class:`~colprune.index.Index`) open. The thread
backend (:mod:`colprune.distributed.backends`) runs workers in threads of this process; the Ray
backend (:mod:`colprune.distributed.ray_search`) runs them inside actors. Results travel as
plain tuples, so they pickle cheaply to the coordinator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..index import Index
from ..index import search as S

__all__ = ["ShardWorker"]


class ShardWorker:
    """Searches one shard: the part of sharded search that runs next to the data.

    Used in threads by :class:`~colprune.distributed.ShardedIndex` and inside Ray actors by its
    Ray backend. Positions are the shard's global document positions (``Index`` internal
    numbering: segments in manifest order, rows in segment order), which follow the shard's
    page order.
    """

    def __init__(self, path: str, memory_budget: int | None = None) -> None:
        kw = {} if memory_budget is None else {"memory_budget": int(memory_budget)}
        self.path = path
        self.index = Index.open(path, **kw)

    def close(self) -> None:
        self.index.close()

    def refresh(self) -> None:
        self.index.refresh()

    def warm(self, summaries: bool = True, kernels: bool = False) -> int:
        """Hold vectors resident within the shard's memory budget, and its first-stage summaries
        (``kernels``: run the search kernels once, :meth:`Index.warm`)."""
        ix = self.index
        held = ix.warm(ix.memory_budget // 2, kernels=kernels)
        snap = ix.snapshot()
        if summaries and len(snap) and snap.codec in ("float16", "float32") and snap.summary_centroids:
            snap.resident_summary()
        return held

    def fields(self) -> set[str]:
        """The metadata fields this shard can filter on."""
        return self.index.filter_fields()

    def _where(self, where: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
        """(matches anything?, where) — a condition on a field this shard lacks matches nothing here."""
        if where is None:
            return True, None
        known = self.index.filter_fields()
        return all(f in known for f in where), where

    def exact(self, queries: list[np.ndarray], k: int, where, n_threads, memory_budget) -> list[list[tuple[str, float, dict]]]:
        """``Index.search`` of this shard: each query's top-``k`` as ``(id, score, metadata)``, best first."""
        ok, where = self._where(where)
        if not ok or not len(self.index):
            return [[] for _ in queries]
        hits = self.index.search(list(queries), k, n_threads=n_threads, where=where, memory_budget=memory_budget, rerank=0)
        return [[(h.id, h.score, h.metadata) for h in hs] for hs in hits]

    def centroid(self, queries: list[np.ndarray], k: int, candidates: int, nprobe: int, where, n_threads,
                 memory_budget) -> list[list[tuple[str, float, dict]]]:
        """A residual shard's own top-``k`` through its own centroid index, as ``(id, score, metadata)``, best first.

        ``Index.search(q, k, candidates=, nprobe=)`` of this shard: pages found by probing this
        shard's codebook, scored exactly on their decoded vectors (so the coordinator merges
        exact scores). ``nprobe`` is capped at this shard's codebook size: shards train their
        own codebooks, of different sizes.
        """
        ok, where = self._where(where)
        snap = self.index.snapshot()
        if not ok or not len(snap):
            return [[] for _ in queries]
        probe = int(nprobe) if snap.codebook is None else min(int(nprobe), snap.codebook.n_centroids)
        hits = self.index.search(list(queries), k, n_threads=n_threads, candidates=candidates, nprobe=probe, where=where,
                                 memory_budget=memory_budget)
        return [[(h.id, h.score, h.metadata) for h in hs] for hs in hits]

    def shortlist(self, qv: np.ndarray, qoff: np.ndarray, depth: int, where, mode: str, n_threads,
                  n_centroids: int | None, memory_budget: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """First round of two-round search: each query's best ``depth`` positions by first-stage score.

        ``mode="summary"``: MaxSim against the persisted int8 centroid summaries (two-stage
        search, :func:`colprune.index.search.shortlist`); ``mode="hamming"``: Hamming MaxSim of
        binary codes. ``qv`` (n_tokens, dim) float32 and ``qoff`` (n_queries + 1,) int64 are the
        queries in CSR form. Returns one ``(positions int64, scores float32)`` pair per query,
        best first, ties to the lower position.
        """
        ix = self.index
        snap = ix.snapshot()
        n_q = qoff.size - 1
        ok, where = self._where(where)
        if not ok or not len(snap):
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(n_q)]
        masks = snap.masks(where)
        budget = memory_budget or ix.memory_budget
        if mode == "hamming":
            ix.warm(budget // 2)
            idx, val = S.exact_search(snap, qv, qoff, depth, masks, n_threads, budget // 2, None)
            return [(np.asarray(i, np.int64), np.asarray(v, np.float32)) for i, v in zip(idx, val)]
        held = snap.summary_centroids
        if n_centroids is not None and held not in (0, int(n_centroids)):
            raise InvalidInputError(f"{self.path} stores {held}-centroid summaries; "
                                    f"n_centroids={n_centroids} would need `colprune summarize --centroids {n_centroids}`")
        ix.warm(budget // 2)
        cand, scores = S.shortlist(snap, qv, qoff, depth, masks, n_threads, n_centroids=n_centroids, with_scores=True)
        return [(c[c >= 0], v[c >= 0]) for c, v in zip(cand, scores)]

    def rescore(self, qv: np.ndarray, qoff: np.ndarray, cand: list[np.ndarray], k: int, rerank_copy: bool,
                n_threads) -> list[list[tuple[int, str, float, dict]]]:
        """Second round: exact MaxSim of each query's candidate positions ``cand[q]`` (:func:`colprune.index.search.rescore`).

        Returns each query's best ``k`` as ``(position, id, score, metadata)``, best first, ties
        to the lower position (from the float16 rerank copy when ``rerank_copy``).
        """
        n_q = qoff.size - 1
        if not any(c.size for c in cand):
            return [[] for _ in range(n_q)]
        mat = np.full((n_q, max(c.size for c in cand)), -1, np.int64)
        for i, c in enumerate(cand):
            mat[i, : c.size] = c
        snap = self.index.snapshot()
        idx, val = S.rescore(snap, qv, qoff, mat, k, n_threads, rerank=rerank_copy)
        out = []
        for pi, pv in zip(idx, val):
            if pv.size and not np.isfinite(pv).all():
                raise InvalidInputError("query values too large: scores overflow float32 (scale the query vectors down)")
            hits = [snap.hit(int(p), float(s)) for p, s in zip(pi, pv)]
            out.append([(int(p), h.id, h.score, h.metadata) for p, h in zip(pi, hits)])
        return out
