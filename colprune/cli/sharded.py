"""Command-line pieces for sharded collections (Ray, shards), wired into ``build`` and ``search``.

- ``colprune build INPUTS -o OUT --ray [ADDRESS] [--workers N] [--shards N] [--gpus-per-worker G]``:
  :func:`add_arguments` (``command="build"``) adds the options, :func:`run_build` runs the
  distributed build (:func:`colprune.distributed.build`) and prints its closing line.
  ``--codec`` takes every codec of a single index; with ``residual1/2/4`` each shard trains its
  own codebook on its first commit.
- ``colprune search SHARDED QUERY... [--ray [ADDRESS]]``: :func:`open_index` opens a sharded
  collection (searched in threads, or on Ray with ``--ray``) as an object
  :class:`colprune.serve.Searcher` takes; a residual one takes ``--candidates N [--nprobe P]``
  (each shard through its own centroid index, the per-shard top-k merged).

Ray is not imported at import time.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError
from .options import accepted_params, params_json, positive_float, positive_int

__all__ = ["add_arguments", "run_build", "open_index", "wants_ray", "ray_address"]


def add_arguments(parser: argparse.ArgumentParser, command: str = "build") -> None:
    """Add the scale-out options to ``colprune build`` (``command="build"``) or ``colprune search`` (``"search"``)."""
    g = parser.add_argument_group("scale-out (Ray; pip install -e \".[ray]\")")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run on Ray: a cluster ADDRESS (ray://host:10001), or without one the running Ray or a "
                        "local one" + ("; OUTPUT is then a sharded collection" if command == "build" else ""))
    if command == "build":
        g.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="--ray: encoder actors, one model each (default 1)")
        g.add_argument("--shards", type=positive_int, default=None, metavar="N",
                       help="--ray: shards of a new collection (default --workers); fixed once created")
        g.add_argument("--gpus-per-worker", type=positive_float, default=None, metavar="G",
                       help="--ray: GPUs per encoder actor on a cluster with GPUs (e.g. 1)")
        g.add_argument("--limit", type=positive_int, default=None, metavar="N",
                       help="--ray: build at most N new pages this run")
    else:
        g.add_argument("--shards-per-actor", type=positive_int, default=1, metavar="N",
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
    from ..pruning import make_pruner

    name = getattr(args, "pruner", None)
    params = params_json(args)
    if name is None:
        if params:
            raise UsageError("--params needs --pruner")
        return None
    for key in accepted_params(name):
        value = getattr(args, key, None)
        if value is not None and key not in params:
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
    from ..distributed import build

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
    from ..distributed import ShardedIndex

    ray = None
    if args is not None and wants_ray(args):
        ray = ray_address(args) or True
    return ShardedIndex.open(path, ray=ray,
                             shards_per_actor=getattr(args, "shards_per_actor", 1) if args is not None else 1)

