"""The multi-vector index (format version 3): a collection directory of immutable segments.

``Index`` is the public API: create/open, add, upsert, delete, compact, search (exact,
streaming with bounded memory; two-stage over persisted summaries; metadata filters),
derive, verify. Each change is one commit: new segment and deletion files are written and
made durable first, then one manifest naming the live state is renamed into place. Readers
open one manifest (a consistent snapshot) and are never blocked by the writer; one writer
at a time holds the collection's lock. Version 1 and 2 files (one HDF5 file each) open
read-only through the same API. See ``docs/format.md``.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import CorruptionError, DuplicateIdError, FormatError, InvalidInputError, UnknownIdError
from ..kernels import (
    as_query_batch,
    dequantize_int8,
    int8_corrections,
    pack_binary,
    page_centroids,
    quantize_int8,
)
from ..pruning import NoPruning, PrunedPage, Pruner, check_page, make_pruner
from ..kernels.checks import first_nonfinite_row
from ..pruning.base import as_float_array
from . import layout as L
from . import manifest as M
from .search import exact_search, filter_mask, gather_docs, two_stage_search
from .segment import Block, LegacySegment, Segment, SegmentWriter, open_h5_safely

__all__ = ["Hit", "Index", "Page", "codec_bytes", "MAX_ID_BYTES", "DEFAULT_MEMORY_BUDGET"]

_NO_GRID = (-1, -1)
#: longest accepted page id, in UTF-8 bytes
MAX_ID_BYTES = 1024
#: bytes of vectors exact search reads per block (``memory_budget``)
DEFAULT_MEMORY_BUDGET = 256 << 20
#: commits leave at most this many segments under ``SMALL_SEGMENT_DOCS`` before merging them
MAX_SMALL_SEGMENTS = 8
SMALL_SEGMENT_DOCS = 4096
#: largest accepted L2 norm of a query token vector (keeps every float32 score finite)
MAX_QUERY_NORM = 1e12


class _HitBase(NamedTuple):
    id: str
    score: float


class Hit(_HitBase):
    """One search result: ``(id, score)``, and the page's ``metadata`` dict.

    Compares equal to the plain tuple ``(id, score)``.
    """

    metadata: dict[str, Any]

    def __new__(cls, id: str, score: float, metadata: dict[str, Any] | None = None):  # noqa: A002
        self = super().__new__(cls, id, score)
        self.metadata = {} if metadata is None else metadata
        return self


@dataclass(frozen=True)
class Page:
    """One stored page.

    Attributes
    ----------
    id : str
    vectors : (n_kept, dim) float16 or float32, as stored (int8 dequantised; binary from its
        float16 rerank copy, or as ±1 signs)
    positions : (n_kept,) int64
        Row of each kept vector in the encoder's output.
    importance : (n_kept,) float32
        NaN where the page was added without importance.
    patch_mask : (n_kept,) bool
        True for image-patch rows, False for special/prompt tokens.
    n_original : int
        Vectors the page had before pruning.
    grid : (rows, cols) or None
    metadata : dict
    signals : dict of name -> (n_kept,) float32
    covers : tuple of (k_i,) int64 arrays, or None
        Merged indexes: the encoder-output rows each stored vector stands for.
    """

    id: str
    vectors: np.ndarray
    positions: np.ndarray
    importance: np.ndarray
    patch_mask: np.ndarray
    n_original: int
    grid: tuple[int, int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    covers: tuple[np.ndarray, ...] | None = None

    @property
    def n_kept(self) -> int:
        return int(self.vectors.shape[0])


def blend_signals(signals: dict[str, np.ndarray], spec: str | dict[str, float]) -> np.ndarray:
    """One stored signal by name, or a weighted sum of signals each min-max normalised over the page."""
    if isinstance(spec, str):
        return signals[spec]
    out = np.zeros(len(next(iter(signals.values()))), np.float64)
    for name, w in spec.items():
        v = signals[name].astype(np.float64)
        span = v.max() - v.min()
        out += float(w) * ((v - v.min()) / span if span > 0 else np.zeros_like(v))
    return out


def _kept_signals(signals: dict[str, np.ndarray], page: PrunedPage) -> dict[str, np.ndarray]:
    # signals follow their rows; a merged vector gets the mean over the rows it merged
    if page.covers is None:
        return {k: v[page.positions] for k, v in signals.items()}
    return {k: np.array([v[c].mean() for c in page.covers], np.float32) for k, v in signals.items()}


def codec_bytes(codec: str, dim: int) -> int:
    """Stored bytes per vector: float16 2·dim, float32 4·dim, int8 dim + 4 (scale), binary dim/8 (in 64-bit words)."""
    return {"float16": 2 * dim, "float32": 4 * dim, "int8": dim + 4, "binary": (dim + 63) // 64 * 8}[codec]


def _check_grid(grid, n_patch: int, what: str) -> None:
    try:
        rows, cols = (int(x) for x in grid)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: grid must be (rows, cols), got {grid!r}") from None
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"{what}: grid {rows}x{cols} must have positive sides")
    if rows * cols != n_patch:
        raise InvalidInputError(f"{what}: grid {rows}x{cols} has {rows * cols} cells but the page has {n_patch} patch rows")


def check_id(doc_id: object) -> str:
    """A page id must be a non-empty string of at most ``MAX_ID_BYTES`` UTF-8 bytes, without NUL or line breaks."""
    if not isinstance(doc_id, str):
        raise InvalidInputError(f"document ids must be strings, got {type(doc_id).__name__} {doc_id!r}")
    if not doc_id:
        raise InvalidInputError("empty document id ''")
    try:
        n = len(doc_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInputError(f"document id {doc_id!r} cannot be encoded as UTF-8 (a lone surrogate?)") from None
    if n > MAX_ID_BYTES:
        raise InvalidInputError(f"document id {doc_id[:40]!r}... is {n} bytes; the limit is {MAX_ID_BYTES}")
    if any(c in doc_id for c in "\x00\n\r"):
        raise InvalidInputError(f"document id {doc_id!r} contains NUL or a line break")
    return doc_id


def check_queries(queries, dim: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Queries as CSR float32 (:func:`~colprune.kernels.as_query_batch`), refused with
    :class:`InvalidInputError` when malformed or so large that scores would overflow float32."""
    try:
        qv, qoff, single = as_query_batch(queries, dim=dim)
    except InvalidInputError:
        raise
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    norms = np.sqrt(np.einsum("ij,ij->i", qv.astype(np.float64), qv.astype(np.float64)))
    if norms.size and norms.max() > MAX_QUERY_NORM:
        raise InvalidInputError(f"query token vectors must have norms <= {MAX_QUERY_NORM:g} (got {norms.max():.3g}): "
                                "scores would overflow float32; scale the query down (embeddings are about unit length)")
    return qv, qoff, single


