"""Scale-out: sharded collections, searched in threads or on Ray, built on Ray.

The only package of colprune that imports Ray, and only when a Ray feature is used:
:class:`ShardedIndex` opens and searches a sharded collection without Ray.

- :class:`ShardedIndex`: a directory of shards (ordinary collections) named by a manifest;
  search with :meth:`Index.search <colprune.index.Index.search>`'s signature and results,
  writes routed to the owning shard by a hash of the page id.
- :func:`build`: the distributed build (Ray Data: list, read, encode in an actor pool,
  prune and write one shard per writer).
- :func:`build_embeddings`: the same writers fed with precomputed embeddings.
- :func:`shard_of`: the documented id → bucket hash.

Modules, by verb: :mod:`.sharded` (the façade), :mod:`.worker` (one shard, next to the data),
:mod:`.backends` and :mod:`.ray_search` (workers in threads or Ray actors), :mod:`.fanout`
(search rounds and merges), :mod:`.writes` (creating, routing, checking), :mod:`.manifest`;
the Ray build: :mod:`.raybuild` (driver), :mod:`.raypages` (list, read), :mod:`.rayencode`,
:mod:`.raywrite` (route, shard writers).
"""

from .manifest import is_sharded, shard_of
from .sharded import ShardedIndex

__all__ = ["ShardedIndex", "build", "build_embeddings", "shard_of", "is_sharded", "DistributedBuildReport"]


def __getattr__(name: str):
    if name in ("build", "build_embeddings", "DistributedBuildReport"):
        from . import raybuild as _build

        return getattr(_build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
