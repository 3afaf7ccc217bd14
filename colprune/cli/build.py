"""``colprune build``: pages (PDFs, images, text) or embedding files into an index; ``--ray`` into a sharded collection."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import FormatError, InvalidInputError, UsageError
from ..index.layout import CODECS
from ..index.manifest import is_collection
from ..pipeline import check_model, why_nothing
from ..pruning import Pruner
from . import sharded
from .common import (
    Command,
    check_inputs,
    count_committed,
    interrupt_hint,
    is_embedding_file,
    open_index,
    print_summary,
)
from .options import add_pruner_args, is_quiet, positive_float, positive_int, pruner_from_args, pruner_given

__all__ = ["BUILD"]


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an OUTPUT that cannot be an index (a plain folder) before any work."""
    out = args.output
    if os.path.isdir(out) and not is_collection(out):
        raise FormatError(f"{out} is a folder, not a colprune index: give an index path such as {os.path.join(out, 'pages.h5')}")


def cmd_build(args: argparse.Namespace) -> int:
    kinds = {is_embedding_file(p) for p in args.inputs}
    if len(kinds) > 1:
        raise UsageError("give either embedding files (.pt/.npz/.npy) or pages (PDFs, images, text, folders), not both")
    check_inputs(args.inputs)
    if args.no_rerank and (args.dtype or "binary") != "binary":
        raise UsageError("--no-rerank applies to --dtype binary only")
    if sharded.wants_ray(args):
        if kinds != {False}:
            raise UsageError("--ray builds from pages (PDFs, images, text); embedding files build on one machine")
        if args.store_text:
            raise UsageError("--store-text applies to one-machine builds (leave out --ray)")
        sharded.ray_address(args)  # refuses `--ray docs/` (a folder read as the address) before anything starts
        interrupt_hint(args, lambda: f"pages committed so far stay in {args.output}; run the same command again to resume")
        return sharded.run_build(args)
    if kinds == {False}:
        return _build_from_pages(args)
    return _build_from_embeddings(args)


def _build_pruner(args: argparse.Namespace) -> Pruner | None:
    """The pruner the options ask for; None when appending without pruning options (the index's own).

    Parameters without ``--pruner`` (``--k 0``) go to the index's pruner when appending, else to adaptive.
    """
    appending = os.path.exists(args.output) and not args.overwrite
    if not pruner_given(args):
        return None if appending else pruner_from_args(args, "adaptive-cluster")
    name = args.pruner
    if name is None and appending:  # only the pruner's name is read: the build checks the settings
        with open_index(args.output) as ix:
            name = (ix.pruner_config or {}).get("name")
    return pruner_from_args(args, name or "adaptive-cluster")


def _resume_hint(args: argparse.Namespace, state: dict[str, Any], resumes: str) -> None:
    """On Ctrl-C: what OUTPUT holds, what this run added, and how to resume (or that nothing was written)."""

    def hint() -> str:
        added = state.get("committed", 0)
        if not added and (args.overwrite or not os.path.exists(args.output)):
            kept = f"{args.output} is as it was" if os.path.exists(args.output) else f"no {args.output} was created"
            return f"nothing was written ({kept}); run the same command again to start over"
        n = count_committed(args.output)
        return (f"{args.output} holds {'?' if n is None else n} committed pages "
                f"({added} added by this run); run the same command again to resume: {resumes}")

    interrupt_hint(args, hint)


def _build_from_embeddings(args: argparse.Namespace) -> int:
    from ..pipeline import build_embeddings

    if args.model is not None:
        raise UsageError("--model encodes pages; embedding files are already encoded (name their model with --encoder)")
    for flag in ("id_root", "upsert", "strict", "retry_skipped", "importance", "signals", "device", "quantize",
                 "batch", "store_text"):
        if getattr(args, flag) not in (None, False):
            raise UsageError(f"--{flag.replace('_', '-')} applies to pages (PDFs, images, text), not to embedding files")
    _check_output(args)
    state: dict[str, Any] = {}
    _resume_hint(args, state, "pages already in the index are skipped")
    report = build_embeddings(
        args.inputs, args.output, encoder=args.encoder, dim=args.dim, dtype=args.dtype, pruner=_build_pruner(args),
        rerank=not args.no_rerank, commit_pages=args.commit_every, commit_seconds=args.commit_seconds,
        progress=not is_quiet(args), overwrite=args.overwrite,
        on_event=lambda kind, info: _count_commits(state, kind, info))
    if report.already_present:
        print(f"{report.already_present} pages already in {args.output}: kept, not added again")
    print_summary(report.info, args.output)
    return 0


