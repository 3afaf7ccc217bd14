"""Commands that look after an index: info, repack, delete, compact, verify, summarize, upgrade, show."""

from __future__ import annotations

import argparse
import json
import os

from ..distributed import ShardedIndex
from ..errors import NotFoundError, UnknownIdError, UsageError
from ..index import Index, repack
from ..index.storage import path_bytes, storage_report
from .common import Command, fmt_bytes, full_text, holds_text, interrupt_hint, open_index, print_summary, pruned_by
from .errors import EXIT_FORMAT
from .options import add_where_argument, counted, is_quiet, positive_int, where_from_args

__all__ = ["INFO", "REPACK", "DELETE", "COMPACT", "VERIFY", "SUMMARIZE", "UPGRADE", "SHOW"]


def cmd_info(args: argparse.Namespace) -> int:
    with open_index(args.index) as index:
        info = storage_report(index)
        skipped = index.skipped
    if skipped:
        info["skipped_pages"] = dict(skipped)
    info["full"] = pruned_by(info) is None
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    docs = info["docs"]
    held = holds_text(info)
    rows = [
        ("index", args.index),
        ("format", f"{info['format']} v{info['format_version']}"
                   + (f" (written by colprune {info['library_version']})" if info.get("library_version") else "")
                   + (f", {info['n_shards']} shards" if info.get("n_shards") else "")),
        ("pages", f"{docs:,}"),
        ("vectors", f"{info['vectors']:,} kept of {info['original_vectors']:,}"
                    + ("" if info["keep_ratio"] is None else f" ({info['keep_ratio']:.1%})")),
        ("codec", f"{info['codec']}, dim {info['dim']}" + (", with a float16 rerank copy" if info.get("rerank_vectors") else "")
                  + (f", {info['bytes_per_vector']} bytes/vector" if info.get("bytes_per_vector") else "")),
        *_codebook_rows(info),
        ("vectors/page", f"{fmt_bytes(info['vector_bytes_per_page'])} (unpruned "
                         f"{fmt_bytes(info['unpruned_vector_bytes_per_page'])})"),
        ("file", f"{fmt_bytes(info['file_bytes'])}, {fmt_bytes(info['file_bytes_per_page'])}/page"),
        ("also holds", (held or "-") + (" (estimated)" if info.get("holds_estimated") else "")),
        ("full", full_text(info)),
        ("pruner", json.dumps(info["pruner"]) if info["pruner"] else "-"),
        ("encoder", info["encoder"] or "-"),
    ]
    if skipped:
        rows.append(("skipped", f"{counted(len(skipped), 'page')} (their reasons: colprune info {args.index} --json)"))
    for k, v in rows:
        print(f"{k:>12}  {v}")
    return 0


def _codebook_rows(info: dict) -> list[tuple[str, str]]:
    """The ``codebook`` line of a residual index: K, bits, vectors trained on, error, its bytes per page."""
    cb = info.get("codebook")
    if not cb:
        return []
    per = "" if cb.get("bytes_per_page") is None else f", {fmt_bytes(cb['bytes_per_page'])}/page amortised"
    return [("codebook", f"{cb['n_centroids']:,} centroids, {cb['nbits']}-bit residuals, trained on {cb['n_trained']:,} "
                         f"vectors (error {cb['train_error']:.4g}); {fmt_bytes(cb['bytes'])}{per}")]


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--json", action="store_true", help="print JSON")


INFO = Command(
    "info", "pages, vectors kept, bytes per page (vectors and file), what the file holds, pruner, encoder",
    ["colprune info pages.h5", "colprune info pages.h5 --json"],
    _info_arguments, cmd_info,
    description="What an index holds and what it costs: vector bytes and file bytes per page, and what the\n"
    "file holds besides the vectors (a rerank copy, signals, covers, metadata).",
)


# -- repack ----------------------------------------------------------------------------------

