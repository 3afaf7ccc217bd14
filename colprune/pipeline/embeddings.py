"""``build_embeddings``: pages already encoded (``.pt``/``.npz``/``.npy`` files) → prune → commit.

The same commit loop as :func:`~colprune.pipeline.build` (:class:`~colprune.pipeline.PageWriter`)
and the same settings check; page ids already in the index are kept, not added again.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

from ..errors import UsageError
from .report import BuildReport, storage_report
from .settings import check_settings
from .writer import PageWriter

__all__ = ["build_embeddings"]


def _check_dims(sets: list, dim: int | None) -> int:
    """The vectors' dim of every file (all the same, and ``dim`` when given)."""
    dims = {s.embeddings[0].shape[1] for s in sets if len(s)}
    if len(dims) > 1:
        raise UsageError(f"the input files hold vectors of different dims {sorted(dims)}")
    found = dim or next(iter(dims), None)
    if found is None:
        raise UsageError("the input files hold no pages")
    if dim and dims and dims != {dim}:
        raise UsageError(f"--dim {dim}, but the files hold dim {dims.pop()}")
    return int(found)


def _open(output: Any, *, dim: int, encoder: str | None, dtype: str | None, pruner: Any, rerank: bool,
          overwrite: bool) -> tuple[Any, Any, bool]:
    """``(index, pruner, own)``: the index opened (or created) once, its settings checked."""
    from ..index import Index
    from ..pruning import make_pruner

    pr = None if pruner is None else make_pruner(pruner)
    if not isinstance(output, (str, os.PathLike)):  # an open index (or sharded collection): append to it
        index, own = output, False
    elif os.path.exists(output) and not overwrite:
        index, own = Index.open(output, mode="a"), True
    else:
        pr = pr or make_pruner(None)
        return Index.create(output, dim, dtype or "float16", encoder=encoder, overwrite=overwrite, merged=pr.merges,
                            rerank=rerank), pr, True
    try:
        shown = os.fspath(output) if isinstance(output, (str, os.PathLike)) else None
        held = check_settings(index, dtype=dtype, pruner=pr, encoder=encoder, dim=dim, rerank=None if rerank else False,
                              shown=shown)
    except BaseException:
        if own:
            index.close()
        raise
    if pr is None:
        stored = held["pruner"]
        pr = make_pruner({k: stored[k] for k in ("name", "params")} if stored else "none")
    return index, pr, own


def _write_set(s: Any, writer: PageWriter, done: set[str], bar: Any) -> int:
    """Hand one file's pages to ``writer``, leaving out the ids in ``done``; returns how many were left out."""
    present = 0
    for i, doc_id in enumerate(s.ids):
        if doc_id in done:
            present += 1
            bar.update(1)
            continue
        done.add(doc_id)
        writer.add([doc_id], [s.embeddings[i]], None if s.importance is None else [s.importance[i]],
                   metadata=[s.metadata[i] if s.metadata is not None else {"source": s.source, "page": i + 1}],
                   patch_mask=None if s.patch_mask is None else [s.patch_mask[i]],
                   grids=None if s.grids is None else [s.grids[i]])
    return present


# long: one parameter per option of the documented API, and its docstring
def build_embeddings(
    files: Sequence[str],
    output: Any,
    *,
    encoder: str | None = None,
    dim: int | None = None,
    dtype: str | None = None,
    pruner: Any = None,
    rerank: bool = True,
    commit_pages: int = 32,
    commit_seconds: float = 30.0,
    progress: bool = True,
    overwrite: bool = False,
    on_event: Callable[[str, dict], None] | None = None,
) -> BuildReport:
    """Build (or extend) the index ``output`` from embedding files (see :mod:`colprune.io` for the layouts).

    Parameters
    ----------
    files : ``.pt``, ``.npz`` or ``.npy`` files, read whole before anything is written
    output : the index path (extended when it exists, unless ``overwrite``), or an open
        writable index (or sharded collection), which is appended to and left open
    encoder : the name of the model that made the embeddings, recorded in a new index
    dim : the vectors' dim (default: the files'); refused when the files hold another
    dtype : the codec of a new index (default float16); when extending, None takes the index's
    pruner : a :class:`~colprune.pruning.Pruner`, registry name or config; default: the
        existing index's pruner, else none
    rerank : for a new ``"binary"`` index: keep the float16 rerank copy; ``False`` with an
        existing index refuses one that holds the copy
    commit_pages, commit_seconds : commit after this many pages or seconds, whichever first
    progress : show a progress bar (stderr)
    overwrite : replace ``output`` instead of extending it
    on_event : ``callback(kind, info)``: ``"pages"`` (``total``, ``todo``, ``held``),
        ``"committed"`` (``pages``, ``indexed``), ``"interrupted"`` and ``"done"`` (the report)

    Returns
    -------
    BuildReport : ``indexed`` pages added; ``already_present`` the ids the index (or an
        earlier file of this call) already held.
    """
    from tqdm.auto import tqdm

    from ..io import load_embeddings

    t0 = time.perf_counter()
    emit = on_event or (lambda kind, info: None)
    sets = [load_embeddings(p) for p in files]
    dim = _check_dims(sets, dim)
    index, pr, own = _open(output, dim=dim, encoder=encoder, dtype=dtype, pruner=pruner, rerank=rerank,
                           overwrite=overwrite)
    report = BuildReport(output=os.fspath(output) if own else str(index.path))
    report.pages_total = sum(len(s) for s in sets)
    bar = tqdm(total=report.pages_total, desc="build", unit="page", disable=not progress)

    def committed(pages: int, total: int) -> None:
        bar.update(pages)
        emit("committed", {"pages": pages, "indexed": total})

    writer = PageWriter(index, pr, commit_pages=commit_pages, commit_seconds=commit_seconds, on_commit=committed)
    try:
        done = set(index.ids)
        todo = len({d for s in sets for d in s.ids} - done)
        emit("pages", {"total": report.pages_total, "todo": todo, "held": len(index)})
        for s in sets:
            report.already_present += _write_set(s, writer, done, bar)
        writer.flush()
        report.info = storage_report(index)
    except KeyboardInterrupt:
        writer.keep()  # the pages taken and not yet committed
        report.indexed, report.interrupted = writer.indexed, True
        report.seconds = time.perf_counter() - t0
        emit("interrupted", report.to_dict())
        raise
    finally:
        bar.close()
        if own:
            index.close()
    report.indexed = writer.indexed
    report.seconds = time.perf_counter() - t0
    emit("done", report.to_dict())
    return report
