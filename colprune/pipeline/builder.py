"""``build``: files and folders → pages → encode → prune → commit, through one open of the index.

The steps, each a function below: list the pages (:func:`~colprune.pipeline.list_pages`);
open an existing index once and check the build's settings on it (:func:`_open_target`);
sort what is already there from what is to do (:func:`_plan`); load the encoder and check
its dimension on the same open index; read ahead of the encoder and commit through one
:class:`~colprune.pipeline.PageWriter` (:func:`_encode_pages`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import InvalidInputError, SettingsMismatchError, UsageError
from .pages import PageJob, list_pages, prefetch, read_pages
from .report import BuildReport, storage_report
from .settings import DEFAULT_IMPORTANCE, check_settings, check_signal, model_dim
from .writer import PageWriter

__all__ = ["build"]


@dataclass
class _Target:
    """The index a build writes: open once when it exists (None until the first commit when it does not)."""

    output: str
    appending: bool
    index: Any = None
    model: str = "minilm"
    dtype: str = "float16"
    pruner: Any = None
    importance: str | None = None
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
    dpi : PDF rendering resolution for visual encoders
    batch_size : pages per encoder call (default ``commit_pages``)
    progress : show a progress bar (stderr), one step per page
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

    Returns
    -------
    BuildReport
    """
    t0 = time.perf_counter()
    report = BuildReport(output=os.fspath(output))
    emit = on_event or (lambda kind, info: None)
    if commit_pages < 1:
        raise InvalidInputError(f"commit_pages must be at least 1, got {commit_pages}")
    jobs = list_pages(inputs, id_root=id_root, strict=strict, skipped=report.skipped)
    report.pages_total = len(jobs)
    for path, reason in report.skipped.items():
        emit("skipped", {"id": path, "reason": reason})
    target = _open_target(report.output, overwrite=overwrite, model=model, encoder=encoder, pruner=pruner, dtype=dtype,
                          importance=importance, rerank=rerank)
    try:
        todo, changed = _plan(target, jobs, report, upsert=upsert, retry_skipped=retry_skipped)
        emit("pages", {"total": len(jobs), "todo": len(todo), "held": len(target.index) if target.appending else 0,
                       "model": encoder.name if encoder is not None else target.model})
        if todo or not target.appending:
            encoder = encoder or _load(target, emit, report, device=device, quantize=quantize)
            if target.appending:  # the model's own dim, on the index already open
                check_settings(target.index, dim=encoder.dim, shown=target.output)
            if retry_skipped and target.recorded_skips:
                target.index.clear_skipped([j.id for j in todo if j.id in target.recorded_skips])
            _encode_pages(target, todo, changed, encoder, report, emit, strict=strict, retry_skipped=retry_skipped,
                          commit_pages=commit_pages, commit_seconds=commit_seconds, dpi=dpi, batch_size=batch_size,
                          progress=progress, overwrite=overwrite, signals=signals, rerank=rerank, t0=t0)
        if target.index is not None:
            report.info = storage_report(target.index)
    finally:
        if target.index is not None:
            target.index.close()
    report.seconds = time.perf_counter() - t0
    emit("done", report.to_dict())
    return report


def _open_target(output: str, *, overwrite: bool, model: str | None, encoder: Any, pruner: Any, dtype: str | None,
                 importance: str | None, rerank: bool) -> _Target:
    """Open an existing ``output`` once and check the build's settings on it, before any model loads."""
    from ..index import Index
    from ..pruning import make_pruner

    pr = None if pruner is None else make_pruner(pruner)
    target = _Target(output, appending=os.path.exists(output) and not overwrite)
    chosen = importance if encoder is None else getattr(encoder, "importance", None)
    if not target.appending:
        target.model = encoder.name if encoder is not None else (model or "minilm")
        target.dtype = dtype or "float16"
        if not rerank and target.dtype != "binary":
            raise UsageError(f"--no-rerank (rerank=False) applies to binary indexes; a new {output} would hold "
                             f"{target.dtype} vectors (add --dtype binary)")
        target.pruner = pr or make_pruner(None)
        target.importance = importance if encoder is not None or importance is not None else DEFAULT_IMPORTANCE
        return target
    target.index = ix = Index.open(output, mode="a")
    try:
        name = encoder.name if encoder is not None else model
        dim = encoder.dim if encoder is not None else (model_dim(model) if model else None)
        held = check_settings(ix, dtype=dtype, pruner=pr, encoder=name, dim=dim, rerank=None if rerank else False,
                              shown=output)
        if held["encoder"] is None:
            raise SettingsMismatchError(f"{output} records no encoder (built from embedding files): "
                                        "add pages to it as embedding files, or build a new index from pages")
        target.model, target.dtype = name or held["encoder"], held["codec"]
        stored = held["pruner"]
        target.pruner = pr or make_pruner({k: v for k, v in stored.items() if k in ("name", "params")} if stored else None)
        # the signal the pages are pruned by: the index's when it records one (older files: the encoder's default)
        held_signal = (stored or {}).get("signal")
        check_signal(output, held_signal, chosen)
        target.importance = importance if encoder is not None or importance is not None else held_signal
        target.done = set(ix.ids)
        target.recorded_skips = dict(ix.skipped)
    except BaseException:
        ix.close()
        raise
    return target


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


