"""Command-line pieces for sharded collections, for ``colprune.cli`` to wire in.

- ``colprune build INPUTS -o OUT --ray [ADDRESS] [--workers N] [--shards N] [--gpus-per-worker G]``:
  :func:`add_arguments` (``command="build"``) adds the options, :func:`run_build` runs the
  distributed build (:func:`colprune.distributed.build`) and prints its closing line.
- ``colprune search SHARDED QUERY... [--ray [ADDRESS]]``: :func:`open_index` opens a sharded
  collection (searched in threads, or on Ray with ``--ray``) as an object
  :class:`colprune.serve.Searcher` takes; :func:`run_search` is a complete search command
  for a sharded collection.

This module imports neither the CLI (nothing does) nor Ray at import time.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from typing import Any

from ..errors import UsageError
from .manifest import is_sharded

__all__ = ["add_arguments", "run_build", "open_index", "run_search", "wants_ray", "ray_address"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, command: str = "build") -> None:
    """Add the scale-out options to ``colprune build`` (``command="build"``) or ``colprune search`` (``"search"``)."""
    g = parser.add_argument_group("scale-out (Ray; pip install -e \".[ray]\")")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run on Ray: a cluster ADDRESS (ray://host:10001), or without one the running Ray or a "
                        "local one" + ("; OUTPUT is then a sharded collection" if command == "build" else ""))
    if command == "build":
        g.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                       help="--ray: encoder actors, one model each (default 1)")
        g.add_argument("--shards", type=_positive_int, default=None, metavar="N",
                       help="--ray: shards of a new collection (default --workers); fixed once created")
        g.add_argument("--gpus-per-worker", type=_positive_float, default=None, metavar="G",
                       help="--ray: GPUs per encoder actor on a cluster with GPUs (e.g. 1)")
        g.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                       help="--ray: build at most N new pages this run")
    else:
        g.add_argument("--shards-per-actor", type=_positive_int, default=1, metavar="N",
                       help="--ray: shards each Ray actor holds (default 1)")


def ray_address(args: argparse.Namespace) -> str | None:
    """The cluster address ``--ray`` names (None: the running Ray, or a local one).

    ``--ray`` takes an optional value, so ``--ray docs/`` would read a folder as the address:
    a value that is an existing path and not an address is refused with that hint.
    """
    value = getattr(args, "ray", None)
    if value in (None, "auto"):
        return None
    if "://" not in value and os.path.exists(value):
        raise UsageError(f"--ray took {value!r} as a Ray address, but it is a file or folder: put --ray after the "
                         "inputs, or write --ray=ADDRESS")
    return value


def wants_ray(args: argparse.Namespace) -> bool:
    """True when ``--ray`` was given."""
    return getattr(args, "ray", None) is not None


def _pruner(args: argparse.Namespace):
    """The pruner the build options name, or None (a new collection: none; an existing one: its own)."""
    from ..pruning import PRUNERS, make_pruner

    name = getattr(args, "pruner", None)
    params: dict[str, Any] = {}
    raw = getattr(args, "params", None)
    if raw:
        try:
            params = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UsageError(f"--params is not JSON: {e}") from None
        if not isinstance(params, dict):
            raise UsageError("--params must be a JSON object")
    if name is None:
        if params:
            raise UsageError("--params needs --pruner")
        return None
    accepted = inspect.signature(PRUNERS[name].__init__).parameters
    for key in accepted:
        value = getattr(args, key, None)
        if key != "self" and value is not None and key not in params:
            params[key] = value
    try:
        return make_pruner(name, **params)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--pruner {name}: {e}") from None


def run_build(args: argparse.Namespace) -> int:
    """``colprune build ... --ray``: the distributed build into the sharded collection ``args.output``.

    Reads the build command's own options where they apply (``inputs``, ``output``,
    ``model``, ``pruner`` and its parameters, ``dtype``, ``id_root``, ``strict``,
    ``retry_skipped``, ``importance``, ``dpi``, ``batch``, ``commit_every``, ``overwrite``,
    ``quiet``) and refuses those that do not (``--upsert``, ``--signals``, ``--device``).
    """
    from .raybuild import build

    for flag, dest in (("--upsert", "upsert"), ("--signals", "signals"), ("--no-rerank", "no_rerank")):
        if getattr(args, dest, False):
            raise UsageError(f"{flag} is not supported with --ray")
    if getattr(args, "device", None) not in (None, "cpu", "auto"):
        raise UsageError("--device does not apply with --ray: give --gpus-per-worker to place encoders on GPUs")
    report = build(
        list(args.inputs), args.output, model=getattr(args, "model", None) or "minilm", pruner=_pruner(args),
        dtype=getattr(args, "dtype", None) or "float16", n_shards=getattr(args, "shards", None),
        workers=getattr(args, "workers", 1), num_gpus=getattr(args, "gpus_per_worker", None),
        id_root=getattr(args, "id_root", None), strict=bool(getattr(args, "strict", False)),
        retry_skipped=bool(getattr(args, "retry_skipped", False)), dpi=getattr(args, "dpi", 144),
        batch_size=getattr(args, "batch", None) or 16, commit_every=max(getattr(args, "commit_every", 256) or 256, 1),
        limit=getattr(args, "limit", None), importance=getattr(args, "importance", None),
        overwrite=bool(getattr(args, "overwrite", False)), address=ray_address(args),
        progress=not getattr(args, "quiet", False))
    for page_id, reason in sorted(report.skipped.items()):
        print(f"skipped {page_id}: {reason}", file=sys.stderr)
    print(report.summary())
    return 0


def open_index(path: str, args: argparse.Namespace | None = None):
    """Open ``path`` for searching: a :class:`~colprune.distributed.ShardedIndex` (on Ray with ``--ray``)."""
    from .sharded import ShardedIndex

    ray = None
    if args is not None and wants_ray(args):
        ray = ray_address(args) or True
    return ShardedIndex.open(path, ray=ray,
                             shards_per_actor=getattr(args, "shards_per_actor", 1) if args is not None else 1)


def run_search(args: argparse.Namespace) -> int:
    """``colprune search SHARDED QUERY...``: search a sharded collection, printed like ``colprune search``.

    Uses ``index``, ``queries``, ``k``, ``where``, ``candidates``, ``rerank``, ``threads``,
    ``json`` and ``quiet`` from ``args`` (queries as text, encoded with the collection's model).
    """
    from ..serve import Searcher, parse_where

    if not is_sharded(args.index):
        raise UsageError(f"{args.index} is not a sharded collection")
    texts = [q for q in getattr(args, "queries", []) or [] if q.strip()]
    if not texts:
        raise UsageError("no queries: give query text")
    where = parse_where(args.where) if getattr(args, "where", None) else None
    with open_index(args.index, args) as index:
        searcher = Searcher(index, quiet=bool(getattr(args, "quiet", False)), n_threads=getattr(args, "threads", None))
        searcher.check_texts(texts)
        searcher.check_options(args.k, getattr(args, "candidates", None), getattr(args, "rerank", None))
        searcher.check_where(where)
        results = searcher.search(texts, [], k=args.k, where=where, candidates=getattr(args, "candidates", None),
                                  rerank=getattr(args, "rerank", None))
    if getattr(args, "json", False):
        print(json.dumps(results))
        return 0
    for n, r in enumerate(results, 1):
        print(f"query {n}: {r['query']}")
        if not r["hits"]:
            print("     (no hits)")
        for h in r["hits"]:
            meta = h["metadata"] or {}
            src = f"  {meta['source']}" + (f" p.{meta['page']}" if "page" in meta else "") if "source" in meta else ""
            print(f"  {h['rank']:>3}. {h['score']:9.4f}  {h['id']}{src}")
    return 0
