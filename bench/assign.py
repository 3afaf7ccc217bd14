"""Two-level nearest-centroid search against exact assignment: how close, how much faster.

    python bench/assign.py --study STUDY            # MiniLM vectors of MS MARCO-5k (STUDY/msmarco-5k/full.h5) + synthetic
    python bench/assign.py --quick                  # synthetic only, small

For a codebook of ``--k`` centroids trained on a sample (exact k-means and two-level k-means,
both), every held-out vector is assigned exactly and through ``--probes`` groups of the
codebook's :func:`~colprune.kernels.group_centroids` partition. Printed per probe width: the
share of vectors given the exact nearest centroid, the mean squared residual as a ratio to exact
assignment's (what the codec quantises), and the speed-up in seconds. The residual ratios do not
depend on the machine's load; the seconds do (the header gives the CPU and the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from _machine import cpu_line  # bench/, beside this script

from colprune.kernels import group_centroids, nearest_centroids, train_centroids
from colprune.synthetic import stream_corpus


def _vectors(args) -> dict[str, np.ndarray]:
    out = {}
    if args.study:
        import colprune as cp
        from colprune.index.training import sample_live

        with cp.Index.open(os.path.join(args.study, "msmarco-5k", "full.h5")) as ix:
            out["msmarco-5k (MiniLM, dim 384)"] = sample_live(ix.snapshot(), cap=args.train + args.test)
    chunks, _, _ = stream_corpus(args.synthetic_pages, chunk=args.synthetic_pages)
    out["synthetic (dim 128)"] = np.asarray(next(chunks)[1], np.float32)
    return out


def measure(x: np.ndarray, args) -> list[dict]:
    """Rows of ``{"trained", "probe", "agree", "mse_ratio", "speedup"}`` for one set of vectors."""
    rng = np.random.default_rng(1)
    pick = rng.permutation(len(x))
    train, test = x[pick[: args.train]], x[pick[args.train : args.train + args.test]]
    rows = []
    for trained, two_level in (("exact k-means", False), ("two-level k-means", True)):
        cent = train_centroids(train, args.k, iters=args.iters, two_level=two_level)
        t = time.perf_counter()
        exact, d_exact = nearest_centroids(test, cent, distances=True)
        t_exact = time.perf_counter() - t
        groups = group_centroids(cent)
        for p in args.probes:
            if p > groups.n_groups:
                break
            t = time.perf_counter()
            codes, d = nearest_centroids(test, cent, groups=groups, probe=p, distances=True)
            rows.append({"trained": trained, "k": args.k, "groups": groups.n_groups, "probe": p,
                         "agree": float(np.mean(codes == exact)), "mse_ratio": float(d.mean() / d_exact.mean()),
                         "speedup": t_exact / (time.perf_counter() - t)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None, help="folder holding STUDY/msmarco-5k/full.h5 (colprune study's cache)")
    ap.add_argument("--synthetic-pages", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--train", type=int, default=131_072, help="vectors the codebook is trained on")
    ap.add_argument("--test", type=int, default=100_000, help="held-out vectors assigned")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--probes", default="1,2,4,8,16")
    ap.add_argument("--quick", action="store_true", help="2,000 synthetic pages, K = 1,024, no real set")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.probes = [int(p) for p in args.probes.split(",")]
    if args.quick:
        args.study, args.synthetic_pages, args.k, args.train, args.test = None, 2000, 1024, 40_000, 20_000
    print(f"{cpu_line()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", file=sys.stderr)
    result = {}
    for name, x in _vectors(args).items():
        rows = measure(x, args)
        result[name] = rows
        print(f"{name}: K = {args.k}, trained on {args.train:,}, {args.test:,} held-out vectors", file=sys.stderr)
        print(f"  {'codebook':<18} {'probe':>5} {'agree':>7} {'mse/exact':>9} {'speed-up':>8}", file=sys.stderr)
        for r in rows:
            print(f"  {r['trained']:<18} {r['probe']:>2}/{r['groups']:<2} {r['agree']:>7.4f} {r['mse_ratio']:>9.4f} "
                  f"{r['speedup']:>7.1f}x", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
