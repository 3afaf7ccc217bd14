"""``colprune`` command line: build, prune, search, info, demo. A thin layer over the library."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from typing import Any, Sequence


from . import __version__
from .errors import ColpruneError
from .index import Index
from .index.layout import CODECS
from .pruning import PRUNERS, Pruner, make_pruner

__all__ = ["main"]

_FMT = argparse.RawDescriptionHelpFormatter


def _pruner_params() -> dict[str, Any]:
    """Every constructor parameter of every registered pruner, with its default's type."""
    params: dict[str, Any] = {}
    for cls in PRUNERS.values():
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and isinstance(p.default, (int, float, str)) and not isinstance(p.default, bool):
                params.setdefault(name, type(p.default))
    return params


def _add_pruner_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--pruner", default=default, choices=sorted(PRUNERS), help=f"pruning method (default: {default})")
    for name, typ in _pruner_params().items():
        owners = [n for n, c in PRUNERS.items() if name in inspect.signature(c.__init__).parameters]
        g.add_argument(f"--{name}", type=typ, default=None, help=f"parameter of {', '.join(owners)}")
    g.add_argument("--params", default=None, metavar="JSON",
                   help='all parameters as JSON, e.g. for prune-merge: \'{"pruner": {"name": "adaptive", '
                        '"params": {"k": 0}}, "merger": {"name": "ward", "params": {"ratio": 0.5}}}\'')


def _pruner_from_args(args: argparse.Namespace) -> Pruner:
    accepted = inspect.signature(PRUNERS[args.pruner].__init__).parameters
    given = {n: getattr(args, n) for n in _pruner_params() if getattr(args, n) is not None}
    if args.params:
        try:
            given.update(json.loads(args.params))
        except json.JSONDecodeError as e:
            raise ColpruneError(f"--params is not JSON: {e}") from None
    extra = sorted(set(given) - set(accepted))
    if extra:
        raise ColpruneError(f"--{extra[0]} does not apply to --pruner {args.pruner}")
    return make_pruner(args.pruner, **given)


def _progress(iterable, total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="page", disable=quiet)


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


# -- build -------------------------------------------------------------------------------

EMBEDDING_EXTS = (".pt", ".npz", ".npy")


def _is_embedding_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in EMBEDDING_EXTS


def cmd_build(args: argparse.Namespace) -> int:
    kinds = {_is_embedding_file(p) for p in args.inputs}
    if len(kinds) > 1:
        raise ColpruneError("give either embedding files (.pt/.npz/.npy) or pages (PDFs, images, text, folders), not both")
    if kinds == {False}:
        return _build_from_pages(args)
    from .io import load_embeddings

    pruner = _pruner_from_args(args)
    sets = [load_embeddings(p) for p in args.inputs]
    dim = args.dim or next((s.embeddings[0].shape[1] for s in sets if len(s)), None)
    if dim is None:
        raise ColpruneError("the input files hold no pages")
    if os.path.exists(args.output) and not args.overwrite:
        index = Index.open(args.output, mode="a")
    else:
        index = Index.create(args.output, dim, args.dtype, encoder=args.encoder, overwrite=args.overwrite)
    with index:
        done = set(index.ids)
        total = sum(len(s) for s in sets)
        skipped = 0
        with _progress(None, total, "build", args.quiet) as bar:
            for s in sets:
                todo = [i for i, doc_id in enumerate(s.ids) if doc_id not in done]
                skipped += len(s) - len(todo)
                bar.update(len(s) - len(todo))
                for lo in range(0, len(todo), args.batch):
                    rows = todo[lo : lo + args.batch]
                    pick = lambda seq: None if seq is None else [seq[i] for i in rows]  # noqa: E731
                    index.add(
                        pick(s.ids), pick(s.embeddings), pick(s.importance), pruner=pruner,
                        metadata=pick(s.metadata) or [{"source": s.source, "page": i} for i in rows],
                        patch_mask=pick(s.patch_mask), grids=pick(s.grids),
                    )
                    bar.update(len(rows))
        info = index.info()
    if skipped:
        print(f"skipped {skipped} pages already in {args.output}")
    _summary(info)
    return 0


