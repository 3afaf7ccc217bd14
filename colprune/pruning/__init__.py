"""Patch pruning: decide per page which vectors to store.

A pruner is a small object with one public method, :meth:`Pruner.prune`, returning a
:class:`PrunedPage`. ``PRUNERS`` maps the names used by the CLI and stored in index files
to classes; :func:`make_pruner` builds one from a name and parameters.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import InvalidInputError
from .adaptive_ward import AdaptiveWard
from .base import PrunedPage, Pruner, check_page
from .coverage import AdaptiveCluster, AdaptiveSpread
from .entropy_top import EntropyTop
from .entropy_ward import EntropyWard
from .merging import GridPooling, HierarchicalPooling, KMeansPooling, Merger, PruneThenMerge, SequentialPooling
from .selectors import AdaptiveThreshold, GlobalThreshold, NoPruning, PivotDedup, Random, TopRatio

__all__ = [
    "PRUNERS",
    "Pruner",
    "PrunedPage",
    "AdaptiveThreshold",
    "TopRatio",
    "Random",
    "NoPruning",
    "GlobalThreshold",
    "PivotDedup",
    "Merger",
    "HierarchicalPooling",
    "SequentialPooling",
    "GridPooling",
    "KMeansPooling",
    "PruneThenMerge",
    "AdaptiveWard",
    "EntropyWard",
    "EntropyTop",
    "AdaptiveSpread",
    "AdaptiveCluster",
    "make_pruner",
    "check_page",
]

PRUNERS: dict[str, type[Pruner]] = {
    "none": NoPruning,
    "adaptive": AdaptiveThreshold,
    "ratio": TopRatio,
    "random": Random,
    "threshold": GlobalThreshold,
    "dedup": PivotDedup,
    "ward": HierarchicalPooling,
    "pool1d": SequentialPooling,
    "pool2d": GridPooling,
    "kmeans": KMeansPooling,
    "prune-merge": PruneThenMerge,
    "adaptive-ward": AdaptiveWard,
    "entropy-ward": EntropyWard,
    "entropy-top": EntropyTop,
    "adaptive-spread": AdaptiveSpread,
    "adaptive-cluster": AdaptiveCluster,
}


def make_pruner(spec: str | Mapping[str, Any] | Pruner | None, **params: Any) -> Pruner:
    """A pruner from a registry name and parameters, a ``{"name", "params"}`` config, or itself.

    ``None`` gives :class:`NoPruning`.
    """
    if spec is None:
        return NoPruning()
    if isinstance(spec, Pruner):
        return spec
    if isinstance(spec, Mapping):
        params = {**spec.get("params", {}), **params}
        spec = spec["name"]
    try:
        cls = PRUNERS[spec]
    except KeyError:
        raise InvalidInputError(f"unknown pruner {spec!r}; choose one of {sorted(PRUNERS)}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise InvalidInputError(f"bad parameters for pruner {spec!r}: {e}") from None
