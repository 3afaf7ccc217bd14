"""``colprune demo``: the whole pipeline on generated pages, offline, in seconds."""

from __future__ import annotations

import os
import tempfile

from .index import Index
from .pruning import AdaptiveThreshold
from .synthetic import make_corpus

__all__ = ["run_demo"]


def run_demo(out: str | None = None, *, n_pages: int = 300, quiet: bool = False) -> dict:
    """Build a full index of generated pages, derive a DocPruner-pruned one, search both.

    Returns the figures it prints: bytes per page of each index and top-1 accuracy.
    """
    from tqdm.auto import tqdm

    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="colprune-demo-")
        out = tmp.name
    os.makedirs(out, exist_ok=True)
    corpus = make_corpus(n_pages, seed=0)
    n_vec = sum(e.shape[0] for e in corpus.embeddings)
    print(f"generated {n_pages} pages ({n_vec:,} patch vectors, dim 128) and {len(corpus.queries)} queries")
    full_path, pruned_path = os.path.join(out, "full.h5"), os.path.join(out, "pruned.h5")
    with Index.create(full_path, dim=128, dtype="float16", encoder="synthetic", overwrite=True) as full:
        for lo in tqdm(range(0, n_pages, 50), desc="build full index", unit="batch", disable=quiet):
            sl = slice(lo, lo + 50)
            full.add(corpus.ids[sl], corpus.embeddings[sl], corpus.importance[sl], pruner="none")
        pruned = full.derive(pruned_path, AdaptiveThreshold(k=-0.25), overwrite=True, progress=not quiet)
        full_info, pruned_info = full.info(), pruned.info()
        full_hits = full.search(corpus.queries, k=3)
        pruned_hits = pruned.search(corpus.queries, k=3)
        pruned.close()
    fb, pb = full_info["vector_bytes_per_page"], pruned_info["vector_bytes_per_page"]
    print(f"full index   {full_path}: {fb / 1024:,.1f} KB/page of float16 vectors")
    print(
        f"pruned index {pruned_path}: {pb / 1024:,.1f} KB/page, DocPruner k=-0.25 kept "
        f"{pruned_info['keep_ratio']:.1%} of vectors, saved {1 - pb / fb:.1%} of the bytes"
    )
    top1 = {name: sum(h[0].id == rel for h, rel in zip(hits, corpus.relevant)) / len(hits)
            for name, hits in (("full", full_hits), ("pruned", pruned_hits))}
    print(f"top-1 accuracy on {len(corpus.queries)} queries: full {top1['full']:.0%}, pruned {top1['pruned']:.0%}")
    for q in range(3):
        fmt = lambda hs: ", ".join(f"{h.id} ({h.score:.2f})" for h in hs)  # noqa: E731
        print(f"query {q} (relevant {corpus.relevant[q]})\n  full:   {fmt(full_hits[q])}\n  pruned: {fmt(pruned_hits[q])}")
    if tmp is not None:
        tmp.cleanup()
    return {"full_bytes_per_page": fb, "pruned_bytes_per_page": pb, "keep_ratio": pruned_info["keep_ratio"], "top1": top1}
