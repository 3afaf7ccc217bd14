"""Index.warm(kernels=True): the search kernels run once on one page, results unchanged, any codec or state."""

import numpy as np
import pytest

import colprune as cp


def _pages(rng, n=12, dim=16):
    return [f"p{i}" for i in range(n)], [rng.standard_normal((int(rng.integers(1, 9)), dim)).astype(np.float32)
                                         for _ in range(n)]


@pytest.mark.parametrize("codec", ["float16", "float32", "int8", "binary", "residual2"])
def test_warm_kernels_leaves_search_unchanged(tmp_path, rng, codec):
    ids, vecs = _pages(rng)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    with cp.Index.create(tmp_path / "ix", dim=16, dtype=codec) as index:
        index.add(ids, vecs)
        before = index.search(q, k=5)
        assert index.warm(kernels=True) >= 0
        assert [(h.id, h.score) for h in index.search(q, k=5)] == [(h.id, h.score) for h in before]
        if codec == "residual2":
            got = index.search(q, k=5, candidates=len(ids), nprobe=index.snapshot().codebook.n_centroids)
            assert [h.id for h in got] == [h.id for h in before]


def test_warm_kernels_on_empty_and_all_deleted(tmp_path, rng):
    ids, vecs = _pages(rng, n=3)
    with cp.Index.create(tmp_path / "ix", dim=16, dtype="residual2") as index:
        assert index.warm(kernels=True) == 0  # nothing to run on
        index.add(ids, vecs)
        index.delete(ids[:1])
        index.warm(kernels=True)  # the first live page is the second
        index.delete(ids[1:])
        index.warm(kernels=True)
        assert index.search(rng.standard_normal((4, 16)).astype(np.float32), k=3) == []


def test_sharded_collections_warm_their_shards(tmp_path, rng):
    from colprune.distributed import ShardedIndex

    ids, vecs = _pages(rng, n=20)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    with ShardedIndex.create(tmp_path / "s", n_shards=2, dim=16, dtype="residual2") as s:
        s.add(ids, vecs)
    with ShardedIndex.open(tmp_path / "s") as s:
        before = [(h.id, h.score) for h in s.search(q, k=5)]
        s.warm(kernels=True)
        assert [(h.id, h.score) for h in s.search(q, k=5)] == before
