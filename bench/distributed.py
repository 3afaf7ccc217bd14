"""Scale-out figures on a local Ray: build throughput with 1 and 2 workers, sharded search latency.

    python bench/distributed.py                 # the figures of docs/scaling.md (a few minutes)
    python bench/distributed.py --json          # also one JSON object on stdout
    python bench/distributed.py --quick         # tiny sizes: checks that it runs

Measures, in one run, on a local Ray (``ray.init(num_cpus=2)``):

1. **Build throughput** (pages/s, wall time of the whole build including Ray Data's start,
   the encoder actors' model loading and the shard writers):
   - real pages: the offline MiniLM encoder (``model="minilm"``) on the first ``--pdf-pages``
     pages of ``../shared/data/financebench-dev/pdfs``, with 1 and 2 encoder workers (as many
     shards); next to it the same pages encoded and written in this process, without Ray
     (model load timed separately);
   - precomputed synthetic pages (:func:`colprune.synthetic.make_corpus`): the route and
     write stages only (:func:`colprune.distributed.build_embeddings`), 1 and 2 writers.
2. **Search latency** over 1, 2 and 4 shards holding the same ``--search-pages`` synthetic
   pages, against one index with those pages: a batch of 16 queries and a single query,
   median of ``--repeats``; shards searched in threads, then by Ray actors (one per shard).
   Every sharded result is checked equal to the one index's.
3. **Ray's overhead per query**: Ray latency minus thread latency at equal shard count, and
   the round trip of an empty actor call.

The machine's CPU is printed with the figures (``lscpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from _machine import cpu_model, median_seconds

PDFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "financebench-dev", "pdfs")


def same(a, b) -> bool:
    return [[(h.id, h.score) for h in hs] for hs in a] == [[(h.id, h.score) for h in hs] for hs in b]


def ray_row(rep, small, small_key: str) -> dict:
    """A Ray build's figures, with a small build's seconds (``small_key``) and the marginal rate between the two."""
    marginal = (rep.indexed - small.indexed) / max(1e-9, rep.seconds - small.seconds)
    return {"pages": rep.indexed, "seconds": rep.seconds, "pages_per_s": rep.pages_per_second, small_key: small.seconds,
            "marginal_pages_per_s": marginal}


def bench_build_pdfs(tmp: str, n_pages: int, log) -> dict:
    import colprune as cp
    from colprune.distributed import build
    from colprune.encoders import load_encoder
    from colprune.pipeline import list_pages, read_pages

    out: dict = {"pages": n_pages, "source": "financebench-dev/pdfs (first pages in listing order)"}
    for workers in (1, 2):
        # a 4-page build first: what a build costs before its pages (Ray Data, actors, model loads)
        small = build([PDFS], os.path.join(tmp, f"fb-small-{workers}"), model="minilm", workers=workers,
                      n_shards=workers, limit=4, batch_size=8, pruner="adaptive")
        rep = build([PDFS], os.path.join(tmp, f"fb-{workers}"), model="minilm", workers=workers, n_shards=workers,
                    limit=n_pages, batch_size=8, pruner="adaptive")
        row = out[f"ray_{workers}_workers"] = ray_row(rep, small, "four_page_build_s")
        log(f"  ray build, {workers} worker(s): {rep.indexed} pages in {rep.seconds:.1f} s = {rep.pages_per_second:.2f} pages/s"
            f" (a 4-page build takes {small.seconds:.1f} s; marginal rate {row['marginal_pages_per_s']:.2f} pages/s)")
    t = time.perf_counter()
    enc = load_encoder("minilm")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    jobs = list_pages([PDFS])
    todo = [j for j in jobs][: n_pages + 8]
    texts, ids, meta = [], [], []
    for job, content, reason in read_pages(todo, "text", 144):
        if reason is None and len(ids) < n_pages:
            texts.append(content)
            ids.append(job.id)
            meta.append(job.metadata)
    pages = enc.encode_pages(texts, batch_size=8, signals=["cls"])
    with cp.Index.create(os.path.join(tmp, "fb-local"), enc.dim, encoder="minilm") as ix:
        ix.add(ids, [p.vectors for p in pages], [p.importance for p in pages], patch_mask=[p.patch_mask for p in pages],
               metadata=meta, pruner="adaptive")
    local_s = time.perf_counter() - t
    out["local_no_ray"] = {"pages": len(ids), "seconds": local_s, "pages_per_s": len(ids) / local_s, "model_load_s": load_s}
    log(f"  one process, no Ray: {len(ids)} pages in {local_s:.1f} s = {len(ids) / local_s:.2f} pages/s "
        f"(+ {load_s:.1f} s model load)")
    return out


def bench_build_synthetic(tmp: str, n_pages: int, log) -> dict:
    import colprune as cp
    from colprune.distributed import build_embeddings
    from colprune.synthetic import make_corpus

    c = make_corpus(n_pages, dim=128, min_vectors=100, max_vectors=300, n_queries=1, seed=1)
    emb = [e.astype(np.float32) for e in c.embeddings]
    out: dict = {"pages": n_pages, "vectors_per_page": "100-300", "dim": 128}
    for workers in (1, 2):
        small = build_embeddings(os.path.join(tmp, f"syn-small-{workers}"), c.ids[:20], emb[:20], c.importance[:20],
                                 pruner="adaptive", n_shards=workers, workers=workers)
        rep = build_embeddings(os.path.join(tmp, f"syn-{workers}"), c.ids, emb, c.importance, pruner="adaptive",
                               n_shards=workers, workers=workers)
        row = out[f"ray_{workers}_workers"] = ray_row(rep, small, "twenty_page_build_s")
        log(f"  ray write, {workers} writer(s): {rep.indexed} pages in {rep.seconds:.1f} s = {rep.pages_per_second:.1f} pages/s"
            f" (20 pages take {small.seconds:.1f} s; marginal rate {row['marginal_pages_per_s']:.1f} pages/s)")
    t = time.perf_counter()
    with cp.Index.create(os.path.join(tmp, "syn-local"), 128) as ix:
        ix.add(c.ids, emb, c.importance, pruner="adaptive", commit_every=256)
    s = time.perf_counter() - t
    out["local_no_ray"] = {"pages": n_pages, "seconds": s, "pages_per_s": n_pages / s}
    log(f"  one process, no Ray: {n_pages} pages in {s:.1f} s = {n_pages / s:.1f} pages/s")
    return out


def bench_search(tmp: str, n_pages: int, repeats: int, log) -> dict:
    import colprune as cp
    from colprune.distributed import ShardedIndex
    from colprune.kernels import maxsim_int8_csr
    from colprune.synthetic import make_corpus

    c = make_corpus(n_pages, dim=128, min_vectors=80, max_vectors=160, n_queries=16, query_tokens=20, n_topics=200,
                    latent_dim=8, seed=2)
    one_path = os.path.join(tmp, "search-one")
    with cp.Index.create(one_path, 128) as ix:
        ix.add(c.ids, c.embeddings, c.importance, commit_every=4096)
    one = cp.Index.open(one_path)
    info = one.info()
    out: dict = {"pages": n_pages, "vectors": info["vectors"], "dim": 128, "codec": "float16", "queries": 16,
                 "query_tokens": 20, "repeats": repeats, "rows": []}
    log(f"  {n_pages} pages, {info['vectors']:,} float16 vectors of dim 128; 16 queries x 20 tokens; median of "
        f"{repeats}, configurations interleaved")
    codes, scales, corr, soff = one.snapshot().resident_summary()
    out["summary_bytes_per_page"] = (codes.nbytes + scales.nbytes + np.asarray(corr).nbytes + soff.nbytes) / n_pages
    out["vector_bytes_per_page"] = info["vector_bytes_per_page"]
    out["file_bytes_per_page"] = info["file_bytes_per_page"]
    log(f"  resident first-stage summary {out['summary_bytes_per_page']:.0f} B/page; vectors "
        f"{info['vector_bytes_per_page']:.0f} B/page; files {info['file_bytes_per_page']:.0f} B/page")
    batch, single = list(c.queries), c.queries[0]
    qv = np.concatenate(batch).astype(np.float32)
    qoff = np.r_[0, np.cumsum([len(q) for q in batch])].astype(np.int64)

    # the collections: one index, and 1, 2, 4 shards (threads and Ray), each checked against a
    # one-index reference holding its pages in the sharded order
    configs = [("one index", 1, "one index", one)]
    order = {i: n for n, i in enumerate(c.ids)}
    equal = True
    for n_shards in (1, 2, 4):
        path = os.path.join(tmp, f"search-{n_shards}")
        with ShardedIndex.create(path, n_shards=n_shards, dim=128) as s:
            s.add(c.ids, c.embeddings, c.importance, commit_every=4096)
        s = ShardedIndex.open(path)
        ids = s.ids
        ref_path = os.path.join(tmp, f"search-ref-{n_shards}")
        with cp.Index.create(ref_path, 128) as rx:
            rows = [order[i] for i in ids]
            rx.add(ids, [c.embeddings[r] for r in rows], [c.importance[r] for r in rows], commit_every=4096)
        with cp.Index.open(ref_path) as rx:
            want, want2 = rx.search(batch, k=10), rx.search(batch, k=10, candidates=200)
        shutil.rmtree(ref_path, ignore_errors=True)
        r = ShardedIndex.open(path, ray=True, shards_per_actor=1)
        for index in (s, r):
            equal &= same(index.search(batch, k=10), want) and same(index.search(batch, k=10, candidates=200), want2)
        configs.append((f"{n_shards} shard(s), threads", n_shards, "threads", s))
        configs.append((f"{n_shards} shard(s), Ray", n_shards, "ray", r))
    out["equal_to_one_index"] = bool(equal)
    for _, _, _, index in configs:  # compile (every process, every query shape) and warm
        index.search(batch, k=10)
        index.search(single, k=10)
        index.search(batch, k=10, candidates=200)
    times: dict = {label: {"batch": [], "single": [], "two": []} for label, *_ in configs}
    for _ in range(repeats):
        for label, _, _, index in configs:
            for key, fn in (("batch", lambda: index.search(batch, k=10)), ("single", lambda: index.search(single, k=10)),
                            ("two", lambda: index.search(batch, k=10, candidates=200))):
                t = time.perf_counter()
                fn()
                times[label][key].append(time.perf_counter() - t)
    for label, n_shards, backend, index in configs:
        t = {k: statistics.median(v) for k, v in times[label].items()}
        row = {"backend": backend, "shards": n_shards, "batch16_ms": 1e3 * t["batch"], "per_query_ms": 1e3 * t["batch"] / 16,
               "single_query_ms": 1e3 * t["single"], "twostage_batch16_ms": 1e3 * t["two"]}
        if backend == "ray":
            row["empty_round_trip_ms"] = 1e3 * median_seconds(index.ping, 30)
        out["rows"].append(row)
        log(f"  {label:<22} batch of 16: {row['batch16_ms']:8.1f} ms ({row['per_query_ms']:6.1f} ms/query)   "
            f"one query: {row['single_query_ms']:7.1f} ms   two-stage (200) batch: {row['twostage_batch16_ms']:7.1f} ms")
    # first-stage rate: int8 summaries of every page against 16 queries
    t = median_seconds(lambda: maxsim_int8_csr(qv, qoff, codes, scales, soff, corrections=corr), repeats)
    out["first_stage_page_queries_per_s"] = n_pages * 16 / t
    one_row = next(x for x in out["rows"] if x["backend"] == "one index")
    out["exact_page_queries_per_s"] = n_pages * 16 / (one_row["batch16_ms"] / 1e3)
    log(f"  first stage: {out['first_stage_page_queries_per_s']:,.0f} page-queries/s; exact (one index, batch): "
        f"{out['exact_page_queries_per_s']:,.0f} page-queries/s")
    log(f"  sharded top-10 equal to one index's (exact and two-stage, threads and Ray): {equal}")
    for n in (1, 2, 4):
        th = next(x for x in out["rows"] if x["backend"] == "threads" and x["shards"] == n)
        ry = next(x for x in out["rows"] if x["backend"] == "ray" and x["shards"] == n)
        over = {"shards": n, "batch16_ms": ry["batch16_ms"] - th["batch16_ms"],
                "single_query_ms": ry["single_query_ms"] - th["single_query_ms"],
                "empty_round_trip_ms": ry["empty_round_trip_ms"]}
        out.setdefault("ray_overhead", []).append(over)
        log(f"  Ray overhead, {n} shard(s): one query {over['single_query_ms']:+.1f} ms, batch of 16 "
            f"{over['batch16_ms']:+.1f} ms; empty round trip to {n} actor(s) {over['empty_round_trip_ms']:.2f} ms")
    for _, _, _, index in configs:
        index.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pdf-pages", type=int, default=48, help="financebench pages to build (default 48)")
    ap.add_argument("--synthetic-pages", type=int, default=1500, help="precomputed pages to write (default 1500)")
    ap.add_argument("--search-pages", type=int, default=6000, help="pages searched (default 6000)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: pdfs,synthetic,search")
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.pdf_pages, args.synthetic_pages, args.search_pages, args.repeats = 8, 60, 200, 2
    skip = set(filter(None, args.skip.split(",")))

    import ray

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    cpu = cpu_model()
    result: dict = {"cpu": cpu, "cores": os.cpu_count(), "ray": ray.__version__,
                    "note": "shared VM: 2 cores, used by other processes at the same time"}
    log(f"CPU: {cpu}, {os.cpu_count()} cores (shared with other jobs while measuring); Ray {ray.__version__}, "
        "local, num_cpus=2")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tmp = tempfile.mkdtemp(prefix="colprune-bench-dist-")
    try:
        if "pdfs" not in skip:
            if os.path.isdir(PDFS):
                log("build, real pages (MiniLM, financebench):")
                result["build_pdfs"] = bench_build_pdfs(tmp, args.pdf_pages, log)
            else:
                log(f"skipped the PDF build: {PDFS} is absent")
        if "synthetic" not in skip:
            log("build, precomputed synthetic pages (route + prune + write):")
            result["build_synthetic"] = bench_build_synthetic(tmp, args.synthetic_pages, log)
        if "search" not in skip:
            log("search:")
            result["search"] = bench_search(tmp, args.search_pages, args.repeats, log)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
