"""The multi-vector index: a collection of immutable HDF5 segments (format 3), versions 1-2 read-only.

- :mod:`~colprune.index.layout`: every on-disk name (one owner);
- :mod:`~colprune.index.segment`: writing, validating and reading one segment file;
- :mod:`~colprune.index.manifest`: commits (manifests), deletion files, the writer lock;
- :mod:`~colprune.index.search`: bounded-memory exact search, two-stage search, filters;
- :mod:`~colprune.index.collection`: :class:`Index`, the API over all of it.
"""

from . import layout
from .collection import Hit, Index, Page, codec_bytes

__all__ = ["Index", "Page", "Hit", "codec_bytes", "layout"]
