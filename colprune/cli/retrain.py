"""``colprune retrain``: train a residual index's codebook again on its live vectors and re-encode every segment."""

from __future__ import annotations

import argparse

from ..distributed import ShardedIndex
from ..errors import UsageError
from .common import Command, fmt_bytes, open_index

__all__ = ["RETRAIN"]


def cmd_retrain(args: argparse.Namespace) -> int:
    with open_index(args.index, mode="a") as index:
        if isinstance(index, ShardedIndex):
            raise UsageError(f"retrain rewrites one index; {args.index} is a sharded collection "
                             f"(retrain each shard: colprune retrain {args.index}/shard-NNNNN)")
        old = index.codebook
        if old is None:
            raise UsageError(f"{args.index} is {index.codec}: only residual indexes (--codec residual2...) have a codebook "
                             "to retrain")
        res = index.compact(retrain=True)
        new = index.codebook
    print(f"{args.index}: codebook {new.n_centroids} centroids trained on {new.n_trained:,} vectors, error "
          f"{new.train_error:.4g} (was {old.train_error:.4g}); {fmt_bytes(res['bytes_before'])} -> "
          f"{fmt_bytes(res['bytes_after'])}")
    return 0


def _retrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index")


RETRAIN = Command(
    "retrain", "train a residual index's codebook again on its live vectors and re-encode it",
    ["colprune retrain pages.h5"], _retrain_arguments, cmd_retrain,
    description="Residual codecs (--codec residual1/2/4) encode every write with the codebook trained on the first\n"
    "one. When new pages drift from it (colprune warns: their reconstruction error passed 1.5x the codebook's),\n"
    "this trains a new codebook on a sample of the live vectors (decoded) and re-encodes every segment with it,\n"
    "in one commit (same as Index.compact(retrain=True)). A crash leaves the old state or the new one.",
)
