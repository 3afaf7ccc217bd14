"""What the commands share: the command registry, output formatting, opening indexes, early checks.

Every subcommand is one :class:`Command` (name, help, examples, the function that adds its arguments,
the function that runs it); :func:`register` adds one to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..distributed import ShardedIndex, is_sharded
from ..errors import NotFoundError, UsageError
from ..index import Index
from ..index.storage import storage_report
from . import sharded

__all__ = ["Command", "COMMANDS", "register", "fmt_bytes", "HOLD_NAMES", "holds_text",
           "summary_line", "print_summary", "pruned_by", "full_text",
           "open_index", "interrupt_hint", "interrupt_detail", "count_committed",
           "EMBEDDING_EXTS", "is_embedding_file", "check_inputs"]


@dataclass
class Command:
    """One subcommand: ``arguments(parser)`` adds its options, ``run(args)`` returns the exit status."""

    name: str
    help: str
    examples: Sequence[str]
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    aliases: Sequence[str] = ()


#: Subcommands in the order ``colprune --help`` lists them.
COMMANDS: list[Command] = []


def register(command: Command) -> Command:
    """Add (or replace, by name) a subcommand."""
    COMMANDS[:] = [c for c in COMMANDS if c.name != command.name]
    COMMANDS.append(command)
    return command


# -- sizes -----------------------------------------------------------------------------------

def fmt_bytes(n: float | None) -> str:
    """``1,234 B``, ``1.2 KB`` ... ``1.2 GB``; ``-`` for None."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


HOLD_NAMES = {"rerank": "float16 rerank copy", "signals": "importance signals", "covers": "merge covers",
              "metadata": "ids and metadata", "summaries": "search summaries", "positions": "positions and importance",
              "other": "other (file structure, free space)"}


def holds_text(info: dict[str, Any]) -> str:
    """What the file holds besides the vectors, per page: ``float16 rerank copy 1.2 KB/page, ...``."""
    docs = info.get("docs") or 0
    parts = []
    for key, n in (info.get("holds") or {}).items():
        if key == "vectors" or not n:
            continue
        per = f"{fmt_bytes(n / docs)}/page" if docs else fmt_bytes(n)
        parts.append(f"{HOLD_NAMES.get(key, key)} {per}")
    return ", ".join(parts)


def summary_line(index: Index | dict[str, Any], shown: str | None = None) -> str:
    """One line: pages, vectors kept, vector bytes and file bytes per page, what else the file holds.

    ``index``: an open index, or its :func:`~colprune.index.storage.storage_report` (a build's ``report.info``).
    """
    info = index if isinstance(index, dict) else storage_report(index)
    ratio = info.get("keep_ratio")
    docs = info["docs"]
    line = (f"{shown or info['path']}: {docs:,} pages, {info['vectors']:,} of {info['original_vectors']:,} vectors kept"
            f" ({'-' if ratio is None else f'{ratio:.1%}'}); vectors {fmt_bytes(info['vector_bytes_per_page'])}/page"
            f" ({info['codec']}, unpruned {fmt_bytes(info['unpruned_vector_bytes_per_page'])})")
    if docs:
        line += f"; file {fmt_bytes(info['file_bytes_per_page'])}/page ({fmt_bytes(info['file_bytes'])})"
        held = holds_text(info)
        if held:
            line += f", also holding {held}"
    return line


def pruned_by(info: dict[str, Any]) -> str | None:
    """The pruner that already pruned an index's pages (from its info's pruner record, following
    ``derived_from`` through re-encodings with ``none``), or None for a full index."""
    record = info.get("pruner")
    while record:
        if record.get("name") not in (None, "none"):
            return str(record["name"])
        record = record.get("derived_from")
    return None


def full_text(info: dict[str, Any]) -> str:
    """``yes`` for a full index, else ``no: pruned by adaptive, 49.5% of the original vectors kept``."""
    name = pruned_by(info)
    if name is None:
        return "yes"
    ratio = info.get("keep_ratio")
    return f"no: pruned by {name}" + ("" if ratio is None else f", {ratio:.1%} of the original vectors kept")


def print_summary(index: Index | dict[str, Any], shown: str | None = None) -> None:
    """The summary line, naming the index as the user did (``shown``)."""
    print(summary_line(index, shown))


# -- opening indexes -------------------------------------------------------------------------

def open_index(path: str, mode: str = "r", args: argparse.Namespace | None = None):
    """An :class:`Index`, or a sharded collection's ``ShardedIndex`` (searched on Ray with ``--ray``)."""
    if not os.path.exists(path):
        raise NotFoundError(f"no index at {path}")
    is_shards = is_sharded(path)
    if args is not None and getattr(args, "ray", None) is not None and not is_shards:
        raise UsageError(f"--ray searches sharded collections (built with `colprune build ... --ray`); {path} is one index")
    if is_shards:
        if mode == "r":
            return sharded.open_index(path, args)
        return ShardedIndex.open(path, mode=mode)
    return Index.open(path, mode=mode)


def interrupt_hint(args: argparse.Namespace, fn: Callable[[], str]) -> None:
    """On Ctrl-C, ``fn()`` says what was committed and how to resume (see :func:`interrupt_detail`)."""
    args.on_interrupt = fn


def interrupt_detail(args: argparse.Namespace) -> Callable[[], str] | None:
    """The function :func:`interrupt_hint` set, if any."""
    return getattr(args, "on_interrupt", None)


def count_committed(path: str) -> int | None:
    """Pages committed in the index at ``path``, or None where it cannot be read (for messages only)."""
    try:
        with open_index(path) as ix:
            return len(ix)
    except Exception:  # noqa: BLE001 - only for the message
        return None


# -- early checks ----------------------------------------------------------------------------

EMBEDDING_EXTS = (".pt", ".npz", ".npy")


def is_embedding_file(path: str) -> bool:
    """Whether ``path`` names an embeddings file (by its extension)."""
    return os.path.splitext(path)[1].lower() in EMBEDDING_EXTS


def check_inputs(inputs: Sequence[str]) -> None:
    """:class:`NotFoundError` for the first input that does not exist."""
    for item in inputs:
        if not os.path.exists(item):
            raise NotFoundError(f"{item}: no such file or folder")

