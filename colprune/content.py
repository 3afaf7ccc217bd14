"""A hit's page content for retrieval-augmented generation: its text and its image.

The index stores vectors and metadata, not pages. A page built from a file records where it came
from (``colprune build``'s metadata): ``source`` (the file relative to the id root, as the page id
is), ``path`` (its absolute path at build time), ``page`` (1-based), ``kind``, and with
``--store-text`` the page's ``text``. :func:`page_text` returns the stored text when there is
one, else reads the file's text layer (pypdfium2) or text file; :func:`page_image` renders the
PDF page (pypdfium2) or opens the image file. :meth:`colprune.Hit.text` and
:meth:`colprune.Hit.image` call them (registered through :mod:`colprune.hooks`).

Where the file is: ``root`` given, under ``root`` (the folder the page ids are relative to, as it
is now); else at ``path``, or, for indexes built before ``path`` was recorded, at ``source`` (the
path as typed at build time, relative to the folder the build ran in). A file that is not there
raises :class:`MissingSourceError` naming it and ``root=``. Only page files are read (PDF, image,
``.txt``/``.md``, by extension): an index's metadata cannot make this read any other file.

The PDF and image libraries load on first use, not on import.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import InvalidInputError, NotFoundError
from .hooks import PageReader, set_page_reader

if TYPE_CHECKING:
    from .index.records import Hit

__all__ = ["PageFile", "MissingSourceError", "page_file", "page_text", "page_image", "image_name", "DEFAULT_SCALE"]

#: PDF render scale of :func:`page_image`: 2.0 is 144 dpi (1.0 = 72 dpi, the PDF's own points).
DEFAULT_SCALE = 2.0
_PAGE_SUFFIX = re.compile(r"#\d+$")


class PageFile(NamedTuple):
    """Where a hit's page is: the file, its kind (``"pdf"``, ``"image"``, ``"text"``) and page (1-based)."""

    path: str
    kind: str
    page: int


class MissingSourceError(NotFoundError):
    """The file a page was built from is not where the index says (moved, renamed or deleted).

    ``page_id`` is the hit's id, ``tried`` the paths looked at, first the one the index records.
    """

    def __init__(self, message: str, page_id: str, tried: list[str]) -> None:
        super().__init__(message)
        self.page_id = page_id
        self.tried = tried


def _candidates(hit: Hit, root: str | None) -> list[str]:
    meta = hit.metadata or {}
    source, path = meta.get("source"), meta.get("path")
    out: list[str] = []
    if root is not None:
        # the page id is the file relative to the id root (old and new indexes alike); source too, in new ones
        rel = [s for s in (source, _PAGE_SUFFIX.sub("", hit.id)) if isinstance(s, str) and s and not os.path.isabs(s)]
        out = [os.path.join(root, s) for s in rel]
    else:
        out = [s for s in (path, source) if isinstance(s, str) and s]
    return list(dict.fromkeys(out))


def page_file(hit: Hit, root: str | None = None) -> PageFile:
    """The file, kind and page number of ``hit``'s page, checked to be there and a page file.

    Raises
    ------
    MissingSourceError
        The file is not where the metadata (or ``root``) says.
    NotFoundError
        The page records no source file (added as embeddings, without ``source``/``path``).
    InvalidInputError
        The file is not a PDF, image or text file, or ``page`` is not a page number.
    """
    from .encoders.sources import file_kind

    meta = hit.metadata or {}
    if not any(isinstance(meta.get(k), str) and meta.get(k) for k in ("source", "path")):
        raise NotFoundError(f"page {hit.id!r} records no source file in its metadata (added as embeddings?): "
                            "there is no page to read")
    tried = _candidates(hit, root)
    found = next((p for p in tried if os.path.isfile(p)), None)
    if found is None:
        shown = tried[0] if tried else str(meta.get("source"))
        where = f"under root={root!r}" if root is not None else "where the index says"
        raise MissingSourceError(
            f"{shown}: the file of page {hit.id!r} is not {where} (moved or deleted?); pass root= the folder the "
            "page ids are relative to, as it is now", hit.id, tried)
    kind = file_kind(found)
    if kind is None:
        raise InvalidInputError(f"{found}: page {hit.id!r} names a file that is not a PDF, image or text file: not read")
    page = meta.get("page", 1)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidInputError(f"page {hit.id!r}: its metadata's page {page!r} is not a page number (1, 2, ...)")
    return PageFile(found, kind, page)


def _pdf_page(doc: Any, f: PageFile, page_id: str) -> Any:
    if f.page > len(doc):
        raise InvalidInputError(f"{f.path} has {len(doc)} pages, page {page_id!r} is page {f.page}: "
                                "the file changed since the build (build again to index it as it is)")
    return doc[f.page - 1]


def page_text(hit: Hit, root: str | None = None) -> str:
    """The text of ``hit``'s page: the text stored at build (``--store-text``), else the PDF page's
    text layer or the text file; ``""`` for an image, or a PDF page without a text layer.

    Stored text cut at the build's limit (``text_truncated``) is read again from the file when the
    file is there. Errors: :func:`page_file`'s.
    """
    meta = hit.metadata or {}
    stored = meta.get("text")
    if isinstance(stored, str) and not meta.get("text_truncated"):
        return stored
    try:
        f = page_file(hit, root)
    except NotFoundError:
        if isinstance(stored, str):
            return stored  # cut, but all there is
        raise
    from .encoders.sources import open_pdf, pdf_text, read_text

    if f.kind == "text":
        return read_text(f.path)
    if f.kind == "image":
        return ""
    doc = open_pdf(f.path)
    try:
        return pdf_text(_pdf_page(doc, f, hit.id))
    finally:
        doc.close()


def page_image(hit: Hit, root: str | None = None, scale: float = DEFAULT_SCALE):
    """``hit``'s page as an RGB PIL image: the PDF page rendered at ``scale`` (1.0 = 72 dpi), or the
    image file as it is. Errors: :func:`page_file`'s; a text file has no image; a page too large to
    render at ``scale`` (over 89 megapixels) is refused."""
    from .encoders.sources import PageError, open_image, open_pdf, render, too_large

    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise InvalidInputError(f"scale must be a number > 0 (1.0 = 72 dpi), got {scale!r}")
    f = page_file(hit, root)
    if f.kind == "text":
        raise InvalidInputError(f"{f.path}: page {hit.id!r} is a text file; it has no image (Hit.text() gives its text)")
    if f.kind == "image":
        return open_image(f.path).convert("RGB")
    dpi = 72 * float(scale)
    doc = open_pdf(f.path)
    try:
        page = _pdf_page(doc, f, hit.id)
        reason = too_large(page, dpi)
        if reason is not None:
            raise PageError(f"{f.path} page {f.page}: {reason}; pass a smaller scale")
        return render(page, dpi)
    finally:
        doc.close()


def image_name(page_id: str) -> str:
    """A file name for a page's image: the id with every character but letters, digits, ``.-_`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", page_id).strip(".") + ".png"


set_page_reader(PageReader(text=page_text, image=page_image))
