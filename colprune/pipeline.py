"""One build pipeline: sources → pages → encode → prune → write.

The CLI (``colprune build``), the study (PDF-folder datasets) and a distributed build all call
:func:`build`, so the loop that turns files into index pages exists once.

Page ids
--------
A page's id is its file's path **relative to** ``id_root``, with ``/`` separators, plus
``#N`` (1-based) for PDF pages. By default ``id_root`` is, for a folder given as input, that
folder itself, and for a file given as input, the folder that holds it. So ``small/``,
``./small`` and ``/abs/small`` all give the ids ``file.pdf#3`` and ``sub/other.pdf#1``, and
``small/file.pdf`` gives ``file.pdf#3``: ids do not depend on the working directory. Pass
``id_root`` (CLI ``--id-root``) to keep a common prefix, e.g. ``id_root="."`` gives
``small/file.pdf#3``. Two inputs that map to the same id are refused before anything is
encoded.

What a build does
-----------------
1. Lists every page of the inputs (PDF page counts, images, text files). An unreadable,
   encrypted or corrupt file is *skipped* with its reason (``strict=True``: raises).
2. Before any model loads, checks the settings against an existing ``output``: encoder,
   codec, pruner and dimension must match what the index holds, else
   :class:`~colprune.errors.InvalidInputError` says what it holds and what to run instead.
3. A reader thread extracts text (text encoders) or renders images (visual encoders) one file
   at a time, ahead of the encoder, through a bounded queue (pdfium calls release the GIL,
   so reading overlaps the model's forward pass).
4. Pages the encoder cannot embed (no text layer for a text encoder, an empty image) are
   skipped with their reason; the build goes on. The progress bar counts them.
5. Encoded pages are pruned and committed every ``commit_pages`` pages or ``commit_seconds``
   seconds, whichever comes first. Ctrl-C keeps everything committed so far: ``on_event``
   receives ``("interrupted", report_dict)`` and the KeyboardInterrupt is re-raised.

Resuming: pages already in the index are not encoded again. Pages the index recorded as
skipped are tried again only with ``retry_skipped=True``. Each page records its file's
``sha256``; a page whose file changed since it was indexed is replaced with ``upsert=True``
(needs ``Index.upsert``) and otherwise listed in ``BuildReport.changed_not_replaced``.

Events passed to ``on_event(kind, info)``: ``"pages"`` (``total``, ``todo``), ``"skipped"``
(``id``, ``reason``), ``"committed"`` (``pages``, ``indexed``), ``"interrupted"`` and
``"done"`` (the report as a dict).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .errors import InvalidInputError

__all__ = ["build", "BuildReport", "PageJob", "list_pages", "page_id", "file_sha256", "NO_TEXT", "DEFAULT_IMPORTANCE"]

#: The importance signal a new index is pruned by unless told otherwise: the attention each
#: patch/token *receives* in the last layer (mean over heads and over the other tokens). With
#: DocPruner's mean + k*std rule it is the recommended method (docs/study-financebench.md): on real
#: filings it holds at 10% of the vectors where the global token's attention ("cls"/"eos") does not.
DEFAULT_IMPORTANCE = "indegree"

#: Reason recorded for a PDF page without a text layer when the encoder reads text.
NO_TEXT = "no text layer (a blank, scanned or image-only page); the text encoder reads text only"


@dataclass
class BuildReport:
    """What a build did.

    ``skipped`` maps a page id (or, for a file that could not be opened, the file's id: its
    path relative to the id root, without ``#N``) to the reason; ``changed_not_replaced`` lists ids whose file changed (sha256) since they were
    indexed but were kept because ``upsert`` was off.
    """

    output: str = ""
    indexed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    already_present: int = 0
    replaced: int = 0
    changed_not_replaced: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    pages_total: int = 0

    @property
    def pages_per_second(self) -> float:
        return (self.indexed + self.replaced) / self.seconds if self.seconds > 0 else 0.0

    def warning_line(self) -> str | None:
        """One line counting the skipped pages by reason, or None when nothing was skipped."""
        if not self.skipped:
            return None
        counts: dict[str, int] = {}
        for reason in self.skipped.values():
            key = reason.split(" (")[0].split(";")[0].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"warning: skipped {len(self.skipped)} pages or files ({parts})"

    def summary(self) -> str:
        """The closing line: what was indexed, skipped, already there, replaced."""
        bits = [f"indexed {self.indexed} pages in {self.seconds:.1f} s ({self.pages_per_second:.2f} pages/s)"]
        if self.skipped:
            bits.append(f"skipped {len(self.skipped)}")
        if self.already_present:
            bits.append(f"{self.already_present} already in the index")
        if self.replaced:
            bits.append(f"replaced {self.replaced} changed")
        if self.changed_not_replaced:
            bits.append(f"{len(self.changed_not_replaced)} changed on disk but kept (upsert off)")
        if self.interrupted:
            bits.append("INTERRUPTED (everything committed so far is kept; run again to resume)")
        return f"{self.output}: " + ", ".join(bits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pages_per_second": self.pages_per_second}


@dataclass(frozen=True)
class PageJob:
    """One page to build: its id, file, 1-based page number, kind and the file's sha256."""

    id: str
    path: str
    page: int
    kind: str  # "pdf", "image" or "text"
    sha256: str

    @property
    def metadata(self) -> dict:
        return {"source": self.path, "page": self.page, "kind": self.kind, "sha256": self.sha256}


# -- listing ---------------------------------------------------------------------------------

def page_id(path: str, root: str, page: int | None) -> str:
    """``relpath(path, root)`` with ``/`` separators, plus ``#page`` for PDF pages."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
    return f"{rel}#{page}" if page is not None else rel


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(inputs: Sequence[str], id_root: str | None) -> list[tuple[str, str]]:
    """``[(file, root), ...]``: every supported file of the inputs, folders recursively, sorted."""
    from .encoders.sources import IMAGE_EXTS, PDF_EXTS, TEXT_EXTS, PageError

    exts = PDF_EXTS | IMAGE_EXTS | TEXT_EXTS
    out: list[tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            root = id_root if id_root is not None else item
            for folder, dirs, names in os.walk(item):
                dirs.sort()
                for name in sorted(names):
                    if os.path.splitext(name)[1].lower() in exts:
                        out.append((os.path.join(folder, name), root))
        elif os.path.exists(item):
            out.append((item, id_root if id_root is not None else (os.path.dirname(item) or ".")))
        else:
            raise PageError(f"{item}: no such file or folder")
    return out


def list_pages(
    inputs: Sequence[str], *, id_root: str | None = None, strict: bool = False,
    skipped: dict[str, str] | None = None,
) -> list[PageJob]:
    """Every page of the inputs as :class:`PageJob` records, in file order.

    A file that cannot be opened (unreadable, encrypted, corrupt, unsupported) raises
    :class:`~colprune.encoders.PageError` with ``strict``, else is recorded in ``skipped``
    (the file's id → reason) and left out.
    """
    from .encoders.sources import IMAGE_EXTS, MAX_PIXELS, PDF_EXTS, PageError, _open_image

    skipped = {} if skipped is None else skipped
    jobs: list[PageJob] = []
    seen: dict[str, str] = {}
    for path, root in _files(inputs, id_root):
        ext = os.path.splitext(path)[1].lower()
        try:
            try:
                digest = file_sha256(path)
            except OSError as e:
                raise PageError(f"{path}: cannot read ({e.strerror or e})") from None
            if ext in PDF_EXTS:
                n = _pdf_page_count(path)
                found = [PageJob(page_id(path, root, i), path, i, "pdf", digest) for i in range(1, n + 1)]
            elif ext in IMAGE_EXTS:
                _open_image(path, MAX_PIXELS).close()
                found = [PageJob(page_id(path, root, None), path, 1, "image", digest)]
            else:
                found = [PageJob(page_id(path, root, None), path, 1, "text", digest)]
        except PageError as e:
            if strict:
                raise
            skipped[page_id(path, root, None)] = _reason(e, path)
            continue
        for job in found:
            if job.id in seen:
                raise InvalidInputError(
                    f"{seen[job.id]} and {job.path} both give the page id {job.id!r}; "
                    "pass id_root (CLI --id-root) to a folder above both inputs")
            seen[job.id] = job.path
        jobs.extend(found)
    return jobs


def _reason(e: Exception, path: str) -> str:
    msg = str(e)
    return msg[len(path) + 2:] if msg.startswith(f"{path}: ") else msg


def _pdf_page_count(path: str) -> int:
    import pypdfium2 as pdfium

    from .encoders.sources import PageError

    try:
        doc = pdfium.PdfDocument(path)
    except Exception as e:  # pdfium's own error types; an encrypted file says "Incorrect password"
        text = str(e)
        if "password" in text.lower():
            raise PageError(f"{path}: encrypted PDF (needs a password): {text}") from None
        raise PageError(f"{path}: not a readable PDF ({text})") from None
    try:
        n = len(doc)
    finally:
        doc.close()
    if n == 0:
        raise PageError(f"{path}: not a readable PDF (it has no pages)")
    return n


# -- reading (a thread ahead of the encoder) --------------------------------------------------

_END = object()


def _read_pages(jobs: Sequence[PageJob], kind: str, dpi: int) -> Iterator[tuple[PageJob, Any, str | None]]:
    """``(job, content, None)`` or ``(job, None, reason)`` per page, opening each file once."""
    import pypdfium2 as pdfium

    from .encoders.sources import MAX_PIXELS, PageError, _open_image

    i = 0
    while i < len(jobs):
        j = i
        while j < len(jobs) and jobs[j].path == jobs[i].path:
            j += 1
        group, i = jobs[i:j], j
        first = group[0]
        if first.kind == "pdf":
            try:
                doc = pdfium.PdfDocument(first.path)
            except Exception as e:
                for job in group:
                    yield job, None, f"not a readable PDF ({e})"
                continue
            try:
                for job in group:
                    try:
                        page = doc[job.page - 1]
                        if kind == "text":
                            tp = page.get_textpage()
                            content = tp.get_text_range()
                            tp.close()
                            reason = None if content.strip() else NO_TEXT
                        else:
                            w, h = page.get_size()
                            if (w * dpi / 72) * (h * dpi / 72) > MAX_PIXELS:
                                content, reason = None, f"{w:.0f}x{h:.0f} pt at {dpi} dpi exceeds {MAX_PIXELS:,} pixels"
                            else:
                                content = page.render(scale=dpi / 72).to_pil().convert("RGB")
                                reason = None if min(content.size) > 0 else "empty image"
                        page.close()
                    except Exception as e:  # a damaged page: skip it, keep the document
                        content, reason = None, f"cannot read the page ({type(e).__name__}: {e})"
                    yield job, (content if reason is None else None), reason
            finally:
                doc.close()
        elif first.kind == "image":
            job = first
            if kind == "text":
                yield job, None, "an image has no text; the text encoder reads text only"
                continue
            try:
                img = _open_image(job.path, MAX_PIXELS).convert("RGB")
                yield job, img, (None if min(img.size) > 0 else "empty image")
            except PageError as e:
                yield job, None, _reason(e, job.path)
        else:
            job = first
            if kind != "text":
                yield job, None, "a text file has no image; the visual encoder reads images"
                continue
            try:
                with open(job.path, encoding="utf-8", errors="replace") as f:
                    content = f.read()
                yield job, content, (None if content.strip() else "empty text file")
            except OSError as e:
                yield job, None, f"cannot read ({e})"


def _prefetch(it: Iterator, depth: int) -> Iterator:
    """Run ``it`` in a daemon thread, ``depth`` items ahead; exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, name="colprune-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# -- settings against an existing index ------------------------------------------------------

def _check_existing(output: str, model: str, pruner, dtype: str, dim: int | None, merged_ok: bool) -> dict:
    """What an existing index holds; raises when the build's settings do not fit it."""
    from .index import Index

    with Index.open(output) as ix:
        held = {"encoder": ix.encoder, "codec": ix.codec, "dim": ix.dim, "pruner": ix.pruner_config,
                "signals": list(ix.signal_names), "merged": ix.merged}
    problems = []
    if held["encoder"] and held["encoder"] != model:
        problems.append(f"encoder {held['encoder']!r} (this build: {model!r}; run with --model {held['encoder']})")
    if dtype is not None and held["codec"] != dtype:
        problems.append(f"codec {held['codec']} (this build: {dtype}; run with --dtype {held['codec']})")
    if dim is not None and held["dim"] != dim:
        problems.append(f"dimension {held['dim']} (the model {model!r} gives {dim})")
    if pruner is not None and held["pruner"] is not None:
        stored = {k: v for k, v in held["pruner"].items() if k in ("name", "params")}
        if stored != pruner.config():
            problems.append(f"pruner {stored} (this build: {pruner.config()}; run with --pruner {stored['name']} "
                            f"and its parameters {stored.get('params', {})})")
    if pruner is not None and pruner.merges and not held["merged"]:
        problems.append(f"no merged vectors (pruner {pruner.name!r} merges; build a new index)")
    if problems:
        raise InvalidInputError(
            f"{output} already holds an index with " + "; ".join(problems)
            + f". Add to it with its own settings, or write a new index (another -o, or --overwrite to replace {output})")
    return held


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        import ctypes
        import ctypes.util

        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Hand the heap's freed pages back to the OS (glibc only; elsewhere nothing).

    The encoder's attention maps are large, short-lived buffers; once glibc's adaptive mmap
    threshold has risen above their size they come from the heap, and without a trim a long
    build's resident memory creeps up by hundreds of MB of memory that is already free.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _same_signal(name: str) -> str:
    """One name for the global-token signal ("cls" for text encoders, "eos" for image encoders)."""
    return "eos" if name == "cls" else name


def _check_signal(output: str, held: str | None, chosen: str | None) -> None:
    """Refuse to add pages pruned by ``chosen`` to ``output``, whose pages were pruned by ``held``."""
    if held is not None and chosen is not None and _same_signal(chosen) != _same_signal(held):
        raise InvalidInputError(f"{output} already holds pages pruned by the {held!r} signal (this build: "
                                f"{chosen!r}); leave out the importance option, or write a new index")


def _model_dim(model: str) -> int | None:
    """The output dimension from the model's config, without loading weights (None if unknown)."""
    import json

    try:
        if model == "minilm":
            from .encoders import minilm_path

            path = minilm_path()
        else:
            path = model
        cfg_path = os.path.join(path, "config.json")
        if not os.path.exists(cfg_path):
            return None
        with open(cfg_path) as f:
            cfg = json.load(f)
        return int(cfg.get("embedding_dim") or cfg["hidden_size"])
    except Exception:  # noqa: BLE001 - only a pre-check; the loaded model is checked again
        return None


# -- the build -------------------------------------------------------------------------------

def build(
    inputs: Sequence[str],
    output: str,
    *,
    model: str = "minilm",
    encoder=None,
    pruner=None,
    dtype: str = "float16",
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
) -> BuildReport:
    """Build (or extend) the index ``output`` from PDFs, images, text files and folders.

    Parameters
    ----------
    inputs : files and folders (folders recursively: .pdf, images, .txt/.md)
    output : the index file; extended when it exists (unless ``overwrite``)
    model : encoder name (``"minilm"``), local path or hub id; ignored when ``encoder`` is given
    encoder : an already loaded :class:`~colprune.encoders.Encoder` (its ``name`` is recorded)
    pruner : a :class:`~colprune.pruning.Pruner`, registry name or config; default: the
        existing index's pruner, else none (a full index)
    dtype : the vector codec of a new index
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

    Returns
    -------
    BuildReport
    """
    from .encoders import PageError, load_encoder
    from .index import Index
    from .pruning import make_pruner

    t0 = time.perf_counter()
    report = BuildReport(output=os.fspath(output))
    emit = on_event or (lambda kind, info: None)
    if commit_pages < 1:
        raise InvalidInputError(f"commit_pages must be at least 1, got {commit_pages}")
    jobs = list_pages(inputs, id_root=id_root, strict=strict, skipped=report.skipped)
    report.pages_total = len(jobs)
    for path, reason in report.skipped.items():
        emit("skipped", {"id": path, "reason": reason})

    model_name = encoder.name if encoder is not None else model
    appending = os.path.exists(output) and not overwrite
    pr = None if pruner is None else make_pruner(pruner)
    held: dict = {}
    if appending:
        held = _check_existing(output, model_name, pr, dtype, encoder.dim if encoder is not None else _model_dim(model),
                               True)
        if pr is None and held["pruner"] is not None:
            pr = make_pruner({k: v for k, v in held["pruner"].items() if k in ("name", "params")})
    pr = pr or make_pruner(None)
    # the signal the pages are pruned by: the index's when it records one (older files: the encoder's default)
    held_signal = (held.get("pruner") or {}).get("signal") if appending else None
    _check_signal(output, held_signal, importance if encoder is None else getattr(encoder, "importance", None))
    if importance is None and encoder is None:  # also for a full index: what it stores is what `prune` reads
        importance = held_signal if appending else DEFAULT_IMPORTANCE

    # what is already there
    done: set[str] = set()
    recorded_skips: dict[str, str] = {}
    changed: list[PageJob] = []
    if appending:
        with Index.open(output) as ix:
            done = set(ix.ids)
            recorded_skips = dict(getattr(ix, "skipped", {}) or {})
            by_file: dict[str, str | None] = {}
            for job in jobs:
                if job.id not in done:
                    continue
                if job.path not in by_file:  # one page per file tells whether the file changed
                    by_file[job.path] = (ix.get(job.id).metadata or {}).get("sha256")
                old = by_file[job.path]
                if old is not None and old != job.sha256:
                    changed.append(job)
    changed_ids = {j.id for j in changed}
    todo: list[PageJob] = []
    for job in jobs:
        if job.id in changed_ids:
            if upsert:
                todo.append(job)
            else:
                report.changed_not_replaced.append(job.id)
                report.already_present += 1
        elif job.id in done:
            report.already_present += 1
        elif job.id in recorded_skips and not retry_skipped:
            report.skipped[job.id] = recorded_skips[job.id]
        else:
            todo.append(job)
    emit("pages", {"total": len(jobs), "todo": len(todo)})

    if not todo and appending:
        report.seconds = time.perf_counter() - t0
        emit("done", report.to_dict())
        return report

    if encoder is None:
        kwargs = {k: v for k, v in (("importance", importance), ("device", device), ("quantize", quantize))
                  if v is not None}
        encoder = load_encoder(model, **kwargs)
    kind = encoder.input_kind
    if appending:
        _check_existing(output, model_name, pr, dtype, encoder.dim, True)

    # compute only the attention the stored signals need (all of them for a study's full index)
    enc_kw: dict = {}
    if "signals" in inspect.signature(encoder.encode_pages).parameters:
        enc_kw["signals"] = None if signals else [getattr(encoder, "importance", "cls")]

    from tqdm.auto import tqdm

    index = None
    pending: list = []  # (job, EncodedPage)
    last_commit = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="build", unit="page", disable=not progress)
    batch = max(1, batch_size or commit_pages)

    def open_index(first_encoded):
        nonlocal index
        if index is not None:
            return index
        if appending:
            index = Index.open(output, mode="a")
        else:
            names = sorted(first_encoded.signals) if signals else ()
            index = Index.create(output, encoder.dim, dtype, encoder=model_name, overwrite=overwrite,
                                 signals=names, merged=pr.merges)
        if retry_skipped and hasattr(index, "clear_skipped") and recorded_skips:
            index.clear_skipped([j.id for j in todo if j.id in recorded_skips])
        return index

    def commit() -> None:
        nonlocal pending, last_commit
        if not pending:
            return
        ix = open_index(pending[0][1])
        new = [(j, e) for j, e in pending if j.id not in changed_ids]
        repl = [(j, e) for j, e in pending if j.id in changed_ids]
        for group, replace in ((new, False), (repl, True)):
            if not group:
                continue
            args = ([j.id for j, _ in group], [e.vectors for _, e in group], [e.importance for _, e in group])
            kw = dict(pruner=pr, metadata=[j.metadata for j, _ in group], patch_mask=[e.patch_mask for _, e in group],
                      grids=[e.grid for _, e in group], commit_every=len(group))
            if ix.signal_names:
                kw["signals"] = [{k: e.signals[k] for k in ix.signal_names} for _, e in group]
            if replace:
                if not hasattr(ix, "upsert"):
                    raise InvalidInputError(
                        f"{output}: replacing changed pages needs Index.upsert, which this index format lacks")
                ix.upsert(*args, **kw)
                report.replaced += len(group)
            else:
                ix.add(*args, **kw)
                report.indexed += len(group)
            signal = getattr(encoder, "importance", None)
            cfg = ix.pruner_config or {}
            if signal and "signal" not in cfg:  # recorded once, with the first pages
                ix._set_pruner({**cfg, "signal": signal})
        emit("committed", {"pages": len(pending), "indexed": report.indexed + report.replaced})
        pending = []
        _release_freed_memory()
        last_commit = time.perf_counter()

    def skip(job: PageJob, reason: str) -> None:
        if strict:
            raise PageError(f"{job.id}: {reason}")
        report.skipped[job.id] = reason
        if index is not None and hasattr(index, "record_skipped"):
            index.record_skipped({job.id: reason})
        emit("skipped", {"id": job.id, "reason": reason})

    try:
        chunk: list[tuple[PageJob, Any]] = []
        stream = _prefetch(_read_pages(todo, kind, dpi), depth=2 * batch)

        def flush_chunk() -> None:
            nonlocal chunk
            if not chunk:
                return
            encoded = encoder.encode_pages([c for _, c in chunk], batch_size=min(len(chunk), 64), **enc_kw)
            for (job, _), enc in zip(chunk, encoded):
                if enc.vectors.shape[0] == 0:
                    skip(job, "the encoder produced no vectors")
                else:
                    pending.append((job, enc))
            bar.update(len(chunk))
            chunk = []
            if len(pending) >= commit_pages or time.perf_counter() - last_commit >= commit_seconds:
                commit()

        for job, content, reason in stream:
            if reason is not None:
                skip(job, reason)
                bar.update(1)
                bar.set_postfix(skipped=len(report.skipped), refresh=False)
                continue
            chunk.append((job, content))
            if len(chunk) >= batch or time.perf_counter() - last_commit >= commit_seconds:
                flush_chunk()
        flush_chunk()
        commit()
        if index is None and not appending and report.skipped and not report.indexed:
            pass  # nothing could be embedded: no index file is written
        if index is not None and hasattr(index, "record_skipped"):
            page_skips = {k: v for k, v in report.skipped.items() if k not in recorded_skips or retry_skipped}
            if page_skips:
                index.record_skipped(page_skips)
    except KeyboardInterrupt:
        report.interrupted = True
        report.seconds = time.perf_counter() - t0
        bar.close()
        if index is not None:
            index.close()
        emit("interrupted", report.to_dict())
        raise
    except BaseException:
        bar.close()
        if index is not None:
            index.close()
        raise
    bar.close()
    if index is not None:
        index.close()
    report.seconds = time.perf_counter() - t0
    emit("done", report.to_dict())
    return report
