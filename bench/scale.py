"""A collection at scale: ingest, open, two-stage and exact streaming search, deletes, compaction, filters.

    python bench/scale.py                      # 1,000,000 pages (~26 GB; checks free disk first)
    python bench/scale.py --pages 50000 --json

Synthetic graded-topic pages (``colprune.synthetic.stream_corpus``: ~100 vectors/page, dim 128,
float16), generated chunk by chunk (generation time is not counted). Prints one JSON object:
ingest pages/s and its ratio to a raw h5py append of the same bytes, open time, first and
steady two-stage latency and recall@10 against exact on the queries, exact streaming latency,
peak RSS while searching (each search phase runs in a fresh process), delete 10% + compact
(time, bytes reclaimed against the deleted pages' bytes, recall after), a filtered search
selecting 1% of the pages. ``--peers`` adds LanceDB (``pip install lancedb``) on the first
``--peer-pages`` pages, side by side with colprune on the same pages.

``--residual`` adds the residual codec (``residual2``) and its centroid index on the same pages:
codebook training time, build time against float16 (both without summaries, chunk by chunk
interleaved on the first ``--raw-pages`` pages), bytes per page, and in a fresh process the first
query and the steady one-at-a-time latency of ``search(candidates=N, nprobe=P)`` for each
``--probe N/P``, recall@10 against exact search on the same decoded vectors (and against float16
exact when that ran), exact search's latency, and peak RSS. ``--residual-only`` skips the float16
phases (ingest, two-stage, delete/compact), e.g. to reach more pages in the same time.

    python bench/scale.py --pages 100000 --residual-only --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from _machine import cpu_line

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus_args(args) -> dict:
    # the two-stage bench's corpus: a shared topic pool (one topic per 50 pages), content near its
    # topics (cosine ~0.7), queries noisier (~0.53), topics graded in an 8-dimensional subspace
    return dict(chunk=args.chunk, n_queries=args.queries, seed=args.seed, n_topics=max(100, args.pages // 50),
                content_noise=0.25, query_noise=0.4, latent_dim=8)


def build(args, path: str, res: dict) -> tuple[list, list]:
    import h5py

    import colprune as cp
    from colprune.synthetic import stream_corpus

    chunks, queries, relevant = stream_corpus(args.pages, **corpus_args(args))
    gen = ingest = raw = raw_nosum = 0.0
    raw_pages = 0
    rawpath = path + ".raw.h5"
    nosum = path + ".nosum"
    with cp.Index.create(path, dim=128, dtype="float16", summary_centroids=args.centroids) as index, \
            cp.Index.create(nosum, dim=128, dtype="float16", summary_centroids=0) as index0, \
            h5py.File(rawpath, "w") as raw_f:
        raw_v = raw_f.create_dataset("vectors", (0, 128), np.float16, maxshape=(None, 128), chunks=(2048, 128))
        raw_o = raw_f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(4096,))
        t = time.perf_counter()
        for ids, vectors, lengths, imp in chunks:
            gen += time.perf_counter() - t
            off = np.zeros(len(ids) + 1, np.int64)
            np.cumsum(lengths, out=off[1:])
            meta = [{"bucket": int(p[5:]) % 100, "n": int(p[5:])} for p in ids]
            t = time.perf_counter()
            index.add_packed(ids, vectors, lengths, imp, metadata=meta)  # the bulk-load path
            ingest += time.perf_counter() - t
            if raw_pages < args.raw_pages:  # the baselines: same bytes, first pages only (disk)
                t = time.perf_counter()
                n0, v0 = raw_o.shape[0] - 1, raw_v.shape[0]
                raw_v.resize(v0 + vectors.shape[0], axis=0)
                raw_v[v0:] = vectors
                raw_o.resize(n0 + 1 + len(ids), axis=0)
                raw_o[n0 + 1 :] = v0 + off[1:]
                raw_f.flush()
                os.fsync(raw_f.id.get_vfd_handle())
                raw += time.perf_counter() - t
                t = time.perf_counter()
                index0.add_packed(ids, vectors, lengths, imp, metadata=meta)
                raw_nosum += time.perf_counter() - t
                raw_pages += len(ids)
            print(f"  {len(index):,} pages ingested ({len(index) / ingest:,.0f} pages/s)", file=sys.stderr, flush=True)
            t = time.perf_counter()
    colprune_rate = args.pages / ingest
    res["ingest"] = {
        "pages_per_s": colprune_rate,
        "seconds": ingest,
        "generate_s": gen,
        "baseline_pages": raw_pages,
        "raw_h5py_pages_per_s": raw_pages / raw,
        "ratio_raw_to_colprune": (raw_pages / raw) / colprune_rate,
        "no_summary_pages_per_s": raw_pages / raw_nosum,
        "ratio_raw_to_colprune_no_summary": (raw_pages / raw) / (raw_pages / raw_nosum),
    }
    shutil.rmtree(nosum, ignore_errors=True)
    os.unlink(rawpath)
    return [q.tolist() for q in queries], relevant


# prepended to every search child: its own peak RSS
PEAK_MB = r"""
import resource
def peak_mb():
    # this process's own high-water mark: ru_maxrss would also count the parent's memory,
    # which Linux carries over through fork and exec
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""


