"""Sharded search on Ray: one actor per shard group, query batches fanned out, top-k merged by the caller.

Imported by :func:`~colprune.distributed.backends.open_backend` only when a collection is opened
with ``ray=``; Ray itself is imported by :func:`ensure_ray`, not by this module.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from .worker import ShardWorker

__all__ = ["RayBackend", "ensure_ray"]


def ensure_ray(address: Any = None):
    """Import Ray and connect: to ``address`` when it is a string, else to the running Ray or a new local one."""
    try:
        import ray
    except ImportError:
        raise InvalidInputError("Ray is not installed: pip install -e \".[ray]\" (or pip install \"ray[data]\")") from None
    if not ray.is_initialized():
        if isinstance(address, str) and address not in ("auto", "local"):
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        elif address == "auto":
            ray.init(address="auto", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    return ray


class _ShardGroup:
    """A Ray actor's body: a few shards held open (vectors and first-stage summaries warm)."""

    def __init__(self, paths: list[str], memory_budget: int | None) -> None:
        self.workers = [ShardWorker(p, memory_budget) for p in paths]
        for w in self.workers:
            w.warm()

    def call(self, method: str, per_shard_args: list[tuple]) -> list:
        return [getattr(w, method)(*a) for w, a in zip(self.workers, per_shard_args)]

    def call_same(self, method: str, args: tuple) -> list:
        return [getattr(w, method)(*args) for w in self.workers]

    def ping(self) -> int:
        return len(self.workers)


class RayBackend:
    """Shards split into groups of ``shards_per_actor``, each group held by one Ray actor.

    ``call`` sends each actor its shards' arguments in one task and returns the per-shard
    results in shard order; one round trip per actor per call.
    """

    def __init__(self, paths: list[str], address: Any, shards_per_actor: int, memory_budget: int | None) -> None:
        self.ray = ensure_ray(None if address is True else address)
        actor = self.ray.remote(num_cpus=0)(_ShardGroup)  # search threads are the kernels'; do not reserve cores
        self.groups = [list(range(i, min(i + shards_per_actor, len(paths)))) for i in range(0, len(paths), shards_per_actor)]
        self.actors = [actor.remote([paths[i] for i in g], memory_budget) for g in self.groups]
        self.ray.get([a.ping.remote() for a in self.actors])
        self.n = len(paths)

    def call(self, method: str, per_shard_args: list[tuple] | None = None, args: tuple = ()) -> list:
        """``worker.method(*args)`` on every shard (or with ``per_shard_args[i]`` on shard ``i``); results in shard order."""
        if per_shard_args is None:
            shared = self.ray.put(args)  # a top-level reference: each actor gets the value, sent once
            refs = [a.call_same.remote(method, shared) for a in self.actors]
        else:
            refs = [a.call.remote(method, [per_shard_args[i] for i in g]) for a, g in zip(self.actors, self.groups)]
        out: list = []
        for part in self.ray.get(refs):
            out.extend(part)
        return out

    def local_indexes(self) -> None:
        """None: the shards are open in the actors, not in this process."""
        return None

    def ping(self) -> int:
        """One empty round trip to every actor. Returns the number of shard workers they hold."""
        return sum(self.ray.get([a.ping.remote() for a in self.actors]))

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - the actor may already be gone
                pass
        self.actors = []
