"""``colprune search`` asking a running ``colprune serve`` instead of loading the model itself.

:func:`ask_server` finds the server's note (:mod:`colprune.serve.registry`), checks on loopback
that the server answers ``/info`` for the same index (real path), the same committed version and
the same query encoder, then sends the queries (in requests of at most the server's
``max_queries``). Any failure — no note, a refused connection, a timeout, another version, a
non-200 answer — returns None, and the caller searches by itself. It uses only the standard
library and loads no model.
"""

from __future__ import annotations

import http.client
import json
import os
from typing import Any, Sequence

from .registry import lookup, loopback_host

__all__ = ["ask_server", "CONNECT_TIMEOUT", "SEARCH_TIMEOUT"]

#: seconds to connect and read ``/info``: a server that is up answers in milliseconds
CONNECT_TIMEOUT = 1.0
#: seconds a search may take on the server before the client gives up and searches itself
SEARCH_TIMEOUT = 300.0


def _call(host: str, port: int, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
    try:
        conn.connect()
        conn.sock.settimeout(timeout)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _same_server(info: Any, index_path: str, index_version: Any, model: str) -> dict | None:
    server = info.get("server") if isinstance(info, dict) else None
    if not isinstance(server, dict):
        return None
    same = (server.get("index") == os.path.realpath(index_path) and server.get("index_version") == index_version
            and server.get("model") == model and isinstance(server.get("limits"), dict))
    return server if same else None


def ask_server(index_path: str, index_version: Any, model: str, texts: Sequence[str], *, k: int,
               where: dict | None = None, candidates: int | None = None, rerank: int | None = None,
               nprobe: int | None = None
               ) -> tuple[list[dict], str] | None:
    """``(results, "host:port")`` from a running server for this index, version and model; None to search here.

    ``results`` is what :meth:`colprune.serve.Searcher.search` returns for ``texts``.
    """
    note = lookup(index_path)
    if note is None or not texts:
        return None
    host, port = loopback_host(note["host"]), note["port"]
    if host is None:
        return None
    try:
        status, info = _call(host, port, "GET", "/info", None, CONNECT_TIMEOUT)
        server = _same_server(info, index_path, index_version, model) if status == 200 else None
        if server is None or k > server["limits"].get("max_k", 0):
            return None
        step = max(1, int(server["limits"].get("max_queries", 1)))
        results: list[dict] = []
        for i in range(0, len(texts), step):
            body: dict[str, Any] = {"queries": list(texts[i:i + step]), "k": k}
            for name, value in (("where", where), ("candidates", candidates), ("nprobe", nprobe), ("rerank", rerank)):
                if value is not None:
                    body[name] = value
            status, answer = _call(host, port, "POST", "/search", body, SEARCH_TIMEOUT)
            got = answer.get("results") if status == 200 and isinstance(answer, dict) else None
            if not isinstance(got, list) or len(got) != len(body["queries"]):
                return None
            results.extend(got)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, http.client.HTTPException):
        return None
    return results, (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
