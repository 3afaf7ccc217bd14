"""``colprune`` command line: a thin layer over the library.

Every subcommand is one :class:`Command` in :data:`COMMANDS` (name, help, examples, the function
that adds its arguments, the function that runs it); :func:`register` adds one. Errors a user can
cause end as one line on stderr and an exit status from :data:`EXIT_STATUSES`, never a traceback
(``--debug`` shows it); Ctrl-C says what was committed and how to resume; a closed pipe exits quietly.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import __version__
from .errors import (
    ColpruneError,
    FormatError,
    ModelLoadError,
    NotFoundError,
    SettingsMismatchError,
    UsageError,
)
from .index import Index
from .index.layout import CODECS
from .pruning import PRUNERS, Pruner, make_pruner

__all__ = ["main", "build_parser", "Command", "COMMANDS", "register", "EXIT_STATUSES", "exit_status"]

_FMT = argparse.RawDescriptionHelpFormatter

# -- exit statuses ---------------------------------------------------------------------------

#: ``(status, meaning)``; the README's table is this list.
EXIT_STATUSES: list[tuple[int, str]] = [
    (0, "success"),
    (1, "internal error (a bug): one line saying so; `--debug` prints the traceback"),
    (2, "usage: an unknown option, a bad value (`-k 0`, an empty query), options that do not go together"),
    (3, "not found: an input file or folder, the index, a page id"),
    (4, "bad input: an unreadable file with `--strict`, queries of the wrong dim, NaN vectors, "
        "an embeddings file without the importance its pruner needs"),
    (5, "not a colprune index: another file or a folder given as the index, a truncated or damaged file, "
        "a newer format"),
    (6, "settings differ from the index's: appending with another codec, pruner, encoder or dim "
        "(the message says what the index holds and what to run)"),
    (7, "cannot write: OUTPUT exists (add `--overwrite`), permission denied, another process is writing "
        "the index, disk full"),
    (8, "the model cannot be loaded: a missing package, a hub id without network, an unsupported model type"),
    (130, "interrupted (Ctrl-C): the message says what was committed and how to resume"),
    (141, "standard output closed early (piped into `head`, say): exits quietly, nothing on stderr"),
]
EXIT_INTERNAL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_FORMAT = 1, 2, 3, 4, 5
EXIT_SETTINGS, EXIT_CANNOT_WRITE, EXIT_MODEL, EXIT_INTERRUPTED, EXIT_PIPE = 6, 7, 8, 130, 141


def exit_status(e: BaseException) -> int:
    """The exit status for an exception (see :data:`EXIT_STATUSES`)."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError):
        return EXIT_PIPE
    if isinstance(e, UsageError):
        return EXIT_USAGE
    if isinstance(e, SettingsMismatchError):
        return EXIT_SETTINGS
    if isinstance(e, ModelLoadError):
        return EXIT_MODEL
    if isinstance(e, FormatError):
        return EXIT_FORMAT
    if isinstance(e, (NotFoundError, FileNotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(e, ColpruneError) and isinstance(e, OSError):  # LockedError
        return EXIT_CANNOT_WRITE
    if isinstance(e, ColpruneError):
        return EXIT_BAD_INPUT
    if isinstance(e, OSError):  # exists, permission, lock, disk full
        return EXIT_CANNOT_WRITE
    return EXIT_INTERNAL


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


# -- commands --------------------------------------------------------------------------------

@dataclass
class Command:
    """One subcommand: ``arguments(parser)`` adds its options, ``run(args)`` returns the exit status."""

    name: str
    help: str
    examples: Sequence[str]
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    aliases: Sequence[str] = ()


#: Subcommands in the order ``colprune --help`` lists them.
COMMANDS: list[Command] = []


def register(command: Command) -> Command:
    """Add (or replace, by name) a subcommand."""
    COMMANDS[:] = [c for c in COMMANDS if c.name != command.name]
    COMMANDS.append(command)
    return command


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False))


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


# -- pruner options --------------------------------------------------------------------------

def _pruner_params() -> dict[str, Any]:
    """Every constructor parameter of every registered pruner, with its default's type."""
    params: dict[str, Any] = {}
    for cls in PRUNERS.values():
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and isinstance(p.default, (int, float, str)) and not isinstance(p.default, bool):
                params.setdefault(name, type(p.default))
    return params


def _add_pruner_args(p: argparse.ArgumentParser, default: str | None, default_help: str) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--pruner", default=default, choices=sorted(PRUNERS), help=f"pruning method ({default_help})")
    for name, typ in _pruner_params().items():
        owners = [n for n, c in PRUNERS.items() if name in inspect.signature(c.__init__).parameters]
        g.add_argument(f"--{name}", type=typ, default=None, help=f"parameter of {', '.join(owners)}")
    g.add_argument("--params", default=None, metavar="JSON",
                   help='all parameters as JSON, e.g. for prune-merge: \'{"pruner": {"name": "adaptive", '
                        '"params": {"k": 0}}, "merger": {"name": "ward", "params": {"ratio": 0.5}}}\'')


def _pruner_given(args: argparse.Namespace) -> bool:
    return args.pruner is not None or bool(args.params) or any(getattr(args, n) is not None for n in _pruner_params())


def _pruner_from_args(args: argparse.Namespace, name: str | None = None) -> Pruner:
    name = name or args.pruner
    accepted = inspect.signature(PRUNERS[name].__init__).parameters
    given = {n: getattr(args, n) for n in _pruner_params() if getattr(args, n) is not None}
    if args.params:
        try:
            extra_params = json.loads(args.params)
        except json.JSONDecodeError as e:
            raise UsageError(f"--params is not JSON: {e}") from None
        if not isinstance(extra_params, dict):
            raise UsageError("--params must be a JSON object")
        given.update(extra_params)
    extra = sorted(set(given) - set(accepted))
    if extra:
        raise UsageError(f"--{extra[0]} does not apply to --pruner {name}")
    try:
        return make_pruner(name, **given)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--pruner {name}: {_one_line(e)}") from None


# -- sizes -----------------------------------------------------------------------------------

def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


_HOLD_NAMES = {"rerank": "float16 rerank copy", "signals": "importance signals", "covers": "merge covers",
               "metadata": "ids and metadata", "summaries": "search summaries", "positions": "positions and importance",
               "other": "other (file structure, free space)"}


