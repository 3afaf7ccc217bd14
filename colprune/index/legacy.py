"""Reading a version 1 or 2 index: one whole HDF5 file, read through the segment interface.

Version 1 and 2 indexes are read only (``colprune upgrade`` converts them to a collection).
They carry no checksums: :class:`LegacySegment` checks that the file holds no links out of
it or link cycles, that its commit record, datasets (dtypes and lengths) and CSR offsets agree,
and that every byte it will read is stored in the file (a deflate- or lzf-compressed dataset at
most ``_MAX_EXPANSION`` times its stored bytes) before anything is read.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import h5py
import numpy as np

from ..errors import CorruptionError, FormatError
from . import layout as L
from .segment_checks import check_no_outside_reads, check_offsets, check_storage, decode_ids, decode_metadata, guarded
from .segment_reader import Segment
from .segment_writer import metadata_columns

__all__ = ["LegacySegment"]


class LegacySegment(Segment):
    """A whole version 1 or 2 index file, read through the segment interface (no checksums)."""

    legacy = True

    def __init__(self, path: str, f: h5py.File, version: int, dim: int, codec: str, *, fd: int | None = None,
                 file_size: int | None = None) -> None:
        """Check ``f`` (already opened, ``version`` and ``codec`` read by the caller); closes it (and ``fd``) on failure."""
        self.path, self.f, self.version = path, f, version
        self._reset()
        self._fd = fd
        self._strings_cache: dict[str, list[str]] = {}
        try:
            self._open(dim, codec, f.id.get_filesize() if file_size is None else file_size)
        except BaseException:
            self.close()
            raise

    @guarded
    def _open(self, dim: int, codec: str, file_size: int) -> None:
        f, path = self.f, self.path
        self.file_size = file_size
        datasets = check_no_outside_reads(f, path, strings=self.version == 1)
        self.dim, self.codec = dim, codec
        commit = datasets.get(L.COMMIT)
        if commit is None or commit.shape != (2,) or commit.dtype.kind not in "iu":
            raise FormatError(f"{path} is damaged: its commit record is not two integers")
        self.n_docs, self.n_vectors = (int(x) for x in commit[:2])
        if not (0 <= self.n_docs <= self.n_vectors <= L.MAX_COUNT):
            raise FormatError(f"{path} is damaged: its commit record says {self.n_docs} docs, {self.n_vectors} vectors")
        self.summary_centroids = 0
        self.signal_names = sorted({n.split("/")[1] for n in datasets if n.startswith(L.SIGNALS + "/")})
        self.has_rerank = L.RERANK in datasets
        self.merged = L.COVERS_OFFSETS in datasets
        self._check_dtypes(datasets)
        reads = self._read_sizes(datasets)
        check_storage(datasets, path, file_size, reads=reads, legacy=True)  # every count-sized read, before any
        self._check_sizes()
        self._check_strings()
        if self.merged:
            v = self.n_vectors
            self._cov_off = f[L.COVERS_OFFSETS][: v + 1].astype(np.int64)
            check_offsets(self._cov_off, v, int(self._cov_off[-1]), f"{path}: covers/offsets")
            if self._cov_off[-1] > f[L.COVERS_ROWS].shape[0]:
                raise FormatError(f"{path} is damaged: covers/offsets exceed covers/rows")
            rows = {L.COVERS_ROWS: int(self._cov_off[-1]) * 4}
            check_storage({L.COVERS_ROWS: datasets[L.COVERS_ROWS]}, path, file_size, reads=rows, legacy=True)

    def _check_dtypes(self, datasets: dict[str, h5py.Dataset]) -> None:
        """Each dataset colprune reads has the element type (and width) the version's layout gives it."""
        kinds = {L.VECTORS: np.dtype((L.STORED_DTYPES if self.version == 1 else L.CODECS)[self.codec]),
                 L.SCALES: np.dtype(np.float32), L.RERANK: np.dtype(np.float16), L.POSITIONS: "iu",
                 L.IMPORTANCE: np.dtype(np.float32), L.PATCH_MASK: "biu", L.OFFSETS: "iu", L.DOC_N_ORIGINAL: "iu",
                 L.DOC_GRID: "iu", L.COVERS_ROWS: "iu", L.COVERS_OFFSETS: "iu", L.DOC_ID_BYTES: np.dtype(np.uint8),
                 L.DOC_META_BYTES: np.dtype(np.uint8), L.DOC_ID_OFFSETS: "iu", L.DOC_META_OFFSETS: "iu"}
        kinds.update({f"{L.SIGNALS}/{k}": np.dtype(np.float32) for k in self.signal_names})
        for name, kind in kinds.items():
            ds = datasets.get(name)
            if ds is None:
                continue
            ok = ds.dtype == kind if isinstance(kind, np.dtype) else ds.dtype.kind in kind
            if not ok or ds.ndim != (2 if name in (L.VECTORS, L.RERANK, L.DOC_GRID) else 1):
                raise FormatError(f"{self.path} is damaged: {name} is {ds.dtype} of {ds.ndim} dimensions")
        for name in (L.DOC_IDS_V1, L.DOC_METADATA_V1):
            if name in datasets and (self.version != 1 or h5py.check_string_dtype(datasets[name].dtype) is None
                                     or datasets[name].ndim != 1):
                raise FormatError(f"{self.path} is damaged: {name} is not a list of strings")
        if self.has_rerank and datasets[L.RERANK].shape[1:] != (self.dim,):
            raise FormatError(f"{self.path} is damaged: {L.RERANK} is not {self.dim} wide")

    def _read_sizes(self, datasets: dict[str, h5py.Dataset]) -> dict[str, int]:
        """Bytes this reader takes from each dataset: the committed rows (what the byte CSRs cover is checked later)."""
        n, v = self.n_docs, self.n_vectors
        rows = {L.COMMIT: 2, L.OFFSETS: n + 1, L.DOC_ID_OFFSETS: n + 1, L.DOC_META_OFFSETS: n + 1, L.DOC_N_ORIGINAL: n,
                L.DOC_GRID: n, L.DOC_IDS_V1: n, L.DOC_METADATA_V1: n, L.COVERS_OFFSETS: v + 1}
        reads = {}
        for name, ds in datasets.items():
            count = rows.get(name, v if ds.shape[:1] and name in self._per_vector() else 0)
            row = ds.id.get_type().get_size() * int(np.prod(ds.shape[1:], dtype=np.int64))
            reads[name] = min(count, ds.shape[0] if ds.ndim else 1) * row
        return reads

    def _per_vector(self) -> set[str]:
        return {L.VECTORS, L.SCALES, L.RERANK, L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK,
                *(f"{L.SIGNALS}/{k}" for k in self.signal_names)}

    def _check_sizes(self) -> None:
        """The commit record fits the datasets; vectors have the codec's width; offsets end at the vector count."""
        f, path, n, v = self.f, self.path, self.n_docs, self.n_vectors
        if n < 0 or v < 0 or f[L.OFFSETS].shape[0] < n + 1 or f[L.VECTORS].shape[0] < v:
            raise FormatError(f"{path} is damaged: its commit record ({n} docs, {v} vectors) exceeds its datasets")
        per_vec = [x for x in (L.VECTORS, L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK, L.SCALES, L.RERANK) if x in f]
        for name in per_vec + [f"{L.SIGNALS}/{k}" for k in self.signal_names]:
            if f[name].shape[0] < v:
                raise FormatError(f"{path} is damaged: {name} has fewer than {v} entries")
        for name in (L.DOC_N_ORIGINAL, L.DOC_GRID):
            if f[name].shape[0] < n:
                raise FormatError(f"{path} is damaged: {name} has fewer than {n} entries")
        width = L.vector_width(self.dim, self.codec)
        if f[L.VECTORS].shape[1] != width:
            raise FormatError(f"{path} is damaged: vectors have width {f[L.VECTORS].shape[1]}, "
                              f"expected {width} for dim {self.dim}")
        off = f[L.OFFSETS][: n + 1]
        if int(off[n]) != v:
            raise FormatError(f"{path} is damaged: offsets[{n}] = {int(off[n])} but {v} vectors are committed")
        self.offsets = check_offsets(off, n, v, f"{path}: offsets")

    def _check_strings(self) -> None:
        """Ids and metadata cover every committed document (v1: variable-length strings; v2: UTF-8 CSR), stored in the file."""
        f, path, n = self.f, self.path, self.n_docs
        for fld in ("ids", "metadata"):
            data, offsets = L.STRINGS[self.version][fld]
            if offsets is None:
                if f[data].shape[0] < n:
                    raise FormatError(f"{path} is damaged: {data} has fewer than {n} entries")
            elif f[offsets].shape[0] < n + 1 or int(f[offsets][n]) > f[data].shape[0]:
                raise FormatError(f"{path} is damaged: {offsets} does not cover {n} documents")
            else:
                end = int(f[offsets][n])
                check_offsets(f[offsets][: n + 1], n, end, f"{path}: {offsets}")
                check_storage({data: f[data]}, path, self.file_size, reads={data: end}, legacy=True)

    @guarded
    def _strings(self, fld: str) -> list[str]:
        if fld not in self._strings_cache:
            data, offsets = L.STRINGS[self.version][fld]
            n = self.n_docs
            if offsets is None:
                texts = list(self.f[data].asstr()[:n])
                if fld == "ids" and len(set(texts)) != len(texts):
                    raise CorruptionError(f"{self.path}: ids are not unique")
            else:
                off = self.f[offsets][: n + 1].astype(np.int64)
                raw = self.f[data][: int(off[-1])].tobytes()
                if fld == "ids":  # files written before the id rules: UTF-8 and distinct
                    texts = decode_ids(raw, off, self.path, writer_rules=False)
                else:
                    texts = [raw[off[i] : off[i + 1]].decode("utf-8") for i in range(n)]
            self._strings_cache[fld] = texts
        return self._strings_cache[fld]

    @property
    @guarded
    def ids(self) -> list[str]:
        return self._strings("ids")

    @guarded
    def metadata(self, row: int) -> dict[str, Any]:
        return decode_metadata(self._strings("metadata")[row], self.path, row)

    @guarded
    def metadata_range(self, lo: int, hi: int) -> list[dict[str, Any]]:
        return [decode_metadata(m, self.path, lo + i) for i, m in enumerate(self._strings("metadata")[lo:hi])]

    @guarded
    def metadata_texts(self, lo: int, hi: int, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The metadata of ``rows`` (all within ``lo..hi``) as JSON texts."""
        return [json.dumps(m, ensure_ascii=False) for m in (self.metadata(int(d)) for d in rows)]

    @guarded
    def doc_table(self, name: str) -> np.ndarray:
        return self.f[name][: self.n_docs]

    @guarded
    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        return self.f[name][a:b]

    @guarded
    def summary(self):
        return None

    @guarded
    def filter_columns(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """field -> ``(numbers (n,) float64, string codes (n,) int32, dictionary)``, built from the JSON once."""
        if self._filters is None:  # old files have no columns
            self._filters = metadata_columns(self.metadata_range(0, self.n_docs), self.n_docs)
        return self._filters

    @guarded
    def verify(self) -> None:
        """Version 1/2 files carry no checksums: read everything once, checking what can be checked
        (ids distinct, metadata JSON objects, vectors finite, positions within each page)."""
        step = 4096
        self.ids  # noqa: B018  (decodes: UTF-8, distinct)
        for lo in range(0, self.n_docs, step):
            hi = min(lo + step, self.n_docs)
            self.read_vectors(lo, hi)
            if self.has_rerank:
                self.read_vectors(lo, hi, rerank=True)
            self.aux(lo, hi)
            self.metadata_range(lo, hi)
