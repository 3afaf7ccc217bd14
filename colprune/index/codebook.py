"""The codebook of a residual collection (format 4): trained, written once, read back validated.

A residual codec (``residual1``/``residual2``/``residual4``) stores each vector as the id of its
nearest centroid (uint16) and its residual quantised to ``nbits`` per dimension (ColBERTv2 /
PLAID). The centroids, the bucket cutoffs and the bucket weights are the collection's
:class:`Codebook`: one immutable, checksummed HDF5 file ``codebooks/<name>.h5`` that the manifest
names (``settings["codebook"] = {"name", "checksum"}``) and every residual segment names too.

- :func:`train_codebook`: k-means centroids and residual buckets from a sample of vectors
  (at most :data:`TRAIN_SAMPLE_CAP`, drawn by :func:`sample_rows`);
- :func:`write_codebook`: into ``tmp/``, ``fsync``, renamed into ``codebooks/``; returns the
  manifest entry;
- :func:`read_codebook`: opened as a regular file, every dataset's shape, dtype and checksum
  checked, and what checksums cannot vouch for (finite values, sorted cutoffs, K within 1..65536).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import xxhash

from ..errors import CorruptionError, FormatError, InvalidInputError
from ..kernels import assign_centroids, codebook_size, decode_residual, encode_residual, residual_buckets, train_centroids
from ..kernels.assign import CentroidGroups, search_groups
from . import layout as L
from . import manifest as M
from .files import open_h5
from .segment_checks import check_no_outside_reads, check_storage, guarded, hash_bytes, int_attr, str_attr
from .segment_writer import SegmentFile

__all__ = ["Codebook", "train_codebook", "write_codebook", "read_codebook", "sample_rows", "TRAIN_SAMPLE_CAP",
           "RETRAIN_FACTOR", "MAX_CENTROIDS"]

#: at most this many vectors (drawn uniformly, seed 0) train a codebook; K is then at most codebook_size(7/8 cap) = 8,192
TRAIN_SAMPLE_CAP = 1 << 19
#: new data whose reconstruction error exceeds this many times the codebook's training error asks for a retrain
RETRAIN_FACTOR = 1.5
#: codes are uint16
MAX_CENTROIDS = 1 << 16
#: rows widened to float32 and encoded at a time (8 MiB of float32 at dim 128)
ENCODE_CHUNK = 1 << 14


@dataclass(frozen=True)
class Codebook:
    """A residual collection's codebook.

    Attributes
    ----------
    name : file name in ``codebooks/`` (what the manifest and the segments name)
    centroids : (K, dim) float32, the stored float16 values widened
    cutoffs : (dim, 2**nbits - 1) float32, per dimension bucket boundaries of the residuals
    weights : (dim, 2**nbits) float32, per dimension value of each bucket
    nbits : 1, 2 or 4 bits per dimension
    n_trained : vectors it was trained on
    train_error : mean squared reconstruction error per vector on the held-out eighth of its sample
    checksum : the manifest's checksum of its file ("" until written)
    """

    name: str
    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int
    n_trained: int
    train_error: float
    checksum: str = ""
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def groups(self) -> CentroidGroups | None:
        """The centroids' two-level search groups (built once, deterministic), or None for a codebook
        small enough to search exactly (:func:`~colprune.kernels.assign.search_groups`)."""
        if "groups" not in self._cache:
            self._cache["groups"] = search_groups(self.centroids)
        return self._cache["groups"]

    def replaced(self, **changes: Any) -> Codebook:
        """``dataclasses.replace`` keeping the search groups: for the name, checksum and training error
        (fields the centroids do not depend on)."""
        out = dataclasses.replace(self, **changes)
        out._cache.update(self._cache)
        return out

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(codes (N,) uint16, packed (N, dim * nbits / 8) uint8)`` of ``x`` (N, dim)."""
        codes, packed, _ = self.encode_measured(x)
        return codes, packed

    def encode_measured(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`encode` plus the summed squared reconstruction error of ``x``, measured while encoding.

        ``x`` (N, dim) float16 or float32 is widened and encoded ``ENCODE_CHUNK`` rows at a time, so a
        float16 batch is never copied whole to float32."""
        n = x.shape[0]
        codes = np.empty(n, np.uint16)
        packed = np.empty((n, self.dim * self.nbits // 8), np.uint8)
        total = 0.0
        for a in range(0, n, ENCODE_CHUNK):
            c, p, err = encode_residual(np.ascontiguousarray(x[a:a + ENCODE_CHUNK], np.float32), self.centroids,
                                        self.cutoffs, self.nbits, groups=self.groups, weights=self.weights)
            codes[a:a + c.size], packed[a:a + c.size] = c, p
            total += float(err.sum(dtype=np.float64))
        return codes, packed, total

    def decode(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """(N, dim) float32 vectors of stored codes and packed residuals."""
        return decode_residual(codes, packed, self.centroids, self.weights, self.nbits)

    def error(self, x: np.ndarray, coded: tuple[np.ndarray, np.ndarray] | None = None) -> float:
        """Mean squared reconstruction error per vector of ``x`` (N, dim) (``coded``: its encoding, if made already)."""
        x = np.ascontiguousarray(x, np.float32)
        if x.shape[0] == 0:
            return 0.0
        if coded is None:
            return self.encode_measured(x)[2] / x.shape[0]
        codes, packed = coded
        diff = x - self.decode(codes, packed)
        return float(np.einsum("ij,ij->", diff, diff, dtype=np.float64) / x.shape[0])


def sample_rows(n: int, cap: int = TRAIN_SAMPLE_CAP, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a uniform sample of at most ``cap`` of ``n`` rows (all when ``n <= cap``)."""
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False)).astype(np.int64)


