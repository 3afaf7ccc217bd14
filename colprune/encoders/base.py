"""What every page encoder returns, and the interface it implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError

__all__ = ["EncodedPage", "Encoder", "pick_device", "wanted_signals"]


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


def wanted_signals(signals: Sequence[str] | None, known: Sequence[str], importance: str, what: str) -> list[str]:
    """The signals an encoder computes: all of ``known`` (``signals=None``), else ``signals`` and
    ``importance``, in ``known``'s order; names not in ``known`` raise :class:`InvalidInputError`."""
    if signals is None:
        return list(known)
    unknown = set(signals) - set(known)
    if unknown:
        raise InvalidInputError(f"unknown signals {sorted(unknown)}; {what} gives {tuple(known)}")
    return [s for s in known if s in set(signals) | {importance}]


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
    #: The importance signal :attr:`EncodedPage.importance` holds ("cls", "eos", "indegree"...).
    importance: str | None = None

    @abstractmethod
    def encode_pages(self, pages: Sequence[Any], *, batch_size: int = 8, progress: bool = False,
                     signals: Sequence[str] | None = None) -> list[EncodedPage]:
        """Encode pages (strings for text encoders, PIL images for image encoders).

        Parameters
        ----------
        pages : n page texts or images
        batch_size : pages per forward pass
        progress : show a progress bar
        signals : the importance signals to return in :attr:`EncodedPage.signals` (None: every
            signal the encoder gives); the ``importance`` signal is always computed. An encoder
            may skip the attention that the signals left out would need.

        Returns
        -------
        list of n :class:`EncodedPage`
        """

    @abstractmethod
    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Token vectors ``(m_i, dim)`` float32 per query, L2-normalised."""
