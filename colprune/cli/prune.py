"""``colprune prune``: derive a pruned (or re-encoded) index from a full one."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..distributed import ShardedIndex
from ..errors import UsageError
from ..index.layout import CODECS
from .common import Command, count_committed, interrupt_hint, open_index, print_summary, pruned_by
from .options import add_pruner_args, is_quiet, pruner_from_args

__all__ = ["PRUNE"]


def cmd_prune(args: argparse.Namespace) -> int:
    pruner = pruner_from_args(args, args.pruner or "adaptive-cluster")
    if os.path.abspath(args.source) == os.path.abspath(args.output):
        raise UsageError("SOURCE and OUTPUT are the same: write the pruned index to another path")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists: add --overwrite to replace it")
    with open_index(args.source) as src:
        if isinstance(src, ShardedIndex):
            raise UsageError(f"{args.source} is a sharded collection: prune derives from one index "
                             "(build the smaller collection with `colprune build ... --ray --pruner ...`)")
        codec = args.dtype or src.codec
        if args.no_rerank and codec != "binary":
            raise UsageError("--no-rerank applies to --dtype binary only")
        if args.signal and args.signal not in src.signal_names:
            raise UsageError(f"{args.source} stores no signal {args.signal!r}; it has {src.signal_names} "
                             "(build with --signals to store them)")
        _say_if_pruned(src.info(), args.source, args.output)
        total = len(src)
        interrupt_hint(args, lambda: f"{args.output} is incomplete ({count_committed(args.output) or 0} of {total} pages); "
                                      f"run the same command with --overwrite to redo it")
        kw: dict[str, Any] = {"dtype": args.dtype, "overwrite": args.overwrite, "progress": not is_quiet(args),
                              "rerank": not args.no_rerank}
        if args.signal:
            kw["signal"] = args.signal
        dst = src.derive(args.output, pruner, **kw)
    with dst:
        print_summary(dst, args.output)
    return 0


def _say_if_pruned(info: dict[str, Any], source: str, output: str) -> None:
    """One line on stderr when SOURCE's pages were already pruned: pruning again compounds."""
    name = pruned_by(info)
    if name is None:
        return
    ratio = info.get("keep_ratio")
    kept = "" if ratio is None else f", keeps {ratio:.1%} of its original vectors"
    print(f"colprune prune: {source} is already pruned ({name}{kept}); pruning again compounds: {output} keeps a "
          "share of what is left. Build a full index with --pruner none to prune from all vectors.",
          file=sys.stderr, flush=True)


def _prune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="index to read (ideally a full one, built with --pruner none)")
    p.add_argument("output", help="index to write")
    p.add_argument("--codec", "--dtype", dest="dtype", default=None, choices=sorted(CODECS),
                   help="vector codec of OUTPUT (default: the source's); residual1/2/4 train a codebook on a sample of "
                        "SOURCE first")
    p.add_argument("--no-rerank", action="store_true",
                   help="--dtype binary: keep no float16 rerank copy (the file shrinks to the binary codes)")
    p.add_argument("--signal", default=None, help="prune by this stored signal instead of the importance")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_pruner_args(p, None, "default adaptive")


PRUNE = Command(
    "prune", "derive a pruned (or re-encoded) index from a full one, without re-encoding pages",
    [
        "colprune prune full.h5 adaptive.h5 --pruner adaptive --k -0.25",
        "colprune prune full.h5 ward.h5 --pruner ward --ratio 0.25",
        "colprune prune full.h5 small.h5 --pruner adaptive --k 0 --dtype int8      # prune and re-encode",
        "colprune prune full.h5 tiny.h5 --pruner none --dtype binary --no-rerank   # 32x smaller, Hamming only",
        "colprune prune full.h5 lean.h5 --pruner adaptive --codec residual2       # 2-bit residuals + centroid index",
    ],
    _prune_arguments, cmd_prune,
    description="Re-prune every page of SOURCE from its stored vectors and importance into OUTPUT; --dtype re-encodes.",
)


