"""``build``: files and folders → pages → encode → prune → commit, through one open of the index.

The steps, each a function below: take the writer lock on ``output`` (:func:`_open_target`:
open an existing index once and check the build's settings on it, or create the new index
when its settings are known from the model's config) before any page is read or model
loads; list the pages (:func:`~colprune.pipeline.list_pages`); sort what is already there
from what is to do (:func:`_plan`); drop, still before the model loads, the pages no encoder
of its kind can read (:func:`~colprune.pipeline.pages.readable_pages`), and stop when none
is left; load the encoder and check its dimension on the same open index; read ahead of the
encoder, encode in micro-batches (:mod:`~colprune.pipeline.batching`) and commit through one
:class:`~colprune.pipeline.PageWriter` (:func:`_encode_pages`). A new index into which no
page was committed is removed again: nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import InvalidInputError, LockedError, SettingsMismatchError, UsageError
from .batching import MicroBatches
from .pages import PageJob, list_pages, page_metadata, prefetch, read_pages, readable_pages
from .report import BuildReport, storage_report, why_nothing
from .settings import (
    DEFAULT_IMPORTANCE,
    check_settings,
    check_signal,
    kind_signals,
    model_dim,
    model_kind,
    same_signal,
)
from .writer import PageWriter

__all__ = ["build"]


@dataclass
class _Target:
    """The index a build writes: open (and locked) from the start, or None until the first commit
    when a new index's settings are known only from the loaded model."""

    output: str
    appending: bool
    index: Any = None
    model: str = "minilm"
    dtype: str = "float16"
    pruner: Any = None
    importance: str | None = None
    kind: str | None = None  # what the encoder reads: "text", "image" or None (unknown before it loads)
    signal: str | None = None  # the signal a new index records with its pruner
    created: bool = False  # this build created the index (removed again when nothing was committed)
    overwrite: bool = False  # the build replaces output (when it exists)
    replaces: bool = False  # created with overwrite beside an existing index
    committed: int = 0
    done: set[str] = field(default_factory=set)
    recorded_skips: dict[str, str] = field(default_factory=dict)


