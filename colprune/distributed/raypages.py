"""The Ray build's first stages and its row format: list a file's pages, read them, pack an encoded page.

Stage bodies run in Ray workers (:mod:`colprune.distributed.raybuild` wires them into Ray Data);
they list and read pages with the one-machine build's own functions, so ids and contents are
the same. A page travels between stages as a row of plain columns (bytes, ints, JSON strings):
:func:`page_row` packs an encoded page, and the writer unpacks it
(:func:`unpack_signals`, :meth:`~colprune.distributed.raywrite.ShardWriter.write`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["list_file", "read_batch", "page_row", "pack_signals", "unpack_signals"]


def list_file(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The pages of one file (``row``: ``order``, ``path``, ``root``, ``strict``) as rows; a skipped file gives its reason."""
    from ..encoders import PageError
    from ..pipeline import list_pages, page_id

    skipped: dict[str, str] = {}
    try:
        jobs = list_pages([row["path"]], id_root=row["root"], strict=bool(row["strict"]), skipped=skipped)
    except PageError as e:
        raise InvalidInputError(str(e)) from None
    order = int(row["order"])
    out = [{"order": order, "id": j.id, "path": j.path, "page": j.page, "kind": j.kind, "sha256": j.sha256, "reason": ""}
           for j in jobs]
    for key, why in skipped.items():
        out.append({"order": order, "id": key, "path": row["path"], "page": 0, "kind": "", "sha256": "", "reason": why})
    if not out:  # a PDF with pages always yields rows; keep the schema for an empty file list
        out.append({"order": order, "id": page_id(row["path"], row["root"], None), "path": row["path"],
                    "page": 0, "kind": "", "sha256": "", "reason": "no pages"})
    return out


def read_batch(batch: dict[str, np.ndarray], kind: str, dpi: int) -> dict[str, np.ndarray]:
    """Read/render a batch of pages: content as bytes (UTF-8 text, or raw RGB with its height and width)."""
    from ..pipeline import PageJob, read_pages

    jobs = [PageJob(str(i), str(p), int(n), str(k), str(s))
            for i, p, n, k, s in zip(batch["id"], batch["path"], batch["page"], batch["kind"], batch["sha256"])]
    content, height, width, reasons = [], [], [], []
    for _job, c, reason in read_pages(jobs, kind, dpi):
        if reason is not None or isinstance(c, str):
            content.append(b"" if reason is not None else c.encode("utf-8"))
            height.append(0)
            width.append(0)
            reasons.append(reason or "")
        else:
            arr = np.asarray(c.convert("RGB"), np.uint8)
            content.append(arr.tobytes())
            height.append(arr.shape[0])
            width.append(arr.shape[1])
            reasons.append("")
    out = {k: batch[k] for k in ("id", "bucket", "path", "page", "kind", "sha256")}
    out.update(content=np.array(content, dtype=object), height=np.array(height, np.int64),
               width=np.array(width, np.int64), reason=np.array(reasons, dtype=object))
    return out


def page_row(vectors, importance, patch_mask, grid, signals) -> dict[str, Any]:
    """One encoded page as row columns: ``n``; bytes of ``vectors``, ``importance``, ``patch_mask``, ``signals``; ``grid`` JSON.

    ``vectors`` (n, dim) float; ``importance`` (n,) or None; ``patch_mask`` (n,) bool or None;
    ``grid`` (rows, cols) or None; ``signals`` name -> (n,) or None. Absent values are empty.
    """
    vec = np.ascontiguousarray(np.asarray(vectors, np.float32))
    return {"n": vec.shape[0], "vectors": vec.tobytes(),
            "importance": b"" if importance is None else np.asarray(importance, np.float32).tobytes(),
            "patch_mask": b"" if patch_mask is None else np.asarray(patch_mask, bool).tobytes(),
            "grid": "" if grid is None else json.dumps([int(grid[0]), int(grid[1])]),
            "signals": b"" if not signals else pack_signals(signals)}


def pack_signals(signals: dict[str, np.ndarray]) -> bytes:
    """Signals (name -> (n,) float) as bytes: a length-prefixed JSON list of names, then the float32 arrays in that order."""
    names = sorted(signals)
    head = json.dumps(names).encode()
    return len(head).to_bytes(4, "little") + head + b"".join(np.asarray(signals[k], np.float32).tobytes() for k in names)


def unpack_signals(raw: bytes, n: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_signals` for a page of ``n`` vectors."""
    size = int.from_bytes(raw[:4], "little")
    names = json.loads(raw[4 : 4 + size])
    body = np.frombuffer(raw[4 + size :], np.float32)
    return {k: body[i * n : (i + 1) * n].copy() for i, k in enumerate(names)}