def train_codebook(sample: np.ndarray, nbits: int, *, seed: int = 0) -> Codebook:
    """A codebook trained on ``sample`` (S, dim) float: K = ``codebook_size(T)`` k-means centroids (stored float16)
    on ``T`` = 7/8 of the rows, then per dimension bucket cutoffs and weights from their residuals.

    ``train_error`` is measured on the held-out eighth (all rows when there are fewer than 16): with K near
    16·sqrt(T), the error on the training rows themselves is far below what any other vector gets, and
    drift (:data:`RETRAIN_FACTOR`) is judged against this figure. ``sample`` should be drawn by
    :func:`sample_rows` (at most :data:`TRAIN_SAMPLE_CAP` vectors)."""
    sample = np.ascontiguousarray(sample, np.float32)
    if sample.ndim != 2 or sample.shape[0] == 0:
        raise InvalidInputError(f"a codebook needs at least one training vector, got shape {sample.shape}")
    if not np.isfinite(sample).all():
        raise InvalidInputError("the codebook's training vectors contain NaN or infinite values")
    held = sample.shape[0] // 8 if sample.shape[0] >= 16 else 0
    order = np.random.default_rng(seed).permutation(sample.shape[0])
    held_out = sample[np.sort(order[:held])] if held else sample
    sample = sample[np.sort(order[held:])] if held else sample
    k = min(codebook_size(sample.shape[0]), MAX_CENTROIDS)
    with np.errstate(over="ignore"):
        half = train_centroids(sample, k, seed=seed).astype(np.float16)
    if not np.isfinite(half).all():
        raise InvalidInputError("vectors too large for a residual codec: centroids overflow float16 (|x| > 65504)")
    centroids = half.astype(np.float32)
    groups = search_groups(centroids)
    codes = assign_centroids(sample, centroids, groups=groups)
    cutoffs, weights = residual_buckets(sample - centroids[codes], nbits)
    cb = Codebook(M.unique_name("cb", ".h5"), centroids, np.ascontiguousarray(cutoffs, np.float32),
                  np.ascontiguousarray(weights, np.float32), int(nbits), int(sample.shape[0]), 0.0)
    cb._cache["groups"] = groups
    return cb.replaced(train_error=cb.error(held_out))


def _datasets(cb: Codebook) -> dict[str, np.ndarray]:
    return {L.CB_CENTROIDS: cb.centroids.astype(np.float16), L.CB_CUTOFFS: cb.cutoffs, L.CB_WEIGHTS: cb.weights}