# long: one parameter per build option, and the documented API's docstring
def build(
    inputs: Sequence[str],
    output: str,
    *,
    model: str | None = "minilm",
    encoder=None,
    pruner=None,
    dtype: str | None = "float16",
    id_root: str | None = None,
    upsert: bool = False,
    strict: bool = False,
    retry_skipped: bool = False,
    commit_pages: int = 32,
    commit_seconds: float = 30.0,
    dpi: int = 144,
    batch_size: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    on_event: Callable[[str, dict], None] | None = None,
    signals: bool = False,
    importance: str | None = None,
    device: str | None = None,
    quantize: str | None = None,
    rerank: bool = True,
    store_text: bool = False,
) -> BuildReport:
    """Build (or extend) the index ``output`` from PDFs, images, text files and folders.

    Parameters
    ----------
    inputs : files and folders (folders recursively: .pdf, images, .txt/.md)
    output : the index file; extended when it exists (unless ``overwrite``)
    model : encoder name (``"minilm"``), local path or hub id; ignored when ``encoder`` is given.
        None: the existing index's encoder, else ``"minilm"``
    encoder : an already loaded :class:`~colprune.encoders.Encoder` (its ``name`` is recorded)
    pruner : a :class:`~colprune.pruning.Pruner`, registry name or config; default: the
        existing index's pruner, else none (a full index)
    dtype : the vector codec of a new index (None: the existing index's, else float16)
    id_root : page ids are paths relative to it (see the module docstring)
    upsert : replace pages whose file changed (sha256) since they were indexed
    strict : stop at the first unreadable file or page instead of skipping it
    retry_skipped : encode again pages the index recorded as skipped
    commit_pages, commit_seconds : commit after this many pages or seconds, whichever first
        (checked after every encoder call)
    dpi : PDF rendering resolution for visual encoders
    batch_size : at most this many pages per encoder call (default: a text encoder's token budget,
        up to 64 pages; 4 images; see :mod:`~colprune.pipeline.batching`)
    progress : show a progress bar (stderr), moved after every encoder call by its pages
    overwrite : replace ``output`` instead of extending it
    on_event : ``callback(kind, info)``; see the module docstring
    signals : also store every importance signal the encoder computes (a full index for studies)
    importance : the signal pages are pruned by (``cls``/``eos``, ``indegree``, ``indegree_mid``,
        ``norm``); default: the index's recorded signal when appending, else
        :data:`DEFAULT_IMPORTANCE`. Recorded with the pruner (``"signal"``) in a new index.
    device : passed to :func:`~colprune.encoders.load_encoder`
    quantize : ``"int8"``: dynamic int8 quantisation of a text encoder's Linear layers (CPU;
        about 1.5x faster builds, see the README for its retrieval change)
    rerank : for a new ``"binary"`` index: also keep the float16 rerank copy; ``False`` with an
        existing index refuses one that holds the copy
    store_text : also store each page's text in its metadata (``text``, at most
        :data:`~colprune.pipeline.TEXT_LIMIT` characters): what a text encoder read, a PDF
        page's text layer for an image encoder

    Returns
    -------
    BuildReport

    Raises
    ------
    LockedError
        ``output`` is being written by another process (checked first, before any page is read).
    InvalidInputError
        No page of the inputs can be indexed (raised before the model loads, with each file's reason).
    """
    t0 = time.perf_counter()
    report = BuildReport(output=os.fspath(output))
    emit = on_event or (lambda kind, info: None)
    if commit_pages < 1:
        raise InvalidInputError(f"commit_pages must be at least 1, got {commit_pages}")
    target = _open_target(report.output, overwrite=overwrite, model=model, encoder=encoder, pruner=pruner, dtype=dtype,
                          importance=importance, rerank=rerank, signals=signals)
    try:
        jobs = list_pages(inputs, id_root=id_root, strict=strict, skipped=report.skipped)
        report.pages_total = len(jobs)
        todo, changed = _plan(target, jobs, report, upsert=upsert, retry_skipped=retry_skipped)
        todo = readable_pages(todo, encoder.input_kind if encoder is not None else target.kind, strict=strict,
                              skipped=report.skipped)
        if not todo and not report.already_present:
            raise InvalidInputError(why_nothing(report.skipped))
        for page_id, reason in report.skipped.items():
            if page_id not in target.recorded_skips:
                emit("skipped", {"id": page_id, "reason": reason})
        emit("pages", {"total": len(jobs), "todo": len(todo), "held": len(target.index) if target.appending else 0,
                       "model": encoder.name if encoder is not None else target.model})
        if todo:
            encoder = encoder or _load(target, emit, report, device=device, quantize=quantize)
            _check_loaded(target, encoder)
            if retry_skipped and target.recorded_skips:
                target.index.clear_skipped([j.id for j in todo if j.id in target.recorded_skips])
            _encode_pages(target, todo, changed, encoder, report, emit, strict=strict, retry_skipped=retry_skipped,
                          commit_pages=commit_pages, commit_seconds=commit_seconds, dpi=dpi, batch_size=batch_size,
                          progress=progress, signals=signals, rerank=rerank, store_text=store_text, t0=t0)
        if target.index is not None and not (target.created and not target.committed):
            report.info = storage_report(target.index)
    finally:
        _close(target)
    report.seconds = time.perf_counter() - t0
    emit("done", report.to_dict())
    return report


def _locked(output: str, e: LockedError) -> LockedError:
    """The store's LockedError in the build's words, naming the other writer's pid when the lock records it."""
    who = f" ({e.holder})" if e.holder else ""
    return LockedError(f"{output} is being written by another process{who}: one writer at a time; wait for it to "
                       "finish (or stop it), or build into another -o", holder=e.holder)


