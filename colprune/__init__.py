"""colprune: a multi-vector index with adaptive patch pruning for visual document retrieval.

>>> import colprune as cp
>>> pruner = cp.pruning.AdaptiveThreshold(k=-0.25)               # doctest: +SKIP
>>> with cp.Index.create("pages.h5", dim=128) as index:          # doctest: +SKIP
...     index.add(ids, embeddings, importance=importance, pruner=pruner)
>>> hits = cp.Index.open("pages.h5").search(query, k=10)        # doctest: +SKIP
>>> hits[0].text(), hits[0].image()                              # doctest: +SKIP

``import colprune`` loads only the version, the exceptions and the page reader's registration;
the store, the kernels (Numba) and the pruners load on first use of a name that needs them
(``cp.Index``, ``from colprune import Index``), so ``colprune --version`` and scripts that only
name the exceptions start fast.
"""

import importlib
from typing import TYPE_CHECKING, Any

from . import content  # noqa: F401 - registers Hit.text()/Hit.image()'s page reader; loads no PDF or image library
from ._version import __version__
from .errors import ColpruneError, DuplicateIdError, FormatError, InvalidInputError

if TYPE_CHECKING:
    from . import kernels, pruning
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

#: where each lazily loaded name of :data:`__all__` lives
_LAZY = {**dict.fromkeys(("Index", "Page", "Hit"), "index"),
         **dict.fromkeys(("PRUNERS", "Pruner", "PrunedPage", "AdaptiveThreshold", "TopRatio", "Random", "NoPruning"),
                         "pruning"),
         "pruning": None, "kernels": None, "index": None}  # colprune.index: as reachable as before, not in __all__


def __getattr__(name: str) -> Any:
    """The names of :data:`__all__` that need the store, the kernels or the pruners, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'colprune' has no attribute {name!r}")
    # import_module, not "from . import x": that would ask this very function for x first
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
