"""A sharded collection: several colprune collections searched and written as one.

:class:`ShardedIndex` opens a directory written by :func:`colprune.distributed.build` or
:meth:`ShardedIndex.create`. It has the search signature of :class:`colprune.index.Index` and
returns the same :class:`~colprune.index.Hit` results. Shards are searched in threads on this
machine, or, with ``ray=``, by Ray actors that each hold a group of shards open (and their
first-stage summaries resident) while query batches fan out to them.

Order and ties
--------------
The sharded collection's page order is shard order (bucket 0 first), then each shard's own
order (its commit order). Ties in score go to the earlier page in that order, so the merged
top-``k`` equals the top-``k`` of one index holding the same pages added in that order
(``tests/test_distributed.py`` checks it, ties included).

- Exact search: every shard returns its own top-``k``; the global top-``k`` is among them.
- Two-stage search (``candidates=C``) and binary codes with a rerank copy (``rerank=R``) run
  in two rounds so the shortlist is the *global* one: every shard returns its best ``C`` (or
  ``R``) pages by first-stage score; the coordinator keeps the best ``C`` of all of them
  (ties to the earlier page); each shard then rescores exactly its pages of that global
  shortlist, and the best ``k`` of those are merged. The result equals one index's two-stage
  result, not merely a union of per-shard shortlists.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import DuplicateIdError, InvalidInputError
from ..index import Hit, Index
from . import manifest as SM

__all__ = ["ShardedIndex", "ShardWorker", "merge_hits", "merge_shortlists"]


#: keyword arguments of add/upsert that hold one entry per page
_PER_PAGE = ("metadata", "patch_mask", "grids", "signals")


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _split(qv: np.ndarray, qoff: np.ndarray) -> list[np.ndarray]:
    return [qv[qoff[i] : qoff[i + 1]] for i in range(qoff.size - 1)]


class ShardWorker:
    """Searches one shard: the part of sharded search that runs next to the data.

    Used in threads by :class:`ShardedIndex` and inside Ray actors by its Ray backend.
    Positions are the shard's global document positions (``Index`` internal numbering:
    segments in manifest order, rows in segment order), which follow the shard's page order.
    """

    def __init__(self, path: str, memory_budget: int | None = None) -> None:
        kw = {} if memory_budget is None else {"memory_budget": int(memory_budget)}
        self.path = path
        self.index = Index.open(path, **kw)

    def close(self) -> None:
        self.index.close()

    def refresh(self) -> None:
        self.index.refresh()

    def warm(self, summaries: bool = True) -> int:
        """Hold vectors resident within the shard's memory budget, and its first-stage summaries."""
        ix = self.index
        held = ix.warm(ix.memory_budget // 2)
        if summaries and len(ix) and ix.codec in ("float16", "float32") and ix._manifest.get("summary_centroids"):
            ix._resident_summary()
        return held

    def fields(self) -> set[str]:
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

    def shortlist(self, qv: np.ndarray, qoff: np.ndarray, depth: int, where, mode: str, n_threads,
                  n_centroids: int | None, memory_budget: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """First round of two-round search: each query's best ``depth`` positions by first-stage score.

        ``mode="summary"``: MaxSim against the persisted int8 centroid summaries (two-stage
        search); ``mode="hamming"``: Hamming MaxSim of binary codes. Returns one
        ``(positions int64, scores float32)`` pair per query, best first, ties to the lower position.
        """
        from ..index.search import exact_search
        from ..kernels import maxsim_int8_csr, topk

        ix = self.index
        n_q = qoff.size - 1
        empty = [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(n_q)]
        ok, where = self._where(where)
        if not ok or not len(ix):
            return empty
        masks = ix._masks(where)
        budget = memory_budget or ix.memory_budget
        if mode == "hamming":
            ix.warm(budget // 2)
            idx, val = exact_search(ix, qv, qoff, depth, masks, n_threads, budget // 2, None)
            return [(np.asarray(i, np.int64), np.asarray(v, np.float32)) for i, v in zip(idx, val)]
        if n_centroids is not None and ix._manifest.get("summary_centroids") not in (0, int(n_centroids)):
            raise InvalidInputError(f"{self.path} stores {ix._manifest['summary_centroids']}-centroid summaries; "
                                    f"n_centroids={n_centroids} would need `colprune summarize --centroids {n_centroids}`")
        ix.warm(budget // 2)
        codes, scales, corr, coff = ix._resident_summary(n_centroids)
        glob_mask = None
        if any(m is not None for m in masks):
            glob_mask = np.concatenate([np.ones(s.n_docs, bool) if m is None else m for s, m in zip(ix._segments, masks)])
        out = []
        for q0 in range(0, n_q, 16):  # as Index's two-stage search: bounds the (queries x pages) matrix
            q1 = min(q0 + 16, n_q)
            coarse = maxsim_int8_csr(qv[qoff[q0] : qoff[q1]], qoff[q0 : q1 + 1] - qoff[q0], codes, scales, coff,
                                     n_threads=n_threads, corrections=corr)
            if glob_mask is not None:
                coarse[:, ~glob_mask] = -np.inf
            bi, bv = topk(coarse, min(depth, coarse.shape[1]))
            for i, v in zip(bi, bv):
                fin = np.isfinite(v)
                out.append((i[fin].astype(np.int64), v[fin].astype(np.float32)))
        return out

    def rescore(self, qv: np.ndarray, qoff: np.ndarray, cand: list[np.ndarray], k: int, rerank_copy: bool,
                n_threads) -> list[list[tuple[int, str, float, dict]]]:
        """Second round: exact MaxSim of each query's candidate positions, best ``k`` as ``(position, id, score, metadata)``."""
        from ..index.search import _rescore

        n_q = qoff.size - 1
        width = max([1] + [c.size for c in cand])
        if not any(c.size for c in cand):
            return [[] for _ in range(n_q)]
        mat = np.full((n_q, width), -1, np.int64)
        for i, c in enumerate(cand):
            mat[i, : c.size] = c
        idx, val = _rescore(self.index, qv, qoff, mat, k, n_threads, rerank=rerank_copy)
        out = []
        for pi, pv in zip(idx, val):
            if pv.size and not np.isfinite(pv).all():
                raise InvalidInputError("query values too large: scores overflow float32 (scale the query vectors down)")
            out.append([(int(p), *self._hit(int(p), float(s))) for p, s in zip(pi, pv)])
        return out

    def _hit(self, pos: int, score: float) -> tuple[str, float, dict]:
        h = self.index._hit(pos, score)
        return h.id, h.score, h.metadata


def merge_hits(per_shard: Sequence[list[tuple[str, float, dict]]], k: int) -> list[Hit]:
    """Merge per-shard hit lists (each best first) into the top ``k``: score, then shard order, then rank in the shard."""
    keyed = [(-float(s), si, r, i, s, m) for si, hits in enumerate(per_shard) for r, (i, s, m) in enumerate(hits)]
    keyed.sort(key=lambda t: t[:3])
    return [Hit(i, float(s), m) for *_, i, s, m in keyed[:k]]


def merge_shortlists(per_shard: Sequence[tuple[np.ndarray, np.ndarray]], depth: int) -> list[np.ndarray]:
    """The global shortlist of one query: best ``depth`` by first-stage score, ties to (shard, position).

    Returns, per shard, the positions of that shard that made the global shortlist (sorted).
    """
    shard = np.concatenate([np.full(p.size, si, np.int64) for si, (p, _) in enumerate(per_shard)]) if per_shard else np.zeros(0, np.int64)
    pos = np.concatenate([p for p, _ in per_shard]) if per_shard else np.zeros(0, np.int64)
    val = np.concatenate([v for _, v in per_shard]).astype(np.float64) if per_shard else np.zeros(0)
    order = np.lexsort((pos, shard, -val))[:depth]
    return [np.sort(pos[order][shard[order] == si]) for si in range(len(per_shard))]


class _ThreadBackend:
    """Shards searched in threads of this process, each a :class:`ShardWorker`."""

    def __init__(self, paths: list[str], memory_budget: int | None, max_workers: int | None) -> None:
        self.workers = [ShardWorker(p, memory_budget) for p in paths]
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(len(paths) or 1, max_workers or os.cpu_count() or 1)),
                                       thread_name_prefix="colprune-shard")

    def call(self, method: str, per_shard_args: list[tuple] | None = None, args: tuple = ()) -> list:
        futs = [self.pool.submit(getattr(w, method), *(per_shard_args[i] if per_shard_args else args))
                for i, w in enumerate(self.workers)]
        return [f.result() for f in futs]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for w in self.workers:
            w.close()


class ShardedIndex:
    """A sharded collection, searched and written as one index.

    Open one with :meth:`open` (read-only, or ``mode="a"`` to write) or make an empty one with
    :meth:`create`; :func:`colprune.distributed.build` builds one from documents on Ray. Without
    ``ray=`` every shard is an :class:`~colprune.index.Index` searched in a thread of this
    process; with ``ray=`` (``True``, ``"auto"`` or a cluster address) shard groups live in Ray
    actors. Writes always run in this process.

    Examples
    --------
    >>> with ShardedIndex.open("pages.cps") as index:              # doctest: +SKIP
    ...     hits = index.search(query, k=10)                       # [Hit(id, score), ...]
    """

    def __init__(self, path: str, mode: str, *, ray: Any = None, shards_per_actor: int = 1,
                 memory_budget: int | None = None, max_workers: int | None = None, _lock=None) -> None:
        # Use ShardedIndex.open / ShardedIndex.create.
        self.path = path
        self.mode = mode
        self._ray_arg = ray
        self._shards_per_actor = _check_count(shards_per_actor, "shards_per_actor")
        self._memory_budget = memory_budget
        self._max_workers = max_workers
        self._lock = _lock
        self._closed = False
        self._write_lock = threading.Lock()
        self._writers: dict[int, Index] = {}
        self._backend = None
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, *, n_shards: int, dim: int, dtype: str = "float16",
               encoder: str | None = None, pruner: Any = None, signals: Sequence[str] = (), merged: bool = False,
               rerank: bool = True, summary_centroids: int = 4, overwrite: bool = False) -> ShardedIndex:
        """Create an empty sharded collection at ``path`` with ``n_shards`` buckets; returns it open for writing.

        Every shard is created (when its first page arrives) with these settings, as
        :meth:`Index.create <colprune.index.Index.create>` takes them. ``pruner`` (a
        :class:`~colprune.pruning.Pruner`, name or config) is what :meth:`add` prunes with
        unless told otherwise.
        """
        from ..index.collection import codec_bytes
        from ..pruning import make_pruner

        path = os.path.abspath(os.fspath(path))
        dim = _check_count(dim, "dim")
        if dtype not in ("float16", "float32", "int8", "binary"):
            raise InvalidInputError(f"dtype must be float16, float32, int8 or binary, got {dtype!r}")
        codec_bytes(dtype, dim)
        if os.path.lexists(path):
            if not overwrite:
                raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
            if not SM.is_sharded(path):
                raise FileExistsError(f"{path} exists and is not a sharded colprune collection; refusing to replace it")
            SM.ShardedLock(path).release()  # refuse to replace a collection another process writes
            shutil.rmtree(path)
        settings = {"dim": dim, "codec": dtype, "encoder": encoder or "",
                    "pruner": None if pruner is None else make_pruner(pruner).config() | (
                        {"signal": pruner["signal"]} if isinstance(pruner, dict) and pruner.get("signal") else {}),
                    "signals": sorted(signals), "merged": bool(merged), "rerank": bool(rerank),
                    "summary_centroids": int(summary_centroids)}
        body = SM.new_manifest(n_shards, settings)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")
        os.makedirs(tmp)
        try:
            SM.write_manifest(tmp, body)
            os.rename(tmp, path)
            SM.fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(path, mode="a")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, ray: Any = None, shards_per_actor: int = 1,
             memory_budget: int | None = None, max_workers: int | None = None) -> ShardedIndex:
        """Open the sharded collection at ``path``.

        Parameters
        ----------
        mode : ``"r"`` (search) or ``"a"`` (also write; holds the collection's writer lock)
        ray : None or False: shards searched in threads of this process. ``True`` or
            ``"auto"``: Ray actors on the Ray already initialised (or a local one);
            a string address (``"ray://host:10001"``): that cluster.
        shards_per_actor : shards held by each Ray actor (a *shard group*)
        memory_budget : bytes of vectors each shard holds at a time (default: ``Index``'s)
        max_workers : threads searching shards at once (default: the CPU count)
        """
        if mode not in ("r", "a"):
            raise InvalidInputError(f"mode must be 'r' or 'a', got {mode!r}")
        path = os.path.abspath(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"no sharded collection at {path}")
        if not SM.is_sharded(path):
            raise InvalidInputError(f"{path} is not a sharded colprune collection (no {SM.MANIFEST}); "
                                    "open a single collection with colprune.Index.open")
        lock = None
        if mode == "a":
            lock = SM.ShardedLock(path)
            SM.clear_temp(path)
        try:
            return cls(path, mode, ray=ray, shards_per_actor=shards_per_actor, memory_budget=memory_budget,
                       max_workers=max_workers, _lock=lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def _load(self) -> None:
        self._manifest = SM.read_manifest(self.path)
        paths = [os.path.join(self.path, s["name"]) for s in self._manifest["shards"]]
        self._buckets = [int(s["bucket"]) for s in self._manifest["shards"]]
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._ray_arg not in (None, False):
            from .ray_search import RayBackend

            self._backend = RayBackend(paths, self._ray_arg, self._shards_per_actor, self._memory_budget)
        else:
            self._backend = _ThreadBackend(paths, self._memory_budget, self._max_workers)
        self._n_docs: int | None = None

    def refresh(self) -> None:
        """Re-read the manifest and every shard's newest commit."""
        self._load()

    def close(self) -> None:
        """Close the shards (and stop this collection's Ray actors) and release the writer lock."""
        if self._closed:
            return
        self._closed = True
        for ix in self._writers.values():
            ix.close()
        self._writers = {}
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardedIndex({self.path!r}, mode={self.mode!r}, shards={len(self._buckets)}/{self.n_shards}, "
                f"dim={self.dim}, codec={self.codec})")

    # -- header ------------------------------------------------------------------------

    @property
    def n_shards(self) -> int:
        """Buckets page ids hash to (fixed at creation); shards exist for the buckets that hold pages."""
        return int(self._manifest["n_shards"])

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._manifest["settings"])

    @property
    def dim(self) -> int:
        return int(self._manifest["settings"]["dim"])

    @property
    def codec(self) -> str:
        return self._manifest["settings"]["codec"]

    dtype = codec

    @property
    def has_rerank(self) -> bool:
        """Binary shards keep a float16 rerank copy."""
        return self.codec == "binary" and bool(self._manifest["settings"].get("rerank"))

    @property
    def encoder(self) -> str | None:
        return self._manifest["settings"].get("encoder") or None

    @property
    def pruner_config(self) -> dict[str, Any] | None:
        return self._manifest["settings"].get("pruner")

    @property
    def version(self) -> int:
        """The sharded manifest's version (raised by every change to the list of shards)."""
        return int(self._manifest["version"])

    @property
    def shard_paths(self) -> list[str]:
        """Paths of the existing shards, in shard order."""
        return [os.path.join(self.path, SM.shard_name(b)) for b in self._buckets]

    @property
    def buckets(self) -> list[int]:
        """Bucket numbers of the existing shards, in shard order."""
        return list(self._buckets)

    def shard_of(self, page_id: str) -> int:
        """The bucket that owns ``page_id`` (see :func:`colprune.distributed.manifest.shard_of`)."""
        return SM.shard_of(page_id, self.n_shards)

    def shard(self, bucket: int) -> Index:
        """Bucket ``bucket``'s shard, open read-only (a new :class:`Index` the caller closes)."""
        return Index.open(os.path.join(self.path, SM.shard_name(bucket)))

    # -- reading -----------------------------------------------------------------------

    def _local(self) -> list[Index]:
        if isinstance(self._backend, _ThreadBackend):
            return [w.index for w in self._backend.workers]
        return [Index.open(p) for p in self.shard_paths]

    def _each(self, fn):
        shards = self._local()
        try:
            return [fn(ix) for ix in shards]
        finally:
            if not isinstance(self._backend, _ThreadBackend):
                for ix in shards:
                    ix.close()

    def __len__(self) -> int:
        if self._n_docs is None:
            self._n_docs = sum(self._each(len))
        return self._n_docs

    @property
    def ids(self) -> list[str]:
        """Live page ids in the collection's order: shard order, then each shard's commit order."""
        return [i for part in self._each(lambda ix: ix.ids) for i in part]

    def __contains__(self, page_id: object) -> bool:
        if not isinstance(page_id, str):
            return False
        b = SM.shard_of(page_id, self.n_shards)
        if b not in self._buckets:
            return False
        with self.shard(b) as ix:
            return page_id in ix

    def get(self, page_id: str):
        """The stored :class:`~colprune.index.Page` with id ``page_id`` (KeyError if absent)."""
        b = SM.shard_of(page_id, self.n_shards)
        if b not in self._buckets:
            raise KeyError(f"no document {page_id!r} in {self.path}")
        with self.shard(b) as ix:
            return ix.get(page_id)

    @property
    def skipped(self) -> dict[str, str]:
        """Sources a build could not embed, over every shard."""
        out: dict[str, str] = {}
        for part in self._each(lambda ix: ix.skipped):
            out.update(part)
        return out

    def filter_fields(self) -> set[str]:
        out: set[str] = set()
        for part in self._each(lambda ix: ix.filter_fields()):
            out |= part
        return out

    def info(self) -> dict[str, Any]:
        """Counts and sizes summed over the shards, and each shard's own :meth:`Index.info`."""
        parts = self._each(lambda ix: ix.info())
        docs = sum(p["docs"] for p in parts)
        vectors = sum(p["vectors"] for p in parts)
        orig = sum(p["original_vectors"] for p in parts)
        file_bytes = sum(p["file_bytes"] for p in parts) + os.path.getsize(os.path.join(self.path, SM.MANIFEST))
        return {
            "path": self.path, "format": SM.FORMAT, "format_version": self._manifest["format_version"],
            "version": self.version, "n_shards": self.n_shards, "shards": len(self._buckets), "docs": docs,
            "vectors": vectors, "original_vectors": orig, "keep_ratio": vectors / orig if orig else None,
            "dim": self.dim, "codec": self.codec, "encoder": self.encoder, "pruner": self.pruner_config,
            "file_bytes": file_bytes, "file_bytes_per_page": file_bytes / docs if docs else None,
            "docs_per_shard": [p["docs"] for p in parts], "shard_info": parts,
        }

    def verify(self) -> dict[str, Any]:
        """Check every shard against its checksums (raises :class:`~colprune.errors.CorruptionError`)."""
        parts = self._each(lambda ix: ix.verify())
        return {"shards": len(parts), "segments": sum(p["segments"] for p in parts),
                "docs": sum(p["docs"] for p in parts), "bytes": sum(p["bytes"] for p in parts)}

    def warm(self) -> None:
        """Hold each shard's vectors (within its budget) and first-stage summaries in memory."""
        self._backend.call("warm")

    # -- search ------------------------------------------------------------------------

    def _queries(self, queries):
        from ..index.collection import check_queries

        return check_queries(queries, self.dim)  # already contiguous float32 / int64

    def search(self, queries, k: int = 10, *, n_threads: int | None = None, rerank: int | None = None,
               candidates: int | None = None, n_centroids: int | None = None, where: dict[str, Any] | None = None,
               memory_budget: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` pages over every shard, as :meth:`Index.search <colprune.index.Index.search>` takes and returns them.

        Parameters
        ----------
        queries : (n_tokens, dim) array, or a list of such arrays (NumPy or torch)
        k : int >= 1
        n_threads : kernel threads *per shard* (default: all cores)
        rerank : binary codes with a rerank copy: global Hamming shortlist of this many pages,
            rescored exactly (default ``max(100, 10 k)``; 0 returns the Hamming ranking)
        candidates : two-stage search: global shortlist of this many pages by first-stage score
        n_centroids : must match the stored summaries' (as ``Index.search``)
        where : metadata filter, as ``Index.search``; a field no shard knows is an error
        memory_budget : bytes of vectors each shard holds at a time

        Returns
        -------
        list of :class:`~colprune.index.Hit` for one 2-D query, else one such list per query;
        best first, ties to the earlier page (shard order, then the shard's order).
        """
        if self._closed:
            raise InvalidInputError(f"{self.path} is closed")
        k = _check_count(k, "k")
        if candidates is not None:
            candidates = _check_count(candidates, "candidates")
        if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, (int, np.integer)) or rerank < 0):
            raise InvalidInputError(f"rerank must be an integer >= 0, got {rerank!r}")
        qv, qoff, single = self._queries(queries)
        n_q = qoff.size - 1
        if where is not None:
            if not isinstance(where, dict) or not where:
                raise InvalidInputError(f"where must be a non-empty dict of metadata field -> condition, got {where!r}")
            known = set().union(*self._backend.call("fields")) if self._buckets else set()
            unknown = [f for f in where if f not in known]
            if unknown:
                raise InvalidInputError(f"filter on unknown metadata field {unknown[0]!r}; filterable fields: {sorted(known)}")
        st = self._manifest["settings"]
        mode = None
        if candidates is not None:
            if self.codec not in ("float16", "float32"):
                raise InvalidInputError(f"two-stage search (candidates=) needs a float16/float32 index, not {self.codec}")
            if n_centroids is not None and st.get("summary_centroids") not in (0, int(n_centroids)):
                raise InvalidInputError(f"this collection stores {st['summary_centroids']}-centroid summaries; "
                                        f"n_centroids={n_centroids} would need `colprune summarize --centroids {n_centroids}`")
            mode, depth, rerank_copy = "summary", max(candidates, k), False
        elif self.codec == "binary" and st.get("rerank"):
            r = max(100, 10 * k) if rerank is None else int(rerank)
            if r > 0:
                mode, depth, rerank_copy = "hamming", max(r, k), True
        if not self._buckets:
            hits: list[list[Hit]] = [[] for _ in range(n_q)]
        elif mode is None:
            parts = self._backend.call("exact", args=(_split(qv, qoff), k, where, n_threads, memory_budget))
            hits = [merge_hits([p[q] for p in parts], k) for q in range(n_q)]
        else:
            firsts = self._backend.call("shortlist", args=(qv, qoff, depth, where, mode, n_threads, n_centroids, memory_budget))
            chosen = [merge_shortlists([f[q] for f in firsts], depth) for q in range(n_q)]  # [query][shard]
            per_shard = [(qv, qoff, [chosen[q][si] for q in range(n_q)], k, rerank_copy, n_threads)
                         for si in range(len(firsts))]
            parts = self._backend.call("rescore", per_shard_args=per_shard)
            hits = []
            for q in range(n_q):
                keyed = sorted(((-s, si, p, i, s, m) for si, part in enumerate(parts) for p, i, s, m in part[q]),
                               key=lambda t: t[:3])
                hits.append([Hit(i, float(s), m) for *_, i, s, m in keyed[:k]])
        return hits[0] if single else hits

    # -- writing -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed:
            raise InvalidInputError(f"{self.path} is closed")
        if self.mode != "a":
            raise PermissionError(f"{self.path} is open read-only; use ShardedIndex.open(path, mode='a') to write")

    def _writer(self, bucket: int, create: bool) -> Index | None:
        """Bucket ``bucket``'s shard open for writing; created (temp name, rename, manifest) when asked and absent."""
        if bucket in self._writers:
            return self._writers[bucket]
        final = os.path.join(self.path, SM.shard_name(bucket))
        if bucket in self._buckets:
            ix = Index.open(final, mode="a")
        elif not create:
            return None
        else:
            st = self._manifest["settings"]
            tmp = os.path.join(self.path, f"{SM.TEMP_PREFIX}{SM.shard_name(bucket)}-{uuid.uuid4().hex[:12]}")
            Index.create(tmp, st["dim"], st["codec"], encoder=st.get("encoder") or None, signals=st.get("signals", ()),
                         merged=st.get("merged", False), rerank=st.get("rerank", True),
                         summary_centroids=st.get("summary_centroids", 4)).close()
            os.rename(tmp, final)
            SM.fsync_dir(self.path)
            self._add_shards([bucket])
            ix = Index.open(final, mode="a")
        self._writers[bucket] = ix
        return ix

    def _add_shards(self, buckets: Sequence[int]) -> None:
        """Name new (already complete) shards in the manifest: one atomic manifest write."""
        body = SM.read_manifest(self.path)
        have = {int(s["bucket"]) for s in body["shards"]}
        body["shards"] = sorted(body["shards"] + [{"name": SM.shard_name(b), "bucket": int(b)} for b in buckets if b not in have],
                                key=lambda s: s["bucket"])
        body["version"] = int(body["version"]) + 1
        SM.write_manifest(self.path, body)
        self._load()

    def _route(self, ids: Sequence[str]) -> dict[int, list[int]]:
        from ..index.collection import check_id

        groups: dict[int, list[int]] = {}
        seen: set[str] = set()
        for i, page_id in enumerate(ids):
            check_id(page_id)
            if page_id in seen:
                raise DuplicateIdError(f"document {page_id!r} appears twice in this call")
            seen.add(page_id)
            groups.setdefault(SM.shard_of(page_id, self.n_shards), []).append(i)
        return dict(sorted(groups.items()))

    def _write(self, method: str, ids, embeddings, importance, kwargs: dict[str, Any]) -> list:
        self._check_writable()
        ids = list(ids)
        n = len(ids)
        for name, seq in (("embeddings", embeddings), ("importance", importance)):
            if seq is not None and len(seq) != n:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")
        for name in ("metadata", "patch_mask", "grids", "signals"):
            if kwargs.get(name) is not None and len(kwargs[name]) != n:
                raise InvalidInputError(f"{name} has {len(kwargs[name])} entries for {n} ids")
        groups = self._route(ids)
        if method == "add":  # refuse ids already present before any shard is written
            for b, rows in groups.items():
                if b in self._buckets:
                    with self.shard(b) as ix:
                        dup = next((ids[r] for r in rows if ids[r] in ix), None)
                    if dup is not None:
                        raise DuplicateIdError(f"document {dup!r} is already in {self.path} (use upsert to replace it)")
        self._prevalidate(ids, embeddings, importance, kwargs)
        if kwargs.get("pruner") is None and self.pruner_config is not None:
            kwargs = dict(kwargs, pruner=self.pruner_config)
        out: list = [None] * n
        with self._write_lock:
            for b, rows in groups.items():
                ix = self._writer(b, create=True)
                sub = {name: ([v[r] for r in rows] if name in _PER_PAGE and v is not None else v)
                       for name, v in kwargs.items()}
                res = getattr(ix, method)([ids[r] for r in rows], [embeddings[r] for r in rows],
                                          None if importance is None else [importance[r] for r in rows], **sub)
                for r, p in zip(rows, res):
                    out[r] = p
            self._n_docs = None
            self._refresh_readers()
        return out

    def _prevalidate(self, ids, embeddings, importance, kwargs) -> None:
        """Check every page before any shard is written, so bad input leaves every shard unchanged."""
        from ..pruning import check_page

        masks = kwargs.get("patch_mask")
        for i, page_id in enumerate(ids):
            check_page(embeddings[i], None if importance is None else importance[i],
                       None if masks is None else masks[i], dim=self.dim, what=f"document {page_id!r}")

    def _refresh_readers(self) -> None:
        new = [b for b in self._writers if b not in self._buckets]
        if new:
            self._add_shards(new)
        else:
            self._backend.call("refresh")

    def add(self, ids: Sequence[str], embeddings: Sequence, importance: Sequence | None = None, **kwargs: Any) -> list:
        """Add pages, each to the shard of its bucket; takes :meth:`Index.add <colprune.index.Index.add>`'s arguments.

        Ids, shapes and values are checked for every page before any shard is written. Each
        shard's part is one commit there (``commit_every`` splits it further); a crash between
        two shards' commits leaves the pages of the earlier shards added (each page is wholly
        there or not). Returns the stored :class:`~colprune.pruning.PrunedPage` per page.
        """
        return self._write("add", ids, embeddings, importance, kwargs)

    def upsert(self, ids: Sequence[str], embeddings: Sequence, importance: Sequence | None = None, **kwargs: Any) -> list:
        """Add or replace pages, each in the shard of its bucket (one commit per shard)."""
        return self._write("upsert", ids, embeddings, importance, kwargs)

    def delete(self, ids: Sequence[str] | str | None = None, *, where: dict[str, Any] | None = None,
               missing: str = "error") -> int:
        """Delete pages by id (routed to their shards) and/or by metadata filter (every shard); returns how many.

        With ``missing="error"`` every id is checked in its shard before anything is deleted.
        """
        self._check_writable()
        if ids is None and where is None:
            raise InvalidInputError("delete needs ids, where=, or both")
        if isinstance(ids, str):
            ids = [ids]
        if missing not in ("error", "ignore"):
            raise InvalidInputError(f"missing must be 'error' or 'ignore', got {missing!r}")
        groups: dict[int, list[str]] = {}
        for page_id in ids or []:
            if not isinstance(page_id, str):
                raise InvalidInputError(f"document ids must be strings, got {type(page_id).__name__} {page_id!r}")
            groups.setdefault(SM.shard_of(page_id, self.n_shards), []).append(page_id)
        if missing == "error":
            unknown = []
            for b, part in groups.items():
                if b not in self._buckets:
                    unknown += part
                    continue
                with self.shard(b) as ix:
                    unknown += [i for i in part if i not in ix]
            if unknown:
                raise KeyError(f"{len(unknown)} id(s) not in {self.path}, e.g. {unknown[0]!r}; nothing was deleted "
                               "(missing='ignore' skips them)")
        if where is not None:
            if not isinstance(where, dict) or not where:
                raise InvalidInputError(f"where must be a non-empty dict of metadata field -> condition, got {where!r}")
            known = self.filter_fields()
            unknown_f = [f for f in where if f not in known]
            if unknown_f:
                raise InvalidInputError(f"filter on unknown metadata field {unknown_f[0]!r}; filterable fields: {sorted(known)}")
        total = 0
        with self._write_lock:
            for b in self._buckets:
                part = groups.get(b)
                shard_where = where
                if where is not None:
                    with self.shard(b) as ix:
                        if not all(f in ix.filter_fields() for f in where):
                            shard_where = None
                if not part and shard_where is None:
                    continue
                ix = self._writer(b, create=False)
                total += ix.delete(part, where=shard_where, missing="ignore") if part else ix.delete(where=shard_where)
            self._n_docs = None
            self._backend.call("refresh")
        return total

    def compact(self, **kwargs: Any) -> dict[str, Any]:
        """Compact every shard (:meth:`Index.compact <colprune.index.Index.compact>`); returns the summed figures."""
        self._check_writable()
        total = {"bytes_before": 0, "bytes_after": 0, "segments_before": 0, "segments_after": 0}
        with self._write_lock:
            for b in self._buckets:
                res = self._writer(b, create=False).compact(**kwargs)
                for key in total:
                    total[key] += res[key]
            self._backend.call("refresh")
        return total

    def record_skipped(self, reasons: dict[str, str]) -> None:
        """Record sources a build could not embed, each in the shard of its id's bucket."""
        self._check_writable()
        groups: dict[int, dict[str, str]] = {}
        for key, why in reasons.items():
            groups.setdefault(SM.shard_of(str(key), self.n_shards), {})[str(key)] = str(why)
        with self._write_lock:
            for b, part in sorted(groups.items()):
                self._writer(b, create=True).record_skipped(part)
            self._refresh_readers()
