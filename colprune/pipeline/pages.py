"""Pages listed and read: the build's one page lister (:func:`list_pages`) and reader (:func:`read_pages`).

Both stand on :mod:`colprune.encoders.sources`, which :func:`colprune.encoders.collect_pages`
uses too: one walk over the inputs, one check per file, one id scheme (:func:`page_id`).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..encoders.sources import (
    MAX_PIXELS,
    PageError,
    file_kind,
    list_files,
    open_image,
    open_pdf,
    page_count,
    page_id,
    pdf_text,
    read_text,
    render,
    too_large,
)
from ..errors import InvalidInputError

__all__ = ["PageJob", "list_files", "list_pages", "read_pages", "prefetch", "page_id", "file_sha256", "skip_reason",
           "NO_TEXT"]

#: Reason recorded for a PDF page without a text layer when the encoder reads text.
NO_TEXT = "no text layer (a blank, scanned or image-only page); the text encoder reads text only"


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


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def skip_reason(e: Exception, path: str) -> str:
    """A :class:`PageError`'s message without its leading ``path: ``."""
    msg = str(e)
    return msg[len(path) + 2:] if msg.startswith(f"{path}: ") else msg


def _jobs_of(path: str, root: str) -> list[PageJob]:
    """The pages of one file; :class:`PageError` naming it when it cannot be read."""
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise PageError(f"{path}: cannot read ({e.strerror or e})") from None
    kind = file_kind(path) or "text"  # a file given by name is read as text, whatever its extension
    n = page_count(path, kind)
    if kind == "pdf":
        return [PageJob(page_id(path, root, i), path, i, kind, digest) for i in range(1, n + 1)]
    return [PageJob(page_id(path, root, None), path, 1, kind, digest)]


def list_pages(
    inputs: Sequence[str], *, id_root: str | None = None, strict: bool = False,
    skipped: dict[str, str] | None = None,
) -> list[PageJob]:
    """Every page of the inputs as :class:`PageJob` records, in file order.

    A file that cannot be opened (unreadable, encrypted, corrupt, unsupported) raises
    :class:`~colprune.encoders.PageError` with ``strict``, else is recorded in ``skipped``
    (the file's id → reason) and left out. Two inputs that give the same page id raise
    :class:`~colprune.errors.InvalidInputError`.
    """
    skipped = {} if skipped is None else skipped
    jobs: list[PageJob] = []
    seen: dict[str, str] = {}
    for path, root in list_files(inputs, id_root):
        try:
            found = _jobs_of(path, root)
        except PageError as e:
            if strict:
                raise
            skipped[page_id(path, root, None)] = skip_reason(e, path)
            continue
        for job in found:
            if job.id in seen:
                raise InvalidInputError(
                    f"{seen[job.id]} and {job.path} both give the page id {job.id!r}; "
                    "pass id_root (CLI --id-root) to a folder above both inputs")
            seen[job.id] = job.path
        jobs.extend(found)
    return jobs


# -- reading -----------------------------------------------------------------------------------

Read = tuple[PageJob, Any, "str | None"]


def _pdf_page(doc: Any, job: PageJob, kind: str, dpi: int) -> tuple[Any, str | None]:
    """One PDF page's text or image, or ``(None, reason)``."""
    try:
        page = doc[job.page - 1]
        try:
            if kind == "text":
                content = pdf_text(page)
                return content, (None if content.strip() else NO_TEXT)
            reason = too_large(page, dpi, MAX_PIXELS)
            if reason is not None:
                return None, reason
            content = render(page, dpi)
            return content, (None if min(content.size) > 0 else "empty image")
        finally:
            page.close()
    except Exception as e:  # a damaged page: skip it, keep the document
        return None, f"cannot read the page ({type(e).__name__}: {e})"


def _read_pdf(group: Sequence[PageJob], kind: str, dpi: int) -> Iterator[Read]:
    try:
        doc = open_pdf(group[0].path)
    except PageError as e:
        for job in group:
            yield job, None, skip_reason(e, job.path)
        return
    try:
        for job in group:
            content, reason = _pdf_page(doc, job, kind, dpi)
            yield job, (content if reason is None else None), reason
    finally:
        doc.close()


def _read_file(job: PageJob, kind: str) -> Read:
    """An image or text file's one page."""
    if job.kind == "image":
        if kind == "text":
            return job, None, "an image has no text; the text encoder reads text only"
        try:
            img = open_image(job.path, MAX_PIXELS).convert("RGB")
            return job, img, (None if min(img.size) > 0 else "empty image")
        except PageError as e:
            return job, None, skip_reason(e, job.path)
    if kind != "text":
        return job, None, "a text file has no image; the visual encoder reads images"
    try:
        content = read_text(job.path)
        return job, content, (None if content.strip() else "empty text file")
    except OSError as e:
        return job, None, f"cannot read ({e})"


def read_pages(jobs: Sequence[PageJob], kind: str, dpi: int) -> Iterator[Read]:
    """``(job, content, None)`` or ``(job, None, reason)`` per page, opening each file once.

    ``kind`` is what the encoder reads: ``"text"`` (a PDF's text layer, a text file) or
    ``"image"`` (PDF pages rendered at ``dpi``, image files), as ``Encoder.input_kind`` says.
    """
    i = 0
    while i < len(jobs):
        j = i
        while j < len(jobs) and jobs[j].path == jobs[i].path:
            j += 1
        group, i = jobs[i:j], j
        if group[0].kind == "pdf":
            yield from _read_pdf(group, kind, dpi)
        else:
            yield _read_file(group[0], kind)


_END = object()


def prefetch(it: Iterator, depth: int) -> Iterator:
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
