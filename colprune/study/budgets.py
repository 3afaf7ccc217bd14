"""Each variant derived from the full index at an exact collection budget, cached on disk.

A budget is a share of the collection's vectors; the per-page share (or the attention pruners'
parameter) is solved by bisection so that every method keeps the same number of vectors, the
special rows every page keeps included. Derived indexes live in the study's ``variants/``
folder under the variant's configuration (:attr:`Variant.slug`) and codec, and are re-used
while their pruner record matches.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError
from ..index import Index
from ..pruning import PRUNERS, make_pruner
from .grid import Variant

__all__ = ["Collection", "budget_ratio", "budget_count", "solved_name", "solve", "derive"]


def _bisect(kept, budget: float, lo: float, hi: float, falling: bool) -> float:
    """The parameter in [lo, hi] at which ``kept(x)`` (monotone) crosses ``budget``."""
    for _ in range(50):
        mid = (lo + hi) / 2
        if (kept(mid) > budget) == falling:
            lo = mid
        else:
            hi = mid
    return hi if falling else lo


class Collection:
    """What budget solving needs from the full index, read once: per page the patch count,
    the special-row count and each signal over the patches."""

    def __init__(self, full: Index) -> None:
        self.patches, self.special, self.signals = [], [], {k: [] for k in full.signal_names}
        for p in full.iter_pages():
            self.patches.append(int(p.patch_mask.sum()))
            self.special.append(int((~p.patch_mask).sum()))
            for k in full.signal_names:
                self.signals[k].append(p.signals[k][p.patch_mask].astype(np.float64))
        self.patches = np.array(self.patches)
        self.total = int(self.patches.sum() + sum(self.special))


def budget_ratio(col: Collection, budget: float) -> float:
    """The per-page patch share at which the collection keeps ``budget`` of its vectors,
    counting the special rows every page keeps (so all methods compare at equal storage)."""
    patches, total, fixed = col.patches, col.total, sum(col.special)

    def kept(r: float) -> float:
        return (fixed + np.maximum(1, np.minimum(patches, np.floor(r * patches + 0.5))).sum()) / total

    return round(min(1.0, max(_bisect(kept, budget, 1e-6, 1.0, falling=False), 1e-6)), 6)


def budget_count(col: Collection, v: Variant, budget: float) -> float:
    """For pruners whose per-page count comes from the page's attention (``budget_param``,
    ``n_keep``): the parameter at which the collection keeps ``budget`` of its vectors."""
    cls = PRUNERS[v.pruner]
    signal = v.signal or "cls"
    if not isinstance(signal, str):
        raise InvalidInputError(f"{v.pruner}: budget mode takes one signal, not a blend ({signal})")
    sigs = col.signals[signal]
    fixed = sum(col.special)

    def kept(x: float) -> float:
        pr = make_pruner(v.pruner, **{**v.params, cls.budget_param: x})
        return (fixed + sum(pr.n_keep(s) for s in sigs if s.size)) / col.total

    if cls.budget_rising:
        lo, hi = 1e-6, 1.0
        while kept(hi) < budget and hi < 1e6:
            lo, hi = hi, hi * 2
        return round(_bisect(kept, budget, lo, hi, falling=False), 6)
    return round(_bisect(kept, budget, -10.0, 10.0, falling=True), 4)


def solved_name(v: Variant) -> str | None:
    """The parameter solving ``v.budget`` sets: the attention pruners' ``budget_param`` (``k``,
    ``scale``), ``ratio`` for the share-based ones; None for a variant without a budget."""
    if v.budget is None:
        return None
    if hasattr(PRUNERS[v.pruner], "budget_param"):  # the page's attention sets its count
        return PRUNERS[v.pruner].budget_param
    if "ratio" in make_pruner(v.pruner).params():  # share-based: ratio, random and the mergers
        return "ratio"
    raise InvalidInputError(f"budget mode does not apply to pruner {v.pruner!r}")


def solve(col: Collection, v: Variant) -> dict:
    """The pruner parameters of ``v``: its own, with the budget's parameter solved
    (:func:`solved_name`) so that the collection ``col`` keeps ``v.budget`` of its vectors."""
    params = dict(v.params)
    name = solved_name(v)
    if name == "ratio":
        params["ratio"] = budget_ratio(col, v.budget)
    elif name is not None:
        params[name] = budget_count(col, v, v.budget)
    return params


def derive(full: Index, col: Collection, v: Variant, folder: str, codec: str, params: dict | None = None) -> Index:
    """The variant ``v`` of ``full`` stored with ``codec``, open: from ``folder`` when cached, else
    derived (pruned once as float16, then only re-encoded for another codec). ``col`` is
    :class:`Collection` of ``full``, for solving ``v.budget``; ``params``: :func:`solve`'s answer
    when the caller has it already."""
    params = solve(col, v) if params is None else params
    pruner = make_pruner(v.pruner, **params)
    path = os.path.join(folder, f"{v.slug}_{codec}.h5")
    want = pruner.config() | ({"signal": v.signal} if v.signal else {})
    if codec != "float16":  # prune once (float16), then only re-encode
        with derive(full, col, v, folder, "float16", params) as base:
            return _cached(path, want, len(full), codec) or _reencode(base, path, codec)
    return _cached(path, want, len(full), codec) or full.derive(
        path, pruner, dtype=codec, overwrite=True, signal=v.signal, rerank=False)


def _reencode(base: Index, path: str, codec: str) -> Index:
    # binary is judged as stored: Hamming MaxSim, no float16 rerank copy
    out = base.derive(path, "none", dtype=codec, overwrite=True, rerank=False)
    out.close()  # its pruner record is "none", derived_from what the vectors went through
    return Index.open(path)


def _cached(path: str, want: dict, n_docs: int, codec: str) -> Index | None:
    if os.path.exists(path):
        try:
            ix = Index.open(path)
            cfg = ix.pruner_config or {}
            if want in (cfg, cfg.get("derived_from")) and len(ix) == n_docs and ix.codec == codec:
                return ix
            ix.close()
        except (InvalidInputError, OSError):
            pass
    return None
