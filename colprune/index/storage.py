"""Storage accounting: what a collection's files hold, and the sizes reports show.

:func:`file_holds` splits a snapshot's file bytes by what they store (vectors, the rerank copy,
signals, covers, metadata, summaries); :func:`storage_report` completes an ``info()`` dict
(of an :class:`~colprune.index.Index` or a sharded collection) with file bytes per page and
what the files hold, estimating when the index cannot say; :func:`path_bytes` sizes a file or folder;
:func:`codebook_info` describes a residual collection's codebook (its bytes amortised per page).
"""

from __future__ import annotations

import os
from typing import Any

from . import layout as L
from .snapshot import Snapshot

__all__ = ["file_holds", "storage_report", "path_bytes", "codebook_info", "HOLDS"]

#: the parts ``info()["holds"]`` reports (residual codecs: their codes count as vectors; ``ivf`` the inverted
#: lists, ``codebook`` the codebook file)
HOLDS = ("vectors", "rerank", "signals", "covers", "metadata", "summaries", "ivf", "codebook", "other")


def _datasets(f) -> list[tuple[str, Any]]:
    import h5py

    out = []
    f.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def _part(name: str) -> str:
    if name in (L.VECTORS, L.SCALES, L.CODES):
        return "vectors"
    if name.startswith("ivf/"):
        return "ivf"
    if name == L.RERANK:
        return "rerank"
    if name.startswith(L.SIGNALS + "/"):
        return "signals"
    if name.startswith("covers/"):
        return "covers"
    if name.startswith(("docs/", L.FILTERS)):
        return "metadata"
    if name.startswith("summary/"):
        return "summaries"
    return "other"


def file_holds(snap: Snapshot, root: str | None) -> tuple[int, dict[str, int]]:
    """``(file bytes, bytes per part)`` of a snapshot's segments, plus its manifests and deletion files
    under ``root`` (None for a version 1/2 file)."""
    holds = dict.fromkeys(HOLDS, 0)
    file_bytes = 0
    for seg in snap.segments:
        file_bytes += os.path.getsize(seg.path)
        for name, obj in _datasets(seg.f):
            holds[_part(name)] += int(obj.id.get_storage_size())
    if root is not None:
        for sub in (L.MANIFESTS, L.DELETES):
            folder = os.path.join(root, sub)
            file_bytes += sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
        book = snap.manifest.get("codebook")
        if book:
            holds["codebook"] = os.path.getsize(os.path.join(root, L.CODEBOOKS, book["name"]))
            file_bytes += holds["codebook"]
    holds["other"] = max(0, file_bytes - sum(v for k, v in holds.items() if k != "other"))
    return file_bytes, holds


def codebook_info(snap: Snapshot, root: str | None, n_docs: int) -> dict[str, Any] | None:
    """A residual collection's codebook for ``info()``: name, K, nbits, dim, vectors trained on, training error,
    file bytes and those bytes per live page (``n_docs``); None for other codecs or before the first write."""
    cb = snap.codebook
    if cb is None:
        return None
    size = os.path.getsize(os.path.join(root, L.CODEBOOKS, cb.name)) if root else 0
    return {"name": cb.name, "n_centroids": cb.n_centroids, "nbits": cb.nbits, "dim": cb.dim, "n_trained": cb.n_trained,
            "train_error": cb.train_error, "bytes": size, "bytes_per_page": (size / n_docs) if n_docs else None}


def path_bytes(path: str) -> int:
    """Bytes of a file, or of every file under a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _sharded(info: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    docs = info.get("docs") or 0
    per_page = lambda key: (sum((p.get(key) or 0) * p["docs"] for p in parts) / docs) if docs else None  # noqa: E731
    for key in ("vector_bytes_per_page", "unpruned_vector_bytes_per_page"):
        info.setdefault(key, per_page(key))
    info.setdefault("rerank_vectors", any(p.get("rerank_vectors") for p in parts))
    info.setdefault("library_version", parts[0].get("library_version"))
    if "holds" not in info and all("holds" in p for p in parts):
        holds: dict[str, int] = {}
        for p in parts:
            for k, v in p["holds"].items():
                holds[k] = holds.get(k, 0) + int(v)
        holds["other"] = holds.get("other", 0) + max(0, int(info.get("file_bytes") or 0) - sum(holds.values()))
        info["holds"] = holds


def storage_report(index: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """``info`` (default ``index.info()``) plus honest sizes: file bytes per page and what the files hold.

    Uses the index's own ``info()["holds"]`` when it reports one (a sharded collection's
    ``shard_info`` is summed); otherwise estimates the parts from the counts
    (``holds_estimated``) and calls the rest of the files "other".
    """
    info = dict(info or index.info())
    docs = info.get("docs") or 0
    parts = info.get("shard_info")
    if parts:
        _sharded(info, parts)
    file_bytes = info.get("file_bytes")
    if file_bytes is None:
        file_bytes = path_bytes(info.get("path") or index.path)
        info["file_bytes"] = file_bytes
    info.setdefault("file_bytes_per_page", (file_bytes / docs) if docs else None)
    if "holds" not in info:
        n_vec, dim = info.get("vectors") or 0, info.get("dim") or 0
        holds = {
            "vectors": int(n_vec * getattr(index, "bytes_per_vector", 0)),
            "rerank": int(n_vec * dim * 2) if info.get("rerank_vectors") else 0,
            "signals": int(n_vec * 4 * len(getattr(index, "signal_names", []) or [])),
            "positions": int(n_vec * 9),  # position, importance and patch flag per vector
        }
        holds["other"] = max(0, int(file_bytes) - sum(holds.values()))
        info["holds"] = holds
        info["holds_estimated"] = True
    return info
