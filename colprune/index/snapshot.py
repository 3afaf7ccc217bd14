"""What a reader holds: one committed version of a collection, and how it is opened.

A :class:`Snapshot` is the manifest of one version with its open segments, their deletion
masks, the global positions (``bases``), the id tables and the first-stage summaries read so
far. Search and the writers take one as an argument. :func:`load_collection` opens a format-3
manifest (retrying when a writer's garbage collection removes the newest version under it);
:func:`open_legacy` opens a version 1/2 file as a one-segment snapshot.

Positions: every stored document has a *global position* (segments in manifest order, rows in
segment order); ``bases[si]`` is the position of segment ``si``'s first row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..errors import ColpruneError, CorruptionError, FormatError, InvalidInputError
from ..kernels import dequantize_int8, int8_corrections
from . import layout as L
from . import manifest as M
from .codebook import Codebook, read_codebook
from .codecs import decode_pages, decode_vectors, int8_summary
from .files import check_folder, json_depth, open_h5
from .filters import filter_mask
from .records import Hit, Page
from .segment import LegacySegment, Segment
from .segment_checks import check_agrees, check_no_twins, int_attr, str_attr

__all__ = ["Snapshot", "load_collection", "open_legacy", "DEFAULT_MEMORY_BUDGET", "check_agrees", "check_no_twins"]

#: bytes of vectors exact search reads per block (``memory_budget``)
DEFAULT_MEMORY_BUDGET = 256 << 20


class Snapshot:
    """One committed version of a collection, as a reader holds it.

    Attributes
    ----------
    manifest : dict
        The manifest body (settings, segments, pruner record, skipped sources).
    segments : list of Segment
    deleted : list of (n_docs,) bool arrays or None, one per segment (True = deleted)
    bases : (len(segments) + 1,) int64
        Cumulative document counts: segment ``si`` holds positions ``bases[si]:bases[si + 1]``.
    memory_budget : int
        Bytes of vectors search reads at a time by default.
    codebook : Codebook or None
        The residual codecs' :class:`~colprune.index.codebook.Codebook` the manifest names (None: other
        codecs, or a residual collection nothing was written to yet).

    A snapshot stays readable while the :class:`~colprune.index.Index` that made it shows it;
    after a commit, :meth:`~colprune.index.Index.refresh` or ``close`` its dropped segments are closed.
    """

    def __init__(self, manifest: dict[str, Any], segments: list[Segment], deleted: list[np.ndarray | None], *,
                 previous: Snapshot | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 codebook: Codebook | None = None) -> None:
        self.manifest = manifest
        self.codebook = codebook
        self.segments = list(segments)
        self.deleted = list(deleted)
        self.memory_budget = int(memory_budget)
        self.bases = np.zeros(len(segments) + 1, np.int64)
        np.cumsum([s.n_docs for s in segments], out=self.bases[1:])
        self._rows: dict[str, tuple[int, int]] | None = None
        self._live_ids: list[str] | None = None
        self._unique = len(segments) <= 1  # one segment's ids are checked distinct when it decodes them
        self._summary_cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        if previous is not None:
            self._extend(previous)
        self._n_live = int(sum(s.n_docs - (0 if d is None else int(d.sum())) for s, d in zip(segments, deleted)))
        self._n_live_vectors = int(sum(
            s.n_vectors if d is None else int(s.n_vectors - np.diff(s.offsets)[d].sum()) for s, d in zip(segments, deleted)))

    def _extend(self, previous: Snapshot) -> None:
        # a commit that only appended segments takes over the previous id tables and extends them
        # (a build committing every 32 pages into a million-page collection would rebuild 1M ids each time)
        n_old = len(previous.segments)
        appended = (self.segments[:n_old] == previous.segments
                    and all(a is b or (a is not None and b is not None and np.array_equal(a, b))
                            for a, b in zip(self.deleted, previous.deleted)))
        if not appended:
            return
        if previous._rows is not None:
            self._rows, previous._rows = self._add_rows(previous._rows, n_old), None
            self._unique = True
        if previous._live_ids is not None:
            self._live_ids, previous._live_ids = self._add_live_ids(previous._live_ids, n_old), None

    # -- settings --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def codec(self) -> str:
        return self.manifest["codec"]

    @property
    def has_rerank(self) -> bool:
        return bool(self.manifest["rerank"])

    @property
    def merged(self) -> bool:
        return bool(self.manifest["merged"])

    @property
    def signal_names(self) -> list[str]:
        return list(self.manifest["signals"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def summary_centroids(self) -> int:
        """Centroids per page of the persisted first-stage summaries (0: none)."""
        return int(self.manifest.get("summary_centroids") or 0)

    @property
    def bytes_per_vector(self) -> int:
        return L.stored_bytes(self.codec, self.dim)

    # -- live pages and ids ----------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_live

    @property
    def n_vectors(self) -> int:
        """Stored vectors over all live pages."""
        return self._n_live_vectors

    def live(self, si: int) -> np.ndarray | None:
        """Segment ``si``'s live rows as a bool mask, or None when none is deleted."""
        return None if self.deleted[si] is None else ~self.deleted[si]

    def _add_rows(self, rows: dict[str, tuple[int, int]], start: int) -> dict[str, tuple[int, int]]:
        want = len(rows)
        for si in range(start, len(self.segments)):
            dele = self.deleted[si]
            for r, doc_id in enumerate(self.segments[si].ids):
                if dele is None or not dele[r]:
                    rows[doc_id] = (si, r)
            want += self.segments[si].n_docs - (0 if dele is None else int(dele.sum()))
        if len(rows) != want:  # an id live twice: a later row took an earlier one's place
            raise self._duplicate()
        return rows

    def _add_live_ids(self, out: list[str], start: int) -> list[str]:
        for si in range(start, len(self.segments)):
            dele = self.deleted[si]
            ids = self.segments[si].ids
            out.extend(ids if dele is None else [ids[r] for r in np.flatnonzero(~dele)])
        return out

    def _duplicate(self) -> CorruptionError:
        """The error for a page id live twice, naming it and the two segments holding it."""
        where: dict[str, int] = {}
        for si, seg in enumerate(self.segments):
            dele = self.deleted[si]
            for r, doc_id in enumerate(seg.ids):
                if dele is not None and dele[r]:
                    continue
                if doc_id in where:
                    return CorruptionError(f"page id {doc_id!r} is live in {self.segments[where[doc_id]].path} and in "
                                           f"{seg.path}; ids are unique over a collection's live pages (damaged or crafted)")
                where[doc_id] = si
        return CorruptionError("a page id is live twice")

    def check_unique_ids(self) -> None:
        """Raise :class:`CorruptionError` unless page ids are unique over the live pages of every segment.

        Ids are read lazily: this runs where they are first needed together (the id table, the
        list of ids, a search hit, ``verify``) and once per snapshot; each segment's own ids are
        checked distinct when it decodes them.
        """
        if self._unique:
            return
        if self._rows is None:
            live = self._live_ids if self._live_ids is not None else self._add_live_ids([], 0)
            if len(set(live)) != len(live):
                raise self._duplicate()
        self._unique = True

    def id_rows(self) -> dict[str, tuple[int, int]]:
        """``id -> (segment, row)`` of every live page (built once; do not modify)."""
        if self._rows is None:
            self._rows = self._add_rows({}, 0)
            self._unique = True
        return self._rows

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.id_rows()

    @property
    def ids(self) -> list[str]:
        """Live page ids, in commit order."""
        if self._live_ids is None:
            self._live_ids = self._add_live_ids([], 0)
        self.check_unique_ids()
        return list(self._live_ids)

    def positions(self) -> np.ndarray:
        """Global positions of the live pages, in order: ``(n_live,)`` int64."""
        parts = [self.bases[si] + (np.arange(s.n_docs) if self.deleted[si] is None else np.flatnonzero(~self.deleted[si]))
                 for si, s in enumerate(self.segments)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def locate(self, pos: int) -> tuple[Segment, int]:
        """The segment holding global position ``pos``, and the row in it."""
        si = int(np.searchsorted(self.bases, pos, side="right")) - 1
        return self.segments[si], int(pos - self.bases[si])

    def hit(self, pos: int, score: float) -> Hit:
        """The :class:`Hit` of the page at global position ``pos``."""
        self.check_unique_ids()
        seg, r = self.locate(pos)
        return Hit(seg.ids[r], score, seg.metadata(r))

    # -- pages -----------------------------------------------------------------------------

    def pages(self, si: int, lo: int, hi: int) -> list[Page]:
        """Documents ``lo..hi`` of segment ``si`` (deleted ones included), decoded."""
        return decode_pages(self.manifest, self.segments[si], lo, hi, self.codebook)

    def iter_pages(self, batch_size: int = 1024) -> Iterator[Page]:
        """Every live page in commit order, read ``batch_size`` documents at a time."""
        for si, seg in enumerate(self.segments):
            dele = self.deleted[si]
            for lo in range(0, seg.n_docs, batch_size):
                hi = min(lo + batch_size, seg.n_docs)
                for p, keep in zip(self.pages(si, lo, hi), np.ones(hi - lo, bool) if dele is None else ~dele[lo:hi]):
                    if keep:
                        yield p

    # -- filters and summaries -------------------------------------------------------------

    def filter_fields(self) -> set[str]:
        """Metadata fields ``where`` filters can name."""
        known: set[str] = set()
        for seg in self.segments:
            known |= set(seg.filter_columns())
        return known

    def masks(self, where: dict[str, Any] | None) -> list[np.ndarray | None]:
        """Per segment, the live pages matching ``where`` as a bool mask (None: every row of the segment)."""
        masks = [self.live(si) for si in range(len(self.segments))]
        if where is None:
            return masks
        if not isinstance(where, dict) or not where:
            raise InvalidInputError(f"where must be a non-empty dict of metadata field -> condition, got {where!r}")
        known = self.filter_fields()
        out = []
        for si, seg in enumerate(self.segments):
            m = filter_mask(seg, where, known)
            out.append(m if masks[si] is None else m & masks[si])
        return out

    def resident_summary(self, n_centroids: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The first-stage summary of every stored page, int8, in memory (read once per snapshot).

        Returns ``(codes (C, dim) int8, scales (C,) float32, corrections (C,), offsets (n_stored + 1,))``
        indexed by global position (deleted pages included). Segments without a stored summary
        get one computed here with ``n_centroids`` (default 4) centroids per page.
        """
        if self._summary_cache is None:
            parts, scales, counts = [], [], []
            for seg in self.segments:
                s = seg.summary()
                if s is None:  # older files and summary-less segments: computed here, not stored
                    data = seg.read_vectors(0, seg.n_docs)
                    vec = decode_vectors(self.manifest, data, seg, 0, seg.n_docs, self.codebook)
                    codes, sc, cnt = int8_summary(vec, np.diff(seg.offsets), n_centroids or 4)
                else:
                    codes, sc, cnt = s[0], s[1], np.diff(s[2])
                parts.append(codes)
                scales.append(sc)
                counts.append(cnt)
            codes = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.int8)
            off = np.zeros(int(self.bases[-1]) + 1, np.int64)
            if counts:
                np.cumsum(np.concatenate(counts), out=off[1:])
            self._summary_cache = (codes, np.concatenate(scales) if scales else np.zeros(0, np.float32),
                                   int8_corrections(codes), off)
            for seg in self.segments:  # the concatenation is the copy kept (0.54 GB at 1M pages, not twice that)
                seg.forget_summary()
        return self._summary_cache

    def live_summary(self, n_centroids: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live pages' first-stage centroids, dequantised: ``(centroids (C, dim) float32, offsets (n_live + 1,))``."""
        codes, scales, _, off = self.resident_summary(n_centroids)
        pos = self.positions()
        lengths = off[pos + 1] - off[pos]
        rows = np.concatenate([np.arange(off[p], off[p + 1]) for p in pos]) if len(pos) else np.zeros(0, np.int64)
        new_off = np.zeros(len(pos) + 1, np.int64)
        np.cumsum(lengths, out=new_off[1:])
        return dequantize_int8(codes[rows], scales[rows]), new_off


# -- opening ---------------------------------------------------------------------------------

def open_legacy(path: str, mode: str) -> tuple[dict[str, Any], LegacySegment, int, dict[str, Any]]:
    """A version 1/2 file as ``(manifest, segment, format_version, attrs)``; read-only (``mode="r"``).

    ``path`` (which the user named, so it may be a symbolic link) must be a regular file.
    """
    f, fd, size = open_h5(path, follow=True)
    try:
        version = L.check_file(f, path)
        if version not in L.FILE_VERSIONS:
            raise FormatError(f"{path}: format version {version} is a collection directory, not a single file")
        codec = L.codec_of(f, version, path)
        dim = int_attr(f, L.A_DIM, 1, L.MAX_DIM, path)
        if mode != "r":
            raise FormatError(
                f"{path} uses format version {version}; colprune reads it but writes only version {L.FORMAT_VERSION} "
                f"collections: convert it with `colprune upgrade {path} NEW` (or Index.upgrade(path, new))"
            )
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        f.close()
        os.close(fd)
        if isinstance(e, (ColpruneError, FileNotFoundError)):
            raise
        raise CorruptionError(f"{path}: unreadable or damaged ({type(e).__name__}: {e})") from None
    except BaseException:
        f.close()
        os.close(fd)
        raise
    seg = LegacySegment(path, f, version, dim, codec, fd=fd, file_size=size)
    try:
        pruner, attrs = _legacy_header(f, path)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        seg.close()
        if isinstance(e, ColpruneError):
            raise
        raise CorruptionError(f"{path}: unreadable or damaged ({type(e).__name__}: {e})") from None
    manifest = {
        "dim": dim, "codec": codec, "rerank": seg.has_rerank, "signals": seg.signal_names, "merged": seg.merged,
        "summary_centroids": 0, "pruner": pruner, "encoder": attrs.get(L.A_ENCODER, ""),
        "version": 0, "segments": [{"name": os.path.basename(path), "n_docs": seg.n_docs, "n_vectors": seg.n_vectors}],
        "skipped": {}, "created": attrs.get(L.A_CREATED, ""), "library_version": attrs.get(L.A_LIBRARY_VERSION, ""),
    }
    return manifest, seg, version, attrs


def _legacy_header(f, path: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A version 1/2 file's pruner record and root attributes: single strings and numbers (others are ignored,
    as the format asks of attributes a reader does not know)."""
    attrs: dict[str, Any] = {}
    for key in f.attrs:
        aid = f.attrs.get_id(key)
        if aid.shape == () and h5py.check_string_dtype(aid.dtype) is not None:
            attrs[key] = str_attr(f, key, path, 1 << 20)
        elif aid.shape == () and aid.dtype.kind in "biuf":
            attrs[key] = f.attrs[key].item()
    raw = attrs.get(L.A_PRUNER, "")
    if not raw:
        return None, attrs
    pruner = None
    try:
        if json_depth(raw.encode(), M.MAX_JSON_DEPTH):
            pruner = json.loads(raw)
    except (ValueError, RecursionError):
        pass
    if not (isinstance(pruner, dict) and isinstance(pruner.get("name"), str) and isinstance(pruner.get("params", {}), dict)):
        raise CorruptionError(f"{path}: its pruner record is not a JSON {{name, params}} object")
    return pruner, attrs


def _close_new(segments: list[Segment], have: list[Segment]) -> None:
    for seg in segments:
        if seg not in have:
            seg.close()


def _open_segments(root: str, body: dict[str, Any], have: list[Segment], codebook: Codebook | None) -> list[Segment]:
    # segments already open stay open: files are immutable, a name is one content
    by_name = {os.path.basename(seg.path): seg for seg in have}
    segments: list[Segment] = []
    book = None if codebook is None else (codebook.name, codebook.n_centroids)
    try:
        for s in body["segments"]:
            old = by_name.get(s["name"])
            if old is not None and old.checks_record_hash == s["checksum"] and old.codebook_name == (book or (None,))[0]:
                segments.append(old)
            else:
                segments.append(Segment(os.path.join(root, L.SEGMENTS, s["name"]), s["checksum"], body["dim"], body["codec"],
                                        book))
    except BaseException:
        _close_new(segments, have)
        raise
    return segments


def _codebook(root: str, body: dict[str, Any], have: Codebook | None) -> Codebook | None:
    """The codebook ``body`` names (``have`` when it is that one: a codebook file is immutable), read and checked."""
    entry = body.get("codebook")
    if entry is None:
        return None
    if have is not None and (have.name, have.checksum) == (entry["name"], entry["checksum"]):
        return have
    return read_codebook(root, entry, int(body["dim"]), body["codec"])


def load_collection(root: str, version: int | None, have: list[Segment], have_codebook: Codebook | None = None,
                    ) -> tuple[int, dict[str, Any], list[Segment], list, Codebook | None]:
    """Open manifest ``version`` (default: the newest) of the collection at ``root``.

    Returns ``(format_version, manifest, segments, deleted, codebook)``; segments in ``have`` (already open)
    and ``have_codebook`` are reused when the manifest names them, new ones are opened (and closed again on failure).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no index at {root}")
    if not M.is_collection(root):
        if os.path.lexists(os.path.join(root, L.MARKER)):
            M.read_marker(root)  # a marker that is not a regular file: say what it is
        raise FormatError(f"{root} is a folder but not a colprune collection (no {L.MARKER} file); "
                          "build one with colprune.Index.create or `colprune build`")
    format_version = M.read_marker(root)
    for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.CODEBOOKS):
        check_folder(os.path.join(root, sub))  # a folder (or absent), not a link to one elsewhere
    attempts = 20
    for attempt in range(attempts):  # a writer's garbage collection may remove an old version under us
        try:
            body = M.read_manifest(root, version)
        except FormatError as e:
            if version is None and attempt < attempts - 1 and not isinstance(e, CorruptionError):
                continue  # the newest manifest was collected between listing and reading it
            raise
        try:
            codebook = _codebook(root, body, have_codebook)
        except M.MissingFileError:
            if version is None and attempt < attempts - 1 and M.latest_version(root) != body["version"]:
                continue  # collected by a retrain after a newer commit: read the newest version
            raise
        try:
            segments = _open_segments(root, body, have, codebook)
        except FileNotFoundError:
            if version is None and attempt < attempts - 1 and M.latest_version(root) != body["version"]:
                continue
            raise CorruptionError(f"{root}: a segment named by manifest {body['version']} is missing") from None
        try:
            deleted = []
            for s, seg in zip(body["segments"], segments):
                check_agrees(body, s, seg)
                deleted.append(M.read_deletes(root, s["deletes"], seg.n_docs) if s.get("deletes") else None)
            check_no_twins(segments, deleted)
        except M.MissingFileError:
            _close_new(segments, have)
            if version is None and attempt < attempts - 1 and M.latest_version(root) != body["version"]:
                continue  # a deletion file collected after a newer commit: read the newest version
            raise
        except BaseException:
            _close_new(segments, have)
            raise
        break
    return format_version, body, segments, deleted, codebook
