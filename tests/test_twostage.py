import numpy as np
import pytest
from conftest import ragged_store
from numpy.testing import assert_allclose, assert_array_equal

import colprune as cp
from colprune.errors import InvalidInputError
from colprune.kernels import page_centroids, page_centroids_reference
from colprune.synthetic import make_corpus


def test_centroids_match_reference_on_ragged_pages(rng):
    lengths = rng.integers(1, 50, 40)
    lengths[:3] = [1, 2, 4]  # fewer vectors than centroids: each vector is its own centroid
    vectors, offsets = ragged_store(rng, lengths, dim=16)
    got, goff = page_centroids(vectors, offsets, 4)
    want, woff = page_centroids_reference(vectors, offsets, 4)
    assert_array_equal(goff, woff)
    assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_allclose(got[:1], vectors[:1], rtol=1e-6)  # a one-vector page summarises to itself
    assert_array_equal(np.diff(goff), np.minimum(lengths, 4))


def test_centroids_of_float16_and_identical_vectors(rng):
    vectors, offsets = ragged_store(rng, [30, 5], dim=8)
    vectors[30:] = vectors[30]  # all equal: every centroid is that vector
    got, goff = page_centroids(vectors.astype(np.float16), offsets, 3)
    want, _ = page_centroids_reference(vectors.astype(np.float16), offsets, 3)
    assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_allclose(got[goff[1]:], np.repeat(vectors[30:31].astype(np.float16), 3, 0), rtol=1e-3)
    with pytest.raises(ValueError, match="n_centroids"):
        page_centroids(vectors, offsets, 0)


def test_two_stage_search_finds_the_exact_top_hits(tmp_path):
    corpus = make_corpus(300, min_vectors=40, max_vectors=80, n_queries=12, n_topics=30,
                         content_noise=0.25, query_noise=0.4, seed=3)
    with cp.Index.create(tmp_path / "s.h5", dim=128, summary_centroids=8) as index:
        index.add(corpus.ids, corpus.embeddings, corpus.importance)
        exact = index.search(corpus.queries, k=10)
        every = index.search(corpus.queries, k=10, candidates=300)  # shortlist = all pages: exact
        assert [[h.id for h in hs] for hs in every] == [[h.id for h in hs] for hs in exact]
        assert_allclose([h.score for hs in every for h in hs], [h.score for hs in exact for h in hs], rtol=1e-6)
        recalls = []
        for c in (30, 100, 200):
            two = index.search(corpus.queries, k=10, candidates=c)
            # the page each query was drawn from stands clearly first: a shortlist keeps it
            assert [hs[0].id for hs in two] == corpus.relevant == [hs[0].id for hs in exact]
            recalls.append(np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(two, exact)]))
        assert recalls == sorted(recalls)  # a longer shortlist never loses hits
        single = index.search(corpus.queries[0], k=3, candidates=30)
        assert single[0].id == exact[0][0].id


def test_two_stage_needs_a_float_codec(tmp_path, rng):
    with cp.Index.create(tmp_path / "i.h5", dim=8, dtype="int8") as index:
        index.add(["a"], [rng.standard_normal((3, 8))])
        with pytest.raises(InvalidInputError, match="float16/float32"):
            index.search(np.ones((2, 8), np.float32), candidates=10)
