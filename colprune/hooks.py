"""Seams through which the store calls code of a layer above it without importing it.

The store (:mod:`colprune.index`) imports no PDF or image library, yet a search result can give
its page's text and image (:meth:`colprune.Hit.text`, :meth:`colprune.Hit.image`). The reader
lives in :mod:`colprune.content`, which registers it here when it is imported; ``import colprune``
imports :mod:`colprune.content` (cheaply: the PDF and image libraries load on first use), and
every ``colprune.*`` import runs ``colprune/__init__`` first, so the reader is registered before
any :class:`~colprune.Hit` exists.

Like :mod:`colprune.errors`, this module sits beside the layers and may be imported from anywhere.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .errors import UsageError

__all__ = ["PageReader", "set_page_reader", "page_reader"]


class PageReader(NamedTuple):
    """What reads a hit's page: ``text(hit, root) -> str`` and ``image(hit, root, scale) -> PIL image``."""

    text: Callable[[Any, str | None], str]
    image: Callable[[Any, str | None, float], Any]


_reader: PageReader | None = None


def set_page_reader(reader: PageReader) -> None:
    """Register the page reader (:mod:`colprune.content` does, on import)."""
    global _reader
    _reader = reader


def page_reader() -> PageReader:
    """The registered page reader; :class:`UsageError` when none is (never after ``import colprune``)."""
    if _reader is None:
        raise UsageError("no page reader is registered: import colprune.content (import colprune does)")
    return _reader
