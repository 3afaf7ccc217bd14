"""Why attention selection collapses at 10% on long pages: the kept tokens of the pages that fail.

For the questions where DocPruner over received attention (the default before issue 23) loses the most
nDCG@10 against the unpruned index, take each relevant page and compare what each method keeps:
how many tokens, how many of the page's 64-token regions keep at least one, the longest run of
tokens with none kept, the share of punctuation, and how many of the question's words on the page
are kept as tokens. Reads a study folder (the cached scores in scores/, with each variant's solved
parameters, and full.h5); prints a markdown table.

    python docs/study-financebench/collapse.py ../shared/data/financebench-dev study/financebench-dev \
        --budget 0.1 --worst 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string

import numpy as np

from colprune.encoders import load_encoder
from colprune.index import Index
from colprune.pruning import make_pruner
from colprune.study import load_dataset
from colprune.study.grid import DEFAULT_METHOD, Variant, expand_grid

REGION = 64  # tokens: about a paragraph of a filing


def scores(study: str, budget: float, grid: str) -> tuple[dict[str, dict], dict[str, dict[str, float]]]:
    """Each method's solved pruner (``{"pruner", "params", "signal"}``) at ``budget`` and every method's
    per-question nDCG@10 (``"none"``: unpruned), from a study's cached scores (``STUDY/scores/*.json``)."""
    with open(grid) as f:
        variants = expand_grid(json.load(f), budgets=[budget]) + expand_grid({"methods": [DEFAULT_METHOD]}, budgets=[budget])
    settings, per = {}, {}
    for v in [Variant("none", "none")] + variants:
        path = f"{study}/scores/{'none' if v.method == 'none' else v.slug + '_float16'}.json"
        if not os.path.exists(path):
            continue
        with open(path) as f:
            got = json.load(f)
        per[v.method] = dict(zip(got["key"]["queries"], got["evaluation"]["per_query"]["ndcg@10"]))
        if v.method != "none":
            settings[v.method] = {"pruner": v.pruner, "signal": v.signal, "params": got["key"]["pruner"]["params"]}
    return settings, per


def describe(kept: np.ndarray, tokens: list[str], query_words: set[str]) -> dict:
    n = len(tokens)
    regions = -(-n // REGION)
    covered = len({int(p) // REGION for p in kept})
    gaps = np.diff(np.r_[-1, np.sort(kept), n]) - 1
    words = [tokens[p] for p in kept]
    punct = sum(all(c in string.punctuation for c in w) for w in words)
    on_page = {t for t in tokens if t.lower() in query_words}
    kept_q = {w for w in words if w.lower() in query_words}
    return {"kept": len(kept), "share": len(kept) / n, "regions": f"{covered}/{regions}", "gap": int(gaps.max()),
            "punct": punct / max(len(kept), 1), "query": f"{len(kept_q)}/{len(on_page)}", "words": words,
            "distinct": len(set(words)) / max(len(words), 1)}


def page_texts(ds, ids: set[str]) -> dict[str, str]:
    """The text layers of the pages ``ids`` only, read as the build reads them."""
    if ds.pages_dir is None:
        return {i: ds.corpus[i] for i in ids}
    from colprune.pipeline import list_pages, read_pages

    jobs = [j for j in list_pages([ds.pages_dir]) if j.id in ids]
    return {job.id: (content or "") for job, content, _ in read_pages(jobs, "text", 72)}


def kept_rows(page, setting: dict) -> np.ndarray:
    """Token indices (0 = the page's first token) that ``setting``'s pruner keeps of ``page``."""
    pr = make_pruner(setting["pruner"], **setting["params"])
    imp = page.signals[setting["signal"]] if setting["signal"] else None
    got = pr.prune(page.vectors, imp, patch_mask=page.patch_mask)
    return got.positions[got.patch_mask] - 1  # row 0 is [CLS]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("study")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--methods", default="docpruner-indegree,docpruner,adaptive-cluster,adaptive-spread,random")
    ap.add_argument("--against", default="docpruner-indegree", help="the method whose losses pick the questions")
    ap.add_argument("--worst", type=int, default=4)
    ap.add_argument("--grid", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "grid-23.json"))
    args = ap.parse_args()
    ds = load_dataset(args.dataset)
    settings, per = scores(args.study, args.budget, args.grid)
    methods = [m for m in args.methods.split(",") if m in settings]
    drops = sorted(per["none"], key=lambda q: per[args.against][q] - per["none"][q])
    tok = load_encoder("minilm").tokenizer
    texts = page_texts(ds, {next(d for d, g in ds.qrels[q].items() if g > 0) for q in drops})
    total = {m: [] for m in methods}
    detail = []
    with Index.open(f"{args.study}/full.h5") as full:
        for rank, q in enumerate(drops):
            query_words = {w for w in re.findall(r"\w+", ds.queries[q].lower()) if len(w) > 2}
            page_id = next(d for d, g in ds.qrels[q].items() if g > 0)
            if page_id not in texts or not texts[page_id].strip():
                continue
            page = full.get(page_id)
            tokens = tok.convert_ids_to_tokens(tok(texts[page_id], add_special_tokens=False)["input_ids"])
            for m in methods:
                d = describe(kept_rows(page, settings[m]), tokens, query_words)
                total[m].append(d)
                if rank < args.worst:
                    detail.append((q, page_id, len(tokens), m, d))
    print(f"Relevant pages of all {len(drops)} questions (the first judged page of each), at budget {args.budget:g}:\n")
    print("| method | nDCG@10 | kept share (median) | pages keeping < 3% | 64-token regions kept | distinct kept tokens "
          "| punctuation | question words kept |\n|---|---|---|---|---|---|---|---|")
    for m, ds_ in total.items():
        share = np.array([d["share"] for d in ds_])
        reg = np.mean([int(d["regions"].split("/")[0]) / int(d["regions"].split("/")[1]) for d in ds_])
        qk = [tuple(map(int, d["query"].split("/"))) for d in ds_]
        print(f"| {m} | {np.mean(list(per[m].values())):.3f} | {np.median(share):.1%} | {np.mean(share < 0.03):.0%} | "
              f"{reg:.0%} | {np.mean([d['distinct'] for d in ds_]):.0%} | {np.mean([d['punct'] for d in ds_]):.0%} | "
              f"{sum(a for a, _ in qk)}/{sum(b for _, b in qk)} |")
    print(f"\nThe questions {args.against} loses most on:\n")
    print(f"| question (unpruned → {args.against} nDCG@10) | page (tokens) | method | kept (share) | 64-token regions kept "
          "| longest unkept run | punctuation | question words kept / on page |\n|---|---|---|---|---|---|---|---|")
    for q, page_id, n, m, d in detail:
        print(f"| {q}: {ds.queries[q][:60]} ({per['none'][q]:.2f} → {per[args.against][q]:.2f}) | {page_id} ({n}) | {m} | "
              f"{d['kept']} ({d['share']:.0%}) | {d['regions']} | {d['gap']} | {d['punct']:.0%} | {d['query']} |")
        if m == args.against:
            print(f"|  | | kept tokens | {' '.join(d['words'][:40])} | | | | |")


if __name__ == "__main__":
    main()
