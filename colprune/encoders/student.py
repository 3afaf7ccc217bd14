"""Small text-only query encoders distilled from a page encoder (the teacher).

A *student* answers queries for an index whose pages a large model (the *teacher*) encoded: it
emits one vector per query token **in the teacher's space**, so the index stays exactly as it
is and MaxSim compares student query vectors with teacher page vectors. The student reads the
teacher's own query tokens (the teacher's tokenizer and query template, saved with the student
and checked against the teacher when it is distilled), so its row ``i`` is the teacher's row
``i``. Distillation (:mod:`colprune.distill`) trains it to match every teacher token vector.

The model is a small post-LayerNorm transformer, BERT-style so that a BERT teacher's layers
copy into it:

- token embeddings factorised as ``(vocab, embed_rank) @ (embed_rank, hidden)``: the
  vocabulary table dominates a small model's parameters (MiniLM-L6: 11.7M of its 22.7M), so
  the student keeps a rank-``embed_rank`` SVD of the teacher's table;
- learned positions, ``layers`` transformer layers (``heads`` heads, ``intermediate``-wide
  GELU feed-forward), and a linear map to the teacher's ``dim``; outputs are L2-normalised;
- a single-vector head (``encode_single``): the mean of the student's token vectors, or a
  learned attention pooling (``head="attention"``), trained towards the mean of the teacher's
  token vectors, for a first stage against one mean vector per page.

A student is a folder: ``config.json`` (``model_type`` ``colprune-student``, the sizes, the
teacher's name and dim, the query template, the training record), ``model.safetensors`` and
``tokenizer/`` (the teacher's). ``load_encoder(folder)`` loads it. It encodes queries only; an
index records the encoder of its pages (``index.encoder``), and :meth:`check_index` refuses an
index built by another teacher (:class:`~colprune.errors.SettingsMismatchError`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError, ModelLoadError, SettingsMismatchError
from .base import EncodedPage, Encoder, pick_device

__all__ = [
    "STUDENT_MODEL_TYPE",
    "StudentConfig",
    "QueryFormat",
    "StudentModel",
    "StudentQueryEncoder",
    "query_format_of",
    "is_student",
    "same_teacher",
    "check_teacher",
    "save_student",
]

#: ``model_type`` in a student folder's config.json (what ``load_encoder`` looks for).
STUDENT_MODEL_TYPE = "colprune-student"
FORMAT_VERSION = 1


@dataclass
class QueryFormat:
    """How the teacher turns a query into token ids, reproduced by the student.

    ids = ``front + tokenizer(prefix + text + suffix, add_special_tokens)[:max_text_tokens] + back``
    (``max_text_tokens`` None: no truncation).
    """

    prefix: str = ""
    suffix: str = ""
    add_special_tokens: bool = False
    front: list[int] = field(default_factory=list)
    back: list[int] = field(default_factory=list)
    max_text_tokens: int | None = None

    def ids(self, tokenizer, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each query, exactly as the teacher sees them."""
        toks = tokenizer([f"{self.prefix}{t}{self.suffix}" for t in texts],
                         add_special_tokens=self.add_special_tokens, truncation=False)["input_ids"]
        cut = self.max_text_tokens
        return [[*self.front, *(t if cut is None else t[:cut]), *self.back] for t in toks]


@dataclass
class StudentConfig:
    """Sizes of a student, and what it was distilled from.

    Parameters
    ----------
    teacher : the teacher's name as an index records it (``"minilm"``, a path or a hub id)
    teacher_dim : the teacher's vector dim (the student's output dim)
    vocab_size : the teacher tokenizer's vocabulary (embedding rows)
    embed_rank : inner width of the factorised token embedding
    hidden : the student's residual width
    layers, heads, intermediate : transformer depth, attention heads, feed-forward width
    max_positions : longest query in tokens (longer ones are refused by the position table)
    head : single-vector head: "mean" (no parameters) or "attention" (learned pooling)
    init_layers : which teacher layers initialised the student's (a record; empty: random)
    """

    teacher: str
    teacher_dim: int
    vocab_size: int
    embed_rank: int = 128
    hidden: int = 384
    layers: int = 2
    heads: int = 12
    intermediate: int = 1024
    max_positions: int = 512
    layer_norm_eps: float = 1e-12
    pad_id: int = 0
    head: str = "mean"
    init_layers: list[int] = field(default_factory=list)

    def check(self) -> None:
        if self.hidden % self.heads:
            raise InvalidInputError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        for name in ("teacher_dim", "vocab_size", "embed_rank", "hidden", "layers", "heads", "intermediate",
                     "max_positions"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"student {name} must be at least 1, got {getattr(self, name)}")
        if self.head not in ("mean", "attention"):
            raise InvalidInputError(f"head must be 'mean' or 'attention', got {self.head!r}")


