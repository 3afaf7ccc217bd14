"""Training text for a student query encoder: the user's own corpus cut into sentences and short
spans (:func:`training_texts`), plus any queries they have; no labels, pages or documents."""

from __future__ import annotations

import os
import random
import re
from typing import Callable, Sequence

from ..errors import InvalidInputError, NotFoundError, UsageError
from ..study.datasets import read_jsonl

__all__ = ["MAX_WORDS", "MIN_WORDS", "cut_sentences", "read_texts", "training_texts"]

#: Sentences longer than this many words are cut into pieces of at most this many.
MAX_WORDS = 32
MIN_WORDS = 3

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def cut_sentences(text: str, *, max_words: int = MAX_WORDS, min_words: int = MIN_WORDS,
                  spans: bool = True, rng: random.Random | None = None) -> list[str]:
    """Sentences (and questions) of a passage, as query-like training texts.

    Whitespace is normalised; a sentence ends at ``.``, ``!`` or ``?`` before a capital or a
    digit; pieces of fewer than ``min_words`` words are dropped and longer than ``max_words`` are
    cut (tables in PDF text layers become runs of cells). With ``spans``, every sentence of more
    than 12 words also gives one random 4-12-word window of itself: queries are shorter than
    sentences.
    """
    rng = rng or random.Random(0)
    out: list[str] = []
    for sentence in _SENTENCE.split(" ".join(text.split())):
        words = sentence.split()
        for lo in range(0, len(words), max_words):
            piece = words[lo : lo + max_words]
            if len(piece) < min_words:
                continue
            out.append(" ".join(piece))
            if spans and len(piece) > 12:
                n = rng.randint(4, 12)
                s = rng.randint(0, len(piece) - n)
                out.append(" ".join(piece[s : s + n]))
    return out


def read_texts(paths: Sequence[str], *, on_skip: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """``[(text, kind), ...]`` from the inputs, kind ``"query"`` (kept whole) or ``"passage"`` (cut later).

    - ``.txt`` / ``.md``: one text a line (lines are queries when short, passages when longer
      than :data:`MAX_WORDS` words);
    - ``.jsonl``: BEIR records (``text``, optional ``title``); a file named ``queries*.jsonl``
      holds queries, any other passages (``corpus.jsonl``);
    - ``.pdf``: each page's text layer is a passage (pages without text are skipped);
    - a folder: its ``corpus.jsonl`` if it has one (not its ``queries.jsonl``: give that file
      by name, so held-out test queries are never read by accident), else every PDF and
      ``.txt``/``.md`` file under it.
    """
    from ..encoders.sources import PDF_EXTS, TEXT_EXTS, collect_pages

    out: list[tuple[str, str]] = []

    def add_line(line: str) -> None:
        line = " ".join(line.split())
        if line:
            out.append((line, "query" if len(line.split()) <= MAX_WORDS else "passage"))

    def add_text_file(path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    add_line(line)
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"{path}: not a readable UTF-8 text file ({e})") from None

    for item in paths:
        if not os.path.exists(item):
            raise NotFoundError(f"{item}: no such file or folder")
        ext = os.path.splitext(item)[1].lower()
        if os.path.isdir(item):
            corpus = os.path.join(item, "corpus.jsonl")
            if os.path.exists(corpus):
                out += read_texts([corpus])
                continue
            found = collect_pages([item], skip_bad=True, on_skip=(lambda e: on_skip(str(e))) if on_skip else None)
            for page in found:
                if page.kind == "text":
                    if page.page == 1:
                        add_text_file(page.path)
                elif page.kind == "pdf":
                    text = page.text()
                    if text.strip():
                        out.append((text, "passage"))
            continue
        if ext == ".jsonl":
            kind = "query" if os.path.basename(item).lower().startswith("queries") else "passage"
            for rec in read_jsonl(item):
                text = rec.get("text") or rec.get("query") or ""
                title = rec.get("title") or ""
                text = f"{title}. {text}" if title and kind == "passage" else text
                if str(text).strip():
                    out.append((str(text), kind))
        elif ext in TEXT_EXTS:
            add_text_file(item)
        elif ext in PDF_EXTS:
            for page in collect_pages([item]):  # an unreadable PDF given by name raises PageError
                text = page.text()
                if text.strip():
                    out.append((text, "passage"))
        else:
            raise InvalidInputError(f"{item}: training text comes from .txt/.md (one text a line), .jsonl (BEIR "
                                    f"corpus or queries), PDFs or folders of them; got {ext or 'no extension'!r}")
    return out


def training_texts(paths: Sequence[str], *, fraction: float = 1.0, max_texts: int | None = None, seed: int = 0,
                   spans: bool = True, on_skip: Callable[[str], None] | None = None) -> list[str]:
    """Query-like training texts from the inputs: queries whole, passages cut by :func:`cut_sentences`.

    Duplicates are dropped, the rest shuffled (``seed``); ``fraction`` keeps that share of them
    (the 25%-of-the-text experiment), then ``max_texts`` caps the count.
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {fraction}")
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    for text, kind in read_texts(paths, on_skip=on_skip):
        pieces = [text] if kind == "query" else cut_sentences(text, spans=spans, rng=rng)
        for p in pieces:
            seen.setdefault(p, None)
    texts = list(seen)
    rng.shuffle(texts)
    texts = texts[: max(1, round(len(texts) * fraction))] if texts else texts
    if max_texts is not None:
        texts = texts[:max_texts]
    if not texts:
        raise InvalidInputError(f"no training text in {', '.join(paths)}: give text files, BEIR corpus/queries "
                                "files or PDFs with a text layer")
    return texts