def _build_from_pages(args: argparse.Namespace) -> int:
    from .encoders import PageError, collect_pages, load_encoder

    pruner = _pruner_from_args(args)

    def skipped(e: Exception) -> None:
        print(f"colprune build: skipped: {e}", file=sys.stderr)

    pages = collect_pages(args.inputs, skip_bad=args.skip_bad, on_skip=skipped)
    appending = os.path.exists(args.output) and not args.overwrite
    if appending:
        with Index.open(args.output) as existing:
            if existing.encoder and existing.encoder != args.model:
                raise ColpruneError(f"{args.output} was built with --model {existing.encoder}, not {args.model}")
    encoder = load_encoder(args.model, importance=args.importance, device=args.device)
    if appending:
        index = Index.open(args.output, mode="a")
    else:
        index = Index.create(args.output, encoder.dim, args.dtype, encoder=args.model, overwrite=args.overwrite)
    with index:
        done = set(index.ids)
        todo = [p for p in pages if p.id not in done]
        with _progress(None, len(pages), "build", args.quiet) as bar:
            bar.update(len(pages) - len(todo))
            for lo in range(0, len(todo), args.batch):
                batch, contents = [], []
                for p in todo[lo : lo + args.batch]:
                    try:
                        content = p.text() if encoder.input_kind == "text" else p.image(dpi=args.dpi)
                        if encoder.input_kind == "text" and not content.strip():
                            raise PageError(f"{p.id}: no text (a scanned page or an image?); the text encoder "
                                            f"{args.model!r} reads text layers only")
                    except PageError as e:
                        if not args.skip_bad:
                            raise
                        skipped(e)
                        continue
                    batch.append(p)
                    contents.append(content)
                if batch:
                    encoded = encoder.encode_pages(contents)
                    index.add(
                        [p.id for p in batch], [e.vectors for e in encoded], [e.importance for e in encoded],
                        pruner=pruner, metadata=[p.metadata for p in batch],
                        patch_mask=[e.patch_mask for e in encoded], grids=[e.grid for e in encoded],
                    )
                bar.update(len(todo[lo : lo + args.batch]))
        info = index.info()
    if len(todo) < len(pages):
        print(f"skipped {len(pages) - len(todo)} pages already in {args.output}")
    _summary(info)
    return 0


def _summary(info: dict[str, Any]) -> None:
    ratio = info["keep_ratio"]
    print(
        f"{info['path']}: {info['docs']} pages, {info['vectors']:,} of {info['original_vectors']:,} vectors kept"
        f" ({'-' if ratio is None else f'{ratio:.1%}'}), {_fmt_bytes(info['vector_bytes_per_page'])} per page"
        f" ({info['dtype']}, unpruned {_fmt_bytes(info['unpruned_vector_bytes_per_page'])})"
    )


# -- prune -------------------------------------------------------------------------------

def cmd_prune(args: argparse.Namespace) -> int:
    pruner = _pruner_from_args(args)
    with Index.open(args.source) as src:
        dst = src.derive(args.output, pruner, dtype=args.dtype, overwrite=args.overwrite, progress=not args.quiet)
    with dst:
        _summary(dst.info())
    return 0


# -- search ------------------------------------------------------------------------------

def cmd_search(args: argparse.Namespace) -> int:
    from .io import load_embeddings

    with Index.open(args.index) as index:
        qids, qvecs = [], []
        texts = [q for q in args.queries if not (_is_embedding_file(q) and os.path.exists(q))]
        for q in args.queries:
            if q not in texts:
                qs = load_embeddings(q)
                qids += qs.ids
                qvecs += qs.embeddings
        if texts:
            if not index.encoder:
                raise ColpruneError(f"{args.index} records no encoder: pass query embeddings files instead of text")
            from .encoders import load_encoder

            qids += texts
            qvecs += load_encoder(index.encoder).encode_queries(texts)
        hits = index.search(qvecs, k=args.k, n_threads=args.threads)
    if args.json:
        print(json.dumps([{"query": qid, "hits": [{"id": h.id, "score": h.score} for h in hs]} for qid, hs in zip(qids, hits)]))
        return 0
    for qid, hs in zip(qids, hits):
        print(f"query {qid}")
        for rank, h in enumerate(hs, 1):
            print(f"  {rank:>3}. {h.score:10.4f}  {h.id}")
    return 0


# -- info --------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    with Index.open(args.index) as index:
        info = index.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [
        ("file", f"{info['path']} ({_fmt_bytes(info['file_bytes'])})"),
        ("format", f"{info['format']} v{info['format_version']} (written by colprune {info['library_version']})"),
        ("pages", f"{info['docs']:,}"),
        ("vectors", f"{info['vectors']:,} kept of {info['original_vectors']:,}"),
        ("keep ratio", "-" if info["keep_ratio"] is None else f"{info['keep_ratio']:.1%}"),
        ("codec", f"{info['codec']}, dim {info['dim']}" + (", float16 rerank copy" if info["rerank_vectors"] else "")),
        ("bytes/page", f"{_fmt_bytes(info['vector_bytes_per_page'])} of vectors "
                       f"({_fmt_bytes(info['stored_bytes_per_page'])} with positions and importance); "
                       f"unpruned {_fmt_bytes(info['unpruned_vector_bytes_per_page'])}"),
        ("pruner", json.dumps(info["pruner"]) if info["pruner"] else "-"),
        ("encoder", info["encoder"] or "-"),
    ]
    for k, v in rows:
        print(f"{k:>11}  {v}")
    return 0


