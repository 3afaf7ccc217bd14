"""Distil a small text-only query encoder (a student) from a page encoder (its teacher).

The NanoVDR recipe, made multi-vector: the teacher encodes each training text *as a query*
and the student learns to reproduce every one of the teacher's query token vectors (cosine
alignment, ``loss="align"``). Training text comes from the user's own corpus, cut into
sentences and short spans (:func:`training_texts`), plus any queries they have; no labels,
no pages, no documents are needed. ``loss="infonce"`` trains the same student with an
in-batch contrastive loss over the token vectors instead (each student token must pick its
teacher token among every token of the batch, temperature 0.05), for comparison.

:func:`distill` runs it all: texts, teacher targets (computed once, kept in the work folder),
the student initialised from the teacher (:func:`init_from_teacher`), training with a progress
bar, a held-out alignment score after every epoch, checkpoints every epoch and every
``checkpoint_seconds``, and the student folder written at the end. Work in progress lives in
``OUT.partial/``; running the same call again resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from .encoders.base import Encoder
from .encoders.student import (
    QueryFormat,
    StudentConfig,
    StudentModel,
    check_alignment,
    n_parameters,
    query_format_of,
    save_student,
)
from .errors import InvalidInputError, NotFoundError, UsageError
from .study.datasets import read_jsonl

__all__ = [
    "cut_sentences",
    "read_texts",
    "training_texts",
    "TeacherTargets",
    "teacher_targets",
    "default_config",
    "init_from_teacher",
    "DistillReport",
    "distill",
    "page_means",
    "LOSSES",
]

LOSSES = ("align", "infonce")
#: Sentences longer than this many words are cut into pieces of at most this many.
MAX_WORDS = 32
MIN_WORDS = 3

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


# -- training text -----------------------------------------------------------------------------

def cut_sentences(text: str, *, max_words: int = MAX_WORDS, min_words: int = MIN_WORDS,
                  spans: bool = True, rng: random.Random | None = None) -> list[str]:
    """Sentences (and questions) of a passage, as query-like training texts.

    Whitespace is normalised; a sentence ends at ``.``, ``!`` or ``?`` before a capital or a
    digit; pieces of fewer than ``min_words`` words are dropped and longer than ``max_words`` are
    cut (tables in PDF text layers become runs of cells). With ``spans``, every sentence of more
    than 12 words also gives one random 4-12-word window of itself: queries are shorter than
    sentences.
    """
    rng = rng or random.Random(0)
    out: list[str] = []
    for sentence in _SENTENCE.split(" ".join(text.split())):
        words = sentence.split()
        for lo in range(0, len(words), max_words):
            piece = words[lo : lo + max_words]
            if len(piece) < min_words:
                continue
            out.append(" ".join(piece))
            if spans and len(piece) > 12:
                n = rng.randint(4, 12)
                s = rng.randint(0, len(piece) - n)
                out.append(" ".join(piece[s : s + n]))
    return out


def read_texts(paths: Sequence[str], *, on_skip: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """``[(text, kind), ...]`` from the inputs, kind ``"query"`` (kept whole) or ``"passage"`` (cut later).

    - ``.txt`` / ``.md``: one text a line (lines are queries when short, passages when longer
      than :data:`MAX_WORDS` words);
    - ``.jsonl``: BEIR records (``text``, optional ``title``); a file named ``queries*.jsonl``
      holds queries, any other passages (``corpus.jsonl``);
    - ``.pdf``: each page's text layer is a passage (pages without text are skipped);
    - a folder: its ``corpus.jsonl`` if it has one (not its ``queries.jsonl``: give that file
      by name, so held-out test queries are never read by accident), else every PDF and
      ``.txt``/``.md`` file under it.
    """
    from .encoders.sources import PDF_EXTS, TEXT_EXTS, collect_pages

    out: list[tuple[str, str]] = []

    def add_line(line: str) -> None:
        line = " ".join(line.split())
        if line:
            out.append((line, "query" if len(line.split()) <= MAX_WORDS else "passage"))

    def add_text_file(path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    add_line(line)
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"{path}: not a readable UTF-8 text file ({e})") from None

    for item in paths:
        if not os.path.exists(item):
            raise NotFoundError(f"{item}: no such file or folder")
        ext = os.path.splitext(item)[1].lower()
        if os.path.isdir(item):
            corpus = os.path.join(item, "corpus.jsonl")
            if os.path.exists(corpus):
                out += read_texts([corpus])
                continue
            found = collect_pages([item], skip_bad=True, on_skip=(lambda e: on_skip(str(e))) if on_skip else None)
            for page in found:
                if page.kind == "text":
                    if page.page == 1:
                        add_text_file(page.path)
                elif page.kind == "pdf":
                    text = page.text()
                    if text.strip():
                        out.append((text, "passage"))
            continue
        if ext == ".jsonl":
            kind = "query" if os.path.basename(item).lower().startswith("queries") else "passage"
            for rec in read_jsonl(item):
                text = rec.get("text") or rec.get("query") or ""
                title = rec.get("title") or ""
                text = f"{title}. {text}" if title and kind == "passage" else text
                if str(text).strip():
                    out.append((str(text), kind))
        elif ext in TEXT_EXTS:
            add_text_file(item)
        elif ext in PDF_EXTS:
            for page in collect_pages([item]):  # an unreadable PDF given by name raises PageError
                text = page.text()
                if text.strip():
                    out.append((text, "passage"))
        else:
            raise InvalidInputError(f"{item}: training text comes from .txt/.md (one text a line), .jsonl (BEIR "
                                    f"corpus or queries), PDFs or folders of them; got {ext or 'no extension'!r}")
    return out


def training_texts(paths: Sequence[str], *, fraction: float = 1.0, max_texts: int | None = None, seed: int = 0,
                   spans: bool = True, on_skip: Callable[[str], None] | None = None) -> list[str]:
    """Query-like training texts from the inputs: queries whole, passages cut by :func:`cut_sentences`.

    Duplicates are dropped, the rest shuffled (``seed``); ``fraction`` keeps that share of them
    (the 25%-of-the-text experiment), then ``max_texts`` caps the count.
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {fraction}")
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    for text, kind in read_texts(paths, on_skip=on_skip):
        pieces = [text] if kind == "query" else cut_sentences(text, spans=spans, rng=rng)
        for p in pieces:
            seen.setdefault(p, None)
    texts = list(seen)
    rng.shuffle(texts)
    texts = texts[: max(1, round(len(texts) * fraction))] if texts else texts
    if max_texts is not None:
        texts = texts[:max_texts]
    if not texts:
        raise InvalidInputError(f"no training text in {', '.join(paths)}: give text files, BEIR corpus/queries "
                                "files or PDFs with a text layer")
    return texts


