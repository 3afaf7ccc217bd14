"""Pages listed and read: the build's one page lister (:func:`list_pages`) and reader (:func:`read_pages`).

Both stand on :mod:`colprune.encoders.sources`, which :func:`colprune.encoders.collect_pages`
uses too: one walk over the inputs, one check per file, one id scheme (:func:`page_id`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
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

__all__ = ["PageJob", "list_files", "list_pages", "read_pages", "readable_pages", "prefetch", "page_id", "page_metadata",
           "file_sha256", "skip_reason", "NO_TEXT", "NOT_TEXT", "NOT_IMAGE", "TEXT_LIMIT"]

#: Reason recorded for a PDF page without a text layer when the encoder reads text.
NO_TEXT = "no text layer (a blank, scanned or image-only page); the text encoder reads text only"
#: Reason recorded for an image file when the encoder reads text.
NOT_TEXT = "an image has no text; the text encoder reads text only"
#: Reason recorded for a text file when the encoder reads images.
NOT_IMAGE = "a text file has no image; the visual encoder reads images"


#: At most this many characters of a page's text are stored with ``store_text`` (metadata ``text``).
TEXT_LIMIT = 20_000


def page_metadata(page_id: str, path: str, page: int, kind: str, sha256: str, text: str | None = None) -> dict:
    """A page's stored metadata: ``source`` (the file relative to the id root, as the page id names
    it), ``path`` (the file's absolute path), ``page`` (1-based), ``kind``, ``sha256``; with ``text``
    also ``text`` (at most :data:`TEXT_LIMIT` characters; ``text_truncated: true`` when cut)."""
    source = page_id.rsplit("#", 1)[0] if kind == "pdf" and "#" in page_id else page_id
    meta = {"source": source, "path": os.path.abspath(path), "page": int(page), "kind": kind, "sha256": sha256}
    if text is not None:
        meta["text"] = text[:TEXT_LIMIT]
        if len(text) > TEXT_LIMIT:
            meta["text_truncated"] = True
    return meta


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
        """The page's metadata (:func:`page_metadata`, without ``text``)."""
        return page_metadata(self.id, self.path, self.page, self.kind, self.sha256)

    @property
    def file_id(self) -> str:
        """The id of the page's file: the page id without ``#N`` (the metadata's ``source``)."""
        return self.metadata["source"]


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


def _pdf_page(doc: Any, job: PageJob, kind: str, dpi: int, texts: dict | None) -> tuple[Any, str | None]:
    """One PDF page's text or image, or ``(None, reason)``; its text layer into ``texts`` when given."""
    try:
        page = doc[job.page - 1]
        try:
            if kind == "text":
                content = pdf_text(page)
                if texts is not None:
                    texts[job.id] = content
                return content, (None if content.strip() else NO_TEXT)
            if texts is not None:
                texts[job.id] = pdf_text(page)
            reason = too_large(page, dpi, MAX_PIXELS)
            if reason is not None:
                return None, reason
            content = render(page, dpi)
            return content, (None if min(content.size) > 0 else "empty image")
        finally:
            page.close()
    except Exception as e:  # a damaged page: skip it, keep the document
        return None, f"cannot read the page ({type(e).__name__}: {e})"


def _read_pdf(group: Sequence[PageJob], kind: str, dpi: int, texts: dict | None) -> Iterator[Read]:
    try:
        doc = open_pdf(group[0].path)
    except PageError as e:
        for job in group:
            yield job, None, skip_reason(e, job.path)
        return
    try:
        for job in group:
            content, reason = _pdf_page(doc, job, kind, dpi, texts)
            yield job, (content if reason is None else None), reason
    finally:
        doc.close()


def _read_file(job: PageJob, kind: str, texts: dict | None) -> Read:
    """An image or text file's one page."""
    if job.kind == "image":
        if kind == "text":
            return job, None, NOT_TEXT
        if texts is not None:
            texts[job.id] = ""
        try:
            img = open_image(job.path, MAX_PIXELS).convert("RGB")
            return job, img, (None if min(img.size) > 0 else "empty image")
        except PageError as e:
            return job, None, skip_reason(e, job.path)
    if kind != "text":
        return job, None, NOT_IMAGE
    try:
        content = read_text(job.path)
        if texts is not None:
            texts[job.id] = content
        return job, content, (None if content.strip() else "empty text file")
    except OSError as e:
        return job, None, f"cannot read ({e})"


def _by_file(jobs: Sequence[PageJob]) -> Iterator[list[PageJob]]:
    """Runs of consecutive jobs of the same file (a PDF's pages), in order."""
    for _, group in itertools.groupby(jobs, key=lambda job: job.path):
        yield list(group)


def read_pages(jobs: Sequence[PageJob], kind: str, dpi: int, texts: dict[str, str] | None = None) -> Iterator[Read]:
    """``(job, content, None)`` or ``(job, None, reason)`` per page, opening each file once.

    ``kind`` is what the encoder reads: ``"text"`` (a PDF's text layer, a text file) or
    ``"image"`` (PDF pages rendered at ``dpi``, image files), as ``Encoder.input_kind`` says.
    ``texts``: when given, each page's text (the text a text encoder reads; a PDF page's text
    layer for an image encoder, "" for an image file) is put in it under the page id before the
    page is yielded.
    """
    for group in _by_file(jobs):
        if group[0].kind == "pdf":
            yield from _read_pdf(group, kind, dpi, texts)
        else:
            yield _read_file(group[0], kind, texts)


# -- the check before the model loads ----------------------------------------------------------

def _file_reason(group: Sequence[PageJob], kind: str) -> str | None:
    """Why no page of one file can be read for an encoder reading ``kind``: cheap checks, no rendering.

    A PDF (for a text encoder) is read until its first page with a text layer; text files are read.
    """
    first = group[0]
    if first.kind == "image":
        return NOT_TEXT if kind == "text" else None
    if first.kind == "text":
        if kind != "text":
            return NOT_IMAGE
        try:
            return None if read_text(first.path).strip() else "empty text file"
        except OSError as e:
            return f"cannot read ({e.strerror or e})"
    if kind != "text":
        return None
    try:
        doc = open_pdf(first.path)
    except PageError as e:
        return skip_reason(e, first.path)
    try:
        for job in group:
            page = doc[job.page - 1]
            try:
                if pdf_text(page).strip():
                    return None
            except Exception:  # noqa: BLE001 - a damaged page: the reader skips it with its reason
                return None
            finally:
                page.close()
    finally:
        doc.close()
    return NO_TEXT


def readable_pages(jobs: Sequence[PageJob], kind: str | None, *, strict: bool = False,
                   skipped: dict[str, str] | None = None) -> list[PageJob]:
    """The pages of ``jobs`` an encoder reading ``kind`` (``"text"``/``"image"``; None: unknown, all
    kept) may embed; the others go to ``skipped`` (page id → reason) or, with ``strict``, raise
    :class:`~colprune.encoders.PageError`.

    Run before the model loads: a file none of whose pages can be read (an image for a text
    encoder, a PDF without any text layer, an empty text file) is found here, page by page,
    at the cost of opening it (a PDF with text costs one page's text layer).
    """
    skipped = {} if skipped is None else skipped
    if kind is None:
        return list(jobs)
    out: list[PageJob] = []
    for group in _by_file(jobs):
        reason = _file_reason(group, kind)
        if reason is None:
            out.extend(group)
            continue
        if strict:
            raise PageError(f"{group[0].id}: {reason}")
        skipped.update((job.id, reason) for job in group)
    return out


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