def write_codebook(root: str, cb: Codebook) -> dict[str, Any]:
    """Write ``cb`` as ``codebooks/<name>.h5`` (through ``tmp/``, ``fsync``ed, renamed); returns its manifest entry.

    An I/O error raises the ``OSError`` (the caller makes it a ``WriteError``) and leaves no file behind.
    """
    os.makedirs(os.path.join(root, L.CODEBOOKS), exist_ok=True)
    tmp = os.path.join(root, L.TMP, cb.name)
    sink = SegmentFile(tmp)
    try:
        with h5py.File(sink, "w", libver="latest", locking=False) as f:
            checks = {}
            for name, data in _datasets(cb).items():
                f.create_dataset(name, data=data)
                checks[name] = f"{hash_bytes(data):016x}"
            record = json.dumps(checks, sort_keys=True)
            attrs = {L.A_FORMAT: L.CODEBOOK_FORMAT, L.A_FORMAT_VERSION: L.FORMAT_VERSION, L.A_DIM: cb.dim,
                     L.A_NBITS: cb.nbits, L.A_N_CENTROIDS: cb.n_centroids, L.A_N_TRAINED: cb.n_trained,
                     L.A_TRAIN_ERROR: float(cb.train_error), L.A_CHECKS: record}
            for key, value in attrs.items():
                f.attrs[key] = value
            for obj in (f, *(f[n] for n in checks)):
                obj.attrs[L.ENCODING_TYPE] = "residual-codebook"
                obj.attrs[L.ENCODING_VERSION] = str(L.FORMAT_VERSION)
        sink.sync()
        sink.close()
        if sink.error is not None:
            raise sink.error
        dest = os.path.join(root, L.CODEBOOKS, cb.name)
        os.replace(tmp, dest)
    except BaseException:
        sink.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    M.fsync_dir(os.path.dirname(dest))
    return {"name": cb.name, "checksum": f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"}


class _Reader:
    """A codebook file opened for validation (``path`` for :func:`guarded`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.checksum = ""

    @guarded
    def read(self, entry: dict[str, Any], dim: int, nbits: int) -> Codebook:
        path = self.path
        try:
            f, fd, size = open_h5(path)
        except FileNotFoundError:
            raise M.MissingFileError(f"{path}: codebook named by the manifest is missing") from None
        try:
            return self._check(f, size, entry, dim, nbits)
        finally:
            f.close()
            os.close(fd)

    def _check(self, f: h5py.File, size: int, entry: dict[str, Any], dim: int, nbits: int) -> Codebook:
        path = self.path
        if str_attr(f, L.A_FORMAT, path, 256) != L.CODEBOOK_FORMAT:
            raise FormatError(f"{path} is not a colprune codebook (format attribute {str_attr(f, L.A_FORMAT, path, 256)!r})")
        datasets = check_no_outside_reads(f, path)
        record = str_attr(f, L.A_CHECKS, path, 4096)
        if f"{xxhash.xxh3_64_intdigest(record.encode()):016x}" != entry["checksum"]:
            raise CorruptionError(f"{path}: the codebook's checksum record does not match the manifest's ({entry['checksum']})")
        self.checksum = entry["checksum"]
        checks = json.loads(record)
        k = int_attr(f, L.A_N_CENTROIDS, 1, MAX_CENTROIDS, path)
        got = (int_attr(f, L.A_DIM, 1, L.MAX_DIM, path), int_attr(f, L.A_NBITS, 1, 8, path))
        if got != (dim, nbits):
            raise CorruptionError(f"{path}: a codebook of dim {got[0]} with {got[1]}-bit residuals; the collection is "
                                  f"dim {dim}, {nbits} bits")
        n_trained = int_attr(f, L.A_N_TRAINED, 1, L.MAX_COUNT, path)
        if k > n_trained:
            raise CorruptionError(f"{path}: {k} centroids trained on {n_trained} vectors (at most one per vector)")
        b = 1 << nbits
        want = {L.CB_CENTROIDS: ((k, dim), np.float16), L.CB_CUTOFFS: ((dim, b - 1), np.float32),
                L.CB_WEIGHTS: ((dim, b), np.float32)}
        if set(datasets) != set(want):
            raise CorruptionError(f"{path}: holds datasets {sorted(datasets)}, a codebook holds {sorted(want)}")
        for name, (shape, dtype) in want.items():
            ds = datasets[name]
            if ds.shape != shape or ds.dtype != np.dtype(dtype):
                raise CorruptionError(f"{path}: {name} is {ds.shape} {ds.dtype}, expected {shape} {np.dtype(dtype)}")
        check_storage(datasets, path, size)
        data = {}
        for name in want:
            data[name] = f[name][()]
            if not isinstance(checks, dict) or checks.get(name) != f"{hash_bytes(data[name]):016x}":
                raise CorruptionError(f"{path}: dataset {name!r} does not match its checksum (damaged)")
        return self._arrays(f, data, n_trained)

    def _arrays(self, f: h5py.File, data: dict[str, np.ndarray], n_trained: int) -> Codebook:
        path = self.path
        aid = f.attrs.get_id(L.A_TRAIN_ERROR)
        error = float(f.attrs[L.A_TRAIN_ERROR]) if aid.shape == () and aid.dtype.kind == "f" else float("nan")
        if not (np.isfinite(error) and error >= 0):
            raise CorruptionError(f"{path}: attribute {L.A_TRAIN_ERROR!r} is not a finite number >= 0")
        centroids = data[L.CB_CENTROIDS].astype(np.float32)
        cutoffs, weights = data[L.CB_CUTOFFS], data[L.CB_WEIGHTS]
        for name, arr in ((L.CB_CENTROIDS, centroids), (L.CB_CUTOFFS, cutoffs), (L.CB_WEIGHTS, weights)):
            if not np.isfinite(arr).all():
                raise CorruptionError(f"{path}: {name} holds NaN or infinite values")
        if (np.diff(cutoffs, axis=1) < 0).any():
            raise CorruptionError(f"{path}: {L.CB_CUTOFFS} are not sorted within a dimension")
        return Codebook(os.path.basename(path), np.ascontiguousarray(centroids), np.ascontiguousarray(cutoffs),
                        np.ascontiguousarray(weights), int(f.attrs[L.A_NBITS]), n_trained, error, self.checksum)


def read_codebook(root: str, entry: dict[str, Any], dim: int, codec: str) -> Codebook:
    """The codebook the manifest ``entry`` (``{"name", "checksum"}``) names, validated for a ``dim``-dimensional
    collection of ``codec``: a :class:`CorruptionError` naming the file when anything is off."""
    return _Reader(os.path.join(root, L.CODEBOOKS, entry["name"])).read(entry, dim, L.residual_bits(codec))
