"""Search an index from several queries with one model load; ``colprune serve`` over HTTP.

:class:`Searcher` holds an open index and, once the first text query arrives, its encoder: the
CLI's ``search`` and the HTTP endpoint both use it, so a model loads once per process.
:func:`make_server` is a small JSON endpoint on the standard library's ``http.server``:

``GET  /search?q=TEXT&q=TEXT&k=10``
``POST /search`` with ``{"queries": ["text", ...], "k": 10, "where": {...}, "candidates": N, "rerank": N}``
``GET  /info``

Every answer is JSON; an error is ``{"error": "one line"}`` with status 400 (bad request), 404
(unknown path) or 500.
"""

from __future__ import annotations

import json
import math
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np

from .errors import ColpruneError, InvalidInputError, ModelLoadError, UsageError
from .index import parse_where

# parse_where is the store's (colprune.index.filters), named here too for the server's callers
__all__ = ["Searcher", "parse_where", "make_server", "load_query_encoder", "quiet_libraries"]

def load_query_encoder(name: str, *, quiet: bool = False):
    """``load_encoder(name)``, with every failure as :class:`ModelLoadError`."""
    if quiet:
        quiet_libraries()
    from .encoders import load_encoder

    try:
        return load_encoder(name)
    except Exception as e:  # noqa: BLE001 - a missing package, an offline hub, an unsupported type
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(msg if name in msg else f"cannot load model {name!r}: {msg}") from e


def quiet_libraries() -> None:
    """Silence transformers' and the hub's progress bars and warnings (``-q``)."""
    import os
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TQDM_DISABLE"] = "1"
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as tlog

            tlog.disable_progress_bar()
            tlog.set_verbosity_error()
        except Exception:  # noqa: BLE001 - best effort
            pass


#: encoder names that are not paths or hub ids: safe to load when an index names them
TRUSTED_ENCODER_NAMES = frozenset({"minilm"})


