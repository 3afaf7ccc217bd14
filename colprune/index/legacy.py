"""Reading a version 1 or 2 index: one whole HDF5 file, read through the segment interface.

Version 1 and 2 indexes are read only (``colprune upgrade`` converts them to a collection).
They carry no checksums: :class:`LegacySegment` checks that the file holds no links out of
it and that its commit record, datasets and CSR offsets agree before anything is read.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import h5py
import numpy as np

from ..errors import FormatError
from . import layout as L
from .segment_checks import check_no_outside_reads, check_offsets, guarded
from .segment_reader import Segment
from .segment_writer import metadata_columns

__all__ = ["LegacySegment"]


class LegacySegment(Segment):
    """A whole version 1 or 2 index file, read through the segment interface (no checksums)."""

    legacy = True

    def __init__(self, path: str, f: h5py.File, version: int, dim: int, codec: str) -> None:
        """Check ``f`` (already opened, ``version`` and ``codec`` read by the caller); closes it on failure."""
        self.path, self.f, self.version = path, f, version
        self._reset()
        self._strings_cache: dict[str, list[str]] = {}
        try:
            check_no_outside_reads(f, path)
            self.dim, self.codec = dim, codec
            self.n_docs, self.n_vectors = (int(x) for x in f[L.COMMIT][:2])
            self.summary_centroids = 0
            self.signal_names = sorted(f[L.SIGNALS]) if L.SIGNALS in f else []
            self.has_rerank = L.RERANK in f
            self.merged = L.COVERS_OFFSETS in f
            self._check_sizes()
            self._check_strings()
            if self.merged:
                v = self.n_vectors
                self._cov_off = f[L.COVERS_OFFSETS][: v + 1].astype(np.int64)
                check_offsets(self._cov_off, v, int(self._cov_off[-1]), f"{path}: covers/offsets")
                if self._cov_off[-1] > f[L.COVERS_ROWS].shape[0]:
                    raise FormatError(f"{path} is damaged: covers/offsets exceed covers/rows")
        except BaseException:
            f.close()
            raise

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
        """Ids and metadata cover every committed document (v1: variable-length strings; v2: UTF-8 CSR)."""
        f, path, n = self.f, self.path, self.n_docs
        for fld in ("ids", "metadata"):
            data, offsets = L.STRINGS[self.version][fld]
            if offsets is None:
                if f[data].shape[0] < n:
                    raise FormatError(f"{path} is damaged: {data} has fewer than {n} entries")
            elif f[offsets].shape[0] < n + 1 or int(f[offsets][n]) > f[data].shape[0]:
                raise FormatError(f"{path} is damaged: {offsets} does not cover {n} documents")
            else:
                check_offsets(f[offsets][: n + 1], n, int(f[offsets][n]), f"{path}: {offsets}")

    @guarded
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
    @guarded
    def ids(self) -> list[str]:
        return self._strings("ids")

    @guarded
    def metadata(self, row: int) -> dict[str, Any]:
        return json.loads(self._strings("metadata")[row])

    @guarded
    def metadata_range(self, lo: int, hi: int) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self._strings("metadata")[lo:hi]]

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
        pass
