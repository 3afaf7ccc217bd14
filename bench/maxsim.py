"""MaxSim speed, side by side: colprune against the scorers a Python user would otherwise pick.

One run, one data set, one thread count. Every timing is the median of ``--repeats`` runs after
a warm-up, the methods interleaved within each repeat so machine drift hits them alike.
Throughput is in query-page pairs per second ("pages/s": pages scored per second per query).

    python bench/maxsim.py                 # table
    python bench/maxsim.py --json          # one JSON object on stdout (the table on stderr)
    python bench/maxsim.py --quick --json  # seconds; what the test suite runs
    NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell NUMBA_CACHE_DIR=$(mktemp -d) python bench/maxsim.py
                                           # the AVX2 kernels (and NumPy's AVX2 BLAS) on an AVX-512 CPU

It prints where it ran first: CPU model, the kernel family and SIMD features colprune compiled
for (:func:`colprune.kernels.backend_info`), NumPy's BLAS and its threads, the load average.
The "shapes" table times the query shapes users send (16 queries x 32 tokens, 32 x 20, one
query of 20) on pruned (100-300 vectors) and unpruned (700-1,030) pages: float32, float16 and
int8 kernels (and residual2, ColBERTv2/PLAID codes) against the NumPy loop and every peer.

Peers are optional (``pip install -e ".[bench]"``; PyLate and colpali-engine ``--no-deps``):
colpali-engine's ``score_multi_vector``, maxsim-cpu's ``maxsim_scores_variable``, PyLate's
``colbert_scores`` (``pylate.scores.colbert`` in 1.x; ``pylate.scores`` before) with a documents mask
and its torch backend, transformers' ``score_retrieval``. A missing peer is
reported, not fatal.

Data: :func:`colprune.synthetic.make_corpus`: ColPali-like pages (L2-normalised, with importance
scores) whose topics lie in an 8-dimensional subspace, so relevance is graded and recall@10 has
real neighbours to find. The codec table is repeated on the same pages without that structure
(a plateau of near-tied scores below the relevant page: a stress case for any approximate
first stage) and on real embeddings: MiniLM token vectors of ../shared's MS MARCO passages and
queries (encoded once, cached in ~/.cache/colprune).
"""

from __future__ import annotations

import argparse
import os
import sys


