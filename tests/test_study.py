import csv
import json
import math
import os
import re

import numpy as np
import pytest
from conftest import shared_path

from colprune.cli import main
from colprune.errors import InvalidInputError
from colprune.study import (
    COLUMNS,
    DEFAULT_GRID,
    DEFAULT_METHOD,
    bootstrap_ci,
    expand_grid,
    load_beir,
    ndcg_at,
    pareto_frontier,
    recall_at,
)


def test_ndcg_and_recall_by_hand():
    judged = {"a": 3, "b": 1, "c": 0}
    assert ndcg_at(["a", "b", "x"], judged, 10) == pytest.approx(1.0)
    worst = (1 / math.log2(2) * 0 + 1 / math.log2(3) * 1 + 3 / math.log2(4)) / (3 + 1 / math.log2(3))
    assert ndcg_at(["x", "b", "a"], judged, 10) == pytest.approx(worst)
    assert ndcg_at(["b"], judged, 1) == pytest.approx(1 / 3)
    assert ndcg_at(["a"], {}, 10) == 0.0
    assert recall_at(["a", "x"], judged, 10) == 0.5 and recall_at(["a", "b"], judged, 1) == 0.5


def test_bootstrap_interval_brackets_the_mean():
    v = np.random.default_rng(0).random(50)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)


def test_grid_expansion_and_filters():
    vs = expand_grid(DEFAULT_GRID)
    assert sum(v.method == "random" for v in vs) == 3 and sum(v.method.startswith("docpruner") for v in vs) == 5 + 3 + 3
    only = expand_grid(DEFAULT_GRID, budgets=[0.5, 0.2], methods=["default", "random"])
    assert sorted((v.method, v.budget) for v in only) == [("default", 0.2), ("default", 0.5), ("random", 0.2), ("random", 0.5)]
    grid = {"methods": [{"name": "m", "pruner": "adaptive", "params": {"k": [0, 1]}}]}
    assert [v.params for v in expand_grid(grid)] == [{"k": 0}, {"k": 1}]
    with pytest.raises(InvalidInputError, match="unknown methods"):
        expand_grid(DEFAULT_GRID, methods=["nope"])
    with pytest.raises(InvalidInputError, match="budgets"):
        expand_grid(DEFAULT_GRID, budgets=[1.5])
    twin = next(m["name"] for m in DEFAULT_GRID["methods"] if m["name"] != "default"
                and (m["pruner"], m.get("signal")) == (DEFAULT_METHOD["pruner"], DEFAULT_METHOD["signal"]))
    same = [v for v in vs if v.method in ("default", twin) and v.budget == 0.5]
    assert len(same) == 2 and len({v.slug for v in same}) == 1  # identical configs share one cached index


def test_hit_and_bm25_by_hand():
    from colprune.study import bm25_rank, hit_at

    assert hit_at(["x", "a"], {"a": 1}, 1) == 0.0 and hit_at(["x", "a"], {"a": 1}, 2) == 1.0
    assert hit_at(["a"], {"a": 0}, 5) == 0.0
    docs = ["the cat sat on the mat", "dogs chase cats", "a cat and a cat and a cat", "nothing here"]
    ranked = bm25_rank(docs, ["cat", "dogs", "zebra"], k=4)
    assert ranked[0][:2] == [2, 0] and ranked[1][0] == 1 and ranked[2] == [0, 1, 2, 3]  # no match: file order
    # one term, by hand: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg))
    import math

    n, df, k1, b = 4, 2, 1.2, 0.75
    lens = [6, 3, 9, 2]
    avg = sum(lens) / 4
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    s0 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 6 / avg))
    s2 = idf * 3 * (k1 + 1) / (3 + k1 * (1 - b + b * 9 / avg))
    assert s2 > s0


