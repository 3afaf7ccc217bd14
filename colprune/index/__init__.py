"""The HDF5 multi-vector index: versioned layout, crash-safe appends, exact search."""

from . import layout
from .store import Hit, Index, Page

__all__ = ["Index", "Page", "Hit", "layout"]
