"""Write the golden indexes of the current format version, and what a reader must see in them.

Run once per format version (``python tests/data/golden/make_golden.py``) and commit the
files; never regenerate an old version's files: they are what old users have on disk.
Writes ``v<N>.h5`` (float16) and, from version 2 on, ``v<N>-<codec>.h5`` for the other
codecs (from version 3 on folders, not ``.h5`` files; from version 4 on with the residual codecs and
their codebooks), each with a ``.json`` of the pages a reader must get back.
"""

import json
import warnings
from pathlib import Path

import numpy as np

import colprune as cp
from colprune.index import layout

HERE = Path(__file__).parent
VERSION = layout.FORMAT_VERSION


def write(codec: str, name: str, merged: bool = False) -> None:
    rng = np.random.default_rng(2026)
    ids = ["alpha", "beta", "gamma", "δέλτα"]
    embs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (5, 1, 7, 4)]
    imps = [rng.random(e.shape[0]) for e in embs]
    masks = [np.r_[False, np.ones(e.shape[0] - 1, bool)] for e in embs]
    masks[1] = np.ones(1, bool)
    path = HERE / (name if VERSION >= 3 else f"{name}.h5")  # version 3: a collection directory
    signals = [{"cls": i, "norm": np.linalg.norm(e, axis=1)} for e, i in zip(embs, imps)] if merged else None
    pruner = cp.pruning.HierarchicalPooling(0.5) if merged else cp.AdaptiveThreshold(0.0)
    with cp.Index.create(path, dim=8, dtype=codec, encoder="golden", overwrite=True,
                         signals=["cls", "norm"] if merged else (), merged=merged) as index:
        index.add(ids[:2], embs[:2], imps[:2], pruner=pruner, patch_mask=masks[:2],
                  metadata=[{"page": 1}, None], grids=[(2, 2), (1, 1)], signals=None if signals is None else signals[:2])
        index.add(ids[2:], embs[2:], imps[2:], patch_mask=masks[2:], metadata=[{"src": "x.pdf"}, {"ü": [1, 2]}],
                  signals=None if signals is None else signals[2:])
        # version 3: a deletion file, and a skipped-source record, are part of the contract too
        gone = rng.standard_normal((3, 8)).astype(np.float32)
        index.add(["gone"], [gone], [rng.random(3)], signals=None if signals is None else
                  [{"cls": np.ones(3), "norm": np.ones(3)}])
        index.delete(["gone"])
        index.record_skipped({"scan.pdf#2": "no text layer"})
        pages = [index.get(i) for i in ids]
    expect = {
        "format_version": VERSION,
        "ids": ids,
        "dim": 8,
        "dtype": codec,
        "encoder": "golden",
        "pruner": pruner.config(),
        "pages": [
            {
                "positions": p.positions.tolist(),
                "n_original": p.n_original,
                "grid": p.grid,
                "metadata": p.metadata,
                "patch_mask": p.patch_mask.tolist(),
                "importance": p.importance.tolist(),
                "vectors_f32_hex": p.vectors.astype("<f4").tobytes().hex(),
                **({"covers": [c.tolist() for c in p.covers],
                    "signals": {k: v.tolist() for k, v in p.signals.items()}} if merged else {}),
            }
            for p in pages
        ],
    }
    (HERE / f"{name}.json").write_text(json.dumps(expect, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # a residual codebook trained on 2 pages drifts on the next ones: that is fine here
    write("float16", f"v{VERSION}")
    for codec in ("float32", "int8", "binary", "residual1", "residual2", "residual4"):
        write(codec, f"v{VERSION}-{codec}")
    write("float16", f"v{VERSION}-merged", merged=True)  # optional signals/ and covers/
