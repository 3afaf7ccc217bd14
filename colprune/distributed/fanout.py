"""The coordinator's side of sharded search: plan the rounds, fan them out to the shard workers, merge.

- Exact search: every shard returns its own top-``k`` (:meth:`ShardWorker.exact
  <colprune.distributed.worker.ShardWorker.exact>`); :func:`merge_hits` keeps the best ``k``.
- Two-stage search and binary codes with a rerank copy: every shard returns its best ``depth``
  pages by first-stage score; :func:`merge_shortlists` keeps the global best ``depth``; each
  shard rescores exactly its pages of that shortlist; :func:`merge_hits` keeps the best ``k``.
- Residual codecs with ``candidates``: every shard returns its own top-``k`` through its own
  centroid index (:meth:`ShardWorker.centroid <colprune.distributed.worker.ShardWorker.centroid>`:
  ``Index.search(candidates=, nprobe=)``); :func:`merge_hits` keeps the best ``k``. One round:
  each shard's codebook is its own, so centroid-level scores of different shards are not
  compared, only the exact scores (MaxSim on each shard's decoded vectors) are merged.

Ties go to the earlier page: shard order, then the shard's own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..index import Hit
from ..index.candidates import check_candidates
from ..index.codebook import MAX_CENTROIDS
from ..index.records import check_two_stage, default_rerank

__all__ = ["Plan", "plan", "search_shards", "merge_hits", "merge_shortlists"]


class Plan(NamedTuple):
    """How a sharded search runs (:func:`plan`)."""

    mode: str | None  #: first round: None (exact), "summary", "hamming" or "centroid"
    depth: int  #: shortlist depth of two-round modes; ``candidates`` of "centroid"
    rerank_copy: bool  #: rescore from the float16 rerank copy
    nprobe: int | None = None  #: "centroid": centroids each query token probes (at most each shard's codebook size)


def plan(settings: dict, k: int, rerank: int | None, candidates: int | None, n_centroids: int | None,
         nprobe: int | None = None) -> Plan:
    """How a sharded search runs, from the collection's ``settings`` (``codec``, ``rerank``, ``summary_centroids``).

    Mode ``"summary"`` for two-stage search (float codecs with ``candidates``), ``"hamming"``
    for binary codes with a rerank copy (unless ``rerank=0``), ``"centroid"`` for residual
    codecs with ``candidates`` (each shard through its own centroid index, ``nprobe``
    defaulting as ``Index.search``'s), None for exact search. ``nprobe`` is refused, as
    ``Index.search`` refuses it, on a codec without a centroid index and without ``candidates``.
    """
    codec = settings["codec"]
    # the shards' codebooks differ in size: nprobe is bounded by the largest a codebook can be, each shard caps it
    probe = check_candidates(codec, k, candidates, nprobe, MAX_CENTROIDS, what="this sharded collection")
    if probe is not None:
        return Plan("centroid", int(candidates), False, probe)
    if candidates is not None:
        check_two_stage(codec, settings.get("summary_centroids"), n_centroids, what="collection")
        return Plan("summary", max(candidates, k), False)
    if codec == "binary" and settings.get("rerank"):
        r = default_rerank(k) if rerank is None else int(rerank)
        if r > 0:
            return Plan("hamming", max(r, k), True)
    return Plan(None, k, False)


def search_shards(backend, qv: np.ndarray, qoff: np.ndarray, k: int, *, mode: str | None, depth: int, rerank_copy: bool,
                  where: dict | None, n_threads: int | None, n_centroids: int | None,
                  memory_budget: int | None, nprobe: int | None = None) -> list[list[Hit]]:
    """Each query's top-``k`` over every shard of ``backend`` (:mod:`~colprune.distributed.backends`).

    ``qv`` (n_tokens, dim) float32 and ``qoff`` (n_queries + 1,) int64: the queries in CSR form;
    ``mode``, ``depth``, ``rerank_copy``, ``nprobe`` from :func:`plan`. Returns one hit list per query.
    """
    n_q = qoff.size - 1
    if mode in (None, "centroid"):  # one round: each shard's own top-k, merged
        queries = [qv[qoff[i] : qoff[i + 1]] for i in range(n_q)]
        parts = (backend.call("exact", args=(queries, k, where, n_threads, memory_budget)) if mode is None else
                 backend.call("centroid", args=(queries, k, depth, nprobe, where, n_threads, memory_budget)))
        return [merge_hits([p[q] for p in parts], k) for q in range(n_q)]
    firsts = backend.call("shortlist", args=(qv, qoff, depth, where, mode, n_threads, n_centroids, memory_budget))
    chosen = [merge_shortlists([f[q] for f in firsts], depth) for q in range(n_q)]  # [query][shard]
    per_shard = [(qv, qoff, [chosen[q][si] for q in range(n_q)], k, rerank_copy, n_threads) for si in range(len(firsts))]
    parts = backend.call("rescore", per_shard_args=per_shard)
    # a shard's hits come best first with ties to the lower position, so its rank order is its page order
    return [merge_hits([[(i, s, m) for _, i, s, m in part[q]] for part in parts], k) for q in range(n_q)]


def merge_hits(per_shard: Sequence[list[tuple[str, float, dict]]], k: int) -> list[Hit]:
    """Merge per-shard hit lists (each best first) into the top ``k``: score, then shard order, then rank in the shard."""
    keyed = [(-float(s), si, r, i, s, m) for si, hits in enumerate(per_shard) for r, (i, s, m) in enumerate(hits)]
    keyed.sort(key=lambda t: t[:3])
    return [Hit(i, float(s), m) for *_, i, s, m in keyed[:k]]


def merge_shortlists(per_shard: Sequence[tuple[np.ndarray, np.ndarray]], depth: int) -> list[np.ndarray]:
    """The global shortlist of one query: best ``depth`` by first-stage score, ties to (shard, position).

    ``per_shard``: each shard's ``(positions int64, scores float32)``. Returns, per shard, the
    positions of that shard that made the global shortlist (sorted).
    """
    if not per_shard:
        return []
    shard = np.concatenate([np.full(p.size, si, np.int64) for si, (p, _) in enumerate(per_shard)])
    pos = np.concatenate([p for p, _ in per_shard])
    val = np.concatenate([v for _, v in per_shard]).astype(np.float64)
    order = np.lexsort((pos, shard, -val))[:depth]
    return [np.sort(pos[order][shard[order] == si]) for si in range(len(per_shard))]
