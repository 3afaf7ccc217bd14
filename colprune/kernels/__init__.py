"""Numba MaxSim kernels over CSR vector stores, with NumPy references beside them."""

from .maxsim import as_query_batch, maxsim_csr, maxsim_scores, widen_float16
from .reference import maxsim_reference, topk_reference
from .topk import topk

__all__ = ["maxsim_scores", "maxsim_csr", "maxsim_reference", "topk", "topk_reference", "as_query_batch", "widen_float16"]