class Searcher:
    """Several searches over one open index, the encoder loaded once, on the first text query."""

    def __init__(self, index, *, quiet: bool = False, encoder=None, n_threads: int | None = None,
                 model: str | None = None, trust_index_encoder: bool = False) -> None:
        self.index = index
        self.quiet = quiet
        self.n_threads = n_threads
        self._encoder = encoder
        self.model = model
        self.trust_index_encoder = trust_index_encoder

    def model_name(self) -> str:
        """The query encoder to load: ``model`` if given, else the index's recorded one when it is safe to load.

        An index names its encoder, but a file may be hostile: a recorded *path* or hub id is loaded
        only when the user passes it (``--model``) or trusts the index (``--trust-index-encoder``);
        the built-in names (``minilm``) load as they are.
        """
        if self.model:
            return self.model
        name = self.index.encoder
        if not name:
            raise UsageError(f"{self.index.path} records no encoder: pass --model NAME, or query embeddings files")
        if name not in TRUSTED_ENCODER_NAMES and not self.trust_index_encoder:
            raise UsageError(f"{self.index.path} was built with the encoder {name!r}; colprune does not load a model "
                             f"an index names on its own: pass --model {name} (or --trust-index-encoder)")
        return name

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_query_encoder(self.model_name(), quiet=self.quiet)
        return self._encoder

    def check_texts(self, texts: Sequence[str]) -> None:
        for i, t in enumerate(texts, 1):
            if not isinstance(t, str) or not t.strip():
                raise UsageError(f"query {i} is empty: give some text to search for")
        if texts and self._encoder is None:
            self.model_name()

    def check_vectors(self, vectors: Sequence, labels: Sequence[str]) -> list[np.ndarray]:
        out = []
        for v, label in zip(vectors, labels):
            a = np.asarray(v, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] == 0:
                raise InvalidInputError(f"query {label}: expected (n_tokens, {self.index.dim}) vectors, got shape {a.shape}")
            if a.shape[1] != self.index.dim:
                raise InvalidInputError(
                    f"query {label}: vectors of dim {a.shape[1]}, but {self.index.path} holds dim {self.index.dim}")
            if not np.isfinite(a).all():
                raise InvalidInputError(f"query {label}: NaN or infinite values")
            out.append(a)
        return out

    def check_options(self, k: int, candidates: int | None, rerank: int | None) -> None:
        if not isinstance(k, int) or k < 1:
            raise UsageError(f"k must be a positive integer, got {k!r}")
        codec = self.index.codec
        if candidates is not None:
            if candidates < 1:
                raise UsageError(f"--candidates must be positive, got {candidates}")
            if codec not in ("float16", "float32"):
                raise UsageError(f"--candidates (two-stage search) needs a float16 or float32 index; "
                                 f"{self.index.path} is {codec}")
        if rerank is not None:
            if rerank < 0:
                raise UsageError(f"--rerank must be 0 or more, got {rerank}")
            if codec != "binary" or not self.index.has_rerank:
                raise UsageError(f"--rerank applies to binary indexes with a rerank copy; {self.index.path} is {codec}"
                                 + ("" if codec != "binary" else " without one (built with --no-rerank)"))

    def check_where(self, where: dict | None) -> None:
        """Unknown filter fields are a usage error, found before any model loads."""
        if not where:
            return
        known = set(self.index.filter_fields())
        unknown = sorted(set(where) - known)
        if unknown and len(self.index):
            raise UsageError(f"--where: no page has the metadata field {unknown[0]!r}; "
                             f"fields to filter on: {', '.join(sorted(known)) or 'none'}")

    def search(self, texts: Sequence[str] = (), vectors: Sequence = (), *, labels: Sequence[str] | None = None,
               k: int = 10, where: dict | None = None, candidates: int | None = None,
               rerank: int | None = None, n_centroids: int | None = None) -> list[dict]:
        """``[{"query": label, "hits": [{"rank", "id", "score", "metadata"}, ...]}, ...]``.

        Text queries come first in the result, then vector queries, each in the given order.
        """
        texts = list(texts)
        self.check_texts(texts)
        self.check_options(k, candidates, rerank)
        self.check_where(where)
        vlabels = list(labels) if labels is not None else [f"#{i + 1}" for i in range(len(vectors))]
        qvecs = self.check_vectors(vectors, vlabels)
        if not texts and not qvecs:
            raise UsageError("no queries: give query text, --queries-file FILE, or one query per line on stdin")
        if texts:
            qvecs = list(self.encoder.encode_queries(texts)) + qvecs
        kw: dict[str, Any] = {"n_threads": self.n_threads}
        if candidates is not None:
            kw["candidates"] = candidates
            if n_centroids is not None:
                kw["n_centroids"] = n_centroids
        if rerank is not None:
            kw["rerank"] = rerank
        hits = self.index.search(qvecs, k=k, where=where or None, **kw)
        out = []
        for label, hs in zip(texts + vlabels, hits):
            rows = []
            for rank, h in enumerate(hs, 1):
                score = float(h.score)
                rows.append({"rank": rank, "id": h.id, "score": score if math.isfinite(score) else None,
                             "metadata": h.metadata})
            out.append({"query": label, "hits": rows})
        return out


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8765, *, default_k: int = 10,
                log: Callable[[str], None] | None = None) -> HTTPServer:
    """An HTTP server answering ``/search`` and ``/info`` as JSON (call ``serve_forever`` or
    ``handle_request``); ``port=0`` picks a free port (``server.server_address[1]``)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "colprune"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
            if log is not None:
                log(fmt % args)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, fn: Callable[[], Any]) -> None:
            try:
                self._send(200, fn())
            except (ColpruneError, ValueError, KeyError, TypeError) as e:
                self._send(400, {"error": " ".join(str(e).split()) or type(e).__name__})
            except Exception as e:  # noqa: BLE001 - answer, and keep serving
                self._send(500, {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"})

        def _search(self, req: dict) -> Any:
            queries = req.get("queries", req.get("q", []))
            if isinstance(queries, str):
                queries = [queries]
            if not isinstance(queries, list):
                raise UsageError("'queries' must be a list of strings")
            vectors = req.get("embeddings") or []
            k = int(req.get("k", default_k))
            opt = {name: (None if req.get(name) is None else int(req[name])) for name in ("candidates", "rerank")}
            return {"results": searcher.search(queries, vectors, k=k, where=parse_where(req.get("where")), **opt)}

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            if url.path == "/info":
                self._answer(lambda: searcher.index.info())
            elif url.path == "/search":
                qs = parse_qs(url.query, keep_blank_values=True)
                req: dict[str, Any] = {"queries": qs.get("q", [])}
                for name in ("k", "candidates", "rerank"):
                    if name in qs:
                        req[name] = qs[name][0]
                if "where" in qs:
                    req["where"] = qs["where"]
                self._answer(lambda: self._search(req))
            else:
                self._send(404, {"error": f"no such path {url.path!r}: use /search or /info"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/search":
                self._send(404, {"error": f"no such path {url.path!r}: POST /search"})
                return
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b"{}"

            def run() -> Any:
                try:
                    req = json.loads(raw or b"{}")
                except json.JSONDecodeError as e:
                    raise UsageError(f"the request body is not JSON ({e})") from None
                if not isinstance(req, dict):
                    raise UsageError("the request body must be a JSON object")
                return self._search(req)

            self._answer(run)

    # one request at a time: the index and the encoder are shared, and a search uses every core anyway
    return HTTPServer((host, port), Handler)
