"""Numba MaxSim kernels over CSR vector stores, with NumPy references beside them.

float32/float16: :func:`maxsim_scores`; int8: :func:`maxsim_int8`; binary: :func:`maxsim_binary`.
Each has a ``*_reference`` in :mod:`colprune.kernels.reference` that the tests compare against.
The kernel family (AVX-512, AVX2 or portable loops) is chosen once from the CPU Numba compiles
for: :func:`backend_info` says which, :func:`set_backend` / ``COLPRUNE_KERNELS`` override it.
:class:`TorchScorer` scores with torch on a GPU (torch is imported only when one is built).
"""

from .backend import available_backends, backend, backend_info, set_backend, use_backend
from .maxsim import (
    as_query_batch,
    balanced_bounds,
    maxsim_csr,
    maxsim_pairs,
    maxsim_scores,
    threads,
    widen_float16,
)
from .quantized import (
    dequantize_int8,
    int8_corrections,
    maxsim_binary,
    maxsim_binary_csr,
    maxsim_int8,
    maxsim_int8_csr,
    pack_binary,
    quantize_int8,
)
from .reference import (
    maxsim_binary_reference,
    maxsim_int8_reference,
    maxsim_reference,
    page_centroids_reference,
    topk_reference,
)
from .summary import page_centroids
from .topk import topk
from .torch_maxsim import TorchScorer, maxsim_torch

__all__ = [
    "TorchScorer",
    "as_query_batch",
    "available_backends",
    "backend",
    "backend_info",
    "balanced_bounds",
    "dequantize_int8",
    "int8_corrections",
    "maxsim_binary",
    "maxsim_binary_csr",
    "maxsim_binary_reference",
    "maxsim_csr",
    "maxsim_int8",
    "maxsim_int8_csr",
    "maxsim_int8_reference",
    "maxsim_pairs",
    "maxsim_reference",
    "maxsim_scores",
    "maxsim_torch",
    "pack_binary",
    "page_centroids",
    "page_centroids_reference",
    "quantize_int8",
    "set_backend",
    "threads",
    "topk",
    "topk_reference",
    "use_backend",
    "widen_float16",
]
