"""Retrieval datasets for the studies.

- BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``; corpus records with
  an ``image`` path are page images.
- PDF folders: ``queries.jsonl`` and ``qrels/<split>.tsv`` beside a folder of PDFs or page
  images (``pdfs/``, ``pages/``, ``images/`` or ``corpus/``, else the dataset folder itself), whose
  corpus ids are page ids as :func:`colprune.pipeline.build` gives them (``FILE.pdf#N``, N
  1-based, paths relative to that folder), as in ``../shared/data/financebench-dev``. The
  pages are built with the same pipeline as ``colprune build``.
- ViDoRe layout: Hugging Face ``save_to_disk`` folders (``corpus/``, ``queries/``, and
  ``relevant_docs/`` or ``qrels/``, Arrow files) or parquet files with the same names. Column
  names vary between ViDoRe releases; ids come from ``corpus_id``/``corpus-id``/``_id``,
  ``query_id``/``query-id``, text from ``text``/``query``, images from an ``image`` column
  (embedded bytes or a path) or ``image_path``. Reading Arrow and parquet needs pyarrow
  (``pip install colprune[study]``).

:func:`load_dataset` picks the layout.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass, field

from ..errors import InvalidInputError

__all__ = ["Dataset", "load_beir", "load_vidore", "load_pdf_folder", "load_dataset", "read_jsonl"]


@dataclass
class Dataset:
    """``corpus[id] = text`` (title + text) or ``images[id] = path``; ``queries[id] = text``;
    ``qrels[query_id][doc_id] = grade`` (> 0 relevant)."""

    name: str
    corpus: dict[str, str] = field(default_factory=dict)
    images: dict[str, str | bytes] = field(default_factory=dict)  # a path, or encoded image bytes
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    #: For PDF-folder datasets: the folder of PDFs/images the pages come from.
    pages_dir: str | None = None
    _page_ids: list[str] | None = None

    @property
    def doc_ids(self) -> list[str]:
        if self.pages_dir is not None:
            if self._page_ids is None:
                from ..pipeline import list_pages

                self._page_ids = [j.id for j in list_pages([self.pages_dir])]
            return list(self._page_ids)
        return list(self.images or self.corpus)

    def page_texts(self) -> dict[str, str]:
        """Page id -> text layer (PDF folders; "" for pages without one), or the text corpus."""
        if self.pages_dir is None:
            return dict(self.corpus)
        from ..pipeline import list_pages, read_pages

        jobs = list_pages([self.pages_dir])
        return {job.id: (content or "") for job, content, _ in read_pages(jobs, "text", 72)}

    def image(self, doc_id: str):
        """The page image of ``doc_id`` (RGB PIL image), from its path or embedded bytes."""
        from PIL import Image

        from ..encoders.sources import PageSource

        src = self.images[doc_id]
        if isinstance(src, bytes):
            return Image.open(io.BytesIO(src)).convert("RGB")
        return PageSource(doc_id, src, 1, "image").image()

    @property
    def judged_queries(self) -> list[str]:
        """Queries with at least one relevant document, in file order."""
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q, {}).values())]


def read_jsonl(path: str):
    """The records of a JSON-lines file, blank lines skipped; a bad line raises naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidInputError(f"{path} line {i}: not JSON ({e})") from None


