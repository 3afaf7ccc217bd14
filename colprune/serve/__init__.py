"""Search an index from several queries with one model load; ``colprune serve`` over HTTP; its registry and client.

- :class:`Searcher` (``searcher.py``): one open index and its encoder, loaded once: what
  ``colprune search`` and the server share.
- :func:`make_server` (``server.py``): the threaded JSON endpoint, bounded by :class:`Limits`
  (``limits.py``: body size, queries, ``k``, timeouts, connections, queued searches).
- ``registry.py``: a running server's note (pid, port, index, version) under the user's runtime
  folder, so that ``colprune search`` finds it; ``client.py``: that search asking it over HTTP.
"""

from ..index import parse_where
from .limits import Limits, RequestError
from .searcher import TRUSTED_ENCODER_NAMES, Searcher, load_query_encoder, quiet_libraries
from .server import SearchServer, make_server

# parse_where is the store's (colprune.index.filters), named here too for the server's callers
__all__ = ["Searcher", "parse_where", "make_server", "load_query_encoder", "quiet_libraries", "Limits", "RequestError",
           "SearchServer", "TRUSTED_ENCODER_NAMES"]