# -- show --------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from .show import render_page

    with Index.open(args.index) as index:
        if args.page not in index:
            raise ColpruneError(f"no page {args.page!r} in {args.index}")
        print(render_page(index, args.page, args.output, dpi=args.dpi))
    return 0


# -- study -------------------------------------------------------------------------------

def cmd_study(args: argparse.Namespace) -> int:
    from .study import DEFAULT_GRID, run_study

    grid = DEFAULT_GRID
    if args.grid:
        with open(args.grid) as f:
            try:
                grid = json.load(f)
            except json.JSONDecodeError as e:
                raise ColpruneError(f"{args.grid}: not JSON ({e})") from None
    budgets = [float(x) for x in args.budgets.split(",")] if args.budgets else None
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    codecs = args.codecs.split(",") if args.codecs else None
    run_study(args.dataset, args.encoder, args.out, grid=grid, budgets=budgets, methods=methods, codecs=codecs,
              progress=not args.quiet)
    return 0


# -- demo --------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, n_pages=args.pages, quiet=args.quiet, synthetic=args.synthetic)
    return 0


# -- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colprune",
        formatter_class=_FMT,
        description="Multi-vector index with adaptive patch pruning for visual document retrieval.",
        epilog="examples:\n  colprune demo\n  colprune build pages.pt -o full.h5 --pruner none\n"
        "  colprune prune full.h5 pruned.h5 --pruner adaptive --k -0.25\n  colprune search pruned.h5 queries.pt -k 5\n"
        "  colprune info pruned.h5",
    )
    parser.add_argument("--version", action="version", version=f"colprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "build", formatter_class=_FMT, help="index precomputed page embeddings",
        description="Prune and index precomputed page embeddings. Re-running appends and skips pages already present.\n\n"
        "Pages: PDFs, images and .txt/.md files, or folders of them. Each PDF page is one page (id PATH#N);\n"
        "they are encoded with --model, pruned and appended --batch at a time.\n\n"
        "Embedding files (see colprune.io): .pt (torch.save of a list of (n_i, dim) tensors, or a dict with\n"
        "'embeddings' and optional 'importance', 'patch_mask', 'ids', 'metadata', 'grids'), .npz (CSR 'vectors' +\n"
        "'offsets' [+ 'importance', 'patch_mask', 'ids'], or 'embeddings' (n, m, dim)), .npy ((n, m, dim) or (m, dim)).",
        epilog="examples:\n  colprune build papers/ -o pages.h5 --pruner adaptive --k -0.25   # PDFs, offline MiniLM text encoder\n"
        "  colprune build pages.pt -o full.h5 --pruner none          # full index, any pruner derivable later\n"
        "  colprune build a.npz b.npz -o pages.h5 --pruner adaptive --k -0.25\n"
        "  colprune build pages.pt -o pages.h5 --pruner ratio --ratio 0.3 --dtype float32",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="pages (PDFs, images, .txt/.md files, folders of them) or embedding files (.pt, .npz, .npy)")
    p.add_argument("-o", "--output", required=True, help="index file to create or extend")
    p.add_argument("--dtype", default="float16", choices=sorted(CODECS), help="vector codec (default float16)")
    p.add_argument("--dim", type=int, default=None, help="embedding dim (default: from the first page)")
    p.add_argument("--encoder", default=None, help="embedding files: name of the model that made them, stored in the file")
    g = p.add_argument_group("encoding pages")
    g.add_argument("--model", default="minilm",
                   help="page encoder: 'minilm' (offline text-token fallback, the default), a local path or a hub id")
    g.add_argument("--importance", default="cls", help="importance signal: cls, indegree, indegree_mid or norm (text encoder)")
    g.add_argument("--device", default=None, help="torch device: cpu (default), cuda, or auto")
    g.add_argument("--dpi", type=int, default=144, help="PDF render resolution for image encoders (default 144)")
    g.add_argument("--skip-bad", action="store_true", help="report unreadable files and pages and go on")
    p.add_argument("--batch", type=int, default=256, help="pages per commit (default 256; pages: encoded per batch)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT instead of appending to it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_pruner_args(p, "adaptive")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "prune", formatter_class=_FMT, help="derive a pruned index from a full one, without re-encoding",
        description="Re-prune every page of SOURCE from its stored vectors and importance into DEST.",
        epilog="examples:\n  colprune prune full.h5 adaptive.h5 --pruner adaptive --k -0.25\n"
        "  colprune prune full.h5 top30.h5 --pruner ratio --ratio 0.3\n  colprune prune full.h5 rnd.h5 --pruner random --ratio 0.3 --seed 1\n"
        "  colprune prune full.h5 small.h5 --pruner adaptive --k 0 --dtype int8      # prune and re-encode",
    )
    p.add_argument("source", help="index to read (ideally a full one, built with --pruner none)")
    p.add_argument("output", help="index to write")
    p.add_argument("--dtype", default=None, choices=sorted(CODECS), help="vector codec of OUTPUT (default: the source's)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_pruner_args(p, "adaptive")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser(
        "search", formatter_class=_FMT, help="search an index with query embeddings",
        description="Exact MaxSim search. Each QUERY is text, encoded with the model the index was built with,\n"
        "or an embeddings file in any layout `build` reads (each entry one query's (n_tokens, dim) vectors).",
        epilog="examples:\n  colprune search pages.h5 \"who invented the thermometer\"\n"
        "  colprune search pages.h5 queries.pt\n  colprune search pages.h5 queries.npz -k 3 --json",
    )
    p.add_argument("index")
    p.add_argument("queries", nargs="+", metavar="QUERY",
                   help="query text (encoded with the index's model) or a query embeddings file (.pt, .npz, .npy)")
    p.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "info", formatter_class=_FMT, help="counts, bytes per page, keep ratio, format version, pruner",
        epilog="examples:\n  colprune info pages.h5\n  colprune info pages.h5 --json",
    )
    p.add_argument("index")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    from .study import runner as _study

    p = sub.add_parser(
        "study", formatter_class=_FMT, help="storage versus quality: sweep pruning methods on a dataset",
        description="Encode a dataset once into a full index (every vector, every importance signal), derive each\n"
        "pruned variant from it (cached: re-running with one more method re-uses the rest), search, and report\n"
        "keep ratio, bytes per page per codec, nDCG@5/10, recall@10/100 and retention with 95% bootstrap\n"
        "intervals over queries. Writes OUT/results.csv, OUT/results.md and OUT/pareto.png.\n\n"
        "Dataset: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv; corpus records with an 'image'\n"
        "path are page images), or a ViDoRe set saved with save_to_disk or as parquet (corpus/, queries/,\n"
        "relevant_docs/ or qrels/; needs pyarrow).\n\n" + _study.GRID_HELP,
        epilog="examples:\n  colprune study --dataset ../shared/data/msmarco-5k --encoder minilm --out study/\n"
        "  colprune study --dataset ds/ --encoder minilm --methods default,random --budgets 0.5,0.25,0.1 --out s/\n"
        "  colprune study --dataset ds/ --encoder minilm --grid grid.json --out s/",
    )
    p.add_argument("--dataset", required=True, help="BEIR or ViDoRe dataset folder")
    p.add_argument("--encoder", default="minilm", help="encoder name, local path or hub id (default minilm)")
    p.add_argument("--grid", default=None, help="JSON grid of methods (default: the built-in grid)")
    p.add_argument("--budgets", default=None, help="comma-separated shares of vectors kept (default 0.5,0.25,0.1)")
    p.add_argument("--methods", default=None, help="comma-separated method names from the grid ('default' = recommended)")
    p.add_argument("--codecs", default=None, help="comma-separated codecs to evaluate (default float16,int8)")
    p.add_argument("--out", required=True, help="output folder (also the cache)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "show", formatter_class=_FMT, help="draw a page with its kept patches and importance heat map",
        description="Re-read the page image from its source (the path and page number in its metadata), dim the\n"
        "pruned patches, outline the kept ones, and draw the importance of the kept patches on the grid.",
        epilog="examples:\n  colprune show pages.h5 'papers/a.pdf#3' -o page.png\n  colprune show pages.h5 scans/p1.png -o p1.png --dpi 150",
    )
    p.add_argument("index")
    p.add_argument("page", help="page id")
    p.add_argument("-o", "--output", default="page.png", help="PNG to write (default page.png)")
    p.add_argument("--dpi", type=int, default=110)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "demo", formatter_class=_FMT, help="the whole pipeline offline: PDFs in, pruned index, answers out",
        description="Write a few PDFs, encode their pages with the offline MiniLM text-token encoder, build a full\n"
        "index, derive a DocPruner-pruned one, answer questions from both, and print the bytes saved and the hits.\n"
        "--synthetic does the same on generated ColPali-like embeddings (no model).",
        epilog="examples:\n  colprune demo\n  colprune demo --out demo-index\n  colprune demo --synthetic --pages 500",
    )
    p.add_argument("--out", default=None, help="folder for the index files (default: a temporary folder)")
    p.add_argument("--synthetic", action="store_true", help="generated embeddings instead of PDFs and a model")
    p.add_argument("--pages", type=int, default=300, help="--synthetic: pages to generate (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ColpruneError, FileNotFoundError, FileExistsError, PermissionError) as e:
        print(f"colprune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
