"""Encode a study's dataset once: the *full* index (every vector, every importance signal) and
the judged queries, both cached under the study's folder."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, SettingsMismatchError
from ..index import Index
from ..pipeline import PageWriter, build
from .datasets import Dataset, load_dataset

__all__ = ["encode_dataset", "encode_queries", "encode_full"]


def encode_full(ds: Dataset, encoder_name: str, path: str, progress: bool, batch: int = 256,
                quantize: str | None = None) -> None:
    """Encode the pages of ``ds`` not yet in the float16 index ``path`` (created when absent),
    unpruned and with every signal the encoder gives; ``batch`` pages a commit.

    A PDF-folder dataset goes through :func:`colprune.pipeline.build`; a corpus of texts or
    images through the same commit loop (:class:`colprune.pipeline.PageWriter`).
    """
    from ..encoders import load_encoder

    kw = {} if quantize is None else {"quantize": quantize}
    if ds.pages_dir is not None:  # a folder of PDFs/images: the build pipeline, every signal kept
        report = build([ds.pages_dir], path, model=encoder_name, signals=True, progress=progress,
                       commit_pages=64, commit_seconds=60.0, **kw)
        if report.skipped:
            print(report.warning_line())
        return
    done: set[str] = set()
    if os.path.exists(path):
        with Index.open(path) as ix:
            if ix.encoder != encoder_name:
                raise InvalidInputError(f"{path} was encoded with {ix.encoder}, not {encoder_name}: use another --out")
            done = set(ix.ids)
    todo = [d for d in ds.doc_ids if d not in done]
    if not todo:
        return
    encoder = load_encoder(encoder_name, **kw)
    from tqdm.auto import tqdm

    def create(signals: dict | None) -> Index:
        return Index.create(path, encoder.dim, "float16", encoder=encoder_name, signals=sorted(signals or {}),
                            overwrite=True)

    # one commit per batch, as many pages as the batch: an interrupted encoding keeps whole batches
    writer = PageWriter(Index.open(path, mode="a") if done else None, "none", create=create, commit_pages=batch,
                        commit_seconds=float("inf"))
    try:
        for lo in tqdm(range(0, len(todo), batch), desc="encode corpus", unit="batch", disable=not progress):
            chunk = todo[lo : lo + batch]
            enc = encoder.encode_pages([ds.image(d) for d in chunk] if ds.images else [ds.corpus[d] for d in chunk])
            writer.add(chunk, [e.vectors for e in enc], [e.importance for e in enc], patch_mask=[e.patch_mask for e in enc],
                       grids=[e.grid for e in enc], signals=[e.signals for e in enc])
        writer.flush()
    finally:
        if writer.index is not None:
            writer.index.close()


def encode_queries(ds: Dataset, encoder_name: str, out: str, qids: list[str],
                   quantize: str | None = None) -> list[np.ndarray]:
    """The judged queries ``qids`` encoded by ``encoder_name`` (the page encoder, or a student of it),
    cached in ``out/queries.npz`` under that name (and its quantisation): one ``(n_tokens, dim)``
    float32 array per query."""
    cache = os.path.join(out, "queries.npz")
    tag = encoder_name if quantize is None else f"{encoder_name}+{quantize}"
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            if str(z["encoder"]) == tag and list(z["ids"]) == qids:
                return [z["vectors"][a:b] for a, b in zip(z["offsets"][:-1], z["offsets"][1:])]
    from ..encoders import load_encoder

    kw = {} if quantize is None else {"quantize": quantize}
    vecs = load_encoder(encoder_name, **kw).encode_queries([ds.queries[q] for q in qids])
    offsets = np.r_[0, np.cumsum([v.shape[0] for v in vecs])]
    np.savez(cache, vectors=np.concatenate(vecs), offsets=offsets, ids=np.array(qids), encoder=np.array(tag))
    return vecs


def encode_dataset(
    dataset: str | Dataset, encoder: str, out: str, *, progress: bool = True, query_encoder: str | None = None,
    quantize: str | None = None,
) -> tuple[str, list[np.ndarray], list[str]]:
    """Encode a dataset's corpus and judged queries once, cached under ``out``.

    Returns ``(path of the unpruned float16 index out/full.h5, query vectors, query ids)``.
    A second call with the same encoder reuses both caches (and finishes an interrupted
    corpus encoding). ``query_encoder``: a student folder distilled from ``encoder``
    (``colprune distill-queries``) encodes the queries instead; the pages stay ``encoder``'s.
    ``quantize="int8"``: pages and queries through the encoder's int8 dynamic quantisation
    (index ``out/full-int8.h5``).
    """
    if query_encoder is not None and quantize is not None:
        raise InvalidInputError("quantize applies to the page encoder's own queries, not to a student's")
    if query_encoder is not None:
        from ..encoders.student import read_config, same_teacher

        teacher = read_config(query_encoder)["config"]["teacher"]
        if not same_teacher(teacher, encoder):
            raise SettingsMismatchError(f"the student {query_encoder} was distilled from {teacher!r}, not from the page "
                                        f"encoder {encoder!r}")
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    qids = ds.judged_queries
    if not qids:
        raise InvalidInputError(f"{ds.name}: no query has a relevant document in its qrels")
    os.makedirs(out, exist_ok=True)
    full_path = os.path.join(out, "full.h5" if quantize is None else f"full-{quantize}.h5")
    encode_full(ds, encoder, full_path, progress, quantize=quantize)
    return full_path, encode_queries(ds, query_encoder or encoder, out, qids, quantize), qids