# -- teacher targets ---------------------------------------------------------------------------

@dataclass
class TeacherTargets:
    """The teacher's query token vectors of every training text, CSR: row ``offsets[i]:offsets[i+1]``
    are text ``i``'s tokens, ``ids`` the matching token ids (both ``(n_tokens,)``/``(n_tokens, dim)``)."""

    texts: list[str]
    ids: np.ndarray  # (n_tokens,) int32
    vectors: np.ndarray  # (n_tokens, dim) float16, L2-normalised
    offsets: np.ndarray  # (n_texts + 1,) int64
    teacher: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, rows: Sequence[int]) -> "TeacherTargets":
        rows = list(rows)
        lo, hi = self.offsets[:-1][rows], self.offsets[1:][rows]
        take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if rows else np.zeros(0, np.int64)
        return TeacherTargets([self.texts[i] for i in rows], self.ids[take], self.vectors[take],
                              np.r_[0, np.cumsum(hi - lo)].astype(np.int64), self.teacher)

    def save(self, path: str) -> None:
        tmp = path + ".tmp.npz"
        np.savez(tmp, ids=self.ids, vectors=self.vectors, offsets=self.offsets, texts=np.array(self.texts),
                 teacher=np.array(self.teacher))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "TeacherTargets":
        with np.load(path, allow_pickle=False) as z:
            return cls(list(z["texts"]), z["ids"], z["vectors"], z["offsets"], str(z["teacher"]))


