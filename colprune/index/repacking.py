"""Repacking: rewriting a collection in place so its files hold only its live pages.

:func:`repack` copies every live page, as stored, into a new collection beside the old one
(keeping its settings and pruner record, optionally dropping a binary index's rerank copy),
then swaps it into place through the same atomic exchange as ``Index.create(overwrite=True)``:
a crash at any moment leaves the old collection or the new one at ``path``, never neither.
"""

from __future__ import annotations

import os

from .collection import Index

__all__ = ["repack"]


def repack(path: str | os.PathLike, *, rerank: bool, progress: bool = False) -> None:
    """Rewrite the index at ``path`` with only its live pages, keeping its pruner record.

    Parameters
    ----------
    path : the collection (or version 1/2 file) to rewrite
    rerank : keep a binary index's float16 rerank copy (False drops it)
    progress : show a progress bar
    """
    path = os.path.abspath(os.fspath(path))
    with Index.open(path) as src:
        src.copy_to(path, rerank=rerank, overwrite=True, progress=progress, desc="repack")
