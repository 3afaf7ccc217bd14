"""Several datasets in one study: pooled paired differences, cached scores, and the --choose rule."""

import json
import os

import numpy as np
import pytest

from colprune.cli import main
from colprune.errors import InvalidInputError
from colprune.study import choose, pooled
from colprune.study.multi import dataset_names


def rows_of(per: dict[str, dict[float, list[float]]], pruners: dict[str, str], base: list[float]) -> list[dict]:
    """A study's rows from per-question nDCG@10: ``{method: {budget: [per question]}}``."""
    def row(method, params, values, pruner=""):
        return {"method": method, "params": params, "codec": "float16", "ndcg@10": float(np.mean(values)),
                "retention": float(np.mean(values) / np.mean(base)), "_per_query": list(values), "pruner": pruner,
                "ndcg@10_lo": 0.0, "ndcg@10_hi": 1.0}

    out = [row("none", "", base)]
    for m, by_budget in per.items():
        out += [row(m, f"budget={b}", v, pruners[m]) for b, v in by_budget.items()]
    return out


PRUNERS = {"ward": "ward", "random": "random", "spread": "adaptive-spread", "docpruner": "adaptive", "kmeans": "kmeans"}


def two_studies(spread_at_10=(0.5, 0.5, 0.5, 0.5)):
    base = [0.5, 0.5, 0.5, 0.5]
    per = {"ward": {0.5: [0.5] * 4, 0.1: [0.48] * 4},
           "random": {0.5: [0.45] * 4, 0.1: [0.3] * 4},
           "spread": {0.5: [0.5, 0.5, 0.5, 0.52], 0.1: list(spread_at_10)},
           "docpruner": {0.5: [0.6] * 4, 0.1: [0.2] * 4},  # best at 50%, collapses at 10%
           "kmeans": {0.5: [0.55] * 4, 0.1: [0.52] * 4}}  # not adaptive: never chosen, but the best measured
    return {"a": rows_of(per, PRUNERS, base), "b": rows_of(per, PRUNERS, base)}


def test_the_rule_picks_the_best_worst_case_among_adaptive_methods_that_meet_the_bars():
    c = choose(two_studies())
    assert c.chosen.method == "spread" and c.chosen.passes and c.chosen.worst == pytest.approx(1.0)
    verdicts = {v.method: v for v in c.verdicts}
    assert not verdicts["docpruner"].passes and any("below ward" in m for m in verdicts["docpruner"].misses)
    assert any("keeps 40% of unpruned" in m for m in verdicts["docpruner"].misses)
    assert not verdicts["kmeans"].adaptive and c.best.method == "kmeans"  # best worst case overall
    assert [v.method for v in c.verdicts][0] == "kmeans"  # sorted by worst case


def test_the_rule_says_when_no_adaptive_method_meets_the_bars():
    from colprune.study.choose import choice_lines, choice_markdown

    c = choose(two_studies(spread_at_10=(0.45, 0.44, 0.4, 0.43)))  # 86% of unpruned at 10%: below the floor
    assert c.chosen is None and c.best.method == "kmeans"
    lines = choice_lines(c)
    assert lines[0].startswith("no attention-adaptive method meets every bar") and "spread" in lines[0]
    assert "best measured method overall: kmeans" in lines[1]
    md = choice_markdown(c)
    assert "| spread | adaptive-spread | yes |" in md and "< 90%" in md
    with pytest.raises(InvalidInputError, match="ward"):
        choose({"a": [r for r in two_studies()["a"] if r["method"] != "ward"]})


def test_pooled_differences_take_every_datasets_questions():
    table = {(r["method"], r["budget"]): r for r in pooled(two_studies())}
    spread = table["spread", 0.5]
    assert spread["questions"] == 8 and spread["Δ unpruned"] == pytest.approx(0.005)
    assert spread["Δ ward lo"] <= spread["Δ ward"] <= spread["Δ ward hi"]
    assert table["docpruner", 0.1]["Δ ward"] == pytest.approx(-0.28) and table["docpruner", 0.1]["worst retention"] == 0.4
    assert dataset_names(["x/ds", "y/ds/", "z"]) == ["ds", "ds-2", "z"]


def test_two_datasets_from_the_cli_cached_and_chosen(tmp_path, capsys):
    from test_study import write_beir

    from colprune.demo_docs import DOCUMENTS, QUERIES

    docs = {f"{name}#{i + 1}": text for name, pages in DOCUMENTS.items() for i, text in enumerate(pages)}
    half = len(QUERIES) // 2
    for name, qs in (("one", QUERIES[:half]), ("two", QUERIES[half:])):
        write_beir(tmp_path / name, docs, {f"q{i}": q for i, (q, _) in enumerate(qs)},
                   [(f"q{i}", want, 2) for i, (_, want) in enumerate(qs)])
    out = tmp_path / "out"
    args = ["study", "--dataset", str(tmp_path / "one"), "--dataset", str(tmp_path / "two"), "--encoder", "minilm",
            "--methods", "ward,random,adaptive-cluster,adaptive-spread", "--budgets", "0.5,0.1", "--codecs", "float16",
            "--choose", "--drop-variants", "--out", str(out), "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "== one" in printed and "== two" in printed
    assert "chosen: " in printed or "no attention-adaptive method meets every bar" in printed
    assert "colprune build DOCS -o pages.h5 --pruner" in printed and "colprune prune" in printed
    md = (out / "results.md").read_text()
    assert "| one | " in md and "pooled Δ ward" in md and "## The rule's choice" in md
    for name in ("one", "two"):
        assert (out / name / "results.md").exists() and (out / name / "full.h5").exists()
        assert not os.listdir(out / name / "variants")  # each derived index dropped once scored
        scores = os.listdir(out / name / "scores")
        # none, meanpool, bm25, and four methods at two budgets (the default shares its method's when alike)
        assert {"none.json", "meanpool.json", "bm25.json"} <= set(scores) and len(scores) in (3 + 4 * 2, 3 + 5 * 2)
        with open(out / name / "scores" / "none.json") as f:
            assert json.load(f)["key"]["pages"] == len(docs)
    stamp = {f: os.path.getmtime(out / "one" / "scores" / f) for f in os.listdir(out / "one" / "scores")}
    assert main(args) == 0  # every score cached: nothing derived or searched again
    assert {f: os.path.getmtime(out / "one" / "scores" / f) for f in stamp} == stamp
    assert not os.listdir(out / "one" / "variants")
    with open(out / "pooled.csv") as f:
        assert f.readline().startswith("method,budget,codec,one ndcg@10,one retention,two ndcg@10")
