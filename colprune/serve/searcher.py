"""Several searches over one open index with one model load: what ``colprune search`` and ``colprune serve`` share.

:class:`Searcher` holds an open index and, once the first text query arrives, its encoder. Its
checks speak the words of the caller: command-line options (``--candidates``) for the CLI,
request fields (``"candidates"``) for the HTTP server (``words="http"``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError, ModelLoadError, UsageError
from ..index.candidates import RESIDUAL_CODECS

__all__ = ["Searcher", "load_query_encoder", "quiet_libraries", "TRUSTED_ENCODER_NAMES"]


def load_query_encoder(name: str, *, quiet: bool = False):
    """``load_encoder(name)``, with every failure as :class:`ModelLoadError`."""
    if quiet:
        quiet_libraries()
    from ..encoders import load_encoder

    try:
        return load_encoder(name)
    except Exception as e:  # noqa: BLE001 - a missing package, an offline hub, an unsupported type
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(msg if name in msg else f"cannot load model {name!r}: {msg}") from e


def quiet_libraries() -> None:
    """Silence transformers' and the hub's progress bars and warnings (``-q``)."""
    import os
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TQDM_DISABLE"] = "1"
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as tlog

            tlog.disable_progress_bar()
            tlog.set_verbosity_error()
        except Exception:  # noqa: BLE001 - best effort
            pass


#: encoder names that are not paths or hub ids: safe to load when an index names them
TRUSTED_ENCODER_NAMES = frozenset({"minilm"})


class Searcher:
    """Several searches over one open index, the encoder loaded once, on the first text query.

    ``words="cli"`` names options in errors (``--candidates``), ``words="http"`` request fields
    (``"candidates"``); :func:`colprune.serve.make_server` sets the latter.
    """

    def __init__(self, index, *, quiet: bool = False, encoder=None, n_threads: int | None = None,
                 model: str | None = None, trust_index_encoder: bool = False, words: str = "cli") -> None:
        self.index = index
        self.quiet = quiet
        self.n_threads = n_threads
        self._encoder = encoder
        self.model = model
        self.trust_index_encoder = trust_index_encoder
        self.words = words

    def field(self, name: str) -> str:
        """How an option is named to the caller: ``--name`` on the command line, ``"name"`` over HTTP."""
        return f'"{name}"' if self.words == "http" else f"--{name}"

    def model_name(self) -> str:
        """The query encoder to load: ``model`` if given, else the index's recorded one when it is safe to load.

        An index names its encoder, but a file may be hostile: a recorded *path* or hub id is loaded
        only when the user passes it (``--model``) or trusts the index (``--trust-index-encoder``);
        the built-in names (``minilm``) load as they are.
        """
        if self.model:
            return self.model
        name = self.index.encoder
        http = self.words == "http"
        if not name:
            raise UsageError("this server encodes no text: the index records no encoder; send \"embeddings\"" if http
                             else f"{self.index.path} records no encoder: pass --model NAME, or query embeddings files")
        if name not in TRUSTED_ENCODER_NAMES and not self.trust_index_encoder:
            raise UsageError(f"this server encodes no text: the index names the encoder {name!r}, which is loaded only "
                             f"when the server is started with it; send \"embeddings\"" if http else
                             f"{self.index.path} was built with the encoder {name!r}; colprune does not load a model "
                             f"an index names on its own: pass --model {name} (or --trust-index-encoder)")
        return name

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_query_encoder(self.model_name(), quiet=self.quiet)
        return self._encoder

    def check_texts(self, texts: Sequence[str]) -> None:
        for i, t in enumerate(texts, 1):
            if not isinstance(t, str) or not t.strip():
                raise UsageError(f"query {i} is empty: give some text to search for")
        if texts and self._encoder is None:
            self.model_name()

    def check_vectors(self, vectors: Sequence, labels: Sequence[str]) -> list[np.ndarray]:
        out = []
        for v, label in zip(vectors, labels):
            a = np.asarray(v, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] == 0:
                raise InvalidInputError(f"query {label}: expected (n_tokens, {self.index.dim}) vectors, got shape {a.shape}")
            if a.shape[1] != self.index.dim:
                raise InvalidInputError(
                    f"query {label}: vectors of dim {a.shape[1]}, but {self.index.path} holds dim {self.index.dim}")
            if not np.isfinite(a).all():
                raise InvalidInputError(f"query {label}: NaN or infinite values")
            out.append(a)
        return out

    def check_options(self, k: int, candidates: int | None, rerank: int | None, nprobe: int | None = None) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UsageError(f"{'k' if self.words == 'cli' else self.field('k')} must be a positive integer, got {k!r}")
        codec = self.index.codec
        residual = codec in RESIDUAL_CODECS
        if candidates is not None:
            if candidates < 1:
                raise UsageError(f"{self.field('candidates')} must be positive, got {candidates}")
            if not residual and codec not in ("float16", "float32"):
                raise UsageError(f"{self.field('candidates')} needs a float16/float32 index (two-stage search) or a "
                                 f"residual one (its centroid index); {self.index.path} is {codec}: {self._residual_hint()}")
            if residual and candidates < k:
                raise UsageError(f"{self.field('candidates')} {candidates} is fewer than {self.field('k')} {k}: "
                                 "the shortlist scored exactly holds at least the hits returned")
        if nprobe is not None:
            self._check_nprobe(nprobe, candidates, codec)
        if rerank is not None:
            if rerank < 0:
                raise UsageError(f"{self.field('rerank')} must be 0 or more, got {rerank}")
            if codec != "binary" or not self.index.has_rerank:
                raise UsageError(f"{self.field('rerank')} applies to binary indexes with a rerank copy; "
                                 f"{self.index.path} is {codec}"
                                 + ("" if codec != "binary" else " without one (built with --no-rerank)"))

    def _residual_hint(self) -> str:
        return ("the centroid index needs an index built with the codec residual2 (or residual1/residual4)"
                if self.words == "http" else "build with --codec residual2 for the centroid index")

    def _check_nprobe(self, nprobe: int, candidates: int | None, codec: str) -> None:
        if nprobe < 1:
            raise UsageError(f"{self.field('nprobe')} must be positive, got {nprobe}")
        if codec not in RESIDUAL_CODECS:
            raise UsageError(f"{self.field('nprobe')} probes the centroid index of a residual index; {self.index.path} "
                             f"is {codec}" + (f" ({self.field('candidates')} alone is its two-stage search)"
                                              if codec in ("float16", "float32") else "")
                             + f": {self._residual_hint()}")
        if candidates is None:
            raise UsageError(f"{self.field('nprobe')} goes with {self.field('candidates')} N (search through the "
                             "centroid index); without it search is exact")
        snapshot = getattr(self.index, "snapshot", None)  # a sharded index checks in its shards
        cb = None if snapshot is None else getattr(snapshot(), "codebook", None)
        top = 0 if cb is None else int(cb.centroids.shape[0])
        if top and nprobe > top:
            raise UsageError(f"{self.field('nprobe')} {nprobe} is more than the codebook's {top} centroids")

    def check_where(self, where: dict | None) -> None:
        """Unknown filter fields are a usage error, found before any model loads."""
        if not where:
            return
        known = set(self.index.filter_fields())
        unknown = sorted(set(where) - known)
        if unknown and len(self.index):
            raise UsageError(f"{self.field('where')}: no page has the metadata field {unknown[0]!r}; "
                             f"fields to filter on: {', '.join(sorted(known)) or 'none'}")

    def search(self, texts: Sequence[str] = (), vectors: Sequence = (), *, labels: Sequence[str] | None = None,
               k: int = 10, where: dict | None = None, candidates: int | None = None,
               rerank: int | None = None, n_centroids: int | None = None, nprobe: int | None = None) -> list[dict]:
        """``[{"query": label, "hits": [{"rank", "id", "score", "metadata"}, ...]}, ...]``.

        Text queries come first in the result, then vector queries, each in the given order.
        """
        texts = list(texts)
        self.check_texts(texts)
        self.check_options(k, candidates, rerank, nprobe)
        self.check_where(where)
        vlabels = list(labels) if labels is not None else [f"#{i + 1}" for i in range(len(vectors))]
        qvecs = self.check_vectors(vectors, vlabels)
        if not texts and not qvecs:
            raise UsageError('no queries: give "queries": ["text", ...] or "embeddings" (GET: /search?q=TEXT)'
                             if self.words == "http" else
                             "no queries: give query text, --queries-file FILE, or one query per line on stdin")
        if texts:
            qvecs = list(self.encoder.encode_queries(texts)) + qvecs
        kw: dict[str, Any] = {"n_threads": self.n_threads}
        if candidates is not None:
            kw["candidates"] = candidates
            if n_centroids is not None:
                kw["n_centroids"] = n_centroids
            if nprobe is not None:
                kw["nprobe"] = nprobe
        if rerank is not None:
            kw["rerank"] = rerank
        hits = self.index.search(qvecs, k=k, where=where or None, **kw)
        out = []
        for label, hs in zip(texts + vlabels, hits):
            rows = []
            for rank, h in enumerate(hs, 1):
                score = float(h.score)
                rows.append({"rank": rank, "id": h.id, "score": score if math.isfinite(score) else None,
                             "metadata": h.metadata})
            out.append({"query": label, "hits": rows})
        return out