def load_beir(path: str, split: str = "test") -> Dataset:
    """Load a BEIR-layout folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    need = [os.path.join(path, "corpus.jsonl"), os.path.join(path, "queries.jsonl"), os.path.join(path, "qrels", f"{split}.tsv")]
    missing = [p for p in need if not os.path.exists(p)]
    if missing:
        raise InvalidInputError(f"{path} is not a BEIR dataset folder: missing {', '.join(missing)}")
    ds = Dataset(os.path.basename(os.path.normpath(path)))
    for rec in read_jsonl(need[0]):
        doc_id = str(rec["_id"])
        if "image" in rec:
            img = rec["image"]
            ds.images[doc_id] = img if os.path.isabs(img) else os.path.join(path, img)
        else:
            title, text = rec.get("title") or "", rec.get("text") or ""
            ds.corpus[doc_id] = f"{title}. {text}" if title else text
    for rec in read_jsonl(need[1]):
        ds.queries[str(rec["_id"])] = rec["text"]
    with open(need[2], encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        for row in rows:
            if not row or row[0] in ("query-id", "query_id"):
                continue
            q, d, g = row[0], row[1], int(float(row[2]))
            ds.qrels.setdefault(q, {})[d] = g
    return ds


def _first(row: dict, names: tuple[str, ...], what: str, path: str):
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    raise InvalidInputError(f"{path}: no {what} column (looked for {', '.join(names)}; found {sorted(row)})")


def _read_table(folder: str, part: str) -> list[dict] | None:
    try:
        import pyarrow.ipc as ipc
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("reading ViDoRe Arrow/parquet files needs pyarrow: pip install pyarrow") from None
    arrow = sorted(glob.glob(os.path.join(folder, part, "*.arrow")))
    parquet = sorted(glob.glob(os.path.join(folder, part, "*.parquet")) + glob.glob(os.path.join(folder, f"{part}.parquet"))
                     + glob.glob(os.path.join(folder, "data", f"{part}-*.parquet")))
    rows: list[dict] = []
    for f in arrow:
        with open(f, "rb") as fh:
            rows += ipc.open_stream(fh).read_all().to_pylist()
    for f in parquet:
        rows += pq.read_table(f).to_pylist()
    return rows if (arrow or parquet) else None


def load_vidore(path: str) -> Dataset:
    """Load a ViDoRe dataset saved with ``save_to_disk`` or as parquet (see the module docstring)."""
    ds = Dataset(os.path.basename(os.path.normpath(path)))
    corpus = _read_table(path, "corpus")
    queries = _read_table(path, "queries")
    if corpus is None or queries is None:
        raise InvalidInputError(f"{path} is not a ViDoRe dataset: expected corpus/ and queries/ Arrow or parquet files")
    for row in corpus:
        doc_id = str(_first(row, ("corpus_id", "corpus-id", "_id", "id", "docid"), "corpus id", path))
        img = row.get("image") or row.get("image_path")
        if isinstance(img, dict):
            img = img.get("bytes") or img.get("path")
        if isinstance(img, str) and not os.path.isabs(img):
            img = os.path.join(path, img)
        if img is not None:
            ds.images[doc_id] = img
        else:
            ds.corpus[doc_id] = str(_first(row, ("text",), "image or text", path))
    for row in queries:
        ds.queries[str(_first(row, ("query_id", "query-id", "_id", "id"), "query id", path))] = str(
            _first(row, ("text", "query"), "query text", path))
    rel = _read_table(path, "relevant_docs")
    if rel is not None:
        for row in rel:
            q = str(_first(row, ("query_id", "query-id"), "query id", path))
            for d, g in zip(row["corpus_ids"], row.get("scores") or [1] * len(row["corpus_ids"])):
                ds.qrels.setdefault(q, {})[str(d)] = int(g)
    else:
        qrels = _read_table(path, "qrels")
        if qrels is None:
            raise InvalidInputError(f"{path}: no relevant_docs/ or qrels/ files")
        for row in qrels:
            q = str(_first(row, ("query_id", "query-id"), "query id", path))
            d = str(_first(row, ("corpus_id", "corpus-id"), "corpus id", path))
            ds.qrels.setdefault(q, {})[d] = int(_first(row, ("score",), "score", path))
    return ds


PAGE_DIRS = ("pdfs", "pages", "images", "corpus")
_PAGE_EXTS = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _pages_dir(path: str) -> str | None:
    for name in PAGE_DIRS:
        d = os.path.join(path, name)
        if os.path.isdir(d) and any(n.lower().endswith(_PAGE_EXTS) for _, _, ns in os.walk(d) for n in ns):
            return d
    if any(n.lower().endswith(_PAGE_EXTS) for n in os.listdir(path)):
        return path
    return None


def load_pdf_folder(path: str, split: str = "test") -> Dataset:
    """A folder of PDFs (or page images) with ``queries.jsonl`` and ``qrels/<split>.tsv`` whose
    corpus ids are page ids (``FILE.pdf#N``); see the module docstring."""
    pages = _pages_dir(path)
    need = [os.path.join(path, "queries.jsonl"), os.path.join(path, "qrels", f"{split}.tsv")]
    missing = [p for p in need if not os.path.exists(p)]
    if pages is None or missing:
        raise InvalidInputError(f"{path} is not a PDF-folder dataset: missing "
                                + ", ".join(missing + ([] if pages else ["a folder of PDFs or page images"])))
    ds = Dataset(os.path.basename(os.path.normpath(path)), pages_dir=pages)
    for rec in read_jsonl(need[0]):
        ds.queries[str(rec["_id"])] = rec["text"]
    _read_qrels(need[1], ds)
    known = set(ds.doc_ids)
    unknown = sorted({d for q in ds.qrels.values() for d in q} - known)
    if unknown:
        raise InvalidInputError(f"{path}: qrels name pages that are not in {pages}: {unknown[:5]} "
                                f"(page ids are paths relative to {pages}, plus #N for PDF pages)")
    return ds


def _read_qrels(path: str, ds: Dataset) -> None:
    with open(path, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0] in ("query-id", "query_id"):
                continue
            ds.qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))


def load_dataset(path: str) -> Dataset:
    """BEIR if ``corpus.jsonl`` is there, a PDF folder if PDFs or page images and
    ``queries.jsonl`` are, else ViDoRe (Arrow or parquet)."""
    if not os.path.isdir(path):
        raise InvalidInputError(f"{path}: no such dataset folder")
    if os.path.exists(os.path.join(path, "corpus.jsonl")):
        return load_beir(path)
    if os.path.exists(os.path.join(path, "queries.jsonl")) and _pages_dir(path) is not None:
        return load_pdf_folder(path)
    return load_vidore(path)