def _count_commits(state: dict[str, Any], kind: str, info: dict) -> None:
    """Keep, for the Ctrl-C message, the pages the index held before and the pages this run committed."""
    if kind == "pages":
        state.update(held=info["held"])
    elif kind == "committed":
        state["committed"] = info["indexed"]


def _page_events(args: argparse.Namespace, state: dict[str, Any]):
    """``on_event`` for a page build: the model checked before it loads (exit 8), skips shown (ten at most)."""

    def on_event(kind: str, info: dict) -> None:
        _count_commits(state, kind, info)
        if kind == "loading":
            check_model(info["model"])
        elif kind == "skipped" and not is_quiet(args):
            from tqdm.auto import tqdm

            state["skips"] = state.get("skips", 0) + 1
            if state["skips"] <= 10:
                tqdm.write(f"colprune build: skipped {info['id']}: {info['reason']}", file=sys.stderr)
            elif state["skips"] == 11:
                tqdm.write("colprune build: skipping more pages; the summary counts them all", file=sys.stderr)

    return on_event


def _build_from_pages(args: argparse.Namespace) -> int:
    from ..pipeline import build

    if args.encoder is not None:
        raise UsageError("--encoder names the model of embedding files; to encode pages choose it with --model")
    if args.dim is not None:
        raise UsageError("--dim is for embedding files; a page encoder gives its own dim")
    _check_output(args)
    if is_quiet(args):
        from ..serve import quiet_libraries

        quiet_libraries()
    state: dict[str, Any] = {}
    _resume_hint(args, state, "pages already in the index are not encoded again")
    report = build(
        args.inputs, args.output, model=args.model, pruner=_build_pruner(args), dtype=args.dtype, id_root=args.id_root,
        upsert=args.upsert, strict=args.strict, retry_skipped=args.retry_skipped, commit_pages=args.commit_every,
        commit_seconds=args.commit_seconds, dpi=args.dpi, batch_size=args.batch, progress=not is_quiet(args),
        overwrite=args.overwrite, on_event=_page_events(args, state), importance=args.importance, device=args.device,
        signals=args.signals, quantize=args.quantize, rerank=not args.no_rerank, store_text=args.store_text)
    _report_pages(args, report)
    return 0


def _report_pages(args: argparse.Namespace, report: Any) -> None:
    """The build's warning, summary and changed-files lines; no page indexed at all is an error (exit 2)."""
    warning = report.warning_line()
    if report.skipped and not report.indexed and not report.already_present and not report.replaced:
        raise InvalidInputError(why_nothing(report.skipped))  # pages read but none embedded
    if warning:
        print(f"colprune build: {warning}", file=sys.stderr)
    print(report.summary())
    if report.changed_not_replaced:
        shown = ", ".join(report.changed_not_replaced[:3]) + (", ..." if len(report.changed_not_replaced) > 3 else "")
        print(f"colprune build: {len(report.changed_not_replaced)} pages changed on disk since they were indexed "
              f"({shown}); add --upsert to re-index them", file=sys.stderr)
    if report.info is not None:  # read by the build from its own open index: no second open
        print_summary(report.info, args.output)
    elif os.path.exists(args.output):
        with open_index(args.output) as index:
            print_summary(index, args.output)
    else:
        print(f"{args.output}: not written (no page could be indexed)")


