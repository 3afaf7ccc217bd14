"""The defences every segment reader shares: damage turned into CorruptionError, checksums,
no links or storage outside the file, no link cycles, every dataset's declared size backed by
storage inside the file before it is read, CSR offsets checked before a kernel sees them.

Used by :mod:`~colprune.index.segment_reader` (format 3), :mod:`~colprune.index.legacy`
(formats 1 and 2) and, for the checksums, by :mod:`~colprune.index.segment_writer`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, TypeVar

import h5py
import numpy as np
import xxhash

from ..errors import ColpruneError, CorruptionError, FormatError, InvalidInputError
from . import layout as L
from .files import open_h5
from .records import MAX_ID_BYTES, check_id

__all__ = ["guarded", "hash_bytes", "whole_hashed", "open_h5_safely", "check_no_outside_reads", "check_storage",
           "check_offsets", "int_attr", "str_attr", "decode_ids", "check_ids_as_written", "decode_metadata",
           "ANY", "expected_datasets", "check_shapes", "check_summary", "check_filter_values", "compare_columns",
           "check_codes", "check_ivf", "filter_fields", "map_contiguous",
           "check_agrees", "check_no_twins"]

F = TypeVar("F", bound=Callable[..., Any])

# HDF5 filter ids a reader of version 1/2 files accepts (deflate, shuffle, fletcher32, lzf), and the most
# a filtered dataset may expand its stored bytes (deflate's ceiling is about 1032:1; lzf's is lower)
_LEGACY_FILTERS = {1, 2, 3, 32000}
_MAX_EXPANSION = 1100
# the only datasets a version 1/2 file may filter (its vectors): every count a reader trusts is then
# bounded by unfiltered datasets (offsets, positions), so what the vectors expand to is what they hold
_LEGACY_FILTERED = {L.VECTORS, L.SCALES, L.RERANK}
# what HDF5 and the decoders raise on a damaged file
_DAMAGE = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError,
           UnicodeDecodeError, json.JSONDecodeError, OverflowError, MemoryError)


def guarded(method: F) -> F:
    """Turn what HDF5 raises on a damaged file (OSError, KeyError, ...) into a CorruptionError naming the file.

    Decorates methods of objects with a ``path`` attribute.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ColpruneError, FileNotFoundError):  # a missing file is not damage: callers may retry
            raise
        except _DAMAGE as e:
            raise CorruptionError(f"{self.path}: unreadable or damaged ({type(e).__name__}: {e})") from None

    return wrapper  # type: ignore[return-value]


def hash_bytes(*arrays: np.ndarray) -> int:
    """xxh3_64 of the arrays' bytes, back to back (C order)."""
    if len(arrays) == 1 and arrays[0].flags.c_contiguous:  # the common case, without a hasher object
        return xxhash.xxh3_64_intdigest(arrays[0])
    h = xxhash.xxh3_64()
    for a in arrays:
        h.update(a if a.flags.c_contiguous else np.ascontiguousarray(a))
    return h.intdigest()


def whole_hashed(f: h5py.File) -> list[str]:
    """Datasets hashed as a whole (everything not covered by a per-document hash group)."""
    per_doc = {n for names in L.DOC_HASH_GROUPS.values() for n in names}
    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and name not in per_doc and not name.startswith(L.SIGNALS + "/"):
            out.append(name)

    f.visititems(visit)
    return sorted(out)


def open_h5_safely(path: str) -> h5py.File:
    """Open an HDF5 file read-only without the HDF5 file lock, if it is a regular file (see :mod:`.files`).

    The path's last component may be a symbolic link (a path the user typed); the descriptor
    checked is closed again (readers that ``pread`` keep theirs: :func:`~colprune.index.files.open_h5`).
    """
    f, fd, _ = open_h5(path, follow=True)
    os.close(fd)
    return f