def teacher_targets(teacher: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False,
                    tokenizer=None, fmt: QueryFormat | None = None) -> TeacherTargets:
    """Encode every text as a query with the teacher; the student's token ids beside each row."""
    from tqdm.auto import tqdm

    if tokenizer is None or fmt is None:
        tokenizer, fmt = query_format_of(teacher)
    ids_all, vecs, lengths = [], [], []
    chunk = max(batch_size * 16, 1)
    with tqdm(total=len(texts), desc="teacher", unit="text", disable=not progress) as bar:
        for lo in range(0, len(texts), chunk):
            part = list(texts[lo : lo + chunk])
            ids = fmt.ids(tokenizer, part)
            out = teacher.encode_queries(part, batch_size=batch_size)
            for t, i, v in zip(part, ids, out):
                if len(i) != v.shape[0]:
                    raise InvalidInputError(f"the teacher gave {v.shape[0]} vectors for {len(i)} tokens of {t!r:.60}: "
                                            "its query tokens cannot be reproduced")
                ids_all.append(np.asarray(i, np.int32))
                vecs.append(v.astype(np.float16))
                lengths.append(len(i))
            bar.update(len(part))
    return TeacherTargets(list(texts), np.concatenate(ids_all), np.concatenate(vecs),
                          np.r_[0, np.cumsum(lengths)].astype(np.int64), teacher.name)


# -- the student's starting point -------------------------------------------------------------

def _bert(teacher: Encoder):
    """The teacher's BERT-style model (embeddings + encoder.layer) or None."""
    from .encoders.text import TextTokenEncoder

    if not isinstance(teacher, TextTokenEncoder):
        return None
    m = teacher.model
    ok = hasattr(m, "embeddings") and hasattr(getattr(m, "encoder", None), "layer")
    return m if ok and getattr(m.config, "position_embedding_type", "absolute") == "absolute" else None


def default_config(teacher: Encoder, tokenizer, *, layers: int = 2, embed_rank: int | None = None,
                   hidden: int | None = None, heads: int | None = None, intermediate: int | None = None,
                   head: str = "mean") -> StudentConfig:
    """A student's sizes for ``teacher``: BERT teachers keep their width and heads (so their layers
    copy in), with ``layers`` layers, a 1024-wide feed-forward and a rank-128 embedding table;
    other teachers get a 256-wide, 4-head student. Any size given overrides."""
    vocab = max(len(tokenizer), int(getattr(tokenizer, "vocab_size", 0) or 0))
    bert = _bert(teacher)
    if bert is not None:
        cfg = bert.config
        vocab = max(vocab, int(cfg.vocab_size))
        h = hidden or int(cfg.hidden_size)
        base = dict(hidden=h, heads=heads or int(cfg.num_attention_heads),
                    intermediate=intermediate or min(1024, int(cfg.intermediate_size)),
                    max_positions=int(cfg.max_position_embeddings), layer_norm_eps=float(cfg.layer_norm_eps),
                    pad_id=int(cfg.pad_token_id or 0))
    else:
        h = hidden or 256
        base = dict(hidden=h, heads=heads or 4, intermediate=intermediate or 2 * h, max_positions=512,
                    layer_norm_eps=1e-6, pad_id=int(tokenizer.pad_token_id or 0))
    return StudentConfig(teacher=teacher.name, teacher_dim=int(teacher.dim), vocab_size=vocab,
                         embed_rank=min(embed_rank or 128, h, vocab), layers=layers, head=head, **base)


