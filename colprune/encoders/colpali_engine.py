"""Adapter for colpali-engine models: ColQwen2.5, ColSmol / ColIdefics3, ColModernVBERT, ...

colpali-engine's models return embeddings only. The adapter captures the attention that pruning
needs with forward hooks on the language model's last layer (and the middle layers, for
in-degree centrality) and reads the same signals as :class:`~colprune.encoders.VisualEncoder`.
The model must run with ``attn_implementation="eager"``: other attention kernels compute no
weights.

colpali-engine is an optional extra (``pip install colpali-engine``). Its package imports every
model and, through transformers' Qwen2-VL processors, torchvision: install the torchvision
build that matches your torch. It is imported only when this adapter loads a model.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device, wanted_signals
from .visual import SIGNALS, attention_signals

__all__ = ["ColpaliEngineEncoder", "language_attention_layers", "import_skipping_init"]

# where each model class lives in colpali-engine, for loading without the package __init__
_MODULES = {
    "ColQwen2_5": "models.qwen2_5.colqwen2_5",
    "ColQwen2": "models.qwen2.colqwen2",
    "ColIdefics3": "models.idefics3.colidefics3",
    "ColPali": "models.paligemma.colpali",
}


def import_skipping_init(package: str, module: str):
    """Import ``package.module`` without running ``package/__init__.py`` and its parents'.

    colpali-engine's package ``__init__`` imports every model and, through transformers'
    image processors, torchvision; its model modules need only torch and transformers.
    PyLate's ``scores`` likewise. Raises ImportError when the package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed")
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join([package] + parts[:i])
        if name not in sys.modules:
            path = os.path.join(spec.submodule_search_locations[0], *parts[:i])
            stub = types.ModuleType(name)
            stub.__path__ = [path]
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            stub.__spec__.submodule_search_locations = [path]
            sys.modules[name] = stub
    return importlib.import_module(f"{package}.{module}")

_VISION = re.compile(r"(^|\.)(visual|vision|vision_model|vision_tower|image_encoder)(\.|$)")


def language_attention_layers(model) -> list[tuple[int, Any]]:
    """``[(layer_index, attention_module), ...]`` of the language model, in layer order.

    Attention modules are found by class name (``...Attention``) under ``layers.<i>``,
    skipping anything in the vision tower.
    """
    found: dict[int, Any] = {}
    for name, module in model.named_modules():
        if _VISION.search(name) or not type(module).__name__.endswith("Attention"):
            continue
        m = re.search(r"layers\.(\d+)\.[^.]+$", name)
        if m:
            found.setdefault(int(m.group(1)), module)
    if not found:
        raise InvalidInputError(f"no language-model attention layers found in {type(model).__name__}")
    return sorted(found.items())


