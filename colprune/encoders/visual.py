"""Visual page encoders: transformers' ColQwen2ForRetrieval and ColPaliForRetrieval, with attention.

Importance follows DocPruner (arXiv 2509.23883): last-layer attention from the global token to
each image-patch token, mean over heads. The global token is the sequence's last real token:
ColQwen2's prompt ends with EOS (``<|endoftext|>``); ColPali has no EOS, so it is the prompt's
last token. Patches are the rows where ``input_ids == image_token_id``; the grid is
``image_grid_thw`` after the spatial merge (ColQwen2) or the square of the image sequence
(32 x 32 for ColPali). Attention weights need ``attn_implementation="eager"``: the default SDPA
path returns none.

Signals (rows = every output token; prompt rows get the same formulas):

``eos``           last-layer attention of the global token (DocPruner); the default
``indegree``      mean attention each patch receives from the other patches, last layer
``indegree_mid``  the same averaged over the middle layers (arXiv 2601.20107)
``norm``          always 1 here (the model L2-normalises); kept for a uniform signal set
``global_sim``    cosine similarity of each row's embedding to the global token's

Implementation note: transformers' ``ColQwen2ForRetrieval`` calls its language model with
``inputs_embeds`` only, so positions are 1-D, where colpali-engine's ColQwen2 uses 3-D M-RoPE;
embeddings of the two implementations differ slightly. Checkpoints converted for transformers
(``vidore/colqwen2-v1.0-hf``, ``vidore/colpali-v1.3-hf``) expect this implementation.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device, wanted_signals

__all__ = ["VisualEncoder", "VISUAL_MODEL_TYPES", "SIGNALS", "attention_signals", "model_type_of"]

VISUAL_MODEL_TYPES = ("colqwen2", "colpali")
SIGNALS = ("eos", "indegree", "indegree_mid", "norm", "global_sim")


def attention_signals(last: np.ndarray, mids: list[np.ndarray], patch: np.ndarray) -> dict[str, np.ndarray]:
    """The importance signals from head-averaged attention maps over a page's real tokens.

    Parameters
    ----------
    last : (n, n) attention of the chosen (last) layer; row = query token, column = key token
    mids : (n, n) attentions of the middle layers
    patch : (n,) bool, image-patch rows
    """

    def indegree(a):  # attention each row receives from the *other* patches
        src = a[patch] if patch.any() else a
        got = src.sum(axis=0)
        got[patch] -= np.diag(a)[patch]
        return got / max(src.shape[0] - (1 if patch.any() else 0), 1)

    return {
        "eos": last[-1].astype(np.float32),  # the last real token attends to every row
        "indegree": indegree(last).astype(np.float32),
        "indegree_mid": (np.mean([indegree(m) for m in mids], axis=0) if mids else indegree(last)).astype(np.float32),
        "norm": np.ones(last.shape[0], np.float32),
    }


def _classes(model_type: str):
    if model_type == "colqwen2":
        from transformers.models.colqwen2 import ColQwen2ForRetrieval, ColQwen2Processor

        return ColQwen2ForRetrieval, ColQwen2Processor
    if model_type == "colpali":
        from transformers.models.colpali import ColPaliForRetrieval, ColPaliProcessor

        return ColPaliForRetrieval, ColPaliProcessor
    raise InvalidInputError(f"unsupported visual model type {model_type!r}; supported: {VISUAL_MODEL_TYPES}")


def model_type_of(path_or_id: str) -> str:
    cfg = os.path.join(path_or_id, "config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            return json.load(f).get("model_type", "")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path_or_id).model_type


class VisualEncoder(Encoder):
    """ColQwen2 / ColQwen2.5 / ColPali page encoder that also returns patch importance.

    Parameters
    ----------
    model : local path or hub id of a transformers ColQwen2/ColPali retrieval checkpoint
    importance : default signal (``"eos"``; see the module docstring)
    layer : layer whose attention gives ``eos`` and ``indegree`` (default the last, -1)
    mid_layers : layers averaged for ``indegree_mid`` (default the two middle ones)
    device, dtype : CPU float32 by default; ``device="auto"`` takes CUDA with bfloat16
    attn_implementation : must be ``"eager"``; anything else is refused with the reason
    """

    input_kind = "image"

    def __init__(
        self,
        model: str,
        *,
        importance: str = "eos",
        layer: int = -1,
        mid_layers: Sequence[int] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        attn_implementation: str = "eager",
    ) -> None:
        if attn_implementation != "eager":
            raise InvalidInputError(
                f"attn_implementation={attn_implementation!r} returns no attention weights (the SDPA and flash paths "
                "skip them), and pruning needs them: load with attn_implementation='eager'"
            )
        if importance not in SIGNALS:
            raise InvalidInputError(f"importance must be one of {SIGNALS}, got {importance!r}")
        self.model_type = model_type_of(model)
        model_cls, proc_cls = _classes(self.model_type)
        self.name = model
        self.importance = importance
        self.layer = int(layer)
        self.device, self.dtype = pick_device(device, dtype)
        self.processor = proc_cls.from_pretrained(model)
        self.model = model_cls.from_pretrained(model, attn_implementation="eager", dtype=self.dtype)
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.embedding_dim)
        n_layers = int(self.model.config.vlm_config.get_text_config().num_hidden_layers)
        self.mid_layers = list(mid_layers) if mid_layers is not None else sorted({max(0, n_layers // 2 - 1), n_layers // 2})
        self.image_token_id = int(self.processor.image_token_id)
        import torch

        self._torch = torch

    def _forward(self, batch, with_attention: bool):
        keep = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "image_grid_thw")
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in keep}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self._torch.no_grad():
            out = self.model(**inputs, output_attentions=with_attention)
        if with_attention and not out.attentions:
            raise InvalidInputError("the model returned no attention weights: it must run with attn_implementation='eager'")
        return out

    def encode_pages(self, pages: Sequence, *, batch_size: int = 4, progress: bool = False,
                     signals: Sequence[str] | None = None) -> list[EncodedPage]:
        """Encode page images (PIL images, any mode; converted to RGB).

        ``signals``: the names to return (default all of :data:`SIGNALS`); the importance signal
        is always returned. The attention maps are computed either way.
        """
        from tqdm.auto import tqdm

        want = set(wanted_signals(signals, SIGNALS, self.importance, "the visual encoder"))
        result: list[EncodedPage] = []
        for lo in tqdm(range(0, len(pages), batch_size), desc="encode", unit="batch", disable=not progress):
            images = [im.convert("RGB") for im in pages[lo : lo + batch_size]]
            batch = self.processor(images=images)
            out = self._forward(batch, with_attention=True)
            emb = out.embeddings.float().cpu()
            attn = [a.float().cpu() for a in out.attentions]
            for b in range(emb.shape[0]):
                real = batch["attention_mask"][b].bool()
                rows = real.nonzero().squeeze(-1)
                patch = (batch["input_ids"][b][rows] == self.image_token_id).numpy()
                sig = self._signals(attn, b, rows, patch)
                vectors = emb[b][rows].numpy().astype(np.float32)
                sig["global_sim"] = (vectors @ vectors[-1]).astype(np.float32)
                result.append(EncodedPage(
                    vectors=vectors,
                    patch_mask=patch,
                    importance=sig[self.importance],
                    grid=self._grid(batch, b, int(patch.sum())),
                    signals={k: v for k, v in sig.items() if k in want},
                ))
        return result

    def _grid(self, batch, b: int, n_patch: int) -> tuple[int, int] | None:
        if "image_grid_thw" in batch:
            t, h, w = (int(x) for x in batch["image_grid_thw"][b])
            merge = int(getattr(self.processor.image_processor, "merge_size", 2))
            grid = (t * h // merge, w // merge)
        else:
            side = int(round(n_patch**0.5))
            grid = (side, side) if side * side == n_patch else None
        return grid if grid and grid[0] * grid[1] == n_patch else None

    def _signals(self, attn, b: int, rows, patch: np.ndarray) -> dict[str, np.ndarray]:
        def layer(i):  # (n, n) over real tokens, mean over heads
            return attn[i][b].mean(dim=0)[rows][:, rows].numpy()

        return attention_signals(layer(self.layer), [layer(i) for i in self.mid_layers], patch)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        out_list: list[np.ndarray] = []
        for lo in range(0, len(texts), batch_size):
            batch = self.processor(text=list(texts[lo : lo + batch_size]))
            emb = self._forward(batch, with_attention=False).embeddings.float().cpu()
            for b in range(emb.shape[0]):
                out_list.append(emb[b][batch["attention_mask"][b].bool()].numpy().astype(np.float32))
        return out_list

    def __repr__(self) -> str:
        return f"VisualEncoder({self.name!r}, type={self.model_type}, importance={self.importance!r}, dim={self.dim})"