def _open_target(output: str, *, overwrite: bool, model: str | None, encoder: Any, pruner: Any, dtype: str | None,
                 importance: str | None, rerank: bool, signals: bool) -> _Target:
    """Take the writer lock on ``output`` before any page is read or model loads: open an existing
    index (checking the build's settings on it), or create the new one when its settings are known."""
    from ..pruning import make_pruner

    pr = None if pruner is None else make_pruner(pruner)
    target = _Target(output, appending=os.path.exists(output) and not overwrite, overwrite=overwrite)
    if target.appending:
        _open_existing(target, model=model, encoder=encoder, pruner=pr, dtype=dtype, importance=importance,
                       rerank=rerank)
        return target
    target.model = encoder.name if encoder is not None else (model or "minilm")
    target.dtype = dtype or "float16"
    if not rerank and target.dtype != "binary":
        raise UsageError(f"--no-rerank (rerank=False) applies to binary indexes; a new {output} would hold "
                         f"{target.dtype} vectors (add --dtype binary)")
    target.pruner = pr or make_pruner(None)
    target.importance = importance if encoder is not None or importance is not None else DEFAULT_IMPORTANCE
    target.kind = encoder.input_kind if encoder is not None else model_kind(target.model)
    if encoder is not None:
        target.signal = getattr(encoder, "importance", None)
    elif target.importance is not None:  # load_encoder names the global-token signal "eos" for image encoders
        target.signal = same_signal(target.importance) if target.kind == "image" else target.importance
    dim = encoder.dim if encoder is not None else model_dim(target.model)
    names = _signal_names(encoder, target.kind) if signals else ()
    if dim and names is not None:
        _create(target, int(dim), names, rerank=rerank)
    return target


def _signal_names(encoder: Any, kind: str | None) -> tuple[str, ...] | None:
    """The signals a ``signals=True`` index stores: every one the encoder gives; None if unknown before it runs."""
    from ..encoders import TextTokenEncoder, VisualEncoder

    if encoder is None:
        return kind_signals(kind)
    if isinstance(encoder, (TextTokenEncoder, VisualEncoder)):
        return kind_signals(encoder.input_kind)
    return None


def _create(target: _Target, dim: int, names: Sequence[str], *, rerank: bool) -> Any:
    """Create the new index (taking its writer lock); ``target.index`` from now on."""
    from ..index import Index

    overwrite = target.overwrite
    target.replaces = overwrite and os.path.lexists(target.output)
    try:
        target.index = Index.create(target.output, dim, target.dtype, encoder=target.model, overwrite=overwrite,
                                    signals=sorted(names), merged=target.pruner.merges, rerank=rerank,
                                    pruner=target.pruner, signal=target.signal)
    except LockedError as e:
        raise _locked(target.output, e) from None
    except FileExistsError:
        if not overwrite and os.path.exists(target.output):  # another build created it a moment ago
            Index.open(target.output, mode="a").close()  # its lock: LockedError while it writes
        raise
    target.created = True
    return target.index


def _open_existing(target: _Target, *, model: str | None, encoder: Any, pruner: Any, dtype: str | None,
                   importance: str | None, rerank: bool) -> None:
    """Open an existing ``output`` once, for writing, and check the build's settings on it."""
    from ..index import Index
    from ..pruning import make_pruner

    output = target.output
    try:
        target.index = ix = Index.open(output, mode="a")
    except LockedError as e:
        raise _locked(output, e) from None
    chosen = importance if encoder is None else getattr(encoder, "importance", None)
    try:
        name = encoder.name if encoder is not None else model
        dim = encoder.dim if encoder is not None else (model_dim(model) if model else None)
        held = check_settings(ix, dtype=dtype, pruner=pruner, encoder=name, dim=dim, rerank=None if rerank else False,
                              shown=output)
        if held["encoder"] is None:
            raise SettingsMismatchError(f"{output} records no encoder (built from embedding files): "
                                        "add pages to it as embedding files, or build a new index from pages")
        target.model, target.dtype = name or held["encoder"], held["codec"]
        target.kind = encoder.input_kind if encoder is not None else model_kind(target.model)
        stored = held["pruner"]
        target.pruner = pruner or make_pruner({k: v for k, v in stored.items() if k in ("name", "params")} if stored else None)
        # the signal the pages are pruned by: the index's when it records one (older files: the encoder's default)
        held_signal = (stored or {}).get("signal")
        check_signal(output, held_signal, chosen)
        target.importance = importance if encoder is not None or importance is not None else held_signal
        target.done = set(ix.ids)
        target.recorded_skips = dict(ix.skipped)
    except BaseException:
        ix.close()
        target.index = None
        raise


