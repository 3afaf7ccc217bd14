"""``colprune distill-queries``: distil a small text-only query encoder from a page encoder."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ModelLoadError, UsageError
from ..pipeline import check_model
from .common import Command, check_inputs, interrupt_hint
from .errors import one_line
from .options import is_quiet, positive_float, positive_int, quiet_if_asked

__all__ = ["DISTILL_QUERIES"]


def cmd_distill_queries(args: argparse.Namespace) -> int:
    from .. import distill as dist

    check_inputs(args.texts)
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists: add --overwrite to replace it")
    if not 0 < args.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.init_layers is not None:
        try:
            init_layers = [int(x) for x in args.init_layers.split(",")]
        except ValueError:
            raise UsageError(f"--init-layers {args.init_layers!r}: comma-separated layer numbers, e.g. 4,5") from None
    else:
        init_layers = None
    check_model(args.teacher)
    quiet_if_asked(args)
    texts = dist.training_texts(args.texts, fraction=args.fraction, max_texts=args.max_texts, seed=args.seed,
                                on_skip=lambda m: print(f"colprune distill-queries: skipped {m}", file=sys.stderr))
    from ..encoders import load_encoder
    from ..encoders.student import query_format_of

    try:
        teacher = load_encoder(args.teacher, **({"device": args.device} if args.device else {}))
    except Exception as e:  # noqa: BLE001 - a missing package, an offline hub, an unsupported type
        raise ModelLoadError(f"cannot load the teacher {args.teacher!r}: {one_line(e)}") from None
    tokenizer, _ = query_format_of(teacher)
    config = dist.default_config(teacher, tokenizer, layers=args.layers, embed_rank=args.embed_rank,
                                 hidden=args.hidden, heads=args.heads, intermediate=args.intermediate, head=args.head)
    interrupt_hint(args, lambda: f"the last checkpoint is in {args.output.rstrip(os.sep)}.partial; run the same "
                                  "command again to resume from it")
    report = dist.distill(
        teacher, texts, args.output, config=config, init=args.init, init_layers=init_layers, loss=args.loss,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch, lr=args.lr, seed=args.seed,
        train_embeddings=args.train_embeddings,
        device=args.device, threads=args.threads, checkpoint_seconds=args.checkpoint_seconds,
        overwrite=args.overwrite, progress=not is_quiet(args), log=print)
    print(report.summary())
    return 0


def _distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="minilm",
                   help="the page encoder whose query vectors the student learns (default minilm); an index built "
                        "with it can then be searched with --query-encoder")
    p.add_argument("--texts", nargs="+", required=True, metavar="FILE",
                   help=".txt/.md (one text a line), BEIR corpus.jsonl / queries.jsonl, PDFs, or folders of them")
    p.add_argument("-o", "--output", required=True, help="the student folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT, and start over instead of resuming")
    g = p.add_argument_group("training text")
    g.add_argument("--fraction", type=float, default=1.0, help="train on this share of the texts (default 1)")
    g.add_argument("--max-texts", type=positive_int, default=None, metavar="N", help="at most N texts")
    g = p.add_argument_group("training")
    g.add_argument("--loss", default="align", choices=["align", "infonce"],
                   help="align: 1 - cosine to each teacher token vector (default, NanoVDR); infonce: in-batch "
                        "contrastive over the batch's tokens")
    g.add_argument("--epochs", type=positive_int, default=3, help="passes over the texts (default 3)")
    g.add_argument("--max-steps", type=positive_int, default=None, metavar="N", help="stop after N steps")
    g.add_argument("--batch", type=positive_int, default=64, help="texts per step (default 64)")
    g.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="torch device: cpu (default), cuda, or auto")
    g.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")
    g.add_argument("--checkpoint-seconds", type=positive_float, default=300.0, metavar="T",
                   help="checkpoint at least every T seconds and after each epoch (default 300)")
    g = p.add_argument_group("student size (default: the teacher's width, 2 layers, 1024-wide feed-forward, "
                             "rank-128 token table)")
    g.add_argument("--layers", type=positive_int, default=2)
    g.add_argument("--hidden", type=positive_int, default=None)
    g.add_argument("--heads", type=positive_int, default=None)
    g.add_argument("--intermediate", type=positive_int, default=None)
    g.add_argument("--embed-rank", type=positive_int, default=None)
    g.add_argument("--head", default="mean", choices=["mean", "attention"],
                   help="single-vector head: mean of the token vectors, or a learned attention pooling")
    g.add_argument("--init", default="teacher", choices=["teacher", "random"],
                   help="start from the teacher (SVD of its token table, a subset of its layers) or at random")
    g.add_argument("--init-layers", default=None, metavar="I,J",
                   help="teacher layers copied into the student (default the last ones)")
    g.add_argument("--train-embeddings", action="store_true",
                   help="also train the token table (default: frozen at the teacher's SVD, so words the training "
                        "text never shows keep their teacher embedding)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


DISTILL_QUERIES = Command(
    "distill-queries", "distil a small text-only query encoder (a student) from an index's page encoder",
    [
        "colprune distill-queries --teacher minilm --texts docs/ -o student/",
        "colprune distill-queries --texts corpus.jsonl my-queries.txt -o student/ --epochs 2",
        "colprune distill-queries --texts docs/ -o student-25/ --fraction 0.25 --loss infonce",
    ],
    _distill_arguments, cmd_distill_queries,
    description="Train a student that gives, for each query token, the teacher's query token vector (cosine\n"
    "alignment: NanoVDR's recipe, one vector per token). Training text comes from your own corpus: sentences\n"
    "and short spans cut from passages and PDF text layers, plus any queries (a .txt file, one a line, or a\n"
    "BEIR queries.jsonl given by name). The teacher encodes every text as a query; the student starts from the\n"
    "teacher (an SVD of its token table, its last layers). Each epoch prints the held-out alignment (mean token\n"
    "cosine to the teacher). Checkpoints go to OUTPUT.partial; the same command resumes an interrupted run.",
)


