"""Pages in: PDFs (rendered with pypdfium2, or their text layer), images (Pillow), text files.

:func:`collect_pages` expands files and folders into :class:`PageSource` records, one per
page, checking each file as it goes: an unreadable file, a PDF that will not open, or an
image over the pixel limit (a decompression bomb) raises :class:`PageError` naming the file,
or, with ``skip_bad=True``, is reported through ``on_skip`` and left out.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import InvalidInputError

__all__ = ["PageSource", "PageError", "collect_pages", "PDF_EXTS", "IMAGE_EXTS", "TEXT_EXTS"]

PDF_EXTS = {".pdf"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
TEXT_EXTS = {".txt", ".md"}
#: Pillow's own default limit (about 89 megapixels); larger images are refused.
MAX_PIXELS = 89_478_485


class PageError(InvalidInputError):
    """A page source that cannot be read; the message names the file."""


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
        return {"source": self.path, "page": self.page, "kind": self.kind}

    def text(self) -> str:
        """The page's text: a PDF's text layer, a text file's contents; "" for images."""
        if self.kind == "text":
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        if self.kind == "pdf":
            import pypdfium2 as pdfium

            doc = pdfium.PdfDocument(self.path)
            try:
                return doc[self.page - 1].get_textpage().get_text_range()
            finally:
                doc.close()
        return ""

    def image(self, dpi: int = 144, max_pixels: int = MAX_PIXELS):
        """The page as an RGB PIL image (PDFs rendered at ``dpi``)."""
        if self.kind == "pdf":
            import pypdfium2 as pdfium

            doc = pdfium.PdfDocument(self.path)
            try:
                page = doc[self.page - 1]
                w, h = page.get_size()
                if (w * dpi / 72) * (h * dpi / 72) > max_pixels:
                    raise PageError(f"{self.path} page {self.page}: {w:.0f}x{h:.0f} pt at {dpi} dpi exceeds {max_pixels:,} pixels")
                return page.render(scale=dpi / 72).to_pil().convert("RGB")
            finally:
                doc.close()
        if self.kind == "image":
            return _open_image(self.path, max_pixels).convert("RGB")
        raise PageError(f"{self.path}: a text file has no image")


def _open_image(path: str, max_pixels: int):
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            if img.width * img.height > max_pixels:
                raise PageError(f"{path}: {img.width}x{img.height} pixels exceeds the limit of {max_pixels:,} (decompression bomb?)")
            img.load()
        except PageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise PageError(f"{path}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise PageError(f"{path}: not a readable image ({e})") from None
    return img


def _pages_of(path: str, max_pixels: int) -> list[PageSource]:
    ext = os.path.splitext(path)[1].lower()
    if ext in PDF_EXTS:
        import pypdfium2 as pdfium

        try:
            doc = pdfium.PdfDocument(path)
        except Exception as e:  # pdfium raises its own error types
            raise PageError(f"{path}: not a readable PDF ({e})") from None
        n = len(doc)
        doc.close()
        if n == 0:
            raise PageError(f"{path}: PDF has no pages")
        return [PageSource(f"{path}#{i}", path, i, "pdf") for i in range(1, n + 1)]
    if ext in IMAGE_EXTS:
        _open_image(path, max_pixels).close()
        return [PageSource(path, path, 1, "image")]
    if ext in TEXT_EXTS:
        try:
            with open(path, encoding="utf-8") as f:
                f.read(1)
        except (OSError, UnicodeDecodeError) as e:
            raise PageError(f"{path}: not a readable UTF-8 text file ({e})") from None
        return [PageSource(path, path, 1, "text")]
    raise PageError(f"{path}: unsupported file type {ext!r} (PDF, image or .txt/.md)")


def collect_pages(
    inputs: Iterable[str],
    *,
    skip_bad: bool = False,
    on_skip: Callable[[PageError], None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> list[PageSource]:
    """Every page of the given files and folders (folders recursively, sorted by path)."""
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, names in sorted(os.walk(item)):
                for name in sorted(names):
                    ext = os.path.splitext(name)[1].lower()
                    if ext in PDF_EXTS | IMAGE_EXTS | TEXT_EXTS:
                        files.append(os.path.join(root, name))
        elif os.path.exists(item):
            files.append(item)
        else:
            raise PageError(f"{item}: no such file or folder")
    pages: list[PageSource] = []
    for path in files:
        try:
            pages.extend(_pages_of(path, max_pixels))
        except PageError as e:
            if not skip_bad:
                raise
            if on_skip is not None:
                on_skip(e)
    return pages
