import numpy as np
import pytest
from conftest import pages
from numpy.testing import assert_allclose, assert_array_equal

import colprune as cp
from colprune.errors import InvalidInputError
from colprune.pruning import (
    GlobalThreshold,
    GridPooling,
    HierarchicalPooling,
    KMeansPooling,
    PivotDedup,
    PruneThenMerge,
    SequentialPooling,
    make_pruner,
)


def test_global_threshold_is_shared_across_pages():
    p = GlobalThreshold(0.5)
    assert_array_equal(p.prune(np.eye(4), np.array([0.1, 0.6, 0.5, 0.9])).positions, [1, 3])
    assert_array_equal(p.prune(np.eye(3), np.array([0.1, 0.2, 0.3])).positions, [2])  # none above: the argmax


def test_pivot_dedup_collapses_near_duplicates():
    x = np.array([[1, 0, 0], [0.999, 0.01, 0], [0, 1, 0], [0, 0, 1], [0, 0.02, 1]], np.float32)
    imp = np.array([0.5, 0.9, 0.3, 0.2, 0.1])
    assert_array_equal(PivotDedup(0.99).prune(x, imp).positions, [1, 2, 3])  # the more important twin wins
    assert PivotDedup(1.0).prune(x, imp).n_kept == 5
    with pytest.raises(InvalidInputError, match="cosine"):
        PivotDedup(2.0)


def check_partition(result, n, patch_rows):
    covered = np.sort(np.concatenate(result.covers))
    assert_array_equal(covered, np.arange(n))  # every row covered exactly once
    for pos, cov, flag in zip(result.positions, result.covers, result.patch_mask):
        assert pos == cov[0]
        assert flag == (cov[0] in patch_rows)


@pytest.mark.parametrize("merger", [HierarchicalPooling(0.25), SequentialPooling(0.25), KMeansPooling(0.25),
                                    GridPooling(0.25)])
def test_mergers_partition_patches_and_keep_special_rows(merger, rng):
    n = 1 + 36
    x = rng.standard_normal((n, 8)).astype(np.float32)
    mask = np.r_[False, np.ones(36, bool)]
    imp = rng.random(n)
    r = merger.prune(x, imp, patch_mask=mask, grid=(6, 6))
    check_partition(r, n, set(range(1, n)))
    assert r.n_kept - 1 == pytest.approx(0.25 * 36, abs=3)
    assert_array_equal(r.vectors[0], x[0])  # the special row passes through
    for vec, cov, im in zip(r.vectors[1:], r.covers[1:], r.importance[1:]):
        m = x[cov].mean(axis=0)
        assert_allclose(vec, m / np.linalg.norm(m) * np.linalg.norm(x[cov], axis=1).mean(), rtol=1e-5)
        assert im == pytest.approx(imp[cov].mean(), rel=1e-6)


def test_ward_finds_obvious_clusters_and_grid_pooling_uses_windows():
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    x = np.stack([a, b, a + 0.01, b + 0.01, a - 0.01, b - 0.01]).astype(np.float32)
    groups = sorted(c.tolist() for c in HierarchicalPooling(2 / 6).prune(x).covers)
    assert groups == [[0, 2, 4], [1, 3, 5]]
    cells = sorted(c.tolist() for c in GridPooling(0.25).prune(np.eye(6, dtype=np.float32)[:6], grid=(2, 3)).covers)
    assert cells == [[0, 1, 3, 4], [2, 5]]  # 2x2 windows; the right edge keeps a partial window
    with pytest.raises(InvalidInputError, match="grid"):
        GridPooling(0.25).prune(np.eye(4, dtype=np.float32))
    assert [c.tolist() for c in SequentialPooling(0.5).prune(np.eye(5, dtype=np.float32)).covers] == [[0, 1], [2, 3], [4]]


def test_prune_then_merge_maps_covers_to_input_rows(rng):
    x = rng.standard_normal((20, 8)).astype(np.float32)
    imp = np.arange(20.0)
    pm = PruneThenMerge({"name": "ratio", "params": {"ratio": 0.5}}, {"name": "pool1d", "params": {"ratio": 0.5}})
    r = pm.prune(x, imp)
    assert r.n_kept == 5 and sorted(np.concatenate(r.covers).tolist()) == list(range(10, 20))
    assert make_pruner(pm.config()) == pm
    with pytest.raises(InvalidInputError, match="not a merger"):
        PruneThenMerge(merger={"name": "ratio", "params": {}})


