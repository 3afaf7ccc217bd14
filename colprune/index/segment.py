"""Segments: the immutable HDF5 files a format-3 collection is made of.

A segment is written once by :class:`SegmentWriter` (into the collection's ``tmp/``, then
renamed into ``segments/``) and never modified. :class:`Segment` opens one for reading: it
checks the file's structure before any array reaches a kernel, refuses links and storage that
leave the file, and verifies every byte it returns against the checksums recorded at write
time (per document for vectors, metadata and per-vector data; per dataset for the rest).
:class:`LegacySegment` reads a whole version 1 or 2 index file through the same interface.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import numpy as np
import xxhash

from ..errors import ColpruneError, CorruptionError, FormatError
from ..kernels import int8_corrections
from ..kernels.checks import first_nonfinite_row
from . import layout as L

__all__ = ["Block", "SegmentWriter", "Segment", "LegacySegment", "open_h5_safely", "hash_bytes"]

_CHUNK = 1 << 16


def _guarded(method):
    """Turn what HDF5 raises on a damaged file (OSError, KeyError, ...) into a CorruptionError naming the file."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ColpruneError, FileNotFoundError):  # a missing file is not damage: callers may retry
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError,
                UnicodeDecodeError, json.JSONDecodeError, OverflowError, MemoryError) as e:
            raise CorruptionError(f"{self.path}: unreadable or damaged ({type(e).__name__}: {e})") from None

    return wrapper


def hash_bytes(*arrays: np.ndarray) -> int:
    """xxh3_64 of the arrays' bytes, back to back (C order)."""
    if len(arrays) == 1 and arrays[0].flags.c_contiguous:  # the common case, without a hasher object
        return xxhash.xxh3_64_intdigest(arrays[0])
    h = xxhash.xxh3_64()
    for a in arrays:
        h.update(a if a.flags.c_contiguous else np.ascontiguousarray(a))
    return h.intdigest()


@dataclass
class Block:
    """Consecutive documents in stored form, as a segment holds them.

    ``vec`` maps per-vector dataset names (``vectors``, ``scales``, ``rerank_vectors``,
    ``positions``, ``importance``, ``patch_mask``, ``signals/<name>``) to ``(N, ...)`` arrays;
    ``lengths`` ``(n,)`` gives each document's vector count. ``cover_lengths`` ``(N,)`` and
    ``cover_rows`` are the merged rows each vector covers (merged collections only);
    ``summary`` is ``(codes (C, dim) int8, scales (C,), counts (n,))``, a Future of it (computed
    while the writer copies the vectors), or None.
    """

    ids: list[str]
    metadata: list[str]
    lengths: np.ndarray
    n_original: np.ndarray
    grid: np.ndarray
    vec: dict[str, np.ndarray]
    cover_lengths: np.ndarray | None = None
    cover_rows: np.ndarray | None = None
    summary: tuple[np.ndarray, np.ndarray, np.ndarray] | Future | None = None

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    @property
    def n_vectors(self) -> int:
        return int(self.lengths.sum())