def _refuse_dataset(path: str, name: str, ds: h5py.Dataset, *, strings: bool) -> None:
    """Refuse storage outside the file, virtual datasets and element types colprune never writes."""
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        raise FormatError(f"{path}: dataset {name!r} keeps its data in external files (refused: "
                          "colprune reads only inside the file)")
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise FormatError(f"{path}: dataset {name!r} is a virtual dataset (refused: it maps other files)")
    dt = ds.dtype
    if strings and h5py.check_string_dtype(dt) is not None:
        return
    if dt.kind not in "biuf" or dt.fields is not None or dt.subdtype is not None or ds.ndim > 2:
        raise FormatError(f"{path}: dataset {name!r} has type {dt} and {ds.ndim} dimensions; colprune stores "
                          "numbers in arrays of one or two dimensions (refused)")


def check_no_outside_reads(f: h5py.File, path: str, *, strings: bool = False) -> dict[str, h5py.Dataset]:
    """Every dataset of ``f`` by name, after refusing what could read outside the file or never end.

    Refused (:class:`FormatError`): soft and external links, external raw storage, virtual
    datasets, named datatypes, element types colprune never writes (``strings`` allows the
    variable-length strings of version 1 files), and any object reachable by two paths: a
    hard-link cycle (``f["g/loop"] = f["/"]``) would make a walk never end, and an alias
    would let one stored array pass for two.
    """
    seen = {h5py.h5o.get_info(f.id).addr}
    out: dict[str, h5py.Dataset] = {}
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
            addr = h5py.h5o.get_info(obj.id).addr
            if addr in seen:
                raise FormatError(f"{path}: {name!r} is a second link to an object already linked elsewhere (a hard-link "
                                  "cycle or alias); colprune files are trees (refused)")
            seen.add(addr)
            if isinstance(obj, h5py.Group):
                stack.append((name, obj))
            elif isinstance(obj, h5py.Dataset):
                _refuse_dataset(path, name, obj, strings=strings)
                out[name] = obj
            else:
                raise FormatError(f"{path}: {name!r} is a {type(obj).__name__}; colprune files hold groups and datasets")
    return out


def check_storage(datasets: dict[str, h5py.Dataset], path: str, file_size: int, *, reads: dict[str, int] | None = None,
                  legacy: bool = False) -> None:
    """Every dataset's data is stored in the file before any of it is read (a CorruptionError otherwise).

    A dataset may return no more bytes than it stores (``reads`` names the bytes a reader takes
    when less than the whole; a version 1/2 file's deflate/lzf-compressed vectors at most
    ``_MAX_EXPANSION`` times them); the storage of all datasets together lies within the
    ``file_size`` bytes of the file. So a 20 KB file that declares a 3 GB dataset, never written
    or a compression bomb, is refused without allocating it. Format-3 segments hold no filters;
    version 1/2 files only on their vectors, whose row count unfiltered datasets bound.
    """
    total = 0
    for name, ds in datasets.items():
        plist = ds.id.get_create_plist()
        filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        if filters and not (legacy and name in _LEGACY_FILTERED):
            raise CorruptionError(f"{path}: dataset {name!r} is compressed or filtered (HDF5 filters {sorted(filters)}); "
                                  "colprune stores it unfiltered (refused: it could expand to far more than the file "
                                  "holds)")
        if filters - _LEGACY_FILTERS:
            raise CorruptionError(f"{path}: dataset {name!r} uses HDF5 filters {sorted(filters - _LEGACY_FILTERS)} "
                                  "that colprune does not read")
        stored = int(ds.id.get_storage_size())
        declared = int(np.prod(ds.shape, dtype=np.int64)) * ds.id.get_type().get_size()
        want = declared if reads is None or name not in reads else min(int(reads[name]), declared)
        ratio = _MAX_EXPANSION if filters & {1, 32000} else 1
        if want > stored * ratio:
            raise CorruptionError(f"{path}: dataset {name!r} declares {want:,} bytes but stores {stored:,} (never "
                                  "written, or a compression bomb); refused before reading it")
        total += stored
    if total > file_size:
        raise CorruptionError(f"{path}: its datasets claim {total:,} bytes of storage, more than the file's {file_size:,} "
                              "(overlapping or outside the file)")


