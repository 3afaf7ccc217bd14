"""The coverage-preserving attention-adaptive selectors: adaptive-spread and adaptive-cluster."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from colprune.errors import InvalidInputError
from colprune.pruning import PRUNERS, AdaptiveCluster, AdaptiveSpread, AdaptiveThreshold, make_pruner
from colprune.pruning.coverage import cluster_select, spread_select


def two_regions(n_a=6, n_b=4):
    """A page of two regions: ``n_a`` near-copies of one direction (two of them highly attended),
    then ``n_b`` near-copies of another (little attention)."""
    a, b = np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])
    rng = np.random.default_rng(0)
    x = np.vstack([a + 0.01 * rng.standard_normal((n_a, 4)), b + 0.01 * rng.standard_normal((n_b, 4))])
    imp = np.r_[5.0, 4.9, np.ones(n_a - 2), np.linspace(0.5, 0.2, n_b)]
    return x.astype(np.float32), imp


@pytest.mark.parametrize("name", ["adaptive-spread", "adaptive-cluster"])
def test_the_count_is_docpruners_and_every_region_keeps_a_vector(name):
    x, imp = two_regions()
    pr = make_pruner(name, k=0.0)
    docpruner = AdaptiveThreshold(0.0).prune(x, imp)
    got = pr.prune(x, imp)
    assert got.n_kept == docpruner.n_kept == pr.n_keep(imp) == 2
    assert set(docpruner.positions) <= set(range(6))  # DocPruner's two: both from the attended region
    assert got.positions[0] == 0 and got.positions[1] >= 6  # coverage: one from each region
    assert_array_equal(got.vectors, x[got.positions])  # exact token vectors, not merged
    assert got.covers is None and not pr.merges and pr.needs_importance


def test_spread_is_farthest_point_weighted_by_attention():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    imp = np.array([3.0, 2.0, 1.0, 0.0])
    assert_array_equal(spread_select(imp, x, 2, alpha=0.0), [0, 3])  # coverage only: the opposite row
    assert_array_equal(spread_select(imp, x, 2, alpha=1.0), [0, 2])  # row 3 has no attention: never first
    assert_array_equal(spread_select(imp, x, 4, alpha=0.5), [0, 1, 2, 3])
    assert_array_equal(spread_select(imp, x, 9, alpha=0.5), [0, 1, 2, 3])  # clipped to the page


def test_cluster_select_keeps_each_clusters_most_attended():
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    x = np.stack([a, b, a + 0.01, b + 0.01, a - 0.01, b - 0.01]).astype(np.float32)
    imp = np.array([0.1, 0.2, 0.9, 0.1, 0.3, 0.8])
    assert_array_equal(cluster_select(imp, x, 2), [2, 5])
    assert_array_equal(cluster_select(imp, x, 1), [2])
    assert_array_equal(cluster_select(imp, x, 6), np.arange(6))


@pytest.mark.parametrize("cls", [AdaptiveSpread, AdaptiveCluster])
def test_one_vector_pages_all_equal_importance_and_special_rows(cls):
    one = cls(2.0).prune(np.ones((1, 4), np.float32), np.array([0.5]))
    assert one.n_kept == 1 and one.n_original == 1
    x, _ = two_regions()
    flat = cls(-0.25).prune(x, np.full(10, 0.2))
    assert flat.n_kept == 1  # nothing above mean + k*std of a flat page: one vector, as DocPruner keeps
    mask = np.r_[False, np.ones(9, bool)]
    imp = np.r_[100.0, np.arange(9.0)]
    got = cls(0.0).prune(x, imp, patch_mask=mask)
    assert got.positions[0] == 0 and not got.patch_mask[0]  # the special row is kept
    assert got.n_kept - 1 == AdaptiveThreshold(0.0).prune(x, imp, patch_mask=mask).n_kept - 1


@pytest.mark.parametrize("cls", [AdaptiveSpread, AdaptiveCluster])
def test_bad_input_is_refused(cls):
    x, imp = two_regions()
    with pytest.raises(InvalidInputError, match="importance contains NaN"):
        cls().prune(x, np.r_[np.nan, imp[1:]])
    with pytest.raises(InvalidInputError, match="needs importance"):
        cls().prune(x)
    with pytest.raises(InvalidInputError, match="k must be finite"):
        cls(float("inf"))


def test_registry_configs_and_alpha_range():
    for name, cls in (("adaptive-spread", AdaptiveSpread), ("adaptive-cluster", AdaptiveCluster)):
        assert PRUNERS[name] is cls and cls.budget_param == "k" and not cls.budget_rising
        p = make_pruner(name, k=0.3)
        assert make_pruner(p.config()) == p and p.params()["k"] == 0.3
    assert AdaptiveSpread(alpha=0.2).params() == {"k": -0.25, "alpha": 0.2}
    with pytest.raises(InvalidInputError, match="alpha"):
        AdaptiveSpread(alpha=1.5)
