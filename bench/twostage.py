"""Two-stage search on a large store: per-page centroids first, exact MaxSim on the shortlist.

    python bench/twostage.py            # 100,000 clustered pages, table
    python bench/twostage.py --json     # JSON on stdout, the table on stderr
    python bench/twostage.py --quick    # seconds; what the test suite runs

The store is :func:`colprune.synthetic.make_corpus` with a shared topic pool drawn from an
8-dimensional subspace (pages cluster and relevance is graded, so every query has many near
neighbours), stored as float16 in an index file. Reports
latency per query (median over repeats, all queries batched) and recall@10 against exact
float16 MaxSim search, for several shortlist sizes.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import sys
import tempfile
import time

import numpy as np

import colprune as cp
from colprune.synthetic import make_corpus


def recall_at_10(got, exact) -> float:
    return float(np.mean([len({h.id for h in g} & {h.id for h in e}) / 10 for g, e in zip(got, exact)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--min-vectors", type=int, default=80)
    ap.add_argument("--max-vectors", type=int, default=160)
    ap.add_argument("--topics", type=int, default=2000, help="shared topic pool size")
    ap.add_argument("--content-noise", type=float, default=0.25, help="content patches' scatter (cosine ~0.7 to topic)")
    ap.add_argument("--query-noise", type=float, default=0.4, help="query tokens' scatter (cosine ~0.53)")
    ap.add_argument("--latent-dim", type=int, default=8,
                    help="topic subspace: graded similarity between topics (0: independent topics, near-ties)")
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--candidates", default="500,1000,2000,3000", help="shortlist sizes to report")
    ap.add_argument("--centroids", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.pages, args.topics, args.queries, args.repeats, args.candidates = 2000, 100, 4, 1, "50,200"
    sizes = [int(x) for x in args.candidates.split(",")]

    t0 = time.perf_counter()
    corpus = make_corpus(args.pages, min_vectors=args.min_vectors, max_vectors=args.max_vectors,
                         n_queries=args.queries, n_topics=args.topics, content_noise=args.content_noise,
                         query_noise=args.query_noise, latent_dim=args.latent_dim or None, seed=1)
    res = {"pages": args.pages, "queries": args.queries, "centroids_per_page": args.centroids,
           "vectors": int(sum(e.shape[0] for e in corpus.embeddings)), "generate_s": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.h5")
        t0 = time.perf_counter()
        with cp.Index.create(path, dim=128, dtype="float16", summary_centroids=args.centroids) as index:
            for lo in range(0, args.pages, 5000):
                sl = slice(lo, lo + 5000)
                index.add(corpus.ids[sl], corpus.embeddings[sl], corpus.importance[sl])
        del corpus.embeddings[:]
        res["build_s"] = time.perf_counter() - t0  # includes the persisted summaries (computed when segments are written)
        with cp.Index.open(path) as index:
            index.warm(1 << 40)
            t0 = time.perf_counter()
            cvec, _ = index.summary()
            res["summary_s"] = time.perf_counter() - t0  # read from the file
            res["summary_vectors"] = int(cvec.shape[0])

            def timed(fn):
                fn()
                ts = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    out = fn()
                    ts.append(time.perf_counter() - t)
                return out, float(np.median(ts)) / len(corpus.queries) * 1e3

            exact, res["exact_ms_per_query"] = timed(lambda: index.search(corpus.queries, k=10, n_threads=args.threads))
            res["two_stage"] = {}
            for c in sizes:
                got, ms = timed(lambda c=c: index.search(corpus.queries, k=10, candidates=c, n_threads=args.threads))
                res["two_stage"][str(c)] = {"ms_per_query": ms, "speedup": res["exact_ms_per_query"] / ms,
                                            "recall@10": recall_at_10(got, exact)}
    table(res, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(res, indent=1))
    return 0


def table(res: dict, file) -> None:
    def print(*a):  # noqa: A001
        builtins.print(*a, file=file)

    print(f"{res['pages']:,} pages, {res['vectors']:,} float16 vectors, {res['queries']} queries; "
          f"summary: {res['centroids_per_page']} centroids/page ({res['summary_vectors']:,} vectors, "
          f"read in {res['summary_s']:.1f} s)")
    print(f"exact search: {res['exact_ms_per_query']:.1f} ms/query")
    print("shortlist   ms/query   speedup   recall@10")
    for c, r in res["two_stage"].items():
        print(f"{c:>9}  {r['ms_per_query']:>9.2f}  {r['speedup']:>7.1f}x  {r['recall@10']:>9.3f}")


if __name__ == "__main__":
    sys.exit(main())
