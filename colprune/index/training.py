"""Codebooks of residual collections over time: training on what is written, drift, retraining.

The first write into an empty residual collection trains its codebook on (a sample of) the
vectors it writes (:func:`prepared_sample`, :func:`flat_sample`); a derived collection trains on a
sample of its source's live vectors first (:func:`sample_live`), a copy (repack, upgrade) copies its
source's codebook, so its pages keep their codes. Later writes encode
with that codebook and record their reconstruction error in their manifest entries; when it
exceeds :data:`~colprune.index.codebook.RETRAIN_FACTOR` times the codebook's training error,
:func:`drift_message` says so (the index warns once). :func:`retrain` trains a new codebook on the
live vectors and re-encodes every segment with it, for one commit (``Index.compact(retrain=True)``,
``colprune retrain``); the old codebook file is collected like an old segment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ColpruneWarning, InvalidInputError
from . import layout as L
from .codebook import RETRAIN_FACTOR, TRAIN_SAMPLE_CAP, Codebook, sample_rows, train_codebook, write_codebook
from .codecs import decode_vectors
from .compact import rewrite
from .manifest import unique_name
from .prepare import Prepared
from .segment import Block
from .snapshot import Snapshot
from .write import writing

__all__ = ["CodebookDriftWarning", "flat_sample", "prepared_sample", "sample_live", "new_codebook", "reencode", "retrain",
           "drift_message"]


class CodebookDriftWarning(ColpruneWarning):
    """New vectors are reconstructed much worse than the codebook's training sample: retrain the codebook."""


def flat_sample(vectors, dim: int | None = None, cap: int = TRAIN_SAMPLE_CAP) -> np.ndarray | Codebook:
    """A uniform sample (seed 0) of at most ``cap`` rows of ``vectors`` (N, dim) (reshaped to ``dim`` columns when
    given), as float32; a :class:`Codebook` is passed through (:func:`new_codebook` copies it)."""
    if isinstance(vectors, Codebook):
        return vectors
    vectors = np.asarray(vectors) if dim is None else np.reshape(np.asarray(vectors), (-1, dim))
    return np.ascontiguousarray(vectors[sample_rows(vectors.shape[0], cap)], np.float32)


def prepared_sample(prepared: Prepared, cap: int = TRAIN_SAMPLE_CAP) -> np.ndarray:
    """A uniform sample of at most ``cap`` of the vectors of pages about to be written, as float32."""
    lengths = np.array([p.vectors.shape[0] for p in prepared.pages], np.int64)
    rows = sample_rows(int(lengths.sum()), cap)
    off = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    page = np.searchsorted(off, rows, side="right") - 1
    out = [prepared.pages[p].vectors[rows[page == p] - off[p]] for p in np.unique(page)]
    return np.ascontiguousarray(np.concatenate(out) if out else np.zeros((0, 0)), np.float32)


def sample_live(snap: Snapshot, cap: int = TRAIN_SAMPLE_CAP, step: int = 4096) -> np.ndarray:
    """A uniform sample (seed 0) of at most ``cap`` of the live pages' vectors, decoded, as ``(S, dim)`` float32.

    Reads ``step`` documents at a time; whatever the codec (residual codes decoded with the snapshot's codebook).
    """
    rows = sample_rows(snap.n_vectors, cap)
    out, base = [], 0
    for si, seg in enumerate(snap.segments):
        dele, off = snap.deleted[si], seg.offsets
        for lo in range(0, seg.n_docs, step):
            hi = min(lo + step, seg.n_docs)
            live = np.ones(hi - lo, bool) if dele is None else ~dele[lo:hi]
            if not live.any():
                continue
            vec = decode_vectors(snap.manifest, seg.read_vectors(lo, hi), seg, lo, hi, snap.codebook)
            vec = vec[np.repeat(live, np.diff(off[lo : hi + 1]))]
            pick = rows[(rows >= base) & (rows < base + vec.shape[0])] - base
            out.append(np.asarray(vec[pick], np.float32))
            base += vec.shape[0]
    return np.ascontiguousarray(np.concatenate(out) if out else np.zeros((0, snap.dim)), np.float32)


def new_codebook(root: str, sample: np.ndarray | Codebook, codec: str) -> Codebook:
    """Train a codebook for ``codec`` on ``sample`` (or copy the codebook ``sample`` under a new name: a copy of a
    collection then encodes its decoded vectors back to the same codes) and write it into the collection at
    ``root`` (uncommitted: the next manifest names it); returns it with its checksum. A failed write is a
    ``WriteError``."""
    if isinstance(sample, Codebook):
        cb = sample.replaced(name=unique_name("cb", ".h5"), checksum="")
    elif sample.shape[0] == 0:
        raise InvalidInputError(f"a {codec} codebook is trained on the vectors written: there are none")
    else:
        cb = train_codebook(sample, L.residual_bits(codec))
    with writing(root, f"codebook {cb.name}", cb.centroids.size * 2 + 65536):
        entry = write_codebook(root, cb)
    return cb.replaced(checksum=entry["checksum"])


def reencode(old: Codebook, new: Codebook) -> Callable[[Block], Block]:
    """A block transform: residual codes of ``old`` decoded and encoded again with ``new`` (its error measured)."""
    def fn(b: Block) -> Block:
        flat = old.decode(b.vec[L.CODES], b.vec[L.VECTORS])
        codes, packed, sq_error = new.encode_measured(flat)
        vec = {**b.vec, L.CODES: codes, L.VECTORS: packed}
        return dataclasses.replace(b, vec=vec, sq_error=sq_error)

    return fn


def retrain(root: str, snap: Snapshot, budget: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (the next manifest) naming a new codebook trained on the live vectors, with every segment re-encoded
    by it (deleted pages dropped, as compaction does); ready to commit."""
    if snap.codebook is None or not len(snap):
        raise InvalidInputError(f"{root}: retraining needs a residual collection with live pages "
                                f"(this one is {snap.codec}, {len(snap)} pages)")
    cb = new_codebook(root, sample_live(snap), snap.codec)
    body["codebook"] = {"name": cb.name, "checksum": cb.checksum}
    groups = [[si] for si in range(len(snap.segments))]
    return rewrite(root, snap, groups, budget, body, transform=reencode(snap.codebook, cb), n_centroids=cb.n_centroids)


def drift_message(path: str, entry: dict[str, Any], cb: Codebook | None) -> str | None:
    """What to say when a new segment's reconstruction error (``entry["error"]``) drifted past
    ``RETRAIN_FACTOR`` x the codebook's training error, else None."""
    error = entry.get("error") if entry else None
    if cb is None or error is None or error <= RETRAIN_FACTOR * cb.train_error:
        return None
    ratio = f"{error / cb.train_error:.1f}x" if cb.train_error > 0 else "far above"
    return (f"{path}: new vectors are reconstructed with mean squared error {error:.4g}, {ratio} the codebook's "
            f"training error {cb.train_error:.4g} (threshold {RETRAIN_FACTOR}x): the data has drifted from the codebook "
            f"trained on {cb.n_trained:,} vectors. Run `colprune retrain {path}` (or Index.compact(retrain=True)) to "
            "train a new one on the live vectors and re-encode every segment")
