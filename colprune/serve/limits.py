"""What one client may ask of ``colprune serve``, and the check of every request field against it.

Every bound is checked before any work: the body's size before it is read, each field's type and
range before a search is queued. A malformed value is a :class:`RequestError` (status 400, or 413
for a body over the limit) whose message names the field as the request spells it (``"k"``),
never a command-line option or Python's own exception text.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["Limits", "RequestError", "SearchRequest", "parse_body", "parse_content_length", "search_request",
           "query_string_request", "FIELDS"]

#: the fields of a POST /search body; GET /search takes ``q``, ``k``, ``where``, ``candidates``, ``rerank``
FIELDS = ("queries", "q", "embeddings", "k", "where", "candidates", "rerank")
_GET_FIELDS = ("q", "k", "where", "candidates", "rerank")
_DIGITS = re.compile(r"[0-9]{1,18}")
#: the most ``candidates`` / ``rerank`` a request may ask for (each bounds an array per query)
MAX_SHORTLIST = 1_000_000


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the server (``colprune serve --help`` lists the options).

    Attributes
    ----------
    max_body_bytes : a POST body over this is answered 413 without being read (default 4 MiB).
    max_queries : queries (texts and embeddings) per request (default 64).
    max_k : hits per query (default 1000).
    read_timeout : seconds a client may stay silent while sending its request (default 10).
    request_timeout : seconds to send the whole request, headers and body (default 30).
    max_connections : connections held at once; more are answered 503 at once (default 128).
    max_waiting : searches queued behind the running ones; more are answered 503 (default 64).
    queue_timeout : seconds a queued search waits for its turn before a 503 (default 60).
    searches : searches run at once (default 1: a search already uses every core).
    """

    max_body_bytes: int = 4 * 2**20
    max_queries: int = 64
    max_k: int = 1000
    read_timeout: float = 10.0
    request_timeout: float = 30.0
    max_connections: int = 128
    max_waiting: int = 64
    queue_timeout: float = 60.0
    searches: int = 1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            lowest = 0 if name == "max_waiting" else 1e-9  # no queue is a choice; no time or no room is not
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= lowest:
                raise InvalidInputError(f"Limits.{name} must be a {'number >= 0' if lowest == 0 else 'positive number'}, "
                                        f"got {value!r}")

    def as_dict(self) -> dict[str, Any]:
        """The limits as ``GET /info`` shows them under ``"server"``."""
        return asdict(self)


