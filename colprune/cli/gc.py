"""``colprune gc``: remove what killed overwrites left beside an index."""

from __future__ import annotations

import argparse
import os

from ..errors import NotFoundError
from ..index.leftovers import find_leftovers, leftover_bytes, remove_leftovers
from .common import Command, fmt_bytes

__all__ = ["GC"]


def cmd_gc(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.index)
    found = find_leftovers(path)
    if not found and not os.path.lexists(path):
        raise NotFoundError(f"no index at {args.index}, and nothing left beside it")
    if not found:
        print(f"{args.index}: nothing left by killed overwrites")
        return 0
    sizes = {f: leftover_bytes(f) for f in found}
    removed, kept = remove_leftovers(path, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for f in removed:
        print(f"  {verb} {os.path.basename(f)} ({fmt_bytes(sizes.get(f, 0))})")
    for f in kept:
        print(f"  kept {os.path.basename(f)}: another process holds it (a build in progress) or it cannot be removed")
    total = sum(sizes.get(f, 0) for f in removed)
    print(f"{args.index}: {verb} {len(removed)} of {len(found)} left by killed overwrites, {fmt_bytes(total)}"
          + (" (run without --dry-run to remove them)" if args.dry_run and removed else ""))
    return 0


def _gc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="the index whose leftovers to remove (it need not exist)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")


GC = Command(
    "gc", "remove the hidden folders killed overwrites left beside an index",
    ["colprune gc pages.h5 --dry-run", "colprune gc pages.h5"], _gc_arguments, cmd_gc,
    description="Remove the .NAME.tmp-* and .NAME.old-* folders that overwrites (build --overwrite, repack,\n"
    "upgrade --overwrite) killed midway left beside INDEX. A folder a running process holds is kept;\n"
    "symbolic links are never followed. colprune verify and opening the index report them.",
)
