"""``colprune search``: queries against an index, the model loaded once per command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import NotFoundError, UsageError
from ..index import Hit
from ..index.candidates import DEFAULT_NPROBE
from ..pipeline import check_model
from ..serve import Searcher, quiet_libraries
from . import sharded
from .common import Command, is_embedding_file, open_index
from .options import add_where_argument, is_quiet, nonneg_int, positive_int, where_from_args
from .via_server import add_no_server_argument, search_via_server

__all__ = ["SEARCH", "model_trust_arguments"]


def _read_queries(args: argparse.Namespace) -> tuple[list[str], list[Any], list[str]]:
    """``(texts, vector queries, their labels)`` from arguments, --queries-file and stdin."""
    from ..io import load_embeddings

    texts: list[str] = []
    vectors: list[Any] = []
    labels: list[str] = []

    def add_embedding_file(path: str) -> None:
        qs = load_embeddings(path)
        vectors.extend(qs.embeddings)
        labels.extend(qs.ids)

    for i, q in enumerate(args.queries, 1):
        if is_embedding_file(q) and os.path.exists(q):
            add_embedding_file(q)
        elif not q.strip():
            raise UsageError(f"query {i} is empty: give some text to search for")
        else:
            texts.append(q)
    lines: list[str] | None = None
    source = None
    if args.queries_file:
        source = args.queries_file
        if source != "-" and is_embedding_file(source):
            if not os.path.exists(source):
                raise NotFoundError(f"{source}: no such file")
            add_embedding_file(source)
        elif source == "-":
            lines = sys.stdin.read().splitlines()
        else:
            if not os.path.exists(source):
                raise NotFoundError(f"{source}: no such file")
            with open(source, encoding="utf-8") as f:
                lines = f.read().splitlines()
    elif not args.queries and not sys.stdin.isatty():
        source = "stdin"
        lines = sys.stdin.read().splitlines()
    if lines is not None:
        got = [line.strip() for line in lines if line.strip()]
        if not got:
            raise UsageError(f"{source}: no queries (one per line)")
        texts.extend(got)
    if not texts and not vectors:
        raise UsageError("no queries: give query text, --queries-file FILE, or one query per line on stdin")
    return texts, vectors, labels


def cmd_search(args: argparse.Namespace) -> int:
    where = where_from_args(args)
    texts, vectors, labels = _read_queries(args)
    if args.query_encoder is not None and args.model is not None:
        raise UsageError("--query-encoder and --model both choose the query encoder: give one")
    with open_index(args.index, args=args) as index:
        student = _load_student(args.query_encoder, index, is_quiet(args)) if args.query_encoder and texts else None
        searcher = Searcher(index, quiet=is_quiet(args), n_threads=args.threads, model=args.model,
                            trust_index_encoder=args.trust_index_encoder, encoder=student)
        # everything checked before the model loads
        searcher.check_texts(texts)
        searcher.check_options(args.k, args.candidates, args.rerank, args.nprobe)
        searcher.check_where(where)
        searcher.check_vectors(vectors, labels)
        # a running `colprune serve` of this index answers text queries without a model load here
        local = student is not None
        results = None if local else search_via_server(args, index, searcher, texts, vectors, where)
        if results is None:
            if texts and student is None:
                check_model(searcher.model_name())
            results = searcher.search(texts, vectors, labels=labels, k=args.k, where=where, candidates=args.candidates,
                                      rerank=args.rerank, nprobe=args.nprobe)
        if where is not None and not any(r["hits"] for r in results):
            _say_what_sources_look_like(index)
    if args.with_text or args.save_images:
        _add_pages(results, args)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(f"query {r['query']}")
        if not r["hits"]:
            print("     (no hits)")
        for h in r["hits"]:
            meta = h["metadata"] or {}
            where_text = ""
            if "source" in meta:
                where_text = f"  {meta['source']}" + (f" p.{meta['page']}" if "page" in meta else "")
            print(f"  {h['rank']:>3}. {h['score']:9.4f}  {h['id']}{where_text}")
            if "text" in h:
                print(f"       {_short(h['text'])}")
            if h.get("image"):
                print(f"       image: {h['image']}")
    return 0


def _say_what_sources_look_like(index) -> None:
    """On stderr, for a --where that matched no page: what a page's ``source`` looks like here."""
    ids = index.ids
    source = (index.get(ids[0]).metadata or {}).get("source") if ids else None
    if source is not None:
        print(f"colprune search: no page matched --where (sources look like {source!r}, as search prints them)",
              file=sys.stderr)


def _short(text: str, width: int = 200) -> str:
    """A page's text on one line: whitespace collapsed, cut at ``width`` characters."""
    one = " ".join(text.split())
    if not one:
        return "(no text on this page)"
    return one if len(one) <= width else one[: width - 1].rstrip() + "…"


