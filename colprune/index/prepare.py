"""Input to a write, validated and pruned before anything is written.

:func:`prepare_pages` checks every page of a call (ids, dtypes, shapes, importance, grids,
signals, metadata) and prunes it, so bad input raises
:class:`~colprune.errors.InvalidInputError` naming the document and leaves the collection
unchanged. :func:`check_packed` and :func:`packed_blocks` do the same, vectorised, for pages
given back to back (the bulk-load path of an unpruned collection).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import DuplicateIdError, InvalidInputError
from ..kernels.checks import first_nonfinite_row
from ..pruning import NoPruning, PrunedPage, Pruner, check_page, make_pruner
from ..pruning.base import as_float_array
from . import layout as L
from .codecs import encode_block
from .records import NO_GRID, check_count, check_entries, check_floating, check_grid, check_id, check_ids, kept_signals, meta_json
from .segment import Block
from .snapshot import Snapshot

__all__ = ["Prepared", "resolve_pruner", "check_new_ids", "check_signals", "prepare_pages", "check_packed", "packed_blocks"]


class Prepared(NamedTuple):
    """Pages ready to encode: ids, pruned pages, their kept signals, metadata JSON, grid rows and the pruner config."""

    ids: list[str]
    pages: list[PrunedPage]
    kept: list[dict[str, np.ndarray]]
    meta_json: list[str]
    grid_rows: list[tuple[int, int]]
    config: dict[str, Any]


def resolve_pruner(snap: Snapshot, pruner: Pruner | str | None, path: str) -> Pruner:
    """The pruner a write uses: the given one (refused when it differs from a non-empty collection's), else the stored one."""
    stored = snap.manifest.get("pruner")
    if pruner is None:
        return make_pruner(stored) if stored else NoPruning()
    pruner = make_pruner(pruner)
    if stored is not None and len(snap):
        base = {k: stored[k] for k in ("name", "params")}
        if base != pruner.config():
            raise InvalidInputError(
                f"{path} holds pages pruned with {stored}; add with the same pruner, or derive a "
                f"differently pruned index with Index.derive / `colprune prune`"
            )
    return pruner


def check_signals(names: list[str], given: dict | None, n: int, what: str) -> dict[str, np.ndarray]:
    """A page's signals: exactly the collection's ``names``, each ``(n,)`` finite, as float32."""
    if not names:
        if given:
            raise InvalidInputError(f"{what}: this index stores no signals; create it with signals={sorted(given)}")
        return {}
    if given is None or set(given) != set(names):
        raise InvalidInputError(f"{what}: signals must have exactly {names}, got {sorted(given or {})}")
    out = {}
    for k in names:
        v = np.asarray(given[k], dtype=np.float32)
        if v.shape != (n,) or not np.isfinite(v).all():
            raise InvalidInputError(f"{what}: signal {k!r} must be ({n},) finite scores, got shape {v.shape}")
        out[k] = v
    return out


def check_new_ids(snap: Snapshot, ids: list, *, replacing: bool, path: str) -> None:
    """Valid, unique within the call, and (unless ``replacing``) not already live."""
    existing = snap.id_rows()
    seen: set[str] = set()
    for doc_id in ids:
        check_id(doc_id)
        if doc_id in seen:
            raise DuplicateIdError(f"document {doc_id!r} appears twice in this call")
        if doc_id in existing and not replacing:
            raise DuplicateIdError(f"document {doc_id!r} is already in {path} (use upsert to replace it)")
        seen.add(doc_id)


def prepare_pages(snap: Snapshot, path: str, ids, embeddings, importance, pruner, metadata, patch_mask, grids, signals, *,
                  replacing: bool) -> Prepared:
    """Validate and prune every page of a call before anything is written (the arguments are ``Index.add``'s)."""
    pruner = resolve_pruner(snap, pruner, path)
    if pruner.merges and not snap.merged:
        raise InvalidInputError(f"pruner {pruner.name!r} merges vectors: create the index with merged=True")
    ids = check_ids(ids)
    check_entries(len(ids), embeddings=embeddings, importance=importance, metadata=metadata, patch_mask=patch_mask,
                  grids=grids, signals=signals)
    check_new_ids(snap, ids, replacing=replacing, path=path)
    out = Prepared(ids, [], [], [], [], pruner.config())
    for i, doc_id in enumerate(ids):
        what = f"document {doc_id!r}"
        check_floating(embeddings[i], what)
        vec, imp, mask = check_page(embeddings[i], None if importance is None else importance[i],
                                    None if patch_mask is None else patch_mask[i], dim=snap.dim, what=what)
        if imp is None and pruner.needs_importance:
            raise InvalidInputError(f"{what}: pruner {pruner.name!r} needs importance scores; pass importance=")
        g = None if grids is None else grids[i]
        if g is not None:
            check_grid(g, int(mask.sum()), what)
        page = pruner.prune_checked(vec, imp, mask, g)
        sig = check_signals(snap.signal_names, None if signals is None else signals[i], vec.shape[0], what)
        out.kept.append(kept_signals(sig, page))
        out.pages.append(page)
        out.meta_json.append(meta_json(None if metadata is None else metadata[i], what))
        out.grid_rows.append(NO_GRID if g is None else tuple(int(x) for x in g))
    return out


def check_packed(ids: list, vectors, lengths, importance, metadata, dim: int):
    """Packed pages' arrays checked: ``(vectors (N, dim) float, lengths (n,) int64, offsets (n + 1,), importance or None)``."""
    n = len(ids)
    vectors = as_float_array(vectors, "vectors")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise InvalidInputError(f"vectors must have shape (N, {dim}), got {vectors.shape}")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.shape[0] != n or (n and lengths.dtype.kind not in "iu"):
        raise InvalidInputError(f"lengths must be {n} integers (one per id), got shape {lengths.shape} {lengths.dtype}")
    lengths = lengths.astype(np.int64)
    if n and lengths.min() < 1:
        raise InvalidInputError(f"document {ids[int(np.argmin(lengths))]!r}: empty page (0 vectors); "
                                "drop it or give it at least one vector")
    if int(lengths.sum()) != vectors.shape[0]:
        raise InvalidInputError(f"lengths sum to {int(lengths.sum())} vectors, vectors has {vectors.shape[0]} rows")
    if importance is not None:
        importance = as_float_array(importance, "importance")
        if importance.shape != (vectors.shape[0],):
            raise InvalidInputError(f"importance has shape {importance.shape}, expected ({vectors.shape[0]},): "
                                    "one score per vector")
    if metadata is not None and len(metadata) != n:
        raise InvalidInputError(f"metadata has {len(metadata)} entries for {n} ids")
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    return vectors, lengths, off, importance


def packed_blocks(snap: Snapshot, path: str, ids: list, vectors: np.ndarray, lengths: np.ndarray, off: np.ndarray,
                  importance: np.ndarray | None, metadata: Sequence[dict | None] | None,
                  commit_every: int | None, codebook=None) -> Iterator[Block]:
    """Unpruned packed pages, validated (vectorised) before the first block, as encoded blocks of ``commit_every`` pages
    (``codebook``: the collection's, residual codecs)."""
    n = len(ids)
    check_new_ids(snap, ids, replacing=False, path=path)
    for name, arr in (("embeddings", vectors), ("importance", None if importance is None else importance[:, None])):
        row = -1 if arr is None else first_nonfinite_row(arr)
        if row >= 0:
            d = int(np.searchsorted(off, row, side="right")) - 1
            raise InvalidInputError(f"document {ids[d]!r}: {name} contain NaN or infinite values (first at row {row - off[d]})")
    meta = [meta_json(None if metadata is None else metadata[i], f"document {ids[i]!r}") for i in range(n)]
    if vectors.dtype != np.float16 or not L.reads_float16(snap.codec):
        vectors = vectors.astype(np.float32, copy=False)
    step = n if commit_every is None else check_count(commit_every, "commit_every")
    return _packed_blocks(snap.manifest, ids, vectors, lengths, off, importance, meta, step, codebook)


def _packed_blocks(settings, ids, vectors, lengths, off, importance, meta, step, codebook) -> Iterator[Block]:
    n = len(ids)
    for lo in range(0, n, max(step, 1)):
        hi = min(lo + step, n)
        a, b = int(off[lo]), int(off[hi])
        positions = np.arange(b - a, dtype=np.int64) - np.repeat(off[lo:hi] - a, lengths[lo:hi])
        imp = np.full(b - a, np.nan, np.float32) if importance is None else importance[a:b]
        yield encode_block(settings, ids[lo:hi], meta[lo:hi], lengths[lo:hi], lengths[lo:hi], [NO_GRID] * (hi - lo),
                           vectors[a:b], positions, imp, np.ones(b - a, np.uint8), {}, None, codebook)
