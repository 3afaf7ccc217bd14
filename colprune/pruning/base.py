"""The pruner base class, its result type, and the input checks every pruner shares."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError

__all__ = ["Pruner", "PrunedPage", "as_float_array", "check_page"]


@dataclass(frozen=True)
class PrunedPage:
    """What a pruner keeps of one page.

    Attributes
    ----------
    vectors : (n_kept, dim) array
        Kept vectors, in their original order, same dtype as the input (float32 for non-float32 input).
    positions : (n_kept,) int64
        Row of each kept vector in the encoder's output (its patch/token index).
    importance : (n_kept,) float32
        Importance of each kept vector (NaN where none was given).
    patch_mask : (n_kept,) bool
        True for image-patch rows, False for special/prompt-token rows.
    n_original : int
        Rows before pruning.
    covers : tuple of (k_i,) int64 arrays, or None
        For merged vectors: the input rows each vector stands for (``positions`` holds the
        first of them). None when every kept vector is an input row.
    """

    vectors: np.ndarray
    positions: np.ndarray
    importance: np.ndarray
    patch_mask: np.ndarray
    n_original: int
    covers: tuple[np.ndarray, ...] | None = None

    @property
    def n_kept(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def keep_ratio(self) -> float:
        return self.n_kept / self.n_original

    def __repr__(self) -> str:  # one short line, not the arrays: Index.add returns one per page
        merged = "" if self.covers is None else ", merged"
        return f"PrunedPage(n_kept={self.n_kept}, n_total={self.n_original}{merged})"


def as_float_array(x, what: str) -> np.ndarray:
    """A NumPy float array from a NumPy array, torch tensor or nested list."""
    if hasattr(x, "detach"):  # torch tensor; bfloat16 has no NumPy dtype
        x = x.detach().cpu()
        if not x.dtype.is_floating_point:
            raise InvalidInputError(f"{what}: expected a floating-point tensor, got {x.dtype}")
        x = x.numpy() if str(x.dtype) in ("torch.float16", "torch.float32", "torch.float64") else x.float().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise InvalidInputError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return arr


def check_page(
    embeddings,
    importance=None,
    patch_mask=None,
    *,
    dim: int | None = None,
    what: str = "page",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Validate one page and return ``(vectors, importance or None, patch_mask)``.

    Raises :class:`~colprune.errors.InvalidInputError` naming ``what`` and the problem:
    wrong rank or dim, no vectors, NaN/inf, importance or mask of the wrong length.
    """
    vectors = as_float_array(embeddings, f"{what} embeddings")
    if vectors.ndim != 2:
        raise InvalidInputError(f"{what}: embeddings must be 2-D (n_vectors, dim), got shape {vectors.shape}")
    n = vectors.shape[0]
    if n == 0:
        raise InvalidInputError(f"{what}: empty page (0 vectors); drop it or give it at least one vector")
    if dim is not None and vectors.shape[1] != dim:
        raise InvalidInputError(f"{what}: embeddings have dim {vectors.shape[1]}, expected {dim}")
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise InvalidInputError(f"{what}: embeddings contain NaN or infinite values (first at row {bad})")
    imp = None
    if importance is not None:
        imp = as_float_array(importance, f"{what} importance").astype(np.float64)
        if imp.ndim != 1 or imp.shape[0] != n:
            raise InvalidInputError(f"{what}: importance has shape {imp.shape}, expected ({n},) — one score per vector")
        if not np.isfinite(imp).all():
            first = int(np.flatnonzero(~np.isfinite(imp))[0])
            raise InvalidInputError(f"{what}: importance contains NaN or infinite values (first at row {first})")
    if patch_mask is None:
        mask = np.ones(n, dtype=bool)
    else:
        if hasattr(patch_mask, "detach"):
            patch_mask = patch_mask.detach().cpu().numpy()
        mask = np.asarray(patch_mask)
        if mask.dtype != np.bool_:
            raise InvalidInputError(f"{what}: patch_mask must be boolean, got dtype {mask.dtype}")
        if mask.shape != (n,):
            raise InvalidInputError(f"{what}: patch_mask has shape {mask.shape}, expected ({n},)")
    return vectors, imp, mask