def _csr(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    off = np.empty(len(lengths) + 1, np.int64)
    off[0] = start
    np.cumsum(lengths, out=off[1:])
    off[1:] += start
    return off


def _utf8_csr(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    return np.frombuffer(b"".join(encoded), np.uint8), _csr(np.array([len(e) for e in encoded], np.int64))


class SegmentWriter:
    """Write one segment file sequentially, block by block.

    ``n_vectors`` must be known up front: the vector datasets are contiguous (so readers can
    ``pread`` any document without HDF5 chunk lookups) and allocated at their final size.
    :meth:`close` adds the metadata columns, the whole-dataset checksums and the attributes,
    flushes and ``fsync``s; it returns the checksum of the segment's checksum record, which
    the manifest stores.
    """

    def __init__(self, path: str, *, dim: int, codec: str, rerank: bool, signal_names: Sequence[str],
                 merged: bool, n_vectors: int, summary_centroids: int) -> None:
        self.path, self.dim, self.codec = path, dim, codec
        self.merged, self.signal_names = merged, list(signal_names)
        self.summary_centroids = int(summary_centroids)
        self.n_vectors_total = int(n_vectors)
        self.f = h5py.File(path, "w", libver="latest", locking=False)
        f = self.f
        width = (dim + 63) // 64 * 8 if codec == "binary" else dim
        n = max(int(n_vectors), 0)
        f.create_dataset(L.VECTORS, (n, width), L.CODECS[codec])
        if codec == "int8":
            f.create_dataset(L.SCALES, (n,), np.float32)
        if codec == "binary" and rerank:
            f.create_dataset(L.RERANK, (n, dim), np.float16)
        self._contiguous = [n for n in (L.VECTORS, L.SCALES, L.RERANK) if n in f]
        # everything else is gathered here and written once, contiguous, at its exact size
        self._parts: dict[str, list[np.ndarray]] = {}
        self.n_docs = self.n_vectors = self.n_id_bytes = self.n_meta_bytes = self.n_cover_rows = self.n_centroids = 0
        self._lengths: list[np.ndarray] = []
        self._id_lengths: list[np.ndarray] = []
        self._meta_lengths: list[np.ndarray] = []
        self._cover_lengths: list[np.ndarray] = []
        self._summary_counts: list[np.ndarray] = []
        self._meta: list[str] = []
        self._doc_hashes: dict[str, list[np.ndarray]] = {g: [] for g in self._groups()}

    def _groups(self) -> list[str]:
        groups = ["vectors", "aux", "meta"]
        if L.RERANK in self.f:
            groups.append("rerank")
        return groups

    def _extend(self, name: str, data: np.ndarray) -> None:
        self._parts.setdefault(name, []).append(np.ascontiguousarray(data))

    def write(self, b: Block) -> None:
        """Append a block of documents (after every earlier block)."""
        if b.n_docs == 0:
            return
        f, v0, nv = self.f, self.n_vectors, b.n_vectors
        if v0 + nv > self.n_vectors_total:
            raise ValueError(f"segment writer: {v0 + nv} vectors exceed the {self.n_vectors_total} announced")
        for name in self._contiguous:
            f[name][v0 : v0 + nv] = b.vec[name]
        for name in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK, *(f"{L.SIGNALS}/{k}" for k in self.signal_names)):
            self._extend(name, b.vec[name])
        self._extend(L.DOC_N_ORIGINAL, np.asarray(b.n_original, np.int64))
        self._extend(L.DOC_GRID, np.asarray(b.grid, np.int32).reshape(-1, 2))
        id_bytes, id_off = _utf8_csr(b.ids)
        meta_bytes, meta_off = _utf8_csr(b.metadata)
        self._extend(L.DOC_ID_BYTES, id_bytes)
        self._extend(L.DOC_META_BYTES, meta_bytes)
        if self.merged:
            self._extend(L.COVERS_ROWS, np.asarray(b.cover_rows, np.int32))
            self._cover_lengths.append(np.asarray(b.cover_lengths, np.int64))
        # per-document hashes, over exactly the bytes a reader will check
        off = _csr(b.lengths)
        cov_off = _csr(b.cover_lengths) if self.merged else None
        hashes = {g: np.empty(b.n_docs, np.uint64) for g in self._groups()}
        for d in range(b.n_docs):
            s, e = int(off[d]), int(off[d + 1])
            hashes["vectors"][d] = _group_hash(b.vec, L.DOC_HASH_GROUPS["vectors"], s, e)
            if "rerank" in hashes:
                hashes["rerank"][d] = _group_hash(b.vec, L.DOC_HASH_GROUPS["rerank"], s, e)
            aux = [b.vec[n][s:e] for n in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK)]
            aux += [b.vec[f"{L.SIGNALS}/{k}"][s:e] for k in self.signal_names]
            if cov_off is not None:
                aux += [np.asarray(b.cover_lengths[s:e], np.int64),
                        np.asarray(b.cover_rows[cov_off[s] : cov_off[e]], np.int32)]
            hashes["aux"][d] = hash_bytes(*aux)
            hashes["meta"][d] = hash_bytes(meta_bytes[meta_off[d] : meta_off[d + 1]])
        for g, h in hashes.items():
            self._doc_hashes[g].append(h)
        if self.summary_centroids:  # last: it may still be computing on another thread (see Block)
            codes, scales, counts = b.summary.result() if isinstance(b.summary, Future) else b.summary
            self._extend(L.SUMMARY_CODES, codes)
            self._extend(L.SUMMARY_SCALES, scales)
            self._summary_counts.append(np.asarray(counts, np.int64))
        self._lengths.append(np.asarray(b.lengths, np.int64))
        self._id_lengths.append(np.diff(id_off))
        self._meta_lengths.append(np.diff(meta_off))
        self._meta.extend(b.metadata)
        self.n_docs += b.n_docs
        self.n_vectors += nv

    def close(self) -> str:
        """Finish the file; returns the hex checksum of its checksum record."""
        f = self.f
        try:
            if self.n_vectors != self.n_vectors_total:
                raise ValueError(f"segment writer: {self.n_vectors} vectors written, {self.n_vectors_total} announced")
            cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
            dim = self.dim
            kinds = {L.POSITIONS: (np.int32, ()), L.IMPORTANCE: (np.float32, ()), L.PATCH_MASK: (np.uint8, ()),
                     L.DOC_N_ORIGINAL: (np.int64, ()), L.DOC_GRID: (np.int32, (2,)), L.DOC_ID_BYTES: (np.uint8, ()),
                     L.DOC_META_BYTES: (np.uint8, ())}
            kinds.update({f"{L.SIGNALS}/{k}": (np.float32, ()) for k in self.signal_names})
            if self.merged:
                kinds[L.COVERS_ROWS] = (np.int32, ())
            if self.summary_centroids:
                kinds[L.SUMMARY_CODES] = (np.int8, (dim,))
                kinds[L.SUMMARY_SCALES] = (np.float32, ())
            for name, (dt, tail) in kinds.items():
                parts = self._parts.get(name)
                data = np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros((0, *tail), dt)
                f.create_dataset(name, data=data.reshape(-1, *tail) if tail else data)
            f.create_dataset(L.OFFSETS, data=_csr(cat(self._lengths)))
            f.create_dataset(L.DOC_ID_OFFSETS, data=_csr(cat(self._id_lengths)))
            f.create_dataset(L.DOC_META_OFFSETS, data=_csr(cat(self._meta_lengths)))
            if self.merged:
                f.create_dataset(L.COVERS_OFFSETS, data=_csr(cat(self._cover_lengths)))
            if self.summary_centroids:
                f.create_dataset(L.SUMMARY_OFFSETS, data=_csr(cat(self._summary_counts)))
            for g, parts in self._doc_hashes.items():
                f.create_dataset(f"{L.CHECKS}/{g}", data=np.concatenate(parts) if parts else np.zeros(0, np.uint64))
            _write_filters(f, self._meta)
            if L.SIGNALS not in f:
                f.create_group(L.SIGNALS)
            checks = {name: f"{hash_bytes(f[name][()]):016x}" for name in whole_hashed(f)}
            for key, value in L.segment_attrs(self.dim, self.codec, self.n_docs, self.n_vectors, self.summary_centroids).items():
                f.attrs[key] = value
            record = json.dumps(checks, sort_keys=True)
            f.attrs[L.A_CHECKS] = record
            L.set_segment_encoding(f)
            f.flush()
            fd = f.id.get_vfd_handle()
            os.fsync(fd)
        finally:
            f.close()
        return f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"

    def abort(self) -> None:
        if self.f.id.valid:
            self.f.close()