def _sizes(index: Index, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """``info`` plus honest sizes: file bytes per page and what the file holds besides the vectors.

    Uses the index's own ``info()["holds"]`` when it reports one; otherwise estimates the parts
    from the counts (``holds_estimated``) and calls the rest of the file "other".
    """
    info = dict(info or index.info())
    docs = info.get("docs") or 0
    parts = info.get("shard_info")
    if parts:  # a sharded collection: sum its shards
        per_page = lambda key: (sum((p.get(key) or 0) * p["docs"] for p in parts) / docs) if docs else None  # noqa: E731
        for key in ("vector_bytes_per_page", "unpruned_vector_bytes_per_page"):
            info.setdefault(key, per_page(key))
        info.setdefault("rerank_vectors", any(p.get("rerank_vectors") for p in parts))
        info.setdefault("library_version", parts[0].get("library_version"))
        if "holds" not in info and all("holds" in p for p in parts):
            holds: dict[str, int] = {}
            for p in parts:
                for k, v in p["holds"].items():
                    holds[k] = holds.get(k, 0) + int(v)
            holds["other"] = holds.get("other", 0) + max(0, int(info.get("file_bytes") or 0) - sum(holds.values()))
            info["holds"] = holds
    file_bytes = info.get("file_bytes")
    if file_bytes is None:
        file_bytes = _path_bytes(info.get("path") or index.path)
        info["file_bytes"] = file_bytes
    info.setdefault("file_bytes_per_page", (file_bytes / docs) if docs else None)
    if "holds" not in info:
        n_vec, dim = info.get("vectors") or 0, info.get("dim") or 0
        holds = {
            "vectors": int(n_vec * getattr(index, "bytes_per_vector", 0)),
            "rerank": int(n_vec * dim * 2) if info.get("rerank_vectors") else 0,
            "signals": int(n_vec * 4 * len(getattr(index, "signal_names", []) or [])),
            "positions": int(n_vec * 9),  # position, importance and patch flag per vector
        }
        holds["other"] = max(0, int(file_bytes) - sum(holds.values()))
        info["holds"] = holds
        info["holds_estimated"] = True
    return info


def _path_bytes(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _holds_text(info: dict[str, Any]) -> str:
    docs = info.get("docs") or 0
    parts = []
    for key, n in (info.get("holds") or {}).items():
        if key == "vectors" or not n:
            continue
        per = f"{_fmt_bytes(n / docs)}/page" if docs else _fmt_bytes(n)
        parts.append(f"{_HOLD_NAMES.get(key, key)} {per}")
    return ", ".join(parts)


def _summary_line(index: Index, shown: str | None = None) -> str:
    """One line: pages, vectors kept, vector bytes and file bytes per page, what else the file holds."""
    info = _sizes(index)
    ratio = info.get("keep_ratio")
    docs = info["docs"]
    line = (f"{shown or info['path']}: {docs:,} pages, {info['vectors']:,} of {info['original_vectors']:,} vectors kept"
            f" ({'-' if ratio is None else f'{ratio:.1%}'}); vectors {_fmt_bytes(info['vector_bytes_per_page'])}/page"
            f" ({info['codec']}, unpruned {_fmt_bytes(info['unpruned_vector_bytes_per_page'])})")
    if docs:
        line += f"; file {_fmt_bytes(info['file_bytes_per_page'])}/page ({_fmt_bytes(info['file_bytes'])})"
        held = _holds_text(info)
        if held:
            line += f", also holding {held}"
    return line


def _print_summary(index: Index, shown: str | None = None) -> None:
    """The summary line, naming the index as the user did (``shown``)."""
    print(_summary_line(index, shown))


# -- opening indexes -------------------------------------------------------------------------

def _distributed():
    """``colprune.distributed.cli`` (sharded collections, Ray), or None where it cannot be imported."""
    try:
        from .distributed import cli as dcli
    except Exception:  # noqa: BLE001 - an optional part: the rest of the CLI works without it
        return None
    return dcli


def _open_index(path: str, mode: str = "r", args: argparse.Namespace | None = None):
    """An :class:`Index`, or a sharded collection's ``ShardedIndex`` (searched on Ray with ``--ray``)."""
    if not os.path.exists(path):
        raise NotFoundError(f"no index at {path}")
    d = _distributed()
    sharded = d is not None and d.is_sharded(path)
    if args is not None and getattr(args, "ray", None) is not None and not sharded:
        raise UsageError(f"--ray searches sharded collections (built with `colprune build ... --ray`); {path} is one index")
    if sharded:
        if mode == "r":
            return d.open_index(path, args)
        from .distributed import ShardedIndex

        return ShardedIndex.open(path, mode=mode)
    return Index.open(path, mode=mode)


def _interrupt_hint(args: argparse.Namespace, fn: Callable[[], str]) -> None:
    args._on_interrupt = fn


def _count_committed(path: str) -> int | None:
    try:
        with _open_index(path) as ix:
            return len(ix)
    except Exception:  # noqa: BLE001 - only for the message
        return None


# -- build -----------------------------------------------------------------------------------

EMBEDDING_EXTS = (".pt", ".npz", ".npy")


def _is_embedding_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in EMBEDDING_EXTS


def _settings_check(output: str, *, dtype: str | None, pruner: Pruner | None, encoder: str | None,
                    dim: int | None, rerank: bool | None) -> dict[str, Any]:
    """What an existing index holds; :class:`SettingsMismatchError` when the build's settings differ."""
    with _open_index(output) as ix:
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


def _check_inputs(inputs: Sequence[str]) -> None:
    for item in inputs:
        if not os.path.exists(item):
            raise NotFoundError(f"{item}: no such file or folder")


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


def _check_model(name: str) -> None:
    """Load nothing, but fail now (exit 8) when the model cannot be loaded: a missing package, a
    path without a config, a hub id without network, an unsupported model type."""
    from .encoders import minilm_path
    from .encoders.text import TEXT_MODEL_TYPES
    from .encoders.visual import VISUAL_MODEL_TYPES, model_type_of

    try:
        if name == "minilm":
            minilm_path()
            return
        model_type = model_type_of(name)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load model {name!r}: {_one_line(e)}") from None
    if model_type not in (*VISUAL_MODEL_TYPES, *TEXT_MODEL_TYPES):
        raise ModelLoadError(f"{name}: unsupported model type {model_type!r}; colprune encodes with "
                             f"{', '.join(VISUAL_MODEL_TYPES)} or BERT-style text models ({', '.join(TEXT_MODEL_TYPES)})")


def _model_dim(name: str) -> int | None:
    """The vectors' dim a model gives, from its config (no weights loaded); None if unknown."""
    try:
        if name == "minilm":
            from .encoders import minilm_path

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
    kinds = {_is_embedding_file(p) for p in args.inputs}
    if len(kinds) > 1:
        raise UsageError("give either embedding files (.pt/.npz/.npy) or pages (PDFs, images, text, folders), not both")
    _check_inputs(args.inputs)
    if args.no_rerank and (args.dtype or "binary") != "binary":
        raise UsageError("--no-rerank applies to --dtype binary only")
    d = _distributed()
    if d is not None and d.wants_ray(args):
        if kinds != {False}:
            raise UsageError("--ray builds from pages (PDFs, images, text); embedding files build on one machine")
        d.ray_address(args)  # refuses `--ray docs/` (a folder read as the address) before anything starts
        _interrupt_hint(args, lambda: f"pages committed so far stay in {args.output}; run the same command again to resume")
        return d.run_build(args)
    if kinds == {False}:
        return _build_from_pages(args)
    return _build_from_embeddings(args)


def _build_from_embeddings(args: argparse.Namespace) -> int:
    from .io import load_embeddings

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
        index = _open_index(args.output, mode="a")
    else:
        index = Index.create(args.output, dim, args.dtype or "float16", encoder=args.encoder, overwrite=args.overwrite,
                             merged=pruner.merges, rerank=not args.no_rerank)
    present = 0
    before = len(index)

    def hint() -> str:
        n = _count_committed(args.output)
        return (f"{args.output} holds {'?' if n is None else n} committed pages "
                f"({'?' if n is None else n - before} added by this run); "
                f"run the same command again to resume: pages already in the index are skipped")

    _interrupt_hint(args, hint)
    with index:
        done = set(index.ids)
        total = sum(len(s) for s in sets)
        with _progress(total, "build", _quiet(args)) as bar:
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
        _print_summary(index, args.output)
    return 0


def _build_pruner(args: argparse.Namespace, appending: bool) -> Pruner | None:
    """The pruner the options ask for; None when appending without pruning options (the index's own).

    Parameters without ``--pruner`` (``--k 0``) go to the index's pruner when appending, else to adaptive.
    """
    if not _pruner_given(args):
        return None if appending else _pruner_from_args(args, "adaptive")
    name = args.pruner
    if name is None and appending:
        with _open_index(args.output) as ix:
            name = (ix.pruner_config or {}).get("name")
    return _pruner_from_args(args, name or "adaptive")


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="page", disable=quiet)


def _build_from_pages(args: argparse.Namespace) -> int:
    from . import pipeline

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
    _check_model(model)
    if _quiet(args):
        from .serve import quiet_libraries

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
        if kind == "skipped" and not _quiet(args):
            from tqdm.auto import tqdm

            state["skips"] += 1
            if state["skips"] <= 10:
                tqdm.write(f"colprune build: skipped {info['id']}: {info['reason']}", file=sys.stderr)
            elif state["skips"] == 11:
                tqdm.write("colprune build: skipping more pages; the summary counts them all", file=sys.stderr)

    before = (_count_committed(args.output) or 0) if appending else 0

    def hint() -> str:
        n = _count_committed(args.output)
        return (f"{args.output} holds {0 if n is None else n} committed pages "
                f"({0 if n is None else n - before} added by this run); run the same command again to resume: "
                f"pages already in the index are not encoded again")

    _interrupt_hint(args, hint)
    kwargs: dict[str, Any] = dict(
        model=model, pruner=pruner, dtype=dtype, id_root=args.id_root, upsert=args.upsert, strict=args.strict,
        retry_skipped=args.retry_skipped, commit_pages=args.commit_every, commit_seconds=args.commit_seconds,
        dpi=args.dpi, batch_size=args.batch, progress=not _quiet(args), overwrite=args.overwrite, on_event=on_event,
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
        from .errors import InvalidInputError

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
        with _open_index(args.output) as index:
            _print_summary(index, args.output)
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
    g.add_argument("--dpi", type=_positive_int, default=144, help="PDF render resolution for image encoders (default 144)")
    g.add_argument("--batch", type=_positive_int, default=None, help="pages per encoder call (default: --commit-every)")
    g.add_argument("--skip-bad", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    g = p.add_argument_group("embedding files (.pt, .npz, .npy)")
    g.add_argument("--dim", type=_positive_int, default=None, help="embedding dim (default: from the first page)")
    g.add_argument("--encoder", default=None, help="name of the model that made the embeddings, stored in the index")
    g = p.add_argument_group("commits and resuming")
    g.add_argument("--commit-every", type=_positive_int, default=32, metavar="N",
                   help="commit at least every N pages (default 32)")
    g.add_argument("--commit-seconds", type=_positive_float, default=30.0, metavar="T",
                   help="and at least every T seconds (default 30): Ctrl-C keeps everything committed; "
                        "the same command resumes")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT instead of extending it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (also transformers' loading bars)")
    _add_pruner_args(p, None, "default: adaptive for a new index, the index's own when appending")
    d = _distributed()
    if d is not None:
        d.add_arguments(p, "build")


register(Command(
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
))


# -- prune -----------------------------------------------------------------------------------

def cmd_prune(args: argparse.Namespace) -> int:
    pruner = _pruner_from_args(args, args.pruner or "adaptive")
    if os.path.abspath(args.source) == os.path.abspath(args.output):
        raise UsageError("SOURCE and OUTPUT are the same: write the pruned index to another path")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists: add --overwrite to replace it")
    with _open_index(args.source) as src:
        if not hasattr(src, "derive"):
            raise UsageError(f"{args.source} is a sharded collection: prune derives from one index "
                             "(build the smaller collection with `colprune build ... --ray --pruner ...`)")
        codec = args.dtype or src.codec
        if args.no_rerank and codec != "binary":
            raise UsageError("--no-rerank applies to --dtype binary only")
        if args.signal and args.signal not in getattr(src, "signal_names", []):
            raise UsageError(f"{args.source} stores no signal {args.signal!r}; it has {getattr(src, 'signal_names', [])} "
                             "(build with --signals to store them)")
        total = len(src)
        _interrupt_hint(args, lambda: f"{args.output} is incomplete ({_count_committed(args.output) or 0} of {total} pages); "
                                      f"run the same command with --overwrite to redo it")
        kw: dict[str, Any] = {"dtype": args.dtype, "overwrite": args.overwrite, "progress": not _quiet(args),
                              "rerank": not args.no_rerank}
        if args.signal:
            kw["signal"] = args.signal
        dst = src.derive(args.output, pruner, **kw)
    with dst:
        _print_summary(dst, args.output)
    return 0


def _prune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="index to read (ideally a full one, built with --pruner none)")
    p.add_argument("output", help="index to write")
    p.add_argument("--dtype", default=None, choices=sorted(CODECS), help="vector codec of OUTPUT (default: the source's)")
    p.add_argument("--no-rerank", action="store_true",
                   help="--dtype binary: keep no float16 rerank copy (the file shrinks to the binary codes)")
    p.add_argument("--signal", default=None, help="prune by this stored signal instead of the importance")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_pruner_args(p, None, "default adaptive")


register(Command(
    "prune", "derive a pruned (or re-encoded) index from a full one, without re-encoding pages",
    [
        "colprune prune full.h5 adaptive.h5 --pruner adaptive --k -0.25",
        "colprune prune full.h5 ward.h5 --pruner ward --ratio 0.25",
        "colprune prune full.h5 small.h5 --pruner adaptive --k 0 --dtype int8      # prune and re-encode",
        "colprune prune full.h5 tiny.h5 --pruner none --dtype binary --no-rerank   # 32x smaller, Hamming only",
    ],
    _prune_arguments, cmd_prune,
    description="Re-prune every page of SOURCE from its stored vectors and importance into OUTPUT; --dtype re-encodes.",
))


# -- search ----------------------------------------------------------------------------------

def _read_queries(args: argparse.Namespace) -> tuple[list[str], list[Any], list[str]]:
    """``(texts, vector queries, their labels)`` from arguments, --queries-file and stdin."""
    from .io import load_embeddings

    texts: list[str] = []
    vectors: list[Any] = []
    labels: list[str] = []

    def add_embedding_file(path: str) -> None:
        qs = load_embeddings(path)
        vectors.extend(qs.embeddings)
        labels.extend(qs.ids)

    for i, q in enumerate(args.queries, 1):
        if _is_embedding_file(q) and os.path.exists(q):
            add_embedding_file(q)
        elif not q.strip():
            raise UsageError(f"query {i} is empty: give some text to search for")
        else:
            texts.append(q)
    lines: list[str] | None = None
    source = None
    if args.queries_file:
        source = args.queries_file
        if source != "-" and _is_embedding_file(source):
            if not os.path.exists(source):
                raise NotFoundError(f"{source}: no such file")
            add_embedding_file(source)
        elif source == "-":
            lines = sys.stdin.read().splitlines()
        else:
            if not os.path.exists(source):
                raise NotFoundError(f"{source}: no such file")
            with open(source, encoding="utf-8") as f:
                lines = f.read().splitlines()
    elif not args.queries and not sys.stdin.isatty():
        source = "stdin"
        lines = sys.stdin.read().splitlines()
    if lines is not None:
        got = [line.strip() for line in lines if line.strip()]
        if not got:
            raise UsageError(f"{source}: no queries (one per line)")
        texts.extend(got)
    if not texts and not vectors:
        raise UsageError("no queries: give query text, --queries-file FILE, or one query per line on stdin")
    return texts, vectors, labels


def cmd_search(args: argparse.Namespace) -> int:
    from .serve import Searcher, parse_where

    where = parse_where(args.where) if args.where else None
    texts, vectors, labels = _read_queries(args)
    if args.query_encoder is not None and args.model is not None:
        raise UsageError("--query-encoder and --model both choose the query encoder: give one")
    with _open_index(args.index, args=args) as index:
        student = _load_student(args.query_encoder, index, _quiet(args)) if args.query_encoder and texts else None
        searcher = Searcher(index, quiet=_quiet(args), n_threads=args.threads, model=args.model,
                            trust_index_encoder=args.trust_index_encoder, encoder=student)
        # everything checked before the model loads
        searcher.check_texts(texts)
        searcher.check_options(args.k, args.candidates, args.rerank)
        searcher.check_where(where)
        searcher.check_vectors(vectors, labels)
        if texts and student is None:
            _check_model(searcher.model_name())
        results = searcher.search(texts, vectors, labels=labels, k=args.k, where=where, candidates=args.candidates,
                                  rerank=args.rerank)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(f"query {r['query']}")
        if not r["hits"]:
            print("     (no hits)")
        for h in r["hits"]:
            meta = h["metadata"] or {}
            where_text = ""
            if "source" in meta:
                where_text = f"  {meta['source']}" + (f" p.{meta['page']}" if "page" in meta else "")
            print(f"  {h['rank']:>3}. {h['score']:9.4f}  {h['id']}{where_text}")
    return 0


def _load_student(path: str, index, quiet: bool):
    """The student query encoder at ``path``, refused unless ``index`` was built by its teacher."""
    from .encoders.student import StudentQueryEncoder, check_teacher, read_config

    if not os.path.exists(path):
        raise NotFoundError(f"{path}: no such student folder (make one with `colprune distill-queries`)")
    cfg = read_config(path)["config"]
    check_teacher(index, cfg["teacher"], cfg["teacher_dim"], path)  # before any weights load
    if quiet:
        from .serve import quiet_libraries

        quiet_libraries()
    return StudentQueryEncoder(path)


def _model_trust_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("query encoder")
    g.add_argument("--model", default=None, help="query encoder (a path or hub id); default: the index's own, "
                   "loaded only if it is a built-in name (minilm) or with --trust-index-encoder")
    g.add_argument("--trust-index-encoder", action="store_true",
                   help="load the encoder path or hub id the index records (an index file may be hostile)")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("queries", nargs="*", metavar="QUERY",
                   help="query text (encoded with the index's model), or a query embeddings file (.pt, .npz, .npy); "
                        "none: one query per line from --queries-file or stdin")
    p.add_argument("--queries-file", "-f", default=None, metavar="FILE",
                   help="one query per line (blank lines ignored), '-' for stdin, or an embeddings file")
    p.add_argument("-k", type=_positive_int, default=10, help="hits per query (default 10)")
    p.add_argument("--where", action="append", default=None, metavar="FILTER",
                   help="only pages whose metadata matches: source=a.pdf, page>=3, page<10, or JSON "
                        "'{\"kind\": {\"in\": [\"pdf\"]}}' (repeat to combine)")
    p.add_argument("--candidates", type=_positive_int, default=None, metavar="N",
                   help="two-stage search: shortlist N pages per query by their centroids, score those exactly "
                        "(float16/float32 indexes; faster on large indexes, recall may drop)")
    p.add_argument("--rerank", type=_nonneg_int, default=None, metavar="N",
                   help="binary indexes: rescore the best N Hamming hits exactly from the float16 copy "
                        "(default max(100, 10k); 0: Hamming order only)")
    p.add_argument("--threads", type=_positive_int, default=None, help="kernel threads (default: all cores)")
    _model_trust_arguments(p)
    p.add_argument("--query-encoder", default=None, metavar="PATH",
                   help="encode the queries with a student distilled from the index's encoder "
                        "(`colprune distill-queries`); a student of another teacher is refused")
    p.add_argument("--json", action="store_true", help="print JSON: [{query, hits: [{rank, id, score, metadata}]}]")
    p.add_argument("-q", "--quiet", action="store_true", help="no model loading bars")
    d = _distributed()
    if d is not None:
        d.add_arguments(p, "search")


register(Command(
    "search", "search an index with one or many queries (one model load)",
    [
        "colprune search pages.h5 \"who invented the thermometer\"",
        "colprune search pages.h5 \"first question\" \"second question\" -k 3",
        "colprune search pages.h5 --queries-file questions.txt --json",
        "printf 'rivers of Europe\\nthe cell membrane\\n' | colprune search pages.h5",
        "colprune search pages.h5 \"delta\" --where source=rivers.pdf --where 'page>=2'",
        "colprune search binary.h5 \"delta\" --rerank 200          # binary: rescore 200 exactly",
        "colprune search big.h5 \"delta\" --candidates 2000        # two-stage search",
        "colprune search pages.h5 queries.pt                      # precomputed query embeddings",
        "colprune search pages.h5 \"delta\" --query-encoder student/  # a distilled student encodes the query",
    ],
    _search_arguments, cmd_search,
    description="Exact MaxSim search. Queries are text, encoded once with the model the index was built with\n"
    "(arguments, --queries-file, or stdin one per line), or embeddings files in any layout `build` reads.\n"
    "Each hit prints its page id, score and where the page comes from (source file and page number).",
))


# -- info ------------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    with _open_index(args.index) as index:
        info = _sizes(index)
        skipped = getattr(index, "skipped", None)
    if skipped:
        info["skipped_pages"] = dict(skipped)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    docs = info["docs"]
    held = _holds_text(info)
    rows = [
        ("index", args.index),
        ("format", f"{info['format']} v{info['format_version']}"
                   + (f" (written by colprune {info['library_version']})" if info.get("library_version") else "")
                   + (f", {info['n_shards']} shards" if info.get("n_shards") else "")),
        ("pages", f"{docs:,}"),
        ("vectors", f"{info['vectors']:,} kept of {info['original_vectors']:,}"
                    + ("" if info["keep_ratio"] is None else f" ({info['keep_ratio']:.1%})")),
        ("codec", f"{info['codec']}, dim {info['dim']}" + (", with a float16 rerank copy" if info.get("rerank_vectors") else "")),
        ("vectors/page", f"{_fmt_bytes(info['vector_bytes_per_page'])} (unpruned "
                         f"{_fmt_bytes(info['unpruned_vector_bytes_per_page'])})"),
        ("file", f"{_fmt_bytes(info['file_bytes'])}, {_fmt_bytes(info['file_bytes_per_page'])}/page"),
        ("also holds", (held or "-") + (" (estimated)" if info.get("holds_estimated") else "")),
        ("pruner", json.dumps(info["pruner"]) if info["pruner"] else "-"),
        ("encoder", info["encoder"] or "-"),
    ]
    if skipped:
        rows.append(("skipped", f"{len(skipped)} pages (their reasons: colprune info {args.index} --json)"))
    for k, v in rows:
        print(f"{k:>12}  {v}")
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--json", action="store_true", help="print JSON")


register(Command(
    "info", "pages, vectors kept, bytes per page (vectors and file), what the file holds, pruner, encoder",
    ["colprune info pages.h5", "colprune info pages.h5 --json"],
    _info_arguments, cmd_info,
    description="What an index holds and what it costs: vector bytes and file bytes per page, and what the\n"
    "file holds besides the vectors (a rerank copy, signals, covers, metadata).",
))


# -- repack ----------------------------------------------------------------------------------

def cmd_repack(args: argparse.Namespace) -> int:
    with _open_index(args.index) as index:
        before = _path_bytes(args.index)
        has_rerank = getattr(index, "has_rerank", False)
        if args.no_rerank and not has_rerank:
            raise UsageError(f"{args.index} has no rerank copy to drop")
        compact = getattr(index, "compact", None)
    if compact is not None and not args.no_rerank:
        with _open_index(args.index, mode="a") as index:
            index.compact()
    else:
        _repack_by_copy(args.index, rerank=has_rerank and not args.no_rerank, quiet=_quiet(args), args=args)
    after = _path_bytes(args.index)
    print(f"{args.index}: {_fmt_bytes(before)} -> {_fmt_bytes(after)}")
    with _open_index(args.index) as index:
        _print_summary(index, args.index)
    return 0


def _repack_by_copy(path: str, *, rerank: bool, quiet: bool, args: argparse.Namespace) -> None:
    """Rewrite the index into a temporary file beside it (every page, as stored), then rename it over."""
    import shutil

    tmp, old = f"{path}.repack-tmp", f"{path}.repack-old"
    _interrupt_hint(args, lambda: f"{path} is unchanged; the partial copy {tmp} can be deleted")

    def remove(p: str) -> None:
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.exists(p):
            os.remove(p)

    keeps_record = hasattr(Index, "_set_pruner")
    try:
        remove(tmp)
        with _open_index(path) as src:
            config = src.pruner_config
            if config is not None and config.get("name") != "none" and not keeps_record:
                raise UsageError(
                    f"{path} holds pages pruned with {config.get('name')}, and a copy would record them as unpruned; "
                    f"write the smaller index from the full one instead: colprune prune FULL NEW --pruner "
                    f"{config.get('name')} ... --dtype {src.codec} --no-rerank")
            dst = src.derive(tmp, "none", overwrite=True, progress=not quiet, rerank=rerank)
            dst.close()
        if config is not None and keeps_record:
            with Index.open(tmp, mode="a") as ix:  # keep the original pruner: appends must still match it
                ix._set_pruner(config)
        if os.path.isdir(path):  # a collection directory: swap, then drop the old one
            os.rename(path, old)
            os.rename(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)


def _repack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--no-rerank", action="store_true", help="also drop a binary index's float16 rerank copy")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


register(Command(
    "repack", "rewrite an index to give back the space of deleted or replaced pages",
    ["colprune repack pages.h5", "colprune repack binary.h5 --no-rerank      # and drop the float16 rerank copy"],
    _repack_arguments, cmd_repack,
    description="Rewrite INDEX in place (through a temporary copy beside it) so the file holds only its pages.",
))


# -- delete, compact, verify, summarize, upgrade ---------------------------------------------

def _parse_where(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        where = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--where is not JSON: {e}") from None
    if not isinstance(where, dict) or not where:
        raise UsageError('--where takes a JSON object, e.g. \'{"source": "old.pdf"}\'')
    return where


def cmd_delete(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as fh:
            ids += [line.strip() for line in fh if line.strip()]
    where = _parse_where(args.where)
    if not ids and where is None:
        raise UsageError("give page ids, --ids-file FILE or --where JSON")
    with _open_index(args.index, mode="a") as index:
        if where is not None:
            unknown = sorted(set(where) - index.filter_fields())
            if unknown:
                raise UsageError(f"--where: unknown metadata field {unknown[0]!r}; filterable: {sorted(index.filter_fields())}")
        n = index.delete(ids or None, where=where, missing="ignore" if args.missing_ok else "error")
        print(f"{args.index}: deleted {n} pages, {len(index)} left (colprune compact {args.index} gives their bytes back)")
    return 0


def _delete_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("ids", nargs="*", help="page ids, as search prints them")
    p.add_argument("--ids-file", metavar="FILE", help="more page ids, one per line")
    p.add_argument("--where", metavar="JSON", help='delete the pages whose metadata match, e.g. \'{"source": "old.pdf"}\'')
    p.add_argument("--missing-ok", action="store_true", help="skip ids that are not in the index (default: refuse, delete nothing)")


register(Command(
    "delete", "delete pages by id or by metadata (one commit; compact gives the bytes back)",
    ["colprune delete pages.h5 'draft.pdf#1' 'draft.pdf#2'", "colprune delete pages.h5 --where '{\"source\": \"old.pdf\"}'"],
    _delete_arguments, cmd_delete,
    description="Delete pages in one commit: readers see all of them gone or none. Unknown ids are refused\n"
    "before anything is deleted (--missing-ok skips them). Deleted pages are never returned again.",
))


def cmd_compact(args: argparse.Namespace) -> int:
    with _open_index(args.index, mode="a") as index:
        res = index.compact()
        print(f"{args.index}: {_fmt_bytes(res['bytes_before'])} -> {_fmt_bytes(res['bytes_after'])}, "
              f"{res['segments_before']} -> {res['segments_after']} segments")
    return 0


def _index_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")


register(Command(
    "compact", "rewrite segments with deleted pages and merge small ones (gives space back)",
    ["colprune compact pages.h5"], _index_only, cmd_compact,
    description="Reclaim the bytes of deleted and replaced pages and merge small segments, in one commit.\n"
    "A crash at any moment leaves the old state or the new one; readers keep their snapshot.",
))


def cmd_verify(args: argparse.Namespace) -> int:
    with _open_index(args.index) as index:
        res = index.verify()
    print(f"{args.index}: ok, {res['docs']} pages in {res['segments']} segments, {_fmt_bytes(res['bytes'])} checked")
    return 0


register(Command(
    "verify", "check every byte of an index against its checksums",
    ["colprune verify pages.h5"], _index_only, cmd_verify,
    description="Read the whole index and check it against the checksums recorded when it was written.\n"
    f"Damage exits with status {EXIT_FORMAT} and names the file, dataset or page and rows.",
))


def cmd_summarize(args: argparse.Namespace) -> int:
    with _open_index(args.index, mode="a") as index:
        index.summarize(args.centroids)
    print(f"{args.index}: first-stage summaries of {args.centroids} centroids per page")
    return 0


def _summarize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("--centroids", type=_positive_int, default=4, help="centroids per page (default 4)")


register(Command(
    "summarize", "(re)compute the stored first-stage summaries of two-stage search",
    ["colprune summarize pages.h5 --centroids 8"], _summarize_arguments, cmd_summarize,
    description="Compute each page's centroids for two-stage search (search --candidates N) and store them,\n"
    "rewriting the segments whose summaries have another size.",
))


def cmd_upgrade(args: argparse.Namespace) -> int:
    if os.path.exists(args.output) and not args.overwrite:
        raise UsageError(f"{args.output} exists; pass --overwrite to replace it")
    with Index.upgrade(args.source, args.output, overwrite=args.overwrite, progress=not _quiet(args)) as index:
        print(f"{args.output}: format {index.format_version}, {len(index)} pages from {args.source}")
    return 0


def _upgrade_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a format 1 or 2 index file")
    p.add_argument("output", help="the new index (a folder)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


register(Command(
    "upgrade", "rewrite an old (format 1 or 2) index file as a current collection",
    ["colprune upgrade old.h5 pages.h5"], _upgrade_arguments, cmd_upgrade,
    description="colprune reads old index files but writes only the current format: this copies every page,\n"
    "as stored, into a new collection. The old file is left as it is.",
))


# -- show ------------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from .show import render_page

    with _open_index(args.index) as index:
        if args.page not in index:
            raise NotFoundError(f"no page {args.page!r} in {args.index} (page ids: colprune search, or Index.ids)")
        print(render_page(index, args.page, args.output, dpi=args.dpi, root=args.root))
    return 0


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    p.add_argument("page", help="page id, as search prints it")
    p.add_argument("-o", "--output", default="page.png", help="PNG to write (default page.png)")
    p.add_argument("--dpi", type=_positive_int, default=110)
    p.add_argument("--root", default=".", metavar="DIR",
                   help="the folder the page sources are under (default: the current one); sources elsewhere are refused")


register(Command(
    "show", "draw a page with its kept patches and importance heat map (image encoders)",
    ["colprune show scans.h5 'report.pdf#3' -o page.png", "colprune show scans.h5 p1.png -o p1.png --dpi 150"],
    _show_arguments, cmd_show,
    description="Re-read the page image from its source (the path and page number in its metadata), dim the\n"
    "pruned patches, outline the kept ones, and draw the importance of the kept patches on the grid.\n"
    "Pages from text encoders (minilm) have no patch grid to draw.",
))


# -- serve -----------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Searcher, make_server

    with _open_index(args.index) as index:
        searcher = Searcher(index, quiet=_quiet(args), n_threads=args.threads, model=args.model,
                            trust_index_encoder=args.trust_index_encoder)
        if index.encoder and not args.lazy:
            _check_model(searcher.model_name())
            searcher.encoder  # noqa: B018 - load the model now, not on the first request
        server = make_server(searcher, args.host, args.port, default_k=args.k,
                             log=None if _quiet(args) else (lambda m: print(m, file=sys.stderr)))
        host, port = server.server_address[:2]
        print(f"serving {args.index} on http://{host}:{port} (GET /search?q=TEXT&k=10, POST /search, GET /info; "
              f"Ctrl-C to stop)", flush=True)
        try:
            if args.max_requests:
                for _ in range(args.max_requests):
                    server.handle_request()
            else:
                server.serve_forever()
        except KeyboardInterrupt:  # the way to stop a server: not an error
            print("stopped", file=sys.stderr)
        finally:
            server.server_close()
    return 0


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")
    _model_trust_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_nonneg_int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("-k", type=_positive_int, default=10, help="hits per query when a request gives no k (default 10)")
    p.add_argument("--max-requests", type=_positive_int, default=None, metavar="N", help="stop after N requests")
    p.add_argument("--lazy", action="store_true", help="load the model on the first text query instead of at start")
    p.add_argument("--threads", type=_positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log, no model loading bars")


register(Command(
    "serve", "answer searches over HTTP as JSON on localhost, the model loaded once",
    [
        "colprune serve pages.h5                                   # http://127.0.0.1:8765",
        "curl 'http://127.0.0.1:8765/search?q=who+invented+the+thermometer&k=3'",
        "curl -d '{\"queries\": [\"delta\"], \"k\": 3, \"where\": {\"page\": {\"gte\": 2}}}' http://127.0.0.1:8765/search",
    ],
    _serve_arguments, cmd_serve,
    description="A small JSON endpoint (Python's http.server, one request at a time) over one index:\n"
    "GET /search?q=TEXT[&q=TEXT...][&k=N], POST /search {\"queries\": [...], \"k\", \"where\", \"candidates\",\n"
    "\"rerank\"}, GET /info. Answers are what `colprune search --json` prints, under \"results\".\n"
    "It listens on 127.0.0.1 unless --host says otherwise; it has no authentication.",
))


# -- study -----------------------------------------------------------------------------------

def cmd_study(args: argparse.Namespace) -> int:
    from .study import DEFAULT_GRID, run_study

    if not os.path.isdir(args.dataset):
        raise NotFoundError(f"{args.dataset}: no such dataset folder")
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
    if _quiet(args):
        from .serve import quiet_libraries

        quiet_libraries()
    kw: dict[str, Any] = {}
    if args.query_encoder is not None:
        from .encoders.student import read_config, same_teacher

        if not os.path.exists(args.query_encoder):
            raise NotFoundError(f"{args.query_encoder}: no such student folder (make one with `colprune distill-queries`)")
        teacher = read_config(args.query_encoder)["config"]["teacher"]
        if not same_teacher(teacher, args.encoder):
            raise SettingsMismatchError(f"the student {args.query_encoder} was distilled from {teacher!r}; the study "
                                        f"encodes pages with {args.encoder!r}: pass --encoder {teacher}")
        kw["query_encoder"] = args.query_encoder
    run_study(args.dataset, args.encoder, args.out, grid=grid, budgets=budgets, methods=methods, codecs=codecs,
              progress=not _quiet(args), quantize=args.quantize, paired_reference=args.paired_to, **kw)
    return 0


def _study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="BEIR or ViDoRe dataset folder")
    p.add_argument("--encoder", default="minilm", help="encoder name, local path or hub id (default minilm)")
    p.add_argument("--query-encoder", default=None, metavar="PATH",
                   help="encode the queries with a student distilled from --encoder (pages stay --encoder's)")
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8: encode pages and queries with the text encoder's int8 dynamic quantisation "
                        "(its own cache and results-int8.* under --out, beside a run without it)")
    p.add_argument("--grid", default=None, help="JSON grid of methods (default: the built-in grid)")
    p.add_argument("--budgets", default=None, help="comma-separated shares of vectors kept (default 0.5,0.25,0.1)")
    p.add_argument("--methods", default=None, help="comma-separated method names from the grid ('default' = recommended)")
    p.add_argument("--codecs", default=None, help="comma-separated codecs to evaluate (default float16,int8)")
    p.add_argument("--paired-to", default=None, metavar="METHOD",
                   help="also give each method's paired per-query difference to METHOD at the same budget (e.g. ward)")
    p.add_argument("--out", required=True, help="output folder (also the cache)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _study_description() -> str:
    try:
        from .study import runner as _study

        grid_help = _study.GRID_HELP
    except Exception:  # noqa: BLE001 - help text only
        grid_help = ""
    return ("Encode a dataset once into a full index (every vector, every importance signal), derive each\n"
            "pruned variant from it (cached: re-running with one more method re-uses the rest), search, and report\n"
            "keep ratio, bytes per page per codec, nDCG@5/10, recall@10/100 and retention with 95% bootstrap\n"
            "intervals over queries. Writes OUT/results.csv, OUT/results.md and OUT/pareto.png.\n\n"
            "Dataset: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv; corpus records with an 'image'\n"
            "path are page images), or a ViDoRe set saved with save_to_disk or as parquet (corpus/, queries/,\n"
            "relevant_docs/ or qrels/; needs pyarrow).\n\n" + grid_help)


register(Command(
    "study", "storage versus quality: sweep pruning methods on a dataset",
    [
        "colprune study --dataset ../shared/data/msmarco-5k --encoder minilm --out study/",
        "colprune study --dataset ds/ --encoder minilm --methods default,random --budgets 0.5,0.25,0.1 --out s/",
        "colprune study --dataset ds/ --encoder minilm --grid grid.json --out s/",
        "colprune study --dataset ds/ --encoder minilm --query-encoder student/ --methods default --out s-student/",
    ],
    _study_arguments, cmd_study, description=_study_description(),
))


# -- distill-queries -------------------------------------------------------------------------

def cmd_distill_queries(args: argparse.Namespace) -> int:
    from . import distill as dist

    _check_inputs(args.texts)
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
    _check_model(args.teacher)
    if _quiet(args):
        from .serve import quiet_libraries

        quiet_libraries()
    texts = dist.training_texts(args.texts, fraction=args.fraction, max_texts=args.max_texts, seed=args.seed,
                                on_skip=lambda m: print(f"colprune distill-queries: skipped {m}", file=sys.stderr))
    from .encoders import load_encoder
    from .encoders.student import query_format_of

    try:
        teacher = load_encoder(args.teacher, **({"device": args.device} if args.device else {}))
    except Exception as e:  # noqa: BLE001 - a missing package, an offline hub, an unsupported type
        raise ModelLoadError(f"cannot load the teacher {args.teacher!r}: {_one_line(e)}") from None
    tokenizer, _ = query_format_of(teacher)
    config = dist.default_config(teacher, tokenizer, layers=args.layers, embed_rank=args.embed_rank,
                                 hidden=args.hidden, heads=args.heads, intermediate=args.intermediate, head=args.head)
    _interrupt_hint(args, lambda: f"the last checkpoint is in {args.output.rstrip(os.sep)}.partial; run the same "
                                  "command again to resume from it")
    report = dist.distill(
        teacher, texts, args.output, config=config, init=args.init, init_layers=init_layers, loss=args.loss,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch, lr=args.lr, seed=args.seed,
        train_embeddings=args.train_embeddings,
        device=args.device, threads=args.threads, checkpoint_seconds=args.checkpoint_seconds,
        overwrite=args.overwrite, progress=not _quiet(args), log=print)
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
    g.add_argument("--max-texts", type=_positive_int, default=None, metavar="N", help="at most N texts")
    g = p.add_argument_group("training")
    g.add_argument("--loss", default="align", choices=["align", "infonce"],
                   help="align: 1 - cosine to each teacher token vector (default, NanoVDR); infonce: in-batch "
                        "contrastive over the batch's tokens")
    g.add_argument("--epochs", type=_positive_int, default=3, help="passes over the texts (default 3)")
    g.add_argument("--max-steps", type=_positive_int, default=None, metavar="N", help="stop after N steps")
    g.add_argument("--batch", type=_positive_int, default=64, help="texts per step (default 64)")
    g.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="torch device: cpu (default), cuda, or auto")
    g.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all cores)")
    g.add_argument("--checkpoint-seconds", type=_positive_float, default=300.0, metavar="T",
                   help="checkpoint at least every T seconds and after each epoch (default 300)")
    g = p.add_argument_group("student size (default: the teacher's width, 2 layers, 1024-wide feed-forward, "
                             "rank-128 token table)")
    g.add_argument("--layers", type=_positive_int, default=2)
    g.add_argument("--hidden", type=_positive_int, default=None)
    g.add_argument("--heads", type=_positive_int, default=None)
    g.add_argument("--intermediate", type=_positive_int, default=None)
    g.add_argument("--embed-rank", type=_positive_int, default=None)
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


register(Command(
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
))


# -- demo ------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, write_demo_pdfs

    if args.docs:
        paths = write_demo_pdfs(args.docs)
        print(f"wrote {len(paths)} PDFs to {args.docs}: {', '.join(os.path.basename(p) for p in paths)}")
        return 0
    if _quiet(args):
        from .serve import quiet_libraries

        quiet_libraries()
    run_demo(args.out, n_pages=args.pages, quiet=_quiet(args), synthetic=args.synthetic)
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="folder for the index files (default: a temporary folder)")
    p.add_argument("--docs", default=None, metavar="DIR",
                   help="only write the demo's PDFs into DIR (16 pages of text), to try `colprune build` on")
    p.add_argument("--synthetic", action="store_true", help="generated embeddings instead of PDFs and a model")
    p.add_argument("--pages", type=_positive_int, default=300, help="--synthetic: pages to generate (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


register(Command(
    "demo", "the whole pipeline offline: PDFs in, pruned index, answers out",
    ["colprune demo", "colprune demo --out demo-index", "colprune demo --docs pdfs     # just the sample PDFs",
     "colprune demo --synthetic --pages 500"],
    _demo_arguments, cmd_demo,
    description="Write a few PDFs, encode their pages with the offline MiniLM text-token encoder, build a full\n"
    "index, derive a DocPruner-pruned one, answer questions from both, and print the bytes saved and the hits.\n"
    "--synthetic does the same on generated ColPali-like embeddings (no model).",
))


# -- parser and main -------------------------------------------------------------------------

def _status_epilog() -> str:
    return "exit statuses:\n" + "\n".join(f"  {code:>3}  {text.replace('`', '')}" for code, text in EXIT_STATUSES)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the Python traceback too")
    parser = argparse.ArgumentParser(
        prog="colprune", formatter_class=_FMT,
        description="Multi-vector index with adaptive patch pruning for visual document retrieval.",
        epilog="first steps:\n  colprune demo --docs pdfs\n  colprune build pdfs -o pages.h5\n"
        "  colprune search pages.h5 \"who invented the thermometer\"\n  colprune info pages.h5\n\n"
        "Every command has --help with examples.\n\n" + _status_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"colprune {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="on an error, print the Python traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for c in COMMANDS:
        p = sub.add_parser(
            c.name, help=c.help, aliases=list(c.aliases), formatter_class=_FMT, parents=[common],
            description=c.description or (c.help[:1].upper() + c.help[1:] + "."),
            epilog="examples:\n" + "\n".join(f"  {e}" for e in c.examples),
        )
        c.arguments(p)
        p.set_defaults(func=c.run)
    return parser


def _quiet_stdout() -> None:
    # stdout's reader is gone: point it at /dev/null so the interpreter's final flush stays silent
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _redeliver_swallowed_interrupts():
    """Ctrl-C that lands in a ``__del__`` or weakref callback is printed as "Exception ignored" and
    lost; this sends it again to the main thread, so one Ctrl-C always stops the command.
    Returns a function that restores the previous hook."""
    import _thread
    import threading

    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            t = threading.Timer(0.05, _thread.interrupt_main)
            t.daemon = True
            t.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook

    def restore() -> None:
        sys.unraisablehook = previous

    return restore


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("COLPRUNE_DEBUG", "") not in ("", "0")
    name = args.command
    restore_hook = _redeliver_swallowed_interrupts()
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        hint = getattr(args, "_on_interrupt", None)
        detail = ""
        if hint is not None:
            try:
                detail = ": " + hint()
            except Exception:  # noqa: BLE001 - the message only
                detail = ""
        _safe_stderr(f"colprune {name}: interrupted{detail}")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except Exception as e:  # noqa: BLE001 - every error ends as one line and a status
        if isinstance(e, OSError) and getattr(e, "errno", None) == 32:  # EPIPE wrapped elsewhere
            _quiet_stdout()
            return EXIT_PIPE
        status = exit_status(e)
        if debug:
            traceback.print_exc()
        if status == EXIT_INTERNAL:
            _safe_stderr(f"colprune {name}: internal error: {type(e).__name__}: {_one_line(e)} "
                         "(a bug: run again with --debug for the traceback, and please report it)")
        else:
            _safe_stderr(f"colprune {name}: error: {_one_line(e)}")
        return status
    finally:
        restore_hook()


def _safe_stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Console-script entry point: ``sys.exit(main())``, quiet on a closed pipe."""
    status = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        _quiet_stdout()
        status = status or EXIT_PIPE
    sys.exit(status)


if __name__ == "__main__":
    run()
