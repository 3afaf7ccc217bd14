"""Numba MaxSim kernels over CSR vector stores, with NumPy references beside them.

float32/float16: :func:`maxsim_scores`; int8: :func:`maxsim_int8`; binary: :func:`maxsim_binary`;
residual codes (ColBERTv2/PLAID): :func:`encode_residual`, :func:`maxsim_residual_csr`, and the
centroid index :func:`inverted_lists`, :func:`probe_docs`, :func:`centroid_maxsim`.
Each has a ``*_reference`` in :mod:`colprune.kernels.reference` that the tests compare against.
The kernel family (AVX-512, AVX2 or portable loops) is chosen once from the CPU Numba compiles
for: :func:`backend_info` says which, :func:`set_backend` / ``COLPRUNE_KERNELS`` override it.
:class:`TorchScorer` scores with torch on a GPU (torch is imported only when one is built).
"""

from .assign import CentroidGroups, group_centroids, nearest_centroids, train_centroids
from .backend import available_backends, backend, backend_info, set_backend, use_backend
from .ivf import centroid_maxsim, inverted_lists, probe_docs
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
    centroid_maxsim_reference,
    decode_residual_reference,
    encode_residual_reference,
    inverted_lists_reference,
    maxsim_binary_reference,
    maxsim_int8_reference,
    maxsim_reference,
    maxsim_residual_reference,
    page_centroids_reference,
    probe_docs_reference,
    topk_reference,
)
from .residual import (
    assign_centroids,
    codebook_size,
    decode_residual,
    encode_residual,
    maxsim_residual_csr,
    residual_buckets,
)
from .summary import page_centroids
from .topk import topk
from .torch_maxsim import TorchScorer, maxsim_residual_torch, maxsim_torch

__all__ = [
    "CentroidGroups",
    "TorchScorer",
    "as_query_batch",
    "assign_centroids",
    "available_backends",
    "backend",
    "backend_info",
    "balanced_bounds",
    "centroid_maxsim",
    "centroid_maxsim_reference",
    "codebook_size",
    "decode_residual",
    "decode_residual_reference",
    "dequantize_int8",
    "encode_residual",
    "encode_residual_reference",
    "int8_corrections",
    "group_centroids",
    "inverted_lists",
    "inverted_lists_reference",
    "maxsim_binary",
    "maxsim_binary_csr",
    "maxsim_binary_reference",
    "maxsim_csr",
    "maxsim_int8",
    "maxsim_int8_csr",
    "maxsim_int8_reference",
    "maxsim_pairs",
    "maxsim_reference",
    "maxsim_residual_csr",
    "maxsim_residual_reference",
    "maxsim_residual_torch",
    "maxsim_scores",
    "maxsim_torch",
    "nearest_centroids",
    "pack_binary",
    "page_centroids",
    "page_centroids_reference",
    "probe_docs",
    "probe_docs_reference",
    "quantize_int8",
    "residual_buckets",
    "set_backend",
    "threads",
    "topk",
    "topk_reference",
    "train_centroids",
    "use_backend",
    "widen_float16",
]
