"""fast-plaid's side of ``bench/plaid.py``, run inside fast-plaid's own virtual environment.

fast-plaid pins its own torch, so ``bench/plaid.py`` (colprune's environment) starts this script
with the other environment's Python and hands the vectors over as ``.npy`` files in a folder:

    vectors.npy        (N, dim) float16: every page's vectors back to back
    offsets.npy        (n_pages + 1,) int64: page p is vectors[offsets[p]:offsets[p + 1]]
    queries.npy        (T, dim) float32: every query's tokens back to back
    query_offsets.npy  (n_queries + 1,) int64

    /path/to/plaid-venv/bin/python bench/plaid_worker.py DIR --nbits 2,4 --threads 2

For each ``--nbits`` it builds an index on CPU under ``DIR/plaid-<nbits>`` (timed), measures its
bytes on disk, searches every query in one batch and then one at a time (median of
``--repeats`` after a warm-up), and writes ``DIR/plaid.json``: versions, figures, and the top-k
page numbers of each query (0-based, in ``offsets`` order). It imports nothing of colprune.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _threads_from_argv() -> int:
    # Thread pools read their size at import: set it before numpy/torch load.
    n = os.cpu_count() or 1
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = int(sys.argv[i + 1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    return n


THREADS = _threads_from_argv()

import numpy as np  # noqa: E402


def dir_bytes(path: str) -> tuple[int, dict[str, int]]:
    """Total bytes of the files under ``path`` (the lock file left out), and each file's."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            if name.endswith(".lock"):
                continue
            full = os.path.join(root, name)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    return sum(files.values()), files


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": sys.version.split()[0]}
    for name in ("fast-plaid", "torch", "fastkmeans", "numpy"):
        try:
            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing distribution is reported, not fatal
            out[name] = "absent"
    return out


def run_one(args, nbits: int, docs: list, queries: list) -> dict:
    """Build one fast-plaid index and search it: the figures of one ``nbits``."""
    import torch
    from fast_plaid import search as fp_search

    path = os.path.join(args.dir, f"plaid-{nbits}")
    t0 = time.perf_counter()
    index = fp_search.FastPlaid(index=path, device="cpu")
    index.create(documents_embeddings=docs, nbits=nbits, start_from_scratch=0, seed=args.seed)
    build_s = time.perf_counter() - t0
    total, files = dir_bytes(path)
    kw = {"top_k": args.k, "n_full_scores": args.n_full_scores, "n_ivf_probe": args.n_ivf_probe, "show_progress": False}

    def batch():
        return index.search(queries_embeddings=queries, **kw)

    def single():
        return [index.search(queries_embeddings=[q], **kw)[0] for q in queries]

    with torch.inference_mode():
        t0 = time.perf_counter()
        first = index.search(queries_embeddings=[queries[0]], **kw)  # loads the index from disk
        first_s = time.perf_counter() - t0
        del first
        batch()
        batch_t, single_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            hits = batch()
            batch_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            one = single()
            single_t.append(time.perf_counter() - t)
    n_q = len(queries)
    return {
        "nbits": nbits, "build_s": build_s, "index_bytes": total, "files": files, "first_query_s": first_s,
        "batch_ms_per_query": statistics.median(batch_t) / n_q * 1e3,
        "single_ms_per_query": statistics.median(single_t) / n_q * 1e3,
        "top": [[int(d) for d, _ in h] for h in hits],
        "scores": [[float(s) for _, s in h] for h in hits],
        "top_single": [[int(d) for d, _ in h] for h in one],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="folder with vectors.npy, offsets.npy, queries.npy, query_offsets.npy")
    ap.add_argument("--nbits", default="2,4")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-full-scores", type=int, default=4096, help="fast-plaid's default")
    ap.add_argument("--n-ivf-probe", type=int, default=8, help="fast-plaid's default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    vec = np.load(os.path.join(args.dir, "vectors.npy"), mmap_mode="r")
    off = np.load(os.path.join(args.dir, "offsets.npy"))
    qv = np.load(os.path.join(args.dir, "queries.npy"))
    qoff = np.load(os.path.join(args.dir, "query_offsets.npy"))
    docs = [torch.from_numpy(np.asarray(vec[a:b], dtype=np.float32)) for a, b in zip(off[:-1], off[1:])]
    queries = [torch.from_numpy(np.ascontiguousarray(qv[a:b], dtype=np.float32)) for a, b in zip(qoff[:-1], qoff[1:])]
    out = {"versions": versions(), "threads": args.threads, "torch_threads": torch.get_num_threads(),
           "n_full_scores": args.n_full_scores, "n_ivf_probe": args.n_ivf_probe, "runs": []}
    for nbits in [int(b) for b in args.nbits.split(",")]:
        out["runs"].append(run_one(args, nbits, docs, queries))
        print(f"fast-plaid nbits={nbits}: built in {out['runs'][-1]['build_s']:.1f} s", file=sys.stderr, flush=True)
    with open(os.path.join(args.dir, "plaid.json"), "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
