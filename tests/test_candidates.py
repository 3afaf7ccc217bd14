"""Search over residual codecs: exact (fused decode) and through the centroid index (candidates=, nprobe=)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from colprune.errors import InvalidInputError
from colprune.index import layout as L
from colprune.index.candidates import DEFAULT_NPROBE, check_candidates, segment_candidates
from colprune.kernels import (
    centroid_maxsim_reference,
    codebook_size,
    decode_residual,
    encode_residual,
    inverted_lists,
    maxsim_reference,
    residual_buckets,
    train_centroids,
)
from colprune.synthetic import make_corpus

HAS_RESIDUAL = "residual2" in L.CODECS
needs_store = pytest.mark.skipif(not HAS_RESIDUAL, reason="the store has no residual codec yet")


def _clustered(n_pages=300, n_queries=12, seed=3):
    return make_corpus(n_pages, min_vectors=20, max_vectors=60, n_queries=n_queries, n_topics=30,
                       content_noise=0.25, query_noise=0.4, latent_dim=8, seed=seed)


def _encoded(corpus, nbits=2):
    vecs = np.concatenate(corpus.embeddings).astype(np.float32)
    off = np.zeros(len(corpus.embeddings) + 1, np.int64)
    np.cumsum([e.shape[0] for e in corpus.embeddings], out=off[1:])
    k = codebook_size(vecs.shape[0])
    cent = train_centroids(vecs, k, seed=0)
    codes0, _ = encode_residual(vecs, cent, np.zeros((vecs.shape[1], (1 << nbits) - 1), np.float32), nbits)
    cutoffs, weights = residual_buckets(vecs - cent[codes0], nbits)
    codes, packed = encode_residual(vecs, cent, cutoffs, nbits)
    return codes, packed, off, cent, weights


# -- array level: candidate generation of one segment ---------------------------------------

def test_segment_candidates_probe_everything_gives_every_live_page():
    corpus = _clustered(120, n_queries=3)
    codes, _, off, cent, _ = _encoded(corpus)
    k = cent.shape[0]
    lo, ld = inverted_lists(codes, off, k)
    q = corpus.queries[0]
    qcs = q @ cent.T
    n_docs = off.size - 1
    live = np.ones(n_docs, bool)
    live[::3] = False
    docs, cs = segment_candidates(qcs, k, lo, ld, codes, off, live, n_docs)
    assert_array_equal(docs, np.flatnonzero(live))
    want = centroid_maxsim_reference(qcs, codes, off, docs)
    assert_allclose(cs, want, rtol=1e-5, atol=1e-5)
    # the best 7 by centroid score, ascending rows
    top, tcs = segment_candidates(qcs, k, lo, ld, codes, off, live, 7)
    order = np.lexsort((docs, -cs.astype(np.float64)))[:7]
    assert_array_equal(top, np.sort(docs[order]))
    assert top.dtype == np.int64 and tcs.dtype == np.float32


def test_segment_candidates_masks_before_scoring_and_handles_empty():
    corpus = _clustered(40, n_queries=2)
    codes, _, off, cent, _ = _encoded(corpus)
    lo, ld = inverted_lists(codes, off, cent.shape[0])
    qcs = corpus.queries[0] @ cent.T
    none = np.zeros(off.size - 1, bool)
    docs, cs = segment_candidates(qcs, 2, lo, ld, codes, off, none, 10)
    assert docs.size == 0 and cs.size == 0
    one = none.copy()
    one[5] = True
    docs, _ = segment_candidates(qcs, cent.shape[0], lo, ld, codes, off, one, 10)
    assert_array_equal(docs, [5])
    # a segment with no vectors at all
    empty_off = np.zeros(4, np.int64)
    elo, eld = inverted_lists(np.zeros(0, np.uint16), empty_off, cent.shape[0])
    docs, _ = segment_candidates(qcs, 3, elo, eld, np.zeros(0, np.uint16), empty_off, None, 10)
    assert docs.size == 0


def test_check_candidates_errors():
    assert check_candidates("residual2", 10, None, None, 256) is None
    assert check_candidates("residual2", 10, 100, None, 256) == DEFAULT_NPROBE
    assert check_candidates("residual4", 10, 100, 256, 256) == 256
    assert check_candidates("float16", 10, 100, None, 0) is None  # two-stage search, as before
    with pytest.raises(InvalidInputError, match="fewer than k"):
        check_candidates("residual2", 10, 5, None, 256)
    with pytest.raises(InvalidInputError, match="nprobe must be from 1 to the codebook's 256"):
        check_candidates("residual2", 10, 100, 257, 256)
    with pytest.raises(InvalidInputError, match="nprobe must be from 1"):
        check_candidates("residual2", 10, 100, 0, 256)
    with pytest.raises(InvalidInputError, match="float16.*two-stage.*residual2"):
        check_candidates("float16", 10, 100, 4, 0)
    with pytest.raises(InvalidInputError, match="int8.*residual2"):
        check_candidates("int8", 10, None, 4, 0)
    with pytest.raises(InvalidInputError, match="goes with candidates"):
        check_candidates("residual2", 10, None, 4, 256)
    with pytest.raises(InvalidInputError, match="integer"):
        check_candidates("residual2", 10, 100, 2.5, 256)


def test_residual_scores_are_exact_on_the_decoded_vectors():
    corpus = _clustered(60, n_queries=4)
    codes, packed, off, cent, weights = _encoded(corpus)
    from colprune.kernels import maxsim_residual_csr

    got = maxsim_residual_csr(corpus.queries, codes, packed, off, cent, weights, 2)
    dec = decode_residual(codes, packed, cent, weights, 2)
    want = maxsim_reference(corpus.queries, dec, off)
    assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_searcher_and_server_check_nprobe(tmp_path, rng):
    import colprune as cp
    from colprune.errors import UsageError
    from colprune.serve import Searcher
    from colprune.serve.limits import RequestError
    from colprune.serve.server import nprobe_field

    with cp.Index.create(tmp_path / "f.cpx", dim=8) as index:
        index.add(["a"], [rng.standard_normal((3, 8))])
        for words, hint in (("cli", "--codec residual2"), ("http", "codec residual2")):
            s = Searcher(index, words=words)
            s.check_options(10, 100, None)  # two-stage search, as before
            with pytest.raises(UsageError, match="float16") as e:
                s.check_options(10, 100, None, 4)
            assert hint in str(e.value) and (words == "cli" or "--" not in str(e.value))
            with pytest.raises(UsageError, match="positive"):
                s.check_options(10, 100, None, 0)
    assert nprobe_field({"k": 3}) == ({"k": 3}, None)
    assert nprobe_field({"k": 3, "nprobe": 8}) == ({"k": 3}, 8)
    assert nprobe_field({"q": ["a"], "nprobe": ["16"]}, get=True) == ({"q": ["a"]}, 16)
    for bad in (0, -1, 1.5, True, "x", [4], 70000):
        with pytest.raises(RequestError, match='"nprobe"'):
            nprobe_field({"nprobe": bad})
    with pytest.raises(RequestError, match='"nprobe" once'):
        nprobe_field({"nprobe": ["1", "2"]}, get=True)