def _check_loaded(target: _Target, encoder: Any) -> None:
    """The loaded model's own dim on the index already open; a new, still empty index whose dim or
    signal (read from the model's config before it loaded) the model does not give is made again."""
    ix = target.index
    if ix is None:
        return
    signal = getattr(encoder, "importance", None)
    if target.created and not target.committed:
        if ix.dim != encoder.dim or same_signal(signal or "") != same_signal(target.signal or ""):
            names, rerank = ix.signal_names, ix.has_rerank or ix.codec != "binary"
            _close(target)
            target.created, target.signal = False, signal
            _create(target, int(encoder.dim), names, rerank=rerank)
        return
    check_settings(ix, dim=encoder.dim, shown=target.output)


def _close(target: _Target) -> None:
    """Close the index; one this build created and committed nothing to is removed (an overwritten one stays)."""
    ix, target.index = target.index, None
    if ix is None:
        return
    if not (target.created and not target.committed):
        ix.close()
    elif target.replaces:
        ix.abandon()  # the partial copy goes; the index it was to replace stays as it was
    else:
        shutil.rmtree(ix.path, ignore_errors=True)  # still holding its lock: no other writer has seen it
        ix.close()


def _plan(target: _Target, jobs: list[PageJob], report: BuildReport, *, upsert: bool,
          retry_skipped: bool) -> tuple[list[PageJob], set[str]]:
    """The pages to encode, and the ids among them that replace changed pages; counts the rest in ``report``."""
    changed: set[str] = set()
    if target.appending:
        by_file: dict[str, str | None] = {}
        for job in jobs:
            if job.id not in target.done:
                continue
            if job.path not in by_file:  # one page per file tells whether the file changed
                by_file[job.path] = (target.index.get(job.id).metadata or {}).get("sha256")
            old = by_file[job.path]
            if old is not None and old != job.sha256:
                changed.add(job.id)
    todo: list[PageJob] = []
    for job in jobs:
        if job.id in changed:
            if upsert:
                todo.append(job)
            else:
                report.changed_not_replaced.append(job.id)
                report.already_present += 1
        elif job.id in target.done:
            report.already_present += 1
        elif job.id in target.recorded_skips and not retry_skipped:
            report.skipped[job.id] = target.recorded_skips[job.id]
        else:
            todo.append(job)
    return todo, (changed if upsert else set())


def _load(target: _Target, emit: Callable[[str, dict], None], report: BuildReport, *, device: str | None,
          quantize: str | None):
    """The encoder of ``target.model``; the ``"loading"`` event comes first (the CLI checks the model there).
    The load's seconds go to ``report.load_seconds`` (its pages/s counts the encoding only)."""
    from ..encoders import load_encoder

    emit("loading", {"model": target.model})
    kwargs = {k: v for k, v in (("importance", target.importance), ("device", device), ("quantize", quantize))
              if v is not None}
    t = time.perf_counter()
    encoder = load_encoder(target.model, **kwargs)
    report.load_seconds = time.perf_counter() - t
    return encoder


def _writer(target: _Target, encoder: Any, emit: Callable[[str, dict], None], *, commit_pages: int,
            commit_seconds: float, signals: bool, rerank: bool) -> PageWriter:
    """The build's one :class:`PageWriter`: on the index open from the start, or creating it at the first
    commit when its settings (a caller's encoder's signals) are known only from the first page."""
    signal = getattr(encoder, "importance", None)

    def create(first_signals: dict | None):
        target.signal = signal
        return _create(target, encoder.dim, sorted(first_signals or {}) if signals else (), rerank=rerank)

    return PageWriter(target.index, target.pruner, signal=signal, create=None if target.index is not None else create,
                      commit_pages=commit_pages, commit_seconds=commit_seconds,
                      on_commit=lambda pages, total: emit("committed", {"pages": pages, "indexed": total}))