def run_child(script: str, *args: object):
    """Run a search script in a fresh process (``peak_mb()`` defined); its last stdout line, as JSON."""
    res = subprocess.run([sys.executable, "-c", PEAK_MB + script, *map(str, args)], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


SEARCH = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import colprune as cp
path, qfile, mode, cand = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
qs = [np.asarray(q, np.float32) for q in json.load(open(qfile))]
out = {}
t = time.perf_counter()
index = cp.Index.open(path)
out["open_s"] = time.perf_counter() - t
out["pages"] = len(index)
def ids(hits):
    return [[h.id for h in hs] for hs in hits]
if mode in ("two", "all"):
    t = time.perf_counter()
    first = index.search(qs[0], k=10, candidates=cand)
    out["two_stage_first_query_ms"] = (time.perf_counter() - t) * 1e3
    single = []
    for q in qs[1:21]:
        t = time.perf_counter(); index.search(q, k=10, candidates=cand); single.append(time.perf_counter() - t)
    out["two_stage_steady_query_ms"] = float(np.median(single)) * 1e3
    t = time.perf_counter()
    two = index.search(qs, k=10, candidates=cand)
    out["two_stage_batch_ms_per_query"] = (time.perf_counter() - t) * 1e3 / len(qs)
    out["two_stage_ids"] = ids(two)
    out["rss_after_two_stage_mb"] = peak_mb()
if mode in ("exact", "all"):
    t = time.perf_counter()
    exact = index.search(qs, k=10)
    out["exact_batch_ms_per_query"] = (time.perf_counter() - t) * 1e3 / len(qs)
    out["exact_ids"] = ids(exact)
if mode in ("filter", "all"):
    t = time.perf_counter()
    filt = index.search(qs[:10], k=10, where={"bucket": 7})
    out["filtered_1pct_exact_ms_per_query"] = (time.perf_counter() - t) * 1e3 / 10
    out["filtered_ok"] = all(h.metadata["bucket"] == 7 for hs in filt for h in hs)
    t = time.perf_counter()
    index.search(qs[:10], k=10, where={"bucket": 7}, candidates=cand)
    out["filtered_1pct_two_stage_ms_per_query"] = (time.perf_counter() - t) * 1e3 / 10
out["peak_rss_mb"] = peak_mb()
print(json.dumps(out))
"""


def search_child(path: str, qfile: str, mode: str, cand: int) -> dict:
    return run_child(SEARCH, path, qfile, mode, cand)


def recall(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b)]))


LANCE_SEARCH = r"""
import json, sys, time
import numpy as np
import lancedb
db_path, qfile, exact_file, n_flat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
qs = [np.asarray(q, np.float32) for q in json.load(open(qfile))]
exact = json.load(open(exact_file))
table = lancedb.connect(db_path).open_table("pages")
out = {}
for label, kw in (("ivf_pq_default", {}), ("ivf_pq_nprobes64_refine10", {"nprobes": 64, "refine_factor": 10}), ("flat", None)):
    got, ts = [], []
    for q in qs[: n_flat if kw is None else len(qs)]:
        t = time.perf_counter()
        s = table.search(q.tolist(), vector_column_name="vector").limit(10)
        if kw:
            s = s.nprobes(kw["nprobes"]).refine_factor(kw["refine_factor"])
        else:
            s = s.bypass_vector_index()
        got.append(s.to_arrow()["id"].to_pylist())
        ts.append(time.perf_counter() - t)
    rec = float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(got, exact)]))
    out[label] = {"ms_per_query": float(np.median(ts)) * 1e3, "recall@10": rec, "queries": len(got)}