def _early_threads() -> int:
    # Thread pools read their size at import: set it before numpy/torch/maxsim-cpu load.
    n = os.cpu_count() or 1
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = int(sys.argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


THREADS = _early_threads()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import builtins  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import cpu_model  # noqa: E402  (bench/, beside this script)
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import colprune as cp  # noqa: E402
from colprune.encoders.colpali_engine import import_skipping_init  # noqa: E402
from colprune.kernels import maxsim_reference  # noqa: E402
from colprune.synthetic import make_corpus  # noqa: E402

torch.set_num_threads(THREADS)
LIBRARY_PEERS = ("colpali-engine", "maxsim-cpu", "pylate", "transformers")


# -- peers -------------------------------------------------------------------------------

def load_peers(docs_t: list, docs_np: list) -> tuple[dict[str, Callable], dict[str, str]]:
    """Scorers ``f(list of (m, dim) float32 arrays) -> (n_queries, n_docs)``, and why any is missing."""
    peers: dict[str, Callable] = {}
    missing: dict[str, str] = {}
    try:
        pu = import_skipping_init("colpali_engine", "utils.processing_utils")
        score = pu.BaseVisualRetrieverProcessor.score_multi_vector
        peers["colpali-engine"] = lambda qs: score([torch.from_numpy(q) for q in qs], docs_t, device="cpu").numpy()
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        missing["colpali-engine"] = f"{type(e).__name__}: {e}"
    try:
        import maxsim_cpu

        peers["maxsim-cpu"] = lambda qs: np.stack([np.asarray(maxsim_cpu.maxsim_scores_variable(q, docs_np)) for q in qs])
    except Exception as e:  # noqa: BLE001
        missing["maxsim-cpu"] = f"{type(e).__name__}: {e}"
    try:
        colbert_scores, where = _pylate_colbert_scores()
        padded = torch.nn.utils.rnn.pad_sequence(docs_t, batch_first=True)
        mask = torch.zeros(padded.shape[:2])
        for i, d in enumerate(docs_t):
            mask[i, : d.shape[0]] = 1
        kw = {"backend": "torch"} if "backend" in inspect.signature(colbert_scores).parameters else {}
        peers["pylate"] = lambda qs: colbert_scores(
            torch.from_numpy(np.stack(qs)), padded, documents_mask=mask, **kw
        ).numpy()
        PEER_SOURCES["pylate"] = where
    except Exception as e:  # noqa: BLE001
        missing["pylate"] = f"{type(e).__name__}: {e}"
    try:
        from transformers.models.colpali.processing_colpali import ColPaliProcessor

        proc = ColPaliProcessor.__new__(ColPaliProcessor)  # score_retrieval needs no tokenizer
        peers["transformers"] = lambda qs: proc.score_retrieval(
            [torch.from_numpy(q) for q in qs], docs_t, output_device="cpu"
        ).float().numpy()
    except Exception as e:  # noqa: BLE001
        missing["transformers"] = f"{type(e).__name__}: {e}"
    wanted = getattr(load_peers, "only", None)
    if wanted:
        peers = {k: v for k, v in peers.items() if k in wanted}
        missing = {k: v for k, v in missing.items() if k in wanted}
    return peers, missing


PEER_SOURCES: dict[str, str] = {}


def _pylate_colbert_scores():
    """PyLate's ColBERT scorer wherever this version keeps it (``scores.colbert`` in 1.x,
    ``scores.scores`` or the ``scores`` package before), importing only the scoring modules
    (the package ``__init__`` pulls ``datasets`` and models)."""
    errors = []
    for dep in ("utils.tensor",):
        try:
            import_skipping_init("pylate", dep)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{dep}: {e}")
    for mod in ("scores.colbert", "scores.scores", "scores"):
        try:
            m = import_skipping_init("pylate", mod)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{mod}: {type(e).__name__}: {e}")
            continue
        if hasattr(m, "colbert_scores"):
            return m.colbert_scores, f"pylate.{mod}.colbert_scores"
    raise ImportError("no colbert_scores in pylate (" + "; ".join(errors) + ")")


def numpy_loop(docs_np: list) -> Callable:
    """One (m_total x dim) @ (dim x n) BLAS GEMM per page, then max and sum: the plain baseline."""

    def run(qs):
        qall = np.concatenate(qs)
        bounds = np.cumsum([0] + [q.shape[0] for q in qs])
        out = np.empty((len(qs), len(docs_np)), np.float32)
        for d, doc in enumerate(docs_np):
            best = (qall @ doc.T).max(axis=1)
            out[:, d] = np.add.reduceat(best, bounds[:-1])
        return out

    return run


# -- where it ran ------------------------------------------------------------------------

def machine() -> dict:
    """CPU model, the kernels' target and SIMD features, NumPy's BLAS and threads, load."""
    blas = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
            for p in threadpool_info() if p.get("user_api") == "blas"]
    env = {k: os.environ[k] for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "OPENBLAS_CORETYPE", "COLPRUNE_KERNELS")
           if k in os.environ}
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "kernels": cp.kernels.backend_info(), "blas": blas,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "env": env, "peer_sources": dict(PEER_SOURCES)}


def print_machine(m: dict, print) -> None:  # noqa: A002
    k = m["kernels"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
                     for b in m["blas"]) or "none found"
    print(f"CPU: {m['cpu_model']} ({m['cores']} cores), load average {m['load_average']}")
    print(f"colprune kernels: {k['backend']} for {k['target_cpu']}{' (NUMBA_CPU_NAME)' if k['retargeted'] else ''}, "
          f"features {' '.join(k['features'])}; int8 {k['int8']}")
    print(f"NumPy BLAS: {blas}" + (f"; env {m['env']}" if m["env"] else ""))


# -- timing ------------------------------------------------------------------------------

