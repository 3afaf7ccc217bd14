"""Two-level nearest-centroid assignment (colprune.kernels.assign) against exact assignment."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from colprune.errors import InvalidInputError
from colprune.kernels import (
    decode_residual,
    encode_residual,
    encode_residual_reference,
    residual_buckets,
    train_centroids,
)
from colprune.kernels.assign import TWO_LEVEL_MIN, default_probe, group_centroids, nearest_centroids


def sqdist_reference(x, cent, codes):
    d = x.astype(np.float64) - cent.astype(np.float64)[codes]
    return np.einsum("ij,ij->i", d, d)


def clustered(rng, n, dim, k, spread=0.3):
    centres = rng.standard_normal((k, dim)).astype(np.float32)
    return (centres[rng.integers(0, k, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture
def book(rng):
    x = clustered(rng, 6000, 32, 300)
    cent = train_centroids(x, 256, iters=4, two_level=False)
    return x, cent, group_centroids(cent)


def test_groups_partition_the_codebook(book):
    _, cent, g = book
    assert g.n_groups == 16  # the power of two nearest sqrt(256)
    assert g.offsets[0] == 0 and g.offsets[-1] == cent.shape[0]
    assert_array_equal(np.sort(g.members), np.arange(cent.shape[0]))
    assert (np.diff(g.offsets) > 0).all()
    for a, b in zip(g.offsets[:-1], g.offsets[1:]):
        assert (np.diff(g.members[a:b]) > 0).all()  # ascending within a group
    again = group_centroids(cent)
    assert_array_equal(again.members, g.members)
    assert_array_equal(again.centres, g.centres)


def test_probing_every_group_is_exact(book):
    x, cent, g = book
    exact, d_exact = nearest_centroids(x, cent, distances=True)
    codes, d = nearest_centroids(x, cent, groups=g, probe=g.n_groups, distances=True)
    # the same distances (float32 products in another blocking can only swap exact near-ties)
    assert_allclose(d, d_exact, rtol=1e-5, atol=1e-5)
    assert np.mean(codes == exact) > 0.999
    assert_allclose(sqdist_reference(x, cent, codes), d_exact, rtol=1e-4, atol=1e-4)


def test_exact_matches_float64_argmin(rng):
    x = rng.standard_normal((500, 16)).astype(np.float32)
    cent = rng.standard_normal((40, 16)).astype(np.float32)
    codes, d = nearest_centroids(x, cent, distances=True)
    full = ((x[:, None, :].astype(np.float64) - cent[None].astype(np.float64)) ** 2).sum(-1)
    assert_allclose(d, full.min(1), rtol=1e-4, atol=1e-5)
    assert_allclose(full[np.arange(500), codes], full.min(1), rtol=1e-5, atol=1e-6)


def test_few_probes_stay_close_to_exact(book):
    x, cent, g = book
    _, d_exact = nearest_centroids(x, cent, distances=True)
    prev = np.inf
    for p in (1, 2, 4, 8):
        codes, d = nearest_centroids(x, cent, groups=g, probe=p, distances=True)
        assert ((codes >= 0) & (codes < cent.shape[0])).all()
        assert_allclose(sqdist_reference(x, cent, codes), d, rtol=1e-4, atol=1e-4)  # the distance is its code's
        assert (d >= d_exact - 1e-4).all()  # never better than exact
        ratio = d.mean() / d_exact.mean()
        assert ratio <= prev + 1e-9  # more probes never hurt on average
        prev = ratio
    assert prev < 1.02  # 8 of 16 groups: within 2% of exact's mean squared distance


def test_centroids_map_to_themselves(book):
    _, cent, g = book
    assert_array_equal(nearest_centroids(cent, cent, groups=g, probe=1), np.arange(cent.shape[0]))


def test_ties_go_to_the_lowest_id(rng):
    base = rng.standard_normal((8, 4)).astype(np.float32)
    cent = np.concatenate([base, base])  # every centroid twice: ids i and i + 8 tie exactly
    g = group_centroids(cent, 4)
    x = base[rng.integers(0, 8, 200)]
    want = nearest_centroids(x, cent)
    assert (want < 8).all()
    assert_array_equal(nearest_centroids(x, cent, groups=g, probe=g.n_groups), want)


def test_degenerate_inputs(rng):
    cent = rng.standard_normal((1, 8)).astype(np.float32)
    g = group_centroids(cent)
    assert g.n_groups == 1
    x = rng.standard_normal((5, 8)).astype(np.float32)
    assert_array_equal(nearest_centroids(x, cent, groups=g), np.zeros(5))
    empty, d = nearest_centroids(np.zeros((0, 8), np.float32), cent, groups=g, distances=True)
    assert empty.shape == (0,) and d.shape == (0,)
    same = np.ones((50, 8), np.float32)  # all-equal centroids: one group, every row to id 0
    assert_array_equal(nearest_centroids(x, same, groups=group_centroids(same, 4)), np.zeros(5))
    with pytest.raises(InvalidInputError, match="probe"):
        nearest_centroids(x, cent, groups=g, probe=0)
    with pytest.raises(InvalidInputError, match="centroids"):
        group_centroids(np.zeros((0, 8), np.float32))


def test_default_probe():
    assert default_probe(1) == 1 and default_probe(3) == 3
    assert default_probe(64) == 4 and default_probe(128) == 8 and default_probe(256) == 16
    assert TWO_LEVEL_MIN == 1024


def test_two_level_kmeans_is_as_good_as_exact(rng):
    x = clustered(rng, 20000, 16, 2000, spread=0.5)
    exact = train_centroids(x, 1024, iters=4, two_level=False)
    approx = train_centroids(x, 1024, iters=4)  # k >= TWO_LEVEL_MIN: assigned through groups each step
    _, d_exact = nearest_centroids(x, exact, distances=True)
    _, d_approx = nearest_centroids(x, approx, distances=True)
    assert d_approx.mean() < 1.03 * d_exact.mean()


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_encode_measures_its_error(rng, nbits):
    x = clustered(rng, 3000, 32, 50)
    cent = train_centroids(x, 64, iters=4)
    codes0, _ = nearest_centroids(x, cent, distances=True)
    cutoffs, weights = residual_buckets(x - cent[codes0], nbits)
    codes, packed, err = encode_residual(x, cent, cutoffs, nbits, weights=weights)
    ref_codes, ref_packed = encode_residual_reference(x, cent, cutoffs, nbits)
    assert np.mean(codes == ref_codes) > 0.999
    same = codes == ref_codes
    assert_array_equal(packed[same], ref_packed[same])
    dec = decode_residual(codes, packed, cent, weights, nbits)
    assert_allclose(err, ((x - dec) ** 2).sum(1), rtol=1e-4, atol=1e-6)
    g = group_centroids(cent, 8)
    c2, p2, e2 = encode_residual(x, cent, cutoffs, nbits, groups=g, probe=8, weights=weights)
    assert np.mean(c2 == codes) > 0.999
    with pytest.raises(InvalidInputError, match="weights"):
        encode_residual(x, cent, cutoffs, nbits, weights=weights[:, :1])


def test_groups_of_other_centroids_are_refused(book, rng):
    x, cent, g = book
    with pytest.raises(InvalidInputError, match="group_centroids"):
        nearest_centroids(x, cent[:100], groups=g)
    with pytest.raises(InvalidInputError, match="group_centroids"):
        nearest_centroids(x[:, :16], cent[:, :16], groups=g)
