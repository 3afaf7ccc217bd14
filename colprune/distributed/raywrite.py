"""The Ray build's last stages: route pages to their bucket's writer, and the writer actor that prunes and commits.

One :class:`ShardWriter` actor per bucket is the only writer of that bucket's shard during a
build. A new shard is written under a temporary name (``.tmp-shard-NNNNN-RUN``) and renamed
when the writer finishes; then the driver names it in the sharded manifest
(:meth:`ShardedIndex.add_shards <colprune.distributed.ShardedIndex.add_shards>`, one atomic
write). Pages go into an existing shard as ordinary atomic commits. Writers drop pages they
already hold, so a batch Ray retries is not written twice; a writer restarted by Ray reopens
its temporary shard.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..pipeline import PageWriter
from . import manifest as SM
from .raypages import unpack_signals
from .writes import create_shard

__all__ = ["ShardWriter", "route_batch", "run_writers"]


def route_batch(batch: dict[str, np.ndarray], writers: dict[int, str], namespace: str) -> dict[str, np.ndarray]:
    """Send each page of the batch to its bucket's writer actor (named ``writers[bucket]``); wait for the writes."""
    import ray

    by_bucket: dict[int, list[int]] = {}
    for i, b in enumerate(batch["bucket"]):
        by_bucket.setdefault(int(b), []).append(i)
    refs = []
    for b, rows in sorted(by_bucket.items()):
        actor = ray.get_actor(writers[b], namespace=namespace)
        part = {k: [batch[k][i] for i in rows] for k in batch}
        refs.append(actor.write.remote(part))
    taken = sum(r["written"] for r in ray.get(refs))
    return {"taken": np.array([taken], np.int64)}


class ShardWriter:
    """The one writer of one bucket's shard during a build (a Ray actor).

    Parameters
    ----------
    root : the sharded collection's directory
    bucket : the bucket this writer owns
    settings : the collection's settings (``ShardedIndex.settings``): a new shard is created with them
    run_id : names the temporary shard of this run (a restarted actor finds it again)
    commit_every : pages buffered per commit
    """

    def __init__(self, root: str, bucket: int, settings: dict[str, Any], run_id: str, commit_every: int) -> None:
        from ..index import Index
        from ..index import manifest as M

        self.final = os.path.join(root, SM.shard_name(bucket))
        self.bucket = bucket
        self.settings = settings
        self.tmp = None
        if M.is_collection(self.final):
            self.ix = Index.open(self.final, mode="a")
        else:
            self.tmp = os.path.join(root, f"{SM.TEMP_PREFIX}{SM.shard_name(bucket)}-{run_id}")
            if M.is_collection(self.tmp):  # this actor restarted: keep what its earlier life committed
                self.ix = Index.open(self.tmp, mode="a")
            else:
                self.ix = create_shard(self.tmp, settings)
        # pages are committed by count only: what a lost actor held uncommitted, the next run builds
        self.writer = PageWriter(self.ix, settings.get("pruner"), commit_pages=commit_every, commit_seconds=math.inf)
        self.skipped: dict[str, str] = {}

    @property
    def written(self) -> int:
        """Pages committed by this writer."""
        return self.writer.indexed

    def write(self, part: dict[str, list]) -> dict[str, int]:
        """Take a batch of pages (row columns); commits whenever ``commit_every`` pages are buffered. Returns pages taken."""
        dim = int(self.settings["dim"])
        taken = 0
        for i, page_id in enumerate(part["id"]):
            page_id = str(page_id)
            if part["reason"][i]:
                self.skipped[page_id] = str(part["reason"][i])
                continue
            if page_id in self.ix or self.writer.holds(page_id):  # a retried batch: already here
                continue
            vectors, importance, mask, grid, metadata, signals = self._page(part, i)
            if vectors.shape[1] != dim:
                raise InvalidInputError(f"the encoder gives dimension {vectors.shape[1]}; the collection holds {dim}")
            self.writer.add([page_id], [vectors], [importance], metadata=[metadata], patch_mask=[mask], grids=[grid],
                            signals=[signals])
            taken += 1
        return {"written": taken}

    @staticmethod
    def _page(part: dict[str, list], i: int) -> tuple:
        """Row ``i`` of ``part`` unpacked: (vectors, importance, patch_mask, grid, metadata, signals)."""
        n = int(part["n"][i])
        raw_imp, raw_mask = part["importance"][i], part["patch_mask"][i]
        return (np.frombuffer(part["vectors"][i], np.float32).reshape(n, -1),
                np.frombuffer(raw_imp, np.float32) if len(raw_imp) else None,
                np.frombuffer(raw_mask, bool) if len(raw_mask) else None,
                tuple(json.loads(part["grid"][i])) if part["grid"][i] else None,
                json.loads(part["metadata"][i]) if part.get("metadata") is not None else {},
                unpack_signals(part["signals"][i], n) if len(part["signals"][i]) else None)

    def ready(self) -> int:
        """Called once before routing starts: the actor exists (and is findable by name) once this returns."""
        return self.bucket

    def finish(self) -> dict[str, Any]:
        """Commit what is buffered, record skipped pages, close; a new shard takes its final name. Returns the counts."""
        self.writer.skip(self.skipped)
        self.writer.flush()  # commits the buffered pages, then the skip record
        self.ix.close()
        new = False
        if self.tmp is not None:
            os.rename(self.tmp, self.final)
            SM.fsync_dir(os.path.dirname(self.final))
            new = True
        return {"bucket": self.bucket, "written": self.written, "new": new, "skipped": dict(self.skipped)}


def run_writers(ray, sh, rows_ds, buckets: set[int], commit_every: int, small_cpus: float) -> tuple[int, list[int], dict]:
    """Start one writer actor per bucket, route ``rows_ds`` to them, finish them, name new shards in the manifest.

    ``sh`` is the open (``mode="a"``) :class:`~colprune.distributed.ShardedIndex`. Returns
    (pages written, buckets written or created, skipped id -> reason).
    """
    run_id = uuid.uuid4().hex[:12]
    namespace = f"colprune-build-{run_id}"
    writer_cls = ray.remote(num_cpus=0, max_restarts=2, max_task_retries=2)(ShardWriter)
    names = {b: f"writer-{b:05d}" for b in sorted(buckets)}
    actors = {b: writer_cls.options(name=names[b], namespace=namespace).remote(sh.path, b, sh.settings, run_id, commit_every)
              for b in sorted(buckets)}
    try:
        ray.get([a.ready.remote() for a in actors.values()])  # route tasks look writers up by name
        routed = rows_ds.map_batches(route_batch, fn_kwargs={"writers": names, "namespace": namespace},
                                     batch_format="numpy", batch_size=64, num_cpus=small_cpus)
        for _ in routed.iter_batches(batch_size=None):
            pass
        results = ray.get([actors[b].finish.remote() for b in sorted(buckets)])
    finally:
        for a in actors.values():
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - the actor may already be gone
                pass
    new = [r["bucket"] for r in results if r["new"]]
    if new:
        sh.add_shards(new)
    skipped: dict[str, str] = {}
    for r in results:
        skipped.update(r["skipped"])
    return sum(r["written"] for r in results), sorted(r["bucket"] for r in results if r["written"] or r["new"]), skipped
