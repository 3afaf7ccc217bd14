"""colprune against fast-plaid on the same vectors, side by side in one run.

    python bench/plaid.py --plaid-python plaid-venv/bin/python --study STUDY   # real sets + 100,000 synthetic pages
    python bench/plaid.py --sets msmarco-5k --synthetic-pages 10000 --plaid-python plaid-venv/bin/python --study STUDY
    python bench/plaid.py --quick --json                # seconds, colprune only unless --plaid-python is given

fast-plaid pins its own torch, so it lives in a virtual environment of its own and runs there,
driven through ``bench/plaid_worker.py`` (the vectors handed over as ``.npy`` files in a
temporary folder)::

    python -m venv plaid-venv && plaid-venv/bin/pip install fast-plaid

Without ``--plaid-python`` (or ``$COLPRUNE_PLAID_PYTHON``) the fast-plaid rows are skipped with a
line saying so. Data, every system given the same float16 values:

- real sets: MiniLM token vectors of the shared PDF and MS MARCO sets, from the study's cache
  (``STUDY/NAME/full.h5`` and ``queries.npz``, as ``colprune study --dataset ../shared/data/NAME
  --encoder minilm --out STUDY/NAME`` writes them; ``--encode`` makes missing ones), graded
  against ``../shared/data/NAME/qrels``;
- synthetic pages (``colprune.synthetic.stream_corpus``, scale.py's crowded corpus, exactly
  ``--synthetic-vectors`` vectors a page, dim 128).

Per system: bytes per page on disk (every file of the index folder over pages), build seconds,
ms per query one at a time and all queries in one call (median of ``--repeats`` after a warm-up),
recall@10 against exact MaxSim (float32 arithmetic on the shared vectors) and, on the real sets,
nDCG@10 against the qrels. colprune rows: float16 exact, two-stage (``candidates=``), and the
residual codecs exact and with ``candidates=`` when this colprune has them; fast-plaid rows at
``--plaid-nbits`` on CPU with its default search parameters. The header names the CPU and the
load average before and after (figures from a loaded machine say so).
"""

from __future__ import annotations

import argparse
import os
import sys