# long: the read-encode-commit loop with its progress bar, skips and Ctrl-C handling in one place
def _encode_pages(target: _Target, todo: list[PageJob], changed: set[str], encoder: Any, report: BuildReport,
                  emit: Callable[[str, dict], None], *, strict: bool, retry_skipped: bool, commit_pages: int,
                  commit_seconds: float, dpi: int, batch_size: int | None, progress: bool, signals: bool,
                  rerank: bool, store_text: bool, t0: float) -> None:
    """Read ``todo`` ahead of the encoder, encode it in micro-batches and commit through one :class:`PageWriter`.

    After every encoder call the bar moves by its pages and the writer commits when ``commit_pages``
    pages or ``commit_seconds`` seconds are due; a Ctrl-C commits what was encoded, then re-raises.
    """
    from tqdm.auto import tqdm

    from ..encoders import Encoder, PageError

    writer = _writer(target, encoder, emit, commit_pages=commit_pages, commit_seconds=commit_seconds, signals=signals,
                     rerank=rerank)
    total = report.pages_total
    bar = tqdm(total=total, initial=total - len(todo), desc="build", unit="page", disable=not progress)
    batches = MicroBatches(encoder, batch_size)
    signal = getattr(encoder, "importance", None)
    # compute only the attention the stored signals need (all of them for a study's full index);
    # a caller's own encoder object need only take (pages, batch_size=)
    kw = {"signals": None if signals or signal is None else [signal]} if isinstance(encoder, Encoder) else {}
    texts: dict[str, str] | None = {} if store_text else None
    writer.skip({k: v for k, v in report.skipped.items() if k not in target.recorded_skips or retry_skipped})

    def skip(job: PageJob, reason: str) -> None:
        if strict:
            raise PageError(f"{job.id}: {reason}")
        report.skipped[job.id] = reason
        writer.skip({job.id: reason})
        if texts is not None:
            texts.pop(job.id, None)
        emit("skipped", {"id": job.id, "reason": reason})

    def metadata(job: PageJob) -> dict:
        if texts is None:
            return job.metadata
        return page_metadata(job.id, job.path, job.page, job.kind, job.sha256, text=texts.pop(job.id, ""))

    def encode(call: list[tuple[PageJob, Any]]) -> None:
        encoded = encoder.encode_pages([c for _, c in call], batch_size=batches.forward_batch, **kw)
        ok = []
        for (job, _), enc in zip(call, encoded):
            if enc.vectors.shape[0] == 0:
                skip(job, "the encoder produced no vectors")
            else:
                ok.append((job, enc))
        for replace in (False, True):
            part = [(j, e) for j, e in ok if (j.id in changed) is replace]
            if part:
                writer.add([j.id for j, _ in part], [e.vectors for _, e in part], [e.importance for _, e in part],
                           metadata=[metadata(j) for j, _ in part], patch_mask=[e.patch_mask for _, e in part],
                           grids=[e.grid for _, e in part], signals=[e.signals for _, e in part], replace=replace)
        bar.update(len(call))
        emit("encoded", {"pages": len(call)})

    def counts() -> None:
        report.indexed, report.replaced = writer.indexed, writer.replaced
        target.committed = writer.committed
        target.index = writer.index

    try:
        for job, content, reason in prefetch(read_pages(todo, encoder.input_kind, dpi, texts),
                                             depth=2 * batches.max_pages):
            if reason is not None:
                skip(job, reason)
                bar.update(1)
                bar.set_postfix(skipped=len(report.skipped), refresh=False)
                writer.commit_if_due()
                continue
            for call in batches.add(job, content):
                encode(call)
        call = batches.take()
        if call:
            encode(call)
        writer.flush()
    except KeyboardInterrupt:
        writer.keep()  # what was encoded and not yet committed: only the call in flight is lost
        counts()
        report.interrupted = True
        report.seconds = time.perf_counter() - t0
        emit("interrupted", report.to_dict())
        raise
    finally:
        counts()
        bar.close()
