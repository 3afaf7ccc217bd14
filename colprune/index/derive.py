"""Deriving and upgrading: copying a collection's live pages into a new one without re-encoding.

:func:`reprune` prunes stored pages again (by their stored importance or a blend of stored
signals), :func:`as_stored` keeps them as they are (upgrade, repack), and :func:`copy_pages`
streams a source's pages through one of them into a writer, batch by batch. The pruner record
of the new collection is :func:`derived_record`'s, set when it is created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..pruning import NoPruning, PrunedPage, Pruner
from .prepare import Prepared
from .records import NO_GRID, Page, blend_signals, kept_signals, meta_json

__all__ = ["derived_record", "reprune", "as_stored", "copy_pages"]


def derived_record(pruner: Pruner, signal: str | dict[str, float] | None, source: dict[str, Any] | None,
                   signal_names: list[str], path: str) -> dict[str, Any]:
    """The pruner record of a collection derived with ``pruner`` (and ``signal``) from one recorded as ``source``."""
    config = pruner.config()
    if signal is not None:
        names = [signal] if isinstance(signal, str) else list(signal)
        missing = [n for n in names if n not in signal_names]
        if missing or not names:
            raise InvalidInputError(f"{path} stores no signal {missing or signal!r}; it has {signal_names}")
        config["signal"] = signal if isinstance(signal, str) else {k: float(v) for k, v in signal.items()}
    if signal is None and source is not None and "signal" in source:
        config["signal"] = source["signal"]  # the stored importance is still that signal
    if source is not None and source.get("name") != "none":
        config["derived_from"] = source
    return config


def _composed_covers(p: Page, pp: PrunedPage) -> tuple[np.ndarray, ...] | None:
    # a merged source's vectors each cover some rows; a vector merged again covers the union of its members'
    if pp.covers is None and p.covers is None:
        return None
    src = p.covers if p.covers is not None else tuple(np.array([r]) for r in p.positions)
    members = pp.covers if pp.covers is not None else tuple(np.array([r]) for r in pp.positions)
    return tuple(np.sort(np.concatenate([src[m] for m in ms])) for ms in members)


def reprune(pages: list[Page], pruner: Pruner, config: dict[str, Any], signal: str | dict[str, float] | None) -> Prepared:
    """Stored pages pruned again by ``pruner``, by their importance or the ``signal`` blend; recorded as ``config``."""
    out, kept = [], []
    for p in pages:
        imp = (p.importance if signal is None else blend_signals(p.signals, signal)).astype(np.float64)
        if np.isnan(imp).any():
            if pruner.needs_importance:
                raise InvalidInputError(f"document {p.id!r} was stored without importance scores; "
                                        f"pruner {pruner.name!r} needs them")
            imp = None
        pp = pruner.prune_checked(p.vectors, imp, p.patch_mask, p.grid)
        out.append(PrunedPage(pp.vectors, p.positions[pp.positions], pp.importance, pp.patch_mask, p.n_original,
                              _composed_covers(p, pp)))
        kept.append(kept_signals(p.signals, pp))
    return Prepared([p.id for p in pages], out, kept, [meta_json(p.metadata, f"document {p.id!r}") for p in pages],
                    [NO_GRID if p.grid is None else p.grid for p in pages], config)


def as_stored(pages: list[Page], config: dict[str, Any] | None) -> Prepared:
    """Stored pages kept as they are (vectors, positions, importance, signals, covers)."""
    out = [PrunedPage(p.vectors, p.positions, p.importance, p.patch_mask, p.n_original, p.covers) for p in pages]
    return Prepared([p.id for p in pages], out, [p.signals for p in pages],
                    [meta_json(p.metadata, f"document {p.id!r}") for p in pages],
                    [NO_GRID if p.grid is None else p.grid for p in pages], config or NoPruning().config())


def copy_pages(pages: Iterator[Page], total: int, transform: Callable[[list[Page]], Prepared],
               write: Callable[[Prepared], None], *, batch_size: int = 1024, progress: bool = False, desc: str = "copy") -> None:
    """Stream ``pages`` through ``transform`` into ``write``, ``batch_size`` pages at a time (a tqdm bar with ``progress``)."""
    if progress:
        from tqdm.auto import tqdm

        pages = tqdm(pages, total=total, desc=desc, unit="page")
    batch: list[Page] = []
    for page in pages:
        batch.append(page)
        if len(batch) == batch_size:
            write(transform(batch))
            batch = []
    if batch:
        write(transform(batch))