def test_adaptive_methods_solve_the_budget_and_pdf_folders_run(tmp_path):
    """A PDF-folder dataset (page ids FILE.pdf#N) through the build pipeline, with the
    attention-adaptive pruners at a collection budget."""
    from colprune.demo_docs import QUERIES
    from colprune.study import load_dataset, run_study

    ds = tmp_path / "ds"
    assert main(["demo", "--dataset", str(ds)]) == 0  # the PDFs, queries.jsonl, qrels/test.tsv
    loaded = load_dataset(str(ds))
    assert len(loaded.queries) == len(QUERIES) and all(len(loaded.qrels[f"q{i}"]) == 1 for i in range(len(QUERIES)))
    assert loaded.pages_dir.endswith("pdfs") and len(loaded.doc_ids) == 16 and "cells.pdf#1" in loaded.doc_ids
    grid = {"methods": [{"name": n, "pruner": n, "signal": "cls", "budget": True}
                        for n in ("adaptive-ward", "entropy-ward", "entropy-top")]
            + [{"name": "docpruner+summary", "pruner": "adaptive", "signal": "cls", "budget": True,
                "params": {"summary": True}}]}
    rows = run_study(str(ds), "minilm", str(tmp_path / "out"), grid=grid, budgets=[0.5, 0.25], codecs=["float16"],
                     progress=False, log=lambda m: None)
    assert [r["method"] for r in rows[:3]] == ["none", "meanpool", "bm25"]
    assert rows[0]["hit@1"] == 1.0 and rows[2]["hit@10"] == 1.0
    for r in rows[3:]:
        budget = float(r["params"].split("budget=")[1])
        assert abs(r["keep_ratio"] - budget) < 0.03, r  # the collection keeps the budget
        assert r["delta_lo"] <= r["delta_ndcg@10"] <= r["delta_hi"]
    assert rows[1]["bytes_per_page"] == 768 and rows[1]["keep_ratio"] < 0.1
    # int8 dynamic quantisation: its own index and variants beside the float32 ones, same questions
    q8 = run_study(str(ds), "minilm", str(tmp_path / "out"), grid=grid, budgets=[0.25], methods=["docpruner+summary"],
                   codecs=["float16"], progress=False, log=lambda m: None, references=False, quantize="int8")
    assert os.path.exists(tmp_path / "out" / "full-int8.h5") and os.path.isdir(tmp_path / "out" / "variants-int8")
    assert os.path.exists(tmp_path / "out" / "results-int8.csv") and os.path.exists(tmp_path / "out" / "results.csv")
    assert [r["method"] for r in q8] == ["none", "docpruner+summary", "default"] and q8[0]["hit@10"] == 1.0


def test_pareto_frontier():
    rows = [{"bytes_per_page": 10, "ndcg@10": 0.5}, {"bytes_per_page": 5, "ndcg@10": 0.5},
            {"bytes_per_page": 20, "ndcg@10": 0.7}, {"bytes_per_page": 4, "ndcg@10": 0.1}]
    assert pareto_frontier(rows) == {1, 2, 3}


