"""Residual codec kernels (colprune.kernels.residual) against the float64 references."""

import numpy as np
import pytest
from conftest import ragged_store
from numpy.testing import assert_allclose, assert_array_equal

from colprune.errors import InvalidInputError
from colprune.kernels import (
    assign_centroids,
    available_backends,
    codebook_size,
    decode_residual,
    decode_residual_reference,
    encode_residual,
    encode_residual_reference,
    maxsim_reference,
    maxsim_residual_csr,
    maxsim_residual_reference,
    residual_buckets,
    train_centroids,
    use_backend,
)


def finite_close(a, b, **kw):
    assert_array_equal(np.isinf(a), np.isinf(b))
    fin = np.isfinite(b)
    assert_allclose(a[fin], b[fin], **kw)


def clustered(rng, n, dim, k=8, spread=0.05):
    centers = rng.standard_normal((k, dim)).astype(np.float32)
    return (centers[rng.integers(0, k, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def codec(rng, x, k, nbits):
    cent = train_centroids(x, k, iters=4, seed=0)
    codes = assign_centroids(x, cent)
    cutoffs, weights = residual_buckets(x - cent[codes], nbits)
    return cent, cutoffs, weights


def test_codebook_size_values():
    assert [codebook_size(n) for n in (1, 2, 3, 4, 100, 1000, 10**6, 10**9)] == [1, 2, 2, 4, 64, 256, 8192, 65536]
    with pytest.raises(InvalidInputError, match="n_vectors"):
        codebook_size(0)


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dim", [8, 64, 128])
def test_encode_decode_match_references(rng, nbits, dim):
    x = clustered(rng, 400, dim)
    cent, cutoffs, weights = codec(rng, x, 16, nbits)
    codes, packed = encode_residual(x, cent, cutoffs, nbits)
    assert codes.dtype == np.uint16 and packed.dtype == np.uint8 and packed.shape == (400, dim * nbits // 8)
    rcodes, rpacked = encode_residual_reference(x, cent, cutoffs, nbits)
    assert_array_equal(codes, rcodes)
    assert_array_equal(packed, rpacked)
    got = decode_residual(codes, packed, cent, weights, nbits)
    assert_allclose(got, decode_residual_reference(codes, packed, cent, weights, nbits), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_decode_error_small_on_clustered_data(rng, nbits):
    # centroids at the true centres: residuals are Gaussian noise, which B quantile buckets cut to
    # about 36% (1 bit), 12% (2 bits) and 1% (4 bits) of its energy
    centers = 3 * rng.standard_normal((8, 64)).astype(np.float32)
    x = (centers[rng.integers(0, 8, 3000)] + 0.1 * rng.standard_normal((3000, 64))).astype(np.float32)
    codes = assign_centroids(x, centers)
    cutoffs, weights = residual_buckets(x - centers[codes], nbits)
    codes, packed = encode_residual(x, centers, cutoffs, nbits)
    got = decode_residual(codes, packed, centers, weights, nbits)
    ratio = ((got - x) ** 2).sum() / ((centers[codes] - x) ** 2).sum()
    assert ratio < {1: 0.45, 2: 0.2, 4: 0.03}[nbits]


def test_packing_by_hand():
    # dim 8, nbits 2, one centroid at 0; cutoffs -1, 0, 1 per dimension; weights = bucket id * 10
    cent = np.zeros((1, 8), np.float32)
    cutoffs = np.tile(np.array([-1.0, 0.0, 1.0], np.float32), (8, 1))
    weights = np.tile(np.array([0.0, 10.0, 20.0, 30.0], np.float32), (8, 1))
    x = np.array([[-2, -0.5, 0.5, 2, 2, 0.5, -0.5, -2]], np.float32)  # buckets 0 1 2 3 3 2 1 0
    codes, packed = encode_residual(x, cent, cutoffs, 2)
    assert_array_equal(codes, [0])
    assert_array_equal(packed, [[0b11100100, 0b00011011]])  # dimension 0 in the low bits
    assert_array_equal(decode_residual(codes, packed, cent, weights, 2), [[0, 10, 20, 30, 30, 20, 10, 0]])
    # a value equal to a cutoff goes above it (searchsorted side="right")
    _, p = encode_residual(np.array([[0, -1, 1, 0, 0, 0, 0, 0]], np.float32), cent, cutoffs, 2)
    assert_array_equal(p, [[0b10110110, 0b10101010]])  # buckets 2 1 3 2, then 2 2 2 2


@pytest.mark.parametrize("family", available_backends())
@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_maxsim_residual_matches_reference(rng, nbits, family):
    dim = 32
    lengths = rng.integers(0, 30, 40)
    lengths[:3] = [1, 0, 1]
    x, offsets = ragged_store(rng, lengths, dim=dim)
    cent, cutoffs, weights = codec(rng, x, 8, nbits)
    codes, packed = encode_residual(x, cent, cutoffs, nbits)
    queries = [rng.standard_normal((m, dim)).astype(np.float32) for m in (1, 5, 33)]
    ref = maxsim_residual_reference(queries, codes, packed, offsets, cent, weights, nbits)
    docs = np.array([5, 1, 0, 39, 5])
    with use_backend(family):
        got = maxsim_residual_csr(queries, codes, packed, offsets, cent, weights, nbits)
        sub = maxsim_residual_csr(queries, codes, packed, offsets, cent, weights, nbits, docs=docs)
        one = maxsim_residual_csr(queries[2][:20], codes, packed, offsets, cent, weights, nbits)  # one 2-D query
    finite_close(got, ref, rtol=1e-5, atol=1e-4)
    finite_close(got, maxsim_reference(queries, decode_residual(codes, packed, cent, weights, nbits), offsets),
                 rtol=1e-5, atol=1e-4)
    finite_close(sub, ref[:, docs], rtol=1e-5, atol=1e-4)
    finite_close(one, maxsim_residual_reference([queries[2][:20]], codes, packed, offsets, cent, weights, nbits),
                 rtol=1e-5, atol=1e-4)
    assert maxsim_residual_csr(queries, codes, packed, offsets, cent, weights, nbits, docs=docs[:0]).shape == (3, 0)


@pytest.mark.parametrize("dim", [8, 128])
def test_maxsim_residual_long_pages_and_negative_scores(rng, dim):
    # pages longer than one decoded block (32 rows), all-negative similarities kept negative (nothing padded)
    x, offsets = ragged_store(rng, [70, 33, 32, 31, 0, 1], dim=dim)
    cent, cutoffs, weights = codec(rng, x, 4, 2)
    codes, packed = encode_residual(x, cent, cutoffs, 2)
    dec = decode_residual(codes, packed, cent, weights, 2)
    q = [-dec[-1:], rng.standard_normal((17, dim)).astype(np.float32)]
    got = maxsim_residual_csr(q, codes, packed, offsets, cent, weights, 2)
    finite_close(got, maxsim_reference(q, dec, offsets), rtol=1e-5, atol=1e-3)
    assert got[0, 5] < 0 and np.isneginf(got[:, 4]).all()


def test_kmeans_recovers_three_obvious_clusters(rng):
    centers = np.array([[10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0]], np.float32)
    x = (np.repeat(centers, [50, 80, 30], axis=0) + 0.1 * rng.standard_normal((160, 4))).astype(np.float32)
    cent = train_centroids(x, 3, iters=10, seed=3)
    assert cent.dtype == np.float32 and cent.shape == (3, 4)
    order = np.argsort(np.argmax(cent, axis=1))
    assert_allclose(cent[order], centers, atol=0.1)
    assert_array_equal(train_centroids(x, 3, iters=10, seed=3), cent)  # deterministic for a seed


def test_single_centroid_and_all_equal_vectors(rng):
    x = np.tile(rng.standard_normal(16).astype(np.float32), (10, 1))
    cent = train_centroids(x, 4, seed=1)  # empty clusters re-seeded: every centroid is the one point
    assert_allclose(cent, x[:4])
    codes = assign_centroids(x, cent[:1])
    assert_array_equal(codes, 0)
    cutoffs, weights = residual_buckets(x - cent[:1][codes], 2)
    assert_array_equal(weights, 0)
    codes, packed = encode_residual(x, cent[:1], cutoffs, 2)
    assert_array_equal(decode_residual(codes, packed, cent[:1], weights, 2), x)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_torch_residual_matches_reference(rng, nbits):
    pytest.importorskip("torch")
    from colprune.kernels import TorchScorer, maxsim_residual_torch

    x, offsets = ragged_store(rng, [5, 0, 1, 40, 12], dim=16)
    cent, cutoffs, weights = codec(rng, x, 4, nbits)
    codes, packed = encode_residual(x, cent, cutoffs, nbits)
    queries = [rng.standard_normal((m, 16)).astype(np.float32) for m in (3, 8)]
    ref = maxsim_residual_reference(queries, codes, packed, offsets, cent, weights, nbits)
    got = maxsim_residual_torch(queries, codes, packed, offsets, cent, weights, nbits, device="cpu")
    finite_close(got, ref, rtol=1e-5, atol=1e-4)
    # small blocks: pages split across several decodes
    scorer = TorchScorer.from_residual(codes, packed, offsets, cent, weights, nbits, device="cpu", max_block_bytes=2048)
    finite_close(scorer.scores(queries), ref, rtol=1e-5, atol=1e-4)
    assert f"residual{nbits}" in repr(scorer)
    with pytest.raises(InvalidInputError, match="codes"):
        TorchScorer.from_residual(codes + 4, packed, offsets, cent, weights, nbits, device="cpu")


def test_invalid_inputs(rng):
    x = rng.standard_normal((20, 12)).astype(np.float32)
    cent = x[:4].copy()
    cutoffs, weights = residual_buckets(x - cent[assign_centroids(x, cent)], 2)
    with pytest.raises(InvalidInputError, match="dim \\* nbits"):
        encode_residual(x, cent, np.zeros((12, 1), np.float32), 1)  # 12 * 1 bits
    codes, packed = encode_residual(x, cent, cutoffs, 2)
    with pytest.raises(InvalidInputError, match="codes"):
        decode_residual(np.full(20, 4, np.uint16), packed, cent, weights, 2)
    with pytest.raises(InvalidInputError, match="packed"):
        decode_residual(codes, packed.astype(np.int16), cent, weights, 2)
    with pytest.raises(InvalidInputError, match="weights"):
        decode_residual(codes, packed, cent, weights[:, :3], 2)
    with pytest.raises(InvalidInputError, match="nbits"):
        decode_residual(codes, packed, cent, weights, 3)
    offsets = np.array([0, 10, 20])
    q = rng.standard_normal((3, 12)).astype(np.float32)
    q[1, 2] = np.nan
    with pytest.raises(InvalidInputError, match="queries"):
        maxsim_residual_csr([q], codes, packed, offsets, cent, weights, 2)
    with pytest.raises(InvalidInputError, match="offsets"):
        maxsim_residual_csr([x[:2]], codes, packed, np.array([0, 5]), cent, weights, 2)
    with pytest.raises(InvalidInputError, match="sample"):
        train_centroids(x.astype(np.int32), 2)
    with pytest.raises(InvalidInputError, match="k must"):
        train_centroids(x, 21)
