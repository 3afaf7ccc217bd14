"""``colprune build``: pages (PDFs, images, text) or embedding files into an index; ``--ray`` into a sharded collection."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from typing import Any

from ..errors import FormatError, SettingsMismatchError, UsageError
from ..index import Index
from ..index.layout import CODECS
from ..pruning import Pruner, make_pruner
from . import sharded
from .common import (
    Command,
    check_inputs,
    check_model,
    count_committed,
    interrupt_hint,
    is_embedding_file,
    open_index,
    print_summary,
)
from .options import add_pruner_args, is_quiet, positive_float, positive_int, pruner_from_args, pruner_given

__all__ = ["BUILD"]


def _settings_check(output: str, *, dtype: str | None, pruner: Pruner | None, encoder: str | None,
                    dim: int | None, rerank: bool | None) -> dict[str, Any]:
    """What an existing index holds; :class:`SettingsMismatchError` when the build's settings differ."""
    with open_index(output) as ix:
        held = {"codec": ix.codec, "dim": ix.dim, "encoder": ix.encoder, "pruner": ix.pruner_config,
                "merged": getattr(ix, "merged", False), "rerank": getattr(ix, "has_rerank", False)}
    if rerank is False and held["codec"] != "binary":
        raise UsageError(f"--no-rerank applies to binary indexes; {output} holds {held['codec']} vectors")
    problems, fixes = [], []
    if dtype is not None and dtype != held["codec"]:
        problems.append(f"{held['codec']} vectors (you asked for --dtype {dtype})")
        fixes.append(f"leave out --dtype to append {held['codec']} vectors, or convert a copy later with "
                     f"`colprune prune {output} NEW.h5 --pruner none --dtype {dtype}`")
    if encoder is not None and held["encoder"] and encoder != held["encoder"]:
        problems.append(f"pages encoded with {held['encoder']!r} (you asked for {encoder!r})")
        fixes.append("leave out --model (or --encoder) to use the index's")
    if dim is not None and dim != held["dim"]:
        problems.append(f"dim {held['dim']} (your vectors have dim {dim})")
    stored = held["pruner"]
    if pruner is not None and stored is not None:
        base = {k: stored[k] for k in ("name", "params") if k in stored}
        if base != pruner.config():
            problems.append(f"pages pruned with {json.dumps(base)} (you asked for {json.dumps(pruner.config())})")
            fixes.append("leave out the pruning options to use the index's pruner")
    if pruner is not None and pruner.merges and not held["merged"]:
        problems.append(f"no merged vectors (--pruner {pruner.name} merges)")
    if rerank is False and held["rerank"]:
        problems.append("a float16 rerank copy (you asked for --no-rerank)")
        fixes.append(f"drop the copy afterwards with `colprune repack {output} --no-rerank`")
    if problems:
        fixes.append(f"or write a new index (another -o, or --overwrite to replace {output})")
        raise SettingsMismatchError(f"{output} holds " + "; ".join(problems) + ". To add to it: " + "; ".join(fixes))
    return held


def _check_output(args: argparse.Namespace) -> bool:
    """Whether the build appends; refuses an OUTPUT that cannot be an index before any work."""
    out = args.output
    if os.path.isdir(out) and not _looks_like_collection(out):
        raise FormatError(f"{out} is a folder, not a colprune index: give an index path such as {os.path.join(out, 'pages.h5')}")
    if args.overwrite:
        return False
    return os.path.exists(out)


def _looks_like_collection(path: str) -> bool:
    # a format v3 collection is a directory; anything Index.open accepts counts
    try:
        Index.open(path).close()
        return True
    except Exception:  # noqa: BLE001
        return False


