"""The multi-vector index: a collection of immutable HDF5 segments (format 4; format 3 read-write), versions 1-2 read-only.

- :mod:`~colprune.index.layout`: every on-disk name (one owner);
- :mod:`~colprune.index.segment`: writing, validating and reading one segment file;
- :mod:`~colprune.index.manifest`: commits (manifests), deletion files, the writer lock;
- :mod:`~colprune.index.records`: :class:`Page`, :class:`Hit` and the input checks;
- :mod:`~colprune.index.snapshot`: :class:`Snapshot`, one committed version as a reader holds it;
- :mod:`~colprune.index.search`: bounded-memory exact search, two-stage search, device search;
- :mod:`~colprune.index.filters`: ``where`` filters, parsed and evaluated;
- :mod:`~colprune.index.codecs`, :mod:`~colprune.index.prepare`, :mod:`~colprune.index.write`,
  :mod:`~colprune.index.compact`, :mod:`~colprune.index.derive`: encoding, input checks, commits,
  compaction, derive/upgrade;
- :mod:`~colprune.index.codebook`, :mod:`~colprune.index.training`: the residual codecs' codebook file, its
  training on the first write, drift and retraining;
- :mod:`~colprune.index.leftovers`: folders killed overwrites left (:func:`find_leftovers`, ``colprune gc``);
- :mod:`~colprune.index.storage`: what the files hold; :mod:`~colprune.index.repacking`: :func:`repack`;
- :mod:`~colprune.index.collection`: :class:`Index`, the API over all of it.
"""

from . import layout
from .collection import Hit, Index, Page, codec_bytes
from .filters import parse_where
from .leftovers import find_leftovers
from .repacking import repack
from .snapshot import Snapshot

__all__ = ["Index", "Page", "Hit", "Snapshot", "codec_bytes", "parse_where", "repack", "layout", "find_leftovers"]
