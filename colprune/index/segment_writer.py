"""Writing a segment: the immutable HDF5 file a format-3 collection is made of.

A segment is written once by :class:`SegmentWriter` (into the collection's ``tmp/``, then
renamed into ``segments/``) and never modified. The writer records, beside the data, the
checksums the validating reader (:mod:`~colprune.index.segment_reader`) verifies: per document
for vectors, metadata and per-vector data; per dataset for the rest.

Every byte HDF5 writes goes through :class:`SegmentFile` (h5py's ``fileobj`` driver), the one
place a write can fail: an I/O error (disk full, quota, ``EIO``, ``EFBIG``) never reaches HDF5,
whose state a failed flush corrupts (a later file in the same process can segfault). The writer
stops at the first error and raises it as the ``OSError`` it was; the caller turns it into a
:class:`~colprune.errors.WriteError`.
"""

from __future__ import annotations

import errno
import json
import os
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import xxhash

from ..kernels import inverted_lists
from . import layout as L
from .segment_checks import hash_bytes, whole_hashed

__all__ = ["Block", "SegmentWriter", "SegmentFile", "metadata_columns"]


@dataclass
class Block:
    """Consecutive documents in stored form, as a segment holds them.

    ``vec`` maps per-vector dataset names (``vectors``, ``scales``, ``rerank_vectors``, ``codes``,
    ``positions``, ``importance``, ``patch_mask``, ``signals/<name>``) to ``(N, ...)`` arrays;
    ``lengths`` ``(n,)`` gives each document's vector count. ``cover_lengths`` ``(N,)`` and
    ``cover_rows`` are the merged rows each vector covers (merged collections only);
    ``summary`` is ``(codes (C, dim) int8, scales (C,), counts (n,))``, a Future of it (computed
    while the writer copies the vectors), or None. ``sq_error`` is the summed squared reconstruction
    error of a residual block's vectors as encoded (None when not measured: copied in stored form).
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
    sq_error: float | None = None

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


class SegmentFile:
    """The file a segment is written to, as h5py's ``fileobj`` driver sees it (seek, tell, read, write,
    truncate, flush): ``pwrite``/``pread`` on a descriptor of a new file (never a symlink).

    The first ``OSError`` of a write, read or truncate is kept in :attr:`error` and never raised to
    HDF5. From then on nothing more goes to disk: what HDF5 writes is held in memory instead (only
    what it writes between the error and the writer's next check, plus its final flush), so it reads
    back what it wrote and closes the file normally.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        self.fd: int | None = os.open(path, flags, 0o644)
        self.pos = self.size = 0
        self.error: OSError | None = None
        self._held: list[tuple[int, bytes]] = []

    def _fail(self, e: OSError) -> None:
        if self.error is None:
            self.error = e

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = int(pos) if whence == 0 else self.pos + int(pos) if whence == 1 else self.size + int(pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        done = 0
        if self.error is None:
            try:
                while done < n:
                    step = os.pwrite(self.fd, view[done:], self.pos + done)
                    if step <= 0:  # a regular file that takes nothing: out of space
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
                    done += step
            except OSError as e:
                self._fail(e)
        if self.error is not None:
            self._held.append((self.pos, bytes(view)))
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def read(self, size: int = -1) -> bytes:
        size = max(0, self.size - self.pos) if size is None or size < 0 else int(size)
        out = bytearray(size)
        try:
            got = os.pread(self.fd, size, self.pos) if size else b""
            out[: len(got)] = got
        except OSError as e:
            self._fail(e)
        for at, held in self._held:  # in write order: a later write wins
            lo, hi = max(at, self.pos), min(at + len(held), self.pos + size)
            if lo < hi:
                out[lo - self.pos : hi - self.pos] = held[lo - at : hi - at]
        self.pos += size
        return bytes(out)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else int(size)
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as e:
                self._fail(e)
        self.size = size
        return size

    def flush(self) -> None:
        pass

    def sync(self) -> None:
        """``fsync`` the file; an error (some file systems report a full disk only here) is kept in :attr:`error`."""
        if self.error is None:
            try:
                os.fsync(self.fd)
            except OSError as e:
                self._fail(e)

    def close(self) -> None:
        """Close the descriptor (an error closing it is kept in :attr:`error`)."""
        fd, self.fd = self.fd, None
        self._held = []
        if fd is not None:
            try:
                os.close(fd)
            except OSError as e:
                self._fail(e)


class SegmentWriter:
    """Write one segment file sequentially, block by block.

    ``n_vectors`` must be known up front: the vector datasets are contiguous (so readers can
    ``pread`` any document without HDF5 chunk lookups) and allocated at their final size.
    :meth:`close` adds the metadata columns, the whole-dataset checksums and the attributes,
    flushes and ``fsync``s; it returns the checksum of the segment's checksum record, which
    the manifest stores. An I/O error raises its ``OSError`` (see :class:`SegmentFile`); the
    caller then calls :meth:`abort` and removes the file.
    """

    def __init__(self, path: str, *, dim: int, codec: str, rerank: bool, signal_names: Sequence[str],
                 merged: bool, n_vectors: int, summary_centroids: int, format_version: int = L.FORMAT_VERSION,
                 codebook: tuple[str, int] | None = None) -> None:
        self.path, self.dim, self.codec = path, dim, codec
        self.format_version = int(format_version)
        self.codebook = codebook  # (name, K): residual codecs
        self.sq_error: float | None = 0.0
        self.merged, self.signal_names = merged, list(signal_names)
        self.summary_centroids = int(summary_centroids)
        self.n_vectors_total = int(n_vectors)
        self.sink = SegmentFile(path)
        try:
            self.f = h5py.File(self.sink, "w", libver="latest", locking=False)
        except BaseException:
            self.sink.close()
            raise
        f = self.f
        n = max(int(n_vectors), 0)
        f.create_dataset(L.VECTORS, (n, L.vector_width(dim, codec)), L.CODECS[codec])
        if codec == "int8":
            f.create_dataset(L.SCALES, (n,), np.float32)
        if codec == "binary" and rerank:
            f.create_dataset(L.RERANK, (n, dim), np.float16)
        if codebook is not None:
            f.create_dataset(L.CODES, (n,), np.uint16)
        self._contiguous = [n for n in (L.VECTORS, L.SCALES, L.RERANK, L.CODES) if n in f]
        # everything else is gathered here and written once, contiguous, at its exact size
        self._parts: dict[str, list[np.ndarray]] = {}
        self.n_docs = self.n_vectors = 0
        self._lengths: list[np.ndarray] = []
        self._id_lengths: list[np.ndarray] = []
        self._meta_lengths: list[np.ndarray] = []
        self._cover_lengths: list[np.ndarray] = []
        self._summary_counts: list[np.ndarray] = []
        self._meta: list[str] = []
        self._codes: list[np.ndarray] = []
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
            self._check()
        if self.codebook is not None:
            self._codes.append(np.asarray(b.vec[L.CODES], np.uint16))
            self.sq_error = None if self.sq_error is None or b.sq_error is None else self.sq_error + b.sq_error
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
        for g, h in self._block_hashes(b, meta_bytes, meta_off).items():
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

    def _block_hashes(self, b: Block, meta_bytes: np.ndarray, meta_off: np.ndarray) -> dict[str, np.ndarray]:
        """Per-document hashes of a block, group -> ``(n,)`` uint64, over exactly the bytes a reader will check."""
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
        return hashes

    def _check(self) -> None:
        """Raise the first I/O error of the file, if any (HDF5 never saw it)."""
        if self.sink.error is not None:
            raise self.sink.error

    def close(self) -> str:
        """Finish the file; returns the hex checksum of its checksum record.

        Raises the ``OSError`` of a failed write; the file is then closed (call :meth:`abort` anyway).
        """
        f = self.f
        if self.n_vectors != self.n_vectors_total:
            raise ValueError(f"segment writer: {self.n_vectors} vectors written, {self.n_vectors_total} announced")
        self._check()
        self._write_gathered()
        self._check()
        _write_filters(f, self._meta)
        if L.SIGNALS not in f:
            f.create_group(L.SIGNALS)
        self._check()
        checks = {name: f"{hash_bytes(f[name][()]):016x}" for name in whole_hashed(f)}
        self._check()
        attrs = L.segment_attrs(self.dim, self.codec, self.n_docs, self.n_vectors, self.summary_centroids,
                                version=self.format_version, codebook=None if self.codebook is None else self.codebook[0])
        for key, value in attrs.items():
            f.attrs[key] = value
        record = json.dumps(checks, sort_keys=True)
        f.attrs[L.A_CHECKS] = record
        L.set_segment_encoding(f, self.format_version)
        f.close()
        self.sink.sync()
        self.sink.close()
        self._check()
        return f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"

    def _write_gathered(self) -> None:
        """Write what :meth:`write` gathered: per-vector and per-document columns, offsets, per-document hashes."""
        f = self.f
        kinds = {L.POSITIONS: (np.int32, ()), L.IMPORTANCE: (np.float32, ()), L.PATCH_MASK: (np.uint8, ()),
                 L.DOC_N_ORIGINAL: (np.int64, ()), L.DOC_GRID: (np.int32, (2,)), L.DOC_ID_BYTES: (np.uint8, ()),
                 L.DOC_META_BYTES: (np.uint8, ())}
        kinds.update({f"{L.SIGNALS}/{k}": (np.float32, ()) for k in self.signal_names})
        if self.merged:
            kinds[L.COVERS_ROWS] = (np.int32, ())
        if self.summary_centroids:
            kinds[L.SUMMARY_CODES] = (np.int8, (self.dim,))
            kinds[L.SUMMARY_SCALES] = (np.float32, ())
        for name, (dt, tail) in kinds.items():
            parts = self._parts.get(name)
            data = np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros((0, *tail), dt)
            f.create_dataset(name, data=data.reshape(-1, *tail) if tail else data)
        offsets = {L.OFFSETS: self._lengths, L.DOC_ID_OFFSETS: self._id_lengths, L.DOC_META_OFFSETS: self._meta_lengths}
        if self.merged:
            offsets[L.COVERS_OFFSETS] = self._cover_lengths
        if self.summary_centroids:
            offsets[L.SUMMARY_OFFSETS] = self._summary_counts
        for name, lengths in offsets.items():
            f.create_dataset(name, data=_csr(np.concatenate(lengths) if lengths else np.zeros(0, np.int64)))
        for g, parts in self._doc_hashes.items():
            f.create_dataset(f"{L.CHECKS}/{g}", data=np.concatenate(parts) if parts else np.zeros(0, np.uint64))
        if self.codebook is not None:  # the inverted lists: centroid -> the segment's pages holding a vector of it
            codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.uint16)
            doc_off = f[L.OFFSETS][()]
            list_off, list_docs = inverted_lists(codes, doc_off, int(self.codebook[1]))
            f.create_dataset(L.IVF_OFFSETS, data=np.asarray(list_off, np.int64))
            f.create_dataset(L.IVF_DOCS, data=np.asarray(list_docs, np.int32))

    def abort(self) -> None:
        """Close the file unfinished (the caller removes it); never raises.

        HDF5 saw no I/O error (see :class:`SegmentFile`), so closing it is safe.
        """
        try:
            if self.f.id.valid:
                self.f.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away; its error is the caller's
            pass
        self.sink.close()


def _group_hash(vec: dict[str, np.ndarray], names: Sequence[str], s: int, e: int) -> int:
    return hash_bytes(*(vec[n][s:e] for n in names if n in vec))


def metadata_columns(metadata: Iterable[dict[str, Any]], n: int) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Every scalar top-level field of ``n`` documents' metadata, as a filter column.

    Returns field -> ``(numbers (n,) float64, NaN where missing or not a number; string codes
    (n,) int32 into the sorted dictionary, -1 where missing; dictionary)``, fields in order of
    first appearance.
    """
    columns: dict[str, tuple[np.ndarray, list]] = {}
    for d, meta in enumerate(metadata):
        for key, value in meta.items():
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
    out = {}
    for key, (num, strs) in columns.items():
        values = sorted({s for s in strs if s is not None})
        lookup = {s: j for j, s in enumerate(values)}
        out[key] = (num, np.array([lookup[s] if s is not None else -1 for s in strs], np.int32), values)
    return out


def _write_filters(f: h5py.File, metadata: list[str]) -> None:
    """Columnar copies of every scalar top-level metadata field, for filters without JSON parsing."""
    grp = f.create_group(L.FILTERS)
    columns = metadata_columns((json.loads(text) for text in metadata), len(metadata))
    for i, (key, (num, codes, values)) in enumerate(sorted(columns.items())):
        g = grp.create_group(f"f{i}")
        g.attrs[L.A_FIELD] = key
        g.create_dataset(L.FILTER_NUM, data=num)
        g.create_dataset(L.FILTER_CODES, data=codes)
        dbytes, doff = _utf8_csr(values)
        g.create_dataset(L.FILTER_DICT_BYTES, data=dbytes)
        g.create_dataset(L.FILTER_DICT_OFFSETS, data=doff)
