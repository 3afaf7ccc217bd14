import numpy as np
import pytest
import torch
from conftest import ragged_store
from numpy.testing import assert_allclose, assert_array_equal

from colprune.kernels import (
    maxsim_reference,
    maxsim_scores,
    topk,
    topk_reference,
    widen_float16,
)


def queries(rng, sizes, dim=16):
    return [rng.standard_normal((m, dim)).astype(np.float32) for m in sizes]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_matches_reference_on_ragged_store(rng, dtype):
    vectors, offsets = ragged_store(rng, rng.integers(1, 60, 97), dtype=dtype)
    qs = queries(rng, [1, 3, 20, 7])
    assert_allclose(maxsim_scores(qs, vectors, offsets), maxsim_reference(qs, vectors, offsets), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_matches_reference_across_block_edges(rng, dtype):
    # pages of 1..150 vectors cross the 32-vector widening blocks; 45 query rows cross the
    # 32-row query blocks; dim 128 is the compiled production width
    lengths = np.r_[[1, 31, 32, 33, 64, 65, 150], rng.integers(1, 150, 30)]
    vectors, offsets = ragged_store(rng, lengths, dim=128, dtype=dtype)
    qs = queries(rng, [45, 1, 20], dim=128)
    assert_allclose(maxsim_scores(qs, vectors, offsets), maxsim_reference(qs, vectors, offsets), rtol=1e-5, atol=1e-4)


def test_one_vector_documents(rng):
    vectors, offsets = ragged_store(rng, [1] * 33)
    qs = queries(rng, [5])
    expected = (qs[0] @ vectors.T).sum(axis=0)  # each doc: sum_i <q_i, d>
    assert_allclose(maxsim_scores(qs, vectors, offsets)[0], expected, rtol=1e-5, atol=1e-5)


def test_negative_similarities_are_not_clamped():
    # every similarity is negative: zero padding would score this page 0.0
    q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    doc = np.array([[-0.99, -0.14], [-0.5, -0.86]], np.float32)
    offsets = np.array([0, 2])
    got = maxsim_scores(q, doc, offsets)
    assert got.shape == (1, 1)
    assert_allclose(got[0, 0], -0.5 + -0.14, rtol=1e-6)
    assert_allclose(got, maxsim_reference([q], doc, offsets))


def test_padding_length_never_matters(rng):
    # a short page next to long pages scores the same as alone
    vectors, offsets = ragged_store(rng, [3, 500, 1])
    q = queries(rng, [4])
    alone = maxsim_scores(q, vectors[:3], np.array([0, 3]))
    assert_allclose(maxsim_scores(q, vectors, offsets)[:, :1], alone, rtol=1e-6)


def test_empty_document_scores_minus_inf(rng):
    vectors, offsets = ragged_store(rng, [2, 0, 3])
    qs = queries(rng, [2])
    got = maxsim_scores(qs, vectors, offsets)
    assert got[0, 1] == -np.inf and np.isfinite(got[0, [0, 2]]).all()
    assert_allclose(got, maxsim_reference(qs, vectors, offsets), rtol=1e-5)


def test_empty_store_gives_empty_scores(rng):
    got = maxsim_scores(queries(rng, [3, 4]), np.zeros((0, 16), np.float32), np.array([0]))
    assert got.shape == (2, 0) and got.dtype == np.float32


def test_accepts_single_query_3d_batch_and_torch(rng):
    vectors, offsets = ragged_store(rng, [4, 9, 2])
    qs = queries(rng, [6, 6])
    ref = maxsim_reference(qs, vectors, offsets)
    assert_allclose(maxsim_scores(qs[0], vectors, offsets), ref[:1], rtol=1e-5)
    assert_allclose(maxsim_scores(np.stack(qs), vectors, offsets), ref, rtol=1e-5)
    tq = [torch.from_numpy(q).to(torch.bfloat16) for q in qs]
    got = maxsim_scores(tq, torch.from_numpy(vectors), torch.from_numpy(offsets))
    assert_allclose(got, maxsim_reference([t.float().numpy() for t in tq], vectors, offsets), rtol=1e-4, atol=1e-4)


def test_thread_count_does_not_change_scores(rng):
    vectors, offsets = ragged_store(rng, rng.integers(1, 30, 40))
    qs = queries(rng, [5, 2])
    assert_array_equal(maxsim_scores(qs, vectors, offsets, n_threads=1), maxsim_scores(qs, vectors, offsets, n_threads=2))
    with pytest.raises(ValueError, match="n_threads"):
        maxsim_scores(qs, vectors, offsets, n_threads=0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda q, v, o: ([q[0] * np.nan], v, o), "NaN"),
        (lambda q, v, o: ([np.ones((3, 8), np.float32)], v, o), "dim"),
        (lambda q, v, o: ([np.ones((0, 16), np.float32)], v, o), "no token"),
        (lambda q, v, o: ([], v, o), "no queries"),
        (lambda q, v, o: (q, np.where(v > 2, np.inf, v), o), "NaN or infinite"),
        (lambda q, v, o: (q, v, o[:-1]), "offsets"),
        (lambda q, v, o: (q, v, o[::-1].copy()), "offsets"),
        (lambda q, v, o: ([q[0].astype(np.int32)], v, o), "floating"),
    ],
)
def test_bad_input_is_named(rng, bad, match):
    vectors, offsets = ragged_store(rng, [3, 4, 5])
    vectors[0, 0] = 3.0
    args = bad(queries(rng, [2]), vectors, offsets)
    with pytest.raises(ValueError, match=match):
        maxsim_scores(*args)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_float16_widening_is_exact_for_every_half(portable):
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got, ref = widen_float16(every, portable=portable), every.astype(np.float32)
    finite = np.isfinite(ref)
    assert_array_equal(got[finite], ref[finite])
    assert_array_equal(np.signbit(got[finite]), np.signbit(ref[finite]))
    assert_array_equal(np.isinf(got), np.isinf(ref))
    assert_array_equal(np.isnan(got), np.isnan(ref))


