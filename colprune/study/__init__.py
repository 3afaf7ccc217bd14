"""Storage-versus-quality studies: datasets, metrics, the sweep runner and its outputs."""

from .datasets import Dataset, load_beir, load_dataset, load_pdf_folder, load_vidore
from .metrics import bm25_rank, bootstrap_ci, hit_at, ndcg_at, recall_at
from .runner import (
    COLUMNS,
    DEFAULT_GRID,
    DEFAULT_METHOD,
    GRID_HELP,
    Variant,
    encode_dataset,
    expand_grid,
    paired_to,
    pareto_frontier,
    run_study,
)

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
    "encode_dataset",
    "expand_grid",
    "pareto_frontier",
    "paired_to",
    "Variant",
    "DEFAULT_GRID",
    "DEFAULT_METHOD",
    "COLUMNS",
    "GRID_HELP",
]
