"""The study's grid: which pruned variants to derive (:func:`expand_grid`), and the built-in one.

The grid format is :data:`GRID_HELP` (also in ``colprune study --help``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..errors import InvalidInputError

__all__ = ["GRID_HELP", "DEFAULT_METHOD", "DEFAULT_GRID", "Variant", "expand_grid", "signal_names", "for_signals"]

GRID_HELP = """Grid file (JSON): shares of vectors to keep, codecs to evaluate, and methods:

  {"budgets": [0.5, 0.25, 0.1],
   "codecs": ["float16", "int8"],
   "methods": [
     {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "params": {"k": [-0.5, 0, 0.5]}},
     {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "budget": true},
     {"name": "indegree-mid", "pruner": "ratio", "signal": "indegree_mid", "budget": true},
     {"name": "random", "pruner": "random", "budget": true, "params": {"seed": 0}}]}

"pruner" is a registry name (colprune.PRUNERS); "params" are its parameters, and a list runs
one variant per value (lists of several parameters: every combination). With "budget": true a
method runs once per budget instead: ratio/random keep that share of each page, adaptive
searches k so the collection keeps that share overall. "signal" names the importance signal
to rank by (text encoder: cls, indegree, indegree_mid, norm, global_sim; image encoders: eos,
indegree, indegree_mid, global_sim), or a blend {"cls": 0.5, "global_sim": 0.5}: the weighted sum
of the signals, each min-max normalised per page (alpha*attention + (1-alpha)*similarity to the
global token). Mergers (ward, kmeans, pool1d, pool2d) take a budget like ratio does. The
unpruned index is always a row (method "none"); the built-in grid has DocPruner at several k
and at each budget, every signal at each budget, random, three mergers, the attention-count
methods (adaptive-ward, entropy-ward, entropy-top; adaptive-spread and adaptive-cluster keep
DocPruner's count of exact tokens spread over the page), and "default" (the recommended
method). Budgets are exact across the collection: the per-page share (or k) is solved so that
all methods keep the same number of vectors, special rows included."""

#: The method colprune recommends (docs/study-financebench.md, issue 23): DocPruner's per-page
#: count (the tokens whose received attention, ``indegree``, exceeds mean + k*std of their own page,
#: k solved for the collection budget), kept as one exact token per Ward cluster of the page, the
#: cluster's most attended (``adaptive-cluster``). The rule of ``colprune study --choose`` over
#: financebench-dev + financebench-more + MS MARCO-5k at 50/25/10/5% found no attention-adaptive
#: method that meets every bar; this is the best measured method (worst-case retention 88%: 100/95/
#: 106/116% on financebench-dev, 88% at 10% on financebench-more, 97% at 10% on MS MARCO), where
#: DocPruner's own selection fell to 75% at 5% and fixed-share Ward to 74%.
DEFAULT_METHOD = {"name": "default", "pruner": "adaptive-cluster", "signal": "indegree", "budget": True}

DEFAULT_GRID: dict[str, Any] = {
    "budgets": [0.5, 0.25, 0.1],
    "codecs": ["float16", "int8"],
    "methods": [
        {"name": "docpruner-k", "pruner": "adaptive", "signal": "cls", "params": {"k": [-0.5, -0.25, 0.0, 0.5, 1.0]}},
        {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "budget": True},
        {"name": "docpruner-indegree", "pruner": "adaptive", "signal": "indegree", "budget": True},
        {"name": "cls-attention", "pruner": "ratio", "signal": "cls", "budget": True},
        {"name": "indegree", "pruner": "ratio", "signal": "indegree", "budget": True},
        {"name": "indegree-mid", "pruner": "ratio", "signal": "indegree_mid", "budget": True},
        {"name": "norm", "pruner": "ratio", "signal": "norm", "budget": True},
        {"name": "attn+sim", "pruner": "ratio", "signal": {"cls": 0.5, "global_sim": 0.5}, "budget": True},
        {"name": "random", "pruner": "random", "budget": True, "params": {"seed": 0}},
        {"name": "ward", "pruner": "ward", "budget": True},
        {"name": "kmeans", "pruner": "kmeans", "budget": True},
        {"name": "pool1d", "pruner": "pool1d", "budget": True},
        {"name": "adaptive-ward", "pruner": "adaptive-ward", "signal": "cls", "budget": True},
        {"name": "entropy-ward", "pruner": "entropy-ward", "signal": "cls", "budget": True},
        {"name": "entropy-top", "pruner": "entropy-top", "signal": "cls", "budget": True},
        {"name": "adaptive-ward-indegree", "pruner": "adaptive-ward", "signal": "indegree", "budget": True},
        {"name": "adaptive-spread", "pruner": "adaptive-spread", "signal": "indegree", "budget": True},
        {"name": "adaptive-cluster", "pruner": "adaptive-cluster", "signal": "indegree", "budget": True},
        DEFAULT_METHOD,
    ],
}

@dataclass(frozen=True)
class Variant:
    """One pruned index to derive: a registry pruner, its parameters, the signal it ranks by."""

    method: str
    pruner: str
    params: dict = field(default_factory=dict)
    signal: str | dict | None = None
    budget: float | None = None

    @property
    def slug(self) -> str:
        """File name of the derived index: the configuration, not the method's name, so two
        methods that prune alike share one file."""
        parts = [self.pruner] + [f"{k}{v}" for k, v in sorted(self.params.items())]
        parts += [f"sig-{_sig_text(self.signal, '+')}"] if self.signal else []
        parts += [f"budget{self.budget}"] if self.budget is not None else []
        return "_".join(str(p) for p in parts).replace("/", "-")

    @property
    def label(self) -> str:
        bits = [f"{k}={v}" for k, v in sorted(self.params.items())]
        bits += [f"signal={_sig_text(self.signal, ' + ')}"] if self.signal else []
        bits += [f"budget={self.budget}"] if self.budget is not None else []
        return " ".join(bits)


def _sig_text(signal: str | dict, sep: str) -> str:
    return signal if isinstance(signal, str) else sep.join(f"{w:g}{k}" for k, w in signal.items())


def signal_names(signal: str | dict | None) -> list[str]:
    """The signal names a variant ranks by: none, one, or those of a blend."""
    return [] if not signal else [signal] if isinstance(signal, str) else list(signal)


def expand_grid(grid: dict, *, budgets: Sequence[float] | None = None, methods: Sequence[str] | None = None) -> list[Variant]:
    """Variants of a grid (:data:`GRID_HELP`); ``methods`` keeps only those names."""
    budgets = list(budgets if budgets is not None else grid.get("budgets", DEFAULT_GRID["budgets"]))
    for b in budgets:
        if not 0 < b <= 1:
            raise InvalidInputError(f"budgets must be in (0, 1], got {b}")
    specs = list(grid.get("methods", []))
    if methods:
        if "default" in methods and not any(m["name"] == "default" for m in specs):
            specs.append(DEFAULT_METHOD)
        unknown = set(methods) - {m["name"] for m in specs}
        if unknown:
            raise InvalidInputError(f"unknown methods {sorted(unknown)}; the grid has {sorted({m['name'] for m in specs})}")
        specs = [m for m in specs if m["name"] in methods]
    out: list[Variant] = []
    for m in specs:
        if "name" not in m or "pruner" not in m:
            raise InvalidInputError(f"grid method needs 'name' and 'pruner': {m}")
        params = m.get("params", {})
        keys = sorted(params)
        values = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*values)] or [{}]
        for combo in combos:
            if m.get("budget"):
                out += [Variant(m["name"], m["pruner"], combo, m.get("signal"), float(b)) for b in budgets]
            else:
                out.append(Variant(m["name"], m["pruner"], combo, m.get("signal")))
    return out


#: The global-token signal is "cls" for text encoders and "eos" for image encoders: either name
#: means the other when the index has only that one.
_GLOBAL_ALIAS = {"cls": "eos", "eos": "cls"}


def for_signals(variants: Iterable[Variant], have: Iterable[str],
                log: Callable[[str], None] = print) -> list[Variant]:
    """The variants an index with the signals ``have`` can derive: ``cls``/``eos`` resolved to the
    one it has, and variants on signals it lacks left out (with a line to ``log``)."""
    have = set(have)

    def resolve(sig: Any) -> Any:
        if isinstance(sig, dict):
            return {resolve(k): w for k, w in sig.items()}
        return sig if sig in have or _GLOBAL_ALIAS.get(sig) not in have else _GLOBAL_ALIAS[sig]

    out = [Variant(v.method, v.pruner, v.params, resolve(v.signal), v.budget) if v.signal else v for v in variants]
    skipped = sorted({n for v in out for n in signal_names(v.signal) if n not in have})
    if skipped:
        log(f"skipping methods on signals this encoder does not give: {skipped} (it has {sorted(have)})")
        out = [v for v in out if all(n in have for n in signal_names(v.signal))]
    return out
