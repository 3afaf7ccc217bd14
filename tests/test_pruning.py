import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from colprune.errors import InvalidInputError
from colprune.pruning import PRUNERS, AdaptiveThreshold, NoPruning, PrunedPage, Pruner, Random, TopRatio, make_pruner


def page(n=8, dim=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_adaptive_is_docpruner_threshold():
    imp = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 10.0])
    mean, std = imp.mean(), imp.std()  # population std
    for k in (-1.0, -0.25, 0.0, 0.5, 1.0):
        got = AdaptiveThreshold(k).prune(page(6), imp)
        assert_array_equal(got.positions, np.flatnonzero(imp > mean + k * std))


def test_adaptive_threshold_is_strict():
    imp = np.array([1.0, 1.0, 3.0, 3.0])  # mean 2, std 1: k=1 threshold is exactly 3
    got = AdaptiveThreshold(1.0).prune(page(4), imp)
    assert_array_equal(got.positions, [2])  # nothing > 3 survives, so the argmax (first 3.0)


def test_adaptive_all_equal_importance_keeps_one():
    got = AdaptiveThreshold(-0.25).prune(page(5), np.full(5, 0.2))
    assert got.n_kept == 1 and got.positions[0] == 0


def test_one_vector_page_keeps_it():
    for pruner in (AdaptiveThreshold(2.0), TopRatio(0.01), Random(0.01), NoPruning()):
        got = pruner.prune(page(1), np.array([0.5]))
        assert got.n_kept == 1 and got.n_original == 1


def test_kept_vectors_importance_and_order():
    emb, imp = page(6), np.array([0.1, 0.9, 0.2, 0.8, 0.05, 0.7])
    got = TopRatio(0.5).prune(emb, imp)
    assert isinstance(got, PrunedPage)
    assert_array_equal(got.positions, [1, 3, 5])  # original order, not importance order
    assert_array_equal(got.vectors, emb[[1, 3, 5]])
    assert_array_equal(got.importance, imp[[1, 3, 5]].astype(np.float32))
    assert got.keep_ratio == 0.5


def test_top_ratio_counts_and_ties():
    imp = np.ones(10)
    assert_array_equal(TopRatio(0.3).prune(page(10), imp).positions, [0, 1, 2])
    assert TopRatio(0.04).prune(page(10), imp).n_kept == 1  # at least one
    assert TopRatio(0.25).prune(page(10), imp).n_kept == 3  # 2.5 rounds half up
    assert TopRatio(1.0).prune(page(10), imp).n_kept == 10


def test_random_is_reproducible_and_sized():
    a = [Random(0.4, seed=3).prune(page(20, seed=s)).positions for s in range(3)]
    b = [Random(0.4, seed=3).prune(page(20, seed=s)).positions for s in range(3)]
    for x, y in zip(a, b):
        assert_array_equal(x, y)
        assert x.size == 8 and np.all(np.diff(x) > 0)
    assert not all(np.array_equal(x, y) for x, y in zip(a, [Random(0.4, seed=4).prune(page(20)).positions] * 3))


def test_non_patch_rows_are_always_kept_and_not_in_statistics():
    imp = np.array([100.0, 1.0, 2.0, 3.0, 4.0, 100.0])
    mask = np.array([False, True, True, True, True, False])
    got = AdaptiveThreshold(0.0).prune(page(6), imp, patch_mask=mask)
    # statistics over the patches only (mean 2.5), so patches 3.0 and 4.0 survive
    assert_array_equal(got.positions, [0, 3, 4, 5])
    assert_array_equal(got.patch_mask, [False, True, True, False])
    got = TopRatio(0.25).prune(page(6), imp, patch_mask=mask)
    assert_array_equal(got.positions, [0, 4, 5])


def test_page_without_patches_is_kept_whole():
    got = TopRatio(0.1).prune(page(4), np.arange(4.0), patch_mask=np.zeros(4, bool))
    assert got.n_kept == 4


def test_accepts_torch_and_other_float_dtypes():
    emb = torch.randn(6, 4, dtype=torch.bfloat16)
    got = TopRatio(0.5).prune(emb, torch.arange(6.0))
    assert got.vectors.dtype == np.float32
    assert_array_equal(got.positions, [3, 4, 5])
    got16 = NoPruning().prune(page(3).astype(np.float16))
    assert got16.vectors.dtype == np.float16


@pytest.mark.parametrize(
    "emb, imp, mask, match",
    [
        (np.zeros((0, 4)), np.zeros(0), None, "empty page"),
        (np.zeros(4), np.zeros(4), None, "2-D"),
        (np.full((3, 4), np.nan), np.zeros(3), None, "NaN"),
        (np.zeros((3, 4)), np.array([0.0, np.nan, 1.0]), None, "importance contains NaN"),
        (np.zeros((3, 4)), np.zeros(2), None, "one score per vector"),
        (np.zeros((3, 4)), np.zeros(3), np.array([1, 0, 1]), "boolean"),
        (np.zeros((3, 4)), np.zeros(3), np.array([True, False]), "patch_mask has shape"),
        (np.array([["a"] * 4]), None, None, "numbers"),
    ],
)
def test_bad_pages_are_named(emb, imp, mask, match):
    with pytest.raises(InvalidInputError, match=match):
        AdaptiveThreshold().prune(emb, imp, patch_mask=mask)


def test_importance_required_by_importance_pruners():
    with pytest.raises(InvalidInputError, match="needs importance"):
        AdaptiveThreshold().prune(page(3))
    assert NoPruning().prune(page(3)).n_kept == 3
    assert np.isnan(NoPruning().prune(page(3)).importance).all()


def test_registry_and_configs_round_trip():
    assert set(PRUNERS) >= {"none", "adaptive", "ratio", "random"}
    for name, cls in PRUNERS.items():
        p = cls()
        assert isinstance(p, Pruner) and p.name == name
        assert make_pruner(p.config()) == p
    assert make_pruner("adaptive", k=0.5) == AdaptiveThreshold(0.5)
    assert make_pruner(None) == NoPruning()
    with pytest.raises(InvalidInputError, match="unknown pruner"):
        make_pruner("nope")
    with pytest.raises(InvalidInputError, match="bad parameters"):
        make_pruner("ratio", k=1)
    with pytest.raises(InvalidInputError, match="ratio"):
        TopRatio(0.0)
    assert "k=-0.25" in repr(AdaptiveThreshold(-0.25))