out["peak_rss_mb"] = peak_mb()
print(json.dumps(out))
"""


def peers(args, tmp: str) -> dict:
    """LanceDB on the first ``--peer-pages`` pages, next to colprune on the same pages.

    Each side is searched in a fresh process of its own, whose peak RSS is reported; recall is
    against colprune's exact search (float16 MaxSim; LanceDB's multivector metric is cosine, the
    same on these unit vectors).
    """
    try:
        import lancedb
        import pyarrow as pa
    except ImportError:
        return {"lancedb": "not installed (pip install lancedb)"}
    import colprune as cp
    from colprune.synthetic import stream_corpus

    chunks, queries, _ = stream_corpus(args.peer_pages, **corpus_args(args))
    out: dict = {"pages": args.peer_pages, "lancedb_version": lancedb.__version__}
    path = os.path.join(tmp, "peer.cpx")
    db = lancedb.connect(os.path.join(tmp, "lance"))
    table = None
    t_col = t_lance = 0.0
    with cp.Index.create(path, dim=128, summary_centroids=args.centroids) as index:
        for ids, vectors, lengths, _imp in chunks:
            t = time.perf_counter()
            index.add_packed(ids, vectors, lengths, metadata=[{"bucket": int(p[5:]) % 100} for p in ids])
            t_col += time.perf_counter() - t
            off = np.zeros(len(ids) + 1, np.int32)
            np.cumsum(lengths, out=off[1:])
            t = time.perf_counter()
            inner = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), 128)
            batch = pa.table({"id": pa.array(ids), "vector": pa.ListArray.from_arrays(pa.array(off), inner)})
            if table is None:
                table = db.create_table("pages", data=batch)
            else:
                table.add(batch)
            t_lance += time.perf_counter() - t
    t = time.perf_counter()
    table.create_index(metric="cosine", vector_column_name="vector")
    out["lancedb_ingest_s"], out["lancedb_index_build_s"] = t_lance, time.perf_counter() - t
    out["colprune_ingest_s"] = t_col
    qfile = os.path.join(tmp, "peer-q.json")
    json.dump([q.tolist() for q in queries], open(qfile, "w"))
    col = search_child(path, qfile, "all", args.candidates)
    exact = col["exact_ids"]
    out["colprune"] = {"exact_ms_per_query_batch": col["exact_batch_ms_per_query"], "exact_recall@10": 1.0,
                       "two_stage_ms_per_query": col["two_stage_steady_query_ms"],
                       "two_stage_recall@10": recall(col["two_stage_ids"], exact), "peak_rss_mb": col["peak_rss_mb"]}
    one, _ = search_child_exact_single(path, qfile, None)
    out["colprune"]["exact_ms_per_query_single"] = one
    # the same with a budget that holds the whole store (still far below LanceDB's RSS)
    big, big_rss = search_child_exact_single(path, qfile, 1 << 30)
    out["colprune"]["exact_ms_per_query_single_1gb_budget"] = big
    out["colprune"]["peak_rss_mb_1gb_budget"] = big_rss
    efile = os.path.join(tmp, "peer-exact.json")
    json.dump(exact, open(efile, "w"))
    out["lancedb"] = run_child(LANCE_SEARCH, os.path.join(tmp, "lance"), qfile, efile, args.peer_flat)
    # at equal recall: LanceDB's fastest configuration reaching recall@10 >= 0.99, against exact search
    ok = [v["ms_per_query"] for k, v in out["lancedb"].items() if isinstance(v, dict) and v["recall@10"] >= 0.99]
    if ok:
        best = min(ok)
        out["lancedb_fastest_ms_at_recall_0.99"] = best
        out["speedup_exact_single_at_equal_recall"] = best / one
        out["speedup_exact_single_1gb_budget_at_equal_recall"] = best / big
        out["speedup_exact_batch_at_equal_recall"] = best / col["exact_batch_ms_per_query"]
    out["rss_ratio_colprune_vs_lancedb"] = col["peak_rss_mb"] / out["lancedb"]["peak_rss_mb"]
    return out


EXACT_SINGLE = r"""
import json, sys, time
import numpy as np
import colprune as cp
qs = [np.asarray(q, np.float32) for q in json.load(open(sys.argv[2]))]
budget = int(sys.argv[3])
index = cp.Index.open(sys.argv[1], **({"memory_budget": budget} if budget else {}))
index.search(qs[0], k=10)
ts = []
for q in qs[1:21]:
    t = time.perf_counter(); index.search(q, k=10); ts.append(time.perf_counter() - t)