def int_attr(obj: h5py.HLObject, key: str, lo: int, hi: int, path: str, default: int | None = None) -> int:
    """Integer attribute ``key`` of ``obj``: a scalar integer in ``lo..hi`` (a CorruptionError otherwise)."""
    if key not in obj.attrs and default is not None:
        return default
    aid = obj.attrs.get_id(key)
    if aid.shape != () or aid.dtype.kind not in "iu":
        raise CorruptionError(f"{path}: attribute {key!r} is a {aid.dtype} of shape {aid.shape}, not an integer")
    value = int(obj.attrs[key])
    if not lo <= value <= hi:
        raise CorruptionError(f"{path}: attribute {key!r} is {value}, outside {lo}..{hi}")
    return value


def str_attr(obj: h5py.HLObject, key: str, path: str, limit: int) -> str:
    """String attribute ``key`` of ``obj`` (``""`` when absent): a scalar string of at most ``limit`` bytes, UTF-8."""
    if key not in obj.attrs:
        return ""
    aid = obj.attrs.get_id(key)
    if aid.shape != () or h5py.check_string_dtype(aid.dtype) is None:
        raise CorruptionError(f"{path}: attribute {key!r} is a {aid.dtype} of shape {aid.shape}, not a string")
    value = obj.attrs[key]
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    if len(raw) > limit:
        raise CorruptionError(f"{path}: attribute {key!r} holds {len(raw):,} bytes, more than {limit:,}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptionError(f"{path}: attribute {key!r} is not UTF-8") from None


def check_offsets(off: np.ndarray, n: int, total: int, what: str, *, strict: bool = False) -> np.ndarray:
    """CSR offsets of ``n`` rows over ``total`` values: start 0, non-decreasing, end at ``total``.

    Returns the offsets as ``(n + 1,)`` int64; ``strict`` also refuses empty rows.
    """
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


def decode_ids(raw: bytes, off: np.ndarray, path: str, *, writer_rules: bool = True) -> list[str]:
    """Document ids from their UTF-8 byte CSR, refused unless each obeys the writer's rules and all are distinct.

    The rules are :func:`~colprune.index.records.check_id`'s (at most ``MAX_ID_BYTES`` bytes, no
    NUL, CR or LF): screened over the whole byte string at once, and when the screen finds
    something, ``check_id`` itself names the first id it refuses. ``writer_rules=False`` (version
    1/2 files, written before the rules) checks UTF-8 and uniqueness only.
    """
    bounds = off.tolist()
    try:
        ids = [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
    except UnicodeDecodeError:
        raise CorruptionError(f"{path}: ids are not UTF-8") from None
    if writer_rules and (b"\0" in raw or b"\n" in raw or b"\r" in raw or int(np.diff(off).max(initial=0)) > MAX_ID_BYTES):
        check_ids_as_written(ids, path)
    if len(set(ids)) != len(ids):
        raise CorruptionError(f"{path}: ids are not unique")
    return ids


def check_ids_as_written(ids: list[str], path: str) -> None:
    """Each id through :func:`~colprune.index.records.check_id`, the writer's check (a CorruptionError naming the row)."""
    for row, doc_id in enumerate(ids):
        try:
            check_id(doc_id)
        except InvalidInputError as e:
            raise CorruptionError(f"{path}: document {row}'s stored id breaks the rules every writer obeys ({e})") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_META = json.JSONDecoder(parse_constant=_no_constant)


def decode_metadata(text: str, path: str, row: int) -> dict[str, Any]:
    """A document's stored metadata: a JSON object without NaN or Infinity, as the writer stores it."""
    try:
        meta = _META.decode(text)
    except RecursionError:
        raise CorruptionError(f"{path}: the metadata of document {row} nests too deep (damaged or hostile)") from None
    except ValueError as e:
        raise CorruptionError(f"{path}: the metadata of document {row} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CorruptionError(f"{path}: the metadata of document {row} is a JSON {type(meta).__name__}, not an object")
    return meta


#: in :func:`expected_datasets`, a length that depends on the data (bounded separately)
ANY = -1


def expected_datasets(n: int, v: int, dim: int, codec: str, *, rerank: bool, merged: bool, signals: list[str],
                      summary: bool, filters: list[str], n_centroids: int = 0) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Dataset name -> ``(shape, dtype)`` of a format-3/4 segment of ``n`` documents and ``v`` vectors.

    ``rerank``, ``merged`` and ``summary`` say which optional parts it holds, ``signals`` its
    signal names, ``filters`` its ``filters/<key>`` groups, ``n_centroids`` the codebook's K (residual
    codecs); :data:`ANY` marks a data-dependent length.
    """
    want: dict[str, tuple[tuple[int, ...], Any]] = {
        L.VECTORS: ((v, L.vector_width(dim, codec)), L.CODECS[codec]), L.POSITIONS: ((v,), np.int32),
        L.IMPORTANCE: ((v,), np.float32), L.PATCH_MASK: ((v,), np.uint8), L.DOC_N_ORIGINAL: ((n,), np.int64),
        L.DOC_GRID: ((n, 2), np.int32), L.OFFSETS: ((n + 1,), np.int64), L.DOC_ID_OFFSETS: ((n + 1,), np.int64),
        L.DOC_META_OFFSETS: ((n + 1,), np.int64), L.DOC_ID_BYTES: ((ANY,), np.uint8), L.DOC_META_BYTES: ((ANY,), np.uint8)}
    if codec == "int8":
        want[L.SCALES] = ((v,), np.float32)
    if codec in L.RESIDUAL_CODECS:
        want[L.CODES] = ((v,), np.uint16)
        want[L.IVF_OFFSETS], want[L.IVF_DOCS] = ((n_centroids + 1,), np.int64), ((ANY,), np.int32)
    if rerank:
        want[L.RERANK] = ((v, dim), np.float16)
    if merged:
        want[L.COVERS_OFFSETS], want[L.COVERS_ROWS] = ((v + 1,), np.int64), ((ANY,), np.int32)
    for k in signals:
        want[f"{L.SIGNALS}/{k}"] = ((v,), np.float32)
    for g in ["vectors", "aux", "meta"] + (["rerank"] if rerank else []):
        want[f"{L.CHECKS}/{g}"] = ((n,), np.uint64)
    if summary:
        want[L.SUMMARY_CODES], want[L.SUMMARY_SCALES] = ((ANY, dim), np.int8), ((ANY,), np.float32)
        want[L.SUMMARY_OFFSETS] = ((n + 1,), np.int64)
    for base in filters:
        want[f"{base}/{L.FILTER_NUM}"], want[f"{base}/{L.FILTER_CODES}"] = ((n,), np.float64), ((n,), np.int32)
        want[f"{base}/{L.FILTER_DICT_BYTES}"] = ((ANY,), np.uint8)
        want[f"{base}/{L.FILTER_DICT_OFFSETS}"] = ((ANY,), np.int64)
    return want


def check_summary(codes: np.ndarray, scales: np.ndarray, off: np.ndarray, doc_off: np.ndarray, centroids: int,
                  what: str) -> np.ndarray:
    """A segment's summary as the writer makes it: page ``d`` holds ``min(centroids, n_d)`` of the ``(C, dim)``
    int8 ``codes``, every ``(C,)`` scale finite and positive. Returns the offsets as ``(n + 1,)`` int64."""
    off = check_offsets(off, doc_off.size - 1, codes.shape[0], f"{what}/offsets")
    if not np.array_equal(np.diff(off), np.minimum(np.diff(doc_off), centroids)):
        raise CorruptionError(f"{what}: the offsets do not give each page min({centroids}, its vectors) centroids")
    if not (np.isfinite(scales) & (scales > 0)).all():
        raise CorruptionError(f"{what}: the scales are not all finite and positive")
    return off


def check_filter_values(codes: np.ndarray, dbytes: bytes, doff: np.ndarray, what: str) -> list[str]:
    """A filter column's dictionary (sorted, distinct UTF-8 strings), with its ``(n,)`` codes each -1 or an index into it."""
    n_values = doff.shape[0] - 1
    bounds = check_offsets(doff, n_values, len(dbytes), what).tolist()
    values = [dbytes[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
    if ((codes < -1) | (codes >= n_values)).any() or any(x >= y for x, y in zip(values, values[1:])):
        raise CorruptionError(f"{what}: codes outside its dictionary, or a dictionary not sorted and distinct")
    return values


def compare_columns(stored: dict[str, tuple[np.ndarray, np.ndarray, list[str]]],
                    got: dict[str, tuple[np.ndarray, np.ndarray, list[str]]], lo: int, hi: int, path: str) -> None:
    """Stored filter columns (whole segment) against those derived from documents ``lo..hi``'s metadata."""
    for field, (num, codes, values) in stored.items():
        g_num, g_codes, g_values = got.get(field, (np.full(hi - lo, np.nan), np.full(hi - lo, -1, np.int32), []))
        lookup = {v: i for i, v in enumerate(values)}
        mapped = np.array([lookup.get(v, -2) for v in g_values] + [-1], np.int64)[g_codes]  # code -1 stays -1
        if not np.array_equal(num[lo:hi], g_num, equal_nan=True) or not np.array_equal(codes[lo:hi], mapped):
            raise CorruptionError(f"{path}: filter column {field!r} disagrees with the metadata of documents {lo}..{hi} "
                                  "(a filter would return other pages)")


def check_shapes(datasets: dict[str, h5py.Dataset], want: dict[str, tuple[tuple[int, ...], Any]], path: str) -> None:
    """Every dataset ``want`` names (see :func:`expected_datasets`) is in ``datasets`` with its exact shape and dtype."""
    for name, (shape, dtype) in want.items():
        ds = datasets.get(name)
        if ds is None:
            raise CorruptionError(f"{path}: missing dataset {name!r}")
        if len(ds.shape) != len(shape) or any(a != b for a, b in zip(ds.shape, shape) if b != ANY) \
                or ds.dtype != np.dtype(dtype):
            raise CorruptionError(f"{path}: {name} is {ds.shape} {ds.dtype}, expected "
                                  f"{tuple('any' if x == ANY else x for x in shape)} {np.dtype(dtype)}")


def check_codes(codes: np.ndarray, n_centroids: int, what: str) -> None:
    """Centroid codes index the codebook: every one below ``n_centroids`` (a kernel would read past it otherwise)."""
    if codes.size and int(codes.max()) >= n_centroids:
        raise CorruptionError(f"{what}: a centroid code ({int(codes.max())}) is outside the codebook's {n_centroids} "
                              "centroids (damaged, or a segment of another codebook)")


def check_ivf(list_off: np.ndarray, list_docs: np.ndarray, n_centroids: int, n_docs: int, what: str) -> np.ndarray:
    """A segment's inverted lists: ``(K + 1,)`` offsets from 0 to M, non-decreasing; every doc in ``0..n_docs``.

    Returns the offsets as int64 (``verify`` also compares the lists with what the codes give)."""
    off = check_offsets(list_off, n_centroids, list_docs.shape[0], f"{what}/offsets")
    if list_docs.size and (int(list_docs.min()) < 0 or int(list_docs.max()) >= n_docs):
        raise CorruptionError(f"{what}/docs: a page outside the segment's {n_docs} (damaged)")
    return off


def filter_fields(f: h5py.File, path: str) -> dict[str, str]:
    """A segment's ``filters/<key>`` group -> the metadata field it indexes (attributes only); each field once."""
    grp = f.get(L.FILTERS)
    if grp is None:
        return {}
    if not isinstance(grp, h5py.Group):
        raise CorruptionError(f"{path}: {L.FILTERS} is not a group")
    out: dict[str, str] = {}
    for key in grp.keys():
        base = f"{L.FILTERS}/{key}"
        if not isinstance(grp[key], h5py.Group) or L.A_FIELD not in grp[key].attrs:
            raise CorruptionError(f"{path}: {base} is not a filter column (a group with a 'field' attribute)")
        out[base] = str_attr(grp[key], L.A_FIELD, path, 1 << 16)
    if len(set(out.values())) != len(out):
        raise CorruptionError(f"{path}: two filter columns index the same metadata field")
    return out


def map_contiguous(f: h5py.File, path: str, size: int) -> dict[str, tuple[int, np.dtype, tuple]]:
    """Raw file ranges ``name -> (start, dtype, row shape)`` of a segment's contiguous datasets (read with ``pread``),
    each checked contiguous, unfiltered and inside the file's ``size`` bytes."""
    out = {}
    for name in (L.VECTORS, L.SCALES, L.RERANK, L.CODES):
        if name not in f:
            continue
        ds = f[name]
        plist = ds.id.get_create_plist()
        if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters():
            raise CorruptionError(f"{path}: {name} must be contiguous and unfiltered")
        start = ds.id.get_offset()
        nbytes = ds.id.get_storage_size()
        want = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
        if want and (start is None or nbytes != want or start < 0 or start + nbytes > size):
            raise CorruptionError(f"{path}: {name} lies outside the file (truncated?)")
        out[name] = (start or 0, ds.dtype, ds.shape[1:])
    return out


def check_agrees(body: dict[str, Any], entry: dict[str, Any], seg: Any) -> None:
    """A segment holds what the manifest says of it: its counts, and the collection's signals, covers, rerank copy and
    summaries."""
    if (seg.n_docs, seg.n_vectors) != (entry["n_docs"], entry["n_vectors"]):
        raise CorruptionError(f"{seg.path}: holds {seg.n_docs} docs / {seg.n_vectors} vectors, the manifest says "
                              f"{entry['n_docs']} / {entry['n_vectors']}")
    mine = (seg.signal_names, seg.merged, seg.has_rerank, seg.summary_centroids)
    theirs = (sorted(body["signals"]), body["merged"], body["rerank"], body.get("summary_centroids", 0))
    if mine != theirs:
        raise CorruptionError(f"{seg.path}: holds signals {mine[0]}, covers {mine[1]}, rerank copy {mine[2]}, "
                              f"{mine[3]}-centroid summaries; the manifest says "
                              f"{theirs[0]}, {theirs[1]}, {theirs[2]}, {theirs[3]}")


def check_no_twins(segments: list[Any], deleted: list[np.ndarray | None]) -> None:
    """Two segments whose id lists hash alike hold the same ids row by row: no row may be live in both.

    The cheap part of ids-unique-over-live-pages, at open (hashes from the checksum records);
    :meth:`Snapshot.check_unique_ids` checks the rest where ids are read.
    """
    by_ids: dict[tuple, int] = {}
    for si, seg in enumerate(segments):
        if seg.legacy or not seg.n_docs:
            continue
        key = (seg.checks.get(L.DOC_ID_BYTES), seg.checks.get(L.DOC_ID_OFFSETS))
        other = by_ids.setdefault(key, si)
        if other != si:
            a, b = deleted[other], deleted[si]
            live = np.ones(seg.n_docs, bool) if a is None else ~a
            if (live & (np.ones(seg.n_docs, bool) if b is None else ~b)).any():
                raise CorruptionError(f"{segments[other].path} and {seg.path} hold the same page ids, live in both "
                                      "(a segment listed twice?); ids are unique over a collection's live pages")
