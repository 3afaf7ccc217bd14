"""Every on-disk name of the colprune HDF5 format, and the checks on opening a file.

This module is the single owner of dataset names, attribute keys and format versions;
``docs/format.md`` is the human-readable contract for the same layout.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..errors import FormatError, InvalidInputError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "VECTORS",
    "OFFSETS",
    "POSITIONS",
    "IMPORTANCE",
    "PATCH_MASK",
    "COMMIT",
    "DOCS",
    "DOC_N_ORIGINAL",
    "DOC_GRID",
    "DOC_ID_BYTES",
    "DOC_ID_OFFSETS",
    "DOC_META_BYTES",
    "DOC_META_OFFSETS",
    "STRINGS",
    "STORED_DTYPES",
    "CODECS",
    "SCALES",
    "RERANK",
    "SIGNALS",
    "COVERS_ROWS",
    "COVERS_OFFSETS",
    "CODES",
    "IVF_OFFSETS",
    "IVF_DOCS",
    "RESIDUAL_CODECS",
    "COLLECTION_VERSIONS",
    "residual_bits",
    "stored_bytes",
    "check_codec",
    "reads_float16",
    "codec_of",
    "vector_width",
    "check_file",
]

FORMAT_NAME = "colprune-index"
FORMAT_VERSION = 4
READABLE_VERSIONS = frozenset({1, 2, 3, 4})
#: versions stored as a collection folder (3: no codebooks; 4: adds the residual codecs and their codebooks)
COLLECTION_VERSIONS = frozenset({3, 4})
#: versions stored as one HDF5 file (read only since version 3)
FILE_VERSIONS = frozenset({1, 2})

# attribute keys
ENCODING_TYPE = "encoding-type"
ENCODING_VERSION = "encoding-version"
A_FORMAT = "format"
A_FORMAT_VERSION = "format_version"
A_DIM = "dim"
A_DTYPE = "dtype"
A_PRUNER = "pruner"
A_ENCODER = "encoder"
A_LIBRARY_VERSION = "library_version"
A_CREATED = "created"
A_CODEC = "codec"  # v2

# datasets: per vector (length N, only the first COMMIT[1] rows are committed)
VECTORS = "vectors"
POSITIONS = "positions"
IMPORTANCE = "importance"
PATCH_MASK = "patch_mask"
SCALES = "scales"  # v2, int8 codec: (N,) float32
RERANK = "rerank_vectors"  # v2, binary codec: (N, dim) float16, optional
COVERS_ROWS = "covers/rows"  # v2, merged indexes: input rows each vector stands for, back to back
COVERS_OFFSETS = "covers/offsets"  # (N + 1,) int64 into covers/rows
SIGNALS = "signals"  # v2, optional group: one (N,) float32 dataset per importance signal
# per document (only the first COMMIT[0] are committed; offsets has COMMIT[0] + 1)
OFFSETS = "offsets"
DOCS = "docs"
DOC_N_ORIGINAL = "docs/n_original"
DOC_GRID = "docs/grid"
# v2: strings as UTF-8 byte CSR (bytes + (n_docs + 1,) offsets): fixed-size appends only,
# no HDF5 global heap, which an interrupted append can leave corrupt
DOC_ID_BYTES = "docs/id_bytes"
DOC_ID_OFFSETS = "docs/id_offsets"
DOC_META_BYTES = "docs/metadata_bytes"
DOC_META_OFFSETS = "docs/metadata_offsets"
# v1: the same strings as HDF5 variable-length datasets (read only)
DOC_IDS_V1 = "docs/ids"
DOC_METADATA_V1 = "docs/metadata"
# (name of the bytes dataset, name of the offsets dataset or None for v1 vlen) per field
STRINGS = {
    1: {"ids": (DOC_IDS_V1, None), "metadata": (DOC_METADATA_V1, None)},
    2: {"ids": (DOC_ID_BYTES, DOC_ID_OFFSETS), "metadata": (DOC_META_BYTES, DOC_META_OFFSETS)},
}
# (2,) int64 [n_docs, n_vectors]: written last; the only source of truth for what is committed
COMMIT = "commit"

#: the largest document or vector count, embedding dimension and centroid count a reader accepts
#: (a file's own size bounds its counts far lower; these keep arithmetic on them exact)
MAX_COUNT = 1 << 48
MAX_DIM = 1 << 20

STORED_DTYPES = {"float16": np.float16, "float32": np.float32}
# codec -> dtype of the `vectors` dataset (v2); v1 files are float16/float32 only
CODECS = {"float16": np.float16, "float32": np.float32, "int8": np.int8, "binary": np.uint8,
          "residual1": np.uint8, "residual2": np.uint8, "residual4": np.uint8}
#: residual codecs (format 4) -> bits per dimension of the quantised residual
RESIDUAL_CODECS = {"residual1": 1, "residual2": 2, "residual4": 4}

# encoding-type of every object (v1/v2 names; segments add _SEGMENT_ENCODINGS), stamped by set_segment_encoding
_ENCODINGS = {
    "/": FORMAT_NAME,
    VECTORS: "csr-vectors",
    OFFSETS: "csr-offsets",
    POSITIONS: "per-vector",
    IMPORTANCE: "per-vector",
    PATCH_MASK: "per-vector",
    COMMIT: "commit-record",
    SCALES: "per-vector",
    RERANK: "per-vector",
    SIGNALS: "per-vector-signals",
    "covers": "per-vector-csr",
    COVERS_ROWS: "csr-values",
    COVERS_OFFSETS: "csr-offsets",
    DOCS: "per-document",
    DOC_ID_BYTES: "utf8-csr-bytes",
    DOC_ID_OFFSETS: "csr-offsets",
    DOC_META_BYTES: "json-csr-bytes",
    DOC_META_OFFSETS: "csr-offsets",
    DOC_N_ORIGINAL: "per-document",
    DOC_GRID: "per-document",
}


def vector_width(dim: int, codec: str) -> int:
    """Columns of the ``vectors`` dataset: ``dim``, ``dim`` bits packed into whole 64-bit words (binary), or
    ``dim * nbits / 8`` bytes of packed residual buckets (residual codecs)."""
    if codec in RESIDUAL_CODECS:
        return int(dim) * RESIDUAL_CODECS[codec] // 8
    return (int(dim) + 63) // 64 * 8 if codec == "binary" else int(dim)


def residual_bits(codec: str) -> int:
    """Bits per dimension of a residual codec; 0 for the others."""
    return RESIDUAL_CODECS.get(codec, 0)


def check_codec(codec: str, dim: int) -> None:
    """An :class:`~colprune.errors.InvalidInputError` unless ``codec`` is one a collection stores with ``dim``
    (a positive integer, checked by the caller): residual codecs pack ``dim * nbits`` bits into whole bytes."""
    if codec not in CODECS:
        raise InvalidInputError(f"dtype must be one of {sorted(CODECS)}, got {codec!r}")
    if int(dim) * residual_bits(codec) % 8:
        raise InvalidInputError(f"{codec} packs {residual_bits(codec)} bits per dimension into bytes: dim * "
                                f"{residual_bits(codec)} must be a multiple of 8, got dim {dim}")


def reads_float16(codec: str) -> bool:
    """Whether a writer hands this codec float16 vectors as they are (float16 stores them; residual
    codecs widen them chunk by chunk while encoding) instead of widening the batch to float32 first."""
    return codec == "float16" or codec in RESIDUAL_CODECS


def stored_bytes(codec: str, dim: int) -> int:
    """Stored bytes per vector: float16 2·dim, float32 4·dim, int8 dim + 4 (scale), binary dim/8 (in 64-bit
    words), residual 2 (centroid code) + dim·nbits/8 (the codebook's own bytes not counted)."""
    if codec in RESIDUAL_CODECS:
        return 2 + vector_width(dim, codec)
    return {"float16": 2 * dim, "float32": 4 * dim, "int8": dim + 4, "binary": (dim + 63) // 64 * 8}[codec]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_file(f: h5py.File, path: str) -> int:
    """Check that ``f`` is a colprune index this version can read; return its format version."""
    fmt = f.attrs.get(A_FORMAT)
    if not isinstance(fmt, (str, bytes)) or _text(fmt) != FORMAT_NAME:
        raise FormatError(
            f"{path} is an HDF5 file but not a colprune index (its root attribute {A_FORMAT!r} is "
            f"{None if fmt is None else _text(fmt)[:80]!r}, expected {FORMAT_NAME!r}); build one with "
            "colprune.Index.create or `colprune build`"
        )
    version = f.attrs.get(A_FORMAT_VERSION, -1)
    if not isinstance(version, (int, np.integer)):
        raise FormatError(f"{path} is damaged: its {A_FORMAT_VERSION!r} attribute is not an integer")
    version = int(version)
    if version not in READABLE_VERSIONS:
        if version > FORMAT_VERSION:
            raise FormatError(
                f"{path} uses colprune format version {version}, newer than this colprune "
                f"{__version__} reads (up to {FORMAT_VERSION}); upgrade: pip install -U colprune"
            )
        raise FormatError(f"{path} has unknown colprune format version {version}; readable: {sorted(READABLE_VERSIONS)}")
    required = [VECTORS, OFFSETS, POSITIONS, IMPORTANCE, PATCH_MASK, COMMIT, DOC_N_ORIGINAL, DOC_GRID]
    required += [n for pair in STRINGS[version].values() for n in pair if n]
    if version >= 2 and text_attr(f, A_CODEC) == "int8":
        required.append(SCALES)
    missing = [n for n in required if n not in f]
    if missing:
        raise FormatError(f"{path} is damaged: missing {', '.join(missing)}")
    return version


def codec_of(f: h5py.File, version: int, path: str) -> str:
    """The vector codec: v1 files store float16/float32 under ``dtype``; v2 names it ``codec``."""
    codec = text_attr(f, A_DTYPE if version == 1 else A_CODEC)
    allowed = STORED_DTYPES if version == 1 else CODECS
    if codec not in allowed:
        raise FormatError(f"{path}: unsupported codec {codec!r} for format version {version} (known: {sorted(allowed)})")
    return codec


def read_pruner(f: h5py.File) -> dict[str, Any] | None:
    raw = _text(f.attrs.get(A_PRUNER, ""))
    return json.loads(raw) if raw else None


def text_attr(f: h5py.File, key: str) -> str:
    return _text(f.attrs.get(key, ""))


# -- format versions 3 and 4: a collection directory ---------------------------------------
# COLLECTION/COLPRUNE            marker: JSON {"format": ..., "format_version": 3 or 4}
# COLLECTION/LOCK                the writer lock (flock); "PID HOST" of the writer, for messages only
# COLLECTION/manifests/<v>.json  one immutable commit record per version (20-digit v)
# COLLECTION/segments/<name>.h5  immutable HDF5 segment files
# COLLECTION/deletes/<name>      deletion bitmaps, immutable, one per (segment, version)
# COLLECTION/codebooks/<name>.h5 immutable codebooks of the residual codecs (format 4), named by the manifest
# COLLECTION/tmp/                writes in progress; anything left there is garbage
COLLECTION_FORMAT = FORMAT_NAME  # a collection is a colprune index, format 3 or 4
SEGMENT_FORMAT = "colprune-segment"
MARKER = "COLPRUNE"
LOCK = "LOCK"
MANIFESTS = "manifests"
SEGMENTS = "segments"
DELETES = "deletes"
CODEBOOKS = "codebooks"
TMP = "tmp"
HASH_ALGO = "xxh3_64"

# segment datasets besides the v2 names reused (VECTORS, SCALES, RERANK, POSITIONS, IMPORTANCE,
# PATCH_MASK, SIGNALS/*, COVERS_*, OFFSETS, DOC_*)
SUMMARY_CODES = "summary/codes"  # (C, dim) int8: per-page centroids, quantised
SUMMARY_SCALES = "summary/scales"  # (C,) float32
SUMMARY_OFFSETS = "summary/offsets"  # (n_docs + 1,) int64
FILTERS = "filters"  # group: one subgroup per filterable metadata field
FILTER_NUM = "num"  # (n_docs,) float64, NaN = missing or not a number
FILTER_CODES = "codes"  # (n_docs,) int32 into the field's string dictionary, -1 = missing
FILTER_DICT_BYTES = "dict_bytes"
FILTER_DICT_OFFSETS = "dict_offsets"
CHECKS = "checks"  # group: per-document hashes, one (n_docs,) uint64 dataset per hash group
A_CHECKS = "checksums"  # segment attribute: JSON {dataset: hex xxh3_64} of every whole-dataset hash
A_N_DOCS = "n_docs"
A_N_VECTORS = "n_vectors"
A_SUMMARY_CENTROIDS = "summary_centroids"
A_FIELD = "field"
# residual codecs (format 4): per-vector centroid codes and per-segment inverted lists
CODES = "codes"  # (N,) uint16: the centroid of each vector (its residual is in `vectors`)
IVF_OFFSETS = "ivf/offsets"  # (K + 1,) int64: centroid c's pages are ivf/docs[offsets[c]:offsets[c + 1]]
IVF_DOCS = "ivf/docs"  # (M,) int32: ascending distinct documents of the segment per centroid
A_CODEBOOK = "codebook"  # segment attribute: the name of the codebook its codes index
# a codebook file (codebooks/<name>.h5): datasets and attributes
CODEBOOK_FORMAT = "colprune-codebook"
CB_CENTROIDS = "centroids"  # (K, dim) float16
CB_CUTOFFS = "cutoffs"  # (dim, 2**nbits - 1) float32
CB_WEIGHTS = "weights"  # (dim, 2**nbits) float32
A_NBITS = "nbits"
A_N_CENTROIDS = "n_centroids"
A_N_TRAINED = "n_trained"
A_TRAIN_ERROR = "train_error"

# per-document hash groups: each document's rows of these datasets, hashed together
DOC_HASH_GROUPS = {
    "vectors": (VECTORS, SCALES, CODES),
    "rerank": (RERANK,),
    "aux": (POSITIONS, IMPORTANCE, PATCH_MASK, SIGNALS, COVERS_ROWS),
    "meta": (DOC_META_BYTES,),
}

_SEGMENT_ENCODINGS = {
    "/": SEGMENT_FORMAT,
    SUMMARY_CODES: "per-page-centroids",
    SUMMARY_SCALES: "per-page-centroids",
    SUMMARY_OFFSETS: "csr-offsets",
    FILTERS: "metadata-columns",
    CHECKS: "per-document-hashes",
    "summary": "first-stage-summary",
    CODES: "per-vector",
    "ivf": "inverted-lists",
    IVF_OFFSETS: "csr-offsets",
    IVF_DOCS: "csr-values",
}


def set_segment_encoding(f: h5py.File, version: int = FORMAT_VERSION) -> None:
    """Stamp every object of a new segment file with ``encoding-type`` and ``encoding-version`` (``version``)."""

    def stamp(name: str, obj) -> None:
        etype = _SEGMENT_ENCODINGS.get(name) or _ENCODINGS.get(name)
        if etype is None:
            parent = name.split("/")[0]
            etype = {SIGNALS: "per-vector", CHECKS: "per-document-hash", FILTERS: "metadata-column"}.get(parent, "data")
        obj.attrs[ENCODING_TYPE] = etype
        obj.attrs[ENCODING_VERSION] = str(version)

    stamp("/", f)
    f.visititems(stamp)


def segment_attrs(dim: int, codec: str, n_docs: int, n_vectors: int, summary_centroids: int, *,
                  version: int = FORMAT_VERSION, codebook: str | None = None) -> dict[str, Any]:
    """Root attributes of a segment of a collection of format ``version`` (its codebook's name for residual codecs)."""
    extra = {} if codebook is None else {A_CODEBOOK: codebook}
    return {
        **extra,
        A_FORMAT: SEGMENT_FORMAT,
        A_FORMAT_VERSION: int(version),
        A_DIM: int(dim),
        A_CODEC: codec,
        A_DTYPE: np.dtype(CODECS[codec]).name,
        A_N_DOCS: int(n_docs),
        A_N_VECTORS: int(n_vectors),
        A_SUMMARY_CENTROIDS: int(summary_centroids),
        A_LIBRARY_VERSION: __version__,
    }


def manifest_name(version: int) -> str:
    return f"{int(version):020d}.json"
