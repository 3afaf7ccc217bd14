"""Pages in: PDFs (rendered with pypdfium2, or their text layer), images (Pillow), text files.

One lister serves every caller: :func:`list_files` walks the inputs (folders recursively, in
sorted order) and :func:`page_count` checks each file as it counts its pages; the build
pipeline (:func:`colprune.pipeline.list_pages`) and :func:`collect_pages` are both built on
them, and both name a page by :func:`page_id`.

:func:`collect_pages` expands files and folders into :class:`PageSource` records, one per
page, checking each file as it goes: an unreadable file, a PDF that will not open, or an
image over the pixel limit (a decompression bomb) raises :class:`PageError` naming the file,
or, with ``skip_bad=True``, is reported through ``on_skip`` and left out.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..errors import InvalidInputError

__all__ = ["PageSource", "PageError", "collect_pages", "list_files", "page_id", "file_kind", "page_count", "open_image",
           "open_pdf", "pdf_damage", "too_large", "render", "pdf_text", "read_text", "PDF_EXTS", "IMAGE_EXTS",
           "TEXT_EXTS", "PAGE_EXTS", "MAX_PIXELS"]

PDF_EXTS = {".pdf"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
TEXT_EXTS = {".txt", ".md"}
#: Every extension a folder is searched for.
PAGE_EXTS = PDF_EXTS | IMAGE_EXTS | TEXT_EXTS
#: Pillow's own default limit (about 89 megapixels); larger images are refused.
MAX_PIXELS = 89_478_485


class PageError(InvalidInputError):
    """A page source that cannot be read; the message names the file."""


# -- listing ---------------------------------------------------------------------------------

def page_id(path: str, root: str | None, page: int | None) -> str:
    """A page's id: ``path`` relative to ``root`` with ``/`` separators, plus ``#page`` for PDF pages.

    ``root=None`` keeps the path as given (:func:`collect_pages`' ids).
    """
    rel = path if root is None else os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
    return f"{rel}#{page}" if page is not None else rel


def file_kind(path: str) -> str | None:
    """``"pdf"``, ``"image"`` or ``"text"`` by the file's extension; None for any other."""
    ext = os.path.splitext(path)[1].lower()
    if ext in PDF_EXTS:
        return "pdf"
    if ext in IMAGE_EXTS:
        return "image"
    return "text" if ext in TEXT_EXTS else None


def list_files(inputs: Sequence[str], id_root: str | None = None) -> list[tuple[str, str]]:
    """``[(file, root), ...]``: every page file of the inputs, folders recursively, in sorted order.

    ``root`` is what the file's page ids are relative to: ``id_root`` when given, else the
    folder given as input, or for a file given as input, the folder that holds it. A file
    given by name is listed whatever its extension.
    """
    out: list[tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            root = id_root if id_root is not None else item
            for folder, dirs, names in os.walk(item):
                dirs.sort()
                out.extend((os.path.join(folder, name), root) for name in sorted(names)
                           if os.path.splitext(name)[1].lower() in PAGE_EXTS)
        elif os.path.exists(item):
            out.append((item, id_root if id_root is not None else (os.path.dirname(item) or ".")))
        else:
            raise PageError(f"{item}: no such file or folder")
    return out


def open_image(path: str, max_pixels: int = MAX_PIXELS):
    """The image at ``path``, loaded (PIL); :class:`PageError` for an unreadable file or a bomb."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            if img.width * img.height > max_pixels:
                raise PageError(f"{path}: {img.width}x{img.height} pixels exceeds the limit of {max_pixels:,} "
                                "(decompression bomb?)")
            img.load()
        except PageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise PageError(f"{path}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise PageError(f"{path}: not a readable image ({e})") from None
    return img


def pdf_damage(path: str, detail: str = "") -> str:
    """Why the PDF at ``path`` does not open, from its bytes: not a PDF at all, truncated (no
    ``%%EOF`` marker near its end), or damaged inside (``detail``: what pdfium said)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(1024)
            f.seek(max(0, size - 2048))
            tail = f.read()
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if b"%PDF-" not in head:
        return "not a PDF (no %PDF- header)"
    if b"%%EOF" not in tail:
        return f"damaged PDF (truncated at byte {size:,}: no %%EOF end marker)"
    return "damaged PDF" + (f" ({detail})" if detail else "")


def open_pdf(path: str):
    """The PDF at ``path`` (a pypdfium2 document; close it); :class:`PageError` when it will not open,
    naming the cause: encrypted, not a PDF, truncated or damaged."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except Exception as e:  # pdfium's own error types; an encrypted file says "Incorrect password"
        text = str(e)
        if "password" in text.lower():
            raise PageError(f"{path}: encrypted PDF (needs a password)") from None
        detail = text.replace("Failed to load document ", "").strip(" ().")
        raise PageError(f"{path}: {pdf_damage(path, detail)}") from None


def page_count(path: str, kind: str, max_pixels: int = MAX_PIXELS) -> int:
    """The pages of a file of ``kind``, checking that it opens (:class:`PageError` naming it if not).

    A PDF is opened and counted; an image is opened (and refused over ``max_pixels``); a
    text file is one page, read when its pages are read.
    """
    if kind == "pdf":
        doc = open_pdf(path)
        try:
            n = len(doc)
        finally:
            doc.close()
        if n == 0:
            raise PageError(f"{path}: damaged PDF (it has no pages)")
        return n
    if kind == "image":
        open_image(path, max_pixels).close()
    return 1


# -- reading ---------------------------------------------------------------------------------

def too_large(page: Any, dpi: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why a pdfium page cannot be rendered at ``dpi`` (over ``max_pixels``), or None."""
    w, h = page.get_size()
    if (w * dpi / 72) * (h * dpi / 72) > max_pixels:
        return f"{w:.0f}x{h:.0f} pt at {dpi} dpi exceeds {max_pixels:,} pixels"
    return None


def render(page: Any, dpi: int):
    """A pdfium page as an RGB PIL image at ``dpi``."""
    return page.render(scale=dpi / 72).to_pil().convert("RGB")


def pdf_text(page: Any) -> str:
    """A pdfium page's text layer ("" when it has none), lines ending in ``\n``."""
    tp = page.get_textpage()
    try:
        return tp.get_text_range().replace("\r\n", "\n").replace("\r", "\n")  # pdfium ends lines with CRLF
    finally:
        tp.close()


def read_text(path: str) -> str:
    """A text file's contents (UTF-8; undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


@dataclass(frozen=True)
class PageSource:
    """One page of one input file.

    ``id`` is the file's path as given (relative paths stay relative, so re-running from the
    same folder finds the same ids) plus ``#<page>`` for PDFs.
    """

    id: str
    path: str
    page: int  # 1-based
    kind: str  # "pdf", "image" or "text"

    @property
    def metadata(self) -> dict:
        """``source`` (the path as given, like the id), ``path`` (absolute), ``page``, ``kind``."""
        return {"source": self.path, "path": os.path.abspath(self.path), "page": self.page, "kind": self.kind}

    def text(self) -> str:
        """The page's text: a PDF's text layer, a text file's contents; "" for images."""
        if self.kind == "text":
            return read_text(self.path)
        if self.kind == "pdf":
            doc = open_pdf(self.path)
            try:
                return pdf_text(doc[self.page - 1])
            finally:
                doc.close()
        return ""

    def image(self, dpi: int = 144, max_pixels: int = MAX_PIXELS):
        """The page as an RGB PIL image (PDFs rendered at ``dpi``)."""
        if self.kind == "pdf":
            doc = open_pdf(self.path)
            try:
                page = doc[self.page - 1]
                reason = too_large(page, dpi, max_pixels)
                if reason is not None:
                    raise PageError(f"{self.path} page {self.page}: {reason}")
                return render(page, dpi)
            finally:
                doc.close()
        if self.kind == "image":
            return open_image(self.path, max_pixels).convert("RGB")
        raise PageError(f"{self.path}: a text file has no image")


def _pages_of(path: str, max_pixels: int) -> list[PageSource]:
    kind = file_kind(path)
    if kind is None:
        raise PageError(f"{path}: unsupported file type {os.path.splitext(path)[1].lower()!r} (PDF, image or .txt/.md)")
    if kind == "text":
        try:
            with open(path, encoding="utf-8") as f:
                f.read(1)
        except (OSError, UnicodeDecodeError) as e:
            raise PageError(f"{path}: not a readable UTF-8 text file ({e})") from None
    n = page_count(path, kind, max_pixels)
    if kind == "pdf":
        return [PageSource(page_id(path, None, i), path, i, kind) for i in range(1, n + 1)]
    return [PageSource(page_id(path, None, None), path, 1, kind)]


def collect_pages(
    inputs: Iterable[str],
    *,
    skip_bad: bool = False,
    on_skip: Callable[[PageError], None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> list[PageSource]:
    """Every page of the given files and folders (folders recursively, sorted by path)."""
    pages: list[PageSource] = []
    for path, _ in list_files(list(inputs)):
        try:
            pages.extend(_pages_of(path, max_pixels))
        except PageError as e:
            if not skip_bad:
                raise
            if on_skip is not None:
                on_skip(e)
    return pages
