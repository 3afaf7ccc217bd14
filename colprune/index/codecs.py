"""Encoding pages into a segment's stored form and decoding them back, by codec.

A collection's settings (``codec``, ``dim``, ``rerank``, ``signals``, ``merged``,
``summary_centroids``) are read from its manifest dict. ``float16``/``float32`` store the
vectors as they are, ``int8`` one code per value and a scale per vector, ``binary`` sign bits
(packed in 64-bit words) and optionally a float16 rerank copy, the residual codecs a centroid
code and a quantised residual per vector (with the collection's
:class:`~colprune.index.codebook.Codebook`, passed as ``codebook``). Every block also carries the
page's int8 centroid summary for two-stage search when the collection keeps one.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..kernels import dequantize_int8, pack_binary, page_centroids, quantize_int8
from ..kernels.checks import first_nonfinite_row
from ..pruning import PrunedPage
from . import layout as L
from .records import Page
from .segment import Block, Segment

__all__ = ["encode_block", "pages_block", "decode_vectors", "decode_pages", "empty_vectors", "int8_summary"]

_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _summary_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():  # a forked child inherits the pool but not its thread
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="colprune-summary"))
    return _POOL[1]


def int8_summary(vectors: np.ndarray, lengths: np.ndarray, centroids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-stage summary of consecutive pages: ``(codes (C, dim) int8, scales (C,) float32, counts (n,) int64)``.

    ``vectors`` (N, dim) float holds the pages back to back, ``lengths`` (n,) their vector counts;
    each page gets at most ``centroids`` centroids.
    """
    off = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    cvec, coff = page_centroids(vectors, off, centroids)
    codes, scales = quantize_int8(cvec)
    return codes, scales, np.diff(coff)


def _encode_vectors(settings: dict[str, Any], ids, lengths, flat: np.ndarray,
                    codebook=None) -> tuple[dict[str, np.ndarray], float | None]:
    # the stored vector datasets, and (residual codecs) their summed squared reconstruction error
    codec = settings["codec"]
    vec: dict[str, np.ndarray] = {}
    sq_error = None
    if codec in L.RESIDUAL_CODECS:
        if codebook is None:
            raise ValueError(f"encoding {codec} needs the collection's codebook")
        vec[L.CODES], vec[L.VECTORS], sq_error = codebook.encode_measured(flat)
    elif codec == "float16" and flat.dtype == np.float16:
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
        if settings["rerank"]:
            with np.errstate(over="ignore"):
                vec[L.RERANK] = flat.astype(np.float16)
            if not np.isfinite(vec[L.RERANK]).all():
                raise InvalidInputError("values overflow float16 (|x| > 65504) in the rerank copy")
    return vec, sq_error


def encode_block(settings: dict[str, Any], ids, meta_json, lengths, n_original, grid_rows, flat, positions, importance,
                 patch_mask, signals: dict[str, np.ndarray], covers: list[np.ndarray] | None, codebook=None) -> Block:
    """Encode validated pages, given as flat per-vector arrays, into the collection's stored form.

    ``settings`` is the collection's manifest; ``flat`` is (N, dim) float32, or float16 already
    checked finite when the codec is float16 or residual; ``lengths`` (n,) splits it into pages; ``codebook``
    the collection's :class:`~colprune.index.codebook.Codebook` (residual codecs: the block then
    records its summed squared reconstruction error).
    """
    vec, sq_error = _encode_vectors(settings, ids, lengths, flat, codebook)

    vec[L.POSITIONS] = positions.astype(np.int32, copy=False)
    vec[L.IMPORTANCE] = importance.astype(np.float32, copy=False)
    vec[L.PATCH_MASK] = patch_mask.astype(np.uint8, copy=False)
    for name in settings["signals"]:
        vec[f"{L.SIGNALS}/{name}"] = signals[name].astype(np.float32, copy=False)
    cover_lengths = cover_rows = None
    if covers is not None:
        cover_lengths = np.array([len(c) for c in covers], np.int64)
        cover_rows = np.concatenate(covers).astype(np.int32)
    summary = None
    centroids = int(settings.get("summary_centroids", 0))
    if centroids:  # on a worker thread (the kernel releases the GIL) while the writer copies vectors
        summary = _summary_pool().submit(int8_summary, vec[L.VECTORS], np.asarray(lengths, np.int64), centroids)
    return Block(list(ids), list(meta_json), np.asarray(lengths, np.int64), np.asarray(n_original, np.int64),
                 np.array(grid_rows, np.int32).reshape(-1, 2), vec, cover_lengths, cover_rows, summary, sq_error)


def pages_block(settings: dict[str, Any], ids, pages: list[PrunedPage], kept: list[dict[str, np.ndarray]],
                meta_json: list[str], grid_rows, codebook=None) -> Block:
    """Pruned pages (with their kept signals, metadata JSON and grid rows) as one encoded block (``codebook``:
    the collection's, for residual codecs)."""
    if L.reads_float16(settings["codec"]) and all(p.vectors.dtype == np.float16 for p in pages):
        flat = np.concatenate([p.vectors for p in pages])  # already finite halves (check_page)
    else:
        flat = np.concatenate([p.vectors for p in pages]).astype(np.float32, copy=False)
    covers = None
    if settings["merged"]:
        covers = [c for p in pages for c in (p.covers if p.covers is not None else [np.array([r]) for r in p.positions])]
    return encode_block(
        settings, ids, meta_json, np.array([p.vectors.shape[0] for p in pages], np.int64),
        np.array([p.n_original for p in pages], np.int64), grid_rows, flat,
        np.concatenate([p.positions for p in pages]), np.concatenate([p.importance for p in pages]),
        np.concatenate([p.patch_mask for p in pages]),
        {name: np.concatenate([s[name] for s in kept]) for name in settings["signals"]}, covers, codebook)


def decode_vectors(settings: dict[str, Any], data: dict[str, np.ndarray], seg: Segment, lo: int, hi: int,
                   codebook=None) -> np.ndarray:
    """Stored vectors of documents ``lo..hi`` of ``seg`` as floats: int8 dequantised, binary from its
    rerank copy or as ±1 signs, residual codecs decoded with ``codebook`` (float32)."""
    codec = settings["codec"]
    if codec in ("float16", "float32"):
        return data[L.VECTORS]
    if codec in L.RESIDUAL_CODECS:
        if codebook is None:
            raise ValueError(f"decoding {codec} needs the collection's codebook")
        return codebook.decode(data[L.CODES], data[L.VECTORS])
    if codec == "int8":
        return dequantize_int8(data[L.VECTORS], data[L.SCALES])
    if settings["rerank"]:
        return seg.read_vectors(lo, hi, rerank=True)[L.RERANK]
    bits = np.unpackbits(data[L.VECTORS], axis=1, bitorder="little")[:, : int(settings["dim"])]
    return np.where(bits > 0, 1.0, -1.0).astype(np.float32)


def decode_pages(settings: dict[str, Any], seg: Segment, lo: int, hi: int, codebook=None) -> list[Page]:
    """Documents ``lo..hi`` of ``seg`` as :class:`Page` objects (deleted ones included; ``codebook``: residual codecs)."""
    vec = decode_vectors(settings, seg.read_vectors(lo, hi), seg, lo, hi, codebook)
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


def empty_vectors(settings: dict[str, Any]) -> np.ndarray:
    """A (0, width) array of the codec's stored dtype."""
    return np.zeros((0, L.vector_width(int(settings["dim"]), settings["codec"])), L.CODECS[settings["codec"]])