def _add_pages(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Each hit's page text (``--with-text``: ``"text"``) and page image written to ``--save-images``
    (``"image"``: its path; None for a text file), read before anything prints."""
    from ..content import MissingSourceError, image_name, page_file

    if args.save_images:
        os.makedirs(args.save_images, exist_ok=True)
    for qi, r in enumerate(results, 1):
        for h in r["hits"]:
            hit = Hit(h["id"], h["score"], h["metadata"])
            try:
                if args.with_text:
                    h["text"] = hit.text(root=args.root)
                if args.save_images:
                    h["image"] = None
                    if page_file(hit, args.root).kind != "text":
                        h["image"] = os.path.join(args.save_images, f"q{qi}-{h['rank']}-{image_name(h['id'])}")
                        hit.image(root=args.root).save(h["image"])
            except MissingSourceError as e:
                raise NotFoundError(f"{e.tried[0] if e.tried else e.page_id}: the file of page {e.page_id!r} is not "
                                    + ("under --root" if args.root else f"where {args.index} says")
                                    + " (moved or deleted?); pass --root DIR, the folder the page ids are "
                                    "relative to, as it is now") from None


def _load_student(path: str, index, quiet: bool):
    """The student query encoder at ``path``, refused unless ``index`` was built by its teacher."""
    from ..encoders.student import StudentQueryEncoder, check_teacher, read_config

    if not os.path.exists(path):
        raise NotFoundError(f"{path}: no such student folder (make one with `colprune distill-queries`)")
    cfg = read_config(path)["config"]
    check_teacher(index, cfg["teacher"], cfg["teacher_dim"], path)  # before any weights load
    if quiet:
        quiet_libraries()
    return StudentQueryEncoder(path)


def model_trust_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("query encoder")
    g.add_argument("--model", default=None, help="query encoder (a path or hub id); default: the index's own, "
                   "loaded only if it is a built-in name (minilm) or with --trust-index-encoder")
    g.add_argument("--trust-index-encoder", action="store_true",
                   help="load the encoder path or hub id the index records (an index file may be hostile)")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("queries", nargs="*", metavar="QUERY",
                   help="query text (encoded with the index's model), or a query embeddings file (.pt, .npz, .npy); "
                        "none: one query per line from --queries-file or stdin")
    p.add_argument("--queries-file", "-f", default=None, metavar="FILE",
                   help="one query per line (blank lines ignored), '-' for stdin, or an embeddings file")
    p.add_argument("-k", type=positive_int, default=10, help="hits per query (default 10)")
    add_where_argument(p, "only pages")
    p.add_argument("--candidates", type=positive_int, default=None, metavar="N",
                   help="score only a shortlist of N pages per query exactly (faster on large indexes, recall may "
                        "drop): float16/float32 indexes shortlist by their page summaries (two-stage search), "
                        "residual indexes through their centroid index (N >= k)")
    p.add_argument("--nprobe", type=positive_int, default=None, metavar="P",
                   help=f"residual indexes with --candidates: centroids each query token probes (default "
                        f"{DEFAULT_NPROBE}; more finds more pages, slower; the codebook's size probes every page)")
    p.add_argument("--rerank", type=nonneg_int, default=None, metavar="N",
                   help="binary indexes: rescore the best N Hamming hits exactly from the float16 copy "
                        "(default max(100, 10k); 0: Hamming order only)")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    model_trust_arguments(p)
    p.add_argument("--query-encoder", default=None, metavar="PATH",
                   help="encode the queries with a student distilled from the index's encoder "
                        "(`colprune distill-queries`); a student of another teacher is refused")
    g = p.add_argument_group("page content (for RAG)")
    g.add_argument("--with-text", action="store_true",
                   help="each hit's page text, shortened in the table, whole under \"text\" in --json: stored at build "
                        "(--store-text), else read from the PDF's text layer or the text file")
    g.add_argument("--save-images", default=None, metavar="DIR",
                   help="write each hit's page image to DIR/qQUERY-RANK-ID.png (PDF pages rendered at 144 dpi); "
                        "--json gives its path under \"image\"")
    g.add_argument("--root", default=None, metavar="DIR",
                   help="the folder the page ids are relative to, when the files moved since the build "
                        "(default: where the index recorded them)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: [{query, hits: [{rank, id, score, metadata[, text][, image]}]}]")
    p.add_argument("-q", "--quiet", action="store_true", help="no model loading bars")
    add_no_server_argument(p)
    sharded.add_arguments(p, "search")


SEARCH = Command(
    "search", "search an index with one or many queries (one model load)",
    [
        "colprune search pages.h5 \"who invented the thermometer\"",
        "colprune search pages.h5 \"first question\" \"second question\" -k 3",
        "colprune search pages.h5 --queries-file questions.txt --json",
        "printf 'rivers of Europe\\nthe cell membrane\\n' | colprune search pages.h5",
        "colprune search pages.h5 \"delta\" --where source=rivers.pdf --where 'page>=2'",
        "colprune search binary.h5 \"delta\" --rerank 200          # binary: rescore 200 exactly",
        "colprune search big.h5 \"delta\" --candidates 2000        # two-stage search",
        "colprune search res.h5 \"delta\" --candidates 500 --nprobe 8  # residual: through the centroid index",
        "colprune search pages.h5 queries.pt                      # precomputed query embeddings",
        "colprune search pages.h5 \"delta\" --query-encoder student/  # a distilled student encodes the query",
        "colprune search pages.h5 \"delta\" -k 3 --with-text --json    # each hit's page text, for a generator",
        "colprune search pages.h5 \"delta\" -k 3 --save-images hits/   # each hit's page as a PNG",
    ],
    _search_arguments, cmd_search,
    description="Exact MaxSim search. Queries are text, encoded once with the model the index was built with\n"
    "(arguments, --queries-file, or stdin one per line), or embeddings files in any layout `build` reads.\n"
    "Each hit prints its page id, score and where the page comes from (source file and page number);\n"
    "--with-text adds the page's text and --save-images its image, read from the source file\n"
    "(or the text stored with build --store-text); --root says where the files are if they moved.",
)