def _early_threads() -> int:
    # Thread pools read their size at import: set it before numpy/numba load.
    n = os.cpu_count() or 1
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = int(sys.argv[i + 1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    return n


THREADS = _early_threads()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

import builtins  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from _machine import cpu_line  # noqa: E402  (bench/, beside this script)

import colprune as cp  # noqa: E402
from colprune.kernels import maxsim_scores  # noqa: E402

SETS = ("financebench-dev", "financebench-more", "msmarco-5k")


@dataclass
class Data:
    """One data set as every system gets it: float16 pages back to back, float32 queries."""

    name: str
    vectors: np.ndarray  # (N, dim) float16
    offsets: np.ndarray  # (n_pages + 1,) int64
    ids: list
    queries: list  # (m, dim) float32 each
    qids: list | None = None
    qrels: dict | None = None

    @property
    def pages(self) -> int:
        return self.offsets.size - 1


# -- data ------------------------------------------------------------------------------------

def real_set(name: str, args) -> Data | str:
    """A study cache as :class:`Data`, or why it is skipped."""
    from colprune.study.datasets import load_dataset

    data_dir = os.path.join(args.data, name)
    out = os.path.join(args.study or "", name)
    full, qfile = os.path.join(out, "full.h5"), os.path.join(out, "queries.npz")
    if not os.path.isdir(data_dir):
        return f"no dataset folder {data_dir} (pass --data)"
    if args.encode and args.study and not (os.path.exists(full) and os.path.exists(qfile)):
        from colprune.study.encode import encode_dataset

        encode_dataset(data_dir, "minilm", out, progress=True)
    if not args.study or not (os.path.exists(full) and os.path.exists(qfile)):
        return (f"no study cache {full} + queries.npz: run colprune study --dataset {data_dir} --encoder minilm "
                f"--out STUDY/{name} (or pass --study STUDY --encode)")
    with cp.Index.open(full) as ix:
        vectors, offsets = ix.load()
        ids = ix.ids
    with np.load(qfile, allow_pickle=False) as z:
        qv, qoff, qids = z["vectors"], z["offsets"], [str(q) for q in z["ids"]]
    queries = [np.ascontiguousarray(qv[a:b], dtype=np.float32) for a, b in zip(qoff[:-1], qoff[1:])]
    ds = load_dataset(data_dir)
    return Data(name, np.ascontiguousarray(vectors, dtype=np.float16), np.asarray(offsets, np.int64), ids, queries,
                qids, ds.qrels)


def synthetic_set(args) -> Data:
    """scale.py's crowded graded-topic pages, ``--synthetic-vectors`` vectors each."""
    from colprune.synthetic import stream_corpus

    n = args.synthetic_pages
    chunks, queries, _ = stream_corpus(n, chunk=min(n, 20_000), min_vectors=args.synthetic_vectors,
                                       max_vectors=args.synthetic_vectors, n_queries=args.queries, seed=0,
                                       n_topics=max(100, n // 50), content_noise=0.25, query_noise=0.4, latent_dim=8)
    vec = np.empty((n * args.synthetic_vectors, 128), np.float16)
    ids: list = []
    at = 0
    for cids, v, _, _ in chunks:
        vec[at : at + v.shape[0]] = v
        at += v.shape[0]
        ids.extend(cids)
    offsets = np.arange(n + 1, dtype=np.int64) * args.synthetic_vectors
    return Data(f"synthetic-{n}", vec, offsets, ids, [np.asarray(q, np.float32) for q in queries])


def exact_top(data: Data, k: int, threads: int, block: int = 1 << 20) -> np.ndarray:
    """``(n_queries, k)`` page numbers by exact MaxSim in float32 (pages widened block by block)."""
    scores = np.empty((len(data.queries), data.pages), np.float32)
    p = 0
    while p < data.pages:
        q = int(np.searchsorted(data.offsets, data.offsets[p] + block, side="right")) - 1
        q = max(q, p + 1)
        lo, hi = data.offsets[p], data.offsets[min(q, data.pages)]
        vec = data.vectors[lo:hi].astype(np.float32)
        scores[:, p:q] = maxsim_scores(data.queries, vec, data.offsets[p : q + 1] - lo, n_threads=threads,
                                       check_finite=False)
        p = q
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# -- measuring -------------------------------------------------------------------------------

def dir_bytes(path: str) -> int:
    """Bytes of every file under ``path`` (lock files left out), or of the file ``path``."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(path) for n in ns if not n.endswith(".lock"))


def recall(got: list, exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(e[:k].tolist())) / k for g, e in zip(got, exact)]))


def ndcg(got: list, data: Data, k: int = 10) -> float | None:
    if data.qrels is None:
        return None
    from colprune.study.metrics import ndcg_at

    return float(np.mean([ndcg_at([data.ids[p] for p in g], data.qrels.get(q, {}), k) for g, q in zip(got, data.qids)]))


def timed(search, queries: list, repeats: int) -> tuple[list, float, float]:
    """``(top page numbers per query, batch ms/query, one-at-a-time ms/query)``: medians of ``repeats`` after a warm-up."""
    search(queries)
    search(queries[:1])
    batch, single = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        got = search(queries)
        batch.append(time.perf_counter() - t)
        t = time.perf_counter()
        for q in queries:
            search([q])
        single.append(time.perf_counter() - t)
    n = len(queries)
    return got, statistics.median(batch) / n * 1e3, statistics.median(single) / n * 1e3


def row(system: str, config: str, data: Data, index_bytes: int, build_s: float, got: list, ms_batch: float,
        ms_single: float, exact: np.ndarray, k: int) -> dict:
    return {"system": system, "config": config, "bytes_per_page": index_bytes / data.pages, "build_s": build_s,
            "ms_per_query_single": ms_single, "ms_per_query_batch": ms_batch,
            "recall@10": recall(got, exact, k), "ndcg@10": ndcg(got, data, k)}


# -- colprune --------------------------------------------------------------------------------

def residual_codecs() -> list[str]:
    """The residual codecs this colprune writes (none before issue 22 lands)."""
    from colprune.index import layout

    return [c for c in ("residual2", "residual4") if c in layout.CODECS]


def colprune_rows(data: Data, args, tmp: str, exact: np.ndarray, notes: list) -> list[dict]:
    """float16 exact and two-stage; each residual codec exact and with ``candidates=`` (a codec that
    fails, as one still being written may, is a note, not the end of the run)."""
    rows: list[dict] = []
    for codec in args.codecs:
        if codec != "float16" and codec not in residual_codecs():
            notes.append(f"colprune {codec}: skipped (this colprune has no {codec} codec yet)")
            continue
        try:
            rows += codec_rows(codec, data, args, tmp, exact)
        except Exception as e:  # noqa: BLE001 - reported beside the other rows
            if codec == "float16":
                raise
            notes.append(f"colprune {codec}: failed: {type(e).__name__}: {str(e)[:300]}")
    return rows


def codec_rows(codec: str, data: Data, args, tmp: str, exact: np.ndarray) -> list[dict]:
    """One colprune codec: built once, searched exactly and with each ``--candidates``."""
    pos = {d: i for i, d in enumerate(data.ids)}
    path = os.path.join(tmp, f"colprune-{codec}")
    t0 = time.perf_counter()
    with cp.Index.create(path, dim=data.vectors.shape[1], dtype=codec) as ix:
        ix.add_packed(data.ids, data.vectors, np.diff(data.offsets))
    build_s = time.perf_counter() - t0
    say(f"  colprune {codec}: built in {build_s:.1f} s", args)
    size = dir_bytes(path)
    residual = codec != "float16"
    if residual and "nprobe" not in inspect.signature(cp.Index.search).parameters:
        candidates = []  # candidates= on a residual codec is the centroid index, which comes with nprobe
    else:
        candidates = args.candidates
    probe = {"nprobe": args.nprobe} if residual and args.nprobe is not None else {}
    with cp.Index.open(path) as ix:
        ix.warm(1 << 40)

        def search(queries, **kw):
            hits = ix.search(queries, k=args.k, n_threads=args.threads, **kw)
            return [[pos[h.id] for h in hs] for hs in hits]

        got, mb, ms = timed(search, data.queries, args.repeats)
        rows = [row("colprune", f"{codec} exact", data, size, build_s, got, mb, ms, exact, args.k)]
        for c in candidates:
            got, mb, ms = timed(lambda qs, c=c: search(qs, candidates=c, **probe), data.queries, args.repeats)
            name = f"centroids candidates={c}" + (f", nprobe={args.nprobe}" if probe else "") if residual \
                else f"two-stage candidates={c}"
            rows.append(row("colprune", f"{codec} {name}", data, size, build_s, got, mb, ms, exact, args.k))
    return rows


# -- fast-plaid ------------------------------------------------------------------------------

def plaid_rows(data: Data, args, tmp: str, exact: np.ndarray) -> tuple[list[dict], dict | str]:
    """fast-plaid's rows (from the worker in its own environment), and its versions or why it is skipped."""
    if not args.plaid_python:
        return [], ("skipped: no --plaid-python (python -m venv plaid-venv && plaid-venv/bin/pip install fast-plaid, "
                    "then --plaid-python plaid-venv/bin/python)")
    if not os.path.exists(args.plaid_python):
        return [], f"skipped: --plaid-python {args.plaid_python} does not exist"
    hand = os.path.join(tmp, "plaid")
    os.makedirs(hand)
    np.save(os.path.join(hand, "vectors.npy"), data.vectors)
    np.save(os.path.join(hand, "offsets.npy"), data.offsets)
    np.save(os.path.join(hand, "queries.npy"), np.concatenate(data.queries).astype(np.float32))
    np.save(os.path.join(hand, "query_offsets.npy"), np.r_[0, np.cumsum([q.shape[0] for q in data.queries])])
    cmd = [args.plaid_python, os.path.join(HERE, "plaid_worker.py"), hand, "--nbits", args.plaid_nbits,
           "--k", str(args.k), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return [], f"skipped: the worker failed (exit {res.returncode}): {res.stderr.strip()[-1500:]}"
    with open(os.path.join(hand, "plaid.json")) as f:
        out = json.load(f)
    rows = []
    for r in out["runs"]:
        rows.append(row("fast-plaid", f"nbits={r['nbits']} (n_full_scores={out['n_full_scores']}, "
                        f"n_ivf_probe={out['n_ivf_probe']})", data, r["index_bytes"], r["build_s"], r["top"],
                        r["batch_ms_per_query"], r["single_ms_per_query"], exact, args.k))
        rows[-1]["first_query_s"] = r["first_query_s"]
        rows[-1]["recall@10_single"] = recall(r["top_single"], exact, args.k)
        say(f"  fast-plaid nbits={r['nbits']}: built in {r['build_s']:.1f} s", args)
    return rows, out["versions"]


# -- output ----------------------------------------------------------------------------------

def say(text: str, args) -> None:
    builtins.print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def table(res: dict, args) -> None:
    say(f"{res['name']}: {res['pages']:,} pages, {res['vectors']:,} vectors (dim {res['dim']}), "
        f"{res['queries']} queries; exact top-10 in {res['exact_s']:.1f} s", args)
    say(f"{'system':<11} {'config':<52} {'B/page':>9} {'build s':>8} {'ms/q 1':>8} {'ms/q all':>9} "
        f"{'recall@10':>9} {'nDCG@10':>8}", args)
    for r in res["rows"]:
        nd = "" if r["ndcg@10"] is None else f"{r['ndcg@10']:.3f}"
        say(f"{r['system']:<11} {r['config']:<52} {r['bytes_per_page']:>9,.0f} {r['build_s']:>8.1f} "
            f"{r['ms_per_query_single']:>8.2f} {r['ms_per_query_batch']:>9.2f} {r['recall@10']:>9.3f} {nd:>8}", args)
    for line in res["notes"]:
        say(f"  {line}", args)
    say("", args)


def run_set(data: Data, args) -> dict:
    t0 = time.perf_counter()
    exact = exact_top(data, args.k, args.threads)
    res = {"name": data.name, "pages": data.pages, "vectors": int(data.offsets[-1]), "dim": int(data.vectors.shape[1]),
           "queries": len(data.queries), "exact_s": time.perf_counter() - t0, "notes": [],
           "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        res["rows"] = colprune_rows(data, args, tmp, exact, res["notes"])
        plaid, info = plaid_rows(data, args, tmp, exact)
    res["rows"] += plaid
    if isinstance(info, str):
        res["notes"].append(f"fast-plaid: {info}")
    else:
        res["fast_plaid_versions"] = info
    res["loadavg_after"] = os.getloadavg()
    return res


def parse(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help="real sets (comma-separated; '' for none)")
    ap.add_argument("--study", default=None, help="folder holding each set's study cache STUDY/NAME/full.h5")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"), help="the shared data sets")
    ap.add_argument("--encode", action="store_true", help="encode a missing study cache with MiniLM (slow)")
    ap.add_argument("--synthetic-pages", type=int, default=100_000, help="0: none")
    ap.add_argument("--synthetic-vectors", type=int, default=100)
    ap.add_argument("--queries", type=int, default=50, help="synthetic queries")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--codecs", default="float16,residual2,residual4", help="colprune codecs (float16 always runs)")
    ap.add_argument("--candidates", default="256,1024,4096", help="colprune shortlists (fast-plaid's n_full_scores is 4096)")
    ap.add_argument("--nprobe", type=int, default=None, help="colprune centroids probed per query token (default: the library's)")
    ap.add_argument("--plaid-python", default=os.environ.get("COLPRUNE_PLAID_PYTHON"),
                    help="the Python of fast-plaid's environment (default $COLPRUNE_PLAID_PYTHON)")
    ap.add_argument("--plaid-nbits", default="2,4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--dir", default=None, help="where the indexes are built (default: the system's temporary folder)")
    ap.add_argument("--quick", action="store_true", help="300 synthetic pages of 30 vectors, 4 queries, no real set")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout (the table on stderr)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sets, args.synthetic_pages, args.synthetic_vectors, args.queries = "", 300, 30, 4
        args.repeats, args.candidates = 1, "50"
    args.candidates = [int(c) for c in args.candidates.split(",") if c]
    args.codecs = ["float16", *[c for c in args.codecs.split(",") if c and c != "float16"]]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = {"cpu": cpu_line(), "threads": args.threads, "colprune": cp.__version__, "numpy": np.__version__,
           "loadavg_start": os.getloadavg(), "sets": [], "skipped": {}}
    say(f"{out['cpu']}; {args.threads} threads; colprune {out['colprune']}, numpy {out['numpy']}; "
        f"load average {' '.join(f'{x:.2f}' for x in out['loadavg_start'])}", args)
    datas = [s for s in args.sets.split(",") if s]
    if args.synthetic_pages:
        datas.append("synthetic")
    for name in datas:
        data = synthetic_set(args) if name == "synthetic" else real_set(name, args)
        if isinstance(data, str):
            out["skipped"][name] = data
            say(f"{name}: skipped: {data}\n", args)
            continue
        res = run_set(data, args)
        del data
        out["sets"].append(res)
        table(res, args)
    out["loadavg_end"] = os.getloadavg()
    say(f"load average at the end {' '.join(f'{x:.2f}' for x in out['loadavg_end'])}", args)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
