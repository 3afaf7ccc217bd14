"""Where shard workers run.

A backend holds one :class:`~colprune.distributed.worker.ShardWorker` per shard and answers
``call(method, per_shard_args=None, args=())`` with the per-shard results in shard order:
:class:`ThreadBackend` runs them in threads of this process, the Ray backend
(:class:`colprune.distributed.ray_search.RayBackend`) in actors. :func:`open_backend` picks
one. Both also offer ``local_indexes()`` (the shards open in this process, or None), ``ping()``
and ``close()``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..index import Index
from .worker import ShardWorker

__all__ = ["ThreadBackend", "open_backend"]


class ThreadBackend:
    """Shards searched in threads of this process, each a :class:`ShardWorker`."""

    def __init__(self, paths: list[str], memory_budget: int | None, max_workers: int | None) -> None:
        self.workers = [ShardWorker(p, memory_budget) for p in paths]
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(len(paths) or 1, max_workers or os.cpu_count() or 1)),
                                       thread_name_prefix="colprune-shard")

    def call(self, method: str, per_shard_args: list[tuple] | None = None, args: tuple = ()) -> list:
        """``worker.method(*args)`` on every shard (or with ``per_shard_args[i]`` on shard ``i``); results in shard order."""
        futs = [self.pool.submit(getattr(w, method), *(per_shard_args[i] if per_shard_args else args))
                for i, w in enumerate(self.workers)]
        return [f.result() for f in futs]

    def local_indexes(self) -> list[Index]:
        """The shards this process holds open (readers of the caller may use them; not to be closed)."""
        return [w.index for w in self.workers]

    def ping(self) -> int:
        """An empty round trip: nothing to send to threads. Returns the number of workers."""
        return len(self.workers)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for w in self.workers:
            w.close()


def open_backend(paths: list[str], *, ray: Any = None, shards_per_actor: int = 1, memory_budget: int | None = None,
                 max_workers: int | None = None):
    """Workers for the shards at ``paths``: in threads (``ray`` None or False), else in Ray actors.

    ``ray``: ``True`` or ``"auto"`` (the Ray already initialised, or a local one) or a cluster address.
    """
    if ray in (None, False):
        return ThreadBackend(paths, memory_budget, max_workers)
    from .ray_search import RayBackend

    return RayBackend(paths, ray, shards_per_actor, memory_budget)