def _last(n_take: int, n_have: int) -> list[int]:
    """The last ``n_take`` of ``n_have`` layers (2 of 6: [4, 5]). On MiniLM, 2 layers and 3,000
    MS MARCO sentences: held-out alignment 0.774 after 2 epochs from [4, 5], 0.756 from [0, 5]."""
    return list(range(max(0, n_have - n_take), n_have))


def init_from_teacher(model, teacher: Encoder, *, layers: Sequence[int] | None = None) -> list[int]:
    """Initialise a student from its teacher, in place; returns the teacher layers copied.

    The token table becomes the rank-``embed_rank`` truncated SVD of the teacher's input
    embeddings (``U S`` in the table, ``V^T`` in the projection when the widths match). BERT
    teachers of the student's width also give their position + token-type embeddings, the
    embedding LayerNorm, the layers ``layers`` (default the last ``cfg.layers`` ones;
    feed-forward neurons kept by the largest ``|w_in| |w_out|`` when the student's is narrower),
    and an identity output map.
    """
    import torch

    cfg = model.cfg
    try:
        emb = teacher.model.get_input_embeddings().weight.detach().float().cpu()
    except (AttributeError, NotImplementedError):
        emb = None
    bert = _bert(teacher)
    with torch.no_grad():
        if emb is not None and emb.shape[0] <= cfg.vocab_size:
            u, s, vt = torch.linalg.svd(emb, full_matrices=False)
            r = min(cfg.embed_rank, s.shape[0])
            model.tok.weight.zero_()
            model.tok.weight[: emb.shape[0], :r] = u[:, :r] * s[:r]
            if emb.shape[1] == cfg.hidden:
                model.tok_proj.weight.zero_()
                model.tok_proj.weight[:, :r] = vt[:r].T
        if bert is None or int(bert.config.hidden_size) != cfg.hidden or int(bert.config.num_attention_heads) != cfg.heads:
            return []
        e = bert.embeddings
        n_pos = min(cfg.max_positions, e.position_embeddings.weight.shape[0])
        model.pos.weight[:n_pos] = e.position_embeddings.weight[:n_pos] + e.token_type_embeddings.weight[0]
        model.ln.load_state_dict(e.LayerNorm.state_dict())
        src = list(bert.encoder.layer)
        chosen = list(layers) if layers is not None else _last(cfg.layers, len(src))
        if len(chosen) != cfg.layers or any(not 0 <= i < len(src) for i in chosen):
            raise InvalidInputError(f"init layers {chosen}: need {cfg.layers} indices among the teacher's {len(src)} layers")
        for dst, i in zip(model.layers, chosen):
            t = src[i]
            sa, so = t.attention.self, t.attention.output
            for name, lin in (("q", sa.query), ("k", sa.key), ("v", sa.value), ("o", so.dense)):
                getattr(dst, name).load_state_dict(lin.state_dict())
            dst.ln1.load_state_dict(so.LayerNorm.state_dict())
            dst.ln2.load_state_dict(t.output.LayerNorm.state_dict())
            w_in, b_in, w_out = t.intermediate.dense.weight, t.intermediate.dense.bias, t.output.dense.weight
            keep = torch.argsort(w_in.norm(dim=1) * w_out.norm(dim=0), descending=True)[: cfg.intermediate]
            keep = torch.sort(keep).values
            dst.up.weight.copy_(w_in[keep])
            dst.up.bias.copy_(b_in[keep])
            dst.down.weight.copy_(w_out[:, keep])
            dst.down.bias.copy_(t.output.dense.bias)
        if cfg.hidden == cfg.teacher_dim:
            model.out.weight.copy_(torch.eye(cfg.hidden))
            model.out.bias.zero_()
    return chosen


# -- training ----------------------------------------------------------------------------------

