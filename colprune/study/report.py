"""A study's rows and outputs: ``results.csv``, ``results.md`` (with the Pareto frontier marked),
``per_query.csv``, ``pareto.png``, and paired differences between methods (:func:`paired_to`)."""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from .metrics import bootstrap_ci

__all__ = ["COLUMNS", "REFERENCES", "row", "budget_of", "summary_lines", "write_results", "write_per_query", "write_paired",
           "paired_to", "pareto_frontier", "pareto_plot"]

COLUMNS = ["method", "params", "keep_ratio", "codec", "bytes_per_page", "hit@1", "hit@5", "hit@10", "ndcg@5",
           "ndcg@10", "recall@10", "recall@100", "retention", "ndcg@10_lo", "ndcg@10_hi", "delta_ndcg@10", "delta_lo",
           "delta_hi", "queries", "solved"]
#: Reference rows (not pruned variants of the index): kept out of the Pareto frontier and plot.
REFERENCES = ("meanpool", "bm25")


def row(method: str, params: str, ev: dict, codec: str, base_per: list[float], solved: str = "") -> dict[str, Any]:
    """One row of :data:`COLUMNS` from an evaluation ``ev`` (:func:`colprune.study.evaluate.evaluate`):
    means over queries, the bootstrap interval of nDCG@10, and the paired difference to the unpruned
    index's per-query nDCG@10 ``base_per``; ``solved``: the parameter a budget set (``"k=-0.12"``);
    ``"_per_query"`` keeps the per-query nDCG@10."""
    per = ev["per_query"]
    lo, hi = bootstrap_ci(per["ndcg@10"])
    n10 = float(np.mean(per["ndcg@10"]))
    base_ndcg = float(np.mean(base_per))
    diff = np.asarray(per["ndcg@10"]) - np.asarray(base_per)
    dlo, dhi = bootstrap_ci(diff)
    mean = lambda k: round(float(np.mean(per[k])), 4)  # noqa: E731
    return {
        "method": method, "params": params, "keep_ratio": round(float(ev["keep_ratio"]), 4), "codec": codec,
        "bytes_per_page": round(float(ev["bytes_per_page"]), 1),
        "hit@1": mean("hit@1"), "hit@5": mean("hit@5"), "hit@10": mean("hit@10"),
        "ndcg@5": mean("ndcg@5"), "ndcg@10": round(n10, 4),
        "recall@10": mean("recall@10"), "recall@100": mean("recall@100"),
        "retention": round(n10 / base_ndcg, 4) if base_ndcg else float("nan"),
        "ndcg@10_lo": round(lo, 4), "ndcg@10_hi": round(hi, 4),
        "delta_ndcg@10": round(float(diff.mean()), 4), "delta_lo": round(dlo, 4), "delta_hi": round(dhi, 4),
        "queries": len(per["ndcg@10"]), "solved": solved,
        "_per_query": per["ndcg@10"],
    }


