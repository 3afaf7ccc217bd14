"""Centroid index kernels (colprune.kernels.ivf) against the references."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from colprune.errors import InvalidInputError
from colprune.kernels import (
    centroid_maxsim,
    centroid_maxsim_reference,
    inverted_lists,
    inverted_lists_reference,
    probe_docs,
    probe_docs_reference,
)


def store(rng, n_docs, k, hi=20):
    lengths = rng.integers(0, hi, n_docs)
    lengths[:3] = [1, 0, 1]
    offsets = np.zeros(n_docs + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return rng.integers(0, k, int(offsets[-1])).astype(np.uint16), offsets


@pytest.mark.parametrize("k", [1, 7, 300])
def test_inverted_lists_match_reference(rng, k):
    codes, offsets = store(rng, 50, k)
    lo, docs = inverted_lists(codes, offsets, k)
    rlo, rdocs = inverted_lists_reference(codes, offsets, k)
    assert lo.dtype == np.int64 and docs.dtype == np.int32
    assert_array_equal(lo, rlo)
    assert_array_equal(docs, rdocs)


def test_inverted_lists_by_hand():
    codes = np.array([2, 2, 0, 1, 2], np.uint16)  # doc 0: {2}, doc 1: {0, 1}, doc 2: empty, doc 3: {2}
    lo, docs = inverted_lists(codes, np.array([0, 2, 4, 4, 5]), 4)
    assert_array_equal(lo, [0, 1, 2, 4, 4])
    assert_array_equal(docs, [1, 1, 0, 3])
    lo, docs = inverted_lists(np.zeros(0, np.uint16), np.array([0]), 3)
    assert_array_equal(lo, [0, 0, 0, 0]) and docs.size == 0


@pytest.mark.parametrize("nprobe", [1, 2, 5, 400])
def test_probe_docs_match_reference(rng, nprobe):
    k = 64
    codes, offsets = store(rng, 80, k)
    lo, docs = inverted_lists(codes, offsets, k)
    qcs = rng.standard_normal((9, k)).astype(np.float32)
    qcs[0, :] = 0.5  # all tied: the lowest ids win
    qcs[1, [3, 9, 40]] = 10.0
    got = probe_docs(qcs, nprobe, lo, docs, 80)
    assert got.dtype == np.int64
    assert_array_equal(got, probe_docs_reference(qcs, nprobe, lo, docs, 80))


def test_probe_ties_go_to_lower_centroid():
    lo = np.array([0, 1, 2, 3])
    docs = np.array([0, 1, 2], np.int32)  # centroid c lists doc c
    assert_array_equal(probe_docs(np.array([[1.0, 2.0, 2.0]], np.float32), 1, lo, docs, 3), [1])
    assert_array_equal(probe_docs(np.array([[2.0, 1.0, 2.0]], np.float32), 2, lo, docs, 3), [0, 2])


@pytest.mark.parametrize("k", [1, 33])
def test_centroid_maxsim_matches_reference(rng, k):
    codes, offsets = store(rng, 60, k)
    qcs = rng.standard_normal((11, k)).astype(np.float32)
    sel = np.array([0, 1, 2, 59, 7, 7], np.int64)
    got = centroid_maxsim(qcs, codes, offsets, sel)
    ref = centroid_maxsim_reference(qcs, codes, offsets, sel)
    assert got.dtype == np.float32 and np.isneginf(got[1])
    assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert_array_equal(centroid_maxsim(qcs[:0], codes, offsets, sel), 0)  # no query tokens
    assert centroid_maxsim(qcs, codes, offsets, np.zeros(0, np.int64)).shape == (0,)


def test_invalid_inputs(rng):
    codes, offsets = store(rng, 10, 5)
    with pytest.raises(InvalidInputError, match="codes"):
        inverted_lists(codes, offsets, 4 if codes.max() == 4 else int(codes.max()))
    with pytest.raises(InvalidInputError, match="codes"):
        inverted_lists(codes.astype(np.float32), offsets, 5)
    with pytest.raises(InvalidInputError, match="offsets"):
        inverted_lists(codes, offsets[:-1], 5)
    lo, docs = inverted_lists(codes, offsets, 5)
    qcs = rng.standard_normal((3, 5)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="nprobe"):
        probe_docs(qcs, 0, lo, docs, 10)
    with pytest.raises(InvalidInputError, match="list_docs"):
        probe_docs(qcs, 1, lo, docs, 2)
    with pytest.raises(InvalidInputError, match="list_offsets"):
        probe_docs(qcs[:, :4], 1, lo, docs, 10)
    bad = qcs.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="query_centroid_scores"):
        centroid_maxsim(bad, codes, offsets, np.arange(3))
    with pytest.raises(InvalidInputError, match="docs"):
        centroid_maxsim(qcs, codes, offsets, np.array([10]))
    with pytest.raises(InvalidInputError, match="codes"):
        centroid_maxsim(qcs[:, :2], codes, offsets, np.arange(3))


def test_inverted_lists_take_any_integer_dtype():
    from colprune.kernels import inverted_lists

    codes = np.array([3, 1, 3, 0, 2, 2], np.uint16)
    offsets = np.array([0, 3, 6], np.int64)
    want = inverted_lists(codes, offsets, 4)
    for dt in (np.uint8, np.int32, np.uint32, np.int64, np.uint64):
        got = inverted_lists(codes.astype(dt), offsets, 4)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(want[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(want[1], [1, 0, 1, 0])
