"""``colprune serve``: answer searches over HTTP as JSON, the model loaded once."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys

from ..errors import UsageError
from ..pipeline import check_model
from ..serve import Limits, Searcher, make_server
from ..serve.registry import register, unregister
from .common import Command, open_index
from .options import is_quiet, nonneg_int, positive_float, positive_int
from .search import model_trust_arguments

__all__ = ["SERVE"]

_DEFAULTS = Limits()


def cmd_serve(args: argparse.Namespace) -> int:
    limits = Limits(max_body_bytes=args.max_body, max_queries=args.max_queries, max_k=args.max_k,
                    read_timeout=args.timeout, request_timeout=3 * args.timeout, max_connections=args.max_connections,
                    max_waiting=args.queue)
    with open_index(args.index) as index:
        searcher = Searcher(index, quiet=is_quiet(args), n_threads=args.threads, model=args.model,
                            trust_index_encoder=args.trust_index_encoder)
        if index.encoder and not args.lazy:
            check_model(searcher.model_name())
        server = _listen(searcher, args, limits)  # a taken port is said before the model loads
        try:
            if index.encoder and not args.lazy:
                searcher.encoder  # noqa: B018 - load the model now, not on the first request
            if not args.lazy:
                index.warm(kernels=True)  # vectors resident and kernels loaded before the first request
        except BaseException:
            server.server_close()
            raise
        host, port = server.server_address[:2]
        note = None if args.no_register else register(index.path, host=host, port=port, index_version=index.version,
                                                      model=server.info["server"]["model"])
        print(f"serving {args.index} on http://{host}:{port} (GET /search?q=TEXT&k=10, POST /search, GET /info; "
              f"Ctrl-C to stop)", flush=True)
        if not is_quiet(args):
            print(f"limits: requests up to {limits.max_body_bytes:,} bytes, {limits.max_queries} queries and "
                  f"k <= {limits.max_k}, sent within {limits.read_timeout:g} s of silence and {limits.request_timeout:g} s "
                  f"in all; {limits.searches} search at a time, {limits.max_waiting} queued, "
                  f"{limits.max_connections} connections (see --help)", file=sys.stderr, flush=True)
        previous = _stop_on_sigterm()
        try:
            if args.max_requests:
                for _ in range(args.max_requests):
                    server.handle_request()
                server.wait_idle(limits.request_timeout + limits.queue_timeout + 600)
            else:
                server.serve_forever()
        except KeyboardInterrupt:  # the way to stop a server: not an error
            print("stopped", file=sys.stderr)
        finally:
            unregister(note)
            server.server_close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return 0


def _listen(searcher: Searcher, args: argparse.Namespace, limits: Limits):
    """The server on ``--host``/``--port``, a taken or forbidden port said in the CLI's words."""
    log = None if is_quiet(args) else (lambda m: print(m, file=sys.stderr))
    try:
        return make_server(searcher, args.host, args.port, default_k=args.k, log=log, limits=limits)
    except socket.gaierror:
        raise UsageError(f"--host {args.host}: no such address or host name") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"port {args.port} is in use (another colprune serve?); pass --port N or --port 0") from None
        if e.errno == errno.EACCES:
            raise UsageError(f"port {args.port} needs privileges here; pass --port N (1024 or more) or --port 0") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {args.host} is not an address of this machine (try 127.0.0.1 or 0.0.0.0)") from None
        raise


def _stop_on_sigterm():
    """SIGTERM stops the server as Ctrl-C does (its registry note is removed); the previous handler, to restore."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        return None


def byte_size(text: str) -> int:
    """argparse type: a byte count, ``4M``, ``512K``, ``1G`` or plain bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 4M, 512K or 1000000, got {text!r}") from None
    if not 1 <= v < 2**40:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return int(v)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    model_trust_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=nonneg_int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("-k", type=positive_int, default=10, help="hits per query when a request gives no k (default 10)")
    p.add_argument("--max-requests", type=positive_int, default=None, metavar="N", help="stop after N requests")
    p.add_argument("--lazy", action="store_true",
                   help="load the model on the first text query, and the search kernels on the first search, instead of at start")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--no-register", action="store_true",
                   help="do not tell `colprune search` on this machine that this server answers for the index")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log, no model loading bars")
    g = p.add_argument_group("limits (what one client may ask; over them: 400, 413 or 503, at once)")
    d = _DEFAULTS
    g.add_argument("--max-body", type=byte_size, default=d.max_body_bytes, metavar="SIZE",
                   help="largest POST body, refused (413) before it is read (default 4M)")
    g.add_argument("--max-queries", type=positive_int, default=d.max_queries, metavar="N",
                   help=f"queries per request (default {d.max_queries})")
    g.add_argument("--max-k", type=positive_int, default=d.max_k, metavar="N",
                   help=f"largest k a request may ask for (default {d.max_k})")
    g.add_argument("--timeout", type=positive_float, default=d.read_timeout, metavar="S",
                   help=f"seconds a client may stay silent while sending its request; 3x that to send it all "
                        f"(default {d.read_timeout:g}: an idle or slow client holds only its own connection)")
    g.add_argument("--max-connections", type=positive_int, default=d.max_connections, metavar="N",
                   help=f"connections open at once; more are answered 503 (default {d.max_connections})")
    g.add_argument("--queue", type=nonneg_int, default=d.max_waiting, metavar="N",
                   help=f"searches waiting behind the running one (each uses every core); more are answered 503 "
                        f"with Retry-After (default {d.max_waiting})")


SERVE = Command(
    "serve", "answer searches over HTTP as JSON on localhost, the model loaded once",
    [
        "colprune serve pages.h5                                   # http://127.0.0.1:8765",
        "curl 'http://127.0.0.1:8765/search?q=who+invented+the+thermometer&k=3'",
        "curl -d '{\"queries\": [\"delta\"], \"k\": 3, \"where\": {\"page\": {\"gte\": 2}}}' http://127.0.0.1:8765/search",
        "colprune search pages.h5 \"delta\"                          # answered by the running serve",
    ],
    _serve_arguments, cmd_serve,
    description="A JSON endpoint over one index: GET /search?q=TEXT[&q=TEXT...][&k=N][&where=page>=2],\n"
    "POST /search {\"queries\": [...], \"k\", \"where\", \"candidates\", \"rerank\"}, GET /info. Answers are what\n"
    "`colprune search --json` prints, under \"results\"; errors are {\"error\": \"...\"} naming the field (400),\n"
    "413 for a body over --max-body, 503 with Retry-After when --queue is full. Each connection has its own\n"
    "thread and --timeout, so an idle or slow client holds no one else; searches run one at a time.\n"
    "`colprune search` on this machine uses a running serve of the same index and version (see --no-server).\n"
    "It listens on 127.0.0.1 unless --host says otherwise; it has no authentication.",
)
