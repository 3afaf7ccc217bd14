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
(``tests/test_distributed.py`` checks it, ties included). Two-stage search and binary codes
with a rerank copy shortlist globally, in two rounds (:mod:`colprune.distributed.fanout`): the
result equals one index's, not merely a union of per-shard shortlists. Residual codecs' shards
each train their own codebook: search merges each shard's exact (or centroid-index) top-``k``.

The pieces: :mod:`~colprune.distributed.worker` (one shard, next to the data),
:mod:`~colprune.distributed.backends` (threads or Ray actors), :mod:`~colprune.distributed.fanout`
(the coordinator's rounds and merges), :mod:`~colprune.distributed.writes` (creating and writing).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Callable

from ..errors import ClosedError, DuplicateIdError, InvalidInputError
from ..index import Hit, Index
from ..index.filters import check_where
from ..index.records import check_count, check_delete, check_entries, check_ids, check_queries, check_search, unknown_ids
from . import manifest as SM
from . import writes as W
from .backends import open_backend
from .fanout import plan, search_shards

__all__ = ["ShardedIndex"]


def _setting(key: str, cast: Callable[[Any], Any], doc: str) -> property:
    """A read-only property: the collection's setting ``key`` (from its manifest), through ``cast``."""
    return property(lambda self: cast(self.settings.get(key)), doc=doc)


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
        self._shards_per_actor = check_count(shards_per_actor, "shards_per_actor")
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
        unless told otherwise. With a residual ``dtype`` each shard trains its own codebook on its
        own first write (shards' codebooks differ); exact scores are MaxSim on each shard's
        decoded vectors, so the merged per-shard top-``k`` stays correct.
        """
        path = os.path.abspath(os.fspath(path))
        signal = pruner.get("signal") if isinstance(pruner, dict) else None
        settings = W.shard_settings(dim, dtype, encoder, pruner, signals, bool(merged), signal, rerank=rerank,
                                  summary_centroids=summary_centroids)
        W.create_collection(path, n_shards, settings, overwrite)
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
        self._backend = open_backend(paths, ray=self._ray_arg, shards_per_actor=self._shards_per_actor,
                                     memory_budget=self._memory_budget, max_workers=self._max_workers)
        self._n_docs: int | None = None

    def refresh(self) -> None:
        """Re-read the manifest and every shard's newest commit."""
        self._check_open()
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
        if self._closed:
            return f"ShardedIndex({self.path!r}, mode={self.mode!r}, closed)"
        return (f"ShardedIndex({self.path!r}, mode={self.mode!r}, shards={len(self._buckets)}/{self.n_shards}, "
                f"dim={self.dim}, codec={self.codec})")

    # -- header ------------------------------------------------------------------------

    @property
    def n_shards(self) -> int:
        """Buckets page ids hash to (fixed at creation); shards exist for the buckets that hold pages."""
        return int(self._manifest["n_shards"])

    @property
    def settings(self) -> dict[str, Any]:
        """The settings every shard is created with (``dim``, ``codec``, ``encoder``, ``pruner``, ...)."""
        return dict(self._manifest["settings"])

    dim = _setting("dim", int, "Vector dimension.")
    codec = _setting("codec", str, "The shards' vector codec (``float16``, ``float32``, ``int8`` or ``binary``).")
    dtype = codec
    encoder = _setting("encoder", lambda v: v or None, "The encoder the collection's pages are embedded with (None if unnamed).")
    pruner_config = _setting("pruner", lambda v: v, "The pruner's config (with ``signal``) that :meth:`add` prunes with.")
    merged = _setting("merged", bool, "Whether the shards hold merged vectors (a merging pruner's).")
    signal_names = _setting("signals", lambda v: list(v or []), "Importance signals stored per vector (none unless asked).")

    @property
    def has_rerank(self) -> bool:
        """Binary shards keep a float16 rerank copy."""
        return self.codec == "binary" and bool(self._manifest["settings"].get("rerank"))

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
        self._check_open()
        return Index.open(os.path.join(self.path, SM.shard_name(bucket)))

    # -- reading -----------------------------------------------------------------------

    def _each(self, fn):
        """``fn(index)`` of every shard, in shard order: on the backend's open shards, else on shards opened here."""
        self._check_open()
        held = self._backend.local_indexes()
        shards = held if held is not None else [Index.open(p) for p in self.shard_paths]
        try:
            return [fn(ix) for ix in shards]
        finally:
            if held is None:
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
        self._check_open()
        if not isinstance(page_id, str) or (b := SM.shard_of(page_id, self.n_shards)) not in self._buckets:
            return False
        with self.shard(b) as ix:
            return page_id in ix

    def get(self, page_id: str):
        """The stored :class:`~colprune.index.Page` with id ``page_id`` (KeyError if absent)."""
        self._check_open()
        if (b := SM.shard_of(page_id, self.n_shards)) not in self._buckets:
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
        """The metadata fields some shard can filter on."""
        self._check_open()
        return set().union(*self._backend.call("fields"))

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

    def warm(self, *, kernels: bool = False) -> None:
        """Hold each shard's vectors and first-stage summaries in memory (``kernels``: run its kernels once)."""
        self._check_open()
        self._backend.call("warm", args=(True, kernels))

    def ping(self) -> int:
        """One empty round trip to the shard workers (each Ray actor; nothing for threads). Returns the workers reached."""
        self._check_open()
        return self._backend.ping()

    # -- search ------------------------------------------------------------------------

    def search(self, queries, k: int = 10, *, n_threads: int | None = None, rerank: int | None = None,
               candidates: int | None = None, nprobe: int | None = None, n_centroids: int | None = None,
               where: dict[str, Any] | None = None, memory_budget: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` pages over every shard, as :meth:`Index.search <colprune.index.Index.search>` takes and returns them.

        Parameters
        ----------
        queries : (n_tokens, dim) array, or a list of such arrays (NumPy or torch)
        k : int >= 1
        n_threads : kernel threads *per shard* (default: all cores)
        rerank : binary codes with a rerank copy: global Hamming shortlist of this many pages,
            rescored exactly (default ``max(100, 10 k)``; 0 returns the Hamming ranking)
        candidates : float codecs, two-stage search: global shortlist of this many pages by first-stage
            score. Residual codecs (>= ``k``): each shard's top-``k`` through its own centroid index
            (its ``search(q, k, candidates=, nprobe=)``), merged by exact score
        nprobe : residual codecs with ``candidates``: centroids each query token probes in each
            shard (default 4; a shard with a smaller codebook probes all of its centroids)
        n_centroids : must match the stored summaries' (as ``Index.search``)
        where : metadata filter, as ``Index.search``; a field no shard knows is an error
        memory_budget : bytes of vectors each shard holds at a time

        Returns
        -------
        list of :class:`~colprune.index.Hit` for one 2-D query, else one such list per query;
        best first, ties to the earlier page (shard order, then the shard's order).
        """
        self._check_open()
        k, rerank, candidates = check_search(k, rerank, candidates)
        qv, qoff, single = check_queries(queries, self.dim)  # already contiguous float32 / int64
        self._check_where(where)
        how = plan(self._manifest["settings"], k, rerank, candidates, n_centroids, nprobe)
        if not self._buckets:
            hits: list[list[Hit]] = [[] for _ in range(qoff.size - 1)]
        else:
            hits = search_shards(self._backend, qv, qoff, k, **how._asdict(), where=where, n_threads=n_threads,
                                 n_centroids=n_centroids, memory_budget=memory_budget)
        return hits[0] if single else hits

    def _check_where(self, where: dict[str, Any] | None) -> None:
        """Refuse a malformed filter, or one on a field no shard knows."""
        if where is not None:
            check_where(where, self.filter_fields())

    # -- writing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError.of(self.path, "colprune.distributed.ShardedIndex.open")

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode != "a":
            raise PermissionError(f"{self.path} is open read-only; use ShardedIndex.open(path, mode='a') to write")

    def _writer(self, bucket: int, create: bool) -> Index | None:
        """Bucket ``bucket``'s shard open for writing; created (temp name, rename, manifest) when asked and absent."""
        if bucket in self._writers:
            return self._writers[bucket]
        final = os.path.join(self.path, SM.shard_name(bucket))
        if bucket not in self._buckets:
            if not create:
                return None
            tmp = os.path.join(self.path, f"{SM.TEMP_PREFIX}{SM.shard_name(bucket)}-{uuid.uuid4().hex[:12]}")
            W.create_shard(tmp, self._manifest["settings"]).close()
            os.rename(tmp, final)
            SM.fsync_dir(self.path)
            self.add_shards([bucket])
        ix = Index.open(final, mode="a")
        self._writers[bucket] = ix
        return ix

    def add_shards(self, buckets: Sequence[int]) -> None:
        """Name new, already complete shards of ``buckets`` in the manifest (one atomic write), and reopen.

        For builders that write a shard elsewhere (under a temporary name in this directory)
        and rename it to :func:`~colprune.distributed.manifest.shard_name` when it is whole.
        """
        W.name_shards(self.path, buckets)
        self._load()

    def _write(self, method: str, ids, embeddings, importance, kwargs: dict[str, Any]) -> list:
        self._check_writable()
        ids = check_ids(ids)
        check_entries(len(ids), embeddings=embeddings, importance=importance, **{k: kwargs.get(k) for k in W.PER_PAGE})
        W.check_lengths(ids, embeddings, importance, kwargs)
        groups = W.route(ids, self.n_shards)
        if method == "add":  # refuse ids already present before any shard is written
            for b, rows in groups.items():
                if b in self._buckets:
                    with self.shard(b) as ix:
                        dup = next((ids[r] for r in rows if ids[r] in ix), None)
                    if dup is not None:
                        raise DuplicateIdError(f"document {dup!r} is already in {self.path} (use upsert to replace it)")
        W.check_pages(ids, embeddings, importance, kwargs.get("patch_mask"), self.dim)
        if kwargs.get("pruner") is None and self.pruner_config is not None:
            kwargs = dict(kwargs, pruner=self.pruner_config)
        out: list = [None] * len(ids)
        with self._write_lock:
            for b, rows in groups.items():
                res = getattr(self._writer(b, create=True), method)(
                    [ids[r] for r in rows], [embeddings[r] for r in rows],
                    None if importance is None else [importance[r] for r in rows], **W.rows_of(kwargs, rows))
                for r, p in zip(rows, res):
                    out[r] = p
            self._n_docs = None
            self._backend.call("refresh")  # a new shard was named (and the readers reopened) when it was created
        return out

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
        ids = check_delete(ids, where, missing)
        groups = W.group_ids(ids or [], self.n_shards)
        if missing == "error":
            unknown = []
            for b, part in groups.items():
                if b not in self._buckets:
                    unknown += part
                    continue
                with self.shard(b) as ix:
                    unknown += [i for i in part if i not in ix]
            if unknown:
                raise unknown_ids(self.path, unknown)
        self._check_where(where)
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
            self._backend.call("refresh")