def _group_hash(vec: dict[str, np.ndarray], names: Sequence[str], s: int, e: int) -> int:
    return hash_bytes(*(vec[n][s:e] for n in names if n in vec))


def whole_hashed(f: h5py.File) -> list[str]:
    """Datasets hashed as a whole (everything not covered by a per-document hash group)."""
    per_doc = {n for names in L.DOC_HASH_GROUPS.values() for n in names}
    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and name not in per_doc and not name.startswith(L.SIGNALS + "/"):
            out.append(name)

    f.visititems(visit)
    return sorted(out)


def _write_filters(f: h5py.File, metadata: list[str]) -> None:
    """Columnar copies of every scalar top-level metadata field, for filters without JSON parsing."""
    grp = f.create_group(L.FILTERS)
    n = len(metadata)
    columns: dict[str, tuple[np.ndarray, list]] = {}
    for d, text in enumerate(metadata):
        for key, value in json.loads(text).items():
            if value is None or isinstance(value, (dict, list)):
                continue
            col = columns.get(key)
            if col is None:  # not setdefault: that would build two n-long columns per document
                col = columns[key] = (np.full(n, np.nan), [None] * n)
            num, strs = col
            if isinstance(value, str):
                strs[d] = value
            else:
                num[d] = float(value)
    for i, (key, (num, strs)) in enumerate(sorted(columns.items())):
        g = grp.create_group(f"f{i}")
        g.attrs[L.A_FIELD] = key
        g.create_dataset(L.FILTER_NUM, data=num)
        values = sorted({s for s in strs if s is not None})
        lookup = {s: j for j, s in enumerate(values)}
        g.create_dataset(L.FILTER_CODES, data=np.array([lookup.get(s, -1) if s is not None else -1 for s in strs], np.int32))
        dbytes, doff = _utf8_csr(values)
        g.create_dataset(L.FILTER_DICT_BYTES, data=dbytes)
        g.create_dataset(L.FILTER_DICT_OFFSETS, data=doff)


def open_h5_safely(path: str) -> h5py.File:
    """Open an HDF5 file read-only without the HDF5 file lock (segments are immutable)."""
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no file {path}") from None
        raise FormatError(f"cannot read {path} as HDF5: it is not an HDF5 file, or it is truncated or corrupted (h5py: {e})") from None


def check_no_outside_reads(f: h5py.File, path: str) -> None:
    """Refuse soft and external links, external raw storage and virtual datasets anywhere in ``f``."""
    stack = [("", f)]
    while stack:
        prefix, grp = stack.pop()
        for key in grp.keys():
            name = f"{prefix}/{key}" if prefix else key
            link = grp.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise FormatError(f"{path}: {name!r} is a {type(link).__name__}; colprune files hold no links (refused: "
                                  "it could make colprune read another file)")
            obj = grp[key]
            if isinstance(obj, h5py.Group):
                stack.append((name, obj))
                continue
            plist = obj.id.get_create_plist()
            if plist.get_external_count() > 0:
                raise FormatError(f"{path}: dataset {name!r} keeps its data in external files (refused: "
                                  "colprune reads only inside the file)")
            if plist.get_layout() == h5py.h5d.VIRTUAL:
                raise FormatError(f"{path}: dataset {name!r} is a virtual dataset (refused: it maps other files)")


def check_offsets(off: np.ndarray, n: int, total: int, what: str, *, strict: bool = False) -> np.ndarray:
    """CSR offsets of ``n`` rows over ``total`` values: start 0, non-decreasing, end at ``total``."""
    off = np.asarray(off)
    if off.dtype.kind not in "iu" or off.shape != (n + 1,):
        raise CorruptionError(f"{what}: expected ({n + 1},) integer offsets, found shape {off.shape} dtype {off.dtype}")
    off = off.astype(np.int64)
    if n + 1 and (off[0] != 0 or off[-1] != total):
        raise CorruptionError(f"{what}: offsets run from {off[0]} to {off[-1]}, expected 0 to {total}")
    steps = np.diff(off)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if bad.size:
        raise CorruptionError(f"{what}: offsets {'not increasing' if strict else 'decreasing'} at row {int(bad[0])}")
    return off