def time_all(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn, after one warm-up call, repeats interleaved."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def gemm_roofline(q_rows: int, n_vectors: int, dim: int, repeats: int) -> dict[str, float]:
    """FLOP rate of one large float32 GEMM with the batch's total work, by NumPy and by torch."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((q_rows, dim), dtype=np.float32)
    step = 65536
    b = rng.standard_normal((min(step, n_vectors), dim), dtype=np.float32)
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    n_chunks = max(1, round(n_vectors / b.shape[0]))
    out_np = np.empty((q_rows, b.shape[0]), np.float32)
    out_t = torch.empty((q_rows, b.shape[0]))

    def run_np():
        for _ in range(n_chunks):
            np.matmul(a, b.T, out=out_np)

    def run_torch():
        for _ in range(n_chunks):
            torch.matmul(at, bt.T, out=out_t)

    flops = 2.0 * q_rows * b.shape[0] * dim * n_chunks
    t = time_all({"numpy": run_np, "torch": run_torch}, repeats)
    return {k: flops / v / 1e9 for k, v in t.items()}


# -- the bench ---------------------------------------------------------------------------

def run(args) -> dict:
    corpus = make_corpus(args.pages, dim=args.dim, min_vectors=args.min_vectors, max_vectors=args.max_vectors,
                         n_queries=args.queries, query_tokens=args.tokens, latent_dim=args.latent_dim,
                         content_noise=0.25, query_noise=0.4, seed=0)
    docs_np = corpus.embeddings
    docs_t = [torch.from_numpy(d) for d in docs_np]
    queries = corpus.queries
    vectors = np.concatenate(docs_np)
    offsets = np.r_[0, np.cumsum([d.shape[0] for d in docs_np])].astype(np.int64)
    v16 = vectors.astype(np.float16)
    n_pairs = len(queries) * len(docs_np)
    total_rows = sum(q.shape[0] for q in queries)
    flops = 2.0 * total_rows * vectors.shape[0] * args.dim
    reference = maxsim_reference(queries, vectors, offsets)
    res: dict = {"threads": THREADS, "pages": len(docs_np), "queries": len(queries), "query_tokens": args.tokens,
                 "vectors": int(vectors.shape[0]), "dim": args.dim, "repeats": args.repeats}

    peers, missing = ({}, {}) if args.no_peers else load_peers(docs_t, docs_np)
    res["missing_peers"] = missing
    res["machine"] = machine()

    def ours(v, qs=None):
        return lambda: cp.kernels.maxsim_scores(queries if qs is None else qs, v, offsets, check_finite=False)

    batch = {"colprune-float32": ours(vectors), "colprune-float16": ours(v16),
             "numpy-loop": lambda: numpy_loop(docs_np)(queries)}
    batch.update({k: (lambda f=f: f(queries)) for k, f in peers.items()})

    # correctness first: every method's scores against the float64 reference
    res["max_abs_diff"] = {k: float(np.abs(np.asarray(f(), np.float32) - reference).max()) for k, f in batch.items()}
    with threadpool_limits(THREADS):
        t = time_all(batch, args.repeats)
    res["pages_per_s"] = {k: n_pairs / v for k, v in t.items()}
    res["batch_ms"] = {k: v * 1e3 for k, v in t.items()}
    present_peers = [p for p in LIBRARY_PEERS if p in res["pages_per_s"]]
    best_peer = max(present_peers, key=lambda p: res["pages_per_s"][p]) if present_peers else None
    ours32 = res["pages_per_s"]["colprune-float32"]
    res["best_peer"] = best_peer
    res["ratio_vs_best_peer"] = ours32 / res["pages_per_s"][best_peer] if best_peer else None
    res["ratio_vs_numpy_loop"] = ours32 / res["pages_per_s"]["numpy-loop"]
    res["float16_vs_float32"] = res["pages_per_s"]["colprune-float16"] / ours32
    roof = gemm_roofline(total_rows, vectors.shape[0], args.dim, args.repeats)
    res["gemm_gflops"] = roof
    res["colprune_gflops"] = flops / t["colprune-float32"] / 1e9
    res["fraction_of_gemm_roofline"] = res["colprune_gflops"] / max(roof.values())

    # single query: the interactive case
    q1 = [queries[0]]
    single = {"colprune-float32": ours(vectors, q1), "colprune-float16": ours(v16, q1),
              "numpy-loop": lambda: numpy_loop(docs_np)(q1)}
    single.update({k: (lambda f=f: f(q1)) for k, f in peers.items()})
    with threadpool_limits(THREADS):
        t1 = time_all(single, max(args.repeats, 7))
    res["single_query_ms"] = {k: v * 1e3 for k, v in t1.items()}
    if best_peer:
        best_single = min(res["single_query_ms"][p] for p in present_peers)
        res["single_query_ratio_vs_best_peer"] = best_single / res["single_query_ms"]["colprune-float32"]

    # search time follows the kept vector count
    pruner = cp.TopRatio(0.5)
    kept = [pruner.prune(d, imp) for d, imp in zip(docs_np, corpus.importance)]
    pv = np.concatenate([k.vectors for k in kept])
    po = np.r_[0, np.cumsum([k.n_kept for k in kept])].astype(np.int64)
    tp = time_all({"full": ours(vectors),
                   "pruned": lambda: cp.kernels.maxsim_scores(queries, pv, po, check_finite=False)}, args.repeats)
    res["pruned_50pct"] = {"keep_ratio": pv.shape[0] / vectors.shape[0], "speedup": tp["full"] / tp["pruned"]}

    if args.shapes:
        res["shapes"] = bench_shapes(args)
    if args.shapes_only:
        return res

    with tempfile.TemporaryDirectory() as tmp:
        full = _index(os.path.join(tmp, "synthetic.h5"), corpus)
        res["score_spread"] = score_spread(full, queries)
        res["codecs"] = bench_codecs(full, queries, tmp, args.rerank_depths, args.repeats)
        full.close()
        if not args.quick:  # the same pages without graded topics: a plateau of near-ties below rank 1
            flat = make_corpus(args.pages, dim=args.dim, min_vectors=args.min_vectors, max_vectors=args.max_vectors,
                               n_queries=args.queries, query_tokens=args.tokens, seed=0)
            full = _index(os.path.join(tmp, "near_ties.h5"), flat)
            res["near_ties"] = {"score_spread": score_spread(full, flat.queries),
                                "codecs": bench_codecs(full, flat.queries, tmp, args.rerank_depths, args.repeats,
                                                      codecs=("binary",))}
            full.close()
    if args.real and not args.quick:
        if os.path.isdir(args.real):
            res["real"] = bench_real(args)
        else:
            res["real"] = {"missing": f"{args.real} not found"}
    return res


def bench_shapes(args) -> dict:
    """Batch scoring on the shapes users send, each method against the NumPy loop and peers."""
    out: dict = {}
    for pages_spec in args.shape_pages:
        rng_part, n_pages = pages_spec.split(":")
        lo, hi = (int(x) for x in rng_part.split("-"))
        n_pages = max(8, int(n_pages) // (10 if args.quick else 1))
        corpus = make_corpus(n_pages, dim=args.dim, min_vectors=lo, max_vectors=hi, n_queries=1, query_tokens=4,
                             latent_dim=args.latent_dim, seed=1)
        docs_np = corpus.embeddings
        docs_t = [torch.from_numpy(d) for d in docs_np]
        vectors = np.concatenate(docs_np)
        offsets = np.r_[0, np.cumsum([d.shape[0] for d in docs_np])].astype(np.int64)
        v16 = vectors.astype(np.float16)
        codes, scales = cp.kernels.quantize_int8(vectors)
        corr = cp.kernels.int8_corrections(codes)
        # residual2 (ColBERTv2/PLAID codes, 34 B a vector at dim 128): a codebook trained on a sample
        sample = vectors[np.random.default_rng(0).choice(vectors.shape[0], min(vectors.shape[0], 32768), replace=False)]
        cent = cp.kernels.train_centroids(sample, min(cp.kernels.codebook_size(vectors.shape[0]), 1024), iters=4)
        cut, wts = cp.kernels.residual_buckets(sample - cent[cp.kernels.assign_centroids(sample, cent)], 2)
        rcodes, rpacked = cp.kernels.encode_residual(vectors, cent, cut, 2)
        peers, _ = ({}, {}) if args.no_peers else load_peers(docs_t, docs_np)
        for shape in args.shapes:
            n_q, m = (int(x) for x in shape.split("x"))
            rng = np.random.default_rng(n_q * 1000 + m)
            # queries near pages' vectors, as real queries are: a noisy token of a random page
            qs = []
            for _ in range(n_q):
                page = docs_np[rng.integers(len(docs_np))]
                picked = page[rng.integers(page.shape[0], size=m)]
                q = picked + 0.4 * rng.standard_normal((m, args.dim)).astype(np.float32) / np.sqrt(args.dim)
                qs.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
            fns = {
                "colprune-float32": lambda: cp.kernels.maxsim_scores(qs, vectors, offsets, check_finite=False),
                "colprune-float16": lambda: cp.kernels.maxsim_scores(qs, v16, offsets, check_finite=False),
                "colprune-int8": lambda: cp.kernels.maxsim_int8(qs, codes, scales, offsets, corrections=corr),
                "colprune-residual2": lambda: cp.kernels.maxsim_residual_csr(qs, rcodes, rpacked, offsets, cent, wts, 2),
                "numpy-loop": lambda: numpy_loop(docs_np)(qs),
            }
            fns.update({k: (lambda f=f: f(qs)) for k, f in peers.items()})
            with threadpool_limits(THREADS):
                t = time_all(fns, max(args.repeats, 5))
            pps = {k: n_q * len(docs_np) / v for k, v in t.items()}
            present = [p for p in LIBRARY_PEERS if p in pps]
            best = max(present, key=pps.get) if present else None
            f32 = pps["colprune-float32"]
            out[f"{shape} / {lo}-{hi}"] = {
                "queries": n_q, "query_tokens": m, "pages": len(docs_np), "vectors": int(vectors.shape[0]),
                "pages_per_s": pps, "best_peer": best,
                "float32_vs_numpy": f32 / pps["numpy-loop"],
                "float16_vs_numpy": pps["colprune-float16"] / pps["numpy-loop"],
                "float32_vs_maxsim_cpu": f32 / pps["maxsim-cpu"] if "maxsim-cpu" in pps else None,
                "float16_vs_maxsim_cpu": pps["colprune-float16"] / pps["maxsim-cpu"] if "maxsim-cpu" in pps else None,
                "float32_vs_best_peer": f32 / pps[best] if best else None,
                "int8_vs_float32": pps["colprune-int8"] / f32,
                "residual2_vs_float16": pps["colprune-residual2"] / pps["colprune-float16"],
            }
    return out


def print_shapes(shapes: dict, print) -> None:  # noqa: A002
    print("\nquery shapes (batch scoring, pages/s; ratios of colprune float32 / float16 / int8 / residual2)")
    print(f"  {'shape / page vectors':<22}{'float32':>9}{'float16':>9}{'int8':>9}{'numpy':>9}{'best peer':>24}"
          f"  f32/np  f16/np  f32/mxc  f16/mxc  i8/f32  r2/f16")
    for k, r in shapes.items():
        p = r["pages_per_s"]
        bp = f"{r['best_peer']} {p[r['best_peer']]:,.0f}" if r["best_peer"] else "-"
        print(f"  {k:<22}{p['colprune-float32']:>9,.0f}{p['colprune-float16']:>9,.0f}{p['colprune-int8']:>9,.0f}"
              f"{p['numpy-loop']:>9,.0f}{bp:>24}  {r['float32_vs_numpy']:>6.2f}  {r['float16_vs_numpy']:>6.2f}  "
              f"{_num2(r['float32_vs_maxsim_cpu'])}  {_num2(r['float16_vs_maxsim_cpu'])}  {r['int8_vs_float32']:>6.2f}"
              f"  {r['residual2_vs_float16']:>6.2f}")


def _num2(x) -> str:
    return f"{'-':>7}" if x is None else f"{x:>7.2f}"


def _index(path: str, corpus) -> cp.Index:
    with cp.Index.create(path, dim=corpus.embeddings[0].shape[1], dtype="float32") as ix:
        ix.add(corpus.ids, corpus.embeddings, corpus.importance)
    return cp.Index.open(path)


def bench_codecs(full: cp.Index, queries, tmp: str, depths, repeats: int, *, codecs=("float16", "int8", "binary")) -> dict:
    """End-to-end ``Index.search(k=10)`` per codec derived from the float32 index ``full``:
    time, speedup and recall@10 against exact float32 top-10, bytes per page."""
    indexes = {"float32": full}
    for codec in codecs:
        indexes[codec] = full.derive(os.path.join(tmp, f"{os.path.basename(full.path)}.{codec}.h5"), "none", dtype=codec)
    for ix in indexes.values():
        ix.warm(1 << 40)  # every vector in memory: time the kernels, not the disk
    searches = {codec: (lambda ix=ix: ix.search(queries, k=10)) for codec, ix in indexes.items() if codec != "binary"}
    if "binary" in indexes:
        searches["binary-norerank"] = lambda: indexes["binary"].search(queries, k=10, rerank=0)
        for depth in depths:
            searches[f"binary-rerank{depth}"] = lambda d=depth: indexes["binary"].search(queries, k=10, rerank=d)
    with threadpool_limits(THREADS):
        ts = time_all(searches, repeats)
    exact = [{h.id for h in hs} for hs in searches["float32"]()]
    out: dict = {}
    for name, f in searches.items():
        ix = indexes["binary" if name.startswith("binary") else name]
        info = ix.info()
        got = [{h.id for h in hs} for hs in f()]
        out[name] = {
            "search_ms": ts[name] * 1e3,
            "speedup_vs_float32": ts["float32"] / ts[name],
            "recall@10": float(np.mean([len(g & e) / len(e) for g, e in zip(got, exact)])),
            "bytes_per_page": info["vector_bytes_per_page"],
            "bytes_per_page_with_rerank_copy": info["vector_bytes_per_page"]
            + (info["vectors"] * full.dim * 2 / info["docs"] if name.startswith("binary-rerank") else 0),
        }
    if "int8" in indexes:
        kernels = {codec: (lambda ix=ix: ix.scores(queries)) for codec, ix in indexes.items() if codec in ("float32", "int8")}
        with threadpool_limits(THREADS):
            tk = time_all(kernels, repeats)
        out["int8_kernel_vs_float32_kernel"] = tk["float32"] / tk["int8"]
    for codec, ix in indexes.items():
        if codec != "float32":
            ix.close()
    return out


def score_spread(full: cp.Index, queries) -> dict:
    """How separated the exact top-10 is: medians over queries of score gaps by rank."""
    s = -np.sort(-full.scores(queries), axis=1)
    n = s.shape[1]
    return {"gap_10_11": float(np.median(s[:, 9] - s[:, 10])) if n > 10 else None,
            "spread_10_100": float(np.median(s[:, 9] - s[:, 99])) if n > 99 else None,
            "tokens_per_query": float(np.mean([q.shape[0] for q in queries]))}


def bench_real(args) -> dict:
    """Codecs on real embeddings: MiniLM token vectors of a BEIR text collection and its queries."""
    from colprune.study import encode_dataset

    full_path, queries, _ = encode_dataset(args.real, "minilm", args.real_cache, progress=sys.stderr.isatty())
    res: dict = {"dataset": os.path.basename(os.path.normpath(args.real)), "encoder": "minilm"}
    with tempfile.TemporaryDirectory() as tmp, cp.Index.open(full_path) as f16:
        full = f16.derive(os.path.join(tmp, "float32.h5"), "none", dtype="float32")  # same values, widened
        res.update(pages=len(full), vectors=full.info()["vectors"], dim=full.dim, queries=len(queries))
        res["score_spread"] = score_spread(full, queries)
        res["codecs"] = bench_codecs(full, queries, tmp, args.rerank_depths, args.repeats)
        full.close()
    return res


def print_table(res: dict, file=None) -> None:
    print = functools.partial(builtins.print, file=file or sys.stdout)  # noqa: A001
    print_machine(res["machine"], print)
    print(f"{res['pages']} pages ({res['vectors']:,} vectors, dim {res['dim']}), {res['queries']} queries x "
          f"{res['query_tokens']} tokens, {res['threads']} threads, median of {res['repeats']}")
    print(f"\nbatch mode{'':22}pages/s   ms/batch  max|diff| vs float64")
    for k in sorted(res["pages_per_s"], key=lambda k: -res["pages_per_s"][k]):
        print(f"  {k:<28}{res['pages_per_s'][k]:>9,.0f}  {res['batch_ms'][k]:>9.1f}  {res['max_abs_diff'][k]:.1e}")
    for name, why in res["missing_peers"].items():
        print(f"  {name:<28}missing ({why[:70]})")
    if res["ratio_vs_best_peer"]:
        print(f"colprune float32 = {res['ratio_vs_best_peer']:.2f}x the best library peer ({res['best_peer']}), "
              f"{res['ratio_vs_numpy_loop']:.2f}x the NumPy loop; float16 storage {res['float16_vs_float32']:.2f}x float32")
    g = res["gemm_gflops"]
    print(f"roofline: one large float32 GEMM {max(g.values()):.1f} GFLOP/s (numpy {g['numpy']:.1f}, torch {g['torch']:.1f}); "
          f"colprune {res['colprune_gflops']:.1f} GFLOP/s = {res['fraction_of_gemm_roofline']:.0%}")
    print("\nsingle query (one query, all pages)        ms")
    for k in sorted(res["single_query_ms"], key=res["single_query_ms"].get):
        print(f"  {k:<28}{res['single_query_ms'][k]:>9.1f}")
    if "single_query_ratio_vs_best_peer" in res:
        print(f"colprune float32 = {res['single_query_ratio_vs_best_peer']:.2f}x the best library peer")
    if res.get("shapes"):
        print_shapes(res["shapes"], print)
    p = res["pruned_50pct"]
    print(f"\npruned to {p['keep_ratio']:.0%} of vectors: search {p['speedup']:.2f}x faster than unpruned")
    if "score_spread" not in res:  # --shapes-only
        return
    sp = res["score_spread"]
    print_codecs(res["codecs"], f"synthetic pages with graded topics (gap rank 10 to 11: {_num(sp['gap_10_11'])}, "
                                f"rank 10 to 100: {_num(sp['spread_10_100'])})", print)
    if "near_ties" in res:
        sp = res["near_ties"]["score_spread"]
        print_codecs(res["near_ties"]["codecs"], f"the same pages without graded topics: near-ties (gap 10 to 11: "
                                                 f"{_num(sp['gap_10_11'])}, 10 to 100: {_num(sp['spread_10_100'])})", print)
    real = res.get("real")
    if real and "missing" in real:
        print(f"\nreal embeddings: skipped ({real['missing']})")
    elif real:
        sp = real["score_spread"]
        print_codecs(real["codecs"], f"real embeddings: {real['dataset']}, {real['encoder']} token vectors, {real['pages']:,} "
                                     f"pages, {real['vectors']:,} vectors, dim {real['dim']}, {real['queries']} queries "
                                     f"(gap 10 to 11: {_num(sp['gap_10_11'])}, 10 to 100: {_num(sp['spread_10_100'])})", print)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_codecs(c: dict, title: str, print) -> None:  # noqa: A002
    print(f"\n{title}\ncodec (Index.search, k=10)   ms/batch  vs float32  recall@10  bytes/page")
    for k, v in c.items():
        if isinstance(v, dict):
            extra = f" (+{v['bytes_per_page_with_rerank_copy'] - v['bytes_per_page']:,.0f} float16 rerank copy)" \
                if v["bytes_per_page_with_rerank_copy"] != v["bytes_per_page"] else ""
            print(f"  {k:<26}{v['search_ms']:>9.1f}  {v['speedup_vs_float32']:>9.2f}x  {v['recall@10']:>9.3f}  "
                  f"{v['bytes_per_page']:>10,.0f}{extra}")
    if "int8_kernel_vs_float32_kernel" in c:
        print(f"int8 kernel = {c['int8_kernel_vs_float32_kernel']:.2f}x the float32 kernel")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--min-vectors", type=int, default=300)
    ap.add_argument("--max-vectors", type=int, default=1028)
    ap.add_argument("--queries", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=THREADS, help="threads for every method (default: all cores)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latent-dim", type=int, default=8,
                    help="topic subspace of the synthetic pages (graded relevance; see colprune.synthetic)")
    ap.add_argument("--rerank-depths", default="50,100,200", help="binary shortlist sizes to rerank exactly")
    ap.add_argument("--real", default=os.path.join(ROOT, "..", "shared", "data", "msmarco-5k"),
                    help="BEIR text collection for the codec table on real MiniLM embeddings ('' to skip)")
    ap.add_argument("--real-cache", default=os.path.join(os.path.expanduser("~"), ".cache", "colprune", "bench-msmarco"),
                    help="where the real collection's encoding is cached between runs")
    ap.add_argument("--shapes", default="16x32,32x20,1x20",
                    help="query shapes (n_queries x tokens) for the shapes table ('' to skip)")
    ap.add_argument("--shape-pages", default="100-300:1000,700-1030:300",
                    help="page vector ranges and page counts for the shapes table: LO-HI:PAGES,...")
    ap.add_argument("--shapes-only", action="store_true", help="stop after the batch, single-query and shapes tables")
    ap.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    ap.add_argument("--peers", default="", help="only these peers, comma-separated (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    args.rerank_depths = [int(x) for x in args.rerank_depths.split(",")]
    args.shapes = [x for x in args.shapes.split(",") if x]
    load_peers.only = {x for x in args.peers.split(",") if x} or None
    args.shape_pages = [x for x in args.shape_pages.split(",") if x]
    if args.quick:
        args.pages, args.min_vectors, args.max_vectors, args.queries, args.repeats = 40, 20, 60, 4, 1
        args.rerank_depths = [10]
    res = run(args)
    if args.json:  # the table goes to stderr, so one run gives both
        print_table(res, file=sys.stderr)
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
