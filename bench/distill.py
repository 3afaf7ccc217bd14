"""Distilled student query encoders against their teacher, the offline MiniLM (issue 16).

    python bench/distill.py                       # the full measurement (docs/distill.md)
    python bench/distill.py --quick --json        # a smoke run: 2,000 texts, 1 epoch, MS MARCO only

One run, on the CPU, with ``--threads`` torch threads (default 2):

1. Training text: sentences and short spans cut from the two corpora (MS MARCO-5k's
   ``corpus.jsonl`` and financebench-dev's PDF text layers, ``colprune.distill.training_texts``).
   The test queries are never read for training; the run counts any that appear verbatim in
   the training text anyway.
2. Teacher targets once (MiniLM encodes every text as a query), then three students of the same
   size: ``align`` (cosine alignment, all the text), ``infonce`` (in-batch InfoNCE over tokens,
   the same texts and steps) and ``align-25%`` (a quarter of the text, the same epochs).
3. Each dataset's page index is the teacher's, unchanged (``colprune.study.encode_dataset``,
   cached under ``--cache``); queries come from the teacher or a student, scored by the study's
   own code (``_evaluate``): nDCG@10 and retention with the paired 95% bootstrap interval.
4. First stages, recall@100 of the relevant pages in the shortlist of 100: the index's centroid
   summaries (two-stage search, ``candidates=100``) with teacher and student queries, against
   the student's single-vector head over one mean vector per page (``colprune.distill.page_means``);
   bytes per page of each; and nDCG@10 after an exact rerank of each shortlist.
5. Latency of ``encode_queries``: one query at a time (median over the test queries) and one
   batch of all test queries, teacher and student, same threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from _machine import cpu_line, median_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")
DATASETS = {"msmarco": os.path.join(SHARED, "msmarco-5k"), "financebench": os.path.join(SHARED, "financebench-dev")}
TEXT_SOURCES = {"msmarco": os.path.join(SHARED, "msmarco-5k", "corpus.jsonl"),
                "financebench": os.path.join(SHARED, "financebench-dev", "pdfs")}


def _median_ms(f, n: int) -> float:
    return 1000 * median_seconds(f, n)


def latency(teacher, student, queries: list[str], repeats: int) -> dict:
    """Median ms of encode_queries for one query (each test query in turn) and for one batch of all."""
    out = {}
    for name, enc in (("teacher", teacher), ("student", student)):
        enc.encode_queries(queries[:4])  # warm up
        one = []
        for q in queries:
            one.append(_median_ms(lambda q=q: enc.encode_queries([q]), 3))
        batch = _median_ms(lambda: enc.encode_queries(queries), repeats)
        out[name] = {"one_query_ms": float(np.median(one)), "batch_ms": batch,
                     "batch_ms_per_query": batch / len(queries), "batch_size": len(queries)}
    out["speedup_one_query"] = out["teacher"]["one_query_ms"] / out["student"]["one_query_ms"]
    out["speedup_batch"] = out["teacher"]["batch_ms"] / out["student"]["batch_ms"]
    return out


def evaluate(name: str, path: str, cache: str, students: dict, threads: int, log) -> dict:
    """nDCG@10 and retention per query encoder, and the first stages, on one dataset."""
    from colprune import Index
    from colprune.distill import page_means
    from colprune.encoders import load_encoder
    from colprune.study import bootstrap_ci, encode_dataset, load_dataset
    from colprune.study.encode import encode_queries as _queries
    from colprune.study.evaluate import evaluate as _evaluate
    from colprune.study.metrics import ndcg_at, recall_at

    ds = load_dataset(path)
    out_dir = os.path.join(cache, os.path.basename(os.path.normpath(path)))
    full_path, teacher_q, qids = encode_dataset(ds, "minilm", out_dir, progress=False)
    res: dict = {"queries": len(qids), "encoders": {}}
    with Index.open(full_path) as full:
        info = full.info()
        res["pages"] = info["docs"]
        qsets = {"teacher": teacher_q}
        for label, spath in students.items():
            qsets[label] = _queries(ds, spath, out_dir, qids)
        base = _evaluate(full, teacher_q, qids, ds)["per_query"]["ndcg@10"]
        for label, qv in qsets.items():
            per = base if label == "teacher" else _evaluate(full, qv, qids, ds)["per_query"]["ndcg@10"]
            diff = np.asarray(per) - np.asarray(base)
            res["encoders"][label] = {"ndcg@10": float(np.mean(per)), "retention": float(np.mean(per) / np.mean(base)),
                                      "delta": float(diff.mean()), "delta_ci": list(bootstrap_ci(diff))}
            log(f"{name}: {label:>12} nDCG@10 {np.mean(per):.4f} retention {np.mean(per) / np.mean(base):.1%}")

        # first stages: shortlist 100 pages per query
        judged = [ds.qrels.get(q, {}) for q in qids]
        exact = {label: full.search(qv, k=len(full)) for label, qv in qsets.items() if label in ("teacher", "align")}
        exact_score = {label: [{h.id: h.score for h in hs} for hs in hits] for label, hits in exact.items()}

        def stage(shortlists, rerank_with):
            rec = [recall_at(s, j, 100) for s, j in zip(shortlists, judged)]
            scores = exact_score[rerank_with]
            ranked = [sorted(s, key=lambda d, i=i: -scores[i][d]) for i, s in enumerate(shortlists)]
            nd = [ndcg_at(r, j, 10) for r, j in zip(ranked, judged)]
            top = [len({h.id for h in hs[:10]} & set(s)) / 10 for hs, s in zip(exact[rerank_with], shortlists)]
            return {"recall@100": float(np.mean(rec)), "ndcg@10_after_rerank": float(np.mean(nd)),
                    "exact_top10_in_shortlist": float(np.mean(top))}

        holds = info.get("holds") or {}
        centroid_bytes = holds.get("summaries", 0) / max(info["docs"], 1)
        stages = {}
        for label in ("teacher", "align"):
            if label not in qsets:
                continue
            hits = full.search(qsets[label], k=100, candidates=100)
            stages[f"centroids, {label} queries"] = {**stage([[h.id for h in hs] for hs in hits], label),
                                                    "bytes_per_page": centroid_bytes}
        ids, means = page_means(full)
        means16 = means.astype(np.float16).astype(np.float32)
        tq = np.stack([v.mean(0) / np.linalg.norm(v.mean(0)) for v in teacher_q])
        order = np.argsort(-(tq @ means16.T), axis=1, kind="stable")[:, :100]
        stages["single vector, teacher mean query"] = {**stage([[ids[i] for i in r] for r in order], "teacher"),
                                                       "bytes_per_page": 2.0 * full.dim}
        if "align" in students:
            st = load_encoder(students["align"], n_threads=threads)
            sq = st.encode_single([ds.queries[q] for q in qids])
            order = np.argsort(-(sq @ means16.T), axis=1, kind="stable")[:, :100]
            stages["single vector, student head"] = {**stage([[ids[i] for i in r] for r in order], "align"),
                                                     "bytes_per_page": 2.0 * full.dim}
        exact_rec = {label: float(np.mean([recall_at([h.id for h in hs][:100], j, 100) for hs, j in zip(exact[label], judged)]))
                     for label in exact}
        res["first_stage"] = stages
        res["exact_recall@100"] = exact_rec
        for k, v in stages.items():
            log(f"{name}: first stage {k:<36} recall@100 {v['recall@100']:.3f} nDCG@10 after rerank "
                f"{v['ndcg@10_after_rerank']:.4f} bytes/page {v['bytes_per_page']:.0f}")
    return res


def markdown(r: dict) -> str:
    lines = []
    ds = list(r["datasets"])
    t = r["training"]
    lines.append(f"| student | training text | steps | train time ({r['threads']} threads) | held-out alignment | "
                 + " | ".join(f"{d} nDCG@10 (retention, Δ [95% CI])" for d in ds) + " |")
    lines.append("|---|---|---|---|---|" + "---|" * len(ds))
    row = "| teacher (MiniLM-L6, {p:,} params) | - | - | - | 1 | ".format(p=r["teacher_parameters"])
    row += " | ".join(f"{r['datasets'][d]['encoders']['teacher']['ndcg@10']:.4f}" for d in ds) + " |"
    lines.append(row)
    for label, s in t["students"].items():
        cells = []
        for d in ds:
            e = r["datasets"][d]["encoders"].get(label)
            cells.append("-" if e is None else f"{e['ndcg@10']:.4f} ({e['retention']:.1%}, {e['delta']:+.3f} "
                                               f"[{e['delta_ci'][0]:+.3f}, {e['delta_ci'][1]:+.3f}])")
        lines.append(f"| {label} ({s['parameters']:,} params, {s['parameters'] / r['teacher_parameters']:.1%}) | "
                     f"{s['texts']:,} texts, {s['tokens']:,} tokens | {s['steps']:,} | {s['train_seconds'] / 60:.1f} min "
                     f"+ teacher {t['teacher_seconds'] / 60:.1f} min | {s['held_out'][-1]:.4f} | " + " | ".join(cells) + " |")
    if "latency" in r:
        la = r["latency"]
        lines.append("")
        lines.append(f"| query encoding, {r['threads']} threads | teacher | student | speed-up |")
        lines.append("|---|---|---|---|")
        lines.append(f"| one query (median over {la['teacher']['batch_size']} queries) | "
                     f"{la['teacher']['one_query_ms']:.2f} ms | "
                     f"{la['student']['one_query_ms']:.2f} ms | {la['speedup_one_query']:.1f}× |")
        lines.append(f"| batch of {la['teacher']['batch_size']} | {la['teacher']['batch_ms']:.1f} ms | "
                     f"{la['student']['batch_ms']:.1f} ms | {la['speedup_batch']:.1f}× |")
    lines.append("")
    lines.append("| dataset | first stage (shortlist 100) | bytes/page | recall@100 | exact top-10 kept | "
                 "nDCG@10 after exact rerank |")
    lines.append("|---|---|---|---|---|---|")
    for d in ds:
        for k, v in r["datasets"][d].get("first_stage", {}).items():
            lines.append(f"| {d} | {k} | {v['bytes_per_page']:,.0f} | {v['recall@100']:.3f} | "
                         f"{v['exact_top10_in_shortlist']:.3f} | {v['ndcg@10_after_rerank']:.4f} |")
        for k, v in r["datasets"][d].get("exact_recall@100", {}).items():
            lines.append(f"| {d} | none (exact MaxSim, {k} queries) | - | {v:.3f} | 1 | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "colprune-bench-distill"),
                    help="page indexes, teacher targets and students (reused between runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-texts", type=int, default=None, help="cap on training texts (default: all)")
    ap.add_argument("--datasets", default="msmarco,financebench")
    ap.add_argument("--only", default="align,infonce,fraction", help="students to train: align,infonce,fraction")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true", help="2,000 texts, 1 epoch, MS MARCO only")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    ap.add_argument("--latency-only", default=None, metavar="STUDENT",
                    help="only time query encoding: this student folder against MiniLM (no training)")
    args = ap.parse_args()
    if args.quick:
        args.max_texts, args.epochs, args.datasets = 2000, 1, "msmarco"
    for p in DATASETS.values():
        if not os.path.exists(p):
            print(f"{p} is absent: this bench needs ../shared/data (see shared/README.md)", file=sys.stderr)
            sys.exit(2)

    import torch

    torch.set_num_threads(args.threads)
    from colprune.distill import TeacherTargets, distill, teacher_targets, training_texts
    from colprune.encoders import load_encoder
    from colprune.encoders.student import n_parameters

    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    if args.latency_only:
        from colprune.study import load_dataset

        qs = [q for n in args.datasets.split(",") for q in load_dataset(DATASETS[n]).queries.values()]
        la = latency(load_encoder("minilm"), load_encoder(args.latency_only, n_threads=args.threads), qs, repeats=5)
        r = {"cpu": cpu_line(), "threads": args.threads, "load_average": os.getloadavg(), "latency": la,
             "command": " ".join(["python", "bench/distill.py"] + sys.argv[1:])}
        print(json.dumps(r, indent=2))
        if not args.json:
            print(f"\none query: teacher {la['teacher']['one_query_ms']:.2f} ms, student {la['student']['one_query_ms']:.2f} "
                  f"ms ({la['speedup_one_query']:.1f}x); batch of {len(qs)}: {la['teacher']['batch_ms']:.1f} vs "
                  f"{la['student']['batch_ms']:.1f} ms ({la['speedup_batch']:.1f}x)")
        return
    os.makedirs(args.cache, exist_ok=True)
    names = args.datasets.split(",")
    r: dict = {"cpu": cpu_line(), "threads": args.threads, "torch": torch.__version__,
               "load_average_start": os.getloadavg(), "command": " ".join(["python", "bench/distill.py"] + sys.argv[1:])}

    t0 = time.perf_counter()
    texts = training_texts([TEXT_SOURCES[n] for n in ("msmarco", "financebench")], max_texts=args.max_texts)
    read_seconds = time.perf_counter() - t0
    from colprune.study import load_dataset

    test_queries = {n: load_dataset(DATASETS[n]) for n in names}
    all_queries = [q for n in names for q in test_queries[n].queries.values()]
    text_set = set(texts)
    r["test_queries_in_training_text"] = sum(q in text_set for q in all_queries)
    teacher = load_encoder("minilm")
    r["teacher_parameters"] = n_parameters(teacher.model)

    import hashlib

    key = f"targets-{len(texts)}-{hashlib.sha256(chr(10).join(texts).encode()).hexdigest()[:12]}.npz"
    tpath = os.path.join(args.cache, key)
    t0 = time.perf_counter()
    if os.path.exists(tpath):
        targets = TeacherTargets.load(tpath)
        teacher_seconds = float(json.load(open(tpath + ".json"))["seconds"])
    else:
        targets = teacher_targets(teacher, texts, progress=not args.json)
        teacher_seconds = time.perf_counter() - t0
        targets.save(tpath)
        json.dump({"seconds": teacher_seconds}, open(tpath + ".json", "w"))
    log(f"{len(texts):,} training texts ({int(targets.offsets[-1]):,} tokens) read in {read_seconds:.0f} s, "
        f"teacher targets {teacher_seconds:.0f} s")
    r["training"] = {"texts": len(texts), "tokens": int(targets.offsets[-1]), "teacher_seconds": teacher_seconds,
                     "read_seconds": read_seconds, "epochs": args.epochs, "students": {}}

    students: dict[str, str] = {}
    runs = [x for x in args.only.split(",") if x]
    align_steps = None
    for label in ("align", "infonce", "fraction"):
        if label not in runs:
            continue
        out = os.path.join(args.cache, f"student-{label}")
        kw: dict = dict(epochs=args.epochs, overwrite=True, progress=not args.json, log=log, threads=args.threads)
        t_texts, t_targets, name = texts, targets, label
        if label == "infonce":
            kw["loss"] = "infonce"
            if align_steps is not None:
                kw["max_steps"], kw["epochs"] = align_steps, args.epochs
        if label == "fraction":
            n = max(1, round(len(texts) * args.fraction))
            t_texts, t_targets = texts[:n], targets.subset(range(n))
            name = f"align-{args.fraction:.0%}"
        rep = distill(teacher, t_texts, out, targets=t_targets, **kw)
        if label == "align":
            align_steps = rep.steps
        students[name] = out
        r["training"]["students"][name] = {"path": out, "parameters": rep.parameters, "texts": rep.texts,
                                           "tokens": rep.tokens, "steps": rep.steps, "train_seconds": rep.seconds,
                                           "held_out": rep.held_out, "loss": rep.loss}
        log(rep.summary())

    r["datasets"] = {}
    for n in names:
        r["datasets"][n] = evaluate(n, DATASETS[n], args.cache, students, args.threads, log)

    if "align" in students:
        student = load_encoder(students["align"], n_threads=args.threads)
        qs = all_queries
        r["latency"] = latency(teacher, student, qs, repeats=5)
        log(f"latency: one query teacher {r['latency']['teacher']['one_query_ms']:.2f} ms, student "
            f"{r['latency']['student']['one_query_ms']:.2f} ms ({r['latency']['speedup_one_query']:.1f}x); batch of "
            f"{len(qs)}: {r['latency']['teacher']['batch_ms']:.1f} vs {r['latency']['student']['batch_ms']:.1f} ms "
            f"({r['latency']['speedup_batch']:.1f}x)")
    r["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(json.dumps(r, indent=2))
        print()
        print(markdown(r))


if __name__ == "__main__":
    main()
