"""Exact MaxSim with torch on any device (CUDA, MPS, CPU): the GPU path.

The store's vectors are uploaded once and stay resident in a :class:`TorchScorer`; each call
uploads only the queries. Nothing is padded: a block of consecutive pages is scored as one
matrix product ``(vectors in block) x (all query rows)`` and each page's maximum is a segment
max over its own rows of that product (``torch.segment_reduce``), so an all-negative page
keeps its negative score and an empty page scores ``-inf``. Memory is bounded by scoring the
pages in blocks of at most ``max_block_bytes`` of similarities.

Precision: on CUDA the default compute dtype is float16 (bfloat16 where asked) with float32
accumulation and a float32 product (``torch.mm(..., out_dtype=float32)`` where this torch has
it); on CPU the default is float32. Per-page maxima and per-query sums are float32.

Residual-coded stores (:mod:`colprune.kernels.residual`) stay compressed on the device
(:meth:`TorchScorer.from_residual`): each block is decoded there by indexing,
``centroids[codes] + weights[d, bucket_d]``, then scored as a float block.

torch is imported only when a scorer is built, never at ``colprune.kernels`` import.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .maxsim import as_array, as_query_batch
from .residual import check_residual_store

__all__ = ["TorchScorer", "maxsim_torch", "maxsim_residual_torch"]

_DEFAULT_BLOCK_BYTES = 256 << 20


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency of the test extras
        raise ImportError("the torch MaxSim path needs torch: pip install torch") from e
    return torch


class TorchScorer:
    """A CSR store resident on a torch device, scored exactly by MaxSim.

    Parameters
    ----------
    vectors : (N, dim) float array (NumPy or torch; float32, float16 or bfloat16)
    offsets : (n_docs + 1,) int array; document ``d`` owns ``vectors[offsets[d]:offsets[d + 1]]``
    device : str or torch.device, optional
        Default ``"cuda"`` when available, else ``"cpu"``.
    dtype : torch dtype or its name (``"float32"``, ``"float16"``, ``"bfloat16"``), optional
        Compute/storage dtype on the device. Default float16 on CUDA, float32 elsewhere.
    max_block_bytes : int
        Upper bound on the float32 similarity block held at once (default 256 MiB).
    """

    def __init__(self, vectors, offsets, *, device=None, dtype=None, max_block_bytes: int = _DEFAULT_BLOCK_BYTES):
        torch = _torch()
        self._device_and_dtype(device, dtype)
        offsets = np.ascontiguousarray(as_array(offsets), dtype=np.int64)
        if hasattr(vectors, "detach"):
            v = vectors.detach()
        else:
            v = np.asarray(vectors)
            if v.dtype.kind != "f":
                raise ValueError(f"vectors must be floating-point, got dtype {v.dtype}")
            v = torch.from_numpy(np.ascontiguousarray(v))
        if v.ndim != 2:
            raise ValueError(f"vectors must be 2-D (N, dim), got shape {tuple(v.shape)}")
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != v.shape[0] \
                or (np.diff(offsets) < 0).any():
            raise ValueError(f"offsets must rise from 0 to len(vectors)={v.shape[0]}")
        self.vectors = v.to(device=self.device, dtype=self.dtype).contiguous()  # resident
        self.residual = None
        self._store(offsets, int(v.shape[1]), max_block_bytes)

    @classmethod
    def from_residual(cls, codes, packed, offsets, centroids, weights, nbits: int, *, device=None, dtype=None,
                      max_block_bytes: int = _DEFAULT_BLOCK_BYTES) -> TorchScorer:
        """A residual-coded store (:func:`~colprune.kernels.encode_residual`) resident, compressed, on the device.

        Scores are exact with respect to the decoded vectors (up to the compute ``dtype``).
        ``codes (N,) uint16``, ``packed (N, dim*nbits//8) uint8``, ``centroids (K, dim)``,
        ``weights (dim, 2**nbits)``, ``nbits`` in {1, 2, 4}; other arguments as for the constructor.
        """
        torch = _torch()
        codes, packed, centroids, weights, nbits = check_residual_store(codes, packed, centroids, weights, nbits)
        offsets = np.ascontiguousarray(as_array(offsets), dtype=np.int64)
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != codes.size \
                or (np.diff(offsets) < 0).any():
            raise InvalidInputError(f"offsets must rise from 0 to len(codes)={codes.size}")
        self = cls.__new__(cls)
        self._device_and_dtype(device, dtype)
        dev = self.device
        self.vectors = None
        self.residual = {
            "codes": torch.from_numpy(codes.astype(np.int32)).to(dev),
            "packed": torch.from_numpy(packed).to(dev),
            "centroids": torch.from_numpy(centroids).to(dev, torch.float32),
            "weights": torch.from_numpy(weights.reshape(-1)).to(dev, torch.float32),
            "shifts": torch.arange(0, 8, nbits, dtype=torch.uint8, device=dev),
            "nbits": nbits,
        }
        self._store(offsets, int(centroids.shape[1]), max_block_bytes)
        return self

    def _device_and_dtype(self, device, dtype) -> None:
        torch = _torch()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        elif isinstance(dtype, str):
            dtype = {"float32": torch.float32, "float16": torch.float16, "half": torch.float16,
                     "bfloat16": torch.bfloat16}[dtype]
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        self.dtype = dtype

    def _store(self, offsets: np.ndarray, dim: int, max_block_bytes: int) -> None:
        torch = _torch()
        self.dim = dim
        self.offsets = offsets
        self.n_docs = offsets.size - 1
        self.max_block_bytes = int(max_block_bytes)
        self.lengths = torch.from_numpy(np.diff(offsets)).to(self.device)
        self._out_dtype_mm = self.device.type == "cuda" and self.dtype != torch.float32

    def _block(self, a: int, b: int):
        # rows a..b as (b - a, dim) in the compute dtype: a view of a float store, decoded from a residual one
        if self.residual is None:
            return self.vectors[a:b]
        r = self.residual
        nbits = r["nbits"]
        buckets = (r["packed"][a:b].unsqueeze(-1) >> r["shifts"]) & ((1 << nbits) - 1)  # (n, bytes, 8 / nbits)
        buckets = buckets.reshape(b - a, self.dim).long()
        index = buckets + (1 << nbits) * _torch().arange(self.dim, device=self.device)  # weights[d, bucket_d], flat
        return (r["centroids"][r["codes"][a:b].long()] + r["weights"][index]).to(self.dtype)

    def _blocks(self, rows: int):
        # consecutive pages whose similarity block (vectors x rows, float32) fits the budget;
        # a page larger than the budget is a block by itself
        # a residual block's decoding temporaries (int64 bucket indices, float32 rows) take ~32 bytes a dimension
        per_vector = 4 * max(rows, 1) + (0 if self.residual is None else 32 * self.dim)
        per_block = max(1, self.max_block_bytes // per_vector)
        d = 0
        while d < self.n_docs:
            limit = self.offsets[d] + per_block
            e = int(np.searchsorted(self.offsets, limit, side="right")) - 1
            e = min(max(e, d + 1), self.n_docs)
            yield d, e
            d = e

    def _similarities(self, block, q):
        torch = _torch()
        if self._out_dtype_mm:
            try:
                return torch.mm(block, q, out_dtype=torch.float32)
            except (TypeError, RuntimeError):
                self._out_dtype_mm = False
        return torch.mm(block, q).float()

    def scores(self, qv, qoff=None) -> np.ndarray:
        """MaxSim of every query against every page: ``(n_queries, n_docs)`` float32 NumPy.

        ``qv, qoff``: CSR queries from :func:`~colprune.kernels.as_query_batch`; or, with
        ``qoff=None``, anything ``as_query_batch`` accepts (one 2-D array, a 3-D batch, a list).
        """
        torch = _torch()
        if qoff is None:
            qv, qoff, _ = as_query_batch(qv, dim=self.dim)
        qoff = np.ascontiguousarray(qoff, dtype=np.int64)
        if qv.shape[1] != self.dim:
            raise ValueError(f"queries have dim {qv.shape[1]}, the store has dim {self.dim}")
        n_q = qoff.size - 1
        out = torch.empty((n_q, self.n_docs), dtype=torch.float32, device=self.device)
        if self.n_docs == 0 or n_q == 0:
            return out.cpu().numpy()
        q = torch.from_numpy(np.ascontiguousarray(qv, dtype=np.float32)).to(self.device, self.dtype)
        qT = q.T.contiguous()  # (dim, rows)
        qlen = torch.from_numpy(np.diff(qoff)).to(self.device)
        with torch.inference_mode():
            for d0, d1 in self._blocks(q.shape[0]):
                a, b = int(self.offsets[d0]), int(self.offsets[d1])
                lengths = self.lengths[d0:d1]
                if a == b:  # only empty pages
                    out[:, d0:d1] = -torch.inf
                    continue
                sim = self._similarities(self._block(a, b), qT)  # (vectors, rows) float32
                best = torch.segment_reduce(sim, "max", lengths=lengths, axis=0, initial=-torch.inf)  # (pages, rows)
                out[:, d0:d1] = torch.segment_reduce(best.T.contiguous(), "sum", lengths=qlen, axis=0)
        return out.cpu().numpy()

    def __repr__(self) -> str:
        kind = "" if self.residual is None else f", residual{self.residual['nbits']}"
        return (f"TorchScorer({self.n_docs} pages, {int(self.offsets[-1])} vectors, dim {self.dim}{kind}, "
                f"{self.device}, {str(self.dtype).replace('torch.', '')})")


def maxsim_torch(queries, vectors, offsets, *, device=None, dtype=None,
                 max_block_bytes: int = _DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """One-shot :class:`TorchScorer` ``(vectors, offsets).scores(queries)``; keep a scorer
    instead when the same store is searched more than once (the upload is the slow part)."""
    return TorchScorer(vectors, offsets, device=device, dtype=dtype, max_block_bytes=max_block_bytes).scores(queries)


def maxsim_residual_torch(queries, codes, packed, offsets, centroids, weights, nbits: int, *, device=None, dtype=None,
                          max_block_bytes: int = _DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """One-shot :meth:`TorchScorer.from_residual` ``(...).scores(queries)``: ``(n_queries, n_docs)`` float32."""
    return TorchScorer.from_residual(codes, packed, offsets, centroids, weights, nbits, device=device, dtype=dtype,
                                     max_block_bytes=max_block_bytes).scores(queries)