def _build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="PDFs, images, .txt/.md files or folders of them; or embedding files (.pt, .npz, .npy)")
    p.add_argument("-o", "--output", required=True, help="index to create, or to extend if it exists")
    p.add_argument("--codec", "--dtype", dest="dtype", default=None, choices=sorted(CODECS),
                   help="vector codec of a new index (default float16; residual1/2/4: a centroid id and a 1/2/4-bit "
                        "residual per dimension, codebook trained on the first commit); appending keeps the index's")
    p.add_argument("--no-rerank", action="store_true",
                   help="--dtype binary: keep no float16 rerank copy (the vectors take only their binary codes; "
                        "search ranks by Hamming MaxSim alone)")
    g = p.add_argument_group("pages (PDFs, images, text)")
    g.add_argument("--model", default=None,
                   help="page encoder: 'minilm' (offline text-token fallback; the default for a new index), "
                        "a local path or a hub id; appending uses the index's")
    g.add_argument("--id-root", default=None, metavar="DIR",
                   help="page ids are file paths relative to DIR (default: each input folder itself, or the folder "
                        "holding an input file), so ./docs, docs/ and /abs/docs give the same ids")
    g.add_argument("--upsert", action="store_true",
                   help="re-index pages whose file changed (sha256) since they were indexed; without it they are reported")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable file or page (default: skip it, report it, go on)")
    g.add_argument("--retry-skipped", action="store_true", help="try again the pages an earlier build skipped")
    g.add_argument("--importance", default=None,
                   help="the signal pages are pruned by: indegree (default for a new index: the attention each token "
                        "receives), cls/eos (the global token's attention), indegree_mid, norm; appending uses the "
                        "index's")
    g.add_argument("--signals", action="store_true",
                   help="also store every importance signal (a full index that `prune --signal` can use)")
    g.add_argument("--device", default=None, help="torch device: cpu (default), cuda, or auto")
    g.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8: dynamic int8 quantisation of a text encoder's Linear layers on CPU (about 1.5x faster "
                        "builds; see the README for the retrieval change)")
    g.add_argument("--dpi", type=positive_int, default=144, help="PDF render resolution for image encoders (default 144)")
    g.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="at most N pages per encoder call (default: about 8,192 tokens for a text encoder, 4 images "
                        "for an image encoder); the bar moves and commits are due after each call")
    g.add_argument("--store-text", action="store_true",
                   help="store each page's text in its metadata (field text, at most 20,000 characters: what the text "
                        "encoder read, or a PDF page's text layer for an image encoder), so hits carry it")
    g.add_argument("--skip-bad", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    g = p.add_argument_group("embedding files (.pt, .npz, .npy)")
    g.add_argument("--dim", type=positive_int, default=None, help="embedding dim (default: from the first page)")
    g.add_argument("--encoder", default=None, help="name of the model that made the embeddings, stored in the index")
    g = p.add_argument_group("commits and resuming")
    g.add_argument("--commit-every", type=positive_int, default=32, metavar="N",
                   help="commit at least every N pages (default 32)")
    g.add_argument("--commit-seconds", type=positive_float, default=30.0, metavar="T",
                   help="and at least every T seconds (default 30): Ctrl-C keeps everything committed; "
                        "the same command resumes")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT instead of extending it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (also transformers' loading bars)")
    add_pruner_args(p, None, "default: adaptive-cluster for a new index, the index's own when appending")
    sharded.add_arguments(p, "build")


BUILD = Command(
    "build", "encode and index PDFs, images, text files or folders (or precomputed embeddings)",
    [
        "colprune build docs/ -o pages.h5                          # PDFs, offline MiniLM, adaptive pruning",
        "colprune build docs/ -o full.h5 --pruner none             # keep every vector: derive pruned ones later",
        "colprune build docs/ more/ -o pages.h5                    # appends; pages already there are skipped",
        "colprune build docs/ -o pages.h5 --upsert                 # re-index pages whose file changed",
        "colprune build scans/ -o scans.h5 --model vidore/colqwen2-v1.0-hf --pruner adaptive --k -0.25",
        "colprune build pages.pt -o full.h5 --pruner none          # precomputed embeddings",
    ],
    _build_arguments, cmd_build,
    description="Encode pages with --model, prune them and append them to OUTPUT, committing every --commit-every\n"
    "pages or --commit-seconds seconds. Re-running the same command resumes: pages already in the index are\n"
    "not encoded again, pages whose file changed are reported (or re-indexed with --upsert).\n\n"
    "Pages: PDFs (one page per PDF page, id FILE#N), images, .txt/.md files, and folders of them (recursively).\n"
    "A page id is the file's path relative to the input folder (or --id-root), so the same file is the same\n"
    "page however you name the folder. Unreadable files and pages without text are skipped and reported.\n\n"
    "Embedding files (see colprune.io): .pt (torch.save of a list of (n_i, dim) tensors, or a dict with\n"
    "'embeddings' and optional 'importance', 'patch_mask', 'ids', 'metadata', 'grids'), .npz (CSR 'vectors' +\n"
    "'offsets' [+ 'importance', 'patch_mask', 'ids'], or 'embeddings' (n, m, dim)), .npy ((n, m, dim) or (m, dim)).\n\n"
    "Appending checks the codec, pruner, encoder and dim against what OUTPUT holds before anything is encoded.",
)


