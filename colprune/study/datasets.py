"""Retrieval datasets for the studies: the BEIR layout (corpus.jsonl, queries.jsonl, qrels/*.tsv).

ViDoRe sets saved as BEIR (``corpus.jsonl`` records with an ``image`` path, as in
``shared/data/pages/arxivqa``) load the same way; their pages are images.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

from ..errors import InvalidInputError

__all__ = ["Dataset", "load_beir"]


@dataclass
class Dataset:
    """``corpus[id] = text`` (title + text) or ``images[id] = path``; ``queries[id] = text``;
    ``qrels[query_id][doc_id] = grade`` (> 0 relevant)."""

    name: str
    corpus: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.images or self.corpus)

    @property
    def judged_queries(self) -> list[str]:
        """Queries with at least one relevant document, in file order."""
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q, {}).values())]


def _jsonl(path: str):
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
    for rec in _jsonl(need[0]):
        doc_id = str(rec["_id"])
        if "image" in rec:
            img = rec["image"]
            ds.images[doc_id] = img if os.path.isabs(img) else os.path.join(path, img)
        else:
            title, text = rec.get("title") or "", rec.get("text") or ""
            ds.corpus[doc_id] = f"{title}. {text}" if title else text
    for rec in _jsonl(need[1]):
        ds.queries[str(rec["_id"])] = rec["text"]
    with open(need[2], encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        for row in rows:
            if not row or row[0] in ("query-id", "query_id"):
                continue
            q, d, g = row[0], row[1], int(float(row[2]))
            ds.qrels.setdefault(q, {})[d] = g
    return ds
