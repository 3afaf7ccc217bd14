"""``colprune serve``'s HTTP server: one thread per connection, bounded in time, size and queue.

``GET  /search?q=TEXT&q=TEXT&k=10[&where=page>=3][&candidates=N][&nprobe=P][&rerank=N]``
``POST /search`` with ``{"queries": ["text", ...], "k": 10, "where": {...}, "candidates": N, "nprobe": P, "rerank": N}``
(``nprobe``: residual indexes, with ``candidates``: centroids probed per query token)
(or ``"embeddings": [[[...], ...], ...]`` for query vectors)
``GET  /info``: the index's figures, and under ``"server"`` its path, version, model and limits.

Every answer is JSON; an error is ``{"error": "one line"}`` naming the request field at fault,
with status 400 (a malformed value), 404 (no such path), 405 (method), 408 (the request was not
sent in time), 411/413 (no Content-Length / a body over the limit, refused before it is read),
503 (overloaded: too many connections or searches queued; ``Retry-After`` says when to retry)
or 500 (a fault of the server: its log has the details).

A slow or idle client holds only its own thread: each read waits at most ``read_timeout`` and
the whole request must arrive within ``request_timeout``. Searches run ``searches`` at a time
(the kernels use every core; see :mod:`colprune.kernels.backend` for why launches never
overlap), at most ``max_waiting`` wait behind them, the rest are answered 503 at once.
"""

from __future__ import annotations

import io
import json
import os
import queue
import socket
import socketserver
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlparse

from .._version import __version__
from ..errors import ColpruneError, InvalidInputError, NotFoundError, UsageError
from ..index import parse_where
from .limits import Limits, RequestError, integer, parse_body, parse_content_length, query_string_request, search_request
from .searcher import Searcher

__all__ = ["make_server", "SearchServer", "Gate", "Busy"]

_ROUTES = {"/search": ("GET", "POST"), "/info": ("GET",)}
_USAGE = "GET /search?q=TEXT&k=10, POST /search {\"queries\": [...]}, GET /info"
#: the most centroids a request may probe per query token (a codebook holds at most 65536)
MAX_NPROBE = 65536


def nprobe_field(fields: dict[str, Any], get: bool = False) -> tuple[dict[str, Any], int | None]:
    """The request's ``nprobe`` (checked as ``k`` is) and its other fields (``get``: GET's parameter lists)."""
    if "nprobe" not in fields:
        return fields, None
    rest = {name: v for name, v in fields.items() if name != "nprobe"}
    value = fields["nprobe"]
    if get:
        if len(value) != 1:
            raise RequestError(f'give "nprobe" once, got {len(value)} values')
        value = value[0].strip()
    return rest, integer({"nprobe": value}, "nprobe", 1, MAX_NPROBE, None)


class Busy(Exception):
    """No room for another search now: answered 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gate:
    """``running`` searches at a time, at most ``waiting`` queued behind them for ``timeout`` seconds each."""

    def __init__(self, running: int, waiting: int, timeout: float) -> None:
        self.running, self.waiting, self.timeout = running, waiting, timeout
        self._cond = threading.Condition()
        self._busy = 0
        self._queued = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one search slot; :class:`Busy` when the queue is full or the wait too long."""
        with self._cond:
            if self._busy >= self.running and self._queued >= self.waiting:
                raise Busy(f"the server is busy: {self._busy} searches running and {self._queued} queued; retry shortly")
            self._queued += 1
            try:
                ok = self._cond.wait_for(lambda: self._busy < self.running, timeout=self.timeout)
            finally:
                self._queued -= 1
            if not ok:
                raise Busy(f"the server is busy: no search slot within {self.timeout:g} s; retry shortly", 5)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify()

    def load(self) -> dict[str, int]:
        """``{"running", "queued"}`` searches now."""
        with self._cond:
            return {"running": self._busy, "queued": self._queued}


class _DeadlineReader(io.RawIOBase):
    """The socket read with ``idle`` seconds per read and a deadline for the whole request."""

    def __init__(self, sock: socket.socket, idle: float, deadline: float) -> None:
        self.sock, self.idle, self.deadline = sock, idle, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self.sock.settimeout(min(self.idle, left))
        return self.sock.recv_into(buf)


