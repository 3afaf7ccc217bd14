"""Writing a collection: new segment files, deletion files and the manifest body that commits them.

A write builds the next manifest body (:func:`next_body`), writes what it names — segments
(:func:`write_segment`: into ``tmp/``, ``fsync``ed, renamed into ``segments/``) and deletion
files (:func:`delete_rows`) — and the index commits it, writing the body with
:func:`~colprune.index.manifest.write_manifest`. Nothing a body names is visible before that
commit; a crash leaves files the next writer collects. :func:`make_collection` and
:func:`put_in_place` create a collection and swap a complete one into place.

A write that fails (disk full, quota, ``EIO``, ``EFBIG``) raises :class:`~colprune.errors.WriteError`
(:func:`write_error`: the cause, the bytes it needed, the free space and what to do); what it had
written is removed (:func:`discard_uncommitted`) and the collection stays at its last commit.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import ColpruneError, LockedError, WriteError
from ..pruning import make_pruner
from . import layout as L
from . import manifest as M
from .codecs import pages_block
from .leftovers import built_for, remove_stale_siblings
from .prepare import Prepared
from .segment import Block, SegmentWriter
from .snapshot import Snapshot

__all__ = ["make_collection", "put_in_place", "next_body", "write_segment", "delete_rows", "record_pruner", "pruner_record",
           "prepared_blocks", "write_error", "writing", "discard_uncommitted", "undo_on_error", "segment_bytes",
           "commit_manifest"]

# errno -> (what happened, what to do)
_CAUSES = {
    errno.ENOSPC: ("disk full", "free space, or write the index elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or write the index elsewhere"),
    errno.EFBIG: ("file too large", "the file system or this process's file size limit (ulimit -f) allows no file "
                                    "this large: raise the limit, or write the index elsewhere"),
    errno.EIO: ("I/O error", "the storage reported an error: check it (dmesg, the network share), then retry"),
    errno.EROFS: ("read-only file system", "write the index elsewhere"),
}


def _fmt(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


def _mount_of(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    return path


def write_error(e: OSError, what: str, root: str, needed: int | None = None, *,
                outcome: str = "the index keeps its last commit") -> WriteError:
    """The :class:`~colprune.errors.WriteError` of an ``OSError`` met writing ``what`` into the collection ``root``.

    Its message says the cause (disk full, quota, file too large, I/O error...), about how many bytes the
    write ``needed``, the free space on the file system and what to do, e.g. ``disk full writing segment
    seg-1f2e of /data/pages.h5: needed ~52.3 MB, 1.2 MB free on /data (free space, or write the index
    elsewhere); the index keeps its last commit`` (``outcome`` replaces that last part).
    """
    cause, advice = _CAUSES.get(e.errno, (e.strerror or type(e).__name__, "retry once the cause is fixed"))
    where = root
    while where and not os.path.isdir(where):
        where = os.path.dirname(where)
    try:
        st = os.statvfs(where or "/")
        free = f"{_fmt(st.f_bavail * st.f_frsize)} free on {_mount_of(where or '/')}"
    except (OSError, AttributeError):
        free = "free space unknown"
    need = f"needed ~{_fmt(needed)}, " if needed is not None else ""
    shown, final = root, built_for(root)
    if final is not None:  # a new collection being built beside its final name
        shown, outcome = f"{final} (its new version, being built in {os.path.basename(root)})", f"{final} stays as it was"
    err = WriteError(f"{cause} writing {what} of {shown}: {need}{free} ({advice}); {outcome}", path=root, needed=needed)
    err.errno, err.strerror, err.filename = e.errno, e.strerror, getattr(e, "filename", None) or root
    return err


@contextlib.contextmanager
def writing(root: str, what: str, needed: int | None = None) -> Iterator[None]:
    """Turn an ``OSError`` (not a colprune error) raised inside into :func:`write_error`'s ``WriteError``."""
    try:
        yield
    except ColpruneError:
        raise
    except OSError as e:
        raise write_error(e, what, root, needed) from e


def discard_uncommitted(root: str) -> None:
    """After a failed write: remove the segment and deletion files no kept manifest names, and ``tmp/``
    (the writer holds the lock). Never raises: the write's own error is the one to report."""
    try:
        M.collect_garbage(root, M.latest_version(root))
    except Exception:  # noqa: BLE001 - best effort, see above
        pass
    try:
        M.clear_tmp(root)
    except OSError:
        pass


@contextlib.contextmanager
def undo_on_error(root: str) -> Iterator[None]:
    """One write of the collection ``root``: when it raises, :func:`discard_uncommitted` removes what it wrote."""
    try:
        yield
    except BaseException:
        discard_uncommitted(root)
        raise