def _model_dim(name: str) -> int | None:
    """The vectors' dim a model gives, from its config (no weights loaded); None if unknown."""
    try:
        if name == "minilm":
            from ..encoders import minilm_path

            name = minilm_path()
        cfg_path = os.path.join(name, "config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                cfg = json.load(f)
        else:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(name).to_dict()
        dim = cfg.get("embedding_dim") or cfg.get("hidden_size")
        return int(dim) if dim else None
    except Exception:  # noqa: BLE001 - unknown: the caller says what to do instead
        return None


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
        sharded.ray_address(args)  # refuses `--ray docs/` (a folder read as the address) before anything starts
        interrupt_hint(args, lambda: f"pages committed so far stay in {args.output}; run the same command again to resume")
        return sharded.run_build(args)
    if kinds == {False}:
        return _build_from_pages(args)
    return _build_from_embeddings(args)


def _build_from_embeddings(args: argparse.Namespace) -> int:
    from ..io import load_embeddings

    if args.model is not None:
        raise UsageError("--model encodes pages; embedding files are already encoded (name their model with --encoder)")
    for flag in ("id_root", "upsert", "strict", "retry_skipped", "importance", "signals", "device", "quantize",
                 "batch"):
        if getattr(args, flag) not in (None, False):
            raise UsageError(f"--{flag.replace('_', '-')} applies to pages (PDFs, images, text), not to embedding files")
    appending = _check_output(args)
    sets = [load_embeddings(p) for p in args.inputs]
    dims = {s.embeddings[0].shape[1] for s in sets if len(s)}
    if len(dims) > 1:
        raise UsageError(f"the input files hold vectors of different dims {sorted(dims)}")
    dim = args.dim or next(iter(dims), None)
    if dim is None:
        raise UsageError("the input files hold no pages")
    if args.dim and dims and dims != {args.dim}:
        raise UsageError(f"--dim {args.dim}, but the files hold dim {dims.pop()}")
    pruner = _build_pruner(args, appending)
    if appending:
        held = _settings_check(args.output, dtype=args.dtype, pruner=pruner, encoder=args.encoder, dim=dim,
                               rerank=False if args.no_rerank else None)
        if pruner is None:
            pruner = make_pruner({k: held["pruner"][k] for k in ("name", "params")}) if held["pruner"] else make_pruner("none")
        index = open_index(args.output, mode="a")
    else:
        index = Index.create(args.output, dim, args.dtype or "float16", encoder=args.encoder, overwrite=args.overwrite,
                             merged=pruner.merges, rerank=not args.no_rerank)
    present = 0
    before = len(index)

    def hint() -> str:
        n = count_committed(args.output)
        return (f"{args.output} holds {'?' if n is None else n} committed pages "
                f"({'?' if n is None else n - before} added by this run); "
                f"run the same command again to resume: pages already in the index are skipped")

    interrupt_hint(args, hint)
    with index:
        done = set(index.ids)
        total = sum(len(s) for s in sets)
        with _progress(total, "build", is_quiet(args)) as bar:
            pending: list[tuple[Any, int]] = []
            last = time.monotonic()

            def commit() -> None:
                nonlocal pending, last
                for s in {id(s): s for s, _ in pending}.values():
                    rows = [i for t, i in pending if t is s]
                    pick = lambda seq: None if seq is None else [seq[i] for i in rows]  # noqa: E731
                    index.add(
                        pick(s.ids), pick(s.embeddings), pick(s.importance), pruner=pruner,
                        metadata=pick(s.metadata) or [{"source": s.source, "page": i + 1} for i in rows],
                        patch_mask=pick(s.patch_mask), grids=pick(s.grids), commit_every=len(rows),
                    )
                    bar.update(len(rows))
                pending, last = [], time.monotonic()

            for s in sets:
                for i, doc_id in enumerate(s.ids):
                    if doc_id in done:
                        present += 1
                        bar.update(1)
                        continue
                    done.add(doc_id)
                    pending.append((s, i))
                    if len(pending) >= args.commit_every or time.monotonic() - last >= args.commit_seconds:
                        commit()
            commit()
        if present:
            print(f"{present} pages already in {args.output}: kept, not added again")
        print_summary(index, args.output)
    return 0


def _build_pruner(args: argparse.Namespace, appending: bool) -> Pruner | None:
    """The pruner the options ask for; None when appending without pruning options (the index's own).

    Parameters without ``--pruner`` (``--k 0``) go to the index's pruner when appending, else to adaptive.
    """
    if not pruner_given(args):
        return None if appending else pruner_from_args(args, "adaptive")
    name = args.pruner
    if name is None and appending:
        with open_index(args.output) as ix:
            name = (ix.pruner_config or {}).get("name")
    return pruner_from_args(args, name or "adaptive")


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="page", disable=quiet)