def test_merged_indexes_store_covers_and_derive_again(tmp_path, rng):
    ids, embs, imps = pages(rng, 10, lo=6)
    with cp.Index.create(tmp_path / "full.h5", dim=16, dtype="float32", signals=["cls"]) as full:
        full.add(ids, embs, imps, signals=[{"cls": i} for i in imps])
        ward = full.derive(tmp_path / "ward.h5", "ward", ratio=0.5)
    with cp.Index.create(tmp_path / "plain.h5", dim=16) as plain:
        with pytest.raises(InvalidInputError, match="merged=True"):
            plain.add(["x"], [embs[0]], [imps[0]], pruner="ward")
    with cp.Index.create(tmp_path / "m.h5", dim=16, merged=True) as m:
        m.add(["x"], [embs[0]], [imps[0]], pruner=cp.pruning.SequentialPooling(0.5))
        assert [c.tolist() for c in m.get("x").covers][0] == [0, 1]
    with ward:
        assert ward.merged
        for i, doc_id in enumerate(ids):
            page, want = ward.get(doc_id), HierarchicalPooling(0.5).prune(embs[i], imps[i])
            assert [c.tolist() for c in page.covers] == [c.tolist() for c in want.covers]
            assert_allclose(page.vectors, want.vectors, rtol=1e-6)
            assert_allclose(page.signals["cls"], [imps[i][c].mean() for c in want.covers], rtol=1e-6)
        again = ward.derive(tmp_path / "again.h5", "ratio", ratio=0.5)
        p1, p2 = ward.get("doc-3"), again.get("doc-3")
        assert p2.covers is not None and all(any(c2.tolist() == c1.tolist() for c1 in p1.covers) for c2 in p2.covers)
        assert len(list(again.iter_pages())) == 10
        again.close()


def test_attention_counts():
    from colprune.pruning.counts import docpruner_count, effective_number, entropy_count

    assert effective_number(np.ones(50)) == pytest.approx(50)
    assert effective_number(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)
    assert effective_number(np.r_[np.ones(5), np.zeros(5)]) == pytest.approx(5)
    assert effective_number(np.zeros(7)) == 7  # no attention at all: uniform
    assert entropy_count(np.ones(50), 0.1) == 5 and entropy_count(np.ones(50), 0.001) == 1
    assert entropy_count(np.ones(50), 10) == 50
    imp = np.arange(10.0)
    assert docpruner_count(imp, 0.0) == 5 and docpruner_count(np.ones(4), 0.0) == 1


@pytest.mark.parametrize("name", ["adaptive-ward", "entropy-ward"])
def test_adaptive_mergers_keep_their_count_as_ward_groups(name, rng):
    n = 1 + 60
    x = rng.standard_normal((n, 8)).astype(np.float32)
    mask = np.r_[False, np.ones(60, bool)]
    imp = rng.random(n) ** 4
    pr = make_pruner(name)
    r = pr.prune(x, imp, patch_mask=mask)
    check_partition(r, n, set(range(1, n)))
    assert r.n_kept - 1 == pr.n_keep(imp[1:])
    want = HierarchicalPooling(ratio=pr.n_keep(imp[1:]) / 60).prune(x, imp, patch_mask=mask)
    assert_allclose(r.vectors, want.vectors, rtol=1e-6)  # the same Ward tree, cut at the page's count
    assert make_pruner(pr.config()) == pr and pr.needs_importance


def test_entropy_count_follows_the_spread_of_attention(rng):
    x = rng.standard_normal((100, 8)).astype(np.float32)
    spread, peaked = np.ones(100), np.r_[np.full(10, 10.0), np.full(90, 0.01)]
    for name in ("entropy-ward", "entropy-top"):
        pr = make_pruner(name, scale=0.5)
        assert pr.prune(x, spread).n_kept == 50 and pr.prune(x, peaked).n_kept < 10
    top = make_pruner("entropy-top", scale=0.5).prune(x, peaked)
    assert set(top.positions) <= set(range(10))  # the most attended patches


def test_summary_vector_is_the_page_mean_and_counts_in_the_budget(rng):
    n = 1 + 40
    x = rng.standard_normal((n, 8)).astype(np.float32)
    mask = np.r_[False, np.ones(40, bool)]
    imp = rng.random(n)
    for name in ("adaptive-ward", "entropy-ward", "adaptive"):
        plain, summ = make_pruner(name), make_pruner(name, summary=True)
        assert summ.merges
        a, b = plain.prune(x, imp, patch_mask=mask), summ.prune(x, imp, patch_mask=mask)
        assert b.n_kept == a.n_kept + 1 and summ.n_keep(imp[1:]) == plain.n_keep(imp[1:]) + 1
        full = [i for i, c in enumerate(b.covers) if len(c) == 40]
        assert len(full) == 1
        m = x[1:].mean(axis=0)
        assert_allclose(b.vectors[full[0]], m / np.linalg.norm(m) * np.linalg.norm(x[1:], axis=1).mean(), rtol=1e-5)
        assert list(b.positions) == sorted(b.positions) and make_pruner(summ.config()) == summ


def test_docpruner_with_summary_keeps_the_selected_rows_exactly(rng):
    n = 1 + 50
    x = rng.standard_normal((n, 8)).astype(np.float32)
    mask = np.r_[False, np.ones(50, bool)]
    imp = rng.random(n) ** 3
    sel = make_pruner("adaptive", k=0.5).prune(x, imp, patch_mask=mask)
    summ = make_pruner("adaptive", k=0.5, summary=True).prune(x, imp, patch_mask=mask)
    single = [i for i, c in enumerate(summ.covers) if len(c) == 1]
    assert_allclose(summ.vectors[single], sel.vectors)  # the selection is untouched, the summary is added
    assert [int(summ.covers[i][0]) for i in single] == list(sel.positions)
    assert not make_pruner("adaptive").merges