class SearchServer(ThreadingHTTPServer):
    """The threaded server :func:`make_server` returns (``serve_forever``, ``handle_request``, ``server_close``)."""

    daemon_threads = True
    block_on_close = False  # an idle client's thread must not hold up shutdown; its timeout ends it
    request_queue_size = 128  # the listen backlog: a burst of clients waits in the kernel, not refused

    def __init__(self, address: tuple[str, int], searcher: Searcher, limits: Limits, default_k: int,
                 log: Callable[[str], None] | None) -> None:
        self.searcher, self.limits, self.default_k, self.log = searcher, limits, default_k, log
        self.gate = Gate(limits.searches, limits.max_waiting, limits.queue_timeout)
        self._open = 0
        self._open_cond = threading.Condition()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._refuser = _Refuser(limits.max_connections)
        super().__init__(address, _Handler)
        self.info = _info(searcher, limits, default_k)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # http.server's would look the host name up (DNS) for nothing
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request, client_address) -> None:
        with self._open_cond:
            full = self._open >= self.limits.max_connections
            if not full:
                self._open += 1
        if full:
            self._refuser.refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed_one()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed_one()

    def _closed_one(self) -> None:
        with self._open_cond:
            self._open -= 1
            self._open_cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every open connection is answered and closed (at most ``timeout`` s); False if some are left."""
        with self._open_cond:
            return self._open_cond.wait_for(lambda: self._open == 0, timeout=timeout)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # a client that went away: nothing to report
            if self.log:
                self.log(f"{client_address[0]}: connection ended: {exc}")
            return
        print(f"colprune serve: internal error on a connection from {client_address[0]}:", file=sys.stderr)
        traceback.print_exc()


def _info(searcher: Searcher, limits: Limits, default_k: int) -> dict[str, Any]:
    index = searcher.index
    try:
        model = searcher.model_name()
    except UsageError:  # no encoder to load: the server takes embeddings only
        model = None
    server = {"pid": os.getpid(), "colprune": __version__, "index": os.path.realpath(index.path),
              "index_version": index.version, "model": model, "default_k": default_k, "limits": limits.as_dict()}
    return {**index.info(), "server": server}


class _Refuser:
    """One thread that answers 503 to connections over ``max_connections`` (the accepting thread never waits on them).

    It sends the answer, closes its side, and reads what the client still sends for a moment
    (closing on unread data would reset the connection before the client reads the 503).
    """

    def __init__(self, n: int) -> None:
        body = json.dumps({"error": f"the server is busy: {n} connections open; retry shortly"}).encode()
        self.reply = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode() + body
        self.queue: queue.Queue = queue.Queue(maxsize=256)
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def refuse(self, sock: socket.socket) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="colprune-serve-refuser", daemon=True)
                self.thread.start()
        try:
            self.queue.put_nowait(sock)
        except queue.Full:  # a flood: drop without an answer
            sock.close()

    def _run(self) -> None:
        while True:
            sock = self.queue.get()
            try:
                sock.settimeout(0.2)
                sock.sendall(self.reply)
                sock.shutdown(socket.SHUT_WR)
                end = time.monotonic() + 0.2
                while time.monotonic() < end and sock.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                sock.close()


def _http_words(message: str) -> str:
    """A library message in the request's words (the where parser names its command-line option)."""
    return " ".join(message.split()).replace("--where", '"where"')


