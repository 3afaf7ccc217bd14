"""The rule that picks the recommended method from a study over several datasets (``--choose``).

Among the *attention-adaptive* methods (each page's attention decides how many vectors it keeps:
the pruners with a ``budget_param``), the one with the best **worst case** — the lowest retention
(nDCG@10 / the unpruned index's, per dataset) over every dataset and budget — among those that
meet every bar:

1. at every budget on every dataset, within the paired 95% interval of fixed-share Ward or above
   it (the upper end of the per-question difference to Ward's nDCG@10 is ≥ 0);
2. above random at every budget on every dataset (mean nDCG@10);
3. at 10% of the vectors (``floor_at``), ≥ 90% of the unpruned nDCG@10 on each dataset.

When none meets them, the rule says so and names the best measured method overall: the best worst
case over all methods, adaptive or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..pruning import PRUNERS
from .metrics import bootstrap_ci
from .report import budget_of

__all__ = ["RULE", "Verdict", "Choice", "choose", "by_method", "attention_adaptive", "choice_lines", "choice_markdown"]


#: The rule as ``colprune study --help`` gives it.
RULE = """among attention-adaptive methods (each page's attention decides how many vectors it
keeps: adaptive, adaptive-ward, adaptive-spread, adaptive-cluster, entropy-ward, entropy-top), the
one with the best worst-case retention (nDCG@10 / unpruned, per dataset) over every dataset and
budget, among those that at every budget on every dataset are within the paired 95% interval of
fixed-share Ward or above it and above random, and keep >= 90% of unpruned nDCG@10 at 10% of the
vectors on each dataset. When none does, the study says so and names the best measured method."""


def attention_adaptive(pruner: str) -> bool:
    """Whether the registry pruner ``pruner`` lets each page's attention decide its count."""
    return hasattr(PRUNERS.get(pruner), "budget_param")


def by_method(rows: list[dict[str, Any]], codec: str = "float16") -> dict[str, dict[float, dict[str, Any]]]:
    """``{method: {budget: row}}`` of a study's budgeted rows stored with ``codec``."""
    out: dict[str, dict[float, dict[str, Any]]] = {}
    for r in rows:
        b = budget_of(r["params"])
        if b is not None and r["codec"] == codec:
            out.setdefault(r["method"], {})[float(b)] = r
    return out


@dataclass
class Verdict:
    """One method judged by the rule: its worst retention and the bars it misses (empty: all met)."""

    method: str
    pruner: str
    adaptive: bool
    worst: float
    misses: list[str] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        return not self.misses


@dataclass
class Choice:
    """The rule's answer: the chosen method (None when no adaptive method meets every bar), the best
    measured method overall, and every method's :class:`Verdict`, best worst case first."""

    chosen: Verdict | None
    best: Verdict
    verdicts: list[Verdict]
    settings: dict[str, dict[float, Any]]


def _judge(method: str, studies: dict[str, dict[str, dict[float, dict]]], reference: str, baseline: str,
           floor: float, floor_at: float) -> Verdict:
    misses, worst, pruner = [], float("inf"), ""
    for ds, methods in studies.items():
        for b, r in sorted(methods[method].items(), reverse=True):
            pruner = r.get("pruner", pruner)
            worst = min(worst, r["retention"])
            ref, base = methods[reference].get(b), methods[baseline].get(b)
            if ref is None or base is None:
                misses.append(f"{ds} {b:g}: no {reference} or {baseline} row at this budget")
                continue
            diff = np.asarray(r["_per_query"]) - np.asarray(ref["_per_query"])
            lo, hi = bootstrap_ci(diff)
            if method != reference and hi < 0:
                misses.append(f"{ds} {b:g}: below {reference} ({diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}])")
            if method != baseline and r["ndcg@10"] <= base["ndcg@10"]:
                misses.append(f"{ds} {b:g}: not above {baseline} ({r['ndcg@10']:.3f} vs {base['ndcg@10']:.3f})")
            if abs(b - floor_at) < 1e-9 and r["retention"] < floor:
                misses.append(f"{ds} {b:g}: keeps {r['retention']:.0%} of unpruned (< {floor:.0%})")
        if not any(abs(b - floor_at) < 1e-9 for b in methods[method]):
            misses.append(f"{ds}: not measured at {floor_at:g}")
    return Verdict(method, pruner, attention_adaptive(pruner), worst, misses)


