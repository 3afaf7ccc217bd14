"""The torch MaxSim path (GPU; here on CPU torch) is exact against the NumPy reference."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ragged_store
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch")

from colprune.kernels import TorchScorer, as_query_batch, maxsim_reference, maxsim_torch  # noqa: E402


def _queries(rng, sizes, dim):
    return [rng.standard_normal((m, dim)).astype(np.float32) for m in sizes]


def _finite_close(got, want, **kw):
    assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert_allclose(got[fin], want[fin], **kw)


@pytest.mark.parametrize("block_bytes", [256 << 20, 4096, 1])
def test_ragged_store_matches_reference(rng, block_bytes):
    # empty, one-vector and long pages; budgets from "all at once" to "one page per block"
    lengths = np.r_[[0, 1, 1, 300, 0, 2], rng.integers(1, 90, 40), [0]]
    vectors, offsets = ragged_store(rng, lengths, dim=32)
    qs = _queries(rng, [1, 20, 32, 7], 32)
    scorer = TorchScorer(vectors, offsets, device="cpu", max_block_bytes=block_bytes)
    got = scorer.scores(qs)
    assert got.shape == (4, len(lengths)) and got.dtype == np.float32
    _finite_close(got, maxsim_reference(qs, vectors, offsets), rtol=1e-5, atol=1e-4)
    qv, qoff, _ = as_query_batch(qs)  # CSR form, as Index.search passes it
    assert_array_equal(scorer.scores(qv, qoff), got)


def test_negative_only_similarities_are_not_clamped():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    doc = np.array([[-0.99, -0.14], [-0.5, -0.86], [-3.0, -3.0]], np.float32)
    offsets = np.array([0, 2, 3])
    got = TorchScorer(doc, offsets, device="cpu").scores(q)
    assert_allclose(got[0, 0], -0.5 - 0.14, rtol=1e-6)
    assert_allclose(got, maxsim_reference([q], doc, offsets), rtol=1e-6)


def test_one_vector_pages(rng):
    vectors, offsets = ragged_store(rng, [1] * 17, dim=8)
    q = _queries(rng, [5], 8)
    assert_allclose(maxsim_torch(q, vectors, offsets, device="cpu")[0], (q[0] @ vectors.T).sum(axis=0),
                    rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage_is_close(rng, dtype):
    vectors, offsets = ragged_store(rng, rng.integers(1, 50, 30), dim=64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    qs = _queries(rng, [20, 3], 64)
    qs = [q / np.linalg.norm(q, axis=1, keepdims=True) for q in qs]
    try:
        got = TorchScorer(vectors, offsets, device="cpu", dtype=dtype).scores(qs)
    except RuntimeError as e:  # some CPU builds lack half matmul
        pytest.skip(f"{dtype} matmul on this CPU torch: {e}")
    ref = maxsim_reference(qs, vectors, offsets)
    eps = {"float16": 1e-3, "bfloat16": 8e-3}[dtype]
    assert np.abs(got - ref).max() <= eps * 20  # ~eps per token's max, 20 tokens


def test_accepts_torch_inputs_and_rejects_bad_ones(rng):
    vectors, offsets = ragged_store(rng, [3, 4], dim=8)
    scorer = TorchScorer(torch.from_numpy(vectors), torch.from_numpy(offsets), device="cpu")
    assert scorer.vectors.dtype == torch.float32 and scorer.n_docs == 2 and "2 pages" in repr(scorer)
    q = _queries(rng, [2], 8)
    assert_allclose(scorer.scores([torch.from_numpy(q[0])]), maxsim_reference(q, vectors, offsets), rtol=1e-5)
    with pytest.raises(ValueError, match="dim"):
        scorer.scores(_queries(rng, [2], 9))
    with pytest.raises(ValueError, match="offsets"):
        TorchScorer(vectors, np.array([0, 3]), device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        TorchScorer(vectors, offsets, device="cpu", dtype=torch.int8)


def test_empty_store():
    got = TorchScorer(np.zeros((0, 4), np.float32), np.array([0]), device="cpu").scores(np.ones((2, 4), np.float32))
    assert got.shape == (1, 0)


def test_kernels_import_does_not_import_torch():
    code = ("import sys, colprune; before = 'torch' in sys.modules; "
            "import colprune.kernels, colprune.kernels.torch_maxsim; "
            "print(before or 'torch' not in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True"