class Segment:
    """Read access to one sealed segment file; see the module docstring.

    Parameters
    ----------
    path : the segment file
    checksum : hex checksum of its checksum record, from the manifest
    dim, codec : what the collection expects
    """

    legacy = False

    def __init__(self, path: str, checksum: str | None, dim: int, codec: str) -> None:
        self.path = path
        self.f = open_h5_safely(path)
        try:
            self._open(checksum, dim, codec)
        except BaseException:
            self.close()
            raise

    # -- opening and validation ----------------------------------------------------------

    @_guarded
    def _open(self, checksum: str | None, dim: int, codec: str) -> None:
        f, path = self.f, self.path
        if L.text_attr(f, L.A_FORMAT) != L.SEGMENT_FORMAT:
            raise FormatError(f"{path} is not a colprune segment (format attribute {L.text_attr(f, L.A_FORMAT)!r})")
        record = L.text_attr(f, L.A_CHECKS)
        self.checks_record_hash = f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"
        if checksum is not None and self.checks_record_hash != checksum:
            raise CorruptionError(f"{path}: its checksum record does not match the manifest's ({checksum})")
        try:
            self.checks: dict[str, str] = json.loads(record)
        except json.JSONDecodeError:
            raise CorruptionError(f"{path}: unreadable checksum record") from None
        check_no_outside_reads(f, path)
        self.dim, self.codec = int(f.attrs[L.A_DIM]), L.text_attr(f, L.A_CODEC)
        if (self.dim, self.codec) != (dim, codec):
            raise CorruptionError(f"{path}: holds dim {self.dim} {self.codec}, the collection {dim} {codec}")
        self.n_docs, self.n_vectors = int(f.attrs[L.A_N_DOCS]), int(f.attrs[L.A_N_VECTORS])
        self.summary_centroids = int(f.attrs.get(L.A_SUMMARY_CENTROIDS, 0))
        self.signal_names = sorted(f[L.SIGNALS]) if L.SIGNALS in f else []
        self.has_rerank = L.RERANK in f
        self.merged = L.COVERS_OFFSETS in f
        self._verified_sets: set[str] = set()
        width = (dim + 63) // 64 * 8 if codec == "binary" else dim
        shapes = {L.VECTORS: (self.n_vectors, width), L.POSITIONS: (self.n_vectors,), L.IMPORTANCE: (self.n_vectors,),
                  L.PATCH_MASK: (self.n_vectors,), L.DOC_N_ORIGINAL: (self.n_docs,), L.DOC_GRID: (self.n_docs, 2),
                  L.OFFSETS: (self.n_docs + 1,), L.DOC_ID_OFFSETS: (self.n_docs + 1,),
                  L.DOC_META_OFFSETS: (self.n_docs + 1,)}
        dtypes = {L.VECTORS: L.CODECS[codec], L.POSITIONS: np.int32, L.IMPORTANCE: np.float32, L.PATCH_MASK: np.uint8,
                  L.DOC_N_ORIGINAL: np.int64, L.DOC_GRID: np.int32, L.OFFSETS: np.int64,
                  L.DOC_ID_OFFSETS: np.int64, L.DOC_META_OFFSETS: np.int64}
        if codec == "int8":
            shapes[L.SCALES], dtypes[L.SCALES] = (self.n_vectors,), np.float32
        if self.has_rerank:
            shapes[L.RERANK], dtypes[L.RERANK] = (self.n_vectors, dim), np.float16
        for k in self.signal_names:
            shapes[f"{L.SIGNALS}/{k}"], dtypes[f"{L.SIGNALS}/{k}"] = (self.n_vectors,), np.float32
        for g in ["vectors", "aux", "meta"] + (["rerank"] if self.has_rerank else []):
            shapes[f"{L.CHECKS}/{g}"], dtypes[f"{L.CHECKS}/{g}"] = (self.n_docs,), np.uint64
        for name, shape in shapes.items():
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise CorruptionError(f"{path}: missing dataset {name!r}")
            ds = f[name]
            if ds.shape != shape or ds.dtype != np.dtype(dtypes[name]):
                raise CorruptionError(f"{path}: {name} is {ds.shape} {ds.dtype}, expected {shape} {np.dtype(dtypes[name])}")
        for name in whole_hashed(f):
            if name not in self.checks:
                raise CorruptionError(f"{path}: dataset {name!r} has no checksum")
        # the arrays every read relies on, checked before anything else is read
        self.offsets = check_offsets(self._whole(L.OFFSETS), self.n_docs, self.n_vectors, f"{path}: offsets", strict=True)
        self._id_off = check_offsets(self._whole(L.DOC_ID_OFFSETS), self.n_docs, f[L.DOC_ID_BYTES].shape[0],
                                     f"{path}: docs/id_offsets", strict=True)
        self._meta_off = check_offsets(self._whole(L.DOC_META_OFFSETS), self.n_docs, f[L.DOC_META_BYTES].shape[0],
                                       f"{path}: docs/metadata_offsets", strict=True)
        self._doc_checks = {g: self._whole(f"{L.CHECKS}/{g}") for g in ("vectors", "aux", "meta", "rerank") if f"{L.CHECKS}/{g}" in f}
        self._verified = {g: np.zeros(self.n_docs, bool) for g in self._doc_checks}
        if self.merged:
            self._cov_off = check_offsets(self._whole(L.COVERS_OFFSETS), self.n_vectors, f[L.COVERS_ROWS].shape[0],
                                          f"{path}: covers/offsets")
        # raw file ranges of the contiguous datasets, read with pread
        size = os.path.getsize(path)
        self._raw: dict[str, tuple[int, np.dtype, tuple]] = {}
        for name in (L.VECTORS, L.SCALES, L.RERANK):
            if name not in f:
                continue
            ds = f[name]
            plist = ds.id.get_create_plist()
            if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters():
                raise CorruptionError(f"{path}: {name} must be contiguous and unfiltered")
            start = ds.id.get_offset()
            nbytes = ds.id.get_storage_size()
            want = int(np.prod(ds.shape)) * ds.dtype.itemsize
            if want and (start is None or nbytes != want or start < 0 or start + nbytes > size):
                raise CorruptionError(f"{path}: {name} lies outside the file (truncated?)")
            self._raw[name] = (start or 0, ds.dtype, ds.shape[1:])
        self._fd = os.open(path, os.O_RDONLY)
        self._ids: list[str] | None = None
        self._filters: dict[str, tuple] | None = None
        self._summary = None

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        if self.f.id.valid:
            self.f.close()

    @_guarded
    def _whole(self, name: str) -> np.ndarray:
        """A whole small dataset, verified against its recorded checksum."""
        data = self.f[name][()]
        want = self.checks.get(name)
        if want is None:
            raise CorruptionError(f"{self.path}: dataset {name!r} has no checksum")
        if f"{hash_bytes(data):016x}" != want:
            raise CorruptionError(f"{self.path}: dataset {name!r} does not match its checksum (damaged)")
        return data

    # -- raw reads ------------------------------------------------------------------------

    @_guarded
    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows ``a..b`` of a per-vector dataset, unverified (callers verify per document)."""
        if name in self._raw:
            start, dt, tail = self._raw[name]
            row = dt.itemsize * int(np.prod(tail, dtype=np.int64))
            out = np.empty((b - a, *tail), dt)
            view = memoryview(out.reshape(-1).view(np.uint8))
            got = os.preadv(self._fd, [view], start + a * row) if b > a else 0
            if got != (b - a) * row:
                raise CorruptionError(f"{self.path}: short read of {name} rows {a}..{b} (truncated?)")
            return out
        return self.f[name][a:b]

    @_guarded
    def verify_docs(self, group: str, lo: int, hi: int, data: dict[str, np.ndarray] | None = None, base: int = 0) -> None:
        """Check documents ``lo..hi`` against their per-document hashes (once per process)."""
        if group not in self._doc_checks:
            return
        done = self._verified[group]
        todo = np.flatnonzero(~done[lo:hi]) + lo
        if todo.size == 0:
            return
        want = self._doc_checks[group]
        off = self.offsets
        names = [n for n in L.DOC_HASH_GROUPS[group] if n in self.f]
        for c0 in range(0, todo.size, 4096):  # one read per dataset for a run of documents, not one per document
            run = todo[c0 : c0 + 4096]
            s0, e0 = int(off[run[0]]), int(off[run[-1] + 1])
            if group == "meta":
                m0 = int(self._meta_off[run[0]])
                meta = self.f[L.DOC_META_BYTES][m0 : int(self._meta_off[run[-1] + 1])]
            elif group == "aux":
                parts = self._aux_parts(s0, e0)
            elif data is None:
                rows = {n: self.rows(n, s0, e0) for n in names}
            for d in run:
                s, e = int(off[d]), int(off[d + 1])
                if group == "meta":
                    got = hash_bytes(meta[self._meta_off[d] - m0 : self._meta_off[d + 1] - m0])
                elif group == "aux":
                    got = hash_bytes(*self._aux_slice(parts, s0, s, e))
                elif data is not None:
                    got = hash_bytes(*(data[n][s - base : e - base] for n in names))
                else:
                    got = hash_bytes(*(rows[n][s - s0 : e - s0] for n in names))
                if got != int(want[d]):
                    raise CorruptionError(f"{self.path}: document {int(d)} ({group} rows {s}..{e}) does not match its checksum (damaged)")
        done[todo] = True

    def _aux_slice(self, parts: list[np.ndarray], s0: int, s: int, e: int) -> list[np.ndarray]:
        """Rows ``s..e`` of what :meth:`_aux_parts` read for rows ``s0..``."""
        n = len(parts) - (2 if self.merged else 0)
        out = [p[s - s0 : e - s0] for p in parts[:n]]
        if self.merged:
            c = self._cov_off
            out += [parts[n][s - s0 : e - s0], parts[n + 1][c[s] - c[s0] : c[e] - c[s0]]]
        return out

    def _aux_parts(self, s: int, e: int) -> list[np.ndarray]:
        f = self.f
        parts = [f[n][s:e] for n in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK)]
        parts += [f[f"{L.SIGNALS}/{k}"][s:e] for k in self.signal_names]
        if self.merged:
            c = self._cov_off
            parts += [np.diff(c[s : e + 1]).astype(np.int64), f[L.COVERS_ROWS][c[s] : c[e]]]
        return parts

    #: the whole segment's vectors held in memory (set by the index within its memory budget)
    resident: dict[str, np.ndarray] | None = None

    @_guarded
    def make_resident(self) -> int:
        """Read (and verify) every vector of the segment into memory; returns the bytes held."""
        if self.resident is None:
            data = self.read_vectors(0, self.n_docs)
            if self.has_rerank:
                data.update(self.read_vectors(0, self.n_docs, rerank=True))
            self.resident = data
        return sum(v.nbytes for v in self.resident.values())

    def vector_bytes(self) -> int:
        names = [n for n in (L.VECTORS, L.SCALES, L.RERANK) if n in self.f]
        return sum(int(np.prod(self.f[n].shape)) * self.f[n].dtype.itemsize for n in names)

    @_guarded
    def read_docs(self, docs: np.ndarray, *, rerank: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Stored vectors of scattered documents ``docs`` (sorted, unique), verified, as one CSR store.

        Returns ``(data, lengths)``: dataset name -> rows of every listed document back to back,
        and each document's vector count. One ``pread`` per run of consecutive documents, no
        HDF5 call: this is the two-stage rerank's read path.
        """
        docs = np.asarray(docs, np.int64)
        names = [L.RERANK] if rerank else [n for n in (L.VECTORS, L.SCALES) if n in self._raw or n in self.f]
        off = self.offsets
        lengths = off[docs + 1] - off[docs]
        breaks = np.flatnonzero(np.diff(docs) != 1) + 1  # runs of consecutive documents
        if self.resident is not None or any(n not in self._raw for n in names):
            runs = [self.read_vectors(int(r[0]), int(r[-1]) + 1, rerank=rerank) for r in np.split(docs, breaks) if r.size]
            return {n: np.concatenate([r[n] for r in runs]) for n in names}, lengths
        total = int(lengths.sum())
        starts = np.zeros(docs.size + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        first = np.r_[0, breaks]
        last = np.r_[breaks, docs.size]
        data = {}
        for n in names:
            start, dt, tail = self._raw[n]
            row = dt.itemsize * int(np.prod(tail, dtype=np.int64))
            out = np.empty((total, *tail), dt)
            flat = memoryview(out.reshape(-1).view(np.uint8))
            for i, j in zip(first.tolist(), last.tolist()):
                a, b = int(off[docs[i]]), int(off[docs[j - 1] + 1])
                dst = int(starts[i]) * row
                if b > a and os.preadv(self._fd, [flat[dst : dst + (b - a) * row]], start + a * row) != (b - a) * row:
                    raise CorruptionError(f"{self.path}: short read of {n} rows {a}..{b} (truncated?)")
            data[n] = out
        group = "rerank" if rerank else "vectors"
        if group in self._doc_checks:
            want, done = self._doc_checks[group], self._verified[group]
            for i in np.flatnonzero(~done[docs]).tolist():
                s, e = int(starts[i]), int(starts[i + 1])
                if hash_bytes(*(data[n][s:e] for n in names)) != int(want[docs[i]]):
                    d = int(docs[i])
                    raise CorruptionError(f"{self.path}: document {d} ({group} rows {int(off[d])}..{int(off[d + 1])}) "
                                          "does not match its checksum (damaged)")
            done[docs] = True
        for n in names:
            v = data[n]
            if v.dtype.kind == "f" and v.ndim == 2 and first_nonfinite_row(v) >= 0:
                raise CorruptionError(f"{self.path}: non-finite stored vectors in documents {docs.tolist()[:5]}...")
        return data, lengths

    @_guarded
    def read_vectors(self, lo: int, hi: int, *, rerank: bool = False) -> dict[str, np.ndarray]:
        """Stored vectors of documents ``lo..hi`` (and int8 scales), verified; keys are dataset names."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        names = [L.RERANK] if rerank else [n for n in (L.VECTORS, L.SCALES) if n in self._raw or n in self.f]
        if self.resident is not None:
            return {n: self.resident[n][a:b] for n in names}
        data = {n: self.rows(n, a, b) for n in names}
        self.verify_docs("rerank" if rerank else "vectors", lo, hi, data, a)
        if not rerank:
            for n in (L.VECTORS, L.RERANK):
                v = data.get(n)
                if v is not None and v.dtype.kind == "f" and first_nonfinite_row(v) >= 0:
                    raise CorruptionError(f"{self.path}: non-finite stored vectors in documents {lo}..{hi}")
        return data

    # -- per-document data ----------------------------------------------------------------

    @property
    @_guarded
    def ids(self) -> list[str]:
        if self._ids is None:
            raw = self._whole(L.DOC_ID_BYTES).tobytes()
            off = self._id_off
            try:
                ids = [raw[off[i] : off[i + 1]].decode("utf-8") for i in range(self.n_docs)]
            except UnicodeDecodeError:
                raise CorruptionError(f"{self.path}: ids are not UTF-8") from None
            if len(set(ids)) != len(ids):
                raise CorruptionError(f"{self.path}: ids are not unique")
            self._ids = ids
        return self._ids

    @_guarded
    def metadata(self, row: int) -> dict[str, Any]:
        self.verify_docs("meta", row, row + 1)
        raw = self.f[L.DOC_META_BYTES][self._meta_off[row] : self._meta_off[row + 1]].tobytes()
        return json.loads(raw.decode("utf-8"))

    @_guarded
    def metadata_range(self, lo: int, hi: int) -> list[dict[str, Any]]:
        self.verify_docs("meta", lo, hi)
        off = self._meta_off
        raw = self.f[L.DOC_META_BYTES][off[lo] : off[hi]].tobytes()
        base = int(off[lo])
        return [json.loads(raw[int(off[i]) - base : int(off[i + 1]) - base].decode("utf-8")) for i in range(lo, hi)]

    @_guarded
    def doc_table(self, name: str) -> np.ndarray:
        key = f"_t_{name}"
        if key not in self.__dict__:
            self.__dict__[key] = self._whole(name)
        return self.__dict__[key]

    @_guarded
    def aux(self, lo: int, hi: int) -> dict[str, Any]:
        """Positions, importance, patch flags, signals and covers of documents ``lo..hi``, verified."""
        self.verify_docs("aux", lo, hi)
        f = self.f
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        out: dict[str, Any] = {n: f[n][a:b] for n in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK)}
        out["signals"] = {k: f[f"{L.SIGNALS}/{k}"][a:b] for k in self.signal_names}
        if self.merged:
            c = self._cov_off
            rows = f[L.COVERS_ROWS][c[a] : c[b]].astype(np.int64)
            rel = c[a : b + 1] - c[a]
            out["covers"] = [rows[rel[i] : rel[i + 1]] for i in range(b - a)]
        return out

    def forget_summary(self) -> None:
        """Drop the summary read by :meth:`summary` (the next call reads and verifies it again)."""
        self._summary = None

    @_guarded
    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(codes (C, dim) int8, scales (C,), offsets (n_docs + 1,))`` or None when not stored."""
        if not self.summary_centroids:
            return None
        if self._summary is None:
            codes = self._whole(L.SUMMARY_CODES)
            scales = self._whole(L.SUMMARY_SCALES)
            off = check_offsets(self._whole(L.SUMMARY_OFFSETS), self.n_docs, codes.shape[0], f"{self.path}: summary/offsets")
            if codes.shape[1:] != (self.dim,) or scales.shape != (codes.shape[0],) or not np.isfinite(scales).all():
                raise CorruptionError(f"{self.path}: summary arrays have inconsistent shapes")
            self._summary = (codes, scales, off)
        return self._summary

    @_guarded
    def filter_columns(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """field -> ``(numbers (n,) float64, string codes (n,) int32, dictionary)``."""
        if self._filters is None:
            cols = {}
            grp = self.f.get(L.FILTERS)
            for key in (grp.keys() if grp is not None else ()):
                base = f"{L.FILTERS}/{key}"
                field = L.text_attr(self.f[base], L.A_FIELD)
                num = self._whole(f"{base}/{L.FILTER_NUM}")
                codes = self._whole(f"{base}/{L.FILTER_CODES}")
                dbytes = self._whole(f"{base}/{L.FILTER_DICT_BYTES}").tobytes()
                doff = self._whole(f"{base}/{L.FILTER_DICT_OFFSETS}")
                n_values = doff.shape[0] - 1
                doff = check_offsets(doff, n_values, len(dbytes), f"{self.path}: {base}")
                if num.shape != (self.n_docs,) or codes.shape != (self.n_docs,) or (codes >= n_values).any():
                    raise CorruptionError(f"{self.path}: filter column {field!r} is inconsistent")
                cols[field] = (num, codes, [dbytes[doff[i] : doff[i + 1]].decode("utf-8") for i in range(n_values)])
            self._filters = cols
        return self._filters

    @_guarded
    def verify(self) -> None:
        """Check every byte of the segment against its checksums (raises CorruptionError)."""
        for name in whole_hashed(self.f):
            self._whole(name)
        step = 4096
        for lo in range(0, self.n_docs, step):
            hi = min(lo + step, self.n_docs)
            for g in self._doc_checks:
                if g in ("vectors", "rerank"):
                    self._verified[g][lo:hi] = False
                    self.read_vectors(lo, hi, rerank=g == "rerank")
                else:
                    self._verified[g][lo:hi] = False
                    self.verify_docs(g, lo, hi)
        self.ids  # noqa: B018  (decodes: UTF-8 check)

    def int8_corrections(self, codes: np.ndarray) -> np.ndarray:
        return int8_corrections(codes)


class LegacySegment(Segment):
    """A whole version 1 or 2 index file, read through the segment interface (no checksums)."""

    legacy = True

    def __init__(self, path: str, f: h5py.File, version: int, dim: int, codec: str) -> None:
        self.path, self.f, self.version = path, f, version
        try:
            check_no_outside_reads(f, path)
            self.dim, self.codec = dim, codec
            self.n_docs, self.n_vectors = (int(x) for x in f[L.COMMIT][:2])
            self.summary_centroids = 0
            self.signal_names = sorted(f[L.SIGNALS]) if L.SIGNALS in f else []
            self.has_rerank = L.RERANK in f
            self.merged = L.COVERS_OFFSETS in f
            n, v = self.n_docs, self.n_vectors
            if n < 0 or v < 0 or f[L.OFFSETS].shape[0] < n + 1 or f[L.VECTORS].shape[0] < v:
                raise FormatError(f"{path} is damaged: its commit record ({n} docs, {v} vectors) exceeds its datasets")
            per_vec = [x for x in (L.VECTORS, L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK, L.SCALES, L.RERANK) if x in f]
            for name in per_vec + [f"{L.SIGNALS}/{k}" for k in self.signal_names]:
                if f[name].shape[0] < v:
                    raise FormatError(f"{path} is damaged: {name} has fewer than {v} entries")
            for name in (L.DOC_N_ORIGINAL, L.DOC_GRID):
                if f[name].shape[0] < n:
                    raise FormatError(f"{path} is damaged: {name} has fewer than {n} entries")
            width = (dim + 63) // 64 * 8 if codec == "binary" else dim
            if f[L.VECTORS].shape[1] != width:
                raise FormatError(f"{path} is damaged: vectors have width {f[L.VECTORS].shape[1]}, expected {width} for dim {dim}")
            off = f[L.OFFSETS][: n + 1]
            if int(off[n]) != v:
                raise FormatError(f"{path} is damaged: offsets[{n}] = {int(off[n])} but {v} vectors are committed")
            self.offsets = check_offsets(off, n, v, f"{path}: offsets")
            self._strings_cache: dict[str, list[str]] = {}
            for fld in ("ids", "metadata"):
                data, offsets = L.STRINGS[version][fld]
                if offsets is None:
                    if f[data].shape[0] < n:
                        raise FormatError(f"{path} is damaged: {data} has fewer than {n} entries")
                elif f[offsets].shape[0] < n + 1 or int(f[offsets][n]) > f[data].shape[0]:
                    raise FormatError(f"{path} is damaged: {offsets} does not cover {n} documents")
                else:
                    check_offsets(f[offsets][: n + 1], n, int(f[offsets][n]), f"{path}: {offsets}")
            if self.merged:
                self._cov_off = f[L.COVERS_OFFSETS][: v + 1].astype(np.int64)
                check_offsets(self._cov_off, v, int(self._cov_off[-1]), f"{path}: covers/offsets")
                if self._cov_off[-1] > f[L.COVERS_ROWS].shape[0]:
                    raise FormatError(f"{path} is damaged: covers/offsets exceed covers/rows")
        except BaseException:
            f.close()
            raise
        self._fd = None
        self._raw = {}
        self._doc_checks = {}
        self._verified = {}
        self._ids = None
        self._filters = None
        self._summary = None
        self.checks = {}
        self.checks_record_hash = None

    @_guarded
    def _strings(self, fld: str) -> list[str]:
        if fld not in self._strings_cache:
            data, offsets = L.STRINGS[self.version][fld]
            n = self.n_docs
            if offsets is None:
                self._strings_cache[fld] = list(self.f[data].asstr()[:n])
            else:
                off = self.f[offsets][: n + 1].astype(np.int64)
                raw = self.f[data][: int(off[-1])].tobytes()
                self._strings_cache[fld] = [raw[off[i] : off[i + 1]].decode("utf-8") for i in range(n)]
        return self._strings_cache[fld]

    @property
    @_guarded
    def ids(self) -> list[str]:
        return self._strings("ids")

    @_guarded
    def metadata(self, row: int) -> dict[str, Any]:
        return json.loads(self._strings("metadata")[row])

    @_guarded
    def metadata_range(self, lo: int, hi: int) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self._strings("metadata")[lo:hi]]

    @_guarded
    def doc_table(self, name: str) -> np.ndarray:
        return self.f[name][: self.n_docs]

    @_guarded
    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        return self.f[name][a:b]

    @_guarded
    def summary(self):
        return None

    @_guarded
    def filter_columns(self):
        if self._filters is None:
            # old files have no columns: built from the JSON once per process
            meta = [json.dumps(m) for m in self.metadata_range(0, self.n_docs)]
            cols: dict[str, tuple] = {}
            n = self.n_docs
            for d, text in enumerate(meta):
                for key, value in json.loads(text).items():
                    if value is None or isinstance(value, (dict, list)):
                        continue
                    num, strs = cols.setdefault(key, (np.full(n, np.nan), [None] * n))
                    if isinstance(value, str):
                        strs[d] = value
                    else:
                        num[d] = float(value)
            out = {}
            for key, (num, strs) in cols.items():
                values = sorted({s for s in strs if s is not None})
                lookup = {s: j for j, s in enumerate(values)}
                out[key] = (num, np.array([lookup[s] if s is not None else -1 for s in strs], np.int32), values)
            self._filters = out
        return self._filters

    @_guarded
    def verify(self) -> None:
        pass
