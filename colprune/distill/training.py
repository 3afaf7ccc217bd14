"""Training a student query encoder: :func:`distill` and what it reports (:class:`DistillReport`).

``loss="align"`` (the NanoVDR recipe, multi-vector): the student reproduces every one of the
teacher's query token vectors (1 - cosine). ``loss="infonce"``: an in-batch contrastive loss
over the token vectors instead (each student token must pick its teacher token among every
token of the batch, temperature 0.05). Both add 0.1 × (1 - cosine) of the single-vector head
to the teacher's mean token vector. Work in progress (settings, teacher targets, checkpoints)
lives in ``OUT.partial/``; the same call after an interruption resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..encoders.base import Encoder
from ..encoders.student import StudentConfig, StudentModel, check_alignment, n_parameters, query_format_of, save_student
from ..errors import InvalidInputError, UsageError
from .initialisation import default_config, init_from_teacher
from .targets import TeacherTargets, teacher_targets

__all__ = ["LOSSES", "DistillReport", "distill", "held_out_alignment"]

LOSSES = ("align", "infonce")


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



def _check_options(loss: str, init: str, epochs: int, batch_size: int) -> None:
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {LOSSES}, got {loss!r}")
    if init not in ("teacher", "random"):
        raise UsageError(f"init must be 'teacher' or 'random', got {init!r}")
    if epochs < 1 or batch_size < 1:
        raise UsageError("epochs and batch size must be at least 1")


def _work_folder(out: str, settings: dict, overwrite: bool) -> str:
    """``out + ".partial"``, made (afresh with ``overwrite``) and holding ``settings``; refused when it
    holds an interrupted run of other settings."""
    work = out.rstrip(os.sep) + ".partial"
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
    return work


def _kept_targets(work: str, teacher: Encoder, texts: list[str], targets: TeacherTargets | None, tokenizer, fmt,
                  progress: bool, log: Callable[[str], None]) -> TeacherTargets:
    """The teacher targets of ``texts``: given, kept in the work folder, or computed once and kept there."""
    target_path = os.path.join(work, "targets.npz")
    if targets is None and os.path.exists(target_path):
        targets = TeacherTargets.load(target_path)
    if targets is None:
        log(f"teacher {teacher.name}: encoding {len(texts):,} training texts as queries")
        targets = teacher_targets(teacher, texts, progress=progress, tokenizer=tokenizer, fmt=fmt)
        targets.save(target_path)
    elif targets.texts != texts:
        raise InvalidInputError("the precomputed teacher targets are for other texts")
    return targets


def _hold_out(targets: TeacherTargets, held_out: float, seed: int) -> tuple[TeacherTargets, TeacherTargets]:
    """``(held, train)``: a ``held_out`` share of the texts (at most 2,000), drawn by ``seed``, and the rest."""
    order = np.random.default_rng(seed).permutation(len(targets))
    n_held = min(2000, max(1, int(round(len(targets) * held_out)))) if len(targets) > 1 and held_out > 0 else 0
    held, train = targets.subset(sorted(order[:n_held])), targets.subset(sorted(order[n_held:]))
    if len(train) == 0:
        raise InvalidInputError("no training text left after holding some out: give more text")
    return held, train


def _device(device: str | None):
    import torch

    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda") if device == "auto" and torch.cuda.is_available() else torch.device("cpu")


class _Trainer:
    """A student in training: its optimiser, learning-rate schedule, step count, held-out scores
    and checkpoint file (saved every epoch and every ``checkpoint_seconds``)."""

    def __init__(self, model, train: TeacherTargets, ckpt: str, *, device, lr: float, train_embeddings: bool,
                 batch_size: int, epochs: int, max_steps: int | None) -> None:
        import torch

        self.model, self.train, self.ckpt, self.dev, self.batch_size = model, train, ckpt, device, batch_size
        model.to(device).train()
        model.tok.weight.requires_grad_(bool(train_embeddings))
        named = list(model.named_parameters())
        decay = [p for n, p in named if p.requires_grad and p.ndim >= 2 and not n.startswith("tok.")]
        no_decay = [p for n, p in named if p.requires_grad and (p.ndim < 2 or n.startswith("tok."))]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                     lr=lr)
        self.steps_per_epoch = -(-len(train) // batch_size)
        total = self.steps_per_epoch * epochs if max_steps is None else min(max_steps, self.steps_per_epoch * epochs)
        warm = max(1, total // 20)
        self.sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to 0
            self.opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(total, 1))))))
        self.total, self.step, self.scores, self.resumed = total, 0, [], 0
        self.seconds_before, self.start = 0.0, time.perf_counter()

    @property
    def epochs(self) -> int:
        return -(-self.total // self.steps_per_epoch)

    def seconds(self) -> float:
        """Training time so far, over every run that got here."""
        return self.seconds_before + (time.perf_counter() - self.start)

    def resume(self) -> bool:
        """Load the checkpoint when there is one; returns whether there was."""
        import torch

        if not os.path.exists(self.ckpt):
            return False
        state = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.scores, self.seconds_before = int(state["step"]), list(state["held_out"]), float(state["seconds"])
        self.resumed = self.step
        return True

    def save(self) -> None:
        import torch

        tmp = self.ckpt + ".tmp"
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict(), "step": self.step, "held_out": self.scores,
                    "seconds": self.seconds()}, tmp)
        os.replace(tmp, self.ckpt)

    def run(self, held: TeacherTargets, *, loss: str, seed: int, pad: int, checkpoint_seconds: float, progress: bool,
            log: Callable[[str], None]) -> None:
        """Train from the current step to the last, scoring ``held`` and checkpointing after every epoch."""
        from tqdm.auto import tqdm

        self.start = last = time.perf_counter()
        spe = self.steps_per_epoch
        epoch = self.step // spe
        lengths = np.diff(self.train.offsets)
        while self.step < self.total:
            batches = _epoch_batches(lengths, self.batch_size, seed * 1000 + epoch + 1)
            first = self.step - epoch * spe
            n_steps = min(spe, self.total - epoch * spe)
            bar = tqdm(range(first, n_steps), desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                       disable=not progress, initial=first, total=n_steps)
            for b in bar:
                value, align = self._step(batches[b], pad, loss)
                if b % 10 == 0:
                    bar.set_postfix(loss=f"{value.item():.4f}", align=f"{align.item():.3f}")
                if time.perf_counter() - last >= checkpoint_seconds:
                    self.save()
                    last = time.perf_counter()
            bar.close()
            epoch += 1
            if len(held):
                self.model.cpu()
                self.scores.append(held_out_alignment(self.model, held, pad))
                self.model.to(self.dev)
            self.save()
            last = time.perf_counter()
            if len(held):
                log(f"epoch {epoch}: held-out alignment {self.scores[-1]:.4f} (mean token cosine to the teacher, "
                    f"{len(held):,} texts)")

    def _step(self, rows: list[int], pad: int, loss: str):
        import torch

        ids, mask, tgt = _batch(self.train, rows, pad)
        value, align = _losses(self.model, ids.to(self.dev), mask.to(self.dev), tgt.to(self.dev), loss)
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return value, align


# long: one parameter per training option, and the documented API's docstring
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

    from ..encoders import load_encoder

    _check_options(loss, init, epochs, batch_size)
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
    settings = {"teacher": teacher.name, "config": asdict(config), "init": init, "init_layers": init_layers,
                "loss": loss, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
                "train_embeddings": train_embeddings, "held_out": held_out, "seed": seed,
                "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    work = _work_folder(out, settings, overwrite)
    t0 = time.perf_counter()
    targets = _kept_targets(work, teacher, texts, targets, tokenizer, fmt, progress, log)
    teacher_seconds = time.perf_counter() - t0
    held, train = _hold_out(targets, held_out, seed)

    torch.manual_seed(seed)
    model = StudentModel(config)
    model.cfg.init_layers = init_from_teacher(model, teacher, layers=init_layers) if init == "teacher" else []
    teacher_params = n_parameters(teacher.model) if hasattr(teacher, "model") else None
    run = _Trainer(model, train, os.path.join(work, "checkpoint.pt"), device=_device(device), lr=lr,
                   train_embeddings=train_embeddings, batch_size=batch_size, epochs=epochs, max_steps=max_steps)
    if run.resume():
        log(f"resuming {out} from step {run.step:,} of {run.total:,} (checkpoint in {work})")
    run.run(held, loss=loss, seed=seed, pad=config.pad_id, checkpoint_seconds=checkpoint_seconds, progress=progress,
            log=log)
    seconds = run.seconds()
    model.cpu().eval()
    report = DistillReport(out, n_parameters(model), teacher_params, len(train), len(held), int(train.offsets[-1]),
                           run.epochs, run.total, seconds, teacher_seconds, run.scores, loss, run.resumed)
    save_student(out, model, tokenizer, fmt, training={**{k: v for k, v in settings.items() if k != "config"},
                                                        **asdict(report)})
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report
