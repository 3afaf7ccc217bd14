"""``colprune demo``: the whole pipeline, offline, on documents it generates.

It writes a few PDFs with a text layer, encodes every page with the offline MiniLM text-token
encoder (real pretrained weights and attention), builds a *full* index, derives a
DocPruner-pruned one from it (keep tokens whose [CLS] attention exceeds mean - 0.25 std), and
answers a few questions from both, printing what was stored and what was found.
``--synthetic`` runs the same on generated ColPali-like embeddings instead (no model).
"""

from __future__ import annotations

import os
import tempfile

from .index import Index
from .pruning import AdaptiveThreshold

__all__ = ["run_demo", "write_demo_pdfs", "write_demo_dataset"]


def write_demo_pdfs(folder: str) -> list[str]:
    """Write the demo documents as PDFs with a text layer (matplotlib, TrueType fonts)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from .demo_docs import DOCUMENTS

    os.makedirs(folder, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        for name, pages in DOCUMENTS.items():
            path = os.path.join(folder, name)
            with PdfPages(path) as pdf:
                for text in pages:
                    fig = plt.figure(figsize=(8.27, 11.69))
                    fig.text(0.1, 0.9, "\n".join(textwrap.wrap(text, 70)), fontsize=12, va="top")
                    pdf.savefig(fig)
                    plt.close(fig)
            paths.append(path)
    return paths


def write_demo_dataset(folder: str) -> dict[str, str]:
    """Write a study dataset of the demo documents: ``pdfs/`` (16 pages), ``queries.jsonl`` and
    ``qrels/test.tsv`` (each question graded against the page that answers it), the PDF-folder form
    ``colprune study --dataset`` reads.

    Returns the paths written: ``{"pdfs", "queries", "qrels"}``.
    """
    import json

    from .demo_docs import QUERIES

    pdfs = os.path.join(folder, "pdfs")
    write_demo_pdfs(pdfs)
    queries = os.path.join(folder, "queries.jsonl")
    with open(queries, "w", encoding="utf-8") as f:
        for i, (question, _) in enumerate(QUERIES):
            f.write(json.dumps({"_id": f"q{i}", "text": question}) + "\n")
    qrels = os.path.join(folder, "qrels", "test.tsv")
    os.makedirs(os.path.dirname(qrels), exist_ok=True)
    with open(qrels, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i, (_, page_id) in enumerate(QUERIES):
            f.write(f"q{i}\t{page_id}\t1\n")
    return {"pdfs": pdfs, "queries": queries, "qrels": qrels}


def run_demo(out: str | None = None, *, quiet: bool = False, synthetic: bool = False, n_pages: int = 300) -> dict:
    """Run the demo; returns the printed figures. Index files go to ``out`` (default: a temp dir)."""
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="colprune-demo-")
        out = tmp.name
    os.makedirs(out, exist_ok=True)
    try:
        return (_synthetic if synthetic else _documents)(out, quiet, n_pages)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _documents(out: str, quiet: bool, n_pages: int) -> dict:
    from .demo_docs import QUERIES
    from .encoders import load_encoder
    from .pipeline import build

    docs = os.path.join(out, "docs")
    paths = write_demo_pdfs(docs)
    encoder = load_encoder("minilm")
    full_path, pruned_path = os.path.join(out, "full.h5"), os.path.join(out, "pruned.h5")
    # the same build as `colprune build docs -o full.h5 --pruner none`: page ids are paths
    # relative to docs/ (thermometry.pdf#1), whatever the working directory
    report = build([docs], full_path, encoder=encoder, pruner="none", overwrite=True, progress=not quiet)
    print(f"wrote {len(paths)} PDFs with {report.indexed} pages to {docs}")
    with Index.open(full_path) as full:
        pruned = full.derive(pruned_path, AdaptiveThreshold(k=-0.25), overwrite=True)
        queries = encoder.encode_queries([q for q, _ in QUERIES])
        results = {name: ix.search(queries, k=3) for name, ix in (("full", full), ("pruned", pruned))}
        fi, pi = full.info(), pruned.info()
        pruned.close()
    print(f"full index   {full_path}: {fi['vectors']:,} token vectors, "
          f"{fi['vector_bytes_per_page'] / 1024:.1f} KB/page (float16, dim {fi['dim']})")
    print(f"pruned index {pruned_path}: DocPruner k=-0.25 kept {pi['keep_ratio']:.1%} of vectors, "
          f"{pi['vector_bytes_per_page'] / 1024:.1f} KB/page, saved {1 - pi['vectors'] / fi['vectors']:.1%} of the bytes")
    top1 = {}
    for name, hits in results.items():
        top1[name] = sum(h[0].id == want for h, (_, want) in zip(hits, QUERIES))
    for (q, want), fh, ph in zip(QUERIES, results["full"], results["pruned"]):
        print(f"\n{q!r} (answer: {want})")
        for label, hs in (("full  ", fh), ("pruned", ph)):
            print(f"  {label} " + ", ".join(f"{h.id} ({h.score:.2f})" for h in hs))
    print(f"\ntop-1 correct: full {top1['full']}/{len(QUERIES)}, pruned {top1['pruned']}/{len(QUERIES)}")
    print(f"\nnext: colprune search {pruned_path} \"your question\"   (or colprune info {pruned_path})"
          if not out.startswith(tempfile.gettempdir() + os.sep + "colprune-demo-") else
          "\nnext: colprune demo --out DIR keeps the indexes; colprune demo --docs pdfs writes just the PDFs")
    return {"keep_ratio": pi["keep_ratio"], "full_bytes_per_page": fi["vector_bytes_per_page"],
            "pruned_bytes_per_page": pi["vector_bytes_per_page"], "top1": top1, "queries": len(QUERIES)}


def _synthetic(out: str, quiet: bool, n_pages: int) -> dict:
    from tqdm.auto import tqdm

    from .synthetic import make_corpus

    corpus = make_corpus(n_pages, seed=0)
    n_vec = sum(e.shape[0] for e in corpus.embeddings)
    print(f"generated {n_pages} pages ({n_vec:,} patch vectors, dim 128) and {len(corpus.queries)} queries")
    full_path, pruned_path = os.path.join(out, "full.h5"), os.path.join(out, "pruned.h5")
    with Index.create(full_path, dim=128, dtype="float16", encoder="synthetic", overwrite=True) as full:
        for lo in tqdm(range(0, n_pages, 50), desc="build full index", unit="batch", disable=quiet):
            sl = slice(lo, lo + 50)
            full.add(corpus.ids[sl], corpus.embeddings[sl], corpus.importance[sl], pruner="none")
        pruned = full.derive(pruned_path, AdaptiveThreshold(k=-0.25), overwrite=True, progress=not quiet)
        fi, pi = full.info(), pruned.info()
        hits = {"full": full.search(corpus.queries, k=3), "pruned": pruned.search(corpus.queries, k=3)}
        pruned.close()
    fb, pb = fi["vector_bytes_per_page"], pi["vector_bytes_per_page"]
    print(f"full index   {full_path}: {fb / 1024:,.1f} KB/page of float16 vectors")
    print(f"pruned index {pruned_path}: {pb / 1024:,.1f} KB/page, DocPruner k=-0.25 kept "
          f"{pi['keep_ratio']:.1%} of vectors, saved {1 - pb / fb:.1%} of the bytes")
    top1 = {k: sum(h[0].id == rel for h, rel in zip(v, corpus.relevant)) for k, v in hits.items()}
    print(f"top-1 correct on {len(corpus.queries)} queries: full {top1['full']}, pruned {top1['pruned']}")
    return {"keep_ratio": pi["keep_ratio"], "full_bytes_per_page": fb, "pruned_bytes_per_page": pb, "top1": top1,
            "queries": len(corpus.queries)}
