"""Exceptions raised by colprune.

Every error a user can cause with bad input is a :class:`ValueError` subclass, so
``except ValueError`` keeps working; catching :class:`ColpruneError` catches only ours.
"""

__all__ = ["ColpruneError", "InvalidInputError", "DuplicateIdError", "FormatError", "CorruptionError", "LockedError"]


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
    """Another process holds the collection's writer lock (one writer at a time)."""