def check_count(value: object, name: str) -> int:
    """An integer >= 1 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _floating(x, what: str) -> None:
    dt = getattr(x, "dtype", None)
    if dt is None:
        return
    kind = np.dtype(str(dt).replace("torch.", "")).kind if not isinstance(dt, np.dtype) else dt.kind
    if kind != "f":
        raise InvalidInputError(f"{what}: embeddings must be floating-point, got dtype {dt}")


class Index:
    """A multi-vector index: a collection directory of immutable segments (format version 3).

    Use :meth:`create` or :meth:`open`, preferably as a context manager. Every change
    (:meth:`add`, :meth:`upsert`, :meth:`delete`, :meth:`compact`) is crash-safe: it is
    visible exactly when its manifest is committed, and a process killed before that leaves
    the previous state. Readers see one committed snapshot and are never blocked by a writer;
    one writer at a time (a second one gets :class:`~colprune.errors.LockedError`).

    Examples
    --------
    >>> with Index.create("pages.cpx", dim=128) as index:           # doctest: +SKIP
    ...     index.add(ids, embeddings, importance=imp, pruner=AdaptiveThreshold(-0.25))
    >>> Index.open("pages.cpx").search(query, k=10)                 # doctest: +SKIP
    """

    def __init__(self, path: str, mode: str, *, version: int | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 _final_path: str | None = None, _replace: str | None = None) -> None:
        # Use Index.create / Index.open.
        self.path = _final_path or path
        self._root = path
        self.mode = mode
        self.memory_budget = int(memory_budget)
        self._replace = _replace
        self._lock: M.WriterLock | None = None
        self._segments: list[Segment] = []
        self._closed = False
        if os.path.isfile(path):
            self._open_legacy(path)
        else:
            if mode == "a":
                if not M.is_collection(path):
                    raise FormatError(f"{path} is a folder but not a colprune collection (no {L.MARKER} file)")
                for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.TMP):  # git and some copies drop empty folders
                    os.makedirs(os.path.join(path, sub), exist_ok=True)
                self._lock = M.WriterLock(path)
                M.clear_tmp(path)
            try:
                self._load_manifest(version)
            except BaseException:
                self.close()
                raise

    # -- opening -----------------------------------------------------------------------

    def _open_legacy(self, path: str) -> None:
        f = open_h5_safely(path)
        try:
            version = L.check_file(f, path)
            if version not in L.FILE_VERSIONS:
                raise FormatError(f"{path}: format version {version} is a collection directory, not a single file")
            codec = L.codec_of(f, version, path)
            dim = int(f.attrs[L.A_DIM])
        except BaseException:
            f.close()
            raise
        if self.mode != "r":
            f.close()
            raise FormatError(
                f"{path} uses format version {version}; colprune reads it but writes only version {L.FORMAT_VERSION} "
                f"collections: convert it with `colprune upgrade {path} NEW` (or Index.upgrade(path, new))"
            )
        seg = LegacySegment(path, f, version, dim, codec)
        self.format_version = version
        self._manifest = {
            "dim": dim, "codec": codec, "rerank": seg.has_rerank, "signals": seg.signal_names, "merged": seg.merged,
            "summary_centroids": 0, "pruner": L.read_pruner(f), "encoder": L.text_attr(f, L.A_ENCODER),
            "version": 0, "segments": [{"name": os.path.basename(path), "n_docs": seg.n_docs, "n_vectors": seg.n_vectors}],
            "skipped": {}, "created": L.text_attr(f, L.A_CREATED), "library_version": L.text_attr(f, L.A_LIBRARY_VERSION),
        }
        self._legacy_attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                              for k, v in f.attrs.items()}
        self._set_segments([seg], [None])

    def _load_manifest(self, version: int | None) -> None:
        root = self._root
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no index at {root}")
        if not M.is_collection(root):
            raise FormatError(f"{root} is a folder but not a colprune collection (no {L.MARKER} file); "
                              "build one with colprune.Index.create or `colprune build`")
        self.format_version = M.read_marker(root)
        attempts = 20
        for attempt in range(attempts):  # a writer's garbage collection may remove an old version under us
            try:
                body = M.read_manifest(root, version)
            except FormatError as e:
                if version is None and attempt < attempts - 1 and not isinstance(e, CorruptionError):
                    continue  # the newest manifest was collected between listing and reading it
                raise
            segments: list[Segment] = []
            # segments this index already has open stay open: files are immutable, a name is one content
            have = {os.path.basename(seg.path): seg for seg in self._segments}
            try:
                for s in body["segments"]:
                    old = have.get(s["name"])
                    if old is not None and old.checks_record_hash == s["checksum"]:
                        segments.append(old)
                    else:
                        segments.append(Segment(os.path.join(root, L.SEGMENTS, s["name"]), s["checksum"],
                                                body["dim"], body["codec"]))
            except FileNotFoundError:
                for seg in segments:
                    if seg not in self._segments:
                        seg.close()
                if version is None and attempt < attempts - 1 and M.latest_version(root) != body["version"]:
                    continue
                raise CorruptionError(f"{root}: a segment named by manifest {body['version']} is missing") from None
            except BaseException:
                for seg in segments:
                    if seg not in self._segments:
                        seg.close()
                raise
            break
        try:
            deleted = []
            for s, seg in zip(body["segments"], segments):
                if (seg.n_docs, seg.n_vectors) != (int(s["n_docs"]), int(s["n_vectors"])):
                    raise CorruptionError(f"{seg.path}: holds {seg.n_docs} docs / {seg.n_vectors} vectors, the manifest says "
                                          f"{s['n_docs']} / {s['n_vectors']}")
                deleted.append(M.read_deletes(root, s["deletes"], seg.n_docs) if s.get("deletes") else None)
        except BaseException:
            for seg in segments:
                if seg not in self._segments:
                    seg.close()
            raise
        self._manifest = body
        self._set_segments(segments, deleted)

    def _set_segments(self, segments: list[Segment], deleted: list[np.ndarray | None]) -> None:
        for old in self._segments:
            if old not in segments:
                old.close()
        n_old = len(self._segments)
        # a commit that only appended segments extends the id tables instead of rebuilding them
        # (a build committing every 32 pages into a million-page collection would rebuild 1M ids each time)
        appended = (getattr(self, "_rows", None) is not None and segments[:n_old] == self._segments
                    and all(a is b or (a is not None and b is not None and np.array_equal(a, b))
                            for a, b in zip(deleted, self._deleted)))
        rows = self._rows if appended else None
        live_ids = self._live_ids if appended else None
        self._segments = segments
        self._deleted = deleted
        self._bases = np.zeros(len(segments) + 1, np.int64)
        np.cumsum([s.n_docs for s in segments], out=self._bases[1:])
        self._live_ids: list[str] | None = None if live_ids is None else self._add_live_ids(live_ids, n_old)
        self._rows: dict[str, tuple[int, int]] | None = None if rows is None else self._add_rows(rows, n_old)
        self._summary_cache = None
        self._n_live = int(sum(s.n_docs - (0 if d is None else int(d.sum())) for s, d in zip(segments, deleted)))
        self._n_live_vectors = int(sum(
            s.n_vectors if d is None else int(s.n_vectors - np.diff(s.offsets)[d].sum()) for s, d in zip(segments, deleted)))

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        dim: int,
        dtype: str = "float16",
        *,
        encoder: str | None = None,
        overwrite: bool = False,
        rerank: bool = True,
        signals: Sequence[str] = (),
        merged: bool = False,
        summary_centroids: int = 4,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        chunk_bytes: int | None = None,
    ) -> Index:
        """Create an empty collection (a directory), open for writing.

        Parameters
        ----------
        path : the collection directory to create; refused if it exists unless ``overwrite``.
            With ``overwrite``, the new collection is built beside the old one and renamed into
            place when it is closed: the old one stays intact (and readable) until then, and an
            index another process is writing is never replaced (``LockedError``).
        dim : embedding dimension (128 for ColPali/ColQwen2).
        dtype : the vector codec: ``"float16"`` (default), ``"float32"``, ``"int8"`` (per-vector
            scale) or ``"binary"`` (sign bits).
        rerank : for ``"binary"``: also keep float16 vectors to rerank the Hamming shortlist
            exactly (costs the float16 bytes on disk; ``False`` drops them).
        signals : names of extra per-vector importance signals to store.
        merged : the index will hold merged vectors (mergers such as ``ward``).
        summary_centroids : centroids per page in the persisted first-stage summary of
            two-stage search (float codecs; 0 = none).
        encoder : name or path of the model that made the embeddings (shown, never loaded
            without the user's say).
        memory_budget : bytes of vectors exact search holds at a time.
        chunk_bytes : ignored (format 2 setting), kept for compatibility.
        """
        path = os.path.abspath(os.fspath(path))
        if dtype not in L.CODECS:
            raise InvalidInputError(f"dtype must be one of {sorted(L.CODECS)}, got {dtype!r}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) < 1:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        for name in signals:
            if not isinstance(name, str) or not name or "/" in name:
                raise InvalidInputError(f"bad signal name {name!r}")
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
            body = M.new_manifest(int(dim), dtype, encoder=encoder, rerank=rerank, signals=signals, merged=merged,
                                  summary_centroids=summary_centroids if dtype in ("float16", "float32") else 0)
            M.write_manifest(tmp, body)
            M.atomic_write(tmp, L.MARKER, json.dumps({"format": L.COLLECTION_FORMAT, "format_version": L.FORMAT_VERSION}).encode())
            M.fsync_dir(tmp)
            if not exists:
                os.rename(tmp, path)
                M.fsync_dir(parent)
                return cls(path, "a", memory_budget=memory_budget)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(tmp, "a", memory_budget=memory_budget, _final_path=path, _replace=path)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, version: int | None = None,
             memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Index:
        """Open a collection (or a version 1/2 file, read-only).

        ``mode="r"`` reads the newest committed version (or ``version=``), a snapshot that
        later commits do not change (:meth:`refresh` moves to the newest); ``"a"`` also
        writes, holding the writer lock.
        """
        if mode not in ("r", "a"):
            raise InvalidInputError(f"mode must be 'r' or 'a', got {mode!r}")
        path = os.path.abspath(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"no index at {path}")
        if version is not None and mode == "a":
            raise InvalidInputError("version= opens an older snapshot read-only; use mode='r'")
        return cls(path, mode, version=version, memory_budget=memory_budget)

    def refresh(self) -> None:
        """Move a reader to the newest committed version."""
        if self.format_version in L.FILE_VERSIONS:
            return
        self._load_manifest(None)

    def close(self) -> None:
        """Close the index; a collection created with ``overwrite`` replaces the old one now."""
        if self._closed:
            return
        self._closed = True
        for seg in self._segments:
            seg.close()
        self._segments = []
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._replace is not None:
            final, self._replace = self._replace, None
            parent = os.path.dirname(final)
            old = os.path.join(parent, M.unique_name(f".{os.path.basename(final)}.old"))
            if os.path.lexists(final):
                if os.path.isdir(final) and M.is_collection(final):
                    M.WriterLock(final).release()
                if M.exchange(self._root, final):  # one atomic step: the new index in place, the old one aside
                    old = self._root
                else:
                    os.rename(final, old)
                    os.rename(self._root, final)
            else:
                os.rename(self._root, final)
            M.fsync_dir(parent)
            if os.path.isdir(old):
                shutil.rmtree(old, ignore_errors=True)
            elif os.path.lexists(old):
                os.unlink(old)
            self._root = final

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if not self._closed and self._replace is None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"Index({self.path!r}, mode={self.mode!r}, docs={len(self)}, vectors={self.n_vectors}, "
                f"dim={self.dim}, codec={self.codec}, pruner={self.pruner!r})")

    # -- header ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self._manifest["dim"])

    @property
    def codec(self) -> str:
        """The vector codec (``float16``, ``float32``, ``int8`` or ``binary``)."""
        return self._manifest["codec"]

    dtype = codec

    @property
    def has_rerank(self) -> bool:
        return bool(self._manifest["rerank"])

    @property
    def signal_names(self) -> list[str]:
        return list(self._manifest["signals"])

    @property
    def merged(self) -> bool:
        return bool(self._manifest["merged"])

    @property
    def version(self) -> int:
        """The committed version this index shows (0 for version 1/2 files)."""
        return int(self._manifest["version"])

    @property
    def pruner_config(self) -> dict[str, Any] | None:
        """The stored ``{"name", "params"}`` record of the pruner (with ``derived_from`` if any)."""
        return self._manifest.get("pruner")

    @property
    def pruner(self) -> Pruner | None:
        cfg = self.pruner_config
        return None if cfg is None else make_pruner(cfg)

    @property
    def encoder(self) -> str | None:
        """Name or path of the encoder recorded at build time: shown to users, never loaded by colprune on its own."""
        return self._manifest.get("encoder") or None

    @property
    def attrs(self) -> dict[str, Any]:
        if self.format_version in L.FILE_VERSIONS:
            return dict(self._legacy_attrs)
        m = self._manifest
        return {"format": L.COLLECTION_FORMAT, "format_version": self.format_version, "dim": m["dim"], "codec": m["codec"],
                "dtype": np.dtype(L.CODECS[m["codec"]]).name, "pruner": json.dumps(m["pruner"]) if m["pruner"] else "",
                "encoder": m["encoder"], "library_version": m["library_version"], "created": m["created"],
                "version": m["version"]}

    @property
    def bytes_per_vector(self) -> int:
        return codec_bytes(self.codec, self.dim)

    @property
    def skipped(self) -> dict[str, str]:
        """Sources a build could not embed, with the reason (recorded by :meth:`record_skipped`)."""
        return dict(self._manifest.get("skipped", {}))

    # -- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_live

    @property
    def n_vectors(self) -> int:
        """Stored vectors over all live pages."""
        return self._n_live_vectors

    def _live(self, si: int) -> np.ndarray | None:
        return None if self._deleted[si] is None else ~self._deleted[si]

    def _add_rows(self, rows: dict[str, tuple[int, int]], start: int) -> dict[str, tuple[int, int]]:
        """``rows`` extended with ``id -> (segment, row)`` for the live pages of segments ``start:``."""
        for si in range(start, len(self._segments)):
            dele = self._deleted[si]
            for r, doc_id in enumerate(self._segments[si].ids):
                if dele is None or not dele[r]:
                    rows[doc_id] = (si, r)
        return rows

    def _add_live_ids(self, out: list[str], start: int) -> list[str]:
        """``out`` extended with the live ids of segments ``start:``, in commit order."""
        for si in range(start, len(self._segments)):
            dele = self._deleted[si]
            ids = self._segments[si].ids
            out.extend(ids if dele is None else [ids[r] for r in np.flatnonzero(~dele)])
        return out

    def _id_rows(self) -> dict[str, tuple[int, int]]:
        if self._rows is None:
            self._rows = self._add_rows({}, 0)
        return self._rows

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._id_rows()

    @property
    def ids(self) -> list[str]:
        """Live page ids, in commit order (an upserted page moves to the end)."""
        if self._live_ids is None:
            self._live_ids = self._add_live_ids([], 0)
        return list(self._live_ids)

    def _positions(self) -> np.ndarray:
        """Global positions of the live pages, in order."""
        parts = [self._bases[si] + (np.arange(s.n_docs) if self._deleted[si] is None else np.flatnonzero(~self._deleted[si]))
                 for si, s in enumerate(self._segments)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _locate(self, pos: int) -> tuple[Segment, int]:
        si = int(np.searchsorted(self._bases, pos, side="right")) - 1
        return self._segments[si], int(pos - self._bases[si])

    def get(self, doc_id: str) -> Page:
        """The stored page with id ``doc_id`` (KeyError if absent)."""
        rows = self._id_rows()
        if doc_id not in rows:
            raise KeyError(f"no document {doc_id!r} in {self.path}")
        si, r = rows[doc_id]
        return self._pages(si, r, r + 1)[0]

    def __iter__(self) -> Iterator[Page]:
        return self.iter_pages()

    def iter_pages(self, batch_size: int = 1024) -> Iterator[Page]:
        """Every live page in commit order, read ``batch_size`` documents at a time."""
        for si, seg in enumerate(self._segments):
            dele = self._deleted[si]
            for lo in range(0, seg.n_docs, batch_size):
                hi = min(lo + batch_size, seg.n_docs)
                for p, keep in zip(self._pages(si, lo, hi), np.ones(hi - lo, bool) if dele is None else ~dele[lo:hi]):
                    if keep:
                        yield p

    def _decode(self, data: dict[str, np.ndarray], seg: Segment, lo: int, hi: int) -> np.ndarray:
        if self.codec in ("float16", "float32"):
            return data[L.VECTORS]
        if self.codec == "int8":
            return dequantize_int8(data[L.VECTORS], data[L.SCALES])
        if self.has_rerank:
            return seg.read_vectors(lo, hi, rerank=True)[L.RERANK]
        bits = np.unpackbits(data[L.VECTORS], axis=1, bitorder="little")[:, : self.dim]
        return np.where(bits > 0, 1.0, -1.0).astype(np.float32)

    def _pages(self, si: int, lo: int, hi: int) -> list[Page]:
        seg = self._segments[si]
        vec = self._decode(seg.read_vectors(lo, hi), seg, lo, hi)
        aux = seg.aux(lo, hi)
        meta = seg.metadata_range(lo, hi)
        n_orig = seg.doc_table(L.DOC_N_ORIGINAL)
        grids = seg.doc_table(L.DOC_GRID)
        ids = seg.ids
        off = seg.offsets
        a = int(off[lo])
        out = []
        for d in range(lo, hi):
            s, e = int(off[d]) - a, int(off[d + 1]) - a
            g = grids[d]
            out.append(Page(
                ids[d], vec[s:e], aux[L.POSITIONS][s:e].astype(np.int64), aux[L.IMPORTANCE][s:e],
                aux[L.PATCH_MASK][s:e].astype(bool), int(n_orig[d]), None if g[0] < 0 else (int(g[0]), int(g[1])),
                meta[d - lo], {k: v[s:e] for k, v in aux["signals"].items()},
                None if "covers" not in aux else tuple(aux["covers"][s:e]),
            ))
        return out

    def warm(self, memory_budget: int | None = None) -> int:
        """Hold whole segments' vectors in memory, in order, while they fit ``memory_budget``.

        Exact and two-stage search then read those segments from memory (the rest streams from
        disk). Search warms automatically within the index's budget; returns the bytes held.
        """
        budget = self.memory_budget if memory_budget is None else int(memory_budget)
        held = sum(seg.make_resident() for seg in self._segments if seg.resident is not None)
        for seg in self._segments:
            if seg.resident is None and held + seg.vector_bytes() <= budget:
                held += seg.make_resident()
        return held

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live page's stored vectors in memory, as the kernels take them, and their offsets.

        Unbounded memory: for inspection and small indexes (search streams instead).
        ``(N, dim)`` float16/float32, int8 codes for ``int8``, ``(N, words)`` uint64 for ``binary``.
        """
        data, off = gather_docs(self, self._positions()) if len(self) else ({L.VECTORS: self._empty_vectors()}, np.zeros(1, np.int64))
        vec = data[L.VECTORS]
        if self.codec == "binary":
            vec = np.ascontiguousarray(vec).view("<u8")
        return vec, off

    def _empty_vectors(self) -> np.ndarray:
        width = (self.dim + 63) // 64 * 8 if self.codec == "binary" else self.dim
        return np.zeros((0, width), L.CODECS[self.codec])

    def info(self) -> dict[str, Any]:
        """Counts and storage figures: pages, vectors, keep ratio, vector and file bytes per page, what the files hold."""
        n_docs, n_vec = len(self), self.n_vectors
        n_orig = 0
        for si, seg in enumerate(self._segments):
            t = seg.doc_table(L.DOC_N_ORIGINAL)
            n_orig += int(t.sum() if self._deleted[si] is None else t[~self._deleted[si]].sum())
        holds = {"vectors": 0, "rerank": 0, "signals": 0, "covers": 0, "metadata": 0, "summaries": 0, "other": 0}
        file_bytes = 0
        for seg in self._segments:
            file_bytes += os.path.getsize(seg.path)
            for name, obj in _datasets(seg.f):
                size = obj.id.get_storage_size()
                key = ("vectors" if name in (L.VECTORS, L.SCALES) else "rerank" if name == L.RERANK
                       else "signals" if name.startswith(L.SIGNALS + "/") else "covers" if name.startswith("covers/")
                       else "metadata" if name.startswith(("docs/", L.FILTERS)) else "summaries" if name.startswith("summary/")
                       else "other")
                holds[key] += int(size)
        if self.format_version not in L.FILE_VERSIONS:
            for sub in (L.MANIFESTS, L.DELETES):
                folder = os.path.join(self._root, sub)
                file_bytes += sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
        holds["other"] = max(0, file_bytes - sum(v for k, v in holds.items() if k != "other"))
        per = (lambda x: x / n_docs) if n_docs else (lambda x: None)  # noqa: E731
        deleted = sum(0 if d is None else int(d.sum()) for d in self._deleted)
        return {
            "path": self.path,
            "format": L.COLLECTION_FORMAT if self.format_version not in L.FILE_VERSIONS else L.FORMAT_NAME,
            "format_version": self.format_version,
            "version": self.version,
            "library_version": self._manifest.get("library_version"),
            "docs": n_docs,
            "deleted_docs": deleted,
            "segments": len(self._segments),
            "vectors": n_vec,
            "original_vectors": n_orig,
            "keep_ratio": (n_vec / n_orig) if n_orig else None,
            "dim": self.dim,
            "dtype": self.codec,
            "codec": self.codec,
            "rerank_vectors": self.has_rerank,
            "vector_bytes_per_page": per(n_vec * self.bytes_per_vector),
            "unpruned_vector_bytes_per_page": per(n_orig * self.bytes_per_vector),
            "unpruned_float16_bytes_per_page": per(n_orig * self.dim * 2),
            "file_bytes": file_bytes,
            "file_bytes_per_page": per(file_bytes),
            "stored_bytes_per_page": per(file_bytes),
            "holds": holds,
            "skipped": len(self._manifest.get("skipped", {})),
            "pruner": self.pruner_config,
            "encoder": self.encoder,
        }

    # -- search ------------------------------------------------------------------------

    def _queries(self, queries):
        return check_queries(queries, self.dim)

    def _masks(self, where: dict[str, Any] | None) -> list[np.ndarray | None]:
        masks = [self._live(si) for si in range(len(self._segments))]
        if where is None:
            return masks
        if not isinstance(where, dict) or not where:
            raise InvalidInputError(f"where must be a non-empty dict of metadata field -> condition, got {where!r}")
        known = self.filter_fields()
        out = []
        for si, seg in enumerate(self._segments):
            m = filter_mask(seg, where, known)
            out.append(m if masks[si] is None else m & masks[si])
        return out

    def filter_fields(self) -> set[str]:
        """Metadata fields ``search(where=...)`` and ``delete(where=...)`` can filter on."""
        known: set[str] = set()
        for seg in self._segments:
            known |= set(seg.filter_columns())
        return known

    def scores(self, queries, *, n_threads: int | None = None) -> np.ndarray:
        """Exact MaxSim of every query against every live page: ``(n_queries, n_live)`` float32 (loads all vectors)."""
        from ..kernels import maxsim_binary_csr, maxsim_csr, maxsim_int8_csr

        qv, qoff, _ = self._queries(queries)
        if not len(self):
            return np.zeros((qoff.size - 1, 0), np.float32)
        data, off = gather_docs(self, self._positions())
        vec = data[L.VECTORS]
        if self.codec == "int8":
            return maxsim_int8_csr(qv, qoff, vec, data[L.SCALES], off, n_threads=n_threads, corrections=int8_corrections(vec))
        if self.codec == "binary":
            return maxsim_binary_csr(qv, qoff, np.ascontiguousarray(vec).view("<u8"), off, self.dim, n_threads=n_threads)
        return maxsim_csr(qv, qoff, vec, off, n_threads=n_threads)

    def search(
        self,
        queries,
        k: int = 10,
        *,
        n_threads: int | None = None,
        rerank: int | None = None,
        candidates: int | None = None,
        n_centroids: int | None = None,
        where: dict[str, Any] | None = None,
        memory_budget: int | None = None,
        device: str | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` pages by MaxSim, exact unless ``candidates`` asks for two-stage search.

        Parameters
        ----------
        queries : (n_tokens, dim) array, or a list of such arrays (NumPy or torch)
        k : int >= 1
            Hits per query (fewer if fewer pages match).
        n_threads : threads for the kernels (default: all cores).
        rerank : int >= 1, optional
            ``binary`` with a rerank copy: shortlist this many pages per query by Hamming MaxSim,
            then rescore them exactly from float16 (default ``max(100, 10 k)``; 0 returns the
            Hamming ranking).
        candidates : int >= 1, optional
            Two-stage search (float codecs): rank every page by its persisted int8 centroid
            summary, then score the best ``candidates`` per query exactly, reading only their
            vectors from disk. Recall below 1 is possible.
        n_centroids : ignored unless it differs from the stored summary's (then an error says so).
        where : dict, optional
            Metadata filter applied before scoring: ``{"field": value}`` (equality),
            ``{"field": {"in": [...]}}``, ``{"field": {"gte": x, "lt": y}}``, ``ne``, ``gt``,
            ``lte``; conditions on several fields are ANDed. Non-matching pages are never
            scored, and the top-``k`` is exact among the matching ones.
        memory_budget : bytes of vectors held at a time by exact search (default: the index's).
        device : ``"cuda"``, ``"cpu"``, ``"mps"``... : exact search with torch on that device
            (:class:`~colprune.kernels.torch_maxsim.TorchScorer`). The live vectors are uploaded
            once (int8 dequantised; binary from its float16 rerank copy) and stay resident until
            the index changes; float16 compute with float32 accumulation on CUDA. Not combined
            with ``candidates``.

        Returns
        -------
        list of :class:`Hit` for one 2-D query; a list of such lists for a list of queries.
        Each hit is ``(id, score)`` with ``.metadata``, best first; ties go to the earlier page.
        """
        k = check_count(k, "k")
        if candidates is not None:
            candidates = check_count(candidates, "candidates")
        if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, (int, np.integer)) or rerank < 0):
            raise InvalidInputError(f"rerank must be an integer >= 0, got {rerank!r}")
        qv, qoff, single = self._queries(queries)
        masks = self._masks(where)
        n_q = qoff.size - 1
        if len(self) == 0:
            idx, val = [np.zeros(0, np.int64)] * n_q, [np.zeros(0, np.float32)] * n_q
        elif device is not None:
            if candidates is not None:
                raise InvalidInputError("device= scores every page exactly; it does not combine with candidates=")
            idx, val = self._device_search(qv, qoff, k, masks, device)
        elif candidates is not None:
            if self.codec not in ("float16", "float32"):
                raise InvalidInputError(f"two-stage search (candidates=) needs a float16/float32 index, not {self.codec}")
            if n_centroids is not None and self._manifest.get("summary_centroids") not in (0, int(n_centroids)):
                raise InvalidInputError(f"this index stores {self._manifest['summary_centroids']}-centroid summaries; "
                                        f"n_centroids={n_centroids} would need `colprune summarize --centroids {n_centroids}`")
            self.warm((memory_budget or self.memory_budget) // 2)
            idx, val = two_stage_search(self, qv, qoff, k, candidates, masks, n_threads, n_centroids)
        else:
            if rerank is None:
                rerank = max(100, 10 * k)
            budget = memory_budget or self.memory_budget
            self.warm(budget // 2)  # what fits half the budget stays resident; blocks of the rest stream
            idx, val = exact_search(self, qv, qoff, k, masks, n_threads, budget // 2, rerank)
        for v in val:
            if v.size and not np.isfinite(v).all():
                raise InvalidInputError("query values too large: scores overflow float32 (scale the query vectors down)")
        hits = [[self._hit(int(p), float(s)) for p, s in zip(pi, pv)] for pi, pv in zip(idx, val)]
        return hits[0] if single else hits

    def _device_search(self, qv, qoff, k: int, masks, device: str):
        from ..kernels import topk
        from ..kernels.torch_maxsim import TorchScorer

        key = (str(device), self.version)
        if getattr(self, "_torch", None) is None or self._torch[0] != key:
            positions = self._positions()
            data, off = gather_docs(self, positions, rerank=self.codec == "binary" and self.has_rerank)
            if self.codec == "int8":
                vec = dequantize_int8(data[L.VECTORS], data[L.SCALES])
            elif self.codec == "binary":
                if not self.has_rerank:
                    raise InvalidInputError("device= needs float vectors: this binary index has no float16 rerank copy")
                vec = data[L.RERANK]
            else:
                vec = data[L.VECTORS]
            self._torch = (key, TorchScorer(vec, off, device=device), positions)
        _, scorer, positions = self._torch
        scores = scorer.scores(qv, qoff)
        if any(m is not None for m in masks):
            live = np.concatenate([np.ones(s.n_docs, bool) if m is None else m for s, m in zip(self._segments, masks)])
            scores[:, ~live[positions]] = -np.inf
        bi, bv = topk(scores, min(k, scores.shape[1]))
        idx = [positions[r[np.isfinite(v)]] for r, v in zip(bi, bv)]
        val = [v[np.isfinite(v)] for v in bv]
        return idx, val

    def _hit(self, pos: int, score: float) -> Hit:
        seg, r = self._locate(pos)
        return Hit(seg.ids[r], score, seg.metadata(r))

    def _resident_summary(self, n_centroids: int | None = None):
        """The first-stage summary of every stored page, int8, in memory (read once per process)."""
        if self._summary_cache is None:
            parts, scales, counts = [], [], []
            for seg in self._segments:
                s = seg.summary()
                if s is None:  # older files and summary-less segments: computed here, not stored
                    data = seg.read_vectors(0, seg.n_docs)
                    codes, sc, cnt = _int8_summary(data[L.VECTORS], np.diff(seg.offsets), n_centroids or 4)
                else:
                    codes, sc, cnt = s[0], s[1], np.diff(s[2])
                parts.append(codes)
                scales.append(sc)
                counts.append(cnt)
            codes = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.int8)
            off = np.zeros(int(self._bases[-1]) + 1, np.int64)
            if counts:
                np.cumsum(np.concatenate(counts), out=off[1:])
            self._summary_cache = (codes, np.concatenate(scales) if scales else np.zeros(0, np.float32),
                                   int8_corrections(codes), off)
            for seg in self._segments:  # the concatenation is the copy kept (0.54 GB at 1M pages, not twice that)
                seg.forget_summary()
        return self._summary_cache

    def summary(self, n_centroids: int | None = None, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live pages' first-stage centroids, dequantised: ``(centroids (C, dim) float32, offsets (n_live + 1,))``."""
        codes, scales, _, off = self._resident_summary(n_centroids)
        pos = self._positions()
        lengths = off[pos + 1] - off[pos]
        rows = np.concatenate([np.arange(off[p], off[p + 1]) for p in pos]) if len(pos) else np.zeros(0, np.int64)
        new_off = np.zeros(len(pos) + 1, np.int64)
        np.cumsum(lengths, out=new_off[1:])
        return dequantize_int8(codes[rows], scales[rows]), new_off

    # -- writing -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed:
            raise InvalidInputError(f"{self.path} is closed")
        if self.mode != "a":
            raise PermissionError(f"{self.path} is open read-only; use Index.open(path, mode='a') to write")

    def _resolve_pruner(self, pruner: Pruner | str | None) -> Pruner:
        stored = self.pruner_config
        if pruner is None:
            return make_pruner(stored) if stored else NoPruning()
        pruner = make_pruner(pruner)
        if stored is not None and len(self):
            base = {k: stored[k] for k in ("name", "params")}
            if base != pruner.config():
                raise InvalidInputError(
                    f"{self.path} holds pages pruned with {stored}; add with the same pruner, or derive a "
                    f"differently pruned index with Index.derive / `colprune prune`"
                )
        return pruner

    def _check_signals(self, given: dict | None, n: int, what: str) -> dict[str, np.ndarray]:
        names = self.signal_names
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

    def _check_new_ids(self, ids: list, *, replacing: bool) -> None:
        """Valid, unique within the call, and (unless ``replacing``) not already live."""
        existing = self._id_rows()
        seen: set[str] = set()
        for doc_id in ids:
            check_id(doc_id)
            if doc_id in seen:
                raise DuplicateIdError(f"document {doc_id!r} appears twice in this call")
            if doc_id in existing and not replacing:
                raise DuplicateIdError(f"document {doc_id!r} is already in {self.path} (use upsert to replace it)")
            seen.add(doc_id)

    def _prepare(self, ids, embeddings, importance, pruner, metadata, patch_mask, grids, signals, *, replacing: bool):
        """Validate and prune every page of a call before anything is written."""
        self._check_writable()
        pruner = self._resolve_pruner(pruner)
        if pruner.merges and not self.merged:
            raise InvalidInputError(f"pruner {pruner.name!r} merges vectors: create the index with merged=True")
        ids = list(ids)
        n = len(ids)
        for name, seq in (("embeddings", embeddings), ("importance", importance), ("metadata", metadata),
                          ("patch_mask", patch_mask), ("grids", grids), ("signals", signals)):
            if seq is not None and len(seq) != n:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")
        self._check_new_ids(ids, replacing=replacing)
        pages, kept, meta_json, grid_rows = [], [], [], []
        for i, doc_id in enumerate(ids):
            what = f"document {doc_id!r}"
            _floating(embeddings[i], what)
            vec, imp, mask = check_page(embeddings[i], None if importance is None else importance[i],
                                        None if patch_mask is None else patch_mask[i], dim=self.dim, what=what)
            if imp is None and pruner.needs_importance:
                raise InvalidInputError(f"{what}: pruner {pruner.name!r} needs importance scores; pass importance=")
            g = None if grids is None else grids[i]
            if g is not None:
                _check_grid(g, int(mask.sum()), what)
            page = pruner._prune_checked(vec, imp, mask, g)
            kept.append(_kept_signals(self._check_signals(None if signals is None else signals[i], vec.shape[0], what), page))
            pages.append(page)
            meta_json.append(_meta_json(None if metadata is None else metadata[i], what))
            grid_rows.append(_NO_GRID if g is None else tuple(int(x) for x in g))
        return ids, pages, kept, meta_json, grid_rows, pruner.config()

    def add(
        self,
        ids: Sequence[str],
        embeddings: Sequence,
        importance: Sequence | None = None,
        *,
        pruner: Pruner | str | None = None,
        metadata: Sequence[dict | None] | None = None,
        patch_mask: Sequence | None = None,
        grids: Sequence[tuple[int, int] | None] | None = None,
        signals: Sequence[dict] | None = None,
        commit_every: int | None = None,
    ) -> list[PrunedPage]:
        """Prune and append pages.

        Every page is validated and pruned before anything is written, so bad input raises
        :class:`~colprune.errors.InvalidInputError` (naming the document) and leaves the index
        unchanged. The pages are then committed, ``commit_every`` at a time (default: all in
        one commit); a crash keeps every commit made before it.

        Parameters
        ----------
        ids : n unique page ids (non-empty, UTF-8, at most 1,024 bytes, no NUL or line breaks),
            not already in the index
        embeddings : n floating-point arrays of shape (n_i, dim), NumPy or torch
        importance : n arrays of shape (n_i,), optional (stored with the kept vectors)
        pruner : Pruner or registry name, optional
            Defaults to the index's pruner, else :class:`NoPruning`; an index holds one
            pruner configuration.
        metadata : n JSON-able dicts (or None); scalar top-level fields are filterable
        patch_mask : n boolean arrays (n_i,), optional: True for image-patch rows
        grids : n ``(rows, cols)`` patch grids (or None), optional
        signals : n dicts of name -> (n_i,) scores; required when the index stores signals

        Returns
        -------
        list of PrunedPage, what was stored for each page.
        """
        prepared = self._prepare(ids, embeddings, importance, pruner, metadata, patch_mask, grids, signals, replacing=False)
        step = len(prepared[0]) if commit_every is None else check_count(commit_every, "commit_every")
        self._write(prepared, step, replace=False)
        return prepared[1]

    def upsert(self, ids: Sequence[str], embeddings: Sequence, importance: Sequence | None = None, **kwargs) -> list[PrunedPage]:
        """Add pages, replacing those whose id is already present, in one atomic commit.

        Takes :meth:`add`'s arguments. A reader sees the old version of every page of the call
        or the new one, never both or neither; a replaced page moves to the end of the order.
        """
        kwargs.pop("commit_every", None)
        prepared = self._prepare(ids, embeddings, importance, kwargs.pop("pruner", None), kwargs.pop("metadata", None),
                                 kwargs.pop("patch_mask", None), kwargs.pop("grids", None), kwargs.pop("signals", None),
                                 replacing=True)
        if kwargs:
            raise TypeError(f"upsert() got unexpected arguments {sorted(kwargs)}")
        self._write(prepared, max(1, len(prepared[0])), replace=True)
        return prepared[1]

    def add_packed(
        self,
        ids: Sequence[str],
        vectors,
        lengths,
        importance=None,
        *,
        metadata: Sequence[dict | None] | None = None,
        pruner: Pruner | str | None = None,
        commit_every: int | None = None,
    ) -> None:
        """Append pages given packed, every page's vectors back to back: the bulk-load path.

        Takes what an encoder or another store hands over in CSR form, with no list of
        per-page arrays. For an unpruned index (:class:`NoPruning`) validation is vectorised
        over the whole batch; with any other pruner the pages are pruned one by one, as
        :meth:`add` does. Errors and atomicity are :meth:`add`'s: bad input names the document
        and leaves the index unchanged.

        Parameters
        ----------
        ids : n unique page ids, not already in the index
        vectors : (N, dim) floating-point array, page ``i`` in rows ``offsets[i]:offsets[i + 1]``
            where ``offsets = [0, *cumsum(lengths)]``
        lengths : (n,) integers >= 1, summing to N
        importance : (N,) float array, optional
        metadata : n JSON-able dicts (or None), optional
        pruner : Pruner or registry name, optional (as in :meth:`add`)
        commit_every : pages per commit (default: all in one commit)
        """
        self._check_writable()
        ids = list(ids)
        n = len(ids)
        vectors = as_float_array(vectors, "vectors")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"vectors must have shape (N, {self.dim}), got {vectors.shape}")
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or lengths.shape[0] != n or (n and lengths.dtype.kind not in "iu"):
            raise InvalidInputError(f"lengths must be {n} integers (one per id), got shape {lengths.shape} {lengths.dtype}")
        lengths = lengths.astype(np.int64)
        if n and lengths.min() < 1:
            raise InvalidInputError(f"document {ids[int(np.argmin(lengths))]!r}: empty page (0 vectors); drop it or give it at least one vector")
        if int(lengths.sum()) != vectors.shape[0]:
            raise InvalidInputError(f"lengths sum to {int(lengths.sum())} vectors, vectors has {vectors.shape[0]} rows")
        if importance is not None:
            importance = as_float_array(importance, "importance")
            if importance.shape != (vectors.shape[0],):
                raise InvalidInputError(f"importance has shape {importance.shape}, expected ({vectors.shape[0]},): one score per vector")
        if metadata is not None and len(metadata) != n:
            raise InvalidInputError(f"metadata has {len(metadata)} entries for {n} ids")
        off = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        resolved = self._resolve_pruner(pruner)
        if resolved.name != NoPruning.name or self.signal_names or self.merged:
            self.add(ids, [vectors[off[i] : off[i + 1]] for i in range(n)],
                     None if importance is None else [importance[off[i] : off[i + 1]] for i in range(n)],
                     pruner=resolved, metadata=metadata, commit_every=commit_every)
            return
        self._check_new_ids(ids, replacing=False)
        for name, arr in (("embeddings", vectors), ("importance", None if importance is None else importance[:, None])):
            row = -1 if arr is None else first_nonfinite_row(arr)
            if row >= 0:
                d = int(np.searchsorted(off, row, side="right")) - 1
                raise InvalidInputError(f"document {ids[d]!r}: {name} contain NaN or infinite values (first at row {row - off[d]})")
        meta_json = [_meta_json(None if metadata is None else metadata[i], f"document {ids[i]!r}") for i in range(n)]
        if vectors.dtype != np.float16 or self.codec != "float16":
            vectors = vectors.astype(np.float32, copy=False)
        step = n if commit_every is None else check_count(commit_every, "commit_every")
        config = resolved.config()
        for lo in range(0, n, max(step, 1)):
            hi = min(lo + step, n)
            a, b = int(off[lo]), int(off[hi])
            positions = np.arange(b - a, dtype=np.int64) - np.repeat(off[lo:hi] - a, lengths[lo:hi])
            imp = np.full(b - a, np.nan, np.float32) if importance is None else importance[a:b]
            block = self._encode_block(ids[lo:hi], meta_json[lo:hi], lengths[lo:hi], lengths[lo:hi],
                                       [_NO_GRID] * (hi - lo), vectors[a:b], positions, imp,
                                       np.ones(b - a, np.uint8), {}, None)
            self._commit_block(block, config)
        self._maybe_merge()

    def _write(self, prepared, step: int, *, replace: bool) -> None:
        ids, pages, kept, meta_json, grid_rows, config = prepared
        if not ids:
            return
        for lo in range(0, len(ids), step):
            hi = min(lo + step, len(ids))
            self._commit_block(self._block(ids[lo:hi], pages[lo:hi], kept[lo:hi], meta_json[lo:hi], grid_rows[lo:hi]),
                               config, replace=replace)
        self._maybe_merge()

    def _commit_block(self, block: Block, config: dict[str, Any], *, replace: bool = False) -> None:
        """Write ``block`` as a new segment and commit it (replacing live pages of the same ids when ``replace``)."""
        entry = self._write_segment([block], block.n_vectors)
        body = self._next_body()
        if body["pruner"] is None or not len(self):
            body["pruner"] = config
        dels = None
        if replace:
            rows = self._id_rows()
            dels = self._delete_rows(body, [rows[i] for i in block.ids if i in rows])
        body["segments"].append(entry)
        self._commit(body, dels)

    def _block(self, ids, pages: list[PrunedPage], kept, meta_json, grid_rows) -> Block:
        if self.codec == "float16" and all(p.vectors.dtype == np.float16 for p in pages):
            flat = np.concatenate([p.vectors for p in pages])  # already finite halves (check_page)
        else:
            flat = np.concatenate([p.vectors for p in pages]).astype(np.float32, copy=False)
        covers = None
        if self.merged:
            covers = [c for p in pages for c in (p.covers if p.covers is not None else [np.array([r]) for r in p.positions])]
        return self._encode_block(
            ids, meta_json, np.array([p.vectors.shape[0] for p in pages], np.int64),
            np.array([p.n_original for p in pages], np.int64), grid_rows, flat,
            np.concatenate([p.positions for p in pages]), np.concatenate([p.importance for p in pages]),
            np.concatenate([p.patch_mask for p in pages]),
            {name: np.concatenate([s[name] for s in kept]) for name in self.signal_names}, covers)

    def _encode_block(self, ids, meta_json, lengths, n_original, grid_rows, flat, positions, importance, patch_mask,
                      signals: dict[str, np.ndarray], covers: list[np.ndarray] | None) -> Block:
        """Encode validated pages, given as flat per-vector arrays, into the index's stored form.

        ``flat`` is (N, dim) float32, or float16 already checked finite when the codec is float16.
        """
        codec = self.codec
        vec: dict[str, np.ndarray] = {}
        if codec == "float16" and flat.dtype == np.float16:
            vec[L.VECTORS] = flat
        elif codec == "float32":
            vec[L.VECTORS] = flat.astype(np.float32, copy=False)
        elif codec == "float16":
            with np.errstate(over="ignore"):
                half = flat.astype(np.float16)
            row = first_nonfinite_row(half)
            if row >= 0:
                bad = int(np.searchsorted(np.cumsum(lengths), row, side="right"))
                raise InvalidInputError(f"document {ids[bad]!r}: values overflow float16 (|x| > 65504)")
            vec[L.VECTORS] = half
        elif codec == "int8":
            vec[L.VECTORS], vec[L.SCALES] = quantize_int8(flat.astype(np.float32, copy=False))
        else:
            flat = flat.astype(np.float32, copy=False)
            vec[L.VECTORS] = pack_binary(flat).view(np.uint8)
            if self.has_rerank:
                with np.errstate(over="ignore"):
                    vec[L.RERANK] = flat.astype(np.float16)
                if not np.isfinite(vec[L.RERANK]).all():
                    raise InvalidInputError("values overflow float16 (|x| > 65504) in the rerank copy")
        vec[L.POSITIONS] = positions.astype(np.int32, copy=False)
        vec[L.IMPORTANCE] = importance.astype(np.float32, copy=False)
        vec[L.PATCH_MASK] = patch_mask.astype(np.uint8, copy=False)
        for name in self.signal_names:
            vec[f"{L.SIGNALS}/{name}"] = signals[name].astype(np.float32, copy=False)
        cover_lengths = cover_rows = None
        if covers is not None:
            cover_lengths = np.array([len(c) for c in covers], np.int64)
            cover_rows = np.concatenate(covers).astype(np.int32)
        summary = None
        centroids = int(self._manifest.get("summary_centroids", 0))
        if centroids:  # on a worker thread (the kernel releases the GIL) while the writer copies vectors
            summary = _summary_pool().submit(_int8_summary, vec[L.VECTORS], np.asarray(lengths, np.int64), centroids)
        return Block(list(ids), list(meta_json), np.asarray(lengths, np.int64), np.asarray(n_original, np.int64),
                     np.array(grid_rows, np.int32).reshape(-1, 2), vec, cover_lengths, cover_rows, summary)

    def _new_writer(self, n_vectors: int) -> tuple[SegmentWriter, str, str]:
        name = M.unique_name("seg", ".h5")
        tmp = os.path.join(self._root, L.TMP, name)
        m = self._manifest
        w = SegmentWriter(tmp, dim=self.dim, codec=self.codec, rerank=self.has_rerank, signal_names=self.signal_names,
                          merged=self.merged, n_vectors=n_vectors, summary_centroids=m.get("summary_centroids", 0))
        return w, name, tmp

    def _write_segment(self, blocks: Iterable[Block], n_vectors: int) -> dict[str, Any]:
        """Write blocks (``n_vectors`` in all) as one new segment file, durable and in ``segments/``; returns its manifest entry."""
        w, name, tmp = self._new_writer(n_vectors)
        try:
            for b in blocks:
                w.write(b)
            checksum = w.close()
        except BaseException:
            w.abort()
            _unlink(tmp)
            raise
        return self._seal(w, name, tmp, checksum)

    def _seal(self, w: SegmentWriter, name: str, tmp: str, checksum: str) -> dict[str, Any]:
        dest = os.path.join(self._root, L.SEGMENTS, name)
        os.replace(tmp, dest)
        M.fsync_dir(os.path.dirname(dest))
        return {"name": name, "n_docs": w.n_docs, "n_vectors": w.n_vectors, "checksum": checksum,
                "bytes": os.path.getsize(dest), "deletes": None}

    def _next_body(self) -> dict[str, Any]:
        body = json.loads(json.dumps(self._manifest))
        body["version"] = int(body["version"]) + 1
        return body

    def _delete_rows(self, body: dict[str, Any], rows: list[tuple[int, int]]) -> dict[int, np.ndarray]:
        """Mark (segment, row) pairs deleted in ``body``: writes new deletion files, returns the new masks."""
        by_seg: dict[int, list[int]] = {}
        for si, r in rows:
            by_seg.setdefault(si, []).append(r)
        new = {}
        for si, rs in by_seg.items():
            seg = self._segments[si]
            mask = np.zeros(seg.n_docs, bool) if self._deleted[si] is None else self._deleted[si].copy()
            mask[rs] = True
            body["segments"][si]["deletes"] = M.write_deletes(self._root, body["segments"][si]["name"], body["version"], mask)
            new[si] = mask
        return new

    def _commit(self, body: dict[str, Any], _dels=None) -> None:
        """Write the manifest (the commit), then move this index to the new state."""
        M.write_manifest(self._root, body)
        self._load_manifest(None)
        M.collect_garbage(self._root, body["version"])

    def delete(self, ids: Sequence[str] | str | None = None, *, where: dict[str, Any] | None = None,
               missing: str = "error") -> int:
        """Delete pages by id and/or by metadata filter, in one commit; returns how many were deleted.

        ``missing="error"`` (default) refuses unknown ids before anything is written;
        ``"ignore"`` skips them. A deleted page is never returned again; its bytes are freed by
        :meth:`compact`.
        """
        self._check_writable()
        if ids is None and where is None:
            raise InvalidInputError("delete needs ids, where=, or both")
        if isinstance(ids, str):
            ids = [ids]
        if missing not in ("error", "ignore"):
            raise InvalidInputError(f"missing must be 'error' or 'ignore', got {missing!r}")
        rows_of = self._id_rows()
        targets: set[tuple[int, int]] = set()
        if ids is not None:
            unknown = [i for i in ids if not isinstance(i, str) or i not in rows_of]
            if unknown and missing == "error":
                raise UnknownIdError(f"{len(unknown)} id(s) not in {self.path}, e.g. {unknown[0]!r}; nothing was deleted "
                               "(missing='ignore' skips them)")
            targets |= {rows_of[i] for i in ids if isinstance(i, str) and i in rows_of}
        if where is not None:
            for si, m in enumerate(self._masks(where)):
                targets |= {(si, int(r)) for r in np.flatnonzero(m)}
        if not targets:
            return 0
        body = self._next_body()
        self._delete_rows(body, sorted(targets))
        self._commit(body)
        return len(targets)

    def _set_pruner(self, config: dict[str, Any]) -> None:
        """Record ``config`` as the pruner of every page (a copy of a pruned index keeps its record)."""
        self._check_writable()
        if self.pruner_config != config:
            body = self._next_body()
            body["pruner"] = config
            self._commit(body)

    def record_skipped(self, reasons: dict[str, str]) -> None:
        """Record sources a build could not embed (id or path -> reason), in one commit."""
        self._check_writable()
        if not reasons:
            return
        body = self._next_body()
        body.setdefault("skipped", {}).update({str(k): str(v) for k, v in reasons.items()})
        self._commit(body)

    def clear_skipped(self, ids: Sequence[str] | None = None) -> None:
        """Forget skipped records (all, or those of ``ids``), e.g. before retrying them."""
        self._check_writable()
        body = self._next_body()
        sk = body.setdefault("skipped", {})
        for k in list(sk) if ids is None else ids:
            sk.pop(k, None)
        self._commit(body)

    def _live_blocks(self, si: int, budget: int) -> Iterator[Block]:
        """A segment's live documents in stored form, in blocks of about ``budget`` vector bytes."""
        seg = self._segments[si]
        dele = self._deleted[si]
        off = seg.offsets
        rows_per = max(1, budget // max(1, self.bytes_per_vector))
        lo = 0
        while lo < seg.n_docs:
            hi = max(lo + 1, int(np.searchsorted(off, off[lo] + rows_per, side="right")) - 1)
            hi = min(hi, seg.n_docs)
            keep = np.arange(lo, hi) if dele is None else lo + np.flatnonzero(~dele[lo:hi])
            if keep.size:
                yield self._take(seg, lo, hi, keep)
            lo = hi

    def _take(self, seg: Segment, lo: int, hi: int, keep: np.ndarray) -> Block:
        off = seg.offsets
        data = seg.read_vectors(lo, hi)
        if self.has_rerank:
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
        if self.merged:
            covers = [aux["covers"][r] for r in np.flatnonzero(rows)]
            cover_lengths = np.array([len(c) for c in covers], np.int64)
            cover_rows = np.concatenate(covers).astype(np.int32) if covers else np.zeros(0, np.int32)
        summary = None
        s = seg.summary()
        if self._manifest.get("summary_centroids"):
            if s is not None and seg.summary_centroids == self._manifest["summary_centroids"]:
                codes, scales, soff = s
                crow = np.repeat(kept_docs, np.diff(soff))
                summary = (codes[crow], scales[crow], np.diff(soff)[keep])
            else:
                summary = _int8_summary(vec[L.VECTORS], lengths[keep].astype(np.int64), self._manifest["summary_centroids"])
        ids = seg.ids
        return Block([ids[d] for d in keep], _meta_of(seg, lo, hi, keep),
                     np.diff(off)[keep].astype(np.int64), seg.doc_table(L.DOC_N_ORIGINAL)[keep],
                     seg.doc_table(L.DOC_GRID)[keep], vec, cover_lengths, cover_rows, summary)

    def compact(self, *, memory_budget: int | None = None) -> dict[str, Any]:
        """Rewrite segments with deleted pages, and merge small ones; one commit.

        Returns ``{"bytes_before", "bytes_after", "segments_before", "segments_after"}``. A
        crash at any moment leaves the old state or the new one; readers that opened before
        keep reading their snapshot.
        """
        self._check_writable()
        before = self.info()["file_bytes"]
        n_before = len(self._segments)
        budget = memory_budget or self.memory_budget
        plan = self._compaction_plan()
        if plan:
            self._rewrite(plan, budget)
        after = self.info()["file_bytes"]
        return {"bytes_before": before, "bytes_after": after, "segments_before": n_before, "segments_after": len(self._segments)}

    def _compaction_plan(self) -> list[list[int]]:
        """Groups of consecutive segments to rewrite as one: each with deletions alone, runs of small ones together."""
        groups: list[list[int]] = []
        run: list[int] = []
        for si, seg in enumerate(self._segments):
            small = seg.n_docs < SMALL_SEGMENT_DOCS
            if small:
                run.append(si)
                continue
            if len(run) > 1 or (run and self._deleted[run[0]] is not None):
                groups.append(run)
            run = []
            if self._deleted[si] is not None:
                groups.append([si])
        if len(run) > 1 or (run and self._deleted[run[0]] is not None):
            groups.append(run)
        return groups

    def _rewrite(self, groups: list[list[int]], budget: int) -> None:
        body = self._next_body()
        replaced: dict[int, dict[str, Any] | None] = {}
        for group in groups:
            n_vec = sum(int(self._segments[si].n_vectors if self._deleted[si] is None else
                            np.diff(self._segments[si].offsets)[~self._deleted[si]].sum()) for si in group)
            live = sum(self._segments[si].n_docs - (0 if self._deleted[si] is None else int(self._deleted[si].sum()))
                       for si in group)
            blocks = (b for si in group for b in self._live_blocks(si, budget))
            replaced[group[0]] = self._write_segment(blocks, n_vec) if live else None
            for si in group[1:]:
                replaced[si] = None
        segs = []
        for si, s in enumerate(body["segments"]):
            if si in replaced:
                if replaced[si] is not None:
                    segs.append(replaced[si])
            else:
                segs.append(s)
        body["segments"] = segs
        self._commit(body)

    def _maybe_merge(self) -> None:
        """Tiered merging after a commit: ``MAX_SMALL_SEGMENTS`` trailing small segments of one size tier become one.

        A segment's tier is ``floor(log_8(n_docs))``; only segments of the last segment's tier are
        merged, and the result moves up a tier, so each page is rewritten O(log n) times, not once
        per commit.
        """
        while True:
            segs = self._segments
            if not segs or segs[-1].n_docs >= SMALL_SEGMENT_DOCS:
                return
            tier = _tier(segs[-1].n_docs)
            run = []
            for si in range(len(segs) - 1, -1, -1):
                if segs[si].n_docs >= SMALL_SEGMENT_DOCS or _tier(segs[si].n_docs) != tier:
                    break
                run.append(si)
            if len(run) < MAX_SMALL_SEGMENTS:
                return
            self._rewrite([sorted(run)], self.memory_budget)

    def summarize(self, n_centroids: int = 4) -> None:
        """(Re)compute the persisted first-stage summaries with ``n_centroids`` per page (rewrites segments)."""
        self._check_writable()
        if self.codec not in ("float16", "float32"):
            raise InvalidInputError(f"first-stage summaries need a float16/float32 index, not {self.codec}")
        n_centroids = check_count(n_centroids, "n_centroids")
        self._manifest["summary_centroids"] = n_centroids
        todo = [[si] for si, s in enumerate(self._segments) if s.summary_centroids != n_centroids]
        if todo:
            self._rewrite(todo, self.memory_budget)
        elif self._manifest_changed():
            body = self._next_body()
            self._commit(body)

    def _manifest_changed(self) -> bool:
        return M.read_manifest(self._root, self.version).get("summary_centroids") != self._manifest["summary_centroids"]

    def verify(self) -> dict[str, Any]:
        """Check every byte of the collection against its checksums; raises :class:`CorruptionError`.

        Returns ``{"segments", "docs", "bytes"}`` checked.
        """
        total = 0
        for seg in self._segments:
            seg.verify()
            total += os.path.getsize(seg.path)
        return {"segments": len(self._segments), "docs": len(self), "bytes": total}

    def derive(
        self,
        path: str | os.PathLike,
        pruner: Pruner | str,
        *,
        dtype: str | None = None,
        overwrite: bool = False,
        batch_size: int = 1024,
        progress: bool = False,
        signal: str | dict[str, float] | None = None,
        rerank: bool = True,
        **pruner_params: Any,
    ) -> Index:
        """Write a pruned copy of the live pages to a new collection ``path`` without re-encoding.

        ``dtype`` picks the new codec (default: this one's). Pages are re-pruned from their
        stored vectors and importance (a *full* index, built with ``pruner="none"``, keeps every
        vector). ``signal=`` prunes by a stored signal, or a blend ``{name: weight}`` of them
        (each min-max normalised per page). ``rerank=False`` makes a ``binary`` index without
        its float16 rerank copy. Returns the new index, open read-only.
        """
        pruner = make_pruner(pruner, **pruner_params)
        config = pruner.config()
        if signal is not None:
            names = [signal] if isinstance(signal, str) else list(signal)
            missing = [n for n in names if n not in self.signal_names]
            if missing or not names:
                raise InvalidInputError(f"{self.path} stores no signal {missing or signal!r}; it has {self.signal_names}")
            config["signal"] = signal if isinstance(signal, str) else {k: float(v) for k, v in signal.items()}
        source = self.pruner_config
        if signal is None and source is not None and "signal" in source:
            config["signal"] = source["signal"]  # the stored importance is still that signal
        if source is not None and source.get("name") != "none":
            config["derived_from"] = source
        with Index.create(path, self.dim, dtype or self.codec, encoder=self._manifest.get("encoder") or None,
                          overwrite=overwrite, signals=self.signal_names, merged=self.merged or pruner.merges,
                          rerank=rerank, summary_centroids=self._manifest.get("summary_centroids") or 4) as dst:
            batch: list[Page] = []
            it = self.iter_pages(batch_size)
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(it, total=len(self), desc=f"prune ({pruner.name})", unit="page")
            for page in it:
                batch.append(page)
                if len(batch) == batch_size:
                    dst._append_repruned(batch, pruner, config, signal)
                    batch = []
            if batch:
                dst._append_repruned(batch, pruner, config, signal)
            if self.skipped:
                dst.record_skipped(self.skipped)
        return Index.open(path)

    def _append_repruned(self, pages: list[Page], pruner: Pruner, config: dict[str, Any], signal) -> None:
        out, kept = [], []
        for p in pages:
            imp = (p.importance if signal is None else blend_signals(p.signals, signal)).astype(np.float64)
            if np.isnan(imp).any():
                if pruner.needs_importance:
                    raise InvalidInputError(f"document {p.id!r} was stored without importance scores; pruner {pruner.name!r} needs them")
                imp = None
            pp = pruner._prune_checked(p.vectors, imp, p.patch_mask, p.grid)
            covers = None
            if pp.covers is not None or p.covers is not None:
                src = p.covers if p.covers is not None else tuple(np.array([r]) for r in p.positions)
                members = pp.covers if pp.covers is not None else tuple(np.array([r]) for r in pp.positions)
                covers = tuple(np.sort(np.concatenate([src[m] for m in ms])) for ms in members)
            out.append(PrunedPage(pp.vectors, p.positions[pp.positions], pp.importance, pp.patch_mask, p.n_original, covers))
            kept.append(_kept_signals(p.signals, pp))
        ids = [p.id for p in pages]
        meta = [_meta_json(p.metadata, f"document {p.id!r}") for p in pages]
        grid_rows = [_NO_GRID if p.grid is None else p.grid for p in pages]
        self._write((ids, out, kept, meta, grid_rows, config), len(pages), replace=False)

    @classmethod
    def upgrade(cls, source: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False,
                progress: bool = False) -> Index:
        """Rewrite a version 1/2 file (or any collection) as a current-version collection at ``path``."""
        with cls.open(source) as src:
            cfg = src.pruner_config
            with cls.create(path, src.dim, src.codec, encoder=src.encoder, overwrite=overwrite, signals=src.signal_names,
                            merged=src.merged, rerank=src.has_rerank) as dst:
                batch: list[Page] = []
                it = src.iter_pages()
                if progress:
                    from tqdm.auto import tqdm

                    it = tqdm(it, total=len(src), desc="upgrade", unit="page")
                for page in it:
                    batch.append(page)
                    if len(batch) == 1024:
                        dst._append_as_is(batch, cfg)
                        batch = []
                if batch:
                    dst._append_as_is(batch, cfg)
                if cfg is not None and dst.pruner_config != cfg:
                    body = dst._next_body()
                    body["pruner"] = cfg
                    dst._commit(body)
        return cls.open(path)

    def _append_as_is(self, pages: list[Page], config) -> None:
        out = [PrunedPage(p.vectors, p.positions, p.importance, p.patch_mask, p.n_original, p.covers) for p in pages]
        kept = [p.signals for p in pages]
        meta = [_meta_json(p.metadata, f"document {p.id!r}") for p in pages]
        self._write(([p.id for p in pages], out, kept, meta, [_NO_GRID if p.grid is None else p.grid for p in pages],
                     config or NoPruning().config()), len(pages), replace=False)


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _summary_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():  # a forked child inherits the pool but not its thread
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="colprune-summary"))
    return _POOL[1]


def _int8_summary(vectors: np.ndarray, lengths: np.ndarray, centroids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    off = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    cvec, coff = page_centroids(vectors, off, centroids)
    codes, scales = quantize_int8(cvec)
    return codes, scales, np.diff(coff)


def _tier(n_docs: int) -> int:
    return int(np.floor(np.log(max(1, n_docs)) / np.log(MAX_SMALL_SEGMENTS) + 1e-9))


def _meta_of(seg: Segment, lo: int, hi: int, keep: np.ndarray) -> list[str]:
    off = seg._meta_off if not seg.legacy else None
    if off is None:
        return [json.dumps(m, ensure_ascii=False) for m in (seg.metadata(int(d)) for d in keep)]
    seg.verify_docs("meta", lo, hi)
    raw = seg.f[L.DOC_META_BYTES][off[lo] : off[hi]].tobytes()
    base = int(off[lo])
    return [raw[int(off[d]) - base : int(off[d + 1]) - base].decode("utf-8") for d in keep]


def _meta_json(m: dict | None, what: str) -> str:
    if m is None:
        m = {}
    if not isinstance(m, dict):
        raise InvalidInputError(f"{what}: metadata must be a dict, got {type(m).__name__}")
    try:
        return json.dumps(m, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what}: metadata is not JSON-serialisable ({e})") from None


def _datasets(f) -> list[tuple[str, Any]]:
    import h5py

    out = []
    f.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
