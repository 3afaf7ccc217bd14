"""``colprune demo``: the whole pipeline offline, PDFs in, pruned index, answers out."""

from __future__ import annotations

import argparse
import os

from .common import Command
from .options import is_quiet, positive_int, quiet_if_asked

__all__ = ["DEMO"]


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo, write_demo_dataset, write_demo_pdfs

    if args.dataset:
        written = write_demo_dataset(args.dataset)
        print(f"wrote a study dataset to {args.dataset}: {os.path.relpath(written['pdfs'], args.dataset)}/ (16 pages), "
              f"queries.jsonl, qrels/test.tsv; try: colprune study --dataset {args.dataset}")
        return 0
    if args.docs:
        paths = write_demo_pdfs(args.docs)
        print(f"wrote {len(paths)} PDFs to {args.docs}: {', '.join(os.path.basename(p) for p in paths)}")
        return 0
    quiet_if_asked(args)
    run_demo(args.out, n_pages=args.pages, quiet=is_quiet(args), synthetic=args.synthetic)
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="folder for the index files (default: a temporary folder)")
    p.add_argument("--docs", default=None, metavar="DIR",
                   help="only write the demo's PDFs into DIR (16 pages of text), to try `colprune build` on")
    p.add_argument("--dataset", default=None, metavar="DIR",
                   help="only write a study dataset into DIR: the PDFs, queries.jsonl and qrels/test.tsv "
                        "(`colprune study --dataset DIR` reads it)")
    p.add_argument("--synthetic", action="store_true", help="generated embeddings instead of PDFs and a model")
    p.add_argument("--pages", type=positive_int, default=300, help="--synthetic: pages to generate (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


DEMO = Command(
    "demo", "the whole pipeline offline: PDFs in, pruned index, answers out",
    ["colprune demo", "colprune demo --out demo-index", "colprune demo --docs pdfs     # just the sample PDFs",
     "colprune demo --dataset ds    # the PDFs with questions and graded pages, for colprune study",
     "colprune demo --synthetic --pages 500"],
    _demo_arguments, cmd_demo,
    description="Write a few PDFs, encode their pages with the offline MiniLM text-token encoder, build a full\n"
    "index, derive a DocPruner-pruned one, answer questions from both, and print the bytes saved and the hits.\n"
    "--synthetic does the same on generated ColPali-like embeddings (no model).",
)


