"""The manifest of a sharded collection: which shards it has and how page ids map to them.

A sharded collection is a directory holding one small JSON manifest, ``SHARDED.json``, and
one ordinary colprune collection (format 3) per shard, ``shard-00000`` ... A page belongs to
the shard of its *bucket*, ``shard_of(id, n_shards)``: the first 8 bytes of
``blake2b(id.encode("utf-8"), digest_size=8)`` read as a big-endian unsigned integer, modulo
``n_shards``. ``n_shards`` is fixed when the collection is created. The manifest is replaced
atomically (written to a temporary file, ``fsync``ed, renamed over the old one, the folder
``fsync``ed). See the section "Sharded collections" of ``docs/format.md``.

This module imports neither Ray nor anything that does.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import uuid
from typing import Any

from .._version import __version__
from ..errors import CorruptionError, FormatError, InvalidInputError
from ..index import files as F
from ..index.manifest import fsync_dir

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "HASH", "LOCK", "shard_of", "shard_name", "is_sharded",
           "new_manifest", "read_manifest", "write_manifest", "ShardedLock", "clear_temp"]

#: file name of the manifest inside the collection directory
MANIFEST = "SHARDED.json"
#: the manifest's ``format`` field
FORMAT = "colprune-sharded"
FORMAT_VERSION = 1
#: name of the page-id hash recorded in the manifest
HASH = "blake2b8-mod"
#: the sharded collection's writer lock (flock), next to the manifest
LOCK = "LOCK"
#: prefix of a shard being written (never named by a manifest; removed by the next writer)
TEMP_PREFIX = ".tmp-"
_SHARD_RE = re.compile(r"^shard-(\d{5})$")


def shard_of(page_id: str, n_shards: int) -> int:
    """The bucket (shard number) that owns ``page_id``: ``int.from_bytes(blake2b(id, 8), "big") % n_shards``."""
    if not isinstance(page_id, str):
        raise InvalidInputError(f"page ids must be strings, got {type(page_id).__name__} {page_id!r}")
    try:
        raw = page_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"page id {page_id!r} cannot be encoded as UTF-8") from None
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") % int(n_shards)


def shard_name(bucket: int) -> str:
    """The directory name of bucket ``bucket``'s shard: ``shard-00003``."""
    return f"shard-{int(bucket):05d}"


def is_sharded(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a sharded-collection manifest."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def new_manifest(n_shards: int, settings: dict[str, Any]) -> dict[str, Any]:
    """A version-0 manifest with no shard written yet.

    ``settings`` holds what every shard is created with: ``dim``, ``codec``, ``encoder``,
    ``pruner`` (a ``{"name", "params"}`` record or None), ``signals``, ``merged``, ``rerank``,
    ``summary_centroids``.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= 99999:
        raise InvalidInputError(f"n_shards must be an integer from 1 to 99999, got {n_shards!r}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": 0,
        "n_shards": n_shards,
        "hash": HASH,
        "settings": dict(settings),
        "shards": [],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__,
    }


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the sharded collection at ``path``, checked against the format's rules."""
    path = os.fspath(path)
    file = os.path.join(path, MANIFEST)
    try:  # a regular file only (no FIFO, device or link), read within a bound
        raw = F.read_regular(file, 64 << 20, what="sharded manifest")
    except FileNotFoundError:
        raise FormatError(f"{path} is not a sharded colprune collection (no {MANIFEST})") from None
    if not F.json_depth(raw, 100):
        raise CorruptionError(f"{file}: nests deeper than 100 levels (damaged or hostile)")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptionError(f"{file}: not valid JSON (damaged)") from None
    try:
        if body["format"] != FORMAT:
            raise FormatError(f"{file}: format {body['format']!r} is not {FORMAT!r}")
        if int(body["format_version"]) > FORMAT_VERSION:
            raise FormatError(f"{file}: sharded format version {body['format_version']} is newer than this colprune "
                              f"{__version__} reads ({FORMAT_VERSION}); upgrade colprune")
        problem = _manifest_problem(body)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:  # explicit raises, not assert: the shard-name check holds under python -O
        raise CorruptionError(f"{file}: the manifest breaks the format's rules (damaged or foreign): {problem}")
    body["shards"] = sorted(body["shards"], key=lambda s: int(s["bucket"]))
    return body


def _manifest_problem(body: dict[str, Any]) -> str | None:
    """What in a sharded manifest breaks the format's rules (hash, counts, shard names and buckets, settings), or None."""
    if body["hash"] != HASH:
        return f"page-id hash {body['hash']!r}, expected {HASH!r}"
    n = int(body["n_shards"])
    if n < 1 or int(body["version"]) < 0:
        return f"n_shards {body['n_shards']!r}, version {body['version']!r}"
    seen = set()
    for s in body["shards"]:
        m = _SHARD_RE.match(s["name"])
        if not (m and int(m.group(1)) == int(s["bucket"]) and 0 <= int(s["bucket"]) < n and s["bucket"] not in seen):
            return f"shard {s['name']!r} (bucket {s['bucket']!r} of {n})"
        seen.add(s["bucket"])
    st = body["settings"]
    if int(st["dim"]) < 1 or not isinstance(st["codec"], str):
        return f"settings dim {st['dim']!r}, codec {st['codec']!r}"
    return None


def write_manifest(path: str | os.PathLike, body: dict[str, Any]) -> None:
    """Replace the manifest atomically: temp file, ``fsync``, rename, ``fsync`` of the folder."""
    path = os.fspath(path)
    tmp = os.path.join(path, f"{TEMP_PREFIX}{uuid.uuid4().hex[:16]}.json")
    data = json.dumps(body, indent=1, sort_keys=True).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(path, MANIFEST))
    fsync_dir(path)


class ShardedLock:
    """The sharded collection's writer lock (``flock`` on ``LOCK``, not waiting): one writer of the manifest."""

    def __init__(self, path: str) -> None:
        from ..index import manifest as _M

        # the collection lock works on any folder: it locks ``path/LOCK``
        self._lock = _M.WriterLock(path)

    def release(self) -> None:
        self._lock.release()


def clear_temp(path: str) -> None:
    """Remove shards and manifests left half-written by a writer that died (names starting ``.tmp-``)."""
    for name in os.listdir(path):
        if name.startswith(TEMP_PREFIX):
            p = os.path.join(path, name)
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass
