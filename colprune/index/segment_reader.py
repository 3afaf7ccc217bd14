"""Reading a segment: the validating reader of the immutable HDF5 files of a format-3 collection.

:class:`Segment` opens one segment for reading, as a regular file (no link, FIFO or device,
:mod:`~colprune.index.files`). Before any array is read it checks the file's structure: every
attribute typed and in range, no links or storage that leave the file and no link cycles, every
dataset's exact shape and dtype against the segment's counts, and every dataset's declared
bytes backed by unfiltered storage inside the file (so a small file cannot make it allocate
gigabytes). It then checks the CSR offsets before any array reaches a kernel, and verifies every
byte it returns against the checksums recorded at write time (per document for vectors,
metadata and per-vector data; per dataset for the rest).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import h5py
import numpy as np
import xxhash

from ..errors import CorruptionError, FormatError
from ..kernels import inverted_lists
from ..kernels.checks import first_nonfinite_row
from . import layout as L
from . import segment_checks as SC
from .files import open_h5, read_into
from .records import MAX_ID_BYTES
from .segment_checks import check_offsets, guarded, hash_bytes, whole_hashed
from .segment_writer import metadata_columns

__all__ = ["Segment"]


class Segment:
    """Read access to one sealed segment file; see the module docstring.

    Parameters
    ----------
    path : the segment file
    checksum : hex checksum of its checksum record, from the manifest
    dim, codec : what the collection expects
    codebook : ``(name, K)`` of the collection's codebook (residual codecs): the segment must name it
    """

    legacy = False

    def __init__(self, path: str, checksum: str | None, dim: int, codec: str,
                 codebook: tuple[str, int] | None = None) -> None:
        self.path = path
        self._reset()
        self.codebook_name, self.n_centroids = codebook if codebook is not None else (None, 0)
        self.f, self._fd, self.file_size = open_h5(path)
        try:
            self._open(checksum, dim, codec)
        except BaseException:
            self.close()
            raise

    def _reset(self) -> None:
        """The read state before validation: nothing verified, nothing cached, no raw ranges (legacy files keep it)."""
        self._fd: int | None = None
        self._raw: dict[str, tuple[int, np.dtype, tuple]] = {}
        self._doc_checks: dict[str, np.ndarray] = {}
        self._verified: dict[str, np.ndarray] = {}
        self._ids: list[str] | None = None
        self._filters: dict[str, tuple] | None = None
        self._filter_groups: dict[str, str] = {}
        self._summary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ivf: tuple[np.ndarray, np.ndarray] | None = None
        self.checks: dict[str, str] = {}
        self.checks_record_hash: str | None = None

    # -- opening and validation ----------------------------------------------------------

    @guarded
    def _open(self, checksum: str | None, dim: int, codec: str) -> None:
        """Validate the file in order: header and checksum record, dataset shapes, storage, the offsets."""
        datasets = self._check_header(checksum, dim, codec)
        self._check_datasets(datasets, dim, codec)
        self._raw = SC.map_contiguous(self.f, self.path, self.file_size)
        SC.check_storage(datasets, self.path, self.file_size)
        self._read_offsets()

    def _check_header(self, checksum: str | None, dim: int, codec: str) -> dict[str, h5py.Dataset]:
        """Format attribute, no links out or cycles, checksum record (against the manifest's), typed counts."""
        f, path = self.f, self.path
        fmt = SC.str_attr(f, L.A_FORMAT, path, 256)
        if fmt != L.SEGMENT_FORMAT:
            raise FormatError(f"{path} is not a colprune segment (format attribute {fmt!r})")
        datasets = SC.check_no_outside_reads(f, path)
        record = SC.str_attr(f, L.A_CHECKS, path, 4096 + 256 * len(datasets))
        self.checks_record_hash = f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"
        if checksum is not None and self.checks_record_hash != checksum:
            raise CorruptionError(f"{path}: its checksum record does not match the manifest's ({checksum})")
        try:
            self.checks = json.loads(record)
        except (ValueError, RecursionError):
            raise CorruptionError(f"{path}: unreadable checksum record") from None
        if not isinstance(self.checks, dict) or not all(isinstance(v, str) for v in self.checks.values()):
            raise CorruptionError(f"{path}: the checksum record is not an object of dataset -> hash")
        self.dim, self.codec = SC.int_attr(f, L.A_DIM, 1, L.MAX_DIM, path), SC.str_attr(f, L.A_CODEC, path, 64)
        if (self.dim, self.codec) != (dim, codec):
            raise CorruptionError(f"{path}: holds dim {self.dim} {self.codec}, the collection {dim} {codec}")
        version = SC.int_attr(f, L.A_FORMAT_VERSION, 0, L.MAX_COUNT, path)
        if version not in L.COLLECTION_VERSIONS or (codec in L.RESIDUAL_CODECS and version < 4):
            raise FormatError(f"{path}: segment format version {version} ({codec}), not one of "
                              f"{sorted(L.COLLECTION_VERSIONS)} (residual codecs: 4)")
        if codec in L.RESIDUAL_CODECS and SC.str_attr(f, L.A_CODEBOOK, path, 256) != self.codebook_name:
            raise CorruptionError(f"{path}: encoded with codebook {SC.str_attr(f, L.A_CODEBOOK, path, 256)!r}, the "
                                  f"collection's is {self.codebook_name!r} (a segment of another codebook)")
        self.n_docs = SC.int_attr(f, L.A_N_DOCS, 0, L.MAX_COUNT, path)
        self.n_vectors = SC.int_attr(f, L.A_N_VECTORS, 0, L.MAX_COUNT, path)
        if self.n_vectors < self.n_docs:
            raise CorruptionError(f"{path}: says {self.n_docs} documents of {self.n_vectors} vectors (each holds at least one)")
        self.summary_centroids = SC.int_attr(f, L.A_SUMMARY_CENTROIDS, 0, L.MAX_DIM, path, default=0)
        self.signal_names = sorted({name.split("/")[1] for name in datasets if name.startswith(L.SIGNALS + "/")})
        self.has_rerank = L.RERANK in datasets
        self.merged = L.COVERS_OFFSETS in datasets
        return datasets

    def _check_datasets(self, datasets: dict[str, h5py.Dataset], dim: int, codec: str) -> None:
        """Every dataset a read relies on is there with its exact shape and dtype; every whole dataset has a checksum."""
        f, path, n, v = self.f, self.path, self.n_docs, self.n_vectors
        if codec != "int8" and L.SCALES in datasets or codec != "binary" and self.has_rerank:
            raise CorruptionError(f"{path}: holds {L.SCALES if L.SCALES in datasets else L.RERANK}, which codec {codec} has not")
        self._filter_groups = SC.filter_fields(f, path)
        residual = codec in L.RESIDUAL_CODECS
        if not residual and any(name in datasets for name in (L.CODES, L.IVF_OFFSETS, L.IVF_DOCS)):
            raise CorruptionError(f"{path}: holds centroid codes or inverted lists, which codec {codec} has not")
        want = SC.expected_datasets(self.n_docs, self.n_vectors, dim, codec, rerank=self.has_rerank,
                                    merged=self.merged or L.COVERS_ROWS in f, signals=self.signal_names,
                                    summary=self.summary_centroids > 0, filters=list(self._filter_groups),
                                    n_centroids=self.n_centroids)
        SC.check_shapes(datasets, want, path)
        bounds = {L.DOC_ID_BYTES: (n, n * MAX_ID_BYTES), L.DOC_META_BYTES: (2 * n, L.MAX_COUNT), L.IVF_DOCS: (n, v),
                  L.COVERS_ROWS: (v, L.MAX_COUNT), L.SUMMARY_CODES: (min(n, 1) * (self.summary_centroids > 0), v)}
        for base in self._filter_groups:
            bounds[f"{base}/{L.FILTER_DICT_OFFSETS}"] = (1, n + 1)
            bounds[f"{base}/{L.FILTER_DICT_BYTES}"] = (0, f[L.DOC_META_BYTES].shape[0])
        for name, (lo, hi) in bounds.items():
            if name in datasets and not lo <= datasets[name].shape[0] <= hi:
                raise CorruptionError(f"{path}: {name} has {datasets[name].shape[0]:,} entries; {n} documents of "
                                      f"{v} vectors allow {lo:,} to {hi:,}")
        if self.summary_centroids and f[L.SUMMARY_SCALES].shape[0] != f[L.SUMMARY_CODES].shape[0]:
            raise CorruptionError(f"{path}: summary/scales and summary/codes differ in length")
        for name in whole_hashed(f):
            if name not in self.checks:
                raise CorruptionError(f"{path}: dataset {name!r} has no checksum")

    def _read_offsets(self) -> None:
        """The arrays every read relies on, verified and checked before anything else is read."""
        f, path = self.f, self.path
        self.offsets = check_offsets(self._whole(L.OFFSETS), self.n_docs, self.n_vectors, f"{path}: offsets", strict=True)
        self._id_off = check_offsets(self._whole(L.DOC_ID_OFFSETS), self.n_docs, f[L.DOC_ID_BYTES].shape[0],
                                     f"{path}: docs/id_offsets", strict=True)
        if int(np.diff(self._id_off).max(initial=0)) > MAX_ID_BYTES:
            raise CorruptionError(f"{path}: an id is longer than {MAX_ID_BYTES} bytes (the writer's limit)")
        self._meta_off = check_offsets(self._whole(L.DOC_META_OFFSETS), self.n_docs, f[L.DOC_META_BYTES].shape[0],
                                       f"{path}: docs/metadata_offsets", strict=True)
        groups = [g for g in ("vectors", "aux", "meta", "rerank") if f"{L.CHECKS}/{g}" in f]
        self._doc_checks = {g: self._whole(f"{L.CHECKS}/{g}") for g in groups}
        self._verified = {g: np.zeros(self.n_docs, bool) for g in self._doc_checks}
        if self.merged:
            self._cov_off = check_offsets(self._whole(L.COVERS_OFFSETS), self.n_vectors, f[L.COVERS_ROWS].shape[0],
                                          f"{path}: covers/offsets")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        f = getattr(self, "f", None)
        if f is not None and f.id.valid:
            f.close()

    @guarded
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

    @guarded
    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows ``a..b`` of a per-vector dataset, unverified (callers verify per document)."""
        if name in self._raw:
            start, dt, tail = self._raw[name]
            row = dt.itemsize * int(np.prod(tail, dtype=np.int64))
            out = np.empty((b - a, *tail), dt)
            view = memoryview(out.reshape(-1).view(np.uint8))
            got = read_into(self._fd, view, start + a * row) if b > a else 0
            if got != (b - a) * row:
                raise CorruptionError(f"{self.path}: short read of {name} rows {a}..{b} (truncated?)")
            return out
        return self.f[name][a:b]

    @guarded
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
                    raise CorruptionError(f"{self.path}: document {int(d)} ({group} rows {s}..{e}) "
                                          "does not match its checksum (damaged)")
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

    @guarded
    def make_resident(self) -> int:
        """Read (and verify) every vector of the segment into memory; returns the bytes held."""
        if self.resident is None:
            data = self.read_vectors(0, self.n_docs)
            if self.has_rerank:
                data.update(self.read_vectors(0, self.n_docs, rerank=True))
            self.resident = data
        return sum(v.nbytes for v in self.resident.values())

    def vector_bytes(self) -> int:
        names = [n for n in (L.VECTORS, L.SCALES, L.RERANK, L.CODES) if n in self.f]
        return sum(int(np.prod(self.f[n].shape)) * self.f[n].dtype.itemsize for n in names)

    @guarded
    def read_docs(self, docs: np.ndarray, *, rerank: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Stored vectors of scattered documents ``docs`` (sorted, unique), verified, as one CSR store.

        Returns ``(data, lengths)``: dataset name -> rows of every listed document back to back,
        and each document's vector count. One ``pread`` per run of consecutive documents, no
        HDF5 call: this is the two-stage rerank's read path.
        """
        docs = np.asarray(docs, np.int64)
        names = [L.RERANK] if rerank else [n for n in (L.VECTORS, L.SCALES, L.CODES) if n in self._raw or n in self.f]
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
                if b > a and read_into(self._fd, flat[dst : dst + (b - a) * row], start + a * row) != (b - a) * row:
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
        self._check_finite(data, f"documents {docs.tolist()[:5]}...")
        return data, lengths

    def _check_finite(self, data: dict[str, np.ndarray], which: str) -> None:
        """Stored float vectors and int8 scales must be finite (NaN scores would rank arbitrarily); centroid codes
        must index the codebook."""
        if L.CODES in data:
            SC.check_codes(data[L.CODES], self.n_centroids, f"{self.path}: {which}")
        for v in data.values():
            if v.dtype.kind == "f" and (first_nonfinite_row(v) >= 0 if v.ndim == 2 else not np.isfinite(v).all()):
                raise CorruptionError(f"{self.path}: non-finite stored vectors in {which}")

    @guarded
    def read_vectors(self, lo: int, hi: int, *, rerank: bool = False) -> dict[str, np.ndarray]:
        """Stored vectors of documents ``lo..hi`` (and int8 scales, or residual codes), verified; keys are dataset names.

    Residual codecs: ``vectors`` holds the packed residuals ``(N, dim * nbits / 8)`` uint8 and ``codes``
    the centroid ids ``(N,)`` uint16, each below the codebook's K."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        names = [L.RERANK] if rerank else [n for n in (L.VECTORS, L.SCALES, L.CODES) if n in self._raw or n in self.f]
        if self.resident is not None:
            return {n: self.resident[n][a:b] for n in names}
        data = {n: self.rows(n, a, b) for n in names}
        self.verify_docs("rerank" if rerank else "vectors", lo, hi, data, a)
        self._check_finite(data, f"documents {lo}..{hi}")
        return data

    # -- per-document data ----------------------------------------------------------------

    @property
    @guarded
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = SC.decode_ids(self._whole(L.DOC_ID_BYTES).tobytes(), self._id_off, self.path)
        return self._ids

    def _meta_texts(self, lo: int, hi: int) -> tuple[bytes, int]:
        """The verified metadata bytes of documents ``lo..hi`` and the offset they start at."""
        self.verify_docs("meta", lo, hi)
        off = self._meta_off
        return self.f[L.DOC_META_BYTES][off[lo] : off[hi]].tobytes(), int(off[lo])

    @guarded
    def metadata(self, row: int) -> dict[str, Any]:
        return self.metadata_range(row, row + 1)[0]

    @guarded
    def metadata_range(self, lo: int, hi: int) -> list[dict[str, Any]]:
        raw, base = self._meta_texts(lo, hi)
        off = self._meta_off
        return [SC.decode_metadata(raw[int(off[i]) - base : int(off[i + 1]) - base].decode("utf-8"), self.path, i)
                for i in range(lo, hi)]

    @guarded
    def metadata_texts(self, lo: int, hi: int, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The stored metadata JSON of ``rows`` (all within ``lo..hi``), verified and checked, as stored: for copying."""
        raw, base = self._meta_texts(lo, hi)
        off = self._meta_off
        texts = [raw[int(off[d]) - base : int(off[d + 1]) - base].decode("utf-8") for d in rows]
        for d, text in zip(rows, texts):
            SC.decode_metadata(text, self.path, int(d))  # what is copied must be what a writer would store
        return texts

    @guarded
    def doc_table(self, name: str) -> np.ndarray:
        key = f"_t_{name}"
        if key not in self.__dict__:
            table = self._whole(name)
            if name == L.DOC_N_ORIGINAL and (table < np.diff(self.offsets)).any():
                raise CorruptionError(f"{self.path}: {name} is below a page's stored vector count")
            self.__dict__[key] = table
        return self.__dict__[key]

    @guarded
    def aux(self, lo: int, hi: int) -> dict[str, Any]:
        """Positions, importance, patch flags, signals and covers of documents ``lo..hi``, verified."""
        self.verify_docs("aux", lo, hi)
        f = self.f
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        out: dict[str, Any] = {n: f[n][a:b] for n in (L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK)}
        limit = np.repeat(self.doc_table(L.DOC_N_ORIGINAL)[lo:hi], np.diff(self.offsets[lo : hi + 1]))
        if ((out[L.POSITIONS] < 0) | (out[L.POSITIONS] >= limit)).any():
            raise CorruptionError(f"{self.path}: documents {lo}..{hi} hold positions outside 0..n_original")
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

    @guarded
    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(codes (C, dim) int8, scales (C,), offsets (n_docs + 1,))`` or None when not stored.

        Shapes and dtypes were checked at open; here each page holds ``min(summary_centroids, n_i)``
        centroids, as the writer computes them, and every scale is finite and positive.
        """
        if not self.summary_centroids:
            return None
        if self._summary is None:
            codes, scales = self._whole(L.SUMMARY_CODES), self._whole(L.SUMMARY_SCALES)
            off = SC.check_summary(codes, scales, self._whole(L.SUMMARY_OFFSETS), self.offsets, self.summary_centroids,
                                f"{self.path}: summary")
            self._summary = (codes, scales, off)
        return self._summary

    @guarded
    def filter_columns(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """field -> ``(numbers (n,) float64, string codes (n,) int32, dictionary)``.

        Shapes and dtypes were checked at open; here codes index the dictionary (or are -1) and
        the dictionary is sorted, distinct UTF-8. :meth:`verify` checks them against the metadata.
        """
        if self._filters is None:
            cols = {}
            for base, field in self._filter_groups.items():
                num, codes = self._whole(f"{base}/{L.FILTER_NUM}"), self._whole(f"{base}/{L.FILTER_CODES}")
                values = SC.check_filter_values(codes, self._whole(f"{base}/{L.FILTER_DICT_BYTES}").tobytes(),
                                             self._whole(f"{base}/{L.FILTER_DICT_OFFSETS}"), f"{self.path}: filter {field!r}")
                cols[field] = (num, codes, values)
            self._filters = cols
        return self._filters

    @guarded
    def inverted_lists(self) -> tuple[np.ndarray, np.ndarray]:
        """Residual codecs: ``(list_offsets (K + 1,) int64, list_docs (M,) int32)``, centroid ``c``'s pages (rows of
        this segment, ascending) in ``list_docs[list_offsets[c]:list_offsets[c + 1]]``; verified and checked."""
        if self._ivf is None:
            if self.n_centroids == 0:
                raise FormatError(f"{self.path}: a {self.codec} segment has no inverted lists")
            docs = self._whole(L.IVF_DOCS)
            self._ivf = (SC.check_ivf(self._whole(L.IVF_OFFSETS), docs, self.n_centroids, self.n_docs, f"{self.path}: ivf"),
                         docs)
        return self._ivf

    @guarded
    def verify(self) -> None:
        """Check every byte of the segment against its checksums, and what the checksums cannot: ids by the
        writer's rules, metadata as JSON objects, filter columns equal to the metadata they index."""
        for name in whole_hashed(self.f):
            self._whole(name)
        step = 4096
        for lo in range(0, self.n_docs, step):
            hi = min(lo + step, self.n_docs)
            for g in self._doc_checks:
                self._verified[g][lo:hi] = False
                if g in ("vectors", "rerank"):
                    self.read_vectors(lo, hi, rerank=g == "rerank")
                else:
                    self.verify_docs(g, lo, hi)
        SC.check_ids_as_written(self.ids, self.path)
        self.summary()
        self._verify_filters(step)
        if self.n_centroids:  # the lists are what the codes give (a crafted list would hide or invent candidates)
            got = inverted_lists(self.read_vectors(0, self.n_docs)[L.CODES], self.offsets, self.n_centroids)
            if not all(np.array_equal(a, b) for a, b in zip(self.inverted_lists(), got)):
                raise CorruptionError(f"{self.path}: the inverted lists (ivf/*) disagree with the centroid codes")

    def _verify_filters(self, step: int) -> None:
        """The filter columns are exactly what the writer derives from the metadata (read ``step`` documents at a time)."""
        cols, seen = self.filter_columns(), set()
        for lo in range(0, self.n_docs, step):
            hi = min(lo + step, self.n_docs)
            got = metadata_columns(self.metadata_range(lo, hi), hi - lo)
            seen |= set(got)
            SC.compare_columns(cols, got, lo, hi, self.path)
        unused = [f for f, (_, codes, values) in cols.items() if np.unique(codes[codes >= 0]).size != len(values)]
        if seen != set(cols) or unused:
            raise CorruptionError(f"{self.path}: filter columns {sorted(set(cols) ^ seen) or unused} do not match the "
                                  "metadata fields")
