"""Writing a sharded collection: create it, create and name shards, route and check pages before any shard is written.

The pieces :class:`~colprune.distributed.ShardedIndex` writes with, and the Ray build's shard
writers (:mod:`colprune.distributed.raywrite`) too: a shard is created with the collection's
settings by :func:`create_shard` in both.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import DuplicateIdError, InvalidInputError
from ..index import Index
from ..index.layout import check_codec
from ..index.records import check_count, check_id, codec_bytes
from . import manifest as SM

__all__ = ["PER_PAGE", "shard_settings", "create_collection", "create_shard", "name_shards", "route", "group_ids",
           "check_lengths", "check_pages", "rows_of"]

#: keyword arguments of add/upsert that hold one entry per page
PER_PAGE = ("metadata", "patch_mask", "grids", "signals")


def shard_settings(dim: int, dtype: str, encoder: str | None, pruner: Any, signals: Sequence[str], merged: bool | None,
                   signal: str | None = None, *, rerank: bool = True, summary_centroids: int = 4) -> dict[str, Any]:
    """The settings of a sharded collection, as its manifest holds them and every shard is created with (checked).

    ``pruner`` (a Pruner, registry name or config) is recorded by its config, with ``signal``
    (the importance signal its pages are pruned by) when given; ``merged`` None means whether
    the pruner merges vectors. ``dtype`` is any codec of :meth:`Index.create
    <colprune.index.Index.create>`; with a residual codec (``residual1/2/4``) each shard is an
    ordinary residual collection that trains its own codebook on its own first write, so the
    shards' codebooks differ.
    """
    from ..pruning import make_pruner

    dim = check_count(dim, "dim")
    check_codec(dtype, dim)
    codec_bytes(dtype, dim)
    pr = None if pruner is None else make_pruner(pruner)
    cfg = None if pr is None else pr.config() | ({"signal": signal} if signal else {})
    return {"dim": int(dim), "codec": dtype, "encoder": encoder or "", "pruner": cfg, "signals": sorted(signals),
            "merged": bool(merged if merged is not None else (pr is not None and pr.merges)), "rerank": bool(rerank),
            "summary_centroids": int(summary_centroids)}


def create_collection(path: str, n_shards: int, settings: dict[str, Any], overwrite: bool) -> None:
    """Write an empty sharded collection (its manifest, no shards) at ``path``: built under a temporary name, then renamed.

    An existing sharded collection is replaced only with ``overwrite`` (and not while another
    process writes it); anything else at ``path`` is never replaced.
    """
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
        if not SM.is_sharded(path):
            raise FileExistsError(f"{path} exists and is not a sharded colprune collection; refusing to replace it")
        SM.ShardedLock(path).release()  # refuse to replace a collection another process writes
        shutil.rmtree(path)
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


def create_shard(path: str, settings: dict[str, Any]) -> Index:
    """A new empty shard at ``path`` with the collection's ``settings``; returned open for writing (the caller closes it)."""
    st = settings
    return Index.create(path, st["dim"], st["codec"], encoder=st.get("encoder") or None, signals=st.get("signals", ()),
                        merged=st.get("merged", False), rerank=st.get("rerank", True),
                        summary_centroids=st.get("summary_centroids", 4))


def name_shards(root: str, buckets: Sequence[int]) -> None:
    """Name new (already complete) shards of ``buckets`` in the manifest of ``root``: one atomic manifest write."""
    body = SM.read_manifest(root)
    have = {int(s["bucket"]) for s in body["shards"]}
    body["shards"] = sorted(body["shards"] + [{"name": SM.shard_name(b), "bucket": int(b)} for b in buckets if b not in have],
                            key=lambda s: s["bucket"])
    body["version"] = int(body["version"]) + 1
    SM.write_manifest(root, body)


def route(ids: Sequence[str], n_shards: int) -> dict[int, list[int]]:
    """Row numbers of ``ids`` grouped by bucket (buckets ascending); ids checked, and refused when repeated."""
    groups: dict[int, list[int]] = {}
    seen: set[str] = set()
    for i, page_id in enumerate(ids):
        check_id(page_id)
        if page_id in seen:
            raise DuplicateIdError(f"document {page_id!r} appears twice in this call")
        seen.add(page_id)
        groups.setdefault(SM.shard_of(page_id, n_shards), []).append(i)
    return dict(sorted(groups.items()))


def group_ids(ids: Sequence[str], n_shards: int) -> dict[int, list[str]]:
    """``ids`` grouped by bucket (in first-seen order); refuses ids that are not strings."""
    groups: dict[int, list[str]] = {}
    for page_id in ids:
        if not isinstance(page_id, str):
            raise InvalidInputError(f"document ids must be strings, got {type(page_id).__name__} {page_id!r}")
        groups.setdefault(SM.shard_of(page_id, n_shards), []).append(page_id)
    return groups


def check_lengths(ids: Sequence[str], embeddings: Sequence, importance: Sequence | None, kwargs: dict[str, Any]) -> None:
    """Refuse per-page arguments that do not hold one entry per id."""
    n = len(ids)
    for name, seq in (("embeddings", embeddings), ("importance", importance)):
        if seq is not None and len(seq) != n:
            raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")
    for name in PER_PAGE:
        if kwargs.get(name) is not None and len(kwargs[name]) != n:
            raise InvalidInputError(f"{name} has {len(kwargs[name])} entries for {n} ids")


def check_pages(ids: Sequence[str], embeddings: Sequence, importance: Sequence | None, patch_mask: Sequence | None,
                dim: int) -> None:
    """Check every page's shapes and values before any shard is written, so bad input leaves every shard unchanged."""
    from ..pruning import check_page

    for i, page_id in enumerate(ids):
        check_page(embeddings[i], None if importance is None else importance[i],
                   None if patch_mask is None else patch_mask[i], dim=dim, what=f"document {page_id!r}")


def rows_of(kwargs: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """``kwargs`` of add/upsert for the pages at ``rows``: per-page arguments sliced, the others as they are."""
    return {name: ([v[r] for r in rows] if name in PER_PAGE and v is not None else v) for name, v in kwargs.items()}