@pytest.mark.parametrize("k", [1, 3, 10, 50, 200])
def test_topk_matches_stable_sort_with_ties(rng, k):
    scores = rng.integers(0, 6, (7, 120)).astype(np.float32)  # many ties
    scores[0, :] = 1.0  # all equal
    scores[1, 5] = -np.inf
    idx, val = topk(scores, k)
    ridx, rval = topk_reference(scores, k)
    assert_array_equal(idx, ridx)
    assert_array_equal(val, rval)
    assert idx.shape == (7, min(k, 120))


def test_topk_rejects_bad_k(rng):
    with pytest.raises(ValueError, match="k must be"):
        topk(np.zeros((1, 3)), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pairs_match_reference_per_query_shortlist(rng, dtype):
    from colprune.kernels import as_query_batch, maxsim_pairs

    lengths = np.r_[[0, 1, 40], rng.integers(1, 90, 57)]
    vectors, offsets = ragged_store(rng, lengths, dim=128, dtype=dtype)
    qs = queries(rng, [20, 1, 45, 7], dim=128)
    qv, qoff, _ = as_query_batch(qs)
    # overlapping shortlists in any order, one with a skipped (-1) slot, one naming the empty page
    cand = np.stack([rng.permutation(len(lengths))[:12] for _ in qs])
    cand[1, 3], cand[2, 0] = -1, 0
    got = maxsim_pairs(qv, qoff, vectors, offsets, cand)
    full = maxsim_reference(qs, vectors, offsets)
    want = np.where(cand >= 0, np.take_along_axis(full, np.maximum(cand, 0), axis=1), -np.inf)
    assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_pairs_reject_bad_candidates(rng):
    from colprune.kernels import as_query_batch, maxsim_pairs

    vectors, offsets = ragged_store(rng, [3, 4])
    qv, qoff, _ = as_query_batch(queries(rng, [2, 2]))
    with pytest.raises(ValueError, match="document indices"):
        maxsim_pairs(qv, qoff, vectors, offsets, np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match=r"\(2, depth\)"):
        maxsim_pairs(qv, qoff, vectors, offsets, np.array([0, 1]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_first_nonfinite_row_matches_numpy(rng, dtype):
    from colprune.kernels.checks import first_nonfinite_row

    x = rng.standard_normal((300, 17)).astype(dtype)
    assert first_nonfinite_row(x) == -1 and first_nonfinite_row(x[:0]) == -1
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[[250, 90], [16, 0]] = bad
        assert first_nonfinite_row(y) == 90 == int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
    y = x.copy()
    y[5, 3] = np.finfo(dtype).max  # the largest finite value is not flagged
    assert first_nonfinite_row(y) == -1
    assert first_nonfinite_row(np.asfortranarray(y)) == -1
