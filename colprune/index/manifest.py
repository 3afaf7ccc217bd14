"""The commit record of a format-3 collection: manifests, deletion files, the writer lock.

A manifest is one small JSON file per committed version (``manifests/<version>.json``),
naming the live segments, each with its checksum and its deletion file. It is written to
``tmp/``, ``fsync``ed and renamed into place: a commit is that rename. The newest manifest is
the collection's state; older ones are kept a while for readers that opened them.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import socket
import stat
import uuid
from typing import Any

import numpy as np
import xxhash

from .._version import __version__
from ..errors import CorruptionError, FormatError, LockedError
from . import files as F
from . import layout as L

__all__ = ["exchange", "MissingFileError", "is_collection", "read_marker", "latest_version", "read_manifest",
           "write_manifest", "new_manifest", "write_deletes", "read_deletes", "WriterLock", "fsync_dir", "atomic_write",
           "collect_garbage", "clear_tmp", "unique_name"]

_MANIFEST_RE = re.compile(r"^(\d{20})\.json$")
# the names a manifest may give its files: one path component, no separators, not "." or ".."
_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_.-]+\.h5")
_DELETES_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_HEX16 = re.compile(r"[0-9a-f]{16}")
KEEP_MANIFESTS = 8
#: what a reader accepts before parsing: manifest bytes, JSON nesting, file-name length
MAX_MANIFEST_BYTES = 256 << 20
MAX_MARKER_BYTES = 64 << 10
MAX_JSON_DEPTH = 100
MAX_NAME_BYTES = 255
MAX_COUNT, MAX_DIM = L.MAX_COUNT, L.MAX_DIM


def unique_name(prefix: str, suffix: str = "") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}{suffix}"


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(root: str, rel: str, data: bytes) -> None:
    """Write ``root/rel`` through ``tmp/``: fsync the file, rename it into place, fsync the folder."""
    tmp = os.path.join(root, L.TMP, unique_name("w"))
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    dest = os.path.join(root, rel)
    os.replace(tmp, dest)
    fsync_dir(os.path.dirname(dest))


def is_collection(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, L.MARKER))


def read_marker(path: str) -> int:
    marker = os.path.join(path, L.MARKER)
    raw = F.read_regular(marker, MAX_MARKER_BYTES, what="marker")
    try:
        if not F.json_depth(raw, MAX_JSON_DEPTH):
            raise ValueError
        info = json.loads(raw)
        if info.get("format") != L.COLLECTION_FORMAT:
            raise ValueError
        version = info["format_version"]
        if type(version) is not int:
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise FormatError(f"{path} is not a colprune collection (its {L.MARKER} file is unreadable)") from None
    if version not in L.READABLE_VERSIONS:
        if version > L.FORMAT_VERSION:
            raise FormatError(f"{path} uses colprune format version {version}, newer than this colprune {__version__} reads "
                              f"(up to {L.FORMAT_VERSION}); upgrade: pip install -U colprune")
        raise FormatError(f"{path} has unknown colprune format version {version}")
    return version


def latest_version(root: str) -> int:
    mdir = os.path.join(root, L.MANIFESTS)
    try:
        if not F.check_folder(mdir):
            raise FileNotFoundError(mdir)
        names = os.listdir(mdir)
    except OSError:
        raise FormatError(f"{root} is damaged: no {L.MANIFESTS}/ folder") from None
    versions = [int(m.group(1)) for m in map(_MANIFEST_RE.match, names) if m]
    if not versions:
        raise FormatError(f"{root} is damaged: no manifest in {L.MANIFESTS}/")
    return max(versions)


def _body_hash(body: dict[str, Any]) -> str:
    return f"{xxhash.xxh3_64_intdigest(json.dumps(body, sort_keys=True).encode()):016x}"


def read_manifest(root: str, version: int | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the newest), its checksum and the format's rules verified.

    The file is read only when it is a regular file of at most ``MAX_MANIFEST_BYTES``, and
    parsed only when its JSON nests at most ``MAX_JSON_DEPTH`` deep.
    """
    if version is None:
        version = latest_version(root)
    path = os.path.join(root, L.MANIFESTS, L.manifest_name(version))
    try:
        raw = F.read_regular(path, MAX_MANIFEST_BYTES, what="manifest")
    except FileNotFoundError:
        raise FormatError(f"{root} has no manifest version {version}") from None
    damaged = f"{path}: the manifest is not valid JSON (damaged); run `colprune verify {root}`"
    if not F.json_depth(raw, MAX_JSON_DEPTH):
        raise CorruptionError(f"{path}: the manifest nests deeper than {MAX_JSON_DEPTH} levels (damaged or hostile); refused")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptionError(damaged) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict) or not isinstance(doc.get("checksum"), str):
        raise CorruptionError(f"{path}: the manifest is not a {{\"body\": {{...}}, \"checksum\": \"...\"}} object "
                              "(damaged or foreign)")
    body = doc["body"]
    if _body_hash(body) != doc["checksum"]:
        raise CorruptionError(f"{path}: the manifest does not match its checksum (damaged); older versions may be "
                              f"intact: Index.open({root!r}, version=N)")
    _check_manifest(body, path, version)
    return body