def write_results(rows: list[dict[str, Any]], out: str, dataset: str, encoder: str, n_queries: int, tag: str = "") -> None:
    """``out/results{tag}.csv``, ``results{tag}.md`` (frontier rows starred) and ``pareto{tag}.png``."""
    with open(os.path.join(out, f"results{tag}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    frontier = pareto_frontier(rows)
    with open(os.path.join(out, f"results{tag}.md"), "w") as f:
        f.write(f"# Study: {dataset}, encoder {encoder}, {n_queries} judged queries\n\n")
        f.write("nDCG@10 interval: 95% bootstrap over queries. Δ: the paired difference of nDCG@10 to the unpruned "
                "index, per query, mean and 95% bootstrap interval. Retention: nDCG@10 / unpruned. "
                "Bytes: stored vector bytes per page. * = on the Pareto frontier (no row is both smaller and better). "
                "meanpool: one vector per page; bm25: over the page text (no vectors). Solved: the parameter "
                "each budget set (the `colprune prune` lines are below the table).\n\n")
        f.write("| method | params | solved | codec | keep | bytes/page | hit@1 | hit@5 | hit@10 | nDCG@10 [95% CI] "
                "| Δ nDCG@10 [95% CI] | retention |\n")
        f.write("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        for i, r in enumerate(rows):
            star = " *" if i in frontier else ""
            keep = "-" if r["keep_ratio"] != r["keep_ratio"] else f"{r['keep_ratio']:.1%}"
            size = "-" if r["bytes_per_page"] != r["bytes_per_page"] else f"{r['bytes_per_page']:,.0f}"
            f.write(f"| {r['method']}{star} | {r['params']} | {r.get('solved', '')} | {r['codec']} | {keep} | {size} | "
                    f"{r['hit@1']:.3f} | {r['hit@5']:.3f} | {r['hit@10']:.3f} | "
                    f"{r['ndcg@10']:.3f} [{r['ndcg@10_lo']:.3f}, {r['ndcg@10_hi']:.3f}] | "
                    f"{r['delta_ndcg@10']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}] | {r['retention']:.1%} |\n")
    pareto_plot(rows, os.path.join(out, f"pareto{tag}.png"), f"{dataset} ({encoder}, {n_queries} queries)")


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as the study prints them: method, budget, the solved parameter (or the parameters
    given), codec, share of vectors kept, bytes per page, nDCG@10 and its paired Δ to the unpruned."""
    head = f"{'method':<20} {'budget':>6} {'setting':<24} {'codec':<8} {'keep':>6} {'bytes/page':>10} {'nDCG@10':>7} {'Δ':>7}"
    out = [head]
    for r in rows:
        budget = budget_of(r["params"]) or "-"
        keep = "-" if r["keep_ratio"] != r["keep_ratio"] else f"{r['keep_ratio']:.1%}"
        size = "-" if r["bytes_per_page"] != r["bytes_per_page"] else f"{r['bytes_per_page']:,.0f}"
        setting = (r.get("solved") or r["params"])[:24]  # what a budget solved, or the parameters given
        out.append(f"{r['method'][:20]:<20} {budget:>6} {setting:<24} {r['codec']:<8} {keep:>6} {size:>10} "
                   f"{r['ndcg@10']:>7.3f} {r['delta_ndcg@10']:>+7.3f}")
    return out


def write_per_query(rows: list[dict[str, Any]], qids: Sequence[str], path: str) -> None:
    """``path`` (``per_query.csv``): nDCG@10 of every row for every query, the input of :func:`paired_to`."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "params", "codec", "query_id", "ndcg@10"])
        for r in rows:
            w.writerows([r["method"], r["params"], r["codec"], q, round(v, 5)] for q, v in zip(qids, r["_per_query"]))


def write_paired(per_query_csv: str, reference: str, results_md: str) -> None:
    """Append to ``results_md`` every method's paired difference to ``reference`` (:func:`paired_to`)."""
    table = paired_to(per_query_csv, reference)
    with open(results_md, "a") as f:
        f.write(f"\n## Paired difference to {reference} at the same budget\n\n"
                f"Per query, nDCG@10 of the method minus that of {reference} at the same share of vectors "
                "and codec: mean and 95% bootstrap interval of the differences.\n\n"
                f"| method | budget | codec | Δ nDCG@10 to {reference} [95% CI] |\n|---|---|---|---|\n")
        f.writelines(f"| {t['method']} | {t['budget']} | {t['codec']} | {t['delta']:+.3f} "
                     f"[{t['lo']:+.3f}, {t['hi']:+.3f}] |\n" for t in table)


def budget_of(params: str) -> str | None:
    """The ``budget=B`` of a row's params (as written), or None for a row without a budget."""
    for part in params.split():
        if part.startswith("budget="):
            return part.split("=", 1)[1]
    return None


def paired_to(per_query_csv: str, reference: str) -> list[dict[str, Any]]:
    """Each budgeted method's paired difference of nDCG@10 to ``reference`` at the same budget.

    Reads a study's ``per_query.csv``; for every method row whose params carry ``budget=b``
    and a row of ``reference`` with the same budget and codec, returns ``{"method", "budget",
    "codec", "delta", "lo", "hi", "queries"}``: the mean per-query difference and its 95%
    percentile bootstrap interval. Raises :class:`InvalidInputError` when ``reference`` has no
    budgeted row.
    """
    per: dict[tuple[str, str, str], dict[str, float]] = {}
    with open(per_query_csv, newline="") as f:
        for r in csv.DictReader(f):
            b = budget_of(r["params"])
            if b is not None:
                per.setdefault((r["method"], b, r["codec"]), {})[r["query_id"]] = float(r["ndcg@10"])
    refs = {(b, c): v for (m, b, c), v in per.items() if m == reference}
    if not refs:
        raise InvalidInputError(f"{per_query_csv}: no budgeted rows of method {reference!r} to pair with")
    out = []
    for (m, b, c), v in per.items():
        if m == reference or (b, c) not in refs:
            continue
        qs = sorted(set(v) & set(refs[b, c]))
        diff = np.array([v[q] - refs[b, c][q] for q in qs])
        lo, hi = bootstrap_ci(diff)
        out.append({"method": m, "budget": float(b), "codec": c, "delta": round(float(diff.mean()), 4),
                    "lo": round(lo, 4), "hi": round(hi, 4), "queries": len(qs)})
    return out


def pareto_frontier(rows: list[dict[str, Any]]) -> set[int]:
    """Indices of rows no other row beats on both bytes (fewer) and nDCG@10 (higher)."""
    keep = set()
    rows = [r if r.get("method") not in REFERENCES else {**r, "bytes_per_page": float("inf"), "ndcg@10": float("-inf")}
            for r in rows]
    for i, r in enumerate(rows):
        if rows[i]["bytes_per_page"] == float("inf"):
            continue
        if not any((o["bytes_per_page"] <= r["bytes_per_page"] and o["ndcg@10"] > r["ndcg@10"])
                   or (o["bytes_per_page"] < r["bytes_per_page"] and o["ndcg@10"] >= r["ndcg@10"]) for o in rows):
            keep.add(i)
    return keep


def pareto_plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Bytes per page (log) against nDCG@10, one line per method and codec, the frontier marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    styles = {"float16": ("-", "o"), "int8": ("--", "s"), "binary": (":", "^")}
    rows = [r for r in rows if r["method"] not in REFERENCES]
    methods = sorted({r["method"] for r in rows} - {"none"})
    palette = plt.get_cmap("tab20")
    colors = {m: ("black" if m == "default" else palette(i % 20)) for i, m in enumerate(m for m in methods if m != "default")}
    colors["default"] = "black"
    for method in methods:
        for codec, (ls, marker) in styles.items():
            rs = sorted((r for r in rows if r["method"] == method and r["codec"] == codec), key=lambda r: r["bytes_per_page"])
            if rs:
                ax.plot([r["bytes_per_page"] for r in rs], [r["ndcg@10"] for r in rs], linestyle=ls, marker=marker,
                        color=colors[method], linewidth=2.2 if method == "default" else 1.2, markersize=4, alpha=0.9)
    front = sorted((rows[i] for i in pareto_frontier(rows)), key=lambda r: r["bytes_per_page"])
    ax.plot([r["bytes_per_page"] for r in front], [r["ndcg@10"] for r in front], color="gray", linewidth=6,
            alpha=0.25, zorder=0)
    from matplotlib.lines import Line2D

    method_legend = ax.legend([Line2D([], [], color=colors[m], linewidth=2) for m in methods], methods,
                              title="method", fontsize=8, loc="lower right", ncol=2)
    ax.add_artist(method_legend)
    ax.legend([Line2D([], [], color="gray", linestyle=ls, marker=mk) for ls, mk in styles.values()]
              + [Line2D([], [], color="gray", linewidth=6, alpha=0.25)], list(styles) + ["Pareto frontier"],
              title="codec", fontsize=8, loc="lower left")
    base = next(r for r in rows if r["method"] == "none")
    ax.axhline(base["ndcg@10"], color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("stored vector bytes per page (log)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