# long: the read-encode-commit loop with its progress bar, skips and Ctrl-C handling in one place
def _encode_pages(target: _Target, todo: list[PageJob], changed: set[str], encoder: Any, report: BuildReport,
                  emit: Callable[[str, dict], None], *, strict: bool, retry_skipped: bool, commit_pages: int,
                  commit_seconds: float, dpi: int, batch_size: int | None, progress: bool, overwrite: bool,
                  signals: bool, rerank: bool, t0: float) -> None:
    """Read ``todo`` ahead of the encoder, encode it in batches and commit through one :class:`PageWriter`."""
    from tqdm.auto import tqdm

    from ..encoders import Encoder, PageError
    from ..index import Index

    signal = getattr(encoder, "importance", None)

    def create(first_signals: dict | None):
        names = sorted(first_signals or {}) if signals else ()
        return Index.create(target.output, encoder.dim, target.dtype, encoder=target.model, overwrite=overwrite,
                            signals=names, merged=target.pruner.merges, rerank=rerank, pruner=target.pruner,
                            signal=signal)

    writer = PageWriter(target.index, target.pruner, signal=signal, create=None if target.appending else create,
                        commit_pages=commit_pages, commit_seconds=commit_seconds,
                        on_commit=lambda pages, total: emit("committed", {"pages": pages, "indexed": total}))
    total = report.pages_total
    bar = tqdm(total=total, initial=total - len(todo), desc="build", unit="page", disable=not progress)
    batch = max(1, batch_size or commit_pages)
    # compute only the attention the stored signals need (all of them for a study's full index);
    # a caller's own encoder object need only take (pages, batch_size=)
    kw = {"signals": None if signals or signal is None else [signal]} if isinstance(encoder, Encoder) else {}

    def skip(job: PageJob, reason: str) -> None:
        if strict:
            raise PageError(f"{job.id}: {reason}")
        report.skipped[job.id] = reason
        writer.skip({job.id: reason})
        emit("skipped", {"id": job.id, "reason": reason})

    def encode(chunk: list[tuple[PageJob, Any]]) -> None:
        encoded = encoder.encode_pages([c for _, c in chunk], batch_size=min(len(chunk), 64), **kw)
        ok = []
        for (job, _), enc in zip(chunk, encoded):
            if enc.vectors.shape[0] == 0:
                skip(job, "the encoder produced no vectors")
            else:
                ok.append((job, enc))
        bar.update(len(chunk))
        for replace in (False, True):
            part = [(j, e) for j, e in ok if (j.id in changed) is replace]
            if part:
                writer.add([j.id for j, _ in part], [e.vectors for _, e in part], [e.importance for _, e in part],
                           metadata=[j.metadata for j, _ in part], patch_mask=[e.patch_mask for _, e in part],
                           grids=[e.grid for _, e in part], signals=[e.signals for _, e in part], replace=replace)

    def counts() -> None:
        report.indexed, report.replaced = writer.indexed, writer.replaced
        target.index = writer.index

    try:
        chunk: list[tuple[PageJob, Any]] = []
        for job, content, reason in prefetch(read_pages(todo, encoder.input_kind, dpi), depth=2 * batch):
            if reason is not None:
                skip(job, reason)
                bar.update(1)
                bar.set_postfix(skipped=len(report.skipped), refresh=False)
                continue
            chunk.append((job, content))
            if len(chunk) >= batch or writer.overdue:
                encode(chunk)
                chunk = []
        if chunk:
            encode(chunk)
        writer.skip({k: v for k, v in report.skipped.items() if k not in target.recorded_skips or retry_skipped})
        writer.flush()
    except KeyboardInterrupt:
        writer.record_skips()
        counts()
        report.interrupted = True
        report.seconds = time.perf_counter() - t0
        emit("interrupted", report.to_dict())
        raise
    finally:
        counts()
        bar.close()
