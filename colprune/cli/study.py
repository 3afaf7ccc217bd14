"""``colprune study``: storage versus quality, pruning methods swept on a dataset."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..errors import NotFoundError, SettingsMismatchError, UsageError
from ..index.layout import CODECS
from ..study import DEFAULT_GRID, GRID_HELP, choose, run_studies, run_study
from ..study.choose import RULE, choice_lines, choice_markdown
from ..study.multi import dataset_names
from .common import Command
from .options import is_quiet, quiet_if_asked

__all__ = ["STUDY"]


def cmd_study(args: argparse.Namespace) -> int:
    for d in args.dataset:
        if not os.path.isdir(d):
            raise NotFoundError(f"{d}: no such dataset folder")
    grid = DEFAULT_GRID
    if args.grid:
        if not os.path.exists(args.grid):
            raise NotFoundError(f"{args.grid}: no such file")
        with open(args.grid) as f:
            try:
                grid = json.load(f)
            except json.JSONDecodeError as e:
                raise UsageError(f"{args.grid}: not JSON ({e})") from None
    try:
        budgets = [float(x) for x in args.budgets.split(",")] if args.budgets else None
    except ValueError:
        raise UsageError(f"--budgets {args.budgets!r}: comma-separated numbers, e.g. 0.5,0.25,0.1") from None
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    codecs = args.codecs.split(",") if args.codecs else None
    if codecs and set(codecs) - set(CODECS):
        raise UsageError(f"--codecs: unknown {sorted(set(codecs) - set(CODECS))}; choose from {sorted(CODECS)}")
    quiet_if_asked(args)
    kw: dict[str, Any] = {}
    if args.query_encoder is not None:
        from ..encoders.student import read_config, same_teacher

        if not os.path.exists(args.query_encoder):
            raise NotFoundError(f"{args.query_encoder}: no such student folder (make one with `colprune distill-queries`)")
        teacher = read_config(args.query_encoder)["config"]["teacher"]
        if not same_teacher(teacher, args.encoder):
            raise SettingsMismatchError(f"the student {args.query_encoder} was distilled from {teacher!r}; the study "
                                        f"encodes pages with {args.encoder!r}: pass --encoder {teacher}")
        kw["query_encoder"] = args.query_encoder
    kw |= {"grid": grid, "budgets": budgets, "methods": methods, "codecs": codecs, "progress": not is_quiet(args),
           "quantize": args.quantize, "keep_variants": not args.drop_variants}
    if len(args.dataset) > 1:  # each in its own folder, then pooled
        run_studies(args.dataset, args.encoder, args.out, choose_method=args.choose, reference=args.paired_to or "ward",
                    paired_reference=args.paired_to or "ward", **kw)
        return 0
    rows = run_study(args.dataset[0], args.encoder, args.out, paired_reference=args.paired_to, **kw)
    if args.choose:
        choice = choose({dataset_names(args.dataset)[0]: rows}, reference=args.paired_to or "ward")
        with open(os.path.join(args.out, "results.md"), "a") as f:
            f.write(choice_markdown(choice))
        for line in choice_lines(choice):
            print(line)
    return 0


def _study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, metavar="FOLDER", action="append",
                   help="a BEIR folder (corpus.jsonl, text or page images), a folder of PDFs or page images with "
                        "queries.jsonl and qrels/test.tsv, or a ViDoRe folder (Arrow or parquet): see below. Give it "
                        "again for more datasets: each runs in OUT/NAME, and OUT/results.md pools them")
    p.add_argument("--encoder", default="minilm", help="encoder name, local path or hub id (default minilm)")
    p.add_argument("--query-encoder", default=None, metavar="PATH",
                   help="encode the queries with a student distilled from --encoder (pages stay --encoder's)")
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8: encode pages and queries with the text encoder's int8 dynamic quantisation "
                        "(its own cache and results-int8.* under --out, beside a run without it)")
    p.add_argument("--grid", default=None, help="JSON grid of methods (default: the built-in grid)")
    p.add_argument("--budgets", default=None, help="comma-separated shares of vectors kept (default 0.5,0.25,0.1)")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names from the grid (the recommended 'default' always runs)")
    p.add_argument("--codecs", default=None, help="comma-separated codecs to evaluate (default float16,int8)")
    p.add_argument("--paired-to", default=None, metavar="METHOD",
                   help="also give each method's paired per-query difference to METHOD at the same budget (e.g. ward)")
    p.add_argument("--choose", action="store_true",
                   help="apply the rule that picks the recommended method (the best worst-case retention among "
                        "attention-adaptive methods meeting the bars against Ward and random; see below) and print "
                        "it with the flags to build it; needs ward and random among the methods")
    p.add_argument("--drop-variants", action="store_true",
                   help="remove each derived index once it is scored (the scores stay cached in OUT): for collections "
                        "whose variants do not all fit on disk")
    p.add_argument("--out", required=True, help="output folder (also the cache)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _study_description() -> str:
    return ("Encode a dataset once into a full index (every vector, every importance signal), derive each\n"
            "pruned variant from it (cached: re-running with one more method re-uses the rest), search, and report\n"
            "keep ratio, bytes per page per codec, nDCG@5/10, recall@10/100 and retention with 95% bootstrap\n"
            "intervals over queries. Writes OUT/results.csv, OUT/results.md and OUT/pareto.png.\n\n"
            "What it hands back: the default method always runs (rows named 'default'); each budget's solved\n"
            "parameter (k for DocPruner, ratio for the share-based methods) is in the 'solved' column, and the\n"
            "study prints, and results.md lists, the `colprune prune FULL OUT --pruner ... --k ...` line that\n"
            "derives each variant from a full index.\n\n"
            "--dataset takes a folder in one of three forms:\n"
            "  BEIR          corpus.jsonl (_id, title, text; or an 'image' path: page images), queries.jsonl,\n"
            "                qrels/test.tsv (query-id, corpus-id, score)\n"
            "  PDF folder    queries.jsonl and qrels/test.tsv beside the PDFs or page images (in pdfs/, pages/,\n"
            "                images/ or corpus/, else the folder itself); corpus ids are page ids FILE.pdf#N\n"
            "                (N from 1, paths relative to that folder), built as `colprune build` does\n"
            "                (e.g. ../shared/data/financebench-dev)\n"
            "  ViDoRe        a Hugging Face set saved with save_to_disk or as parquet: corpus/, queries/,\n"
            "                relevant_docs/ or qrels/ (needs pyarrow: pip install colprune[study])\n\n" + GRID_HELP
            + "\n\n--choose: " + RULE)


STUDY = Command(
    "study", "storage versus quality: sweep pruning methods on a dataset",
    [
        "colprune study --dataset ../shared/data/msmarco-5k --encoder minilm --out study/",
        "colprune study --dataset ../shared/data/financebench-dev --methods default --budgets 0.25 --out fb/  # PDFs",
        "colprune study --dataset ds/ --encoder minilm --methods default,random --budgets 0.5,0.25,0.1 --out s/",
        "colprune study --dataset ds/ --encoder minilm --grid grid.json --out s/",
        "colprune study --dataset ds/ --encoder minilm --query-encoder student/ --methods default --out s-student/",
        "colprune study --dataset ../shared/data/financebench-dev --dataset ../shared/data/financebench-more "
        "--dataset ../shared/data/msmarco-5k --methods default,ward,random,adaptive-cluster --budgets 0.5,0.25,0.1,0.05 "
        "--codecs float16 --choose --out study/   # pooled, and the rule's pick",
    ],
    _study_arguments, cmd_study, description=_study_description(),
)


