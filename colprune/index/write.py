"""Writing a collection: new segment files, deletion files and the manifest body that commits them.

A write builds the next manifest body (:func:`next_body`), writes what it names — segments
(:func:`write_segment`: into ``tmp/``, ``fsync``ed, renamed into ``segments/``) and deletion
files (:func:`delete_rows`) — and the index commits it, writing the body with
:func:`~colprune.index.manifest.write_manifest`. Nothing a body names is visible before that
commit; a crash leaves files the next writer collects. :func:`make_collection` and
:func:`put_in_place` create a collection and swap a complete one into place.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..pruning import make_pruner
from . import layout as L
from . import manifest as M
from .codecs import pages_block
from .prepare import Prepared
from .segment import Block, SegmentWriter
from .snapshot import Snapshot

__all__ = ["make_collection", "put_in_place", "next_body", "write_segment", "delete_rows", "record_pruner", "pruner_record",
           "prepared_blocks"]


def next_body(manifest: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``manifest`` with the next version number: the body a write fills in."""
    body = json.loads(json.dumps(manifest))
    body["version"] = int(body["version"]) + 1
    return body


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_segment(root: str, settings: dict[str, Any], blocks: Iterable[Block], n_vectors: int) -> dict[str, Any]:
    """Write ``blocks`` (``n_vectors`` in all) as one new segment file, durable and in ``segments/``.

    ``settings`` is the manifest (body) the segment belongs to. Returns its manifest entry.
    """
    name = M.unique_name("seg", ".h5")
    tmp = os.path.join(root, L.TMP, name)
    w = SegmentWriter(tmp, dim=int(settings["dim"]), codec=settings["codec"], rerank=bool(settings["rerank"]),
                      signal_names=list(settings["signals"]), merged=bool(settings["merged"]), n_vectors=n_vectors,
                      summary_centroids=settings.get("summary_centroids", 0))
    try:
        for b in blocks:
            w.write(b)
        checksum = w.close()
    except BaseException:
        w.abort()
        _unlink(tmp)
        raise
    dest = os.path.join(root, L.SEGMENTS, name)
    os.replace(tmp, dest)
    M.fsync_dir(os.path.dirname(dest))
    return {"name": name, "n_docs": w.n_docs, "n_vectors": w.n_vectors, "checksum": checksum,
            "bytes": os.path.getsize(dest), "deletes": None}


def delete_rows(root: str, snap: Snapshot, body: dict[str, Any], rows: Iterable[tuple[int, int]]) -> None:
    """Mark (segment, row) pairs of ``snap`` deleted in ``body``: writes the segments' new deletion files."""
    by_seg: dict[int, list[int]] = {}
    for si, r in rows:
        by_seg.setdefault(si, []).append(r)
    for si, rs in by_seg.items():
        seg = snap.segments[si]
        mask = np.zeros(seg.n_docs, bool) if snap.deleted[si] is None else snap.deleted[si].copy()
        mask[rs] = True
        body["segments"][si]["deletes"] = M.write_deletes(root, body["segments"][si]["name"], body["version"], mask)


def pruner_record(pruner, signal: str | dict[str, float] | None = None) -> dict[str, Any] | None:
    """The ``{"name", "params"}`` record of a pruner (a Pruner, a registry name or a record, kept as given),
    with ``"signal"`` when given: what a manifest stores."""
    if pruner is None:
        return None
    if isinstance(pruner, dict):
        record = json.loads(json.dumps(pruner))  # a stored record is kept as it is (an upgraded file's included)
    else:
        record = make_pruner(pruner).config()
    if signal is not None:
        record["signal"] = signal if isinstance(signal, str) else {k: float(v) for k, v in signal.items()}
    return record


def _base(record: dict[str, Any]) -> tuple:
    return record.get("name"), record.get("params")


def record_pruner(body: dict[str, Any], config: dict[str, Any], signal: str | None, *, empty: bool) -> None:
    """Record in ``body`` the pruner of the pages it adds: ``config`` when it has none (or when an empty
    collection's record names another pruner), and ``signal`` when the record has none."""
    stored = body["pruner"]
    other_signal = signal is not None and stored is not None and stored.get("signal") not in (None, signal)
    if stored is None or (empty and (_base(stored) != _base(config) or other_signal)):
        body["pruner"] = dict(config)
    if signal is not None and "signal" not in body["pruner"]:
        body["pruner"]["signal"] = signal


def prepared_blocks(settings: dict[str, Any], prepared: Prepared, step: int) -> Iterator[Block]:
    """Prepared pages as encoded blocks of ``step`` pages."""
    ids, pages, kept, meta, grids, _ = prepared
    for lo in range(0, len(ids), step):
        hi = min(lo + step, len(ids))
        yield pages_block(settings, ids[lo:hi], pages[lo:hi], kept[lo:hi], meta[lo:hi], grids[lo:hi])



def make_collection(path: str, body: dict[str, Any], *, overwrite: bool) -> str | None:
    """Create a collection whose first manifest is ``body`` at the absolute ``path``.

    Returns None when it was created at ``path``; when ``path`` exists (and ``overwrite``), the
    new collection is built beside it and its folder is returned, for :func:`put_in_place` once
    it is complete: the old one stays intact (and readable) until then, and a collection
    another process is writing is never replaced (``LockedError``).
    """
    exists = os.path.lexists(path)
    if exists and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if exists and os.path.isdir(path) and M.is_collection(path):
        M.WriterLock(path).release()  # refuse to replace a collection another process is writing
    elif exists and os.path.isdir(path):
        raise FileExistsError(f"{path} is a folder that is not a colprune collection; refusing to replace it")
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    M.remove_stale_siblings(path)
    tmp = os.path.join(parent, M.unique_name(f".{os.path.basename(path)}.tmp"))
    os.makedirs(tmp)
    try:
        for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.TMP):
            os.makedirs(os.path.join(tmp, sub))
        M.write_manifest(tmp, body)
        M.atomic_write(tmp, L.MARKER, json.dumps({"format": L.COLLECTION_FORMAT, "format_version": L.FORMAT_VERSION}).encode())
        M.fsync_dir(tmp)
        if not exists:
            os.rename(tmp, path)
            M.fsync_dir(parent)
            return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def put_in_place(root: str, final: str) -> None:
    """Move the complete collection ``root`` to ``final``, replacing what is there in one atomic exchange
    where the system has one (else two renames), then remove the old one."""
    parent = os.path.dirname(final)
    old = os.path.join(parent, M.unique_name(f".{os.path.basename(final)}.old"))
    if os.path.lexists(final):
        if os.path.isdir(final) and M.is_collection(final):
            M.WriterLock(final).release()
        if M.exchange(root, final):  # one atomic step: the new index in place, the old one aside
            old = root
        else:
            os.rename(final, old)
            os.rename(root, final)
    else:
        os.rename(root, final)
    M.fsync_dir(parent)
    if os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
    elif os.path.lexists(old):
        os.unlink(old)
