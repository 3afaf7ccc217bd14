"""Storage-versus-quality studies: datasets, metrics, the sweep runner and its outputs.

Modules by verb: :mod:`~colprune.study.datasets` (load), :mod:`~colprune.study.grid` (what to
derive), :mod:`~colprune.study.encode` (the full index and the queries, once),
:mod:`~colprune.study.budgets` (derive each variant at an exact budget, cached),
:mod:`~colprune.study.evaluate` (score), :mod:`~colprune.study.report` (rows and files), and
:mod:`~colprune.study.runner` (:func:`run_study`, which runs them in that order);
:mod:`~colprune.study.multi` (:func:`run_studies`: several datasets, pooled paired differences)
and :mod:`~colprune.study.choose` (the rule that picks the recommended method).
"""

from .choose import Choice, choose
from .datasets import Dataset, load_beir, load_dataset, load_pdf_folder, load_vidore
from .encode import encode_dataset
from .grid import DEFAULT_GRID, DEFAULT_METHOD, GRID_HELP, Variant, expand_grid
from .metrics import bm25_rank, bootstrap_ci, hit_at, ndcg_at, recall_at
from .multi import pooled, run_studies
from .report import COLUMNS, paired_to, pareto_frontier
from .runner import run_study
from .settings import Setting, prune_command

__all__ = [
    "Dataset",
    "load_beir",
    "load_vidore",
    "load_dataset",
    "ndcg_at",
    "recall_at",
    "hit_at",
    "bm25_rank",
    "load_pdf_folder",
    "bootstrap_ci",
    "run_study",
    "run_studies",
    "pooled",
    "choose",
    "Choice",
    "encode_dataset",
    "expand_grid",
    "pareto_frontier",
    "paired_to",
    "Variant",
    "DEFAULT_GRID",
    "DEFAULT_METHOD",
    "COLUMNS",
    "GRID_HELP",
    "Setting",
    "prune_command",
]
