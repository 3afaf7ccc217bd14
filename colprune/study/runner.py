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
import shutil
from typing import Any, Callable, Sequence

from ..index import Index
from ..pruning import make_pruner
from .budgets import Collection, derive, solve
from .datasets import load_dataset
from .encode import encode_dataset
from .evaluate import bm25, cached, evaluate, identity, meanpool
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
    keep_variants: bool = True,
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
    Every evaluation is cached in ``out/scores/`` (JSON, keyed by the pruner, signal, codec and
    queries), so a re-run scores only what is new; ``keep_variants=False`` removes each
    derived index once it is scored (a large collection's variants need not all fit on disk).

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
    scores_dir = os.path.join(out, "scores" if quantize is None else f"scores-{quantize}")
    os.makedirs(variants_dir, exist_ok=True)
    os.makedirs(scores_dir, exist_ok=True)
    with Index.open(full_path) as full:
        variants = for_signals(variants, full.signal_names, log)
        col = Collection(full)
        ident = identity(full, qids)
        base = cached(os.path.join(scores_dir, "none.json"), {"name": "none", **ident},
                      lambda: evaluate(full, queries, qids, ds))
        base_per = base["per_query"]["ndcg@10"]
        rows = [row("none", "", base, "float16", base_per)] + (
            _references(full, queries, qids, ds, base_per, scores_dir, ident) if references else [])
        settings: list[Setting] = []
        for v in tqdm(variants, desc="variants", unit="variant", disable=not progress):
            params = solve(col, v)
            s = setting(full_path, v, params)
            settings += [s] if v.budget is not None else []
            for codec in codecs:
                ev = _measure(full, col, v, (variants_dir, scores_dir), codec, params, (queries, qids, ds), ident)
                rows.append(row(v.method, v.label, ev, codec, base_per, s.solved) | {"pruner": v.pruner, "setting": s})
                if log_rows:
                    _log_row(rows[-1], log)
            if not keep_variants:
                for codec in {*codecs, "float16"}:
                    shutil.rmtree(os.path.join(variants_dir, f"{v.slug}_{codec}.h5"), ignore_errors=True)
    name = encoder if quantize is None else f"{encoder} ({quantize} dynamic quantisation)"
    name = name if query_encoder is None else f"{encoder}, queries from {query_encoder}"
    tag = "" if quantize is None else f"-{quantize}"  # a quantised run never overwrites the float one's outputs
    _write(rows, settings, out, (ds.name, name, qids, full_path), tag, paired_reference, log)
    return rows


def _write(rows: list[dict[str, Any]], settings: list[Setting], out: str, what: tuple, tag: str,
           paired_reference: str | None, log: Callable[[str], None]) -> None:
    """A study's files (results, settings, per-query figures, paired differences) and its printed lines."""
    dataset, encoder, qids, full_path = what
    write_results(rows, out, dataset, encoder, len(qids), tag)
    with open(os.path.join(out, f"results{tag}.md"), "a") as f:
        f.write(settings_markdown(settings, full_path))
    write_per_query(rows, qids, os.path.join(out, f"per_query{tag}.csv"))
    if paired_reference is not None:
        write_paired(os.path.join(out, f"per_query{tag}.csv"), paired_reference, os.path.join(out, f"results{tag}.md"))
    for line in summary_lines(rows) + settings_lines(settings):
        log(line)
    log(f"wrote {os.path.join(out, f'results{tag}.csv')}, results{tag}.md and pareto{tag}.png ({len(rows)} rows, "
        f"{len(qids)} queries)")


def _measure(full: Index, col: Collection, v: Variant, folders: tuple[str, str], codec: str, params: dict,
             judged: tuple, ident: dict[str, Any]) -> dict[str, Any]:
    """The evaluation of ``v`` (solved to ``params``) stored with ``codec``: from its cached scores
    (``scores/SLUG_CODEC.json``) while the pruner, signal, codec and queries are the same, else
    derived into ``variants/`` (:func:`derive`, itself cached) and searched."""
    queries, qids, ds = judged
    folder, scores = folders
    key = {"pruner": make_pruner(v.pruner, **params).config(), "signal": v.signal, "codec": codec, **ident}
    if codec.startswith("residual"):  # scores cached before bytes counted the codebook are measured again
        key["bytes"] = "vectors+codebook"

    def measure() -> dict[str, Any]:
        with derive(full, col, v, folder, codec, params) as ix:
            return evaluate(ix, queries, qids, ds)

    return cached(os.path.join(scores, f"{v.slug}_{codec}.json"), key, measure)


def _references(full: Index, queries, qids: list[str], ds, base_per: list[float], folder: str,
                ident: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a user would weigh beside the pruned ones: one mean vector per page, and BM25 over the text."""
    mp = cached(os.path.join(folder, "meanpool.json"), {"name": "meanpool", **ident},
                lambda: meanpool(full, queries, qids, ds))
    rows = [row("meanpool", "one vector per page", mp, "float16", base_per)]
    bm = cached(os.path.join(folder, "bm25.json"), {"name": "bm25", **ident}, lambda: bm25(ds, qids) or {})
    return rows + ([row("bm25", "page text, k1=1.2 b=0.75", bm, "-", base_per)] if bm else [])


def _log_row(r: dict[str, Any], log: Callable[[str], None]) -> None:
    log(f"{r['method']:>16} {r['params']:<40} {r['codec']:<8} keep {r['keep_ratio']:.3f} nDCG@10 {r['ndcg@10']:.3f} "
        f"hit@10 {r['hit@10']:.3f} delta {r['delta_ndcg@10']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]")
