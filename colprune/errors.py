"""Exceptions raised by colprune.

Every error a user can cause with bad input is a :class:`ValueError` subclass, so
``except ValueError`` keeps working; catching :class:`ColpruneError` catches only ours.
The command line maps each class to its own exit status (``colprune.cli.EXIT_STATUSES``).
"""

from __future__ import annotations

__all__ = ["ColpruneError", "InvalidInputError", "DuplicateIdError", "FormatError", "CorruptionError", "LockedError",
           "UsageError", "NotFoundError", "WriteError", "SettingsMismatchError", "ModelLoadError", "UnknownIdError",
           "ClosedError", "ColpruneWarning"]


class ColpruneError(Exception):
    """Base class of every exception colprune raises on purpose."""


class InvalidInputError(ColpruneError, ValueError):
    """An argument has the wrong shape, dtype or values (NaN, empty, wrong dim...)."""


class DuplicateIdError(InvalidInputError):
    """A document id is already in the index, or repeated within one ``add`` call."""


class FormatError(ColpruneError, ValueError):
    """A file is not a colprune index, is truncated, or has an unsupported format version."""


class CorruptionError(FormatError):
    """Stored data does not match its checksum, or breaks the layout's invariants.

    The message names the object (collection, segment, dataset) and the rows concerned;
    nothing is returned from damaged data.
    """


class LockedError(ColpruneError, OSError):
    """Another process holds the collection's writer lock (one writer at a time).

    ``holder`` names that process when its lock records it (``"pid 4321 on HOST"``), else ``""``.
    """

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder

    def __str__(self) -> str:  # OSError's own __str__ would show only errno-style args
        return str(self.args[0]) if self.args else ""


class WriteError(ColpruneError, OSError):
    """A write to the collection failed (disk full, quota, I/O error): nothing it started was committed.

    The collection is as it was before the call and the process can go on (a new writer may retry).
    ``needed`` is the number of bytes the write wanted, when known; ``path`` is where it wrote.
    """

    def __init__(self, message: str, *, path: str | None = None, needed: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.needed = needed

    def __str__(self) -> str:  # OSError's own __str__ would show only errno-style args
        return str(self.args[0]) if self.args else ""


class UsageError(ColpruneError, ValueError):
    """Options that do not go together, or a value no command can take (an empty query, ``-k 0``)."""


class NotFoundError(ColpruneError, LookupError):
    """Something named by the user is not there: a page id in an index, a file, a folder."""


class SettingsMismatchError(InvalidInputError):
    """Appending to an index with settings (codec, pruner, encoder, dim) other than the ones it holds."""


class ModelLoadError(ColpruneError, RuntimeError):
    """An encoder could not be loaded: a missing package, an unreachable hub, an unsupported model type."""


class UnknownIdError(InvalidInputError, KeyError):
    """Page ids that are not in the index (a ``KeyError`` too, as for a dict)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ClosedError(UsageError):
    """A call on an index (or sharded collection) after its ``close()``: every call but ``close()`` and ``repr()``.

    A :class:`UsageError`, so a :class:`ColpruneError` and a :class:`ValueError` (exit status 2 on the command line).
    """

    @classmethod
    def of(cls, path: str, opener: str = "colprune.Index.open") -> ClosedError:
        """The error for the closed index at ``path``, saying how to open it again."""
        return cls(f"{path} is closed; open it again with {opener}(...)")


class ColpruneWarning(UserWarning):
    """Base class of colprune's warnings (leftovers of killed overwrites, a merge put off by a full disk...).

    The command line prints them as one line, ``colprune CMD: warning: MESSAGE``.
    """
