"""The multi-vector index: one HDF5 file, CSR vectors, crash-safe appends, exact search.

See ``docs/format.md`` for the on-disk contract; every name used here comes from
:mod:`colprune.index.layout`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import h5py
import numpy as np

from ..errors import DuplicateIdError, FormatError, InvalidInputError
from ..kernels import (
    as_query_batch,
    dequantize_int8,
    int8_corrections,
    maxsim_binary_csr,
    maxsim_csr,
    maxsim_int8_csr,
    maxsim_pairs,
    pack_binary,
    page_centroids,
    quantize_int8,
    topk,
)
from ..pruning import NoPruning, PrunedPage, Pruner, check_page, make_pruner
from . import layout as L

__all__ = ["Hit", "Index", "Page", "codec_bytes"]

_CHUNK_BYTES = 256 << 10
_NO_GRID = (-1, -1)


class Hit(NamedTuple):
    """One search result; compares equal to the plain tuple ``(id, score)``."""

    id: str
    score: float


@dataclass(frozen=True)
class Page:
    """One stored page.

    Attributes
    ----------
    id : str
    vectors : (n_kept, dim) float16 or float32, as stored
    positions : (n_kept,) int64
        Row of each kept vector in the encoder's output.
    importance : (n_kept,) float32
        NaN where the page was added without importance.
    patch_mask : (n_kept,) bool
        True for image-patch rows, False for special/prompt tokens.
    n_original : int
        Vectors the page had before pruning.
    grid : (rows, cols) or None
        Patch grid of the page, when the encoder has one.
    metadata : dict
    signals : dict of name -> (n_kept,) float32
        Every importance signal the index stores (see ``Index.create(signals=)``).
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


def _open_h5(path: str, mode: str) -> h5py.File:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no index at {path}")
    try:
        return h5py.File(path, mode)
    except OSError as e:
        msg = str(e)
        if "unable to lock file" in msg.lower():
            raise OSError(f"{path} is open for writing elsewhere (HDF5 file lock): close the other writer first ({msg})") from None
        raise FormatError(
            f"cannot read {path} as HDF5: it is not an HDF5 file, or it is truncated or corrupted (h5py: {msg})"
        ) from None


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


def _shortlist(scores: np.ndarray, depth: int) -> np.ndarray:
    """Each row's best ``depth`` documents by ``scores``, in ascending document order."""
    return np.sort(topk(scores, depth)[0], axis=1)


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


