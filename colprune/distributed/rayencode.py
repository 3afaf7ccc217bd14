"""The Ray build's encode stage: an actor that loads one model and encodes batches of read pages."""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from ..pipeline import page_metadata
from .raypages import page_row

__all__ = ["EncodeStage"]


class EncodeStage:
    """The encode stage's actor (Ray Data ``ActorPoolStrategy``): one model, batches of read pages in, row batches out.

    Parameters
    ----------
    model : encoder name, path or hub id (:func:`colprune.encoders.load_encoder`), unless ``encoder_factory``
    encoder_factory : a picklable callable returning an encoder (``name``, ``dim``, ``input_kind``, ``encode_pages``)
    load_kwargs : passed to ``load_encoder`` (``importance``, ``device``)
    want_signals : compute every signal the encoder gives (else only its importance signal)
    """

    def __init__(self, model: str, encoder_factory: Callable | None, load_kwargs: dict, want_signals: bool) -> None:
        from ..encoders import Encoder, load_encoder

        self.encoder = encoder_factory() if encoder_factory is not None else load_encoder(model, **load_kwargs)
        self.kw: dict = {}
        if isinstance(self.encoder, Encoder):  # a factory's own object need only take (pages, batch_size=)
            self.kw["signals"] = None if want_signals else [getattr(self.encoder, "importance", "cls")]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode the readable pages of ``batch`` (columns of :func:`~colprune.distributed.raypages.read_batch`).

        Returns the columns ``id``, ``bucket``, ``metadata`` (JSON), the :func:`page_row`
        columns, ``reason`` (why a page is skipped, else empty) and ``dim``.
        """
        n = len(batch["id"])
        ok = [i for i in range(n) if not batch["reason"][i]]
        contents = [self._content(batch, i) for i in ok]
        encoded = self.encoder.encode_pages(contents, batch_size=max(1, min(len(contents), 64)), **self.kw) if contents else []
        rows = [page_row(np.zeros((0, 1), np.float32), None, None, None, None) for _ in range(n)]
        reasons = [str(r) for r in batch["reason"]]
        for i, enc in zip(ok, encoded):
            if enc.vectors.shape[0] == 0:
                reasons[i] = "the encoder produced no vectors"
            else:
                rows[i] = page_row(enc.vectors, enc.importance, enc.patch_mask, enc.grid, None)
        out = {k: batch[k] for k in ("id", "bucket")}
        out["metadata"] = np.array([json.dumps(page_metadata(str(i), str(p), int(g), str(k), str(s)))
                                    for i, p, g, k, s in zip(batch["id"], batch["path"], batch["page"], batch["kind"],
                                                             batch["sha256"])], dtype=object)
        for key in ("n", "vectors", "importance", "patch_mask", "grid", "signals"):
            out[key] = np.array([r[key] for r in rows], dtype=np.int64 if key == "n" else object)
        out["reason"] = np.array(reasons, dtype=object)
        out["dim"] = np.full(n, int(getattr(self.encoder, "dim", 0) or 0), np.int64)
        return out

    @staticmethod
    def _content(batch: dict[str, np.ndarray], i: int) -> Any:
        """Page ``i``'s content as the encoder takes it: a PIL image (raw RGB rows) or a string (UTF-8)."""
        raw = batch["content"][i]
        if int(batch["height"][i]):
            from PIL import Image

            h, w = int(batch["height"][i]), int(batch["width"][i])
            return Image.fromarray(np.frombuffer(raw, np.uint8).reshape(h, w, 3))
        return bytes(raw).decode("utf-8")