def _torch_modules():
    import torch
    from torch import nn
    from torch.nn import functional as F

    return torch, nn, F


def _build_model_class():
    torch, nn, F = _torch_modules()

    class Layer(nn.Module):
        """A post-LayerNorm encoder layer with BERT's parameter layout."""

        def __init__(self, cfg: StudentConfig) -> None:
            super().__init__()
            d = cfg.hidden
            self.heads = cfg.heads
            self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.o = nn.Linear(d, d)
            self.ln1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
            self.up = nn.Linear(d, cfg.intermediate)
            self.down = nn.Linear(cfg.intermediate, d)
            self.ln2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

        def forward(self, x, mask):
            b, s, d = x.shape
            h = self.heads

            def split(t):
                return t.view(b, s, h, d // h).transpose(1, 2)

            a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=mask)
            x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, s, d)))
            return self.ln2(x + self.down(F.gelu(self.up(x))))

    class StudentModel(nn.Module):
        """Token ids ``(b, s)`` and mask ``(b, s)`` -> unnormalised vectors ``(b, s, teacher_dim)``."""

        def __init__(self, cfg: StudentConfig) -> None:
            super().__init__()
            cfg.check()
            self.cfg = cfg
            self.tok = nn.Embedding(cfg.vocab_size, cfg.embed_rank)
            self.tok_proj = nn.Linear(cfg.embed_rank, cfg.hidden, bias=False)
            self.pos = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.ln = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
            self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
            self.out = nn.Linear(cfg.hidden, cfg.teacher_dim)
            self.pool = nn.Linear(cfg.hidden, 1) if cfg.head == "attention" else None

        def hidden(self, ids, mask):
            """Last hidden states ``(b, s, hidden)``; ``mask`` None when every row is real."""
            s = ids.shape[1]
            if s > self.cfg.max_positions:
                raise InvalidInputError(f"a query of {s} tokens is longer than the student's {self.cfg.max_positions}")
            pos = torch.arange(s, device=ids.device)
            x = self.ln(self.tok_proj(self.tok(ids)) + self.pos(pos)[None])
            att = None if mask is None else mask[:, None, None, :].bool()
            for layer in self.layers:
                x = layer(x, att)
            return x

        def forward(self, ids, mask):
            return self.out(self.hidden(ids, mask))

        def both(self, ids, mask):
            """``(token vectors (b, s, dim) unnormalised, single vectors (b, dim) L2-normalised)``."""
            h = self.hidden(ids, mask)
            y = self.out(h)
            m = mask.to(y.dtype)
            if self.pool is None:
                w = m / m.sum(dim=1, keepdim=True).clamp_min(1)
                single = (F.normalize(y, dim=-1) * w[..., None]).sum(dim=1)
            else:
                logits = self.pool(h).squeeze(-1).masked_fill(~mask.bool(), float("-inf"))
                single = (y * torch.softmax(logits, dim=1)[..., None]).sum(dim=1)
            return y, F.normalize(single, dim=-1)

    return StudentModel


_MODEL_CLASS = None


def StudentModel(cfg: StudentConfig):  # noqa: N802 - a class made on first use, so torch loads lazily
    """A new :class:`torch.nn.Module` student for ``cfg`` (random weights)."""
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _build_model_class()
    return _MODEL_CLASS(cfg)


def n_parameters(model) -> int:
    """Parameters of a torch module (the embedding table included)."""
    return int(sum(p.numel() for p in model.parameters()))


# -- the teacher's query tokens --------------------------------------------------------------

def query_format_of(teacher: Encoder) -> tuple[Any, QueryFormat]:
    """``(tokenizer, QueryFormat)`` reproducing how ``teacher`` tokenizes queries.

    Supported: :class:`~colprune.encoders.TextTokenEncoder` (``[CLS] tokens [SEP]``, truncated
    to its window) and :class:`~colprune.encoders.VisualEncoder` (ColQwen2 / ColPali processors:
    query prefix, text, ten augmentation tokens, newline). Check the result with
    :func:`check_alignment`.
    """
    from .text import TextTokenEncoder
    from .visual import VisualEncoder

    if isinstance(teacher, TextTokenEncoder):
        return teacher.tokenizer, QueryFormat(front=[teacher.front_id], back=[teacher.back_id],
                                              max_text_tokens=teacher.width)
    if isinstance(teacher, VisualEncoder):
        proc = teacher.processor
        tok = proc.tokenizer
        prefix = proc.query_prefix
        if teacher.model_type == "colpali":
            prefix = f"{tok.bos_token}{prefix}"
        return tok, QueryFormat(prefix=prefix, suffix=proc.query_augmentation_token * 10 + "\n",
                                add_special_tokens=True)
    raise InvalidInputError(f"cannot distil a student from {type(teacher).__name__}: colprune knows the query "
                            "tokens of TextTokenEncoder and VisualEncoder teachers")


