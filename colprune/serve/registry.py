"""Where a running ``colprune serve`` says which index it answers for, so ``colprune search`` can ask it.

One small JSON file per index, named by a hash of the index's real path, in a folder only this
user can read: ``$COLPRUNE_SERVE_DIR``, else ``$XDG_RUNTIME_DIR/colprune/serve``, else
``~/.cache/colprune/serve``. It holds ``pid``, ``host``, ``port``, ``index`` (real path),
``index_version`` and ``model``; the server removes it at exit, and a note whose process is gone
is removed by the next reader. Only servers reachable on this machine's loopback are noted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import tempfile
from typing import Any

__all__ = ["registry_dir", "note_path", "register", "unregister", "lookup", "loopback_host"]


def registry_dir() -> str:
    """The folder of server notes for this user."""
    given = os.environ.get("COLPRUNE_SERVE_DIR")
    if given:
        return given
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "colprune", "serve")
    return os.path.join(os.path.expanduser("~"), ".cache", "colprune", "serve")


def note_path(index_path: str) -> str:
    """The note of the server for ``index_path`` (any spelling of the same index names the same note)."""
    key = hashlib.sha256(os.path.realpath(index_path).encode()).hexdigest()[:24]
    return os.path.join(registry_dir(), f"{key}.json")


def loopback_host(host: str) -> str | None:
    """The loopback address a server bound to ``host`` answers on, or None when it does not answer on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:  # a host name other than localhost
        return None


def register(index_path: str, *, host: str, port: int, index_version: int, model: str | None) -> str | None:
    """Write this process's note for ``index_path``; returns its path (None when not on loopback or not writable)."""
    connect = loopback_host(host)
    if connect is None:
        return None
    note = {"pid": os.getpid(), "host": connect, "port": int(port), "index": os.path.realpath(index_path),
            "index_version": index_version, "model": model}
    path = note_path(index_path)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".note-")
        with os.fdopen(fd, "w") as f:
            json.dump(note, f)
        os.replace(tmp, path)
    except OSError:  # a read-only home: search just will not find this server
        return None
    return path


def unregister(path: str | None) -> None:
    """Remove the note at ``path`` if it is still this process's (another server may have replaced it)."""
    if path is None:
        return
    note = _read(path)
    if note is not None and note.get("pid") == os.getpid():
        try:
            os.remove(path)
        except OSError:
            pass


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            note = json.load(f)
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the number: not our server
        return False
    except OSError:
        return False
    return True


def lookup(index_path: str) -> dict[str, Any] | None:
    """The note of a live server for ``index_path``, or None (a note whose process is gone is removed)."""
    path = note_path(index_path)
    note = _read(path)
    if note is None:
        return None
    fields_ok = (isinstance(note.get("host"), str) and isinstance(note.get("port"), int)
                 and note.get("index") == os.path.realpath(index_path))
    if not fields_ok or not _alive(note.get("pid")):
        try:
            os.remove(path)
        except OSError:
            pass
        return None
    return note
