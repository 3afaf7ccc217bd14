"""The one commit loop: :class:`PageWriter` buffers encoded pages and commits them in steps.

Every build writes through it: pages from files (:func:`colprune.pipeline.build`), embedding
files (:func:`colprune.pipeline.build_embeddings`), the study's full index and the Ray build's
shard writers. A commit happens every ``commit_pages`` pages or ``commit_seconds`` seconds,
whichever comes first; each commit is atomic, so an interrupted build keeps every page
committed before it. A Ctrl-C that arrives during a commit takes effect once the commit is
done (in the main thread), so it never costs the pages being committed. Pages that could not
be embedded are recorded (``Index.record_skipped``) with the next commit.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from .memory import release_freed_memory

__all__ = ["PageWriter", "deferred_interrupt"]


@dataclass
class _Page:
    id: str
    vectors: Any
    importance: Any
    metadata: dict | None
    patch_mask: Any
    grid: tuple[int, int] | None
    signals: dict[str, np.ndarray] | None
    replace: bool


def _item(seq: Sequence | None, i: int) -> Any:
    return None if seq is None else seq[i]


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a SIGINT (Ctrl-C) that arrives inside the block until the block is done, then deliver it.

    Only the main thread receives signals; elsewhere (a Ray shard writer's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    try:
        previous = _signal.signal(_signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        _signal.signal(_signal.SIGINT, previous)
        if got:
            if callable(previous):
                previous(_signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
            elif previous == _signal.SIG_DFL:
                os.kill(os.getpid(), _signal.SIGINT)


class PageWriter:
    """Buffer pages and commit them to an index every ``commit_pages`` pages or ``commit_seconds`` seconds.

    Parameters
    ----------
    index : an open, writable :class:`~colprune.index.Index` (or sharded collection); or None
        with ``create``
    pruner : the :class:`~colprune.pruning.Pruner` (or registry name) every page is pruned by;
        None: the index's own
    signal : the importance signal the pages' ``importance`` holds (``"indegree"``, ``"cls"``...),
        recorded with the index's pruner when the record has none
    create : ``create(signals)`` opens the index at the first commit, given the first page's
        ``signals`` dict (or None); no index is written when nothing is ever committed
    commit_pages : at most this many pages per commit
    commit_seconds : commit what is buffered once this many seconds have passed since the last
        commit (checked on every :meth:`add`)
    on_commit : ``on_commit(pages, total)`` after each commit: the pages it held, and the pages
        committed (added or replaced) by this writer so far

    Attributes
    ----------
    indexed, replaced : pages added, and pages replaced (``replace=True``), so far
    """

    def __init__(
        self,
        index: Any = None,
        pruner: Any = None,
        *,
        signal: str | None = None,
        create: Callable[[dict | None], Any] | None = None,
        commit_pages: int = 32,
        commit_seconds: float = 30.0,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> None:
        if index is None and create is None:
            raise InvalidInputError("PageWriter needs an open index or a create callback")
        if isinstance(commit_pages, bool) or not isinstance(commit_pages, int) or commit_pages < 1:
            raise InvalidInputError(f"commit_pages must be at least 1, got {commit_pages}")
        self.index = index
        self.pruner = pruner
        self.signal = signal
        self.commit_pages = commit_pages
        self.commit_seconds = float(commit_seconds)
        self.indexed = 0
        self.replaced = 0
        self._create = create
        self._on_commit = on_commit
        self._pages: list[_Page] = []
        self._ids: set[str] = set()
        self._skips: dict[str, str] = {}
        self._last = time.monotonic()

    # -- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Pages buffered, not yet committed."""
        return len(self._pages)

    @property
    def overdue(self) -> bool:
        """Whether ``commit_seconds`` have passed since the last commit."""
        return time.monotonic() - self._last >= self.commit_seconds

    @property
    def committed(self) -> int:
        """Pages committed (added or replaced) by this writer so far."""
        return self.indexed + self.replaced

    def holds(self, page_id: str) -> bool:
        """Whether ``page_id`` is buffered (taken but not yet committed)."""
        return page_id in self._ids

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: Sequence,
        importance: Sequence | None = None,
        *,
        metadata: Sequence[dict | None] | None = None,
        patch_mask: Sequence | None = None,
        grids: Sequence[tuple[int, int] | None] | None = None,
        signals: Sequence[dict | None] | None = None,
        replace: bool = False,
    ) -> None:
        """Buffer pages (``Index.add``'s arguments, any entry may be None), committing as they come due.

        ``replace=True``: the pages replace those with the same id (``Index.upsert``). A commit
        holds at most ``commit_pages`` pages; what is left is committed once ``commit_seconds``
        have passed since the last commit.
        """
        n = len(ids)
        for name, seq in (("vectors", vectors), ("importance", importance), ("metadata", metadata),
                          ("patch_mask", patch_mask), ("grids", grids), ("signals", signals)):
            if seq is not None and len(seq) != n:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")
        for i, page_id in enumerate(ids):
            self._pages.append(_Page(page_id, vectors[i], _item(importance, i), _item(metadata, i),
                                     _item(patch_mask, i), _item(grids, i), _item(signals, i), replace))
            self._ids.add(page_id)
            if len(self._pages) >= self.commit_pages:
                self.flush()
        if self._pages and self.overdue:
            self.flush()

    def skip(self, reasons: dict[str, str]) -> None:
        """Record pages (or files) that could not be embedded (id → reason), with the next commit."""
        self._skips.update(reasons)

    def record_skips(self) -> None:
        """Commit the skip records buffered so far (when an index is open): a build interrupted
        between commits keeps them, so the next run does not encode those pages again."""
        if self._skips and self.index is not None:
            self.index.record_skipped(self._skips)
            self._skips = {}

    def keep(self) -> int:
        """After a Ctrl-C: commit what is buffered (the pages encoded and not yet committed) and the
        skip records; a second Ctrl-C meanwhile stops it. Returns the pages committed."""
        try:
            return self.flush()
        except KeyboardInterrupt:
            return 0

    def commit_if_due(self) -> int:
        """Commit what is buffered when ``commit_seconds`` have passed since the last commit; returns the
        pages committed (for a caller that waits on something else between :meth:`add` calls)."""
        return self.flush() if self._pages and self.overdue else 0

    def flush(self) -> int:
        """Commit every buffered page (and skip record) now; returns the pages committed.

        A Ctrl-C during the commit is delivered when it is done (:func:`deferred_interrupt`).
        """
        with deferred_interrupt():
            pages, self._pages, self._ids = self._pages, [], set()
            if pages:
                ix = self._open(pages[0].signals)
                for replace in (False, True):
                    group = [p for p in pages if p.replace is replace]
                    if group:
                        self._commit(ix, group, replace)
            self.record_skips()
            self._last = time.monotonic()
        if pages:
            if self._on_commit is not None:
                self._on_commit(len(pages), self.indexed + self.replaced)
            release_freed_memory()
        return len(pages)

    def _open(self, signals: dict | None) -> Any:
        if self.index is None:
            self.index = self._create(signals)
        return self.index

    def _commit(self, ix: Any, group: list[_Page], replace: bool) -> None:
        """One atomic commit of ``group`` (``Index.add`` or ``Index.upsert``)."""
        importance = [p.importance for p in group]
        kw: dict[str, Any] = dict(pruner=self.pruner, metadata=[p.metadata for p in group],
                                  patch_mask=[p.patch_mask for p in group], grids=[p.grid for p in group])
        names = ix.signal_names if any(p.signals is not None for p in group) else ()
        if names:  # the index stores these signals: pass exactly them (pages may carry more)
            kw["signals"] = [None if p.signals is None else {k: p.signals[k] for k in names} for p in group]
        args = ([p.id for p in group], [p.vectors for p in group],
                None if all(x is None for x in importance) else importance)
        if self.signal:  # recorded with the pruner in the pages' own commit when the record has none
            kw["signal"] = self.signal
        if replace:
            ix.upsert(*args, **kw)
            self.replaced += len(group)
        else:
            ix.add(*args, commit_every=len(group), **kw)
            self.indexed += len(group)