class _Handler(BaseHTTPRequestHandler):
    server: SearchServer
    server_version = "colprune"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive to hold

    def setup(self) -> None:
        super().setup()
        lim = self.server.limits
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, lim.read_timeout,
                                                       time.monotonic() + lim.request_timeout))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    # -- answers ---------------------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.connection.settimeout(self.server.limits.read_timeout)  # a client that never reads cannot hold us
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if getattr(self, "command", "") != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away
            pass
        self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, headers too long...) as JSON too."""
        if code == 501:  # an unknown method
            self._not_allowed()
            return
        text = message or self.responses.get(code, ("error",))[0]
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a line http.server could not read: still a status line and headers
        self._send(code, {"error": text})

    def _not_allowed(self) -> None:
        path = urlparse(self.path or "").path
        allowed = _ROUTES.get(path)
        if allowed is None:
            self._send(404, {"error": f"no such path {path!r}: {_USAGE}"})
        else:
            self._send(405, {"error": f"{path} takes {' or '.join(allowed)}, not {self.command}"},
                       {"Allow": ", ".join(allowed)})

    def _answer(self, fn: Callable[[], Any]) -> None:
        headers: dict[str, str] = {}
        try:
            status, body = 200, fn()
        except RequestError as e:
            status, body = e.status, {"error": str(e)}
        except Busy as e:
            status, body, headers = 503, {"error": str(e)}, {"Retry-After": str(e.retry_after)}
        except (UsageError, NotFoundError, InvalidInputError) as e:
            status, body = 400, {"error": _http_words(str(e))}
        except ColpruneError as e:  # the server's own trouble (its model, its index files): not the client's
            status, body = 500, {"error": _http_words(str(e))}
        except Exception:  # noqa: BLE001 - answer, log, and keep serving
            print("colprune serve: internal error while answering a request:", file=sys.stderr)
            traceback.print_exc()
            status, body = 500, {"error": "internal error while searching; the server's log has the details"}
        self._send(status, body, headers)

    # -- requests --------------------------------------------------------------------------

    def _search(self, fields: dict[str, Any], nprobe: int | None = None) -> dict[str, Any]:
        srv = self.server
        fields, given = nprobe_field(fields)
        nprobe = given if given is not None else nprobe
        req = search_request(fields, srv.limits, srv.default_k)
        where = parse_where(req.where)
        with srv.gate.slot():  # the index and the encoder are used by one search at a time
            results = srv.searcher.search(req.texts, req.vectors, k=req.k, where=where, candidates=req.candidates,
                                          rerank=req.rerank, nprobe=nprobe)
        return {"results": results}

    def _get_search(self, params: dict[str, list[str]]) -> dict[str, Any]:
        params, nprobe = nprobe_field(params, get=True)
        return self._search(query_string_request(params), nprobe)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        if url.path == "/info":
            self._answer(lambda: {**self.server.info, "load": self.server.gate.load()})
        elif url.path == "/search":
            self._answer(lambda: self._get_search(parse_qs(url.query, keep_blank_values=True)))
        else:
            self._not_allowed()

    def do_POST(self) -> None:  # noqa: N802
        if urlparse(self.path).path != "/search":
            self._not_allowed()
            return
        try:
            n = parse_content_length(self.headers.get("Content-Length"), self.server.limits)
        except RequestError as e:
            self._send(e.status, {"error": str(e)})
            if e.status == 413:
                self._drain()
            return
        try:
            raw = self.rfile.read(n)
        except TimeoutError:
            self._send(408, {"error": f"the request body did not arrive in time (Content-Length {n:,})"})
            return
        if len(raw) < n:
            self._send(400, {"error": f"the request body ended after {len(raw):,} of its {n:,} bytes (Content-Length)"})
            return
        self._answer(lambda: self._search(parse_body(raw)))

    def _drain(self, most: int = 1 << 20, seconds: float = 0.5) -> None:
        """Read (and drop) what a refused client still sends for a moment, so it sees the answer, not a reset."""
        end = time.monotonic() + seconds
        try:
            while most > 0 and (left := end - time.monotonic()) > 0:
                self.connection.settimeout(left)
                got = self.connection.recv(min(most, 65536))
                if not got:
                    return
                most -= len(got)
        except OSError:
            pass

    def _other(self) -> None:
        self._not_allowed()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other  # noqa: N815


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8765, *, default_k: int = 10,
                log: Callable[[str], None] | None = None, limits: Limits | None = None) -> SearchServer:
    """An HTTP server answering ``/search`` and ``/info`` as JSON (call ``serve_forever`` or ``handle_request``).

    ``port=0`` picks a free port (``server.server_address[1]``). ``limits`` bound what one client
    may ask (:class:`~colprune.serve.Limits`: body size, queries, ``k``, timeouts, connections,
    queued searches). The searcher's messages are switched to request words (``words="http"``).
    """
    searcher.words = "http"
    return SearchServer((host, port), searcher, limits or Limits(), default_k, log)