class RequestError(InvalidInputError):
    """A request the server refuses: ``status`` (400, 411, 413) and a one-line message naming the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SearchRequest:
    """One checked search request: what :meth:`colprune.serve.Searcher.search` takes."""

    texts: list[str]
    vectors: list[np.ndarray]
    k: int
    where: Any = None
    candidates: int | None = None
    rerank: int | None = None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"the number {value:g}" if math.isfinite(value) else "a number too large"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if value is None:
        return "null"
    return {"list": "a list", "dict": "an object", "int": str(value)}.get(type(value).__name__, type(value).__name__)


def integer(fields: dict[str, Any], name: str, lo: int, hi: int, default: int | None) -> int | None:
    """``fields[name]`` as an int in ``[lo, hi]``: a JSON integer or a string of decimal digits (never a bool or 1.5)."""
    value = fields.get(name)
    if value is None:
        return default
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and _DIGITS.fullmatch(value))
    if not ok or not lo <= int(value) <= hi:
        raise RequestError(f'"{name}" must be an integer from {lo} to {hi:,}, got {_shown(value)}')
    return int(value)


def parse_content_length(value: str | None, limits: Limits) -> int:
    """The body's declared size, checked against ``max_body_bytes`` before anything is read."""
    if value is None:
        raise RequestError("POST /search needs a JSON body sent with a Content-Length header (chunked bodies are "
                           "not accepted)", status=411)
    if not _DIGITS.fullmatch(value.strip()):
        raise RequestError(f"Content-Length must be a number of bytes, got {_shown(value)}")
    n = int(value)
    if n > limits.max_body_bytes:
        raise RequestError(f"the request body is {n:,} bytes; this server takes at most {limits.max_body_bytes:,} "
                           f"(send fewer queries per request)", status=413)
    return n


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A POST body as a JSON object (strict JSON: no NaN or Infinity)."""
    try:
        req = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise RequestError("the request body is not JSON: it is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(f"the request body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise RequestError("the request body is not JSON this server reads: nested too deeply") from None
    except ValueError as e:  # a NaN/Infinity constant, or an integer of thousands of digits
        raise RequestError(f"the request body is not JSON this server reads: {e}"[:200]) from None
    if not isinstance(req, dict):
        raise RequestError(f"the request body must be a JSON object such as {{\"queries\": [\"text\"], \"k\": 10}}, "
                           f"got {_shown(req)}")
    return req


def _texts(fields: dict[str, Any]) -> list[str]:
    if "queries" in fields and "q" in fields:
        raise RequestError('give the queries once: "queries" or "q", not both')
    name = "queries" if "queries" in fields else "q"
    queries = fields.get(name, [])
    if isinstance(queries, str):
        queries = [queries]
    if not isinstance(queries, list):
        raise RequestError(f'"{name}" must be a list of strings, got {_shown(queries)}')
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise RequestError(f'"{name}"[{i}] must be a string, got {_shown(q)}')
        if not q.strip():
            raise RequestError(f'query {i + 1} is empty: give some text to search for ("{name}"[{i}])')
    return queries


def _vectors(fields: dict[str, Any]) -> list[np.ndarray]:
    given = fields.get("embeddings")
    if given is None:
        return []
    if not isinstance(given, list):
        raise RequestError(f'"embeddings" must be a list of queries, each a list of vectors, got {_shown(given)}')
    out = []
    for i, q in enumerate(given):
        ok = isinstance(q, list) and all(isinstance(v, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in q)
        if not ok:
            raise RequestError(f'"embeddings"[{i}] must be a list of vectors, each a list of numbers')
        try:
            out.append(np.asarray(q, dtype=np.float32))
        except (ValueError, OverflowError):
            raise RequestError(f'"embeddings"[{i}]: its vectors must all have the same length') from None
    return out


def search_request(fields: dict[str, Any], limits: Limits, default_k: int) -> SearchRequest:
    """Check a search request's fields (a POST body, or GET's parameters) against ``limits``."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise RequestError(f'unknown field "{unknown[0]}"; a search takes: {", ".join(FIELDS)}')
    texts, vectors = _texts(fields), _vectors(fields)
    n = len(texts) + len(vectors)
    if n > limits.max_queries:
        raise RequestError(f"{n:,} queries in one request; this server takes at most {limits.max_queries} per request "
                           f"(split them over several requests)")
    where = fields.get("where")
    if where is not None and not isinstance(where, (dict, str, list)):
        raise RequestError(f'"where" must be an object such as {{"page": {{"gte": 3}}}}, got {_shown(where)}')
    return SearchRequest(texts, vectors, k=integer(fields, "k", 1, limits.max_k, default_k),
                         where=where or None, candidates=integer(fields, "candidates", 1, MAX_SHORTLIST, None),
                         rerank=integer(fields, "rerank", 0, MAX_SHORTLIST, None))


def query_string_request(params: dict[str, list[str]]) -> dict[str, Any]:
    """GET /search's parameters as request fields: ``q`` and ``where`` may repeat, the others come once."""
    unknown = sorted(set(params) - set(_GET_FIELDS))
    if unknown:
        raise RequestError(f'unknown parameter "{unknown[0]}"; GET /search takes: {", ".join(_GET_FIELDS)}')
    fields: dict[str, Any] = {"q": params.get("q", [])}
    for name in ("k", "candidates", "rerank"):
        if name in params:
            if len(params[name]) > 1:
                raise RequestError(f'give "{name}" once, got {len(params[name])} values')
            fields[name] = params[name][0].strip()
    if "where" in params:
        fields["where"] = params["where"]
    return fields