def choose(results: dict[str, list[dict[str, Any]]], *, codec: str = "float16", reference: str = "ward",
           baseline: str = "random", floor: float = 0.9, floor_at: float = 0.1) -> Choice:
    """Apply the rule (module docstring) to ``results`` (``{dataset: rows}`` of :func:`run_study`,
    rows with ``_per_query``). Methods are judged where every dataset has them; ``reference`` and
    ``baseline`` must be among them."""
    studies = {ds: by_method(rows, codec) for ds, rows in results.items()}
    common = set.intersection(*(set(m) for m in studies.values())) if studies else set()
    for need in (reference, baseline):
        if need not in common:
            raise InvalidInputError(f"--choose compares with {need!r}: add it to --methods (every dataset needs its rows)")
    verdicts = sorted((_judge(m, studies, reference, baseline, floor, floor_at) for m in common),
                      key=lambda v: (-v.worst, v.method))
    chosen = next((v for v in verdicts if v.adaptive and v.passes), None)
    settings = {v.method: {b: {ds: studies[ds][v.method][b].get("setting") for ds in studies}
                           for b in sorted(studies[next(iter(studies))][v.method], reverse=True)} for v in verdicts}
    return Choice(chosen, verdicts[0], verdicts, settings)


def _flags(setting: Any) -> str:
    """``--pruner NAME --k K --importance SIGNAL``: what ``colprune build`` takes for a study setting."""
    if setting is None:
        return ""
    parts = [f"--pruner {setting.pruner}"] + [f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}"
                                              for k, v in setting.params.items()]
    return " ".join(parts + ([f"--importance {setting.signal}"] if isinstance(setting.signal, str) else []))


def choice_lines(choice: Choice) -> list[str]:
    """What ``colprune study --choose`` prints: the verdict, then the chosen (or best) method's
    solved parameters and ``colprune build`` / ``prune`` flags per budget and dataset."""
    pick = choice.chosen or choice.best
    if choice.chosen is not None:
        out = [f"chosen: {pick.method} (pruner {pick.pruner}, attention-adaptive): worst retention {pick.worst:.1%} "
               "over every dataset and budget, and every bar met"]
    else:
        adaptive = [v for v in choice.verdicts if v.adaptive]
        out = ["no attention-adaptive method meets every bar"
               + (f" (closest: {adaptive[0].method}, worst retention {adaptive[0].worst:.1%}: "
                  f"{'; '.join(adaptive[0].misses[:3])})" if adaptive else ""),
               f"best measured method overall: {pick.method} (pruner {pick.pruner}), worst retention {pick.worst:.1%}"]
    for b, per in choice.settings[pick.method].items():
        for ds, s in per.items():
            if s is not None:
                out.append(f"  budget {b:g} on {ds} ({s.solved}): colprune build DOCS -o pages.h5 {_flags(s)}")
                out.append(f"      {s.command}")
    return out


def choice_markdown(choice: Choice) -> str:
    """The ``results.md`` section: every method's worst retention and the bars it misses, then the choice."""
    out = ["\n## The rule's choice (`--choose`)\n\n",
           "Among attention-adaptive methods, the best worst-case retention over every dataset and budget, among "
           "those within the paired interval of Ward or above it and above random at every budget on every dataset, "
           "and ≥ 90% of unpruned nDCG@10 at 10% on each dataset.\n\n",
           "| method | pruner | adaptive | worst retention | bars missed |\n|---|---|---|---|---|\n"]
    for v in choice.verdicts:
        missed = "; ".join(v.misses) if v.misses else "none"
        out.append(f"| {v.method} | {v.pruner} | {'yes' if v.adaptive else 'no'} | {v.worst:.1%} | {missed} |\n")
    out.append("\n```\n" + "\n".join(choice_lines(choice)) + "\n```\n")
    return "".join(out)
