"""One study over several datasets: each in its own folder, then the pooled paired differences
and, with ``choose``, the rule's pick (:mod:`~colprune.study.choose`).

Each dataset runs :func:`~colprune.study.runner.run_study` in ``out/NAME`` (NAME: the dataset
folder's name), with its own cache, results and settings. ``out/results.md`` then holds, per
method and budget: each dataset's nDCG@10 and retention, and the per-question differences pooled
over every dataset's questions — to the unpruned index and to fixed-share Ward at the same budget
— with 95% bootstrap intervals (``out/pooled.csv`` has the same figures).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError
from .choose import Choice, by_method, choice_lines, choice_markdown, choose
from .metrics import bootstrap_ci
from .runner import run_study

__all__ = ["run_studies", "dataset_names", "pooled", "pooled_markdown"]


def dataset_names(datasets: Sequence[str]) -> list[str]:
    """A folder name per dataset (its last path part; ``-2``, ``-3``... when two share one)."""
    names: list[str] = []
    for d in datasets:
        base = os.path.basename(os.path.normpath(d)) or "dataset"
        name, i = base, 1
        while name in names:
            i += 1
            name = f"{base}-{i}"
        names.append(name)
    return names


def _pooled_diff(results: dict[str, list[dict]], method: str, budget: float, against: str | None,
                 codec: str) -> np.ndarray | None:
    """Per-question nDCG@10 differences of ``method`` at ``budget`` to ``against`` at the same budget
    (None: to the unpruned index), every dataset's questions together; None when a dataset lacks a row."""
    parts = []
    for rows in results.values():
        table = by_method(rows, codec)
        mine = table.get(method, {}).get(budget)
        ref = next((r for r in rows if r["method"] == "none"), None) if against is None else \
            table.get(against, {}).get(budget)
        if mine is None or ref is None:
            return None
        parts.append(np.asarray(mine["_per_query"]) - np.asarray(ref["_per_query"]))
    return np.concatenate(parts)


def pooled(results: dict[str, list[dict]], *, reference: str = "ward", codec: str = "float16") -> list[dict[str, Any]]:
    """Per method and budget present in every dataset: each dataset's nDCG@10 and retention, and the
    pooled paired differences (mean, 95% bootstrap interval) to the unpruned index and to ``reference``."""
    tables = {ds: by_method(rows, codec) for ds, rows in results.items()}
    methods = [m for m in tables[next(iter(tables))] if all(m in t for t in tables.values())]
    out = []
    for m in methods:
        for b in sorted(tables[next(iter(tables))][m], reverse=True):
            if not all(b in t[m] for t in tables.values()):
                continue
            rec: dict[str, Any] = {"method": m, "budget": b, "codec": codec}
            for ds, t in tables.items():
                rec[f"{ds} ndcg@10"], rec[f"{ds} retention"] = t[m][b]["ndcg@10"], t[m][b]["retention"]
            rec["worst retention"] = min(t[m][b]["retention"] for t in tables.values())
            for tag, against in (("unpruned", None), (reference, reference)):
                diff = _pooled_diff(results, m, b, against, codec)
                if diff is not None:
                    lo, hi = bootstrap_ci(diff)
                    rec |= {f"Δ {tag}": round(float(diff.mean()), 4), f"Δ {tag} lo": round(lo, 4),
                            f"Δ {tag} hi": round(hi, 4), "questions": int(diff.size)}
            out.append(rec)
    return out


def pooled_markdown(results: dict[str, list[dict]], table: list[dict[str, Any]], reference: str, encoder: str) -> str:
    """``out/results.md`` of a multi-dataset study: the unpruned row per dataset, then one row per
    method and budget with each dataset's nDCG@10 (retention) and the pooled paired differences."""
    names = list(results)
    base = {ds: next(r for r in rows if r["method"] == "none") for ds, rows in results.items()}
    n = sum(len(b["_per_query"]) for b in base.values())
    out = [f"# Study over {len(names)} datasets, encoder {encoder}, {n} judged questions\n\n",
           "Per dataset: nDCG@10 (retention = nDCG@10 / that dataset's unpruned index). Pooled Δ: the per-question "
           f"difference of nDCG@10, every dataset's questions together, to the unpruned index and to {reference} at "
           "the same budget: mean and 95% bootstrap interval. Each dataset's own table, paired intervals and "
           "`colprune prune` lines are in its folder's results.md.\n\n",
           "| dataset | questions | unpruned nDCG@10 [95% CI] |\n|---|---|---|\n"]
    out += [f"| {ds} | {len(b['_per_query'])} | {b['ndcg@10']:.3f} [{b['ndcg@10_lo']:.3f}, {b['ndcg@10_hi']:.3f}] |\n"
            for ds, b in base.items()]
    out.append("\n| method | budget | " + " | ".join(names) + " | worst retention | pooled Δ unpruned [95% CI] | "
               f"pooled Δ {reference} [95% CI] |\n|" + "---|" * (len(names) + 5) + "\n")
    for r in table:
        cells = [f"{r[f'{ds} ndcg@10']:.3f} ({r[f'{ds} retention']:.0%})" for ds in names]
        deltas = [f"{r[f'Δ {t}']:+.3f} [{r[f'Δ {t} lo']:+.3f}, {r[f'Δ {t} hi']:+.3f}]" if f"Δ {t}" in r else "-"
                  for t in ("unpruned", reference)]
        out.append(f"| {r['method']} | {r['budget']:g} | " + " | ".join(cells)
                   + f" | {r['worst retention']:.0%} | " + " | ".join(deltas) + " |\n")
    return "".join(out)


def _write_pooled_csv(table: list[dict[str, Any]], path: str) -> None:
    fields = list(dict.fromkeys(k for r in table for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(table)


def run_studies(datasets: Sequence[str], encoder: str, out: str, *, choose_method: bool = False,
                reference: str = "ward", log: Callable[[str], None] = print, **kw: Any
                ) -> tuple[dict[str, list[dict[str, Any]]], Choice | None]:
    """Run :func:`run_study` on each dataset in ``out/NAME`` (:func:`dataset_names`; ``kw`` goes to it),
    then write ``out/results.md`` and ``out/pooled.csv`` (:func:`pooled`) and, with ``choose_method``,
    apply the rule (:func:`~colprune.study.choose.choose`): its verdicts go into ``results.md`` and its
    choice, with the flags to build it, to ``log``. Returns ``({name: rows}, choice or None)``."""
    if not datasets:
        raise InvalidInputError("give at least one dataset")
    results: dict[str, list[dict[str, Any]]] = {}
    for path, name in zip(datasets, dataset_names(datasets)):
        log(f"== {name} ({path})")
        results[name] = run_study(path, encoder, os.path.join(out, name), log=log, **kw)
    os.makedirs(out, exist_ok=True)
    table = pooled(results, reference=reference)
    _write_pooled_csv(table, os.path.join(out, "pooled.csv"))
    md = pooled_markdown(results, table, reference, encoder)
    choice = None
    if choose_method:
        choice = choose(results, reference=reference)
        md += choice_markdown(choice)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    log(f"pooled over {len(results)} datasets: wrote {os.path.join(out, 'results.md')} and pooled.csv")
    for line in choice_lines(choice) if choice is not None else []:
        log(line)
    return results, choice