def commit_manifest(root: str, body: dict[str, Any]) -> None:
    """Write ``body`` as the next manifest (the commit); a failed write raises ``WriteError`` and commits nothing."""
    with writing(root, f"manifest {body['version']}", len(json.dumps(body)) + 64):
        M.write_manifest(root, body)


def segment_bytes(settings: dict[str, Any], n_vectors: int, n_docs: int = 0) -> int:
    """About how many bytes a segment of ``n_vectors`` vectors (``n_docs`` pages) takes: what a write needs."""
    dim, codec = int(settings["dim"]), settings["codec"]
    per_vector = L.stored_bytes(codec, dim) + 9 + 4 * len(settings["signals"]) + 4 * bool(L.residual_bits(codec))
    per_vector += 2 * dim * bool(settings.get("rerank")) + 12 * bool(settings.get("merged"))
    per_doc = 96 + int(settings.get("summary_centroids") or 0) * (dim + 4)
    return int(n_vectors) * per_vector + int(n_docs) * per_doc + 16384


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


def write_segment(root: str, settings: dict[str, Any], blocks: Iterable[Block], n_vectors: int,
                  n_centroids: int = 0) -> dict[str, Any]:
    """Write ``blocks`` (``n_vectors`` in all) as one new segment file, durable and in ``segments/``.

    ``settings`` is the manifest (body) the segment belongs to (its format version, and for residual
    codecs its codebook, whose ``n_centroids`` the inverted lists need). Returns its manifest entry
    (residual blocks encoded here add ``error``: the mean squared reconstruction error of the
    segment's vectors). A failed write raises :class:`~colprune.errors.WriteError` and leaves no file behind.
    """
    name = M.unique_name("seg", ".h5")
    tmp = os.path.join(root, L.TMP, name)
    dest = os.path.join(root, L.SEGMENTS, name)
    w = None
    book = settings.get("codebook")
    try:
        w = SegmentWriter(tmp, dim=int(settings["dim"]), codec=settings["codec"], rerank=bool(settings["rerank"]),
                          signal_names=list(settings["signals"]), merged=bool(settings["merged"]), n_vectors=n_vectors,
                          summary_centroids=settings.get("summary_centroids", 0),
                          format_version=int(settings.get("format_version", L.FORMAT_VERSION)),
                          codebook=None if not book else (book["name"], int(n_centroids)))
        for b in blocks:
            w.write(b)
        checksum = w.close()
        os.replace(tmp, dest)
    except BaseException as e:
        if w is not None:
            w.abort()
        _unlink(tmp)  # first: the free space the error reports is what is left without it
        if isinstance(e, OSError) and not isinstance(e, ColpruneError):
            raise write_error(e, f"segment {name}", root, segment_bytes(settings, n_vectors, w.n_docs if w else 0)) from e
        raise
    M.fsync_dir(os.path.dirname(dest))
    entry = {"name": name, "n_docs": w.n_docs, "n_vectors": w.n_vectors, "checksum": checksum,
             "bytes": os.path.getsize(dest), "deletes": None}
    if book and w.sq_error is not None and w.n_vectors:
        entry["error"] = w.sq_error / w.n_vectors
    return entry


def delete_rows(root: str, snap: Snapshot, body: dict[str, Any], rows: Iterable[tuple[int, int]]) -> None:
    """Mark (segment, row) pairs of ``snap`` deleted in ``body``: writes the segments' new deletion files."""
    by_seg: dict[int, list[int]] = {}
    for si, r in rows:
        by_seg.setdefault(si, []).append(r)
    for si, rs in by_seg.items():
        seg = snap.segments[si]
        mask = np.zeros(seg.n_docs, bool) if snap.deleted[si] is None else snap.deleted[si].copy()
        mask[rs] = True
        name = body["segments"][si]["name"]
        with writing(root, f"the deletion file of segment {name}", (seg.n_docs + 7) // 8):
            body["segments"][si]["deletes"] = M.write_deletes(root, name, body["version"], mask)


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


def prepared_blocks(settings: dict[str, Any], prepared: Prepared, step: int, codebook=None) -> Iterator[Block]:
    """Prepared pages as encoded blocks of ``step`` pages (``codebook``: the collection's, residual codecs)."""
    ids, pages, kept, meta, grids, _ = prepared
    for lo in range(0, len(ids), step):
        hi = min(lo + step, len(ids))
        yield pages_block(settings, ids[lo:hi], pages[lo:hi], kept[lo:hi], meta[lo:hi], grids[lo:hi], codebook)



def make_collection(path: str, body: dict[str, Any], *, overwrite: bool, aside: bool = False) -> str | None:
    """Create a collection whose first manifest is ``body`` at the absolute ``path``.

    Returns None when it was created at ``path``; when ``path`` exists (and ``overwrite``), the
    new collection is built beside it and its folder is returned, for :func:`put_in_place` once
    it is complete: the old one stays intact (and readable) until then, and a collection
    another process is writing is never replaced (``LockedError``). ``aside`` builds beside
    ``path`` even when nothing is there (a copy that appears only once complete). The folder
    being built is locked from the start, so ``colprune gc`` never takes it for a leftover.
    """
    exists = os.path.lexists(path)
    if exists and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if exists and os.path.isdir(path) and M.is_collection(path):
        M.WriterLock(path).release()  # refuse to replace a collection another process is writing
    elif exists and os.path.isdir(path):
        raise FileExistsError(f"{path} is a folder that is not a colprune collection; refusing to replace it")
    parent = os.path.dirname(path) or "."
    with writing(path, "the new collection", 16384):
        os.makedirs(parent, exist_ok=True)
        remove_stale_siblings(path)
        tmp = os.path.join(parent, M.unique_name(f".{os.path.basename(path)}.tmp"))
        os.makedirs(tmp)
    lock = None
    try:
        with writing(path, "the new collection", 16384):
            lock = M.WriterLock(tmp)
            for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.TMP):
                os.makedirs(os.path.join(tmp, sub))
            M.write_manifest(tmp, body)
            M.atomic_write(tmp, L.MARKER, json.dumps({"format": L.COLLECTION_FORMAT,
                                                      "format_version": body["format_version"]}).encode())
            M.fsync_dir(tmp)
        if not exists and not aside:
            _rename_new(tmp, path)
            M.fsync_dir(parent)
            return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()  # the Index that opens it takes it again
    return tmp