# long: moved as is from cli.py; helper pipeline-C makes it thin on the pipeline API
def _build_from_pages(args: argparse.Namespace) -> int:
    from .. import pipeline

    if args.encoder is not None:
        raise UsageError("--encoder names the model of embedding files; to encode pages choose it with --model")
    if args.dim is not None:
        raise UsageError("--dim is for embedding files; a page encoder gives its own dim")
    appending = _check_output(args)
    pruner = _build_pruner(args, appending)
    model = args.model
    if appending:
        held = _settings_check(args.output, dtype=args.dtype, pruner=pruner, encoder=model, dim=None,
                               rerank=False if args.no_rerank else None)
        model = model or held["encoder"] or "minilm"
        if held["encoder"] is None:
            raise SettingsMismatchError(f"{args.output} records no encoder (built from embedding files): "
                                        "add pages to it as embedding files, or build a new index from pages")
        dtype = held["codec"]
    else:
        model = model or "minilm"
        dtype = args.dtype or "float16"
    check_model(model)
    if is_quiet(args):
        from ..serve import quiet_libraries

        quiet_libraries()
    precreate = False
    if args.no_rerank and "rerank" not in inspect.signature(pipeline.build).parameters:
        if appending:
            pass  # the index has no copy (checked above): the pipeline appends codes only
        elif args.signals:
            raise UsageError("--no-rerank with --signals: build with --pruner none --signals, then "
                             f"`colprune prune {args.output} NEW --dtype binary --no-rerank`")
        else:
            precreate = True

    state: dict[str, Any] = {"skips": 0}

    def on_event(kind: str, info: dict) -> None:
        if kind == "skipped" and not is_quiet(args):
            from tqdm.auto import tqdm

            state["skips"] += 1
            if state["skips"] <= 10:
                tqdm.write(f"colprune build: skipped {info['id']}: {info['reason']}", file=sys.stderr)
            elif state["skips"] == 11:
                tqdm.write("colprune build: skipping more pages; the summary counts them all", file=sys.stderr)

    before = (count_committed(args.output) or 0) if appending else 0

    def hint() -> str:
        n = count_committed(args.output)
        return (f"{args.output} holds {0 if n is None else n} committed pages "
                f"({0 if n is None else n - before} added by this run); run the same command again to resume: "
                f"pages already in the index are not encoded again")

    interrupt_hint(args, hint)
    kwargs: dict[str, Any] = dict(
        model=model, pruner=pruner, dtype=dtype, id_root=args.id_root, upsert=args.upsert, strict=args.strict,
        retry_skipped=args.retry_skipped, commit_pages=args.commit_every, commit_seconds=args.commit_seconds,
        dpi=args.dpi, batch_size=args.batch, progress=not is_quiet(args), overwrite=args.overwrite, on_event=on_event,
        importance=args.importance, device=args.device, signals=args.signals, quantize=args.quantize,
    )
    if args.no_rerank:
        kwargs["rerank"] = False
    accepted = inspect.signature(pipeline.build).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if precreate:
        # a new binary index without the rerank copy: create it empty, the build appends to it
        dim = _model_dim(model)
        if dim is None:
            raise UsageError(f"--no-rerank: cannot tell the dim of {model!r} before loading it; build without "
                             "--no-rerank from a full index and derive: colprune prune FULL NEW --dtype binary --no-rerank")
        Index.create(args.output, dim, "binary", encoder=model, rerank=False, merged=bool(pruner and pruner.merges),
                     overwrite=args.overwrite).close()
        kwargs["overwrite"] = False
    report = pipeline.build(args.inputs, args.output, **kwargs)
    warning = report.warning_line() if hasattr(report, "warning_line") else None
    if (report.skipped and not report.interrupted and not report.indexed and not report.already_present
            and not getattr(report, "replaced", 0)):
        from ..errors import InvalidInputError

        raise InvalidInputError(f"no page could be indexed: {warning or 'every page was skipped'}"
                                + (" (the text encoder reads text layers only: for scans and images use an image "
                                   "encoder, --model vidore/colqwen2-v1.0-hf)" if model == "minilm" else ""))
    if warning:
        print(f"colprune build: {warning}", file=sys.stderr)
    print(report.summary() if hasattr(report, "summary") else f"{args.output}: indexed {report.indexed} pages")
    if report.changed_not_replaced:
        shown = ", ".join(report.changed_not_replaced[:3]) + (", ..." if len(report.changed_not_replaced) > 3 else "")
        print(f"colprune build: {len(report.changed_not_replaced)} pages changed on disk since they were indexed "
              f"({shown}); add --upsert to re-index them", file=sys.stderr)
    if os.path.exists(args.output):
        with open_index(args.output) as index:
            print_summary(index, args.output)
    else:
        print(f"{args.output}: not written (no page could be indexed)")
    if report.interrupted:
        raise KeyboardInterrupt
    return 0


def _build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="PDFs, images, .txt/.md files or folders of them; or embedding files (.pt, .npz, .npy)")
    p.add_argument("-o", "--output", required=True, help="index to create, or to extend if it exists")
    p.add_argument("--dtype", default=None, choices=sorted(CODECS),
                   help="vector codec of a new index (default float16); appending keeps the index's")
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
    g.add_argument("--batch", type=positive_int, default=None, help="pages per encoder call (default: --commit-every)")
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
    add_pruner_args(p, None, "default: adaptive for a new index, the index's own when appending")
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