print(json.dumps([float(np.median(ts)) * 1e3, peak_mb()]))
"""


def search_child_exact_single(path: str, qfile: str, budget: int | None) -> tuple[float, float]:
    """Median ms of exact searches one query at a time (as LanceDB is queried), and the process's peak RSS (MB)."""
    ms, rss = run_child(EXACT_SINGLE, path, qfile, budget or 0)
    return ms, rss


RESIDUAL_SEARCH = r"""
import json, sys, time
import numpy as np
import colprune as cp
path, qfile, probes, exact_queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
qs = [np.asarray(q, np.float32) for q in json.load(open(qfile))]
out = {}
t = time.perf_counter()
index = cp.Index.open(path)
out["open_s"] = time.perf_counter() - t
t = time.perf_counter()
index.warm(kernels=True)  # what a server does once after opening: vectors resident, kernels loaded
out["warm_s"] = time.perf_counter() - t
c0, p0 = probes[0]
t = time.perf_counter()
index.search(qs[0], k=10, candidates=c0, nprobe=p0)
out["first_query_ms"] = (time.perf_counter() - t) * 1e3
out["rss_after_first_query_mb"] = peak_mb()
runs = {}
for c, p in probes:
    got, ts = [], []
    for q in qs:
        t = time.perf_counter(); hs = index.search(q, k=10, candidates=c, nprobe=p); ts.append(time.perf_counter() - t)
        got.append([h.id for h in hs])
    runs[f"{c}/{p}"] = {"candidates": c, "nprobe": p, "steady_ms": float(np.median(ts)) * 1e3,
                        "p90_ms": float(np.percentile(ts, 90)) * 1e3, "ids": got}
    t = time.perf_counter(); index.search(qs, k=10, candidates=c, nprobe=p)
    runs[f"{c}/{p}"]["batch_ms_per_query"] = (time.perf_counter() - t) * 1e3 / len(qs)
out["probes"] = runs
out["rss_after_candidates_mb"] = peak_mb()
t = time.perf_counter()
exact = index.search(qs[:exact_queries], k=10)
out["exact_batch_ms_per_query"] = (time.perf_counter() - t) * 1e3 / exact_queries
t = time.perf_counter()
index.search(qs[0], k=10)
out["exact_single_ms"] = (time.perf_counter() - t) * 1e3
out["exact_ids"] = [[h.id for h in hs] for hs in exact]
out["peak_rss_mb"] = peak_mb()
print(json.dumps(out))
"""