@dataclass
class DistillReport:
    """What :func:`distill` did. ``held_out`` is the mean token cosine similarity to the teacher on
    held-out texts after each epoch (1.0 = identical vectors)."""

    path: str
    parameters: int
    teacher_parameters: int | None
    texts: int
    held_out_texts: int
    tokens: int
    epochs: int
    steps: int
    seconds: float
    teacher_seconds: float
    held_out: list[float]
    loss: str
    resumed_from_step: int = 0

    def summary(self) -> str:
        ratio = f" ({self.parameters / self.teacher_parameters:.1%} of the teacher's)" if self.teacher_parameters else ""
        last = f"{self.held_out[-1]:.4f}" if self.held_out else "-"
        return (f"{self.path}: student of {self.parameters:,} parameters{ratio}, {self.loss} loss, trained on "
                f"{self.texts:,} texts ({self.tokens:,} tokens) for {self.epochs} epochs, {self.steps:,} steps in "
                f"{self.seconds:.0f} s (teacher targets {self.teacher_seconds:.0f} s); held-out alignment {last} "
                f"(mean token cosine on {self.held_out_texts:,} texts)")


def _batch(targets: TeacherTargets, rows: Sequence[int], pad_id: int):
    import torch

    lo, hi = targets.offsets[:-1][rows], targets.offsets[1:][rows]
    s = int((hi - lo).max())
    dim = targets.vectors.shape[1]
    ids = torch.full((len(rows), s), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), s), dtype=torch.bool)
    tgt = torch.zeros((len(rows), s, dim), dtype=torch.float32)
    for r, (a, b) in enumerate(zip(lo, hi)):
        n = int(b - a)
        ids[r, :n] = torch.from_numpy(targets.ids[a:b].astype(np.int64))
        mask[r, :n] = True
        tgt[r, :n] = torch.from_numpy(targets.vectors[a:b].astype(np.float32))
    return ids, mask, tgt


def _losses(model, ids, mask, tgt, loss: str, temperature: float = 0.05):
    """``(loss, token alignment)`` of one batch."""
    import torch
    from torch.nn import functional as F

    y, single = model.both(ids, mask)
    y = F.normalize(y, dim=-1)
    cos = (y * tgt).sum(-1)
    m = mask.to(cos.dtype)
    align = (cos * m).sum() / m.sum()
    t_single = F.normalize((tgt * m[..., None]).sum(1), dim=-1)
    head = 1 - (single * t_single).sum(-1).mean()
    if loss == "align":
        main = 1 - align
    else:  # in-batch InfoNCE over every real token of the batch
        s, t = y[mask], tgt[mask]
        logits = s @ t.T / temperature
        main = F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device))
    return main + 0.1 * head, align


def held_out_alignment(model, targets: TeacherTargets, pad_id: int, batch_size: int = 128) -> float:
    """Mean token cosine similarity of the student to the teacher over ``targets`` (every token weighs the same)."""
    import torch
    from torch.nn import functional as F

    total, count = 0.0, 0
    was = model.training
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(targets), batch_size):
            ids, mask, tgt = _batch(targets, list(range(lo, min(lo + batch_size, len(targets)))), pad_id)
            y = F.normalize(model(ids, mask), dim=-1)
            total += float(((y * tgt).sum(-1) * mask).sum())
            count += int(mask.sum())
    model.train(was)
    return total / max(count, 1)


