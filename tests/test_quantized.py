import numpy as np
import pytest
from conftest import pages, ragged_store
from numpy.testing import assert_allclose, assert_array_equal

import colprune as cp
from colprune.kernels import (
    dequantize_int8,
    maxsim_binary,
    maxsim_binary_reference,
    maxsim_int8,
    maxsim_int8_reference,
    maxsim_reference,
    pack_binary,
    quantize_int8,
)
from colprune.kernels._llvm import has_vnni


def qs(rng, sizes, dim):
    return [rng.standard_normal((m, dim)).astype(np.float32) for m in sizes]


def finite_close(a, b, **kw):
    assert_array_equal(np.isinf(a), np.isinf(b))
    fin = np.isfinite(b)
    assert_allclose(a[fin], b[fin], **kw)


@pytest.mark.parametrize("portable", [True, False])
@pytest.mark.parametrize("dim", [128, 24, 7])
def test_int8_matches_reference(rng, portable, dim):
    lengths = rng.integers(0, 40, 60)
    lengths[:3] = [1, 0, 1]  # one-vector and empty documents
    vectors, offsets = ragged_store(rng, lengths, dim=dim)
    codes, scales = quantize_int8(vectors)
    queries = qs(rng, [1, 5, 33], dim)  # 33 rows: more than two 16-row VNNI blocks
    got = maxsim_int8(queries, codes, scales, offsets, portable=portable)
    finite_close(got, maxsim_int8_reference(queries, codes, scales, offsets), rtol=1e-5, atol=1e-4)
    # and within the rounding bound of the exact scores: each token's max moves by at most the
    # largest dot-product error, |q|·|d - d̂| + |q - q̂|·|d̂| with |x - x̂| <= sqrt(dim)·scale/2
    qc_scale = max(quantize_int8(q)[1].max() for q in queries)
    err = np.sqrt(dim) / 2 * (max(np.linalg.norm(q, axis=1).max() for q in queries) * scales.max()
                              + qc_scale * np.linalg.norm(dequantize_int8(codes, scales), axis=1).max())
    exact = maxsim_reference(queries, vectors, offsets)
    for q, row_got, row_exact in zip(queries, got, exact):
        finite_close(row_got, row_exact, rtol=0, atol=q.shape[0] * err * 1.001)


@pytest.mark.skipif(not has_vnni(), reason="CPU without AVX-512 VNNI")
def test_vnni_and_portable_agree_exactly_on_the_integers(rng):
    vectors, offsets = ragged_store(rng, rng.integers(1, 30, 25), dim=64)
    codes, scales = quantize_int8(vectors)
    q = qs(rng, [17], 64)
    assert_allclose(maxsim_int8(q, codes, scales, offsets), maxsim_int8(q, codes, scales, offsets, portable=True), rtol=1e-6)


def test_int8_round_trip_and_edge_vectors():
    x = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.25], [-3.0, 3.0, 1e-9]], np.float32)
    codes, scales = quantize_int8(x)
    assert_array_equal(codes[0], 0) and scales[0] == 1.0
    assert codes[1, 0] == 127 and codes[2, 0] == -127 and codes[2, 1] == 127
    assert np.abs(dequantize_int8(codes, scales) - x).max() <= scales.max() / 2 + 1e-7


def test_int8_negative_similarities_are_not_clamped():
    q = np.array([[1.0, 0.0]], np.float32)
    doc = np.array([[-0.9, 0.1], [-0.5, -0.8]], np.float32)
    codes, scales = quantize_int8(doc)
    got = maxsim_int8([q], codes, scales, np.array([0, 2]))
    assert -0.52 < got[0, 0] < -0.48


@pytest.mark.parametrize("dim", [128, 64, 100, 3])
def test_binary_matches_reference(rng, dim):
    lengths = rng.integers(0, 30, 50)
    lengths[:2] = [1, 0]
    vectors, offsets = ragged_store(rng, lengths, dim=dim)
    queries = qs(rng, [1, 4, 20], dim)
    got = maxsim_binary(queries, pack_binary(vectors), offsets, dim)
    finite_close(got, maxsim_binary_reference(queries, vectors, offsets), rtol=0, atol=0)


def test_quantized_kernels_reject_bad_input(rng):
    vectors, offsets = ragged_store(rng, [2, 3], dim=8)
    codes, scales = quantize_int8(vectors)
    with pytest.raises(ValueError, match="int8"):
        maxsim_int8(qs(rng, [2], 8), codes.astype(np.int16), scales, offsets)
    with pytest.raises(ValueError, match="NaN"):
        maxsim_int8([np.full((2, 8), np.nan, np.float32)], codes, scales, offsets)
    with pytest.raises(ValueError, match="uint64"):
        maxsim_binary(qs(rng, [2], 8), pack_binary(vectors).view(np.uint8), offsets, 8)
    with pytest.raises(ValueError, match="dim"):
        maxsim_binary(qs(rng, [2], 9), pack_binary(vectors), offsets, 8)


@pytest.mark.parametrize("codec", ["int8", "binary"])
def test_codec_indexes_store_search_and_derive(tmp_path, rng, codec):
    ids, embs, imps = pages(rng, 30, dim=64, lo=5)
    with cp.Index.create(tmp_path / "full.h5", dim=64, dtype="float32") as full:
        full.add(ids, embs, imps)
        exact = full.search(embs[4][:6], k=5)
        full_bytes = full.info()["vector_bytes_per_page"]
        small = full.derive(tmp_path / f"{codec}.h5", "none", dtype=codec)
    with small:
        assert small.codec == codec and small.info()["vector_bytes_per_page"] < full_bytes / 3
        hits = small.search(embs[4][:6], k=5)
        assert hits[0].id == "doc-4"
        if codec == "binary":  # reranked from the float16 copy: exact order, float16 scores
            assert [h.id for h in hits] == [h.id for h in exact]
            assert_allclose([h.score for h in hits], [h.score for h in exact], rtol=2e-3)
            assert small.get("doc-4").vectors.dtype == np.float16
            hamming = small.search(embs[4][:6], k=5, rerank=0)
            assert all(float(h.score).is_integer() for h in hamming)
        else:
            assert_allclose(small.get("doc-4").vectors, embs[4], atol=np.abs(embs[4]).max() / 127)
        again = small.derive(tmp_path / "again.h5", "ratio", ratio=0.5, dtype="float16")
        assert again.codec == "float16" and len(again) == 30
        again.close()


def test_binary_without_rerank_copy(tmp_path, rng):
    ids, embs, imps = pages(rng, 10, dim=64, lo=3)
    with cp.Index.create(tmp_path / "b.h5", dim=64, dtype="binary", rerank=False) as index:
        index.add(ids, embs, imps)
        assert not index.has_rerank and index.info()["vector_bytes_per_page"] == index.n_vectors * 8 / 10
        page = index.get("doc-2")
        assert set(np.unique(page.vectors)) <= {-1.0, 1.0}
        assert index.search(embs[2], k=1)[0].id == "doc-2"
