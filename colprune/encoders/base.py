"""What every page encoder returns, and the interface it implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["EncodedPage", "Encoder", "pick_device"]


@dataclass(frozen=True)
class EncodedPage:
    """One page as the encoder saw it.

    Attributes
    ----------
    vectors : (n, dim) float32
        L2-normalised multi-vector embedding (every output row, special tokens included).
    patch_mask : (n,) bool
        True for content rows (image patches, or text tokens for text encoders); False for
        special and prompt tokens, which pruners keep.
    importance : (n,) float32
        The encoder's default importance signal per row (see ``signals``).
    grid : (rows, cols) or None
        Patch grid when the model has one; ``rows * cols == patch_mask.sum()``.
    signals : dict of name -> (n,) float32
        Every importance signal the encoder computed (for the studies).
    """

    vectors: np.ndarray
    patch_mask: np.ndarray
    importance: np.ndarray
    grid: tuple[int, int] | None = None
    signals: dict[str, np.ndarray] = field(default_factory=dict)


def pick_device(device: str | None = None, dtype: str | None = None):
    """``(torch.device, torch.dtype)``: CPU float32 by default, CUDA bfloat16 when asked for "auto"."""
    import torch

    if device in (None, "cpu"):
        return torch.device("cpu"), getattr(torch, dtype or "float32")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), getattr(torch, dtype or "bfloat16")
        return torch.device("cpu"), getattr(torch, dtype or "float32")
    return torch.device(device), getattr(torch, dtype or ("bfloat16" if str(device).startswith("cuda") else "float32"))


class Encoder(ABC):
    """A model that turns pages into :class:`EncodedPage` and queries into token vectors."""

    #: What the index records as its encoder (a short name or a path/hub id).
    name: str = ""
    #: Output vector dimension.
    dim: int = 0
    #: The kind of page input the encoder reads: "text" or "image".
    input_kind: str = "text"

    @abstractmethod
    def encode_pages(self, pages: Sequence[Any], *, batch_size: int = 8, progress: bool = False) -> list[EncodedPage]:
        """Encode pages (strings for text encoders, PIL images for image encoders)."""

    @abstractmethod
    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Token vectors ``(m_i, dim)`` float32 per query, L2-normalised."""