class Pruner(ABC):
    """Base class of all pruners: decides which image-patch vectors of a page to keep.

    Subclasses implement :meth:`_select` only. :meth:`prune` validates and normalises the
    page, hands the patch rows to ``_select``, always keeps non-patch rows (special and
    prompt tokens), and packs the result.
    """

    #: Short name used in the registry, the CLI and the file's ``pruner`` attribute.
    name: ClassVar[str] = ""
    #: Whether ``_select`` reads importance scores.
    needs_importance: ClassVar[bool] = True
    #: Whether the pruner merges vectors (its pages carry ``covers``).
    merges: ClassVar[bool] = False

    def prune(self, embeddings, importance=None, patch_mask=None, grid: tuple[int, int] | None = None) -> PrunedPage:
        """Prune one page.

        Parameters
        ----------
        embeddings : (n, dim) array or tensor
        importance : (n,) array, optional
            Required when ``needs_importance``.
        patch_mask : (n,) bool array, optional
            True for prunable image-patch rows; default: every row is a patch.
        grid : (rows, cols), optional
            The patch grid (row-major over the patch rows), for methods that use it.

        Returns
        -------
        PrunedPage
        """
        vectors, imp, mask = check_page(embeddings, importance, patch_mask)
        return self.prune_checked(vectors, imp, mask, grid)

    def prune_checked(self, vectors: np.ndarray, imp: np.ndarray | None, mask: np.ndarray,
                      grid: tuple[int, int] | None = None) -> PrunedPage:
        """Prune one page already checked by :func:`check_page` (what :meth:`prune` does after checking).

        Parameters
        ----------
        vectors : (n, dim) float16/float32, finite
        imp : (n,) float64 or None
        mask : (n,) bool, True for prunable patch rows
        grid : (rows, cols), optional

        Returns
        -------
        PrunedPage
        """
        if imp is None and self.needs_importance:
            raise InvalidInputError(f"pruner {self.name!r} needs importance scores; pass importance=")
        patch_rows = np.flatnonzero(mask)
        keep = np.ones(vectors.shape[0], dtype=bool)
        if patch_rows.size:
            keep[patch_rows] = False
            sel = np.asarray(
                self._select(None if imp is None else imp[patch_rows], vectors[patch_rows]), dtype=np.int64
            )
            keep[patch_rows[sel]] = True
        rows = np.flatnonzero(keep)
        out_imp = np.full(rows.size, np.nan, np.float32) if imp is None else imp[rows].astype(np.float32)
        vec = vectors[rows]
        if vec.dtype not in (np.float16, np.float32):
            vec = vec.astype(np.float32)
        return PrunedPage(vec, rows.astype(np.int64), out_imp, mask[rows].copy(), int(vectors.shape[0]))

    @abstractmethod
    def _select(self, importance: np.ndarray | None, vectors: np.ndarray) -> np.ndarray:
        """Indices (into the patch rows) to keep; at least one.

        Parameters
        ----------
        importance : (n_patch,) float64 or None
        vectors : (n_patch, dim) float
        """

    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-able; ``type(self)(**params())`` rebuilds the pruner."""
        return {}

    def config(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, as stored in the index file."""
        return {"name": self.name, "params": self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pruner) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params().items()))))


def n_from_ratio(ratio: float, n: int) -> int:
    """Vectors to keep for a share ``ratio`` of ``n``: rounded half up, at least one."""
    return max(1, min(n, math.floor(ratio * n + 0.5)))


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:
        raise InvalidInputError(f"ratio must be in (0, 1], got {ratio}")
    return ratio
