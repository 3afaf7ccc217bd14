"""Opening a collection's files as what they claim to be: regular files, read within a bound.

A collection is a folder anyone may have copied, unpacked or edited. Every file colprune reads
in it (the marker, manifests, segments, deletion bitmaps) is opened here: with ``O_NOFOLLOW``
and ``O_NONBLOCK`` and then ``fstat``-checked, so a symbolic link (to ``/etc/passwd`` or to a
file of another collection), a FIFO (which would block ``open`` forever), a device
(``/dev/zero`` never ends) or a folder is refused with a :class:`CorruptionError` naming the
file, before a byte of it is read. Small files are read whole only when ``fstat`` says they fit
their bound. HDF5 files are opened through ``/proc/self/fd/N`` of the checked descriptor, so the
file HDF5 reads is the one checked (elsewhere: by path, and the inode compared afterwards).
"""

from __future__ import annotations

import errno
import os
import re
import stat

import h5py
import numpy as np

from ..errors import CorruptionError, FormatError

__all__ = ["open_regular", "read_regular", "read_into", "check_folder", "open_h5", "json_depth"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))
_PROC_FD = "/proc/self/fd"
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(path: str, what: str) -> CorruptionError:
    return CorruptionError(f"{path} is {what}; colprune reads only regular files in a collection (refused before "
                           "reading it: it could make colprune read another file, or wait forever)")


def open_regular(path: str, *, follow: bool = False) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only as a regular file; returns ``(fd, fstat)``; the caller closes ``fd``.

    ``follow`` lets the last component be a symbolic link (a path the user typed). Raises
    :class:`CorruptionError` for anything but a regular file (a symbolic link unless ``follow``,
    a FIFO, a device, a socket, a folder); ``FileNotFoundError`` when there is nothing there.
    """
    before = os.stat(path) if follow else os.lstat(path)  # FileNotFoundError passes: callers may retry
    if not stat.S_ISREG(before.st_mode):
        raise _refuse(path, _kind(before.st_mode))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # swapped for a link since the lstat
            raise _refuse(path, "a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise _refuse(path, _kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else "a file replaced while opened")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str, limit: int, *, what: str = "file", follow: bool = False) -> bytes:
    """The whole of regular file ``path``, refused (:class:`CorruptionError`) when larger than ``limit`` bytes."""
    fd, st = open_regular(path, follow=follow)
    try:
        if st.st_size > limit:
            raise CorruptionError(f"{path}: {st.st_size:,} bytes, more than a {what} may hold ({limit:,}); refused unread")
        chunks, left = [], st.st_size + 1  # one byte more: a file that grew since fstat is refused too
        while left > 0:
            b = os.read(fd, min(left, 1 << 24))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit:
        raise CorruptionError(f"{path}: more than a {what} may hold ({limit:,} bytes); refused")
    return raw


def read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``fd`` at ``offset``; the bytes read (fewer only at the end of the file).

    One ``pread`` returns at most ~2 GiB on Linux (and may return less anywhere): a read of a large
    segment's vectors takes several calls."""
    done, size = 0, len(view)
    while done < size:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            break
        done += got
    return done


def check_folder(path: str) -> bool:
    """Whether folder ``path`` exists; :class:`CorruptionError` when it is a symbolic link or not a folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise CorruptionError(f"{path} is {_kind(st.st_mode)}, not a folder; colprune follows no links inside a collection")
    return True


def open_h5(path: str, *, follow: bool = False) -> tuple[h5py.File, int, int]:
    """Open HDF5 file ``path`` read-only (no HDF5 file lock) after :func:`open_regular`'s checks.

    Returns ``(file, fd, size)``: the checked descriptor stays open for ``pread`` (the caller
    closes it) and ``size`` is the file's size in bytes.
    """
    fd, st = open_regular(path, follow=follow)
    try:
        via_fd = os.path.isdir(_PROC_FD)
        name = f"{_PROC_FD}/{fd}" if via_fd else path
        try:
            f = h5py.File(name, "r", locking=False)
        except (OSError, ValueError) as e:
            if os.fstat(fd).st_nlink == 0:  # removed since it was opened (a writer's garbage collection): callers retry
                raise FileNotFoundError(errno.ENOENT, "removed while being opened", path) from None
            raise FormatError(f"cannot read {path} as HDF5: it is not an HDF5 file, or it is truncated or corrupted "
                              f"(h5py: {e})") from None
        if not via_fd:
            got = os.fstat(f.id.get_vfd_handle())
            if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
                f.close()
                raise _refuse(path, "a file replaced while opened")
    except BaseException:
        os.close(fd)
        raise
    return f, fd, int(st.st_size)


def json_depth(raw: bytes, limit: int) -> bool:
    """Whether JSON text ``raw`` nests ``[``/``{`` at most ``limit`` deep (brackets in strings not counted).

    Linear, in 16 MiB windows, so a document nested 100,000 deep is refused before a recursive
    parser sees it; a text with at most ``limit`` opening brackets is not scanned.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True
    text = _STRINGS.sub(b"", raw) if b'"' in raw else raw
    depth = 0
    for i in range(0, len(text), 1 << 24):
        a = np.frombuffer(text, np.uint8, count=min(1 << 24, len(text) - i), offset=i)
        step = np.zeros(a.shape, np.int32)
        step[(a == 0x5B) | (a == 0x7B)] = 1
        step[(a == 0x5D) | (a == 0x7D)] = -1
        run = np.cumsum(step, dtype=np.int64) + depth
        if run.size and int(run.max()) > limit:
            return False
        depth = int(run[-1]) if run.size else depth
    return True