def _check_manifest(m: dict[str, Any], path: str, version: int) -> None:
    """The format's rules, as explicit raises: they hold under ``python -O`` too (segment and deletion
    file names are all that keeps a manifest from naming files outside the collection)."""
    try:
        problem = _manifest_problem(m, version)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:
        raise CorruptionError(f"{path}: the manifest breaks the format's rules (damaged or foreign): {problem}")


def _count(value: Any, lo: int, hi: int) -> bool:
    """An int (not a bool, not a float) in ``lo..hi``."""
    return type(value) is int and lo <= value <= hi


def _file_name(name: Any, pattern: re.Pattern) -> bool:
    """One plain file name inside the collection: no separators, not ``.`` or ``..``, not too long."""
    return (isinstance(name, str) and pattern.fullmatch(name) is not None and name not in (".", "..")
            and len(name.encode()) <= MAX_NAME_BYTES)


def _settings_problem(m: dict[str, Any], version: int) -> str | None:
    """What in the manifest's settings (everything but its segments) breaks the format's rules, or None."""
    if (m["format"] != L.COLLECTION_FORMAT or type(m["format_version"]) is not int
            or m["format_version"] not in L.COLLECTION_VERSIONS):
        return f"format {m['format']!r} version {m['format_version']!r}"
    if type(m["version"]) is not int or m["version"] != version:
        return f"it says version {m['version']!r}, its file name {version}"
    if not _count(m["dim"], 1, MAX_DIM) or not isinstance(m["codec"], str) or m["codec"] not in L.CODECS:
        return f"dim {m['dim']!r}, codec {m['codec']!r}"
    problem = _codebook_problem(m)
    if problem is not None:
        return problem
    for key in ("rerank", "merged"):
        if type(m[key]) is not bool:
            return f"{key!r} is {m[key]!r}, not true or false"
    signals = m["signals"]
    if (not isinstance(signals, list) or len(set(map(str, signals))) != len(signals)
            or not all(isinstance(k, str) and k and "/" not in k and k not in (".", "..") for k in signals)):
        return f"signals {signals!r} (a list of distinct names without '/')"
    if not _count(m.get("summary_centroids", 0), 0, MAX_DIM):
        return f"summary_centroids {m.get('summary_centroids')!r}"
    pruner = m.get("pruner")
    if pruner is not None and (not isinstance(pruner, dict) or not isinstance(pruner.get("name"), str)
                               or not isinstance(pruner.get("params", {}), dict)):
        return f"pruner record {pruner!r} (null, or an object with a name and params)"
    for key in ("encoder", "created", "library_version"):
        if not isinstance(m.get(key, ""), str):
            return f"{key!r} is {m[key]!r}, not a string"
    skipped = m.get("skipped", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        return "'skipped' is not an object of source -> reason"
    if not isinstance(m["segments"], list):
        return "'segments' is not a list"
    return None


def _codebook_problem(m: dict[str, Any]) -> str | None:
    """What in the manifest's codec and codebook entry breaks the format's rules (format 4), or None."""
    bits = L.residual_bits(m["codec"])
    book = m.get("codebook")
    if bits and (m["format_version"] < 4 or m["dim"] * bits % 8):
        return f"codec {m['codec']} needs format version 4 and dim * {bits} a multiple of 8 (dim {m['dim']})"
    if book is None:
        return "a residual collection with segments names no codebook" if bits and m["segments"] else None
    if not bits:
        return f"codec {m['codec']} has no codebook, the manifest names {book!r}"
    if not isinstance(book, dict) or not _file_name(book.get("name"), _SEGMENT_NAME) or \
            not isinstance(book.get("checksum"), str) or not _HEX16.fullmatch(book["checksum"]):
        return f"codebook entry {book!r} (an object with a file name and a 16-hex checksum)"
    return None


def _segment_problem(i: int, s: Any) -> str | None:
    """What in entry ``i`` of a manifest's segments breaks the format's rules, or None."""
    if not isinstance(s, dict):
        return f"segment entry {i} is {type(s).__name__}, not an object"
    name = s["name"]
    if not _file_name(name, _SEGMENT_NAME):
        return f"segment name {name!r}"
    if not _count(s["n_docs"], 0, MAX_COUNT) or not _count(s["n_vectors"], 0, MAX_COUNT):
        return f"segment {name}: counts {s['n_docs']!r} docs, {s['n_vectors']!r} vectors (negative, or not integers)"
    if s["n_vectors"] < s["n_docs"]:
        return f"segment {name}: {s['n_docs']} docs but {s['n_vectors']} vectors (every page holds at least one)"
    if not isinstance(s["checksum"], str) or not _HEX16.fullmatch(s["checksum"]):
        return f"segment {name}: checksum {s['checksum']!r} (16 hex digits)"
    d = s.get("deletes")
    if d is not None:
        if not isinstance(d, dict):
            return f"segment {name}: deletes is {type(d).__name__}, not an object or null"
        if not _file_name(d["name"], _DELETES_NAME):
            return f"deletion file name {d['name']!r}"
        if not _count(d["count"], 0, s["n_docs"]):
            return f"segment {name}: {d['count']!r} of {s['n_docs']!r} rows deleted"
        if not isinstance(d["checksum"], str) or not _HEX16.fullmatch(d["checksum"]):
            return f"deletion file {d['name']}: checksum {d['checksum']!r} (16 hex digits)"
    return None


def _manifest_problem(m: dict[str, Any], version: int) -> str | None:
    """What in manifest body ``m`` (read as ``version``) breaks the format's rules, or None."""
    problem = _settings_problem(m, version)
    if problem is not None:
        return problem
    for i, s in enumerate(m["segments"]):
        problem = _segment_problem(i, s)
        if problem is not None:
            return problem
    names = [s["name"] for s in m["segments"]]
    if len(set(names)) != len(names):
        return "a segment is named twice"
    deletes = [s["deletes"]["name"] for s in m["segments"] if s.get("deletes") is not None]
    if len(set(deletes)) != len(deletes):
        return "a deletion file is named twice"
    return None


def new_manifest(dim: int, codec: str, *, encoder: str | None, rerank: bool, signals, merged: bool,
                 summary_centroids: int) -> dict[str, Any]:
    extra = {"codebook": None} if codec in L.RESIDUAL_CODECS else {}  # set by the first write (format 4)
    return {
        **extra,
        "format": L.COLLECTION_FORMAT,
        "format_version": L.FORMAT_VERSION,
        "version": 0,
        "dim": int(dim),
        "codec": codec,
        "rerank": bool(rerank and codec == "binary"),
        "signals": sorted(signals),
        "merged": bool(merged),
        "summary_centroids": int(summary_centroids),
        "pruner": None,
        "encoder": encoder or "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__,
        "segments": [],
        "skipped": {},
    }


def write_manifest(root: str, body: dict[str, Any]) -> None:
    """Commit ``body`` as its version: the one atomic step of every change."""
    doc = {"body": body, "checksum": _body_hash(body)}
    atomic_write(root, os.path.join(L.MANIFESTS, L.manifest_name(body["version"])),
                 json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def write_deletes(root: str, segment: str, version: int, deleted: np.ndarray) -> dict[str, Any]:
    """Write a segment's deletion bitmap (bit ``i`` = row ``i`` deleted); returns its manifest entry."""
    name = f"{segment[:-3]}-{version:020d}.del"
    raw = np.packbits(deleted.astype(bool), bitorder="little").tobytes()
    atomic_write(root, os.path.join(L.DELETES, name), raw)
    return {"name": name, "count": int(deleted.sum()), "checksum": f"{xxhash.xxh3_64_intdigest(raw):016x}"}


class MissingFileError(CorruptionError):
    """A file a manifest names is not there: damage, or (for a reader of an older version) the writer's
    garbage collection, after which the reader opens the newest version again."""


def read_deletes(root: str, entry: dict[str, Any], n_docs: int) -> np.ndarray:
    """A segment's deletion bitmap (``(n_docs,)`` bool, True = deleted), its size, checksum and count verified."""
    path = os.path.join(root, L.DELETES, entry["name"])
    want = (n_docs + 7) // 8
    try:
        raw = F.read_regular(path, want, what=f"deletion bitmap of {n_docs} rows")
    except FileNotFoundError:
        raise MissingFileError(f"{path}: deletion file named by the manifest is missing") from None
    if f"{xxhash.xxh3_64_intdigest(raw):016x}" != entry["checksum"] or len(raw) != want:
        raise CorruptionError(f"{path}: deletion bitmap does not match its checksum (damaged)")
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:n_docs].astype(bool)
    if int(bits.sum()) != int(entry["count"]):
        raise CorruptionError(f"{path}: deletion bitmap counts {int(bits.sum())} rows, the manifest {entry['count']}")
    return bits


class WriterLock:
    """The collection's single-writer lock: ``flock`` on ``LOCK``, taken without waiting."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, L.LOCK)
        # never through a link: O_CREAT would follow it and create a file outside the collection
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise CorruptionError(f"{self.path} is a symbolic link; colprune follows no links inside a collection") from None
            raise
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            self.fd = None
            raise CorruptionError(f"{self.path} is not a regular file; colprune takes its writer lock on a regular file")
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock (Windows): one writer is the user's promise
            pass
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                holder = lock_holder(self.fd)
                os.close(self.fd)
                self.fd = None
                who = f" ({holder})" if holder else ""
                raise LockedError(f"{root} is open for writing by another process{who}: one writer at a time; wait "
                                  "for it to finish (or stop it) and try again; reading needs no lock", holder=holder) from None
            os.close(self.fd)
            self.fd = None
            raise
        try:  # who holds it, for the next writer's message only (we hold the flock: no one else writes it)
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def lock_holder(fd: int) -> str:
    """``pid N on HOST`` as the holder of the lock open at ``fd`` wrote it, or ``""``."""
    try:
        pid, host = os.pread(fd, 256, 0).decode("ascii").split()[:2]
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", host):  # the file may be hostile: print nothing odd
            host = "another host"
        return f"pid {int(pid)} on {host}"
    except (OSError, ValueError, UnicodeDecodeError):
        return ""


def collect_garbage(root: str, current: int) -> None:
    """Remove manifests older than the last ``KEEP_MANIFESTS``, files none of those name, and ``tmp/``.

    Called by the writer (holding the lock) after a commit. Readers that opened an older
    version keep their open files (POSIX keeps unlinked files readable).
    """
    mdir = os.path.join(root, L.MANIFESTS)
    versions = sorted(int(m.group(1)) for m in map(_MANIFEST_RE.match, os.listdir(mdir)) if m)
    keep = [v for v in versions if v > current - KEEP_MANIFESTS]
    referenced: set[str] = set()
    for v in keep:
        try:
            body = read_manifest(root, v)
        except (FormatError, OSError):
            continue
        for s in body["segments"]:
            referenced.add(s["name"])
            if s.get("deletes"):
                referenced.add(s["deletes"]["name"])
        if body.get("codebook"):
            referenced.add(body["codebook"]["name"])
    for v in versions:
        if v not in keep:
            _unlink(os.path.join(mdir, L.manifest_name(v)))
    for sub in (L.SEGMENTS, L.DELETES, L.CODEBOOKS):
        folder = os.path.join(root, sub)
        if sub == L.CODEBOOKS and not os.path.isdir(folder):  # format 3, or no residual codec
            continue
        for name in os.listdir(folder):
            if name not in referenced:
                _unlink(os.path.join(folder, name))


def clear_tmp(root: str) -> None:
    folder = os.path.join(root, L.TMP)
    for name in os.listdir(folder):
        p = os.path.join(folder, name)
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            _unlink(p)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False
