"""Every kernel family the compilation target can run gives the reference's scores.

Run under the host target and under ``NUMBA_CPU_NAME=haswell`` (the AVX2 paths on any x86
machine); see the README's Speed section.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ragged_store
from numpy.testing import assert_allclose, assert_array_equal

import colprune.kernels.quantized as quantized
from colprune.kernels import (
    as_query_batch,
    available_backends,
    backend,
    backend_info,
    maxsim_int8,
    maxsim_int8_reference,
    maxsim_pairs,
    maxsim_reference,
    maxsim_scores,
    quantize_int8,
    set_backend,
    use_backend,
)
from colprune.kernels._llvm import has_vnni, is_x86, target_features
from colprune.kernels.maxsim import pack_query_groups, tile_shape

BACKENDS = available_backends()
# page lengths around the tiles' document counts (2, 3, 4, 8, 12) and the 48-vector blocks
EDGE_LENGTHS = [0, 1, 2, 3, 4, 5, 11, 12, 13, 47, 48, 49, 97, 150]
# query lengths around 8- and 16-row groups
QUERY_ROWS = [1, 7, 8, 9, 16, 20, 33]


def _queries(rng, sizes, dim):
    return [rng.standard_normal((m, dim)).astype(np.float32) for m in sizes]


def _finite_close(got, want, **kw):
    assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert_allclose(got[fin], want[fin], **kw)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("dim", [128, 16])
def test_float_backends_match_reference(rng, name, dtype, dim):
    lengths = np.r_[EDGE_LENGTHS, rng.integers(1, 120, 20)]
    vectors, offsets = ragged_store(rng, lengths, dim=dim, dtype=dtype)
    qs = _queries(rng, QUERY_ROWS, dim)
    want = maxsim_reference(qs, vectors, offsets)
    with use_backend(name):
        _finite_close(maxsim_scores(qs, vectors, offsets), want, rtol=1e-5, atol=2e-4)
        for q in (qs[0], qs[5]):  # single queries: 1 row, 20 rows (narrow tiles on AVX-512)
            _finite_close(maxsim_scores(q, vectors, offsets), maxsim_reference([q], vectors, offsets),
                          rtol=1e-5, atol=2e-4)
        # pair mode: queries start at their own groups; shortlists overlap and skip slots
        qv, qoff, _ = as_query_batch(qs)
        cand = np.stack([rng.permutation(len(lengths))[:9] for _ in qs])
        cand[2, 4] = -1
        got = maxsim_pairs(qv, qoff, vectors, offsets, cand)
        pair_want = np.where(cand >= 0, np.take_along_axis(want, np.maximum(cand, 0), axis=1), -np.inf)
        _finite_close(got, pair_want, rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("name", BACKENDS)
def test_float_backends_keep_negative_and_one_vector_pages(name):
    # every similarity negative: a zero-padded tile would clamp each token's max at 0
    q = np.array([[1.0, 0.0] + [0.0] * 14, [0.0, 1.0] + [0.0] * 14], np.float32)
    doc = np.zeros((5, 16), np.float32)
    doc[:, 0], doc[:, 1] = [-0.99, -0.5, -0.7, -2.0, -0.3], [-0.14, -0.86, -0.2, -0.1, -0.9]
    offsets = np.array([0, 2, 3, 3, 5])
    with use_backend(name):
        got = maxsim_scores(q, doc, offsets)
    assert_allclose(got[0, 0], -0.5 - 0.14, rtol=1e-6)
    _finite_close(got, maxsim_reference([q], doc, offsets), rtol=1e-6)
    assert got[0, 2] == -np.inf and (got[0, [0, 1, 3]] < 0).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_backends_agree_with_each_other(rng, name):
    vectors, offsets = ragged_store(rng, rng.integers(1, 200, 30), dim=128)
    qs = _queries(rng, [20, 32, 5], 128)
    with use_backend("portable"):
        portable = maxsim_scores(qs, vectors, offsets)
    with use_backend(name):
        assert_allclose(maxsim_scores(qs, vectors, offsets), portable, rtol=2e-6, atol=2e-5)


def _int8_paths():
    paths = ["portable"]
    if "avx2" in BACKENDS:
        paths.append("pmaddwd256")
    if "avx512" in BACKENDS:
        paths.append("pmaddwd512")
    if has_vnni():
        paths.append("vnni")
    return paths


@pytest.mark.parametrize("path", _int8_paths())
@pytest.mark.parametrize("dim", [128, 24, 7])
def test_int8_paths_match_reference(rng, monkeypatch, path, dim):
    monkeypatch.setattr(quantized, "int8_path", lambda name=None: path)
    lengths = np.r_[EDGE_LENGTHS, rng.integers(1, 100, 20)]
    vectors, offsets = ragged_store(rng, lengths, dim=dim)
    codes, scales = quantize_int8(vectors)
    qs = _queries(rng, [1, 20, 33, 8], dim)
    _finite_close(maxsim_int8(qs, codes, scales, offsets), maxsim_int8_reference(qs, codes, scales, offsets),
                  rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path", _int8_paths()[1:])
def test_int8_simd_paths_equal_the_portable_integers(rng, monkeypatch, path):
    vectors, offsets = ragged_store(rng, rng.integers(1, 60, 25), dim=128)
    codes, scales = quantize_int8(vectors)
    # extreme codes: every product at +-127*127, the pmaddwd pair sums at their largest
    codes[:5] = 127
    codes[5:10] = -127
    q = _queries(rng, [17], 128)
    q[0][0] = 1.0
    plain = maxsim_int8(q, codes, scales, offsets, portable=True)
    monkeypatch.setattr(quantized, "int8_path", lambda name=None: path)
    assert_allclose(maxsim_int8(q, codes, scales, offsets), plain, rtol=1e-6)


def test_backend_is_visible_and_overridable():
    info = backend_info()
    assert info["backend"] == backend() and info["backend"] in info["available"]
    assert {"target_cpu", "features", "float32", "float16", "int8", "binary"} <= set(info)
    before = backend()
    try:
        assert set_backend("portable") == "portable" and backend_info()["int8"] == "portable"
        assert tile_shape() is None
        with pytest.raises(ValueError, match="unknown"):
            set_backend("sse9")
        if "avx512" not in BACKENDS:
            with pytest.raises(ValueError, match="lacks"):
                set_backend("avx512")
    finally:
        set_backend(before)
    assert backend() == before


@pytest.mark.skipif("avx512" not in BACKENDS, reason="target without AVX-512")
def test_avx512_takes_narrow_tiles_when_they_pad_less():
    assert tile_shape("avx512", np.array([0, 640]))[0] == 16  # batch of 32 x 20 rows: no padding
    assert tile_shape("avx512", np.array([0, 20]))[0] == 8  # one 20-row query: 24 rows, not 32


def test_query_groups_pack_rows_and_pad_with_zeros(rng):
    qv, qoff, _ = as_query_batch(_queries(rng, [3, 9, 1], 4))
    qpk, prow, glo, ghi, qlen = pack_query_groups(qv, qoff, 8, aligned=True)
    assert qpk.shape == (4, 4, 8)
    assert_array_equal(prow, [0, 8, 24])
    assert_array_equal(glo, [0, 1, 3])
    assert_array_equal(ghi, [1, 3, 4])
    rows = qpk.transpose(0, 2, 1).reshape(-1, 4)
    for q in range(3):
        assert_array_equal(rows[prow[q] : prow[q] + qlen[q]], qv[qoff[q] : qoff[q + 1]])
    assert (rows[3:8] == 0).all()
    qpk, prow, glo, ghi, _ = pack_query_groups(qv, qoff, 8, aligned=False)
    assert qpk.shape == (2, 4, 8)
    assert_array_equal(glo, [0, 0, 1])
    assert_array_equal(ghi, [1, 2, 2])


@pytest.mark.skipif(not is_x86(), reason="x86 CPU names")
def test_numba_cpu_name_retargets_feature_checks():
    # NUMBA_CPU_NAME alone: Numba would keep the host's features; colprune clears them so the
    # name decides (haswell: AVX2, no AVX-512), and the kernels' choice follows
    code = ("import numba.core.config as c, colprune.kernels as k, json; "
            "print(json.dumps([c.CPU_FEATURES, k.available_backends(), k.backend_info()['int8']]))")
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell"}
    env.pop("NUMBA_CPU_FEATURES", None)
    env.pop("COLPRUNE_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    feats, avail, int8 = __import__("json").loads(out.strip().splitlines()[-1])
    assert feats == "" and avail == ["avx2", "portable"] and int8 == "pmaddwd256"
    env["NUMBA_CPU_FEATURES"] = "+avx2,+fma,+f16c"  # an explicit list is kept as given
    env["NUMBA_CPU_NAME"] = "x86-64"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    feats, avail, _ = __import__("json").loads(out.strip().splitlines()[-1])
    assert feats == "+avx2,+fma,+f16c" and avail == ["avx2", "portable"]


def test_host_features_are_the_targets():
    if not os.environ.get("NUMBA_CPU_NAME"):
        import llvmlite.binding as llvm

        host = {k for k, v in llvm.get_host_cpu_features().items() if v}
        assert {"avx2", "avx512f"} & target_features() == {"avx2", "avx512f"} & host
