"""Compaction: rewriting segments without their deleted pages, and merging small segments.

:func:`compaction_plan` picks what ``Index.compact`` rewrites (segments with deletions, runs
of small segments); :func:`merge_run` the tiered merge after a commit (each page is rewritten
O(log n) times, not once per commit); :func:`rewrite` writes each group's live pages, in
stored form (no decoding), as one new segment and returns the manifest body that commits them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import layout as L
from .codecs import int8_summary
from .segment import Block, Segment
from .snapshot import Snapshot
from .write import write_segment

__all__ = ["compaction_plan", "merge_run", "live_blocks", "rewrite", "MAX_SMALL_SEGMENTS", "SMALL_SEGMENT_DOCS"]

#: commits leave at most this many segments under ``SMALL_SEGMENT_DOCS`` before merging them
MAX_SMALL_SEGMENTS = 8
SMALL_SEGMENT_DOCS = 4096


def _tier(n_docs: int) -> int:
    return int(np.floor(np.log(max(1, n_docs)) / np.log(MAX_SMALL_SEGMENTS) + 1e-9))


def compaction_plan(snap: Snapshot) -> list[list[int]]:
    """Groups of consecutive segments to rewrite as one: each with deletions alone, runs of small ones together."""
    groups: list[list[int]] = []
    run: list[int] = []
    for si, seg in enumerate(snap.segments):
        if seg.n_docs < SMALL_SEGMENT_DOCS:
            run.append(si)
            continue
        if len(run) > 1 or (run and snap.deleted[run[0]] is not None):
            groups.append(run)
        run = []
        if snap.deleted[si] is not None:
            groups.append([si])
    if len(run) > 1 or (run and snap.deleted[run[0]] is not None):
        groups.append(run)
    return groups


def merge_run(snap: Snapshot) -> list[int] | None:
    """The trailing small segments to merge after a commit, or None.

    ``MAX_SMALL_SEGMENTS`` trailing small segments of one size tier become one. A segment's tier
    is ``floor(log_8(n_docs))``; only segments of the last segment's tier are merged, and the
    result moves up a tier.
    """
    segs = snap.segments
    if not segs or segs[-1].n_docs >= SMALL_SEGMENT_DOCS:
        return None
    tier = _tier(segs[-1].n_docs)
    run = []
    for si in range(len(segs) - 1, -1, -1):
        if segs[si].n_docs >= SMALL_SEGMENT_DOCS or _tier(segs[si].n_docs) != tier:
            break
        run.append(si)
    return sorted(run) if len(run) >= MAX_SMALL_SEGMENTS else None


def live_blocks(snap: Snapshot, settings: dict[str, Any], si: int, budget: int) -> Iterator[Block]:
    """Segment ``si``'s live documents in stored form, in blocks of about ``budget`` vector bytes.

    ``settings`` is the manifest body they are written for (its ``summary_centroids`` decides the summaries).
    """
    seg = snap.segments[si]
    dele = snap.deleted[si]
    off = seg.offsets
    rows_per = max(1, budget // max(1, L.stored_bytes(snap.codec, snap.dim)))
    lo = 0
    while lo < seg.n_docs:
        hi = max(lo + 1, int(np.searchsorted(off, off[lo] + rows_per, side="right")) - 1)
        hi = min(hi, seg.n_docs)
        keep = np.arange(lo, hi) if dele is None else lo + np.flatnonzero(~dele[lo:hi])
        if keep.size:
            yield _take(snap, settings, seg, lo, hi, keep)
        lo = hi


def _take(snap: Snapshot, settings: dict[str, Any], seg: Segment, lo: int, hi: int, keep: np.ndarray) -> Block:
    off = seg.offsets
    data = seg.read_vectors(lo, hi)
    if snap.has_rerank:
        data.update(seg.read_vectors(lo, hi, rerank=True))
    aux = seg.aux(lo, hi)
    kept_docs = np.zeros(seg.n_docs, bool)
    kept_docs[keep] = True
    lengths = np.diff(off)
    rows = np.repeat(kept_docs[lo:hi], lengths[lo:hi])  # a row mask: compress, not a gather of indices
    vec = {n: v[rows] for n, v in data.items()}
    for n in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK):
        vec[n] = aux[n][rows]
    for k, v in aux["signals"].items():
        vec[f"{L.SIGNALS}/{k}"] = v[rows]
    cover_lengths = cover_rows = None
    if snap.merged:
        covers = [aux["covers"][r] for r in np.flatnonzero(rows)]
        cover_lengths = np.array([len(c) for c in covers], np.int64)
        cover_rows = np.concatenate(covers).astype(np.int32) if covers else np.zeros(0, np.int32)
    return Block([seg.ids[d] for d in keep], seg.metadata_texts(lo, hi, keep),
                 np.diff(off)[keep].astype(np.int64), seg.doc_table(L.DOC_N_ORIGINAL)[keep],
                 seg.doc_table(L.DOC_GRID)[keep], vec, cover_lengths, cover_rows,
                 _summary(settings, seg, kept_docs, keep, vec, lengths))


def _summary(settings: dict[str, Any], seg: Segment, kept_docs: np.ndarray, keep: np.ndarray, vec, lengths):
    centroids = settings.get("summary_centroids")
    if not centroids:
        return None
    s = seg.summary()
    if s is not None and seg.summary_centroids == centroids:
        codes, scales, soff = s
        crow = np.repeat(kept_docs, np.diff(soff))
        return codes[crow], scales[crow], np.diff(soff)[keep]
    return int8_summary(vec[L.VECTORS], lengths[keep].astype(np.int64), centroids)


def rewrite(root: str, snap: Snapshot, groups: list[list[int]], budget: int, body: dict[str, Any], *,
            transform: Callable[[Block], Block] | None = None, n_centroids: int | None = None) -> dict[str, Any]:
    """Write each group of ``snap``'s segments as one new segment of its live pages (none if it has none).

    ``body`` is the next manifest (its settings decide the new segments'); returns it with each
    group's entries replaced by the new segment's, ready to commit. ``transform`` changes each block
    before it is written (a retrain re-encodes it with ``body``'s new codebook of ``n_centroids``;
    default: the snapshot's codebook's).
    """
    if n_centroids is None:
        n_centroids = snap.codebook.n_centroids if snap.codebook is not None else 0
    replaced: dict[int, dict[str, Any] | None] = {}
    for group in groups:
        n_vec = 0
        live = 0
        for si in group:
            seg, dele = snap.segments[si], snap.deleted[si]
            n_vec += int(seg.n_vectors if dele is None else np.diff(seg.offsets)[~dele].sum())
            live += seg.n_docs - (0 if dele is None else int(dele.sum()))
        blocks = (b for si in group for b in live_blocks(snap, body, si, budget))
        if transform is not None:
            blocks = map(transform, blocks)
        replaced[group[0]] = write_segment(root, body, blocks, n_vec, n_centroids) if live else None
        for si in group[1:]:
            replaced[si] = None
    body["segments"] = [replaced[si] if si in replaced else s for si, s in enumerate(body["segments"])
                        if si not in replaced or replaced[si] is not None]
    return body
