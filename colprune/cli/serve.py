"""``colprune serve``: answer searches over HTTP as JSON, the model loaded once."""

from __future__ import annotations

import argparse
import sys

from ..pipeline import check_model
from ..serve import Searcher, make_server
from .common import Command, open_index
from .options import is_quiet, nonneg_int, positive_int
from .search import model_trust_arguments

__all__ = ["SERVE"]


def cmd_serve(args: argparse.Namespace) -> int:
    with open_index(args.index) as index:
        searcher = Searcher(index, quiet=is_quiet(args), n_threads=args.threads, model=args.model,
                            trust_index_encoder=args.trust_index_encoder)
        if index.encoder and not args.lazy:
            check_model(searcher.model_name())
            searcher.encoder  # noqa: B018 - load the model now, not on the first request
        server = make_server(searcher, args.host, args.port, default_k=args.k,
                             log=None if is_quiet(args) else (lambda m: print(m, file=sys.stderr)))
        host, port = server.server_address[:2]
        print(f"serving {args.index} on http://{host}:{port} (GET /search?q=TEXT&k=10, POST /search, GET /info; "
              f"Ctrl-C to stop)", flush=True)
        try:
            if args.max_requests:
                for _ in range(args.max_requests):
                    server.handle_request()
            else:
                server.serve_forever()
        except KeyboardInterrupt:  # the way to stop a server: not an error
            print("stopped", file=sys.stderr)
        finally:
            server.server_close()
    return 0


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    model_trust_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=nonneg_int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("-k", type=positive_int, default=10, help="hits per query when a request gives no k (default 10)")
    p.add_argument("--max-requests", type=positive_int, default=None, metavar="N", help="stop after N requests")
    p.add_argument("--lazy", action="store_true", help="load the model on the first text query instead of at start")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log, no model loading bars")


SERVE = Command(
    "serve", "answer searches over HTTP as JSON on localhost, the model loaded once",
    [
        "colprune serve pages.h5                                   # http://127.0.0.1:8765",
        "curl 'http://127.0.0.1:8765/search?q=who+invented+the+thermometer&k=3'",
        "curl -d '{\"queries\": [\"delta\"], \"k\": 3, \"where\": {\"page\": {\"gte\": 2}}}' http://127.0.0.1:8765/search",
    ],
    _serve_arguments, cmd_serve,
    description="A small JSON endpoint (Python's http.server, one request at a time) over one index:\n"
    "GET /search?q=TEXT[&q=TEXT...][&k=N], POST /search {\"queries\": [...], \"k\", \"where\", \"candidates\",\n"
    "\"rerank\"}, GET /info. Answers are what `colprune search --json` prints, under \"results\".\n"
    "It listens on 127.0.0.1 unless --host says otherwise; it has no authentication.",
)