def _epoch_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[list[int]]:
    """One epoch's batches: a random order, sorted by length within windows of 50 batches (so a
    batch pads little), the batches shuffled again. Deterministic in ``seed`` (resuming needs it)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for lo in range(0, len(perm), window):
        part = perm[lo : lo + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def distill(
    teacher: Encoder | str,
    texts: Sequence[str],
    out: str,
    *,
    config: StudentConfig | None = None,
    layers: int = 2,
    init: str = "teacher",
    init_layers: Sequence[int] | None = None,
    loss: str = "align",
    epochs: int = 3,
    max_steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    train_embeddings: bool = False,
    held_out: float = 0.02,
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    checkpoint_seconds: float = 300.0,
    targets: TeacherTargets | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DistillReport:
    """Distil a student query encoder from ``teacher`` on ``texts`` and write it to the folder ``out``.

    Parameters
    ----------
    teacher : an :class:`Encoder` or a name for ``load_encoder`` (``"minilm"``, a path)
    texts : training texts, each encoded as a query by the teacher (see :func:`training_texts`)
    out : the student folder to write (``load_encoder(out)`` loads it)
    config : the student's sizes (default :func:`default_config` with ``layers``)
    init : ``"teacher"`` (:func:`init_from_teacher`) or ``"random"``
    loss : ``"align"`` (1 - token cosine, the NanoVDR recipe) or ``"infonce"`` (in-batch, τ 0.05);
        both add 0.1 × (1 - cosine) of the single-vector head to the teacher's mean token vector
    epochs, max_steps : passes over the texts; ``max_steps`` stops earlier (a fixed budget)
    train_embeddings : also train the token table (default: frozen at the teacher's SVD, so
        tokens the training text never shows keep their teacher embedding)
    held_out : share of the texts (at most 2,000) kept out of training to score alignment
    threads : torch threads (default: torch's, every core)
    checkpoint_seconds : checkpoint at least this often (and after every epoch)
    targets : precomputed :func:`teacher_targets` of ``texts`` (reused across experiments)
    overwrite : start over even if ``out`` or its work folder exists

    Resuming: work goes to ``out + ".partial"``; the same call after an interruption continues
    from its last checkpoint (other settings are refused: pass ``overwrite=True`` to restart).
    """
    import torch
    from tqdm.auto import tqdm

    from .encoders import load_encoder

    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {LOSSES}, got {loss!r}")
    if init not in ("teacher", "random"):
        raise UsageError(f"init must be 'teacher' or 'random', got {init!r}")
    if epochs < 1 or batch_size < 1:
        raise UsageError("epochs and batch size must be at least 1")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists: add --overwrite to replace it")
    if threads:
        torch.set_num_threads(int(threads))
    texts = list(texts)
    if isinstance(teacher, str):
        teacher = load_encoder(teacher)
    tokenizer, fmt = query_format_of(teacher)
    check_alignment(teacher, tokenizer, fmt, texts[:16])
    if config is None:
        config = default_config(teacher, tokenizer, layers=layers)
    work = out.rstrip(os.sep) + ".partial"
    settings = {"teacher": teacher.name, "config": asdict(config), "init": init, "init_layers": init_layers,
                "loss": loss, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
                "train_embeddings": train_embeddings, "held_out": held_out, "seed": seed,
                "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    key = _settings_hash(settings)
    if overwrite:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    settings_path = os.path.join(work, "settings.json")
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            old = json.load(f)
        if old.get("key") != key:
            raise UsageError(f"{work} holds an interrupted distillation with other settings or texts: run it again "
                             "with the same ones to resume, or add --overwrite to start over")
    else:
        with open(settings_path, "w") as f:
            json.dump({"key": key, **settings}, f, indent=2, default=str)

    # teacher targets: computed once, kept in the work folder
    t0 = time.perf_counter()
    target_path = os.path.join(work, "targets.npz")
    if targets is None and os.path.exists(target_path):
        targets = TeacherTargets.load(target_path)
    if targets is None:
        log(f"teacher {teacher.name}: encoding {len(texts):,} training texts as queries")
        targets = teacher_targets(teacher, texts, progress=progress, tokenizer=tokenizer, fmt=fmt)
        targets.save(target_path)
    elif targets.texts != texts:
        raise InvalidInputError("the precomputed teacher targets are for other texts")
    teacher_seconds = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(targets))
    n_held = min(2000, max(1, int(round(len(targets) * held_out)))) if len(targets) > 1 and held_out > 0 else 0
    held, train = targets.subset(sorted(order[:n_held])), targets.subset(sorted(order[n_held:]))
    if len(train) == 0:
        raise InvalidInputError("no training text left after holding some out: give more text")

    torch.manual_seed(seed)
    model = StudentModel(config)
    chosen = init_from_teacher(model, teacher, layers=init_layers) if init == "teacher" else []
    model.cfg.init_layers = chosen
    teacher_params = n_parameters(teacher.model) if hasattr(teacher, "model") else None
    dev = torch.device(device) if device and device != "auto" else (
        torch.device("cuda") if device == "auto" and torch.cuda.is_available() else torch.device("cpu"))
    model.to(dev).train()
    model.tok.weight.requires_grad_(bool(train_embeddings))
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and not n.startswith("tok.")]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim < 2 or n.startswith("tok."))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = -(-len(train) // batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(total, 1))))))

    ckpt = os.path.join(work, "checkpoint.pt")
    step, scores, trained_seconds, resumed = 0, [], 0.0, 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, scores, trained_seconds = int(state["step"]), list(state["held_out"]), float(state["seconds"])
        resumed = step
        log(f"resuming {out} from step {step:,} of {total:,} (checkpoint in {work})")

    def save_checkpoint() -> None:
        tmp = ckpt + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "held_out": scores, "seconds": trained_seconds + (time.perf_counter() - start)}, tmp)
        os.replace(tmp, ckpt)

    pad = config.pad_id
    start = time.perf_counter()
    last_ckpt = start
    epoch = step // steps_per_epoch
    lengths = np.diff(train.offsets)
    while step < total:
        batches = _epoch_batches(lengths, batch_size, seed * 1000 + epoch + 1)
        first = step - epoch * steps_per_epoch
        n_steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
        bar = tqdm(range(first, n_steps), desc=f"epoch {epoch + 1}/{-(-total // steps_per_epoch)}", unit="step",
                   disable=not progress, initial=first, total=n_steps)
        for b in bar:
            rows = batches[b]
            ids, mask, tgt = _batch(train, rows, pad)
            value, align = _losses(model, ids.to(dev), mask.to(dev), tgt.to(dev), loss)
            opt.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if b % 10 == 0:
                bar.set_postfix(loss=f"{value.item():.4f}", align=f"{align.item():.3f}")
            if time.perf_counter() - last_ckpt >= checkpoint_seconds:
                save_checkpoint()
                last_ckpt = time.perf_counter()
        bar.close()
        epoch += 1
        if n_held:
            model.cpu()
            scores.append(held_out_alignment(model, held, pad))
            model.to(dev)
        save_checkpoint()
        last_ckpt = time.perf_counter()
        if n_held:
            log(f"epoch {epoch}: held-out alignment {scores[-1]:.4f} (mean token cosine to the teacher, "
                f"{n_held:,} texts)")
    seconds = trained_seconds + (time.perf_counter() - start)
    model.cpu().eval()
    report = DistillReport(out, n_parameters(model), teacher_params, len(train), n_held, int(train.offsets[-1]),
                           -(-total // steps_per_epoch), total, seconds, teacher_seconds, scores, loss, resumed)
    save_student(out, model, tokenizer, fmt, training={**{k: v for k, v in settings.items() if k != "config"},
                                                        **asdict(report)})
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report


# -- single-vector first stage ------------------------------------------------------------------

def page_means(index) -> tuple[list[str], np.ndarray]:
    """``(ids, (n_pages, dim) float32)``: one L2-normalised vector per page, the mean of its stored
    (normalised) token vectors: the page side of the student's single-vector head."""
    ids, rows = [], []
    for p in index.iter_pages():
        m = p.vectors.astype(np.float32).mean(axis=0)
        rows.append(m / max(float(np.linalg.norm(m)), 1e-12))
        ids.append(p.id)
    return ids, (np.stack(rows) if rows else np.zeros((0, index.dim), np.float32))
