"""Micro-batches: the pages of one encoder call, small enough that a build commits and shows progress often.

A build hands the encoder a few pages at a time, not a commit's worth: after each call the
progress bar moves by the pages it held and the writer may commit (at ``commit_pages`` pages
or ``commit_seconds`` seconds), so a Ctrl-C loses at most the call in flight.

How many pages go into one call:

- an encoder that counts its tokens (``page_tokens(content) -> int`` and ``max_batch_tokens``,
  as :class:`~colprune.encoders.TextTokenEncoder` has: a page is its windows of up to 512
  tokens): pages are grouped until their tokens reach ``max_batch_tokens`` (about one forward
  pass), at most ``max_pages`` pages;
- any other encoder (images: each page is a full image sequence): ``max_pages`` pages
  (default :data:`IMAGE_PAGES`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MicroBatches", "IMAGE_PAGES", "TEXT_PAGES"]

#: Pages per encoder call for an encoder that does not count tokens (image encoders).
IMAGE_PAGES = 4
#: At most this many pages per call for an encoder that counts tokens.
TEXT_PAGES = 64


class MicroBatches:
    """Group ``(item, content)`` pairs into encoder calls (see the module docstring).

    Parameters
    ----------
    encoder : the page encoder (its ``page_tokens`` and ``max_batch_tokens`` are used when it has both)
    max_pages : at most this many pages per call (default :data:`TEXT_PAGES` for an encoder that
        counts tokens, else :data:`IMAGE_PAGES`)
    """

    def __init__(self, encoder: Any, max_pages: int | None = None) -> None:
        count = getattr(encoder, "page_tokens", None)
        budget = getattr(encoder, "max_batch_tokens", None)
        self.count = count if callable(count) and budget else None
        self.budget = int(budget) if self.count is not None else None
        self.max_pages = int(max_pages) if max_pages else (TEXT_PAGES if self.count is not None else IMAGE_PAGES)
        self._items: list[tuple[Any, Any]] = []
        self._tokens = 0

    @property
    def forward_batch(self) -> int:
        """The ``batch_size`` to pass with a call: the encoder's own token budget packs the forward
        passes of an encoder that counts tokens; for others, the call is one batch."""
        return max(self.max_pages, 64) if self.count is not None else self.max_pages

    def add(self, item: Any, content: Any) -> list[list[tuple[Any, Any]]]:
        """Take one page; returns the calls it completes (none, one, or two when one page alone is
        over the token budget)."""
        done = []
        tokens = int(self.count(content)) if self.count is not None else 0
        if self._items and self.budget is not None and self._tokens + tokens > self.budget:
            done.append(self.take())
        self._items.append((item, content))
        self._tokens += tokens
        if len(self._items) >= self.max_pages or (self.budget is not None and self._tokens >= self.budget):
            done.append(self.take())
        return done

    def take(self) -> list[tuple[Any, Any]]:
        """The pages taken so far (maybe none), as one call."""
        items, self._items, self._tokens = self._items, [], 0
        return items
