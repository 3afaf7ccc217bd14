"""colprune: a multi-vector index with adaptive patch pruning for visual document retrieval.

>>> import colprune as cp
>>> pruner = cp.pruning.AdaptiveThreshold(k=-0.25)               # doctest: +SKIP
>>> with cp.Index.create("pages.h5", dim=128) as index:          # doctest: +SKIP
...     index.add(ids, embeddings, importance=importance, pruner=pruner)
>>> cp.Index.open("pages.h5").search(query, k=10)               # doctest: +SKIP
"""

from . import kernels, pruning
from ._version import __version__
from .errors import ColpruneError, DuplicateIdError, FormatError, InvalidInputError
from .index import Hit, Index, Page
from .pruning import PRUNERS, AdaptiveThreshold, NoPruning, PrunedPage, Pruner, Random, TopRatio

__all__ = [
    "__version__",
    "Index",
    "Page",
    "Hit",
    "kernels",
    "pruning",
    "PRUNERS",
    "Pruner",
    "PrunedPage",
    "AdaptiveThreshold",
    "TopRatio",
    "Random",
    "NoPruning",
    "ColpruneError",
    "InvalidInputError",
    "DuplicateIdError",
    "FormatError",
]
