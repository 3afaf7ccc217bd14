"""Reads that return fewer bytes than asked (Linux caps one pread at ~2 GiB) are continued, not refused."""

import os

import numpy as np
from numpy.testing import assert_array_equal

import colprune as cp
from colprune.index import files


def test_segment_reads_survive_short_preads(tmp_path, rng, monkeypatch):
    ids = [f"p{i}" for i in range(40)]
    vecs = [rng.standard_normal((int(rng.integers(1, 30)), 16)).astype(np.float32) for _ in ids]
    q = rng.standard_normal((4, 16)).astype(np.float32)
    with cp.Index.create(tmp_path / "ix", dim=16, dtype="float16") as index:
        index.add(ids, vecs)
    with cp.Index.open(tmp_path / "ix") as index:
        want_hits = [(h.id, h.score) for h in index.search(q, k=10)]
        want, want_off = index.load()
    real = os.preadv
    calls = []

    def short(fd, buffers, offset):  # at most 100 bytes a call, as a capped or interrupted read returns
        calls.append(offset)
        return real(fd, [memoryview(buffers[0])[:100]], offset)

    monkeypatch.setattr(files.os, "preadv", short)
    with cp.Index.open(tmp_path / "ix") as index:
        got, got_off = index.load()
        assert [(h.id, h.score) for h in index.search(q, k=10)] == want_hits
    assert_array_equal(got, want)
    assert_array_equal(got_off, want_off)
    assert len(calls) > 10  # the reads really came in pieces


def test_read_into_stops_at_the_end_of_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(10)
        assert files.read_into(fd, memoryview(buf), 2) == 4
        assert bytes(buf[:4]) == b"cdef"
    finally:
        os.close(fd)