def cmd_repack(args: argparse.Namespace) -> int:
    with open_index(args.index) as index:
        before = path_bytes(args.index)
        if args.no_rerank and not index.has_rerank:
            raise UsageError(f"{args.index} has no rerank copy to drop")
        if args.no_rerank and isinstance(index, ShardedIndex):
            raise UsageError(f"--no-rerank rewrites one index; {args.index} is a sharded collection")
    if args.no_rerank:
        interrupt_hint(args, lambda: f"{args.index} is unchanged")
        repack(args.index, rerank=False, progress=not is_quiet(args))
    else:
        with open_index(args.index, mode="a") as index:
            index.compact()
    after = path_bytes(args.index)
    print(f"{args.index}: {fmt_bytes(before)} -> {fmt_bytes(after)}")
    with open_index(args.index) as index:
        print_summary(index, args.index)
    return 0


def _repack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--no-rerank", action="store_true", help="also drop a binary index's float16 rerank copy")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


REPACK = Command(
    "repack", "rewrite an index to give back the space of deleted or replaced pages",
    ["colprune repack pages.h5", "colprune repack binary.h5 --no-rerank      # and drop the float16 rerank copy"],
    _repack_arguments, cmd_repack,
    description="Rewrite INDEX in place (through a temporary copy beside it) so the file holds only its pages.",
)


# -- delete, compact, verify, summarize, upgrade ---------------------------------------------

def cmd_delete(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as fh:
            ids += [line.strip() for line in fh if line.strip()]
    where = where_from_args(args)
    if not ids and where is None:
        raise UsageError("give page ids, --ids-file FILE or --where FILTER")
    with open_index(args.index, mode="a") as index:
        if where is not None:
            unknown = sorted(set(where) - index.filter_fields())
            if unknown:
                raise UsageError(f"--where: unknown metadata field {unknown[0]!r}; filterable: {sorted(index.filter_fields())}")
        try:
            n = index.delete(ids or None, where=where, missing="ignore" if args.missing_ok else "error")
        except UnknownIdError as e:  # in the CLI's words
            raise UnknownIdError(str(e).replace("missing='ignore'", "--missing-ok")) from e
        hint = _no_match_hint(index) if where is not None and n == 0 else ""
        print(f"{args.index}: deleted {counted(n, 'page')}, {len(index)} left "
              f"(colprune compact {args.index} gives their bytes back)" + hint)
    return 0


def _no_match_hint(index) -> str:
    """What the sources look like, for a --where that matched no page."""
    ids = index.ids
    source = (index.get(ids[0]).metadata or {}).get("source") if ids else None
    return f"; no page matched --where (sources look like {source!r}, as search prints them)" if source else ""


def _delete_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("ids", nargs="*", help="page ids, as search prints them")
    p.add_argument("--ids-file", metavar="FILE", help="more page ids, one per line")
    add_where_argument(p, "delete the pages")
    p.add_argument("--missing-ok", action="store_true",
                   help="skip ids that are not in the index (default: refuse, delete nothing)")


DELETE = Command(
    "delete", "delete pages by id or by metadata (one commit; compact gives the bytes back)",
    ["colprune delete pages.h5 'draft.pdf#1' 'draft.pdf#2'", "colprune delete pages.h5 --where source=old.pdf",
     "colprune delete pages.h5 --where '{\"source\": \"old.pdf\", \"page\": {\"gte\": 3}}'"],
    _delete_arguments, cmd_delete,
    description="Delete pages in one commit: readers see all of them gone or none. Unknown ids are refused\n"
    "before anything is deleted (--missing-ok skips them). Deleted pages are never returned again.",
)


def cmd_compact(args: argparse.Namespace) -> int:
    with open_index(args.index, mode="a") as index:
        if args.retrain and getattr(index, "codebook", None) is None:
            raise UsageError(f"--retrain trains a residual index's codebook again; {args.index} is {index.codec}")
        res = index.compact(retrain=True) if args.retrain else index.compact()
        print(f"{args.index}: {fmt_bytes(res['bytes_before'])} -> {fmt_bytes(res['bytes_after'])}, "
              f"{res['segments_before']} -> {counted(res['segments_after'], 'segment')}")
    return 0


def _index_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")


def _compact_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--retrain", action="store_true",
                   help="residual codecs: also train a new codebook on the live vectors and re-encode every segment")