def teacher_query_ids(teacher: Encoder, texts: Sequence[str]) -> list[list[int]]:
    """The token ids the teacher's ``encode_queries`` sees, one list per text (real tokens only)."""
    from .text import TextTokenEncoder
    from .visual import VisualEncoder

    if isinstance(teacher, TextTokenEncoder):
        toks = teacher.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [[teacher.front_id, *t[: teacher.width], teacher.back_id] for t in toks]
    if isinstance(teacher, VisualEncoder):
        batch = teacher.processor(text=list(texts))
        return [[int(i) for i, m in zip(ids, mask) if m] for ids, mask in
                zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())]
    raise InvalidInputError(f"cannot read the query tokens of {type(teacher).__name__}")


def check_alignment(teacher: Encoder, tokenizer, fmt: QueryFormat, texts: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` unless the student's ids equal the teacher's for ``texts``."""
    want = teacher_query_ids(teacher, texts)
    got = fmt.ids(tokenizer, texts)
    for t, a, b in zip(texts, want, got):
        if a != b:
            raise InvalidInputError(f"the student cannot reproduce the teacher's query tokens for {t!r:.60}: "
                                    f"teacher {a[:12]}..., student {b[:12]}...")


# -- teacher identity --------------------------------------------------------------------------

def same_teacher(a: str | None, b: str | None) -> bool:
    """Whether two recorded encoder names are the same model: equal names, or paths to the same folder."""
    if not a or not b:
        return False
    if a == b:
        return True
    if os.path.exists(a) and os.path.exists(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return False


def check_teacher(index, teacher: str, dim: int, student: str) -> None:
    """Raise :class:`SettingsMismatchError` unless ``index`` records ``teacher`` as its encoder and holds ``dim``."""
    held = getattr(index, "encoder", None)
    where = getattr(index, "path", "the index")
    if not held:
        raise SettingsMismatchError(
            f"{where} records no encoder, so colprune cannot tell whether its pages come from {teacher!r}, the teacher "
            f"of the student {student}: search it with query embeddings instead")
    if not same_teacher(held, teacher):
        raise SettingsMismatchError(
            f"{where} was built with {held!r}, but the student {student} was distilled from {teacher!r}: its query "
            f"vectors live in {teacher!r}'s space. Distil a student of the index's encoder: "
            f"colprune distill-queries --teacher {held} --texts YOUR_TEXTS -o STUDENT")
    held_dim = getattr(index, "dim", None)
    if held_dim is not None and int(held_dim) != int(dim):
        raise SettingsMismatchError(f"{where} holds dim {held_dim}, the student {student} gives dim {dim}")


def is_student(path: str) -> bool:
    """Whether ``path`` is a student folder (config.json with ``model_type`` colprune-student)."""
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        with open(cfg) as f:
            return json.load(f).get("model_type") == STUDENT_MODEL_TYPE
    except (OSError, ValueError):
        return False


# -- save / load -------------------------------------------------------------------------------

def save_student(path: str, model, tokenizer, fmt: QueryFormat, training: dict | None = None) -> str:
    """Write a student folder: ``config.json``, ``model.safetensors``, ``tokenizer/``. Returns ``path``.

    The folder is written beside its final name and renamed into place, so a reader never sees
    half a student; an existing student at ``path`` is replaced.
    """
    import shutil

    from safetensors.torch import save_file

    tmp = f"{path.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(tmp, "model.safetensors"))
    tokenizer.save_pretrained(os.path.join(tmp, "tokenizer"))
    record = {"model_type": STUDENT_MODEL_TYPE, "format_version": FORMAT_VERSION, "config": asdict(model.cfg),
              "query_format": asdict(fmt), "parameters": n_parameters(model), "training": training or {}}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(record, f, indent=2)
    if os.path.isdir(path):
        if not is_student(path) and os.listdir(path):
            shutil.rmtree(tmp, ignore_errors=True)
            raise InvalidInputError(f"{path} exists and is not a student folder: choose another -o")
        old = f"{path.rstrip(os.sep)}.old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def read_config(path: str) -> dict:
    """The parsed ``config.json`` of a student folder, checked."""
    if not is_student(path):
        raise ModelLoadError(f"{path} is not a student query encoder (no config.json with model_type "
                             f"{STUDENT_MODEL_TYPE!r}); make one with `colprune distill-queries`")
    with open(os.path.join(path, "config.json")) as f:
        record = json.load(f)
    if int(record.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelLoadError(f"{path}: student format {record['format_version']} is newer than this colprune reads "
                             f"({FORMAT_VERSION}); upgrade colprune")
    return record


class StudentQueryEncoder(Encoder):
    """A distilled student: query token vectors in its teacher's space (see the module docstring).

    Parameters
    ----------
    path : a student folder (``colprune distill-queries -o PATH``)
    device, dtype : torch device/dtype (CPU float32 by default)
    n_threads : torch threads for encoding (default: torch's)

    Attributes
    ----------
    teacher : the name of the encoder whose page vectors this student's queries search
    name : what a study or an index would record: the folder path
    """

    input_kind = "text"

    def __init__(self, path: str, *, device: str | None = None, dtype: str | None = None,
                 n_threads: int | None = None, **_ignored: Any) -> None:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        record = read_config(path)
        self.path = path
        self.name = path
        self.record = record
        self.cfg = StudentConfig(**record["config"])
        self.fmt = QueryFormat(**record["query_format"])
        self.teacher = self.cfg.teacher
        self.dim = int(self.cfg.teacher_dim)
        self.device, self.dtype = pick_device(device, dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(os.path.join(path, "tokenizer"))
            model = StudentModel(self.cfg)
            model.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
        except Exception as e:  # noqa: BLE001 - missing or damaged files
            raise ModelLoadError(f"cannot load the student in {path}: {str(e).splitlines()[0] if str(e) else e!r}") from None
        self.model = model.to(self.device, self.dtype).eval()
        if n_threads:
            torch.set_num_threads(int(n_threads))
        self._torch = torch

    @property
    def parameters(self) -> int:
        """Parameters of the student (its embedding table included)."""
        return n_parameters(self.model)

    def check_index(self, index) -> None:
        """Raise :class:`SettingsMismatchError` unless ``index``'s pages were encoded by this student's teacher."""
        check_teacher(index, self.teacher, self.dim, self.path)

    def search(self, index, texts: Sequence[str], k: int = 10, **kwargs):
        """``index.search(self.encode_queries(texts), k, **kwargs)`` after :meth:`check_index`."""
        self.check_index(index)
        return index.search(self.encode_queries(texts), k=k, **kwargs)

    def encode_pages(self, pages: Sequence[Any], *, batch_size: int = 8, progress: bool = False,
                     signals: Sequence[str] | None = None) -> list[EncodedPage]:
        raise InvalidInputError(f"{self.path} is a student query encoder: it encodes queries only; pages are encoded "
                                f"by its teacher {self.teacher!r}")

    def _batches(self, ids: list[list[int]], batch_size: int) -> list[list[int]]:
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]

    def _inputs(self, ids: list[list[int]], group: list[int]):
        """Padded ids ``(b, s)`` and the mask ``(b, s)``, or None when no row is padded."""
        torch = self._torch
        s = max(len(ids[i]) for i in group)
        x = torch.tensor([ids[i] + [self.cfg.pad_id] * (s - len(ids[i])) for i in group], dtype=torch.long)
        if all(len(ids[i]) == s for i in group):
            return x.to(self.device), None
        m = torch.tensor([[True] * len(ids[i]) + [False] * (s - len(ids[i])) for i in group])
        return x.to(self.device), m.to(self.device)

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"query {i}: expected non-empty text, got {t!r:.40}")
        return self.fmt.ids(self.tokenizer, texts)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Token vectors ``(m_i, dim)`` float32 per query, L2-normalised, row ``j`` = the teacher's row ``j``."""
        ids = self._ids(texts)
        out: dict[int, np.ndarray] = {}
        for group in self._batches(ids, batch_size):
            with self._torch.inference_mode():
                y = self.model(*self._inputs(ids, group))
            y = self._torch.nn.functional.normalize(y.float(), dim=-1).cpu().numpy()
            for r, i in enumerate(group):
                out[i] = np.ascontiguousarray(y[r, : len(ids[i])], dtype=np.float32)
        return [out[i] for i in range(len(ids))]

    def encode_single(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """One L2-normalised vector per query ``(n, dim)`` float32: the single-vector head, for a
        first stage against one mean vector per page (:func:`colprune.distill.page_means`)."""
        ids = self._ids(texts)
        out = np.zeros((len(ids), self.dim), np.float32)
        for group in self._batches(ids, batch_size):
            x, m = self._inputs(ids, group)
            with self._torch.inference_mode():
                _, single = self.model.both(x, self._torch.ones_like(x, dtype=self._torch.bool) if m is None else m)
            out[group] = single.float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        c = self.cfg
        return (f"StudentQueryEncoder({self.path!r}, teacher={self.teacher!r}, layers={c.layers}, hidden={c.hidden}, "
                f"embed_rank={c.embed_rank}, parameters={self.parameters:,})")