def _chunk_rows(row_bytes: int, chunk_bytes: int = _CHUNK_BYTES) -> int:
    return max(16, chunk_bytes // max(1, row_bytes))


class Index:
    """A multi-vector index stored in one HDF5 file.

    Use :meth:`create` or :meth:`open`, preferably as a context manager. Appends are
    crash-safe: a document is visible only once the commit record that covers it is
    written, after its data has been flushed.

    Examples
    --------
    >>> with Index.create("pages.h5", dim=128) as index:           # doctest: +SKIP
    ...     index.add(ids, embeddings, importance=imp, pruner=AdaptiveThreshold(-0.25))
    >>> Index.open("pages.h5").search(query, k=10)                 # doctest: +SKIP
    """

    def __init__(self, f: h5py.File, path: str, mode: str) -> None:
        # Use Index.create / Index.open.
        self._f = f
        self.path = str(path)
        self.mode = mode
        self.format_version = L.check_file(f, self.path)
        self.dim = int(f.attrs[L.A_DIM])
        self.codec = L.codec_of(f, self.format_version, self.path)
        self.has_rerank = L.RERANK in f
        self.signal_names = sorted(f[L.SIGNALS]) if L.SIGNALS in f else []
        self.merged = L.COVERS_OFFSETS in f
        self._n_docs, self._n_vectors = (int(x) for x in f[L.COMMIT][:2])
        self._check_commit()
        self._ids: list[str] | None = None
        self._row: dict[str, int] | None = None
        self._cache: dict[str, np.ndarray] | None = None
        if mode != "r":
            if self.format_version != L.FORMAT_VERSION:
                raise FormatError(
                    f"{self.path} uses format version {self.format_version}; colprune reads it but appends only to "
                    f"version {L.FORMAT_VERSION} files: open it read-only and copy it with "
                    f"Index.derive(new_path, 'none') or `colprune prune {self.path} NEW.h5 --pruner none`"
                )
            self._drop_uncommitted()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        dim: int,
        dtype: str = "float16",
        *,
        encoder: str | None = None,
        overwrite: bool = False,
        chunk_bytes: int = _CHUNK_BYTES,
        rerank: bool = True,
        signals: Sequence[str] = (),
        merged: bool = False,
    ) -> Index:
        """Create an empty index, open for appending.

        Parameters
        ----------
        path : file to create; refused if it exists unless ``overwrite``.
        dim : embedding dimension (128 for ColPali/ColQwen2).
        dtype : the vector codec: ``"float16"`` (default), ``"float32"``, ``"int8"`` (per-vector
            scale, 4 x smaller than float32) or ``"binary"`` (sign bits, 32 x smaller).
        rerank : for ``"binary"``: also keep float16 vectors so searches can rerank the Hamming
            shortlist exactly (costs the float16 bytes, on disk and once loaded).
        signals : names of extra per-vector importance signals to store (``add(signals=)``
            gives them per page); a derived index can prune by any of them.
        merged : the index will hold merged vectors (mergers such as ``ward``), each storing
            the rows it covers.
        encoder : name or path of the model that made the embeddings, if known.
        chunk_bytes : target size of an HDF5 chunk; smaller suits many tiny indexes.
        """
        path = os.fspath(path)
        if dtype not in L.CODECS:
            raise InvalidInputError(f"dtype must be one of {sorted(L.CODECS)}, got {dtype!r}")
        if int(dim) < 1:
            raise InvalidInputError(f"dim must be positive, got {dim}")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
        dim = int(dim)
        np_dtype = L.CODECS[dtype]
        width = (dim + 63) // 64 * 8 if dtype == "binary" else dim
        f = h5py.File(path, "w")
        try:
            created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            for key, value in L.root_attrs(dim, dtype, encoder, created).items():
                f.attrs[key] = value
            vec_rows = _chunk_rows(width * np.dtype(np_dtype).itemsize, chunk_bytes)
            f.create_dataset(L.VECTORS, (0, width), np_dtype, maxshape=(None, width), chunks=(vec_rows, width))
            if dtype == "int8":
                f.create_dataset(L.SCALES, (0,), np.float32, maxshape=(None,), chunks=(_chunk_rows(4, chunk_bytes),))
            if merged:
                f.create_dataset(L.COVERS_ROWS, (0,), np.int32, maxshape=(None,), chunks=(_chunk_rows(4, chunk_bytes),))
                f.create_dataset(L.COVERS_OFFSETS, data=np.zeros(1, np.int64), maxshape=(None,),
                                 chunks=(_chunk_rows(8, chunk_bytes),))
            for name in signals:
                if not name or "/" in name:
                    raise InvalidInputError(f"bad signal name {name!r}")
                f.create_dataset(f"{L.SIGNALS}/{name}", (0,), np.float32, maxshape=(None,),
                                 chunks=(_chunk_rows(4, chunk_bytes),))
            if dtype == "binary" and rerank:
                rows = _chunk_rows(dim * 2, chunk_bytes)
                f.create_dataset(L.RERANK, (0, dim), np.float16, maxshape=(None, dim), chunks=(rows, dim))
            for name, dt in ((L.POSITIONS, np.int32), (L.IMPORTANCE, np.float32), (L.PATCH_MASK, np.uint8)):
                f.create_dataset(name, (0,), dt, maxshape=(None,), chunks=(_chunk_rows(4, chunk_bytes),))
            doc_rows = _chunk_rows(8, chunk_bytes // 4)
            f.create_dataset(L.OFFSETS, data=np.zeros(1, np.int64), maxshape=(None,), chunks=(doc_rows,))
            f.create_group(L.DOCS)
            f.create_dataset(L.DOC_N_ORIGINAL, (0,), np.int64, maxshape=(None,), chunks=(doc_rows,))
            for name in (L.DOC_ID_OFFSETS, L.DOC_META_OFFSETS):
                f.create_dataset(name, data=np.zeros(1, np.int64), maxshape=(None,), chunks=(doc_rows,))
            for name in (L.DOC_ID_BYTES, L.DOC_META_BYTES):
                f.create_dataset(name, (0,), np.uint8, maxshape=(None,), chunks=(_chunk_rows(1, chunk_bytes),))
            f.create_dataset(L.DOC_GRID, (0, 2), np.int32, maxshape=(None, 2), chunks=(doc_rows, 2))
            # contiguous, allocated now: a commit is one small in-place write
            f.create_dataset(L.COMMIT, data=np.zeros(2, np.int64))
            L.set_encoding(f)
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(f, path, "a")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> Index:
        """Open an existing index: ``mode="r"`` to read and search, ``"a"`` to also append."""
        if mode not in ("r", "a"):
            raise InvalidInputError(f"mode must be 'r' or 'a', got {mode!r}")
        path = os.fspath(path)
        f = _open_h5(path, "r" if mode == "r" else "r+")
        try:
            return cls(f, path, mode)
        except BaseException:
            f.close()
            raise

    def close(self) -> None:
        """Close the file; the index cannot be used afterwards."""
        if self._f.id.valid:
            self._f.close()
        self._cache = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pruner = self.pruner
        return (
            f"Index({self.path!r}, mode={self.mode!r}, docs={len(self)}, vectors={self._n_vectors}, "
            f"dim={self.dim}, codec={self.codec}, pruner={pruner!r})"
        )

    # -- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_docs

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._id_rows()

    @property
    def ids(self) -> list[str]:
        """Committed document ids, in commit order."""
        if self._ids is None:
            n = self._n_docs
            self._ids = self._strings("ids", 0, n)
        return list(self._ids)

    @property
    def dtype(self) -> str:
        """The vector codec (``float16``, ``float32``, ``int8`` or ``binary``); alias of ``codec``."""
        return self.codec

    @property
    def n_vectors(self) -> int:
        """Stored vectors over all committed documents."""
        return self._n_vectors

    @property
    def pruner(self) -> Pruner | None:
        """The pruner the index was built with (None until the first add)."""
        cfg = L.read_pruner(self._f)
        return None if cfg is None else make_pruner(cfg)

    @property
    def pruner_config(self) -> dict[str, Any] | None:
        """The stored ``{"name", "params"}`` record of the pruner (with ``derived_from`` if any)."""
        return L.read_pruner(self._f)

    @property
    def encoder(self) -> str | None:
        """Name or path of the encoder that made the vectors, if recorded."""
        return L.text_attr(self._f, L.A_ENCODER) or None

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as stored (format, version, dim, dtype, pruner, ...)."""
        return {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v) for k, v in self._f.attrs.items()}

    def get(self, doc_id: str) -> Page:
        """The stored page with id ``doc_id`` (KeyError if absent)."""
        rows = self._id_rows()
        if doc_id not in rows:
            raise KeyError(f"no document {doc_id!r} in {self.path}")
        return self._page(rows[doc_id])

    def __iter__(self) -> Iterator[Page]:
        return self.iter_pages()

    def iter_pages(self, batch_size: int = 1024) -> Iterator[Page]:
        """Every committed page in commit order, read in batches of ``batch_size`` documents."""
        f = self._f
        ids = self.ids
        for lo in range(0, self._n_docs, batch_size):
            hi = min(lo + batch_size, self._n_docs)
            off = f[L.OFFSETS][lo : hi + 1]
            a, b = int(off[0]), int(off[-1])
            vec = self._decode(a, b)
            pos = f[L.POSITIONS][a:b].astype(np.int64)
            imp = f[L.IMPORTANCE][a:b]
            mask = f[L.PATCH_MASK][a:b].astype(bool)
            n_orig = f[L.DOC_N_ORIGINAL][lo:hi]
            grids = f[L.DOC_GRID][lo:hi]
            meta = self._strings("metadata", lo, hi)
            sig = {k: f[f"{L.SIGNALS}/{k}"][a:b] for k in self.signal_names}
            cov = self._covers(a, b)
            for i in range(hi - lo):
                s, e = int(off[i]) - a, int(off[i + 1]) - a
                yield Page(
                    ids[lo + i], vec[s:e], pos[s:e], imp[s:e], mask[s:e], int(n_orig[i]),
                    None if grids[i][0] < 0 else (int(grids[i][0]), int(grids[i][1])), json.loads(meta[i]),
                    {k: v[s:e] for k, v in sig.items()}, None if cov is None else cov[s:e],
                )

    def _page(self, row: int) -> Page:
        f = self._f
        s, e = (int(x) for x in f[L.OFFSETS][row : row + 2])
        grid = f[L.DOC_GRID][row]
        return Page(
            id=self.ids[row],
            vectors=self._decode(s, e),
            positions=f[L.POSITIONS][s:e].astype(np.int64),
            importance=f[L.IMPORTANCE][s:e],
            patch_mask=f[L.PATCH_MASK][s:e].astype(bool),
            n_original=int(f[L.DOC_N_ORIGINAL][row]),
            grid=None if grid[0] < 0 else (int(grid[0]), int(grid[1])),
            metadata=json.loads(self._strings("metadata", row, row + 1)[0]),
            signals={k: f[f"{L.SIGNALS}/{k}"][s:e] for k in self.signal_names},
            covers=self._covers(s, e),
        )

    def _covers(self, a: int, b: int) -> tuple[np.ndarray, ...] | None:
        if not self.merged:
            return None
        off = self._f[L.COVERS_OFFSETS][a : b + 1]
        rows = self._f[L.COVERS_ROWS][int(off[0]) : int(off[-1])].astype(np.int64)
        return tuple(rows[int(x) - int(off[0]) : int(y) - int(off[0])] for x, y in zip(off[:-1], off[1:]))

    def _strings(self, field: str, lo: int, hi: int) -> list[str]:
        # documents lo..hi of a per-document string field, whatever the format version
        data, offsets = L.STRINGS[self.format_version][field]
        if hi <= lo:
            return []
        if offsets is None:  # v1: HDF5 variable-length strings
            return list(self._f[data].asstr()[lo:hi])
        off = self._f[offsets][lo : hi + 1]
        raw = self._f[data][int(off[0]) : int(off[-1])].tobytes()
        base = int(off[0])
        return [raw[int(a) - base : int(b) - base].decode("utf-8") for a, b in zip(off[:-1], off[1:])]

    def _decode(self, a: int, b: int) -> np.ndarray:
        # stored rows a..b as floats: float codecs as stored, int8 dequantised (float32),
        # binary from its float16 rerank copy, or as +-1 signs without one
        f = self._f
        if self.codec in ("float16", "float32"):
            return f[L.VECTORS][a:b]
        if self.codec == "int8":
            return dequantize_int8(f[L.VECTORS][a:b], f[L.SCALES][a:b])
        if self.has_rerank:
            return f[L.RERANK][a:b]
        bits = np.unpackbits(f[L.VECTORS][a:b], axis=1, bitorder="little")[:, : self.dim]
        return np.where(bits > 0, 1.0, -1.0).astype(np.float32)

    def _id_rows(self) -> dict[str, int]:
        if self._row is None:
            self._row = {doc_id: i for i, doc_id in enumerate(self.ids)}
        return self._row

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors as the kernels take them, and the offsets (cached in memory).

        Returns ``(vectors, offsets)``: ``(N, dim)`` float16/float32 for float codecs,
        ``(N, dim)`` int8 codes for ``int8`` (scales in ``load_extra()["scales"]``),
        ``(N, words)`` uint64 sign bits for ``binary``; offsets ``(n_docs + 1,)`` int64.
        """
        c = self._load()
        return c["vectors"], c["offsets"]

    def _load(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            f, n = self._f, self._n_vectors
            c = {"offsets": f[L.OFFSETS][: self._n_docs + 1].astype(np.int64), "vectors": f[L.VECTORS][:n]}
            if self.codec == "int8":
                c["scales"] = f[L.SCALES][:n]
                c["corrections"] = int8_corrections(c["vectors"])
            elif self.codec == "binary":
                c["vectors"] = np.ascontiguousarray(c["vectors"]).view("<u8")
            self._cache = c
        return self._cache

    def _rerank_vectors(self) -> np.ndarray:
        c = self._load()
        if "rerank" not in c:
            c["rerank"] = self._f[L.RERANK][: self._n_vectors]
        return c["rerank"]

    def info(self) -> dict[str, Any]:
        """Counts and storage figures: docs, vectors, keep ratio, bytes per page, format."""
        n_docs, n_vec = self._n_docs, self._n_vectors
        n_orig = int(self._f[L.DOC_N_ORIGINAL][:n_docs].sum()) if n_docs else 0
        vec_bytes = self.bytes_per_vector
        per_vector_extra = 4 + 4 + 1 + (2 * self.dim if self.has_rerank else 0)  # position, importance, flag, rerank
        return {
            "path": self.path,
            "format": L.FORMAT_NAME,
            "format_version": self.format_version,
            "library_version": L.text_attr(self._f, L.A_LIBRARY_VERSION),
            "docs": n_docs,
            "vectors": n_vec,
            "original_vectors": n_orig,
            "keep_ratio": (n_vec / n_orig) if n_orig else None,
            "dim": self.dim,
            "dtype": self.codec,
            "codec": self.codec,
            "rerank_vectors": self.has_rerank,
            "vector_bytes_per_page": (n_vec * vec_bytes / n_docs) if n_docs else None,
            "unpruned_vector_bytes_per_page": (n_orig * vec_bytes / n_docs) if n_docs else None,
            "unpruned_float16_bytes_per_page": (n_orig * self.dim * 2 / n_docs) if n_docs else None,
            "stored_bytes_per_page": (n_vec * (vec_bytes + per_vector_extra) / n_docs) if n_docs else None,
            "file_bytes": os.path.getsize(self.path),
            "pruner": self.pruner_config,
            "encoder": self.encoder,
        }

    @property
    def bytes_per_vector(self) -> int:
        """Bytes of one stored vector under this codec (int8 counts its float32 scale)."""
        return codec_bytes(self.codec, self.dim)

    # -- search ------------------------------------------------------------------------

    def scores(self, queries, *, n_threads: int | None = None) -> np.ndarray:
        """Exact MaxSim of every query against every page: ``(n_queries, n_docs)`` float32."""
        qv, qoff, _ = as_query_batch(queries, dim=self.dim)
        return self._scores(qv, qoff, n_threads)

    def _scores(self, qv: np.ndarray, qoff: np.ndarray, n_threads: int | None) -> np.ndarray:
        # validated CSR queries against the whole store, per codec
        c = self._load()
        if self.codec == "int8":
            return maxsim_int8_csr(qv, qoff, c["vectors"], c["scales"], c["offsets"], n_threads=n_threads,
                                   corrections=c["corrections"])
        if self.codec == "binary":
            return maxsim_binary_csr(qv, qoff, c["vectors"], c["offsets"], self.dim, n_threads=n_threads)
        return maxsim_csr(qv, qoff, c["vectors"], c["offsets"], n_threads=n_threads)

    def search(
        self,
        queries,
        k: int = 10,
        *,
        n_threads: int | None = None,
        rerank: int | None = None,
        candidates: int | None = None,
        n_centroids: int = 4,
    ) -> list[Hit] | list[list[Hit]]:
        """Exact top-``k`` pages by MaxSim.

        Parameters
        ----------
        queries : (n_tokens, dim) array, or a list of such arrays (NumPy or torch)
        k : int
            Hits per query (fewer if the index is smaller).
        n_threads : int, optional
            Threads for the kernel (default: all cores).
        rerank : int, optional
            ``binary`` indexes with rerank vectors: shortlist this many pages per query by
            Hamming MaxSim, then rescore them exactly from float16 (default ``max(100, 10 k)``;
            0 returns the Hamming ranking). All queries' shortlists are rescored in one
            pass (:func:`~colprune.kernels.maxsim_pairs`).
        candidates : int, optional
            Two-stage search (float codecs): rank every page by MaxSim against its
            ``n_centroids`` centroids (:meth:`summary`, scored as int8), then score the best
            ``candidates`` pages per query exactly. Far faster on large stores; recall below 1 is possible.
        n_centroids : int
            Centroids per page for the first stage (default 4).

        Returns
        -------
        list of Hit for one 2-D query; a list of such lists for a list of queries.
        Each :class:`Hit` is ``(id, score)``, best first; ties go to the earlier page.
        """
        qv, qoff, single = as_query_batch(queries, dim=self.dim)
        if self._n_docs == 0:
            hits: list[list[Hit]] = [[] for _ in range(qoff.size - 1)]
            return hits[0] if single else hits
        if candidates is not None:
            if self.codec not in ("float16", "float32"):
                raise InvalidInputError(f"two-stage search (candidates=) needs a float16/float32 index, not {self.codec}")
            codes, scales, corrections, coff = self._summary_int8(n_centroids, n_threads)
            coarse = maxsim_int8_csr(qv, qoff, codes, scales, coff, n_threads=n_threads, corrections=corrections)
            c = self._load()
            idx, val = self._rescore(qv, qoff, _shortlist(coarse, max(int(candidates), k)), k, c["vectors"],
                                     c["offsets"], n_threads)
        else:
            scores = self._scores(qv, qoff, n_threads)
            if rerank is None:
                rerank = max(100, 10 * int(k))
            if self.codec == "binary" and self.has_rerank and rerank > 0:
                idx, val = self._rescore(qv, qoff, _shortlist(scores, max(int(rerank), k)), k, self._rerank_vectors(),
                                         self._load()["offsets"], n_threads)
            else:
                idx, val = topk(scores, k)
        ids = self.ids
        hits = [[Hit(ids[i], float(s)) for i, s in zip(ri, rv)] for ri, rv in zip(idx, val)]
        return hits[0] if single else hits

    def summary(self, n_centroids: int = 4, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-page centroids for two-stage search, computed once and cached in memory.

        Returns ``(centroids (C, dim) float32, offsets (n_docs + 1,))``; see
        :func:`colprune.kernels.page_centroids`.
        """
        c = self._load()
        key = f"summary{int(n_centroids)}"
        if key not in c:
            c[key] = page_centroids(c["vectors"], c["offsets"], n_centroids, n_threads=n_threads)
        return c[key]

    def _summary_int8(self, n_centroids: int, n_threads):
        # the first stage scores centroids as int8 (VNNI): ~3x the float32 rate, and its
        # rounding is far below the gap between a centroid and the vectors it stands for
        c = self._load()
        key = f"summary{int(n_centroids)}-int8"
        if key not in c:
            cvec, coff = self.summary(n_centroids, n_threads=n_threads)
            codes, scales = quantize_int8(cvec)
            c[key] = (codes, scales, int8_corrections(codes), coff)
        return c[key]

    def _rescore(self, qv, qoff, cand, k: int, vectors, offsets, n_threads):
        # exact MaxSim over each query's candidate pages (ascending, so ties go to the earlier page)
        exact = maxsim_pairs(qv, qoff, vectors, offsets, cand, n_threads=n_threads)
        order, val = topk(exact, k)
        return np.take_along_axis(cand, order, axis=1), val

    # -- writing -----------------------------------------------------------------------

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
        commit_every: int = 256,
    ) -> list[PrunedPage]:
        """Prune and append pages.

        Every page is validated and pruned before anything is written, so bad input
        raises :class:`~colprune.errors.InvalidInputError` (naming the document) and
        leaves the index unchanged. Pages are then committed in groups of
        ``commit_every``; a crash keeps every group committed before it.

        Parameters
        ----------
        ids : n unique, non-empty strings, not already in the index
        embeddings : n arrays of shape (n_i, dim), NumPy or torch, any float dtype
        importance : n arrays of shape (n_i,), optional
            Needed by importance-based pruners; stored with the kept vectors.
        pruner : Pruner or registry name, optional
            Defaults to the pruner the index was built with, else :class:`NoPruning`.
            An index holds pages of one pruner configuration only.
        metadata : n JSON-able dicts (or None), optional
        patch_mask : n boolean arrays of shape (n_i,), optional
            True for image-patch rows; False rows (special/prompt tokens) are always kept.
        grids : n ``(rows, cols)`` patch grids (or None), optional
            ``rows * cols`` must equal the page's number of patch rows.
        signals : n dicts of name -> (n_i,) scores, optional
            Required when the index was created with ``signals=``: one entry per declared name.

        Returns
        -------
        list of PrunedPage, what was stored for each page.
        """
        self._check_writable()
        pruner = self._resolve_pruner(pruner)
        if pruner.merges and not self.merged:
            raise InvalidInputError(f"pruner {pruner.name!r} merges vectors: create the index with merged=True")
        n = len(ids)
        for name, seq in (("embeddings", embeddings), ("importance", importance), ("metadata", metadata),
                          ("patch_mask", patch_mask), ("grids", grids), ("signals", signals)):
            if seq is not None and len(seq) != n:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")
        self._check_ids(ids)
        pages, kept = [], []
        for i, doc_id in enumerate(ids):
            what = f"document {doc_id!r}"
            vec, imp, mask = check_page(
                embeddings[i], None if importance is None else importance[i],
                None if patch_mask is None else patch_mask[i], dim=self.dim, what=what,
            )
            if imp is None and pruner.needs_importance:
                raise InvalidInputError(f"{what}: pruner {pruner.name!r} needs importance scores; pass importance=")
            if grids is not None and grids[i] is not None:
                _check_grid(grids[i], int(mask.sum()), what)
            page = pruner._prune_checked(vec, imp, mask, None if grids is None else grids[i])
            kept_signals = self._check_signals(None if signals is None else signals[i], vec.shape[0], what)
            pages.append(page)
            kept.append(_kept_signals(kept_signals, page))
        self._append(ids, pages, pruner.config(), metadata, grids, commit_every, kept)
        return pages

    def _check_signals(self, given: dict | None, n: int, what: str) -> dict[str, np.ndarray]:
        if not self.signal_names:
            if given:
                raise InvalidInputError(f"{what}: this index stores no signals; create it with signals={sorted(given)}")
            return {}
        if given is None or set(given) != set(self.signal_names):
            raise InvalidInputError(f"{what}: signals must have exactly {self.signal_names}, got {sorted(given or {})}")
        out = {}
        for k in self.signal_names:
            v = np.asarray(given[k], dtype=np.float32)
            if v.shape != (n,) or not np.isfinite(v).all():
                raise InvalidInputError(f"{what}: signal {k!r} must be ({n},) finite scores, got shape {v.shape}")
            out[k] = v
        return out

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
        """Write a pruned copy of this index to ``path`` without re-encoding.

        ``dtype`` picks the new index's codec (default: this one's), so the same call turns a
        float16 full index into, say, a pruned int8 or binary one.

        Pages are re-pruned from their stored vectors and importance (a *full* index,
        built with ``pruner="none"``, keeps every vector, so any pruner can be derived
        from it). Positions, metadata, grids and stored signals carry over. ``signal=`` prunes
        by one of the stored signals instead of the importance (which it then replaces), or by
        a blend ``{name: weight, ...}`` of them, each min-max normalised per page first (e.g.
        ``{"cls": 0.5, "global_sim": 0.5}`` for α·attention + (1-α)·similarity to the global token).
        ``rerank=False`` makes a ``binary`` index without its float16 rerank copy.
        Returns the new index, open read-only.
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
        if source is not None and source.get("name") != "none":
            config["derived_from"] = source
        with Index.create(path, self.dim, dtype or self.codec, encoder=self.encoder, overwrite=overwrite,
                          signals=self.signal_names, merged=self.merged or pruner.merges, rerank=rerank) as dst:
            dst._set_pruner(config)
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
        return Index.open(path)

    def _append_repruned(self, pages: list[Page], pruner: Pruner, config: dict[str, Any], signal: str | None) -> None:
        out, kept = [], []
        for p in pages:
            imp = (p.importance if signal is None else blend_signals(p.signals, signal)).astype(np.float64)
            if np.isnan(imp).any():
                if pruner.needs_importance:
                    raise InvalidInputError(
                        f"document {p.id!r} was stored without importance scores; pruner {pruner.name!r} needs them"
                    )
                imp = None
            pp = pruner._prune_checked(p.vectors, imp, p.patch_mask, p.grid)
            covers = None
            if pp.covers is not None or p.covers is not None:
                # in encoder rows: a merged vector stands for the union of what its members covered
                src = p.covers if p.covers is not None else tuple(np.array([r]) for r in p.positions)
                members = pp.covers if pp.covers is not None else tuple(np.array([r]) for r in pp.positions)
                covers = tuple(np.sort(np.concatenate([src[m] for m in ms])) for ms in members)
            out.append(PrunedPage(pp.vectors, p.positions[pp.positions], pp.importance, pp.patch_mask, p.n_original, covers))
            kept.append(_kept_signals(p.signals, pp))
        self._append([p.id for p in pages], out, config, [p.metadata for p in pages], [p.grid for p in pages],
                     len(pages), kept)

    def _resolve_pruner(self, pruner: Pruner | str | None) -> Pruner:
        stored = L.read_pruner(self._f)
        if pruner is None:
            return make_pruner(stored) if stored else NoPruning()
        pruner = make_pruner(pruner)
        if stored is not None and self._n_docs:
            base = {k: stored[k] for k in ("name", "params")}
            if base != pruner.config():
                raise InvalidInputError(
                    f"{self.path} holds pages pruned with {stored}; add with the same pruner, or derive a "
                    f"differently pruned index with Index.derive / `colprune prune`"
                )
        return pruner

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise PermissionError(f"{self.path} is open read-only; use Index.open(path, mode='a') to append")
        if not self._f.id.valid:
            raise ValueError(f"{self.path} is closed")

    def _check_ids(self, ids: Sequence[str]) -> None:
        existing = self._id_rows()
        seen: set[str] = set()
        for doc_id in ids:
            if not isinstance(doc_id, str):
                raise InvalidInputError(f"document ids must be strings, got {type(doc_id).__name__} {doc_id!r}")
            if not doc_id:
                raise InvalidInputError("empty document id ''")
            if doc_id in existing:
                raise DuplicateIdError(f"document {doc_id!r} is already in {self.path}")
            if doc_id in seen:
                raise DuplicateIdError(f"document {doc_id!r} appears twice in this add")
            seen.add(doc_id)

    def _set_pruner(self, config: dict[str, Any]) -> None:
        if L.read_pruner(self._f) != config:
            self._f.attrs[L.A_PRUNER] = json.dumps(config, sort_keys=True)

    def _append(
        self,
        ids: Sequence[str],
        pages: list[PrunedPage],
        pruner_config: dict[str, Any],
        metadata: Sequence[dict | None] | None,
        grids: Sequence[tuple[int, int] | None] | None,
        commit_every: int,
        signals: list[dict[str, np.ndarray]] | None = None,
    ) -> None:
        meta_json, grid_rows, stored = [], [], []
        for i, (doc_id, page) in enumerate(zip(ids, pages)):
            what = f"document {doc_id!r}"
            m = None if metadata is None else metadata[i]
            if m is None:
                m = {}
            if not isinstance(m, dict):
                raise InvalidInputError(f"{what}: metadata must be a dict, got {type(m).__name__}")
            try:
                meta_json.append(json.dumps(m, allow_nan=False, ensure_ascii=False))
            except (TypeError, ValueError) as e:
                raise InvalidInputError(f"{what}: metadata is not JSON-serialisable ({e})") from None
            g = None if grids is None else grids[i]
            grid_rows.append(_NO_GRID if g is None else tuple(int(x) for x in g))
            if self.codec == "float32" or self.codec == "int8":
                vec = page.vectors.astype(np.float32, copy=False)
            else:  # float16 and binary (its rerank copy)
                with np.errstate(over="ignore"):
                    vec = page.vectors.astype(np.float16, copy=False)
                if not np.isfinite(vec).all():
                    raise InvalidInputError(f"{what}: values overflow float16 (|x| > 65504)")
            stored.append(vec)
        self._set_pruner(pruner_config)
        step = max(1, int(commit_every))
        for lo in range(0, len(pages), step):
            hi = min(lo + step, len(pages))
            self._commit(ids[lo:hi], stored[lo:hi], pages[lo:hi], meta_json[lo:hi], grid_rows[lo:hi],
                         None if signals is None else signals[lo:hi])

    def _commit(self, ids, vectors, pages, meta_json, grid_rows, signals=None) -> None:
        f = self._f
        n0, v0 = self._n_docs, self._n_vectors
        lengths = np.array([v.shape[0] for v in vectors], dtype=np.int64)
        nd, nv = len(ids), int(lengths.sum())

        def extend(name: str, data: np.ndarray, start: int) -> None:
            ds = f[name]
            ds.resize(start + data.shape[0], axis=0)
            ds[start : start + data.shape[0]] = data

        # data first, commit record last: a crash before the record leaves an ignored tail
        flat = np.concatenate(vectors)
        if self.codec == "int8":
            codes, scales = quantize_int8(flat)
            extend(L.VECTORS, codes, v0)
            extend(L.SCALES, scales, v0)
        elif self.codec == "binary":
            extend(L.VECTORS, pack_binary(flat).view(np.uint8), v0)
            if self.has_rerank:
                extend(L.RERANK, flat.astype(np.float16), v0)
        else:
            extend(L.VECTORS, flat, v0)
        extend(L.POSITIONS, np.concatenate([p.positions for p in pages]).astype(np.int32), v0)
        extend(L.IMPORTANCE, np.concatenate([p.importance for p in pages]).astype(np.float32), v0)
        extend(L.PATCH_MASK, np.concatenate([p.patch_mask for p in pages]).astype(np.uint8), v0)
        for name in self.signal_names:
            extend(f"{L.SIGNALS}/{name}", np.concatenate([s[name] for s in signals]).astype(np.float32), v0)
        if self.merged:
            covers = [c for p in pages for c in (p.covers if p.covers is not None else [np.array([r]) for r in p.positions])]
            start = int(f[L.COVERS_OFFSETS][v0])
            extend(L.COVERS_ROWS, np.concatenate(covers).astype(np.int32), start)
            extend(L.COVERS_OFFSETS, start + np.cumsum([len(c) for c in covers], dtype=np.int64), v0 + 1)
        for data, offsets, texts in ((L.DOC_ID_BYTES, L.DOC_ID_OFFSETS, ids), (L.DOC_META_BYTES, L.DOC_META_OFFSETS, meta_json)):
            encoded = [t.encode("utf-8") for t in texts]
            start = int(f[offsets][n0])
            extend(data, np.frombuffer(b"".join(encoded), dtype=np.uint8), start)
            extend(offsets, start + np.cumsum([len(e) for e in encoded], dtype=np.int64), n0 + 1)
        extend(L.DOC_N_ORIGINAL, np.array([p.n_original for p in pages], dtype=np.int64), n0)
        extend(L.DOC_GRID, np.array(grid_rows, dtype=np.int32).reshape(-1, 2), n0)
        extend(L.OFFSETS, v0 + np.cumsum(lengths), n0 + 1)
        f.flush()
        f[L.COMMIT][:] = np.array([n0 + nd, v0 + nv], dtype=np.int64)
        f.flush()
        self._fsync()
        self._n_docs, self._n_vectors = n0 + nd, v0 + nv
        if self._ids is not None:
            self._ids.extend(ids)
        if self._row is not None:
            self._row.update((doc_id, n0 + i) for i, doc_id in enumerate(ids))
        self._cache = None

    def _fsync(self) -> None:
        try:
            os.fsync(self._f.id.get_vfd_handle())
        except (OSError, ValueError, TypeError):  # drivers without a file descriptor
            pass

    def _check_commit(self) -> None:
        f, n, v = self._f, self._n_docs, self._n_vectors
        if n < 0 or v < 0 or f[L.OFFSETS].shape[0] < n + 1 or f[L.VECTORS].shape[0] < v:
            raise FormatError(f"{self.path} is damaged: its commit record ({n} docs, {v} vectors) exceeds its datasets")
        for name in (L.DOC_N_ORIGINAL, L.DOC_GRID):
            if f[name].shape[0] < n:
                raise FormatError(f"{self.path} is damaged: {name} has fewer than {n} entries")
        for data, offsets in L.STRINGS[self.format_version].values():
            if offsets is None:
                if f[data].shape[0] < n:
                    raise FormatError(f"{self.path} is damaged: {data} has fewer than {n} entries")
            elif f[offsets].shape[0] < n + 1 or int(f[offsets][n]) > f[data].shape[0]:
                raise FormatError(f"{self.path} is damaged: {offsets} does not cover {n} documents")
        for name in self._per_vector():
            if f[name].shape[0] < v:
                raise FormatError(f"{self.path} is damaged: {name} has fewer than {v} entries")
        width = (self.dim + 63) // 64 * 8 if self.codec == "binary" else self.dim
        if f[L.VECTORS].shape[1] != width:
            raise FormatError(f"{self.path} is damaged: vectors have width {f[L.VECTORS].shape[1]}, expected {width} for dim {self.dim}")
        if int(f[L.OFFSETS][n]) != v:
            raise FormatError(f"{self.path} is damaged: offsets[{n}] = {int(f[L.OFFSETS][n])} but {v} vectors are committed")

    def _per_vector(self) -> list[str]:
        names = [n for n in (L.VECTORS, L.POSITIONS, L.IMPORTANCE, L.PATCH_MASK, L.SCALES, L.RERANK) if n in self._f]
        return names + [f"{L.SIGNALS}/{k}" for k in self.signal_names]

    def _drop_uncommitted(self) -> None:
        # Rows past the commit record are left by an interrupted append: cut them off.
        f, n, v = self._f, self._n_docs, self._n_vectors
        changed = False
        sizes = [(name, v) for name in self._per_vector()] + [
            (L.OFFSETS, n + 1), (L.DOC_N_ORIGINAL, n), (L.DOC_GRID, n)]
        for data, offsets in L.STRINGS[self.format_version].values():
            sizes += [(offsets, n + 1), (data, int(f[offsets][n]))]
        if self.merged:
            sizes += [(L.COVERS_OFFSETS, v + 1), (L.COVERS_ROWS, int(f[L.COVERS_OFFSETS][v]))]
        for name, size in sizes:
            if f[name].shape[0] > size:
                f[name].resize(size, axis=0)
                changed = True
        if changed:
            f.flush()
