"""``colprune study``: storage versus quality for a grid of pruning methods on one dataset.

Encode once into a *full* index that keeps every vector and every importance signal
(:mod:`~colprune.study.encode`), derive each variant from it at an exact collection budget
(:mod:`~colprune.study.budgets`; cached on disk, so re-running with one more method re-uses the
rest), search and score against graded judgements (:mod:`~colprune.study.evaluate`), and write
the rows with bootstrap intervals over queries (:mod:`~colprune.study.report`).

The grid format is :data:`GRID_HELP` (also in ``colprune study --help``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from ..index import Index
from .budgets import Collection, derive, solve
from .datasets import load_dataset
from .encode import encode_dataset
from .evaluate import bm25, evaluate, meanpool
from .grid import DEFAULT_GRID, DEFAULT_METHOD, GRID_HELP, Variant, expand_grid, for_signals
from .report import COLUMNS, paired_to, pareto_frontier, row, summary_lines, write_paired, write_per_query, write_results
from .settings import Setting, setting, settings_lines, settings_markdown

__all__ = ["DEFAULT_GRID", "DEFAULT_METHOD", "GRID_HELP", "Variant", "expand_grid", "encode_dataset", "run_study",
           "COLUMNS", "paired_to", "pareto_frontier"]


def run_study(
    dataset: str,
    encoder: str,
    out: str,
    *,
    grid: dict | None = None,
    budgets: Sequence[float] | None = None,
    methods: Sequence[str] | None = None,
    codecs: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    references: bool = True,
    log_rows: bool = False,
    query_encoder: str | None = None,
    quantize: str | None = None,
    paired_reference: str | None = None,
) -> list[dict[str, Any]]:
    """Run a study and write ``out/results.csv``, ``results.md``, ``per_query.csv`` and
    ``pareto.png``; returns the rows.

    Every row has hit@1/5/10, nDCG@5/10 (with a 95% bootstrap interval over queries), recall,
    and the paired difference of nDCG@10 to the unpruned index per query (mean and 95%
    bootstrap interval of the differences). ``references`` adds two rows a user would weigh:
    ``meanpool`` (one vector per page) and ``bm25`` over the page text. ``query_encoder``: a
    student of ``encoder`` encodes the queries (the pages stay ``encoder``'s). ``quantize``:
    ``"int8"`` encodes pages and queries with the encoder's int8 dynamic quantisation.
    ``paired_reference``: a method of the grid (``"ward"``, say); ``results.md`` then also gives
    every method's paired difference to it at the same budget and codec (:func:`paired_to`).

    The default method (:data:`DEFAULT_METHOD`) always runs, its rows named ``default``, whatever
    ``grid`` and ``methods`` say. Each budgeted row carries ``solved``, the parameter its budget set
    (``"k=-0.1234"``); ``results.md`` ends with the ``colprune prune`` line of every budgeted
    variant (the default's first), and ``log`` gets the table and the default's lines.
    """
    from tqdm.auto import tqdm

    grid = grid or DEFAULT_GRID
    codecs = list(codecs or grid.get("codecs", ["float16"]))
    variants = expand_grid(grid, budgets=budgets, methods=methods)
    if not any(v.method == "default" for v in variants):  # the study always hands back the default's settings
        variants += expand_grid({"methods": [DEFAULT_METHOD]}, budgets=budgets or grid.get("budgets"))
    ds = load_dataset(dataset)
    full_path, queries, qids = encode_dataset(ds, encoder, out, progress=progress, query_encoder=query_encoder,
                                             quantize=quantize)
    variants_dir = os.path.join(out, "variants" if quantize is None else f"variants-{quantize}")
    os.makedirs(variants_dir, exist_ok=True)
    with Index.open(full_path) as full:
        variants = for_signals(variants, full.signal_names, log)
        col = Collection(full)
        base = evaluate(full, queries, qids, ds)
        base_per = base["per_query"]["ndcg@10"]
        rows = [row("none", "", base, "float16", base_per)] + (_references(full, queries, qids, ds, base_per)
                                                                if references else [])
        settings: list[Setting] = []
        for v in tqdm(variants, desc="variants", unit="variant", disable=not progress):
            params = solve(col, v)
            s = setting(full_path, v, params)
            settings += [s] if v.budget is not None else []
            for codec in codecs:
                with derive(full, col, v, variants_dir, codec, params) as ix:
                    rows.append(row(v.method, v.label, evaluate(ix, queries, qids, ds), codec, base_per, s.solved))
                if log_rows:
                    _log_row(rows[-1], log)
    name = encoder if quantize is None else f"{encoder} ({quantize} dynamic quantisation)"
    tag = "" if quantize is None else f"-{quantize}"  # a quantised run never overwrites the float one's outputs
    write_results(rows, out, ds.name, name if query_encoder is None else f"{encoder}, queries from {query_encoder}",
                  len(qids), tag)
    with open(os.path.join(out, f"results{tag}.md"), "a") as f:
        f.write(settings_markdown(settings, full_path))
    write_per_query(rows, qids, os.path.join(out, f"per_query{tag}.csv"))
    if paired_reference is not None:
        write_paired(os.path.join(out, f"per_query{tag}.csv"), paired_reference, os.path.join(out, f"results{tag}.md"))
    for line in summary_lines(rows) + settings_lines(settings):
        log(line)
    log(f"wrote {os.path.join(out, f'results{tag}.csv')}, results{tag}.md and pareto{tag}.png ({len(rows)} rows, "
        f"{len(qids)} queries)")
    return rows


def _references(full: Index, queries, qids: list[str], ds, base_per: list[float]) -> list[dict[str, Any]]:
    """The rows a user would weigh beside the pruned ones: one mean vector per page, and BM25 over the text."""
    rows = [row("meanpool", "one vector per page", meanpool(full, queries, qids, ds), "float16", base_per)]
    bm = bm25(ds, qids)
    return rows + ([row("bm25", "page text, k1=1.2 b=0.75", bm, "-", base_per)] if bm is not None else [])


def _log_row(r: dict[str, Any], log: Callable[[str], None]) -> None:
    log(f"{r['method']:>16} {r['params']:<40} {r['codec']:<8} keep {r['keep_ratio']:.3f} nDCG@10 {r['ndcg@10']:.3f} "
        f"hit@10 {r['hit@10']:.3f} delta {r['delta_ndcg@10']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]")