COMPACT = Command(
    "compact", "rewrite segments with deleted pages and merge small ones (gives space back)",
    ["colprune compact pages.h5", "colprune compact pages.h5 --retrain   # residual codecs: a new codebook too"],
    _compact_arguments, cmd_compact,
    description="Reclaim the bytes of deleted and replaced pages and merge small segments, in one commit.\n"
    "A crash at any moment leaves the old state or the new one; readers keep their snapshot.",
)


def cmd_verify(args: argparse.Namespace) -> int:
    with open_index(args.index) as index:
        res = index.verify()
    print(f"{args.index}: ok, {counted(res['docs'], 'page')} in {counted(res['segments'], 'segment')}, "
          f"{fmt_bytes(res['bytes'])} checked")
    if res.get("leftovers"):
        print(f"{args.index}: {counted(len(res['leftovers']), 'folder')} left beside it by killed overwrites "
              f"(colprune gc {args.index} removes them)")
    return 0


VERIFY = Command(
    "verify", "check every byte of an index against its checksums",
    ["colprune verify pages.h5"], _index_only, cmd_verify,
    description="Read the whole index and check it against the checksums recorded when it was written.\n"
    f"Damage exits with status {EXIT_FORMAT} and names the file, dataset or page and rows.",
)


def cmd_summarize(args: argparse.Namespace) -> int:
    with open_index(args.index, mode="a") as index:
        if isinstance(index, ShardedIndex):
            raise UsageError(f"summarize rewrites one index's summaries; {args.index} is a sharded collection "
                             f"(summarize each shard: colprune summarize {args.index}/shard-NNNNN)")
        index.summarize(args.centroids)
    print(f"{args.index}: first-stage summaries of {args.centroids} centroids per page")
    return 0


def _summarize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--centroids", type=positive_int, default=4, help="centroids per page (default 4)")


SUMMARIZE = Command(
    "summarize", "(re)compute the stored first-stage summaries of two-stage search",
    ["colprune summarize pages.h5 --centroids 8"], _summarize_arguments, cmd_summarize,
    description="Compute each page's centroids for two-stage search (search --candidates N) and store them,\n"
    "rewriting the segments whose summaries have another size.",
)


def cmd_upgrade(args: argparse.Namespace) -> int:
    if os.path.exists(args.output) and not args.overwrite:
        raise UsageError(f"{args.output} exists; pass --overwrite to replace it")
    with Index.upgrade(args.source, args.output, overwrite=args.overwrite, progress=not is_quiet(args)) as index:
        print(f"{args.output}: format {index.format_version}, {len(index)} pages from {args.source}")
    return 0


def _upgrade_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a format 1 or 2 index file")
    p.add_argument("output", help="the new index (a folder)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


UPGRADE = Command(
    "upgrade", "rewrite an old (format 1 or 2) index file as a current collection",
    ["colprune upgrade old.h5 pages.h5"], _upgrade_arguments, cmd_upgrade,
    description="colprune reads old index files but writes only the current format: this copies every page,\n"
    "as stored, into a new collection. The old file is left as it is.",
)


# -- show ------------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from ..show import render_page

    with open_index(args.index) as index:
        if args.page not in index:
            raise NotFoundError(f"no page {args.page!r} in {args.index} (page ids: colprune search, or Index.ids)")
        print(render_page(index, args.page, args.output, dpi=args.dpi, root=args.root))
    return 0


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("page", help="page id, as search prints it")
    p.add_argument("-o", "--output", default="page.png", help="PNG to write (default page.png)")
    p.add_argument("--dpi", type=positive_int, default=110)
    p.add_argument("--root", default=".", metavar="DIR",
                   help="the folder the page sources are under (default: the current one); sources elsewhere are refused")


SHOW = Command(
    "show", "draw a page with its kept patches and importance heat map (image encoders)",
    ["colprune show scans.h5 'report.pdf#3' -o page.png", "colprune show scans.h5 p1.png -o p1.png --dpi 150"],
    _show_arguments, cmd_show,
    description="Re-read the page image from its source (the path and page number in its metadata), dim the\n"
    "pruned patches, outline the kept ones, and draw the importance of the kept patches on the grid.\n"
    "Pages from text encoders (minilm) have no patch grid to draw.",
)


