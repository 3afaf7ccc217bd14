"""Segments: the immutable HDF5 files a format-3 collection is made of.

One name for the segment modules, split by verb:

- :mod:`~colprune.index.segment_writer`: :class:`Block`, :class:`SegmentWriter` (writes a
  segment once, into the collection's ``tmp/``, then renamed into ``segments/``);
- :mod:`~colprune.index.segment_reader`: :class:`Segment`, the validating reader (the file's
  structure checked before any array reaches a kernel, no links or storage that leave the
  file, every byte returned verified against the checksums recorded at write time);
- :mod:`~colprune.index.legacy`: :class:`LegacySegment`, a whole version 1 or 2 index file
  read through the same interface;
- :mod:`~colprune.index.segment_checks`: the defences the readers share.
"""

from __future__ import annotations

from .legacy import LegacySegment
from .segment_checks import check_no_outside_reads, check_offsets, hash_bytes, open_h5_safely, whole_hashed
from .segment_reader import Segment
from .segment_writer import Block, SegmentWriter

__all__ = ["Block", "SegmentWriter", "Segment", "LegacySegment", "open_h5_safely", "hash_bytes", "whole_hashed",
           "check_offsets", "check_no_outside_reads"]