def _rename_new(tmp: str, path: str) -> None:
    try:
        os.rename(tmp, path)
    except OSError as e:
        if os.path.lexists(path):  # another process created it meanwhile
            raise FileExistsError(f"{path} exists (created meanwhile by another process); pass overwrite=True "
                                  "(CLI: --overwrite) to replace it") from None
        raise write_error(e, "the new collection", path) from e


def _keep(root: str, final: str) -> str:
    """Rename the finished build ``root`` to a name no clean-up removes, ``FINAL.new-<time>``; that name
    (or ``root`` if the rename fails)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        kept = f"{final}.new-{stamp}" + (f"-{i}" if i else "")
        if os.path.lexists(kept):
            continue
        try:
            os.rename(root, kept)
        except OSError:
            break
        return kept
    return root


def _kept_text(kept: str, root: str, final: str) -> str:
    text = f"the new collection is kept, complete, at {kept}"
    if kept == root:
        text += " (a temporary name that the next create and `colprune gc` remove: move it first)"
    if not os.path.lexists(final):
        return f"{text}. To finish: rename it to {os.path.basename(final)}, or run again"
    return (f"{text}; {final} is unchanged. To finish: move {final} aside and rename {kept} to "
            f"{os.path.basename(final)}, or run again")


def _swap(root: str, final: str) -> str | None:
    """Put ``root`` at ``final``; returns where the old one went (None if there was none)."""
    if not os.path.lexists(final):
        os.rename(root, final)
        return None
    if M.exchange(root, final):  # one atomic step: the new index in place, the old one aside
        return root
    old = os.path.join(os.path.dirname(final), M.unique_name(f".{os.path.basename(final)}.old"))
    os.rename(final, old)
    try:
        os.rename(root, final)
    except OSError:
        os.rename(old, final)  # the old one back: never neither
        raise
    return old


def put_in_place(root: str, final: str) -> None:
    """Move the complete collection ``root`` to ``final``, replacing what is there in one atomic exchange
    where the system has one (else two renames), then remove the old one.

    Both collections' locks are held during the swap. When it cannot be made (another process is
    writing ``final``: ``LockedError``; a failed rename: ``WriteError``) nothing is lost: the new
    collection is renamed ``FINAL.new-<time>`` and the error says so, and how to finish.
    """
    try:
        own = M.WriterLock(root)
    except LockedError:
        raise LockedError(f"the new collection for {final} at {root} is held by another process (colprune gc?); "
                          f"{final} is unchanged") from None
    try:
        target = M.WriterLock(final) if os.path.isdir(final) and M.is_collection(final) else None
    except LockedError:
        own.release()
        kept = _keep(root, final)
        raise LockedError(f"{final} is open for writing by another process, so the new collection was not put in its "
                          f"place: {_kept_text(kept, root, final)} once the other writer is done") from None
    try:
        old = _swap(root, final)
    except OSError as e:
        own.release()
        kept = _keep(root, final)
        raise write_error(e, "the swap of the new collection into place", final,
                          outcome=_kept_text(kept, root, final)) from e
    finally:
        own.release()
        if target is not None:
            target.release()
    M.fsync_dir(os.path.dirname(final))
    if old is not None and os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        _unlink(old)