def residual(args, tmp: str, float_exact: list | None) -> dict:
    """The residual codec and its centroid index on the same pages (see the module docstring)."""
    import colprune as cp
    from colprune.synthetic import stream_corpus

    chunks, queries, relevant = stream_corpus(args.pages, **corpus_args(args))
    path, fpath = os.path.join(tmp, "residual.cpx"), os.path.join(tmp, "float16-nosum.cpx")
    codec = args.residual_codec
    out: dict = {"codec": codec}
    t_res = t_f16 = t_res_cmp = 0.0
    cmp_pages = 0
    with cp.Index.create(path, dim=128, dtype=codec, summary_centroids=0) as index, \
            cp.Index.create(fpath, dim=128, dtype="float16", summary_centroids=0) as f16:
        for ids, vectors, lengths, imp in chunks:
            meta = [{"bucket": int(p[5:]) % 100, "n": int(p[5:])} for p in ids]
            if not len(index):
                t = time.perf_counter()
                index.train_codebook(vectors)  # what the first add would do: train on a sample of its vectors
                out["train_codebook_s"] = time.perf_counter() - t
            t = time.perf_counter()
            index.add_packed(ids, vectors, lengths, imp, metadata=meta)
            dt = time.perf_counter() - t
            t_res += dt
            if cmp_pages < args.raw_pages:  # float16 on the same chunk, right after: same load on the machine
                t = time.perf_counter()
                f16.add_packed(ids, vectors, lengths, imp, metadata=meta)
                t_f16 += time.perf_counter() - t
                t_res_cmp += dt
                cmp_pages += len(ids)
            print(f"  residual: {len(index):,} pages ({len(index) / t_res:,.0f} pages/s)", file=sys.stderr, flush=True)
        cb = index.snapshot().codebook
        out["codebook"] = {"n_centroids": int(cb.centroids.shape[0]), "n_trained": int(cb.n_trained),
                           "train_error": float(cb.train_error)}
        info, finfo = index.info(), f16.info()
    out["build"] = {
        "pages_per_s": args.pages / t_res, "seconds": t_res, "compared_pages": cmp_pages,
        "residual_s_on_compared": t_res_cmp, "float16_s_on_compared": t_f16,
        "overhead_vs_float16_pct": (t_res_cmp / t_f16 - 1) * 100 if t_f16 else None,
    }
    out["store"] = {"file_bytes_per_page": info["file_bytes_per_page"], "vector_bytes_per_page": info["vector_bytes_per_page"],
                    "float16_file_bytes_per_page": finfo["file_bytes_per_page"], "holds": info["holds"],
                    "segments": info["segments"]}
    shutil.rmtree(fpath, ignore_errors=True)
    qfile = os.path.join(tmp, "residual-queries.json")
    json.dump([q.tolist() for q in queries], open(qfile, "w"))
    probes = [[int(a) for a in p.split("/")] for p in args.probe.split(",")]
    s = run_child(RESIDUAL_SEARCH, path, qfile, json.dumps(probes), args.exact_queries)
    exact = s.pop("exact_ids")
    n = len(exact)
    for r in s["probes"].values():
        got = r.pop("ids")
        r["recall@10_vs_exact_residual"] = recall(got[:n], exact)
        if float_exact is not None:
            r["recall@10_vs_exact_float16"] = recall(got, float_exact)
        r["top1_is_query_page"] = float(np.mean([bool(g) and g[0] == q for g, q in zip(got, relevant)]))
    if float_exact is not None:
        s["exact_residual_recall@10_vs_exact_float16"] = recall(exact, float_exact[:n])
    s["exact_queries"] = n
    out["search"] = s
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=20_000, help="pages per add_packed call (one segment each)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--candidates", type=int, default=2000, help="two-stage shortlist per query")
    p.add_argument("--centroids", type=int, default=4)
    p.add_argument("--raw-pages", type=int, default=50_000, help="pages timed for the raw h5py baseline")
    p.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", action="store_true")
    p.add_argument("--peer-pages", type=int, default=20_000)
    p.add_argument("--peer-flat", type=int, default=3, help="queries timed on LanceDB's flat search (~80 s each at 20,000 pages)")
    p.add_argument("--json", action="store_true", help="only the JSON object on stdout")
    p.add_argument("--residual", action="store_true", help="add the residual codec and its centroid index")
    p.add_argument("--residual-only", action="store_true", help="only the residual phase (no float16 phases)")
    p.add_argument("--residual-codec", default="residual2", choices=("residual1", "residual2", "residual4"))
    p.add_argument("--probe", default="200/4,1000/4,1000/8,4000/8",
                   help="candidates/nprobe pairs timed through the centroid index (the first also times the first query)")
    p.add_argument("--exact-queries", type=int, default=20, help="queries searched exactly for the recall reference")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="colprune-scale-", dir=args.dir)
    need = (0 if args.residual_only else args.pages * 100 * 256 * 2.2) + args.raw_pages * 100 * 256 * 2
    if args.residual or args.residual_only:
        need += args.pages * 100 * 40 * 1.2
    free = shutil.disk_usage(tmp).free
    if free < need:
        print(f"scale: needs ~{need / 1e9:.0f} GB free in {tmp}, has {free / 1e9:.0f} GB; use --pages or --dir", file=sys.stderr)
        return 2
    res: dict = {"cpu": cpu_line(), "pages": args.pages, "queries": args.queries, "candidates": args.candidates,
                 "centroids_per_page": args.centroids, "load_average": os.getloadavg()}
    try:
        if args.residual_only:
            res["residual"] = residual(args, tmp, None)
            res["load_average_after"] = os.getloadavg()
            print(json.dumps(res) if args.json else json.dumps(res, indent=1))
            return 0
        path = os.path.join(tmp, "pages.cpx")
        queries, relevant = build(args, path, res)
        print("PHASE " + json.dumps(res["ingest"]), file=sys.stderr, flush=True)
        qfile = os.path.join(tmp, "queries.json")
        json.dump(queries, open(qfile, "w"))
        import colprune as cp

        with cp.Index.open(path) as index:
            info = index.info()
        res["store"] = {"file_bytes": info["file_bytes"], "vector_bytes": info["holds"]["vectors"],
                        "summary_bytes": info["holds"]["summaries"], "segments": info["segments"]}
        s = search_child(path, qfile, "all", args.candidates)
        exact = s.pop("exact_ids")
        two = s.pop("two_stage_ids")
        s["two_stage_recall@10"] = recall(two, exact)
        s["exact_top1_is_query_page"] = float(np.mean([e[0] == r for e, r in zip(exact, relevant)]))
        # the page each query was drawn from: found by the shortlist? (ranks 2-10 are near-ties of one topic)
        s["two_stage_top1_is_query_page"] = float(np.mean([bool(t) and t[0] == r for t, r in zip(two, relevant)]))
        res["search"] = s
        if args.residual:
            res["residual"] = residual(args, tmp, exact)
            print("PHASE " + json.dumps(res["residual"]), file=sys.stderr, flush=True)
        print("PHASE " + json.dumps({k: res[k] for k in ("ingest", "store", "search")}), file=sys.stderr, flush=True)
        # delete 10%, compact, search again
        with cp.Index.open(path, mode="a") as index:
            gone = [i for i in index.ids if int(i[5:]) % 10 == 3]
            gone_bytes = sum(index.get(i).vectors.nbytes for i in gone[:2000]) / min(2000, len(gone)) * len(gone)
            t = time.perf_counter()
            index.delete(gone)
            t_del = time.perf_counter() - t
            t = time.perf_counter()
            c = index.compact()
            t_comp = time.perf_counter() - t
        s2 = search_child(path, qfile, "two", args.candidates) if args.pages <= 2_000_000 else {}
        exact2 = search_child(path, qfile, "exact", args.candidates)["exact_ids"]
        res["delete_compact"] = {
            "deleted_pages": len(gone), "delete_s": t_del, "compact_s": t_comp,
            "bytes_reclaimed": c["bytes_before"] - c["bytes_after"], "deleted_vector_bytes": gone_bytes,
            "reclaimed_share_of_deleted": (c["bytes_before"] - c["bytes_after"]) / gone_bytes,
            "two_stage_recall@10_after": recall(s2.get("two_stage_ids", []), exact2) if s2 else None,
            "deleted_never_returned": not any(int(h[5:]) % 10 == 3 for hs in exact2 for h in hs),
        }
        if args.peers:
            res["peers"] = peers(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        print(json.dumps(res, indent=1))
    else:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