class ColpaliEngineEncoder(Encoder):
    """Wrap a loaded colpali-engine model and processor as a colprune encoder.

    Parameters
    ----------
    model : a colpali-engine model (e.g. ``ColQwen2_5``) loaded with ``attn_implementation="eager"``
    processor : its processor (``process_images`` / ``process_queries``), or None to feed
        :meth:`encode_batch` with prepared inputs
    importance : default signal, one of ``eos``, ``indegree``, ``indegree_mid``, ``norm``
    image_token_id : id of the image-patch token (default: from the model config or processor)
    """

    input_kind = "image"

    def __init__(self, model, processor=None, *, name: str = "", importance: str = "eos",
                 image_token_id: int | None = None) -> None:
        import torch

        if importance not in SIGNALS:
            raise InvalidInputError(f"importance must be one of {SIGNALS}, got {importance!r}")
        impl = getattr(model.config, "_attn_implementation", None)
        text_cfg = getattr(model.config, "text_config", None)
        impl = getattr(text_cfg, "_attn_implementation", impl) if text_cfg is not None else impl
        if impl not in (None, "eager"):
            raise InvalidInputError(
                f"the model runs attn_implementation={impl!r}, which computes no attention weights; "
                "load it with attn_implementation='eager'"
            )
        self.model = model.eval()
        self.processor = processor
        self.name = name or type(model).__name__
        self.importance = importance
        tid = image_token_id
        if tid is None:
            tid = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
        if tid is None and processor is not None:
            tid = getattr(processor, "image_token_id", None)
        if tid is None:
            raise InvalidInputError("cannot tell the image token id: pass image_token_id=")
        self.image_token_id = int(tid)
        layers = language_attention_layers(model)
        n = len(layers)
        self._watch = {"last": layers[-1][1]}
        for i in sorted({max(0, n // 2 - 1), n // 2}):
            self._watch[f"mid{i}"] = layers[i][1]
        self.dim = int(getattr(model, "dim", 0) or 0)
        self._torch = torch

    @classmethod
    def from_pretrained(cls, name: str, model_class: str = "ColQwen2_5", *, device: str | None = None,
                        dtype: str | None = None, **kwargs) -> "ColpaliEngineEncoder":
        """Load ``colpali_engine.models.<model_class>`` and its ``<model_class>_Processor``."""
        try:
            import colpali_engine.models as models

            model_cls, proc_cls = getattr(models, model_class), getattr(models, f"{model_class}_Processor")
        except ImportError as e:
            if model_class not in _MODULES:
                raise InvalidInputError(
                    f"the colpali-engine adapter needs colpali-engine and the torchvision build matching your torch "
                    f"(pip install colpali-engine): {e}"
                ) from None
            # no torchvision: the model module still loads; its processor needs torchvision
            package = _MODULES[model_class]
            mod = import_skipping_init("colpali_engine", package + ".modeling_" + package.rsplit(".", 1)[1])
            model_cls, proc_cls = getattr(mod, model_class), None
        dev, dt = pick_device(device, dtype)
        model = model_cls.from_pretrained(name, attn_implementation="eager", torch_dtype=dt).to(dev)
        processor = proc_cls.from_pretrained(name) if proc_cls is not None else None
        return cls(model, processor, name=name, **kwargs)

    def encode_batch(self, batch: dict) -> list[EncodedPage]:
        """Encode prepared model inputs (``input_ids``, ``attention_mask``, ``pixel_values``, ...)."""
        captured: dict[str, Any] = {}
        hooks = [m.register_forward_hook(lambda mod, inp, out, key=k: captured.__setitem__(key, out[1]))
                 for k, m in self._watch.items()]
        device = next(self.model.parameters()).device
        try:
            with self._torch.no_grad():
                emb = self.model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()})
        finally:
            for h in hooks:
                h.remove()
        if any(captured.get(k) is None for k in self._watch):
            raise InvalidInputError("the attention layers returned no weights: load the model with attn_implementation='eager'")
        emb = emb.float().cpu()
        attn = {k: v.float().cpu() for k, v in captured.items()}
        pages = []
        for b in range(emb.shape[0]):
            rows = batch["attention_mask"][b].bool().nonzero().squeeze(-1).cpu()
            patch = (batch["input_ids"][b].cpu()[rows] == self.image_token_id).numpy()

            def layer(key):
                return attn[key][b].mean(dim=0)[rows][:, rows].numpy()

            signals = attention_signals(layer("last"), [layer(k) for k in self._watch if k != "last"], patch)
            vectors = emb[b][rows].numpy().astype(np.float32)
            signals["global_sim"] = (vectors @ vectors[-1]).astype(np.float32)
            grid = None
            if "image_grid_thw" in batch:
                t, h, w = (int(x) for x in batch["image_grid_thw"][b])
                merge = int(getattr(getattr(self.model, "visual", None), "spatial_merge_size", 2) or 2)
                grid = (t * h // merge, w // merge) if (t * h // merge) * (w // merge) == patch.sum() else None
            pages.append(EncodedPage(vectors, patch, signals[self.importance], grid, signals))
            self.dim = pages[-1].vectors.shape[1]
        return pages

    def encode_pages(self, pages: Sequence, *, batch_size: int = 4, progress: bool = False,
                     signals: Sequence[str] | None = None) -> list[EncodedPage]:
        """Encode page images (PIL images); ``signals``: the names to return (default all; the
        importance signal always)."""
        from tqdm.auto import tqdm

        if self.processor is None:
            raise InvalidInputError("no processor given: use encode_batch with prepared inputs")
        want = set(wanted_signals(signals, SIGNALS, self.importance, "the colpali-engine encoder"))
        out: list[EncodedPage] = []
        for lo in tqdm(range(0, len(pages), batch_size), desc="encode", unit="batch", disable=not progress):
            images = [im.convert("RGB") for im in pages[lo : lo + batch_size]]
            out += self.encode_batch(dict(self.processor.process_images(images)))
        if signals is None:
            return out
        return [replace(p, signals={k: v for k, v in p.signals.items() if k in want}) for p in out]

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        if self.processor is None:
            raise InvalidInputError("no processor given: cannot tokenize queries")
        out: list[np.ndarray] = []
        device = next(self.model.parameters()).device
        for lo in range(0, len(texts), batch_size):
            batch = self.processor.process_queries(list(texts[lo : lo + batch_size]))
            with self._torch.no_grad():
                emb = self.model(**{k: v.to(device) for k, v in batch.items()}).float().cpu()
            for b in range(emb.shape[0]):
                out.append(emb[b][batch["attention_mask"][b].bool().cpu()].numpy().astype(np.float32))
        return out
