"""``colprune search`` through a running ``colprune serve`` of the same index: no model load.

Used only for text queries with options the server honours (no query embeddings files, no
``--query-encoder``, no ``--ray``), after every argument has been checked as for a local search;
``--no-server`` turns it off. Any failure means the search runs here, as if no server were up.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..serve.client import ask_server
from .options import is_quiet

__all__ = ["search_via_server", "add_no_server_argument"]


def search_via_server(args: argparse.Namespace, index, searcher, texts: list[str], vectors: list[Any],
                      where: dict | None) -> list[dict] | None:
    """The results a running server gives for ``texts`` (what ``searcher.search`` would), or None."""
    if getattr(args, "no_server", False) or not texts or vectors or getattr(args, "query_encoder", None):
        return None
    if getattr(args, "ray", None) is not None:
        return None
    answer = ask_server(index.path, index.version, searcher.model_name(), texts, k=args.k, where=where,
                        candidates=args.candidates, rerank=args.rerank,
                        nprobe=getattr(args, "nprobe", None))
    if answer is None:
        return None
    results, where_from = answer
    if not is_quiet(args):
        print(f"(answered by colprune serve on {where_from})", file=sys.stderr)
    return results


def add_no_server_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-server", action="store_true",
                   help="search here even when a `colprune serve` of this index is running (by default text queries "
                        "go to it: no model load)")
