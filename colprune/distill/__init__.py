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

Modules by verb: :mod:`~colprune.distill.texts` (training text), :mod:`~colprune.distill.targets`
(the teacher's vectors), :mod:`~colprune.distill.initialisation` (the student's sizes and
starting weights), :mod:`~colprune.distill.training` (:func:`distill`). :func:`page_means` (one
vector per page, the page side of the student's single-vector head) is the study's
(:func:`colprune.study.evaluate.page_means`).
"""

from ..study.evaluate import page_means
from .initialisation import default_config, init_from_teacher
from .targets import TeacherTargets, teacher_targets
from .texts import cut_sentences, read_texts, training_texts
from .training import LOSSES, DistillReport, distill

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