def write_beir(folder, docs, queries, qrels):
    os.makedirs(folder / "qrels", exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i, t in docs.items():
            f.write(json.dumps({"_id": i, "title": "", "text": t}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, g in qrels:
            f.write(f"{q}\t{d}\t{g}\n")


def test_study_end_to_end_with_cache(tmp_path, capsys, monkeypatch):
    from colprune.demo_docs import DOCUMENTS, QUERIES

    docs = {f"{name}#{i + 1}": text for name, pages in DOCUMENTS.items() for i, text in enumerate(pages)}
    queries = {f"q{i}": q for i, (q, _) in enumerate(QUERIES)}
    qrels = [(f"q{i}", want, 2) for i, (_, want) in enumerate(QUERIES)]
    write_beir(tmp_path / "ds", docs, queries, qrels)
    out = tmp_path / "out"
    args = ["study", "--dataset", str(tmp_path / "ds"), "--encoder", "minilm", "--methods", "default,random",
            "--budgets", "0.5,0.25", "--codecs", "float16,int8", "--out", str(out), "-q"]
    assert main(args) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert rows[0]["method"] == "none" and float(rows[0]["keep_ratio"]) == 1.0 and float(rows[0]["retention"]) == 1.0
    assert [r["method"] for r in rows[1:3]] == ["meanpool", "bm25"]  # reference rows
    assert len(rows) == 3 + 2 * 2 * 2 and {r["codec"] for r in rows[3:]} == {"float16", "int8"}
    assert float(rows[0]["ndcg@10"]) > 0.9  # the demo questions are easy
    assert float(rows[0]["delta_ndcg@10"]) == 0.0 and float(rows[0]["hit@10"]) == 1.0
    for r in rows[3:]:
        b = float(r["params"].split("budget=")[1])
        assert abs(float(r["keep_ratio"]) - b) < 0.15 and float(r["ndcg@10_lo"]) <= float(r["ndcg@10"]) <= float(r["ndcg@10_hi"])
    assert (out / "results.md").read_text().count("\n|") >= len(rows) and (out / "pareto.png").stat().st_size > 10_000
    stamp = {p: os.path.getmtime(p) for p in [out / "full.h5", *sorted((out / "variants").iterdir())]}
    capsys.readouterr()
    assert main(args) == 0  # cached: nothing re-encoded or re-derived
    assert {p: os.path.getmtime(p) for p in stamp} == stamp
    _check_settings(rows, out, capsys.readouterr().out, tmp_path, monkeypatch)


def _check_settings(rows, out, printed, tmp_path, monkeypatch):
    """The study hands back settings: the solved k / ratio per budget, printed and in results.md,
    and a `colprune prune` line per budget that the CLI parses into the same pruner and that
    derives the variant the study measured."""
    import shlex

    from colprune.cli import build_parser
    from colprune.cli.options import pruner_from_args
    from colprune.index import Index

    default = [r for r in rows if r["method"] == "default"]
    assert default and all(r["solved"].startswith("k=") for r in default)
    assert all(r["solved"].startswith("ratio=") for r in rows if r["method"] == "random")
    md = (out / "results.md").read_text()
    assert "| solved |" in md and "## Settings" in md
    lines = [re.match(r"\s*budget (\S+) \((k=\S+)\): (colprune prune .*)$", line) for line in printed.splitlines()]
    lines = [m.groups() for m in lines if m]
    assert len(lines) == 2 and all(command in md for _, _, command in lines)  # each budget of the default, in results.md too
    commands = []
    for budget, solved, command in lines:
        assert any(r["params"].endswith(f"budget={budget}") and r["solved"] == solved for r in default)
        args = build_parser().parse_args(shlex.split(command)[1:])  # the CLI's own parser takes it as printed
        pruner = pruner_from_args(args, args.pruner)
        assert pruner.config()["name"] == DEFAULT_METHOD["pruner"] and pruner.params()["k"] == float(solved[2:])
        assert args.signal == DEFAULT_METHOD["signal"] and args.source == str(out / "full.h5")
        commands.append(command)
    # the first line run as printed (from a scratch folder) gives the variant the study measured at that budget
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(commands[0])[1:] + ["-q"]) == 0
    budget = commands[0].split("default-")[1].split(".h5")[0]
    study_variant = next(p for p in (out / "variants").iterdir() if f"budget{budget}_float16" in p.name
                         and f"sig-{DEFAULT_METHOD['signal']}" in p.name and p.name.startswith(DEFAULT_METHOD["pruner"] + "_"))
    with Index.open(str(tmp_path / f"default-{budget}.h5")) as mine, Index.open(str(study_variant)) as theirs:
        assert mine.pruner_config["params"] == theirs.pruner_config["params"]
        assert [p.n_kept for p in mine.iter_pages()] == [p.n_kept for p in theirs.iter_pages()]


def test_study_rejects_bad_datasets(tmp_path):
    with pytest.raises(InvalidInputError, match="not a BEIR dataset"):
        load_beir(str(tmp_path))


def test_loads_the_shared_beir_sets():
    ms = load_beir(str(shared_path("data", "msmarco-5k")))
    assert len(ms.corpus) == 5000 and len(ms.judged_queries) == 43
    arxiv = load_beir(str(shared_path("data", "pages", "arxivqa")))
    assert len(arxiv.images) == 10 and all(os.path.exists(p) for p in arxiv.images.values())


def test_loads_vidore_arrow_and_runs_an_image_study(tmp_path):
    import sys
    from pathlib import Path

    from colprune.study import load_dataset, load_vidore, run_study

    folder = shared_path("data", "pages", "arxivqa")
    arxiv = load_dataset(str(folder))  # corpus.jsonl is there: read as BEIR
    vid = load_vidore(str(folder))  # the same set from its save_to_disk Arrow folders
    assert set(vid.images) == set(arxiv.images) and vid.qrels == arxiv.qrels and vid.queries == arxiv.queries
    assert vid.image(next(iter(vid.images))).size[0] > 100
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_models import save_tiny_colqwen2

    model = save_tiny_colqwen2(str(tmp_path / "colqwen2"))
    rows = run_study(str(folder), model, str(tmp_path / "out"), methods=["docpruner", "random"], budgets=[0.5],
                     codecs=["float16"], progress=False, log=lambda m: None)
    # images: no text for BM25; the default always runs
    assert [r["method"] for r in rows] == ["none", "meanpool", "docpruner", "random", "default"]
    assert all(abs(r["keep_ratio"] - 0.5) < 0.05 for r in rows[2:])


def test_paired_to_pairs_queries_at_the_same_budget_and_codec(tmp_path):
    from colprune.study import paired_to

    path = tmp_path / "per_query.csv"
    rows = [("none", "", "float16", q, 0.5) for q in "abcd"]
    rows += [("ward", "budget=0.5", "float16", q, v) for q, v in zip("abcd", [0.5, 0.5, 0.0, 1.0])]
    rows += [("ward", "budget=0.1", "float16", q, 0.2) for q in "abcd"]
    rows += [("docpruner", "signal=cls budget=0.5", "float16", q, v) for q, v in zip("abcd", [1.0, 0.5, 0.0, 1.0])]
    rows += [("docpruner", "signal=cls budget=0.1", "float16", q, 0.2) for q in "abcd"]
    rows += [("docpruner", "signal=cls budget=0.1", "int8", q, 0.0) for q in "abcd"]  # no int8 ward: unpaired
    with open(path, "w") as f:
        f.write("method,params,codec,query_id,ndcg@10\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    got = {(t["method"], t["budget"], t["codec"]): t for t in paired_to(str(path), "ward")}
    assert set(got) == {("docpruner", 0.5, "float16"), ("docpruner", 0.1, "float16")}
    half = got["docpruner", 0.5, "float16"]
    assert half["delta"] == 0.125 and half["queries"] == 4 and half["lo"] <= 0.125 <= half["hi"]
    assert got["docpruner", 0.1, "float16"]["delta"] == 0.0
    with pytest.raises(InvalidInputError, match="kmeans"):
        paired_to(str(path), "kmeans")


def test_residual_rows_count_the_codebook(tmp_path, rng):
    """A residual index's bytes per page are its vectors' plus its codebook amortised over the pages."""
    from types import SimpleNamespace

    import colprune as cp
    from colprune.study.evaluate import evaluate

    ids = [f"p{i}" for i in range(20)]
    vecs = [rng.standard_normal((6, 16)).astype(np.float32) for _ in ids]
    with cp.Index.create(tmp_path / "r", dim=16, dtype="residual2") as ix:
        ix.add(ids, vecs)
        info = ix.info()
        ev = evaluate(ix, [vecs[3]], ["q"], SimpleNamespace(qrels={"q": {"p3": 1}}))
    assert info["codebook"]["bytes_per_page"] > 0
    assert ev["bytes_per_page"] == pytest.approx(info["vector_bytes_per_page"] + info["codebook"]["bytes_per_page"])
    assert ev["per_query"]["hit@1"] == [1.0]
