"""Reading precomputed embeddings from ``.pt``, ``.npz`` and ``.npy`` files.

Accepted layouts (``n`` pages, page ``i`` with ``n_i`` vectors of ``dim``):

``.pt`` (``torch.save``, loaded with ``weights_only=True``)
    * a list of ``(n_i, dim)`` tensors, or one ``(n, m, dim)`` tensor;
    * or a dict with ``"embeddings"`` (as above) and optionally ``"importance"``
      (list of ``(n_i,)``), ``"patch_mask"`` (list of bool ``(n_i,)``), ``"ids"`` (list of
      str), ``"metadata"`` (list of dicts), ``"grids"`` (list of ``(rows, cols)``).
``.npz`` (``np.savez``; no pickled objects)
    * CSR: ``vectors`` ``(N, dim)`` and ``offsets`` ``(n + 1,)`` (or ``lengths`` ``(n,)``),
      optionally ``importance`` ``(N,)``, ``patch_mask`` ``(N,)`` bool, ``ids`` ``(n,)`` str;
    * or ``embeddings`` ``(n, m, dim)`` with optional ``importance`` ``(n, m)``.
``.npy``
    * ``(n, m, dim)``: ``n`` pages of ``m`` vectors, or ``(m, dim)``: one page.

Missing ids become ``<file stem>:<page number>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["EmbeddingSet", "load_embeddings", "load_queries"]


@dataclass
class EmbeddingSet:
    """Pages read from one file: parallel lists, ``None`` where the file has no such field."""

    ids: list[str]
    embeddings: list[np.ndarray]
    importance: list[np.ndarray] | None = None
    patch_mask: list[np.ndarray] | None = None
    metadata: list[dict[str, Any]] | None = None
    grids: list[tuple[int, int] | None] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point and str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _split(arr, what: str, path: str) -> list[np.ndarray]:
    if isinstance(arr, (list, tuple)):
        return [_np(a) for a in arr]
    a = _np(arr)
    if a.ndim == 3:
        return list(a)
    if a.ndim == 2 and what == "embeddings":
        return [a]
    if a.ndim == 2 and what in ("importance", "patch_mask"):
        return list(a)
    raise InvalidInputError(f"{path}: {what!r} must be a list of per-page arrays or a stacked array, got shape {a.shape}")


def _from_csr(z, path: str) -> list[np.ndarray] | None:
    if "offsets" in z:
        offsets = np.asarray(z["offsets"], dtype=np.int64)
    elif "lengths" in z:
        offsets = np.concatenate([[0], np.cumsum(np.asarray(z["lengths"], dtype=np.int64))])
    else:
        return None
    n_rows = z["vectors"].shape[0]
    if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != n_rows or (np.diff(offsets) < 0).any():
        raise InvalidInputError(f"{path}: offsets must rise from 0 to len(vectors)={n_rows}")
    return [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]


def load_embeddings(path: str | os.PathLike) -> EmbeddingSet:
    """Read pages from an embeddings file (see the module docstring for the layouts)."""
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    ext = os.path.splitext(path)[1].lower()
    fields: dict[str, Any] = {}
    if ext == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for foreign files
            raise InvalidInputError(f"{path}: cannot read as a torch file ({e})") from None
        if isinstance(obj, dict):
            if "embeddings" not in obj:
                raise InvalidInputError(f"{path}: a dict must have an 'embeddings' entry (keys: {sorted(obj)})")
            fields = dict(obj)
        else:
            fields = {"embeddings": obj}
        for key in ("embeddings", "importance", "patch_mask"):
            if fields.get(key) is not None:
                fields[key] = _split(fields[key], key, path)
    elif ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "vectors" in z:
                slices = _from_csr(z, path)
                if slices is None:
                    raise InvalidInputError(f"{path}: 'vectors' needs 'offsets' or 'lengths'")
                fields["embeddings"] = [z["vectors"][s] for s in slices]
                for key in ("importance", "patch_mask"):
                    if key in z:
                        fields[key] = [z[key][s] for s in slices]
            elif "embeddings" in z:
                fields["embeddings"] = _split(z["embeddings"], "embeddings", path)
                for key in ("importance", "patch_mask"):
                    if key in z:
                        fields[key] = _split(z[key], key, path)
            else:
                raise InvalidInputError(f"{path}: expected 'vectors' + 'offsets' or 'embeddings' arrays, found {sorted(z.files)}")
            if "ids" in z:
                fields["ids"] = [str(x) for x in z["ids"]]
    elif ext == ".npy":
        fields["embeddings"] = _split(np.load(path, allow_pickle=False), "embeddings", path)
    else:
        raise InvalidInputError(f"{path}: unsupported embeddings file type {ext!r} (use .pt, .npz or .npy)")
    embeddings = fields["embeddings"]
    n = len(embeddings)
    ids = fields.get("ids")
    ids = [f"{stem}:{i}" for i in range(n)] if ids is None else [str(x) for x in ids]
    for key in ("ids", "importance", "patch_mask", "metadata", "grids"):
        val = ids if key == "ids" else fields.get(key)
        if val is not None and len(val) != n:
            raise InvalidInputError(f"{path}: {key!r} has {len(val)} entries for {n} pages")
    masks = fields.get("patch_mask")
    if masks is not None:
        masks = [np.asarray(_np(m), dtype=bool) for m in masks]
    grids = fields.get("grids")
    if grids is not None:
        grids = [None if g is None else tuple(int(x) for x in _np(g).ravel()) for g in grids]
    return EmbeddingSet(
        ids=ids,
        embeddings=[_np(e) for e in embeddings],
        importance=None if fields.get("importance") is None else [_np(x) for x in fields["importance"]],
        patch_mask=masks,
        metadata=fields.get("metadata"),
        grids=grids,
        source=path,
    )


def load_queries(path: str | os.PathLike) -> list[np.ndarray]:
    """Query embeddings from a file in any layout :func:`load_embeddings` reads."""
    return load_embeddings(path).embeddings
