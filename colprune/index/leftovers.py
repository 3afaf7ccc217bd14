"""Leftovers of killed creations and overwrites: the hidden folders beside a collection.

``Index.create`` assembles a collection in a sibling folder ``.NAME.tmp-<hex>`` and, with
``overwrite``, moves the old one aside (``.NAME.old-<hex>``, or the temporary name itself after
the atomic exchange) before removing it. A process killed in between leaves that folder behind.
:func:`find_leftovers` lists them (``Index.open`` warns once, ``Index.verify`` reports them),
:func:`remove_leftovers` removes those no live process holds (``colprune gc``; ``Index.create``
does it too). A folder is held while a process holds its ``LOCK`` (a build in progress, a swap
under way): it is never removed. Symbolic links are never followed, nor removed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import warnings

from ..errors import ColpruneWarning
from . import layout as L

__all__ = ["LeftoverWarning", "find_leftovers", "remove_leftovers", "remove_stale_siblings", "warn_leftovers",
           "leftover_bytes", "built_for"]


class LeftoverWarning(ColpruneWarning):
    """Folders left beside a collection by killed overwrites (``colprune gc INDEX`` removes them)."""


def _pattern(base: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(base)}\.(?:tmp|old)-[0-9a-f]{{16}}")


def built_for(folder: str) -> str | None:
    """The collection a ``.NAME.tmp-<hex>`` folder is being built for (``NAME`` beside it), or None for any other folder."""
    m = re.fullmatch(r"\.(.+)\.tmp-[0-9a-f]{16}", os.path.basename(os.path.normpath(folder)))
    return os.path.join(os.path.dirname(os.path.normpath(folder)), m.group(1)) if m else None


def find_leftovers(path: str | os.PathLike) -> list[str]:
    """The leftovers of killed creations and overwrites beside the collection ``path``, as absolute paths, sorted.

    Folders and regular files named ``.NAME.tmp-<hex>`` / ``.NAME.old-<hex>`` (16 hex digits);
    symbolic links are left out. Held ones (a build in progress) are listed too.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.dirname(path), os.path.basename(path)
    pattern = _pattern(base)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    out = []
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(parent, name)
        try:
            mode = os.lstat(full).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            out.append(full)
    return sorted(out)


def leftover_bytes(path: str) -> int:
    """Bytes of the regular files under ``path`` (symbolic links not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for folder, _, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _take_lock(folder: str) -> int | None:
    """Hold ``folder``'s ``LOCK`` (no wait; never created, never through a link): its descriptor, or None
    when there is no lock file to take. Raises ``BlockingIOError`` when another process holds it."""
    try:
        fd = os.open(os.path.join(folder, L.LOCK), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError:  # a link, a folder named LOCK...: not a lock anyone holds
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): nothing to check
        pass
    except OSError:
        os.close(fd)
        raise BlockingIOError(f"{folder} is held by another process") from None
    return fd


def _remove(full: str) -> None:
    st = os.lstat(full)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(full)  # removes links inside, never what they point to
    elif stat.S_ISREG(st.st_mode):
        os.unlink(full)


def remove_leftovers(path: str | os.PathLike, *, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Remove the leftovers beside ``path`` that no process holds.

    Returns ``(removed, kept)``: what was removed (with ``dry_run``: what would be) and what was
    kept (a live process holds it, or it could not be removed). A leftover's ``LOCK`` stays held
    while it is removed.
    """
    removed, held = [], []
    for full in find_leftovers(path):
        try:
            fd = _take_lock(full)
        except BlockingIOError:
            held.append(full)
            continue
        try:
            if not dry_run:
                _remove(full)
        except OSError:
            pass  # gone meanwhile, or not removable: it is listed as kept if still there
        finally:
            if fd is not None:
                os.close(fd)
        (removed if dry_run or not os.path.lexists(full) else held).append(full)
    return removed, held


def remove_stale_siblings(path: str) -> None:
    """Remove the leftovers of killed creations or overwrites beside ``path`` (held ones are kept)."""
    remove_leftovers(path)


_warned: set[str] = set()


def warn_leftovers(path: str) -> None:
    """Warn (a :class:`LeftoverWarning`, once per collection in a process) when leftovers no process holds
    sit beside ``path``."""
    if path in _warned:
        return
    found = [f for f in find_leftovers(path) if not _held(f)]
    if not found:
        return
    _warned.add(path)
    names = ", ".join(os.path.basename(f) for f in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    folders = "1 folder" if len(found) == 1 else f"{len(found)} folders"
    warnings.warn(LeftoverWarning(f"{folders} left beside {path} by killed overwrites ({names}); "
                                  f"remove {'it' if len(found) == 1 else 'them'} with: colprune gc {path}"), stacklevel=3)


def _held(folder: str) -> bool:
    try:
        fd = _take_lock(folder)
    except BlockingIOError:
        return True
    if fd is not None:
        os.close(fd)
    return False
